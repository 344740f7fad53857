// The FlexSelect Agent console: plain DOM code over the agent's HTTP API (/openapi.json describes it).
"use strict";

const state = { token: localStorage.getItem("flexselect-token") || "", streams: [] };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

function withToken(url) {
  if (!state.token || !url) return url;
  return url + (url.includes("?") ? "&" : "?") + "access_token=" + encodeURIComponent(state.token);
}

async function api(path, options = {}) {
  const headers = Object.assign({}, options.headers || {});
  if (state.token) headers["Authorization"] = "Bearer " + state.token;
  const response = await fetch(path, Object.assign({}, options, { headers }));
  if (response.status === 401) {
    document.getElementById("token-form").hidden = false;
  }
  const body = (response.headers.get("content-type") || "").includes("json") ? await response.json() : null;
  return { status: response.status, body };
}

const time = (iso) => new Date(iso).toLocaleTimeString();
const seconds = (iso) => new Date(iso).getTime() / 1000;

function streamCard(s) {
  const fill = Math.round(s.memory_fill * 1000) / 10;
  const img = el("img", { class: "latest", alt: s.stream + " latest frame" });
  if (s.latest_picture) img.src = withToken(s.latest_picture.url);
  const facts = el("dl", {},
    el("dt", { text: "memory" }), el("dd", { class: "memory", text: `${s.memory_tokens} / ${s.memory_max_tokens} tokens (${fill}%)` }),
    el("dt", { text: "frames" }), el("dd", { text: String(s.frames) }),
    el("dt", { text: "reconnects" }), el("dd", { class: "reconnects", text: String(s.reconnects) }),
    el("dt", { text: "pictures" }), el("dd", { text: String(s.pictures) }),
  );
  if (s.last_error) facts.append(el("dt", { text: "error" }), el("dd", { text: s.last_error }));
  const bar = el("div", { class: "bar", title: `memory ${fill}% full` }, el("div", { style: `width:${fill}%` }));
  return el("article", { class: "stream", id: "stream-" + s.stream, "data-stream": s.stream },
    el("div", { class: "head" }, el("strong", { text: s.stream }), el("span", { class: "badge state " + s.state, text: s.state })),
    img, bar, facts);
}

async function refreshStreams() {
  const { status, body } = await api("/api/v1/streams");
  if (status !== 200) return;
  state.streams = body.streams;
  const grid = document.getElementById("streams");
  grid.replaceChildren(...(body.streams.length ? body.streams.map(streamCard) : [el("p", { class: "muted", text: "No streams." })]));
  const select = document.getElementById("ask-stream");
  const chosen = select.value;
  select.replaceChildren(el("option", { value: "", text: "all streams" }),
    ...body.streams.map((s) => el("option", { value: s.stream, text: s.stream })));
  select.value = chosen;
}

async function refreshReady() {
  const { status } = await api("/health/ready");
  const badge = document.getElementById("ready");
  badge.textContent = status === 200 ? "ready" : "not ready";
  badge.className = "badge " + (status === 200 ? "ready" : "not-ready");
}

function timeline(stream, spans) {
  const info = state.streams.find((s) => s.stream === stream);
  const bar = el("div", { class: "timeline", "data-stream": stream }, el("span", { class: "label", text: stream }));
  if (!info || !info.first_time || !info.last_time) return bar;
  const t0 = seconds(info.first_time), t1 = seconds(info.last_time), width = Math.max(t1 - t0, 1e-3);
  for (const e of spans) {
    const left = Math.max(0, (seconds(e.start) - t0) / width * 100);
    const right = Math.min(100, (seconds(e.end) - t0) / width * 100);
    bar.append(el("div", { class: "span", style: `left:${left}%;width:${Math.max(right - left, 0.5)}%`,
      title: `${time(e.start)} – ${time(e.end)} (score ${e.score.toFixed(3)})` }));
  }
  return bar;
}

function showAnswer(question, status, body) {
  document.getElementById("answer").hidden = false;
  document.getElementById("answer-question").textContent = question;
  const text = document.getElementById("answer-text");
  const meta = document.getElementById("answer-meta");
  const timelines = document.getElementById("timelines");
  const strip = document.getElementById("evidence");
  if (!body || !body.ok) {
    text.parentElement.className = "answer error";
    text.textContent = body && body.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${status}`;
    meta.textContent = "";
    timelines.replaceChildren();
    strip.replaceChildren();
    return;
  }
  text.parentElement.className = "answer";
  text.textContent = body.answer;
  meta.textContent = `${body.tokens.used} of ${body.tokens.retained} tokens, ${Math.round(body.timings_ms.total || 0)} ms`;
  const byStream = new Map();
  for (const e of body.evidence) byStream.set(e.stream, [...(byStream.get(e.stream) || []), e]);
  timelines.replaceChildren(...[...byStream].map(([stream, spans]) => timeline(stream, spans)));
  strip.replaceChildren(...body.evidence.filter((e) => e.picture).map((e, i) =>
    el("figure", { class: "evidence" },
      el("img", { class: "evidence-picture", src: withToken(e.picture), alt: `evidence ${i + 1}`, "data-start": e.start, "data-end": e.end }),
      el("figcaption", { text: `${e.stream} ${time(e.start)}–${time(e.end)} · ${e.score.toFixed(3)}` }))));
}

async function ask(event) {
  event.preventDefault();
  const question = document.getElementById("ask-question").value;
  const stream = document.getElementById("ask-stream").value;
  const request = { id: "console-" + Date.now().toString(36) + Math.random().toString(36).slice(2, 6), question };
  if (stream) request.streams = [stream];
  const button = document.getElementById("ask-submit");
  button.disabled = true;
  try {
    const { status, body } = await api("/api/v1/ask", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(request),
    });
    showAnswer(question, status, body);
  } finally {
    button.disabled = false;
  }
}

async function refreshWatches() {
  const watches = await api("/api/v1/watches");
  if (watches.status === 200) {
    document.querySelector("#watches tbody").replaceChildren(...watches.body.watches.map((w) =>
      el("tr", {}, el("td", { text: w.id }), el("td", { text: w.question }),
        el("td", { text: (w.streams || ["all"]).join(", ") }), el("td", { text: w.expect || "every answer" }))));
  }
  const events = await api("/api/v1/events?limit=20");
  if (events.status === 200) {
    document.getElementById("events").replaceChildren(...events.body.events.map((e) => {
      const picture = e.evidence.find((x) => x.picture);
      const item = el("li", {}, el("span", { class: "muted", text: time(e.at) }),
        el("strong", { text: e.watch_id }), el("span", { text: `${e.stream}: ${e.answer}` }));
      if (picture) item.prepend(el("img", { src: withToken(picture.picture), alt: "event evidence" }));
      return item;
    }));
  }
}

document.getElementById("ask-form").addEventListener("submit", ask);
document.getElementById("token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = document.getElementById("token").value;
  localStorage.setItem("flexselect-token", state.token);
  document.getElementById("token-form").hidden = true;
  refreshAll();
});

function refreshAll() {
  refreshReady();
  refreshStreams();
  refreshWatches();
}
refreshAll();
setInterval(() => { refreshReady(); refreshStreams(); }, 2000);
setInterval(refreshWatches, 5000);
