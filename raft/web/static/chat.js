// The chat page: the conversation lives in this tab's sessionStorage; each reply streams
// from /v1/chat/completions with the memories it was given beside it.
import { el, memoryList, modelPicker, models, nav, showError, streamReply } from "/static/common.js";

nav("/");
const STORE = "raft-chat";
const log = document.getElementById("log");
const form = document.getElementById("ask");
const question = document.getElementById("question");
const send = document.getElementById("send");
const memoriesBox = document.getElementById("memories");
let state = JSON.parse(sessionStorage.getItem(STORE) || '{"turns": []}');
let picker;

function save() {
  sessionStorage.setItem(STORE, JSON.stringify(state));
}

function turnView(turn) {
  const reply = el("div", { class: "reply", text: turn.answer || "" });
  const aside = el("aside", { "aria-label": "memories" }, el("div", { class: "who", text: "Memories" }),
    turn.memories ? memoryList(turn.memories) : el("p", { class: "muted", text: "recalling…" }));
  const view = el("article", { class: "turn" },
    el("div", {}, el("div", { class: "who", text: "You" }), el("p", { class: "question", text: turn.question }),
      el("div", { class: "who", text: turn.model }), reply),
    aside);
  log.append(view);
  return { reply, aside };
}

function reset() {
  state = { turns: [] };
  save();
  log.replaceChildren();
}

async function ask(text) {
  const model = picker.value;
  const messages = state.turns.flatMap((t) => [{ role: "user", content: t.question }, { role: "assistant", content: t.answer }]);
  messages.push({ role: "user", content: text });
  const turn = { question: text, answer: "", memories: null, model };
  const view = turnView(turn);
  send.disabled = true;
  try {
    for await (const event of streamReply(model, messages, memoriesBox.checked)) {
      if (event.memories) {
        turn.memories = event.memories;
        view.aside.replaceChildren(el("div", { class: "who", text: `Memories (${event.memories.length})` }), memoryList(event.memories));
      } else {
        turn.answer += event.piece;
        view.reply.textContent = turn.answer.trimStart();
      }
    }
    turn.answer = turn.answer.trim();
    state.turns.push(turn);
    save();
  } catch (error) {
    showError(view.reply, error);
  } finally {
    send.disabled = false;
    view.reply.closest("article").dataset.done = "true";
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = question.value.trim();
  question.value = "";
  if (text === "/reset") reset();
  else if (text) ask(text);
});
question.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey) {
    event.preventDefault();
    form.requestSubmit();
  }
});
document.getElementById("reset").addEventListener("click", reset);

for (const turn of state.turns) turnView(turn).reply.closest("article").dataset.done = "true";
models().then((list) => {
  picker = modelPicker(list, state.model || list[0].id);
  picker.id = "model";
  const sync = () => {
    const chosen = list.find((m) => m.id === picker.value);
    memoriesBox.checked = chosen.memories;
    memoriesBox.disabled = !chosen.memories;
    state.model = picker.value;
    save();
  };
  picker.addEventListener("change", sync);
  document.getElementById("model-slot").append(picker);
  sync();
}).catch((error) => showError(log, error));
