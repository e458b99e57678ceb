// The "Records" tab: past conversations with their turns, and the user's photos, events and
// memories, read-only. Photo thumbnails need the bearer token, so they are fetched as blobs.

const $ = (id) => document.getElementById(id);
const thumbUrls = [];

function items(json) {
  // Lists may come bare or wrapped ({items: [...]}, {data: [...]}).
  if (Array.isArray(json)) return json;
  for (const key of ["items", "data", "results", "conversations", "photos", "events", "memories"]) {
    if (json && Array.isArray(json[key])) return json[key];
  }
  return [];
}

function when(value) {
  if (!value) return "";
  const d = new Date(value);
  return Number.isNaN(d.getTime()) ? String(value) : d.toLocaleString();
}

function li(text, className) {
  const el = document.createElement("li");
  el.textContent = text;
  if (className) el.className = className;
  return el;
}

async function getList(api, path) {
  const r = await api(path);
  if (!r.ok) throw new Error(`${path}: HTTP ${r.status}`);
  return items(await r.json());
}

async function showTurns(api, conversation, host) {
  const r = await api(`/v1/conversations/${conversation.id}`);
  if (!r.ok) throw new Error(`HTTP ${r.status}`);
  const detail = await r.json();
  const list = document.createElement("ol");
  for (const turn of detail.turns || []) {
    const who = turn.role === "user" ? "나 · You:" : "말벗 · Companion:";
    const mark = turn.status && turn.status !== "completed" ? ` (${turn.status})` : "";
    const row = li(`${who} ${turn.text || ""}${mark}`);
    const timings = Object.entries(turn.timings || {}).filter(([, v]) => typeof v === "number");
    if (timings.length) {
      const t = document.createElement("div");
      t.className = "timings";
      t.textContent = timings.map(([k, v]) => `${k}=${Math.round(v * 10) / 10}`).join("  ");
      row.append(t);
    }
    list.append(row);
  }
  if (!list.children.length) list.append(li("(대화 없음 · no turns)"));
  host.replaceChildren(list);
}

async function loadConversations(api, message) {
  const host = $("conversations");
  host.replaceChildren();
  for (const c of await getList(api, "/v1/conversations")) {
    const row = document.createElement("li");
    const button = document.createElement("button");
    button.type = "button";
    button.className = "link";
    const count = typeof c.turn_count === "number" ? ` · ${c.turn_count}` : "";
    button.textContent = `${when(c.started_at || c.created_at)}${count}${c.summary ? ` — ${c.summary}` : ""}`;
    const turns = document.createElement("div");
    button.addEventListener("click", () => showTurns(api, c, turns).catch((e) => message(`${e.message}`)));
    row.append(button, turns);
    host.append(row);
  }
  if (!host.children.length) host.append(li("(아직 없음 · none yet)"));
}

async function loadPhotos(api) {
  const host = $("photos");
  for (const url of thumbUrls.splice(0)) URL.revokeObjectURL(url);
  host.replaceChildren();
  for (const p of await getList(api, "/v1/photos")) {
    const fig = document.createElement("figure");
    const img = document.createElement("img");
    img.alt = p.caption || "photo";
    const cap = document.createElement("figcaption");
    cap.textContent = p.caption || when(p.taken_at || p.created_at);
    fig.append(img, cap);
    host.append(fig);
    api(`/v1/photos/${p.id}/file?size=thumb`).then(async (r) => {
      if (!r.ok) return;
      const url = URL.createObjectURL(await r.blob());
      thumbUrls.push(url);
      img.src = url;
    });
  }
  if (!host.children.length) host.append("(사진 없음 · no photos)");
}

async function loadEvents(api) {
  const host = $("events");
  host.replaceChildren();
  for (const e of await getList(api, "/v1/events")) host.append(li(`${when(e.starts_at)} — ${e.title || ""}`));
  if (!host.children.length) host.append(li("(일정 없음 · no events)"));
}

async function loadMemories(api) {
  const host = $("memories");
  host.replaceChildren();
  for (const m of await getList(api, "/v1/memories")) {
    const row = li(`${m.title || ""}${m.happened_on ? ` (${m.happened_on})` : ""}`, "turn-user");
    if (m.body) {
      const body = document.createElement("div");
      body.textContent = m.body;
      row.append(body);
    }
    host.append(row);
  }
  if (!host.children.length) host.append(li("(추억 없음 · no memories)"));
}

export async function loadRecords(api, message) {
  // Each list loads on its own, so one missing endpoint does not blank the others.
  const results = await Promise.allSettled([
    loadConversations(api, message), loadPhotos(api), loadEvents(api), loadMemories(api),
  ]);
  const failed = results.filter((r) => r.status === "rejected" && r.reason.message !== "unauthorised");
  if (failed.length) message(`일부 기록을 불러오지 못했습니다 · Some records could not load: ${failed[0].reason.message}`);
}
