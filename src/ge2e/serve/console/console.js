// The ge2e console: every action is one call to the service's /v1 API with the key typed in above.
// The key lives in this page's memory; it is written to localStorage only when "remember" is ticked.
"use strict";

const STORE = "ge2e-console-key";
let key = null;
const recorded = {};  // clips recorded with the microphone, per card ("enroll", "verify"), as WAV blobs

const $ = (id) => document.getElementById(id);

function status(text, error = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", error);
}

function show(id, text, error = false) {
  $(id).textContent = text;
  $(id).classList.toggle("error", error);
}

async function api(method, path, body) {
  if (!key) throw new Error("enter an API key first");
  const headers = { Authorization: `Bearer ${key}` };
  if (body !== undefined && !(body instanceof FormData)) {
    headers["Content-Type"] = "application/json";
    body = JSON.stringify(body);
  }
  const response = await fetch(path, { method, headers, body });
  const data = response.status === 204 ? null : await response.json().catch(() => null);
  if (!response.ok) {
    const error = new Error(data && data.error ? data.error.message : `HTTP ${response.status}`);
    error.code = data && data.error ? data.error.code : String(response.status);
    error.status = response.status;
    throw error;
  }
  return data;
}

function audioForm(card, input, many) {
  const form = new FormData();
  const files = recorded[card] && recorded[card].length ? recorded[card] : Array.from($(input).files);
  if (!files.length) throw new Error("choose an audio file or record one");
  for (const file of many ? files : files.slice(0, 1)) form.append("audio", file, file.name || "recording.wav");
  return form;
}

// Runs one action: its errors go to the card's result line, never to an alert or the console only.
function action(button, result, run) {
  $(button).addEventListener("click", async () => {
    $(button).disabled = true;
    show(result, "working...");
    try {
      await run();
    } catch (error) {
      show(result, `${error.code ? error.code + ": " : ""}${error.message}`, true);
    } finally {
      $(button).disabled = false;
    }
  });
}

// ---------------------------------------------------------------------------------------------------- the key

function useKey(value, remember) {
  key = value || null;
  if (remember && key) localStorage.setItem(STORE, key);
  else localStorage.removeItem(STORE);
  refresh();
}

$("key-form").addEventListener("submit", (event) => {
  event.preventDefault();
  useKey($("key").value.trim(), $("remember").checked);
});

$("forget").addEventListener("click", () => {
  $("key").value = "";
  $("remember").checked = false;
  useKey(null, false);
  fillSpeakers([]);
  status("Key forgotten.");
});

// ----------------------------------------------------------------------------------------------- speakers

function fillSpeakers(speakers) {
  const body = $("speakers").tBodies[0];
  body.replaceChildren();
  for (const s of speakers) {
    const row = body.insertRow();
    for (const value of [s.id, s.name, s.n_utterances, s.speech_seconds.toFixed(1)]) {
      row.insertCell().textContent = value;
    }
  }
  for (const id of ["verify-speaker", "search-speaker"]) {
    const select = $(id);
    const chosen = select.value;
    select.replaceChildren(...speakers.filter((s) => s.n_utterances > 0).map((s) => new Option(`${s.name} (${s.id})`, s.id)));
    if (chosen) select.value = chosen;
  }
}

async function refresh() {
  if (!key) return;
  try {
    const page = await api("GET", "/v1/speakers?limit=1000");
    fillSpeakers(page.speakers);
    status(`Key accepted: ${page.total} speaker(s) in this tenant.`);
  } catch (error) {
    fillSpeakers([]);
    status(`${error.code}: ${error.message}`, true);
  }
}

$("refresh").addEventListener("click", refresh);

// ------------------------------------------------------------------------------------------------ enroll

action("enroll", "enroll-result", async () => {
  const id = $("enroll-id").value.trim();
  const name = $("enroll-name").value.trim() || id;
  if (!id) throw new Error("give the speaker an id");
  const form = audioForm("enroll", "enroll-files", true);
  try {
    await api("POST", "/v1/speakers", { id, name });
  } catch (error) {
    if (error.status !== 409) throw error;  // the speaker exists: add to its enrollments
  }
  const result = await api("POST", `/v1/speakers/${encodeURIComponent(id)}/enrollments`, form);
  show("enroll-result", `${result.speaker.name}: ${result.added.length} utterance(s) added, ` +
    `${result.speaker.n_utterances} in all, ${result.speaker.speech_seconds.toFixed(1)} s of speech.`);
  clearClips("enroll");
  await refresh();
});

// ------------------------------------------------------------------------------------------------ verify

action("verify", "verify-result", async () => {
  const speaker = $("verify-speaker").value;
  if (!speaker) throw new Error("enroll a speaker first");
  const r = await api("POST", `/v1/speakers/${encodeURIComponent(speaker)}/verify`, audioForm("verify", "verify-file", false));
  const line = $("verify-result");
  line.classList.remove("error");
  const verdict = document.createElement("span");
  verdict.className = r.decision;
  verdict.textContent = r.decision;
  line.replaceChildren(verdict, ` score ${r.score.toFixed(3)} ${r.decision === "accept" ? ">=" : "<"} threshold ` +
    `${r.threshold.toFixed(3)}, ${r.speech_seconds.toFixed(1)} s of speech${r.short ? " (short: less reliable)" : ""}`);
  const gauge = $("verify-gauge");
  const at = (score) => `${((score + 1) / 2) * 100}%`;
  gauge.querySelector(".threshold").style.left = at(r.threshold);
  const dot = gauge.querySelector(".score");
  dot.style.left = at(r.score);
  dot.classList.toggle("accept", r.decision === "accept");
  gauge.dataset.score = r.score;
  gauge.hidden = false;
  clearClips("verify");
});

// ---------------------------------------------------------------------------------------------- identify

action("identify", "identify-card", async () => {
  const top = Number($("identify-top").value) || 3;
  const r = await api("POST", `/v1/identify?top_k=${top}`, audioForm("identify", "identify-file", false));
  const body = $("identify-result").tBodies[0];
  body.replaceChildren();
  for (const c of r.candidates) {
    const row = body.insertRow();
    row.insertCell().textContent = `${c.name} (${c.speaker_id})`;
    row.insertCell().textContent = c.score.toFixed(3);
    const cell = row.insertCell();
    cell.textContent = c.decision;
    cell.className = c.decision;
  }
});

// -------------------------------------------------------------------------------------------- timelines

// One lane per name: blocks at their place in [0, duration]; each block keeps its times in data attributes.
function lane(name, blocks, duration, colour) {
  const row = document.createElement("div");
  row.className = "lane";
  row.dataset.name = name;
  const label = document.createElement("span");
  label.className = "label";
  label.textContent = name;
  const track = document.createElement("div");
  track.className = "track";
  for (const b of blocks) {
    const block = document.createElement("div");
    block.className = `block ${colour}`;
    block.style.left = `${(b.start / duration) * 100}%`;
    block.style.width = `${((b.end - b.start) / duration) * 100}%`;
    block.dataset.start = b.start;
    block.dataset.end = b.end;
    block.title = `${b.start.toFixed(2)}-${b.end.toFixed(2)} s${b.score !== undefined ? `, score ${b.score.toFixed(3)}` : ""}`;
    track.append(block);
  }
  row.append(label, track);
  return row;
}

function axis(duration) {
  const row = document.createElement("div");
  row.className = "axis";
  for (let i = 0; i <= 4; i++) {
    const tick = document.createElement("span");
    tick.textContent = `${((duration * i) / 4).toFixed(1)} s`;
    row.append(tick);
  }
  return row;
}

// ------------------------------------------------------------------------------------------------ diarize

let rttmUrl = null;

action("diarize", "diarize-result", async () => {
  const count = $("diarize-count").value;
  const query = count ? `?num_speakers=${Number(count)}` : "";
  const r = await api("POST", `/v1/diarize${query}`, audioForm("diarize", "diarize-file", false));
  const names = [...new Set(r.turns.map((t) => t.speaker))];
  const lanes = names.map((name, i) => lane(name, r.turns.filter((t) => t.speaker === name), r.duration_seconds, `c${i % 10}`));
  $("diarize-timeline").replaceChildren(...lanes, axis(r.duration_seconds));
  show("diarize-result", `${r.speakers} speaker(s)${r.estimated ? " (estimated; set the number when you know it)" : ""}, ` +
    `${r.turns.length} turns, ${r.speech_seconds.toFixed(1)} s of speech in ${r.duration_seconds.toFixed(1)} s.`);
  if (rttmUrl) URL.revokeObjectURL(rttmUrl);
  rttmUrl = URL.createObjectURL(new Blob([r.rttm], { type: "text/plain" }));
  const link = $("diarize-rttm");
  link.href = rttmUrl;
  link.hidden = false;
});

// ------------------------------------------------------------------------------------------------- search

action("search", "search-result", async () => {
  const speaker = $("search-speaker").value;
  if (!speaker) throw new Error("enroll a speaker first");
  const r = await api("POST", `/v1/speakers/${encodeURIComponent(speaker)}/search`, audioForm("search", "search-file", false));
  const found = lane(speaker, r.regions, r.duration_seconds, "found");
  found.id = "search-regions";
  const scores = lane("score", [], r.duration_seconds, "");
  const track = scores.querySelector(".track");
  for (const s of r.segments) {  // each segment's score as a bar, full height at a cosine of 1
    const bar = document.createElement("div");
    bar.className = `score-bar${s.score >= r.threshold ? " found" : ""}`;
    bar.style.left = `${(s.start / r.duration_seconds) * 100}%`;
    bar.style.width = `${((s.end - s.start) / r.duration_seconds) * 100}%`;
    bar.style.height = `${Math.max(0, s.score) * 100}%`;
    bar.title = `${s.start.toFixed(2)}-${s.end.toFixed(2)} s, score ${s.score.toFixed(3)}`;
    track.append(bar);
  }
  $("search-timeline").replaceChildren(found, scores, axis(r.duration_seconds));
  const seconds = r.regions.reduce((sum, x) => sum + x.end - x.start, 0);
  show("search-result", `${speaker}: ${r.regions.length} region(s), ${seconds.toFixed(1)} s of ` +
    `${r.speech_seconds.toFixed(1)} s of speech at threshold ${r.threshold.toFixed(2)}.`);
});

// --------------------------------------------------------------------------------------------- microphone

function clearClips(card) {
  recorded[card] = [];
  $(`${card}-clips`).textContent = "";
}

// 16-bit PCM WAV of a decoded recording: the service reads WAV on every platform, while MediaRecorder's own
// container (webm in Chromium) is not something it decodes.
function wav(buffer) {
  const samples = buffer.getChannelData(0);
  const view = new DataView(new ArrayBuffer(44 + samples.length * 2));
  const text = (at, s) => [...s].forEach((c, i) => view.setUint8(at + i, c.charCodeAt(0)));
  text(0, "RIFF"); view.setUint32(4, 36 + samples.length * 2, true); text(8, "WAVE"); text(12, "fmt ");
  view.setUint32(16, 16, true); view.setUint16(20, 1, true); view.setUint16(22, 1, true);
  view.setUint32(24, buffer.sampleRate, true); view.setUint32(28, buffer.sampleRate * 2, true);
  view.setUint16(32, 2, true); view.setUint16(34, 16, true); text(36, "data"); view.setUint32(40, samples.length * 2, true);
  samples.forEach((x, i) => view.setInt16(44 + i * 2, Math.max(-1, Math.min(1, x)) * 0x7fff, true));
  return new File([view], "recording.wav", { type: "audio/wav" });
}

function recorder(card) {
  let media = null;
  const button = $(`${card}-record`);
  button.addEventListener("click", async () => {
    if (media) {
      media.stop();
      return;
    }
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: true });
      const chunks = [];
      media = new MediaRecorder(stream);
      media.ondataavailable = (event) => chunks.push(event.data);
      media.onstop = async () => {
        stream.getTracks().forEach((t) => t.stop());
        media = null;
        button.textContent = "Record";
        button.classList.remove("recording");
        const context = new AudioContext();
        const decoded = await context.decodeAudioData(await new Blob(chunks).arrayBuffer());
        await context.close();
        (recorded[card] = recorded[card] || []).push(wav(decoded));
        $(`${card}-clips`).textContent = `${recorded[card].length} recorded clip(s), used instead of the file`;
      };
      media.start();
      button.textContent = "Stop";
      button.classList.add("recording");
    } catch (error) {
      show(`${card}-result`, `microphone: ${error.message}`, true);
    }
  });
}

recorder("enroll");
recorder("verify");

const remembered = localStorage.getItem(STORE);
if (remembered) {
  $("key").value = remembered;
  $("remember").checked = true;
  useKey(remembered, true);
}
