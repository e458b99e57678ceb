// The Silvertalk test page: log in, call the companion, look at past conversations and records.
//
// No build step: plain ES modules served by the API server. `window.silvertalk` exposes the
// current call's counters (played samples, barge-ins, truncates, events seen) for tests.

import { Call, CallError } from "./call.js";
import { loadRecords } from "./records.js";
import { VoiceMessages } from "./messages.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "silvertalk.token";

const app = { token: sessionStorage.getItem(TOKEN_KEY), call: null, playedTotal: 0, playedBase: 0 };
window.silvertalk = app;

// --- messages and login ----------------------------------------------------------------------

function message(text, kind = "error") {
  const box = $("message");
  box.hidden = !text;
  box.textContent = text || "";
  box.className = kind === "info" ? "message info" : "message";
}

async function api(path, options = {}) {
  const headers = { ...(options.headers || {}) };
  if (app.token) headers.Authorization = `Bearer ${app.token}`;
  const r = await fetch(path, { ...options, headers });
  if (r.status === 401) {
    logout("로그인이 만료되었습니다. 다시 로그인해 주세요. · Your login expired: please log in again.");
    throw new Error("unauthorised");
  }
  return r;
}

async function showLoggedIn() {
  const r = await api("/v1/users/me");
  if (!r.ok) throw new Error(`HTTP ${r.status}`);
  const me = await r.json();
  $("who-name").textContent = me.display_name || me.dev_name || me.name || "";
  $("who").hidden = false;
  $("login").hidden = true;
  $("tabs").hidden = false;
  showTab("call");
  if (me.language && ["ko", "en"].includes(me.language)) $("language").value = me.language;
}

async function useToken(token) {
  app.token = token;
  sessionStorage.setItem(TOKEN_KEY, token);
  try {
    await showLoggedIn();
    message(null);
  } catch (err) {
    if (app.token) logout(`토큰을 확인할 수 없습니다 · Could not check the token: ${err.message}`);
  }
}

function logout(text) {
  if (app.call) app.call.hangup();
  voiceMessages.closeUpdates();
  app.token = null;
  sessionStorage.removeItem(TOKEN_KEY);
  $("who").hidden = true;
  $("login").hidden = false;
  $("tabs").hidden = true;
  $("call-panel").hidden = true;
  $("records-panel").hidden = true;
  $("messages-panel").hidden = true;
  message(text || null, "info");
}

$("dev-login-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = $("dev-login-name").value.trim();
  if (!name) return;
  try {
    const r = await fetch("/v1/auth/dev-login", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name }),
    });
    if (r.status === 404 || r.status === 403) {
      message("이 서버에서는 개발용 로그인이 꺼져 있습니다. 토큰을 붙여 넣어 주세요. · " +
        "Dev login is off on this server: paste an access token instead.");
      return;
    }
    if (!r.ok) {
      message(`로그인 실패 · Login failed: HTTP ${r.status}`);
      return;
    }
    await useToken((await r.json()).access_token);
  } catch (err) {
    message(`서버에 연결할 수 없습니다 · Cannot reach the server: ${err.message}`);
  }
});

$("token-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const token = $("token-input").value.trim().replace(/^Bearer\s+/i, "");
  if (token) useToken(token);
});

$("logout").addEventListener("click", () => logout());

// --- tabs ------------------------------------------------------------------------------------

const voiceMessages = new VoiceMessages(api, message, () => $("language").value);
app.messages = voiceMessages;

function showTab(name) {
  for (const tab of ["call", "messages", "records"]) {
    $(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
    $(`${tab}-panel`).hidden = tab !== name;
  }
  if (name === "records") loadRecords(api, message);
  if (name === "messages") voiceMessages.load();
}
$("tab-call").addEventListener("click", () => showTab("call"));
$("tab-records").addEventListener("click", () => showTab("records"));
$("tab-messages").addEventListener("click", () => showTab("messages"));
$("records-refresh").addEventListener("click", () => loadRecords(api, message));

// --- the call --------------------------------------------------------------------------------

const userTurns = new Map(); // item id -> {text, final, line: its line in "This call" once final}
const replyLines = new Map(); // response id -> its line in "This call"
let currentItem = null;

function renderUser() {
  const el = $("user-transcript");
  const turn = userTurns.get(currentItem);
  el.replaceChildren();
  if (!turn) return;
  const span = document.createElement("span");
  span.textContent = turn.text;
  if (!turn.final) span.className = "partial";
  el.append(span);
}

function addTurnLine(className, text, extra) {
  const li = document.createElement("li");
  const who = document.createElement("div");
  who.className = className;
  who.textContent = text;
  li.append(who);
  if (extra) li.append(extra);
  $("turns").append(li);
  return li;
}

function timingsLine(timings) {
  const parts = Object.entries(timings || {})
    .filter(([, v]) => typeof v === "number")
    .map(([k, v]) => `${k}=${Math.round(v * 10) / 10}`);
  if (parts.length === 0) return null;
  const div = document.createElement("div");
  div.className = "timings";
  div.dataset.testid = "turn-timings";
  div.textContent = parts.join("  ");
  return div;
}

const ui = {
  state(state, label) {
    const el = $("call-state");
    el.dataset.state = state;
    el.textContent = label;
  },
  message,
  level(v) {
    $("mic-level").style.width = `${Math.round(v * 100)}%`;
  },
  connected() {
    $("hangup").disabled = false;
  },
  userText({ itemId, text, delta, partial }) {
    currentItem = itemId || currentItem;
    const turn = userTurns.get(currentItem) || { text: "", final: false };
    if (text !== undefined) turn.text = text;
    if (delta) turn.text += delta;
    turn.final = !partial;
    userTurns.set(currentItem, turn);
    renderUser();
    if (!partial) turn.line = addTurnLine("turn-user", `나 · You: ${turn.text}`);
  },
  removeItem(itemId) {
    // The server joined this turn into the next one (the caller was pausing): its words come again there.
    userTurns.get(itemId)?.line?.remove();
    userTurns.delete(itemId);
  },
  assistantText(text) {
    $("assistant-text").textContent = text;
  },
  turn({ id, shown, status, timings }) {
    // Called again as more of the reply is heard, or when a barge-in cuts it: update its line.
    const mark = status && status !== "completed" ? ` (${status === "cancelled" ? "끊김 · interrupted" : status})` : "";
    const text = `말벗 · Companion: ${shown || "…"}${mark}`;
    const li = replyLines.get(id);
    if (li) li.firstChild.textContent = text;
    else replyLines.set(id, addTurnLine("turn-assistant", text, timingsLine(timings)));
  },
  async showPhoto(photo, memory) {
    // The photo file needs the bearer token, so it is fetched as a blob (as in Records).
    const r = await api(photo.urls.medium);
    if (!r.ok) return;
    const img = $("photo-show-img");
    if (img.src.startsWith("blob:")) URL.revokeObjectURL(img.src);
    img.src = URL.createObjectURL(await r.blob());
    img.alt = photo.caption || (memory && memory.title) || "photo";
    $("photo-show-caption").textContent = [memory && memory.title, photo.caption].filter(Boolean).join(" · ");
    $("photo-show").dataset.photoId = photo.id;
    $("photo-show").hidden = false;
  },
  stats(s) {
    app.playedTotal = app.playedBase + s.played;
    $("played-samples").textContent = String(app.playedTotal);
    $("buffered-ms").textContent = String(Math.round((s.buffered * 1000) / 24000));
    $("barge-ins").textContent = String(s.bargeIns);
  },
  bargeIn(s) {
    $("barge-ins").textContent = String(s.bargeIns);
  },
  ended({ badToken }) {
    finishCall();
    if (badToken) logout("로그인이 만료되었거나 잘못되었습니다. 다시 로그인해 주세요. · " +
      "The token was refused (bad or expired): please log in again.");
  },
};

function finishCall() {
  if (app.call) app.playedBase += app.call.stats.played;
  $("call").disabled = false;
  $("hangup").disabled = true;
  $("language").disabled = false;
  $("speed").disabled = false;
}

$("call").addEventListener("click", async () => {
  if (app.call && !app.call.ended) return;
  message(null);
  $("call").disabled = true;
  $("hangup").disabled = false;
  $("language").disabled = true;
  $("speed").disabled = true;
  $("turns").replaceChildren();
  $("assistant-text").textContent = "";
  $("photo-show").hidden = true;
  userTurns.clear();
  replyLines.clear();
  renderUser();
  const call = new Call({ token: app.token, language: $("language").value, speed: Number($("speed").value), ui });
  app.call = call;
  try {
    await call.start();
  } catch (err) {
    call.ended = true;
    call.stopAudio();
    message(err instanceof CallError ? err.message : `통화를 시작할 수 없습니다 · Could not start the call: ${err}`);
    ui.state("error", "연결 안 됨 · Not connected");
    finishCall();
  }
});

$("photo-show-close").addEventListener("click", () => {
  $("photo-show").hidden = true;
});

$("hangup").addEventListener("click", () => {
  if (!app.call) return;
  app.call.hangup();
  finishCall();
});

// --- start -----------------------------------------------------------------------------------

if (app.token) useToken(app.token);
else $("dev-login-name").focus();
