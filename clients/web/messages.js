// Voice messages: hold the button to record, let go to send, hear the answer.
//
// The recording (MediaRecorder: WebM/Opus in Chrome and Firefox, MP4/AAC in Safari) is posted to
// POST /v1/chat/messages. Its status changes are pushed on GET /v1/chat/updates (Server-Sent
// Events, read with fetch so the token goes in a header), and a slow poll of the message covers a
// stream that is down. The reply plays as soon as it is ready. A failed message offers "retry".

const $ = (id) => document.getElementById(id);

const STATUS_WORDS = {
  queued: "보냄 · Sent",
  transcribing: "듣는 중 · Listening",
  thinking: "생각하는 중 · Thinking",
  speaking: "대답 준비 중 · Preparing the answer",
  done: "대답 · Answered",
  failed: "실패 · Failed",
};

export class VoiceMessages {
  constructor(api, message, language) {
    this.api = api;
    this.message = message;
    this.language = language; // () => "ko" | "en"
    this.recorder = null;
    this.chunks = [];
    this.items = new Map(); // message id -> its <li>
    this.following = new Set();
    this.played = new Set();
    this.pushed = 0; // events received on the updates stream (tests read it)
    this.stream = null; // the AbortController of the open updates stream
    const button = $("vm-record");
    const start = (e) => { e.preventDefault(); this.start(); };
    const stop = (e) => { e.preventDefault(); this.stop(); };
    button.addEventListener("pointerdown", start);
    button.addEventListener("pointerup", stop);
    button.addEventListener("pointerleave", () => { if (this.recorder) this.stop(); });
    button.addEventListener("keydown", (e) => { if ((e.key === " " || e.key === "Enter") && !e.repeat) start(e); });
    button.addEventListener("keyup", (e) => { if (e.key === " " || e.key === "Enter") stop(e); });
    $("vm-send-text").addEventListener("submit", (e) => { e.preventDefault(); this.sendText(); });
  }

  state(text, recording = false) {
    $("vm-state").textContent = text;
    $("vm-record").classList.toggle("recording", recording);
  }

  async start() {
    if (this.recorder) return;
    try {
      const stream = await navigator.mediaDevices.getUserMedia({ audio: { echoCancellation: true, noiseSuppression: true } });
      const type = ["audio/webm;codecs=opus", "audio/ogg;codecs=opus", "audio/mp4"].find((t) => MediaRecorder.isTypeSupported?.(t));
      this.recorder = new MediaRecorder(stream, type ? { mimeType: type } : undefined);
      this.chunks = [];
      this.recorder.ondataavailable = (e) => { if (e.data.size) this.chunks.push(e.data); };
      this.recorder.onstop = () => {
        stream.getTracks().forEach((t) => t.stop());
        const blob = new Blob(this.chunks, { type: this.recorder.mimeType || "audio/webm" });
        this.recorder = null;
        this.sendAudio(blob);
      };
      this.recorder.start();
      this.state("녹음 중… 손을 떼면 보냅니다 · Recording… let go to send", true);
    } catch (err) {
      this.recorder = null;
      this.message(`마이크를 쓸 수 없습니다 · Cannot use the microphone: ${err.message}`);
    }
  }

  stop() {
    if (this.recorder && this.recorder.state === "recording") this.recorder.stop();
  }

  async sendAudio(blob) {
    const ext = blob.type.includes("mp4") ? "m4a" : blob.type.includes("ogg") ? "ogg" : "webm";
    const form = new FormData();
    form.append("audio", blob, `message.${ext}`);
    form.append("language", this.language());
    await this.post({ method: "POST", body: form });
  }

  async sendText() {
    const input = $("vm-text");
    const text = input.value.trim();
    if (!text) return;
    input.value = "";
    await this.post({
      method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text, language: this.language() }),
    });
  }

  async post(options) {
    this.state("보내는 중 · Sending");
    const r = await this.api("/v1/chat/messages", options);
    const body = await r.json().catch(() => ({}));
    if (r.status !== 202) {
      this.state("");
      this.message(`보내지 못했습니다 · Not sent: ${body.detail || `HTTP ${r.status}`}`);
      return;
    }
    this.message(null);
    this.state("");
    this.show(body);
    this.follow(body.id);
  }

  async follow(id) {
    if (this.following.has(id)) return;
    this.following.add(id);
    try {
      for (;;) {
        await new Promise((resolve) => setTimeout(resolve, this.stream ? 2000 : 500));
        const r = await this.api(`/v1/chat/messages/${id}`);
        if (!r.ok) return;
        const m = await r.json();
        this.show(m);
        if (m.status === "done") { this.play(m); return; }
        if (m.status === "failed") return;
      }
    } finally {
      this.following.delete(id);
    }
  }

  // A pushed `silvertalk.message.updated` updates the list at once.
  updated(m) {
    this.pushed += 1;
    this.show(m);
    if (m.status === "done") this.play(m);
  }

  async openUpdates() {
    if (this.stream) return;
    const abort = new AbortController();
    this.stream = abort;
    try {
      const r = await this.api("/v1/chat/updates", { signal: abort.signal });
      if (!r.ok) return;
      const reader = r.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          for (const line of block.split("\n")) {
            if (!line.startsWith("data: ")) continue;
            const event = JSON.parse(line.slice(6));
            if (event.type === "silvertalk.message.updated") this.updated(event.message);
          }
        }
      }
    } catch {
      // closed or offline: the poll carries on, and the stream is opened again below
    } finally {
      if (this.stream === abort) this.stream = null;
      if (!abort.signal.aborted) setTimeout(() => this.openUpdates(), 3000);
    }
  }

  closeUpdates() {
    this.stream?.abort();
    this.stream = null;
  }

  async play(m) {
    if (this.played.has(m.id)) return;
    this.played.add(m.id);
    const li = this.items.get(m.id);
    const r = await this.api(m.reply_audio_url);
    if (!r.ok || !li) return;
    const audio = li.querySelector("audio");
    audio.src = URL.createObjectURL(await r.blob());
    audio.play().catch(() => {}); // autoplay may be refused: the controls are there
  }

  show(m) {
    let li = this.items.get(m.id);
    if (!li) {
      li = document.createElement("li");
      li.dataset.testid = "vm-item";
      li.innerHTML = '<div class="vm-status"></div><div class="turn-user"></div><div class="turn-assistant"></div>' +
        '<audio controls hidden></audio><div class="vm-error"></div>';
      $("vm-list").prepend(li);
      this.items.set(m.id, li);
    }
    li.dataset.status = m.status;
    li.querySelector(".vm-status").textContent = STATUS_WORDS[m.status] || m.status;
    li.querySelector(".turn-user").textContent = m.transcript ? `나 · You: ${m.transcript}` : "";
    li.querySelector(".turn-assistant").textContent = m.reply_text ? `말벗 · Companion: ${m.reply_text}` : "";
    li.querySelector("audio").hidden = m.status !== "done";
    const error = li.querySelector(".vm-error");
    error.replaceChildren();
    if (m.status === "failed") {
      error.append(document.createTextNode(m.error || ""));
      const retry = document.createElement("button");
      retry.type = "button";
      retry.className = "small";
      retry.textContent = "다시 보내기 · Retry";
      retry.addEventListener("click", async () => {
        const r = await this.api(`/v1/chat/messages/${m.id}/retry`, { method: "POST" });
        if (r.status === 202) { this.show(await r.json()); this.follow(m.id); }
      });
      error.append(" ", retry);
    }
  }

  async load() {
    this.openUpdates();
    const r = await this.api("/v1/chat/messages?limit=20");
    if (!r.ok) return;
    const page = await r.json();
    for (const m of page.items.slice().reverse()) {
      if (m.status === "done") this.played.add(m.id); // old answers do not replay
      this.show(m);
    }
  }
}
