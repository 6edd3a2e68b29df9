// The blind test: one question at a time, its real earlier conversation, and the answers
// in an order fixed for this rater. The page never learns which answer is whose.
import { el, showError } from "/static/common.js";

document.body.prepend(el("header", {}, el("strong", { text: "raft · blind test" })));
const test = document.getElementById("test");
const rater = new URLSearchParams(location.search).get("rater") || "";
const LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ";

async function blindCall(path, options = {}) {
  const response = await fetch(path, { ...options, headers: { "Content-Type": "application/json" } });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error.message);
  return body;
}

function render(state) {
  const progress = el("p", { id: "progress", text: `${state.rater}: ${state.done} of ${state.total} answered` });
  if (!state.item) {
    test.replaceChildren(progress, el("p", { id: "result", class: "notice",
      text: `Done, thank you. You picked the author's answer ${state.correct} of ${state.total} times.` }));
    return;
  }
  const item = state.item;
  const history = item.history.length
    ? el("details", {}, el("summary", { text: `Earlier in the interview (${item.history.length} exchanges)` }),
      item.history.map(([q, a]) => el("div", {}, el("p", { class: "who", text: `Q: ${q}` }), el("p", { class: "reply", text: a }))))
    : null;
  const choices = item.choices.map((text, n) => el("label", { class: "choice" },
    el("input", { type: "radio", name: "choice", value: String(n), required: true }), ` Answer ${LETTERS[n]}: `, text));
  const submit = el("button", { text: "This one is the author's" });
  const form = el("form", { id: "judge", onsubmit: async (event) => {
    event.preventDefault();
    const picked = form.querySelector("input[name=choice]:checked");
    if (!picked) return;
    submit.disabled = true;
    try {
      render(await blindCall("/api/blind/judge", {
        method: "POST", body: JSON.stringify({ rater, item: item.id, choice: Number(picked.value) }),
      }));
    } catch (error) {
      submit.disabled = false;
      showError(form, error);
    }
  } }, el("fieldset", {}, el("legend", { text: "Which is the author's answer?" }), choices), submit);
  test.replaceChildren(...[progress, history, el("h2", { id: "question", text: item.question }), form].filter(Boolean));
}

if (!rater) {
  test.replaceChildren(el("p", { class: "notice", text: "Open this page with your rater link (it ends in ?rater=…)." }));
} else {
  blindCall(`/api/blind/state?rater=${encodeURIComponent(rater)}`).then(render).catch((error) => showError(test, error));
}
