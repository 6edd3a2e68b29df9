// The compare page: the same question to each column's replica, answered side by side.
import { el, memoryList, modelPicker, models, nav, showError, streamReply } from "/static/common.js";

nav("/compare");
const columns = document.getElementById("columns");
const question = document.getElementById("question");
let list = [];

function addColumn(chosen) {
  const picker = modelPicker(list, chosen);
  const memories = el("input", { type: "checkbox" });
  const sync = () => {
    const model = list.find((m) => m.id === picker.value);
    memories.checked = model.memories;
    memories.disabled = !model.memories;
  };
  picker.addEventListener("change", sync);
  sync();
  const body = el("div", { class: "answer" });
  const column = el("section", { class: "column" },
    el("div", { class: "controls" }, picker, el("label", {}, memories, " with memories")), body);
  column.ask = async (text) => {
    const reply = el("div", { class: "reply" });
    const aside = el("aside", { "aria-label": "memories" }, el("p", { class: "muted", text: "recalling…" }));
    body.replaceChildren(reply, aside);
    column.dataset.done = "";
    let answer = "";
    try {
      for await (const event of streamReply(picker.value, [{ role: "user", content: text }], memories.checked)) {
        if (event.memories) aside.replaceChildren(el("div", { class: "who", text: `Memories (${event.memories.length})` }), memoryList(event.memories));
        else reply.textContent = (answer += event.piece).trimStart();
      }
    } catch (error) {
      showError(body, error);
    } finally {
      column.dataset.done = "true";
    }
  };
  columns.append(column);
}

document.getElementById("add").addEventListener("click", () => addColumn(list[0].id));
document.getElementById("ask").addEventListener("submit", async (event) => {
  event.preventDefault();
  const text = question.value.trim();
  if (!text) return;
  const send = document.getElementById("send");
  send.disabled = true;
  await Promise.all([...columns.children].map((column) => column.ask(text)));
  send.disabled = false;
});

models().then((found) => {
  list = found;
  addColumn((list.find((m) => m.id === "base") || list[0]).id);
  addColumn(list[0].id);
}).catch((error) => showError(columns, error));
