// Shared by every page: the API key, JSON calls, streamed replies, and safe DOM building.

// A key given in the link's fragment (#key=...) never reaches the server's logs.
if (location.hash.startsWith("#key=")) {
  sessionStorage.setItem("raft-key", decodeURIComponent(location.hash.slice(5)));
  history.replaceState(null, "", location.pathname + location.search);
}

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (name === "text") node.textContent = value;
    else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (value !== false && value !== null && value !== undefined) node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

export function nav(active) {
  const pages = [["/", "Chat"], ["/compare", "Compare"], ["/report", "Report"], ["/blind", "Blind test"], ["/samples", "Review"]];
  const bar = el("nav", { "aria-label": "pages" },
    pages.map(([href, name]) => el("a", { href, text: name, "aria-current": href === active ? "page" : null })));
  document.body.prepend(el("header", {}, el("strong", { id: "title", text: "raft" }), bar));
  getJSON("/api/info").then((info) => {
    document.getElementById("title").textContent = `raft · ${info.target}`;
  }).catch(() => {}); // the page itself reports a refused key
}

function keyForm() {
  if (document.getElementById("key-form")) return;
  const input = el("input", { type: "password", id: "key", autocomplete: "off", "aria-label": "API key" });
  const form = el("form", { id: "key-form", class: "notice", onsubmit: (event) => {
    event.preventDefault();
    sessionStorage.setItem("raft-key", input.value.trim());
    location.reload();
  } }, el("label", { for: "key", text: "This server needs its API key: " }), input, el("button", { text: "Use key" }));
  document.querySelector("main").prepend(form);
}

export async function call(path, options = {}) {
  const headers = { "Content-Type": "application/json", ...(options.headers || {}) };
  const key = sessionStorage.getItem("raft-key");
  if (key) headers.Authorization = `Bearer ${key}`;
  const response = await fetch(path, { ...options, headers });
  if (response.status === 401) {
    keyForm();
    throw new Error("this server needs its API key");
  }
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try { message = (await response.json()).error.message; } catch (_) { /* not JSON */ }
    throw new Error(message);
  }
  return response;
}

export async function getJSON(path) {
  return (await call(path)).json();
}

export async function postJSON(path, body) {
  return (await call(path, { method: "POST", body: JSON.stringify(body) })).json();
}

export async function models() {
  return (await getJSON("/v1/models")).data;
}

export function modelPicker(list, chosen) {
  return el("select", { "aria-label": "model" },
    list.map((m) => el("option", { value: m.id, selected: m.id === chosen, text: m.id === m.label ? m.id : `${m.id} (${m.label})` })));
}

// Yields {memories} once, then {piece} as the reply streams (server-sent events).
export async function* streamReply(model, messages, memories) {
  const response = await call("/v1/chat/completions", {
    method: "POST",
    body: JSON.stringify({ model, messages, memories, stream: true }),
  });
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const line = buffer.slice(0, end).trim();
      buffer = buffer.slice(end + 2);
      if (!line.startsWith("data: ")) continue;
      const data = line.slice(6);
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      if (chunk.memories) yield { memories: chunk.memories };
      const piece = chunk.choices?.[0]?.delta?.content;
      if (piece) yield { piece };
    }
  }
}

// A document's link becomes an href only when it is an absolute http(s) URL: a source
// may give `javascript:` or `data:` links, which the CSP blocks but should not meet at all.
function webLink(link) {
  try {
    const url = new URL(link);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch (_) {
    return null; // not an absolute URL
  }
}

function source(m) {
  const href = m.link ? webLink(m.link) : null;
  if (href) return el("a", { href, rel: "noreferrer", target: "_blank", text: m.title || m.link });
  return el("span", { class: "source", text: m.title || m.link || m.chunk_id });
}

export function memoryList(memories) {
  if (!memories.length) return el("p", { class: "muted", text: "No memories in context." });
  return el("ol", { class: "memories" }, memories.map((m) => el("li", { class: "memory" },
    el("span", { class: "date", text: m.date || "undated" }), " ", source(m),
    el("blockquote", { text: m.memory }))));
}

export function showError(where, error) {
  where.append(el("p", { class: "error", role: "alert", text: `Error: ${error.message}` }));
}
