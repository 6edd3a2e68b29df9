// The dataset review page: samples of raft.jsonl with every memory and its verdicts;
// each mark is saved to finetune/review.json as it is made.
import { el, getJSON, nav, postJSON, showError } from "/static/common.js";

nav("/samples");
const PAGE = 50;
const list = document.getElementById("samples");
const dataset = document.getElementById("dataset");
const range = document.getElementById("range");
let offset = 0;
let total = 0;

function verdict(m) {
  const parts = [m.kept ? "in the memory slot" : "not in the slot"];
  if (m.gate) parts.push(`gate dropped it: ${m.gate}`);
  if (m.useful !== null) parts.push(`useful from the question: ${m.useful ? "yes" : "no"}${m.useful_reason ? ` (${m.useful_reason})` : ""}`);
  if (m.consistent !== null) parts.push(`consistent with the answer: ${m.consistent ? "yes" : "no"}${m.consistent_reason ? ` (${m.consistent_reason})` : ""}`);
  if (m.error) parts.push(`error: ${m.error}`);
  return parts.join(" · ");
}

function toggle(label, checked, body, card) {
  const box = el("input", { type: "checkbox", checked });
  box.addEventListener("change", async () => {
    box.disabled = true;
    try {
      await postJSON("/api/review", { dataset: dataset.value, ...body, drop: box.checked });
      card.classList.toggle("dropped", box.checked);
      card.dataset.saved = String(box.checked);
    } catch (error) {
      box.checked = !box.checked;
      showError(card, error);
    } finally {
      box.disabled = false;
    }
  });
  return el("label", {}, box, ` ${label}`);
}

function sampleView(s) {
  const card = el("article", { class: `sample${s.dropped ? " dropped" : ""}`, "data-id": s.id });
  const memories = s.memories.map((m) => {
    const item = el("li", { class: `memory${m.dropped ? " dropped" : ""}`, "data-chunk": m.chunk_id },
      el("span", { class: "date", text: m.date || "undated" }), ` ${m.title} `,
      el("blockquote", { text: m.text }), el("div", { class: "verdict", text: verdict(m) }));
    if (m.kept) item.append(toggle("drop this memory", m.dropped, { sample: s.id, memory: m.chunk_id }, item));
    return item;
  });
  card.append(
    el("div", { class: "verdict", text: `${s.id}${s.synthetic ? " (synthetic)" : ""}` }),
    el("p", {}, el("strong", { text: "Q: " }), s.question),
    el("details", {}, el("summary", { text: `Memories (${s.memories.length} retrieved)` }), el("ol", { class: "memories" }, memories)),
    el("p", { class: "reply" }, el("strong", { text: "A: " }), s.answer),
    toggle("drop this sample", s.dropped, { sample: s.id }, card));
  return card;
}

async function load() {
  list.replaceChildren(el("p", { class: "muted", text: "loading…" }));
  try {
    const page = await getJSON(`/api/samples?dataset=${dataset.value}&offset=${offset}&limit=${PAGE}`);
    total = page.total;
    if (page.missing) {
      list.replaceChildren(el("p", { class: "notice", text: `No samples yet: run \`${page.missing}\`.` }));
    } else {
      list.replaceChildren(...page.samples.map(sampleView));
    }
    range.textContent = total ? `${offset + 1}–${Math.min(offset + PAGE, total)} of ${total}` : "";
  } catch (error) {
    list.replaceChildren();
    showError(list, error);
  }
}

document.getElementById("prev").addEventListener("click", () => { if (offset > 0) { offset -= PAGE; load(); } });
document.getElementById("next").addEventListener("click", () => { if (offset + PAGE < total) { offset += PAGE; load(); } });
dataset.addEventListener("change", () => { offset = 0; load(); });
load();
