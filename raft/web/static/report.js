// The report page: a run picker over `ratf run`s and the run's report.md, rendered by the server.
import { el, getJSON, nav, showError } from "/static/common.js";

nav("/report");
const picker = document.getElementById("run");
const report = document.getElementById("report");

async function show(run) {
  report.replaceChildren(el("p", { class: "muted", text: "loading…" }));
  try {
    const found = await getJSON(`/api/runs/${encodeURIComponent(run)}`);
    if (found.html === null) {
      report.replaceChildren(el("p", { class: "notice", text: `Run ${run} has no report yet: run \`ratf score\` and \`ratf report\` with --run ${run}.` }));
    } else {
      report.innerHTML = found.html; // rendered from Markdown by the server, raw HTML escaped
    }
    history.replaceState(null, "", `?run=${encodeURIComponent(run)}`);
  } catch (error) {
    report.replaceChildren();
    showError(report, error);
  }
}

getJSON("/api/runs").then((runs) => {
  if (!runs.length) {
    report.replaceChildren(el("p", { class: "notice", text: "No RATF run yet: run `raft bench:setup`, then `ratf run`, `ratf score` and `ratf report`." }));
    return;
  }
  for (const r of runs) {
    const mark = r.reported ? "" : r.scored ? " (scored, no report)" : " (not scored)";
    picker.append(el("option", { value: r.run, text: `${r.run}: ${r.systems.join(", ")}${mark}` }));
  }
  const asked = new URLSearchParams(location.search).get("run");
  const first = runs.find((r) => r.run === asked) || runs.find((r) => r.reported) || runs[0];
  picker.value = first.run;
  picker.addEventListener("change", () => show(picker.value));
  show(first.run);
}).catch((error) => showError(report, error));
