// One voice call over /v1/realtime (OpenAI Realtime protocol): microphone -> socket -> speaker.
//
// The page talks to it through `ui` callbacks (state, message, userText, assistantText, turn,
// stats, level). Audio runs in two AudioWorklets at 24 kHz: capture-worklet.js cuts the
// microphone into 20 ms pcm16 frames, playback-worklet.js plays reply audio through a small
// jitter buffer and counts what was actually played, which barge-in needs for the truncate.
// The reply text is shown as it is spoken: each transcript delta is pinned to the audio position
// it arrived at and revealed when playback gets there, so an interrupted reply shows what was heard.

export const RATE = 24000;
const FRAME_MS = 20;
const RETRY_DELAYS_MS = [1000, 2000, 4000, 8000, 8000];
const MAX_SOCKET_BACKLOG = 512 * 1024; // bytes; beyond this the network is not keeping up

export class CallError extends Error {}

function toBase64(buffer) {
  const bytes = new Uint8Array(buffer);
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000) s += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  return btoa(s);
}

function fromBase64(text) {
  const s = atob(text);
  const bytes = new Uint8Array(s.length);
  for (let i = 0; i < s.length; i++) bytes[i] = s.charCodeAt(i);
  return bytes.buffer;
}

function micError(err) {
  const name = err && err.name;
  if (name === "NotAllowedError" || name === "SecurityError") {
    return "마이크 사용이 거부되었습니다. 주소창의 마이크 아이콘에서 허용한 뒤 다시 눌러 주세요. · " +
      "Microphone access was denied: allow it for this site (address bar icon) and press Call again.";
  }
  if (name === "NotFoundError" || name === "OverconstrainedError") {
    return "마이크를 찾을 수 없습니다. · No microphone was found: plug one in and press Call again.";
  }
  if (name === "NotReadableError") {
    return "다른 프로그램이 마이크를 쓰고 있습니다. · The microphone is busy in another program.";
  }
  return `마이크를 열 수 없습니다 · Could not open the microphone: ${err && err.message ? err.message : err}`;
}

export class Call {
  constructor({ token, language, speed, ui }) {
    this.token = token;
    this.language = language;
    this.speed = speed;
    this.ui = ui;
    this.ws = null;
    this.ended = false;
    this.retries = 0;
    this.responseId = null; // the response in progress, if any
    this.audioItemId = null; // the item its audio belongs to
    this.playerActive = false;
    this.replies = new Map(); // response id -> reply (see newReply)
    this.queued = new Map(); // item id -> reply samples handed to the player
    this.heard = new Map(); // item id -> reply samples played
    this.stats = { played: 0, buffered: 0, underruns: 0, bargeIns: 0, truncates: [], sent: {}, received: {},
      droppedFrames: 0 };
  }

  // --- lifecycle ---------------------------------------------------------------------------

  async start() {
    this.ui.state("connecting", "연결 중 · Connecting…");
    await this.startAudio();
    this.connect();
  }

  hangup() {
    this.ended = true;
    if (this.ws) this.ws.close(1000, "hang up");
    this.stopAudio();
    this.ui.state("ended", "통화 종료 · Call ended");
  }

  async startAudio() {
    if (!window.isSecureContext || !navigator.mediaDevices || !navigator.mediaDevices.getUserMedia) {
      throw new CallError("마이크는 https 또는 localhost 주소에서만 쓸 수 있습니다. · " +
        "The microphone needs a secure page: open it over https or at localhost.");
    }
    try {
      this.stream = await navigator.mediaDevices.getUserMedia({
        audio: { echoCancellation: true, noiseSuppression: true, autoGainControl: true, channelCount: 1 },
      });
    } catch (err) {
      throw new CallError(micError(err));
    }
    // Ask for a 24 kHz context so the browser resamples the microphone and the speaker for us;
    // where it cannot mix rates, fall back to the device rate and let the worklets resample.
    let ctx = new AudioContext({ sampleRate: RATE, latencyHint: "interactive" });
    let source;
    try {
      source = ctx.createMediaStreamSource(this.stream);
    } catch {
      await ctx.close();
      ctx = new AudioContext({ latencyHint: "interactive" });
      source = ctx.createMediaStreamSource(this.stream);
    }
    this.ctx = ctx;
    await ctx.audioWorklet.addModule(new URL("./capture-worklet.js", import.meta.url));
    await ctx.audioWorklet.addModule(new URL("./playback-worklet.js", import.meta.url));
    this.capture = new AudioWorkletNode(ctx, "capture-processor", {
      processorOptions: { targetRate: RATE, frameMs: FRAME_MS },
    });
    this.capture.port.onmessage = (e) => this.onCapture(e.data);
    this.player = new AudioWorkletNode(ctx, "playback-processor", {
      outputChannelCount: [1], processorOptions: { sourceRate: RATE, prebufferMs: 80 },
    });
    this.player.port.onmessage = (e) => this.onPlayer(e.data);
    // The capture node must be pulled by the graph to run; a muted gain keeps it silent.
    const mute = new GainNode(ctx, { gain: 0 });
    source.connect(this.capture).connect(mute).connect(ctx.destination);
    this.player.connect(ctx.destination);
    if (ctx.state === "suspended") await ctx.resume();
  }

  stopAudio() {
    if (this.capture) this.capture.port.postMessage({ type: "stop" });
    if (this.stream) for (const track of this.stream.getTracks()) track.stop();
    if (this.ctx && this.ctx.state !== "closed") this.ctx.close();
    this.capture = this.player = this.ctx = this.stream = null;
    this.ui.level(0);
  }

  // --- the socket --------------------------------------------------------------------------

  connect() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const url = `${scheme}://${location.host}/v1/realtime?model=silvertalk`;
    // Browsers cannot set headers on a WebSocket: the token travels as a subprotocol.
    const ws = new WebSocket(url, ["realtime", `openai-insecure-api-key.${this.token}`]);
    this.ws = ws;
    let opened = false;
    ws.onopen = () => {
      opened = true;
      this.retries = 0;
      this.ui.message(null);
      this.send({ type: "session.update", session: this.session() });
    };
    ws.onmessage = (e) => {
      if (typeof e.data === "string") this.onEvent(JSON.parse(e.data));
    };
    ws.onclose = (e) => {
      if (this.ws !== ws || this.ended) return;
      this.ws = null;
      this.stopPlayback();
      if (!opened) this.onRefused();
      else this.onDropped(e);
    };
  }

  session() {
    return {
      type: "realtime",
      output_modalities: ["audio"],
      audio: {
        input: {
          format: { type: "audio/pcm", rate: RATE },
          transcription: { language: this.language },
          turn_detection: { type: "server_vad", create_response: true, interrupt_response: true },
        },
        output: { format: { type: "audio/pcm", rate: RATE }, speed: this.speed },
      },
    };
  }

  send(event) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    this.ws.send(JSON.stringify(event));
    this.stats.sent[event.type] = (this.stats.sent[event.type] || 0) + 1;
    return true;
  }

  async onRefused() {
    // The browser hides the HTTP status of a refused upgrade; ask the REST API whether the token is good.
    let tokenOk = false;
    try {
      const r = await fetch("/v1/users/me", { headers: { Authorization: `Bearer ${this.token}` } });
      tokenOk = r.ok;
    } catch {
      tokenOk = true; // the server itself is unreachable: treat like a dropped connection
    }
    if (!tokenOk) {
      this.fail("로그인이 만료되었거나 잘못되었습니다. 다시 로그인해 주세요. · " +
        "The token was refused (bad or expired): please log in again.", { badToken: true });
    } else if (this.retries < RETRY_DELAYS_MS.length) {
      this.retry("서버에 연결할 수 없습니다. 다시 시도합니다… · Could not reach the call server, retrying…");
    } else {
      this.fail("통화 서버가 연결을 거부했습니다. · The call server refused the connection. Press Call to try again.");
    }
  }

  onDropped(e) {
    if (e.code === 1000 || e.code === 1008 || (e.code >= 4000 && e.code < 5000)) {
      // The server ended the call on purpose (idle, too long, too many calls): say why, no retry.
      const why = e.reason ? `: ${e.reason}` : "";
      this.fail(`통화가 끝났습니다 · The call was ended by the server${why}.`, { info: e.code === 1000 });
      return;
    }
    this.retry("연결이 끊겼습니다. 다시 연결하는 중… · The connection dropped: reconnecting…");
  }

  retry(text) {
    if (this.retries >= RETRY_DELAYS_MS.length) {
      this.fail("연결이 끊겼습니다. 전화 걸기를 다시 눌러 주세요. · The connection dropped. Press Call to try again.");
      return;
    }
    const delay = RETRY_DELAYS_MS[this.retries++];
    this.ui.message(text, "info");
    this.ui.state("reconnecting", `다시 연결 중 · Reconnecting (${this.retries})…`);
    this.retryTimer = setTimeout(() => {
      if (!this.ended) this.connect();
    }, delay);
  }

  fail(text, { badToken = false, info = false } = {}) {
    this.ended = true;
    clearTimeout(this.retryTimer);
    this.stopAudio();
    this.ui.message(text, info ? "info" : "error");
    this.ui.state(info ? "ended" : "error", info ? "통화 종료 · Call ended" : "연결 안 됨 · Not connected");
    this.ui.ended({ badToken });
  }

  // --- audio in and out ----------------------------------------------------------------------

  onCapture(msg) {
    if (msg.type === "level") {
      this.ui.level(Math.min(1, Math.max(0, (20 * Math.log10(msg.rms + 1e-9) + 60) / 60)));
    } else if (msg.type === "audio" && this.ws && this.ws.readyState === WebSocket.OPEN) {
      if (this.ws.bufferedAmount > MAX_SOCKET_BACKLOG) {
        this.stats.droppedFrames++;
        return;
      }
      this.send({ type: "input_audio_buffer.append", audio: toBase64(msg.pcm) });
    }
  }

  onPlayer(msg) {
    if (msg.itemId) this.heard.set(msg.itemId, msg.itemPlayed);
    if (msg.type === "stats") {
      Object.assign(this.stats, { played: msg.played, buffered: msg.buffered, underruns: msg.underruns });
      for (const reply of this.replies.values()) this.reveal(reply, !msg.active && reply.status !== null);
      if (msg.active !== this.playerActive) {
        this.playerActive = msg.active;
        if (msg.active) this.ui.state("speaking", "말하는 중 · Speaking");
        else if (!this.responseId) this.settle();
      }
      this.ui.stats(this.stats);
    } else if (msg.type === "cleared") {
      this.stats.played = msg.played;
      this.stats.buffered = 0;
      this.playerActive = false;
      const inFlight = this.responseId && this.audioItemId === msg.itemId;
      if (msg.itemId && (msg.dropped > 0 || inFlight) && this.bargeInPending) {
        const audioEndMs = Math.floor((msg.itemPlayed * 1000) / RATE);
        this.send({ type: "conversation.item.truncate", item_id: msg.itemId, content_index: 0,
          audio_end_ms: audioEndMs });
        this.stats.truncates.push({ item_id: msg.itemId, audio_end_ms: audioEndMs, played: msg.played,
          dropped: msg.dropped, at_ms: Math.round(performance.now()) });
        for (const reply of this.replies.values()) {
          if (reply.itemId === msg.itemId) this.cutOff(reply);
        }
      }
      this.bargeInPending = false;
      this.ui.stats(this.stats);
    }
  }

  stopPlayback() {
    if (this.player) this.player.port.postMessage({ type: "clear" });
  }

  bargeIn() {
    // The caller talks over the reply: silence it now and tell the server what was heard.
    this.stats.bargeIns++;
    this.bargeInPending = true;
    // The server holds the reply's audio at once; it either cancels it (words) or, for a cough,
    // resumes it from where we stopped hearing, with more audio for the same item.
    if (this.responseId) this.cutOff(this.replies.get(this.responseId));
    this.stopPlayback();
    this.ui.bargeIn(this.stats);
  }

  settle() {
    // Nothing is playing or coming: the caller is talking, or we are waiting for them.
    if (this.userSpeaking) this.ui.state("hearing", "말씀 듣는 중 · Hearing you");
    else this.ui.state("listening", "듣고 있어요 · Listening");
  }

  // --- reply text, as spoken -----------------------------------------------------------------

  newReply(id) {
    // text: everything received; shown: what playback has reached; pending: [{at, text}] not yet heard.
    return { id, itemId: null, text: "", shown: "", pending: [], status: null, timings: {}, cut: false };
  }

  reveal(reply, all = false) {
    if (!reply || reply.cut || reply.pending.length === 0) return;
    const heard = reply.itemId ? this.heard.get(reply.itemId) || 0 : 0;
    let changed = false;
    while (reply.pending.length && (all || reply.pending[0].at <= heard)) {
      reply.shown += reply.pending.shift().text;
      changed = true;
    }
    if (!changed) return;
    if (reply.id === this.shownReply) this.ui.assistantText(reply.shown);
    if (reply.status) this.ui.turn(reply);
  }

  cutOff(reply) {
    // Barge-in: what was not played was not heard; the rest of the text is dropped.
    if (!reply || reply.cut) return;
    this.reveal(reply);
    reply.cut = true;
    reply.pending = [];
    if (reply.id === this.shownReply) this.ui.assistantText(reply.shown);
    if (reply.status) this.ui.turn({ ...reply, status: "cancelled" });
  }

  // --- server events ---------------------------------------------------------------------------

  onEvent(ev) {
    this.stats.received[ev.type] = (this.stats.received[ev.type] || 0) + 1;
    switch (ev.type) {
      case "session.updated":
        this.ui.state("listening", "듣고 있어요 · Listening");
        this.ui.connected();
        break;
      case "input_audio_buffer.speech_started":
        this.userSpeaking = true;
        if (this.playerActive || this.responseId) this.bargeIn();
        this.ui.userText({ itemId: ev.item_id, text: "", partial: true });
        this.ui.state("hearing", "말씀 듣는 중 · Hearing you");
        break;
      case "input_audio_buffer.speech_stopped":
        this.userSpeaking = false;
        this.ui.state("thinking", "생각 중 · Thinking");
        break;
      case "conversation.item.input_audio_transcription.delta":
        this.ui.userText({ itemId: ev.item_id, delta: ev.delta || "", partial: true });
        break;
      case "conversation.item.input_audio_transcription.completed":
        this.ui.userText({ itemId: ev.item_id, text: ev.transcript || "", partial: false });
        break;
      case "conversation.item.deleted":
        this.ui.removeItem(ev.item_id);
        break;
      case "response.created":
        this.responseId = ev.response && ev.response.id;
        this.replies.set(this.responseId, this.newReply(this.responseId));
        this.shownReply = this.responseId;
        this.ui.assistantText("");
        break;
      case "response.output_audio.delta":
      case "response.audio.delta":
        if (!this.player) break;
        this.audioItemId = ev.item_id;
        {
          const pcm = fromBase64(ev.delta || "");
          this.queued.set(ev.item_id, (this.queued.get(ev.item_id) || 0) + pcm.byteLength / 2);
          const reply = this.replies.get(ev.response_id);
          if (reply) {
            reply.itemId = ev.item_id;
            reply.cut = false; // audio after a barge-in: the server resumed the reply
          }
          this.player.port.postMessage({ type: "chunk", itemId: ev.item_id, pcm }, [pcm]);
        }
        break;
      case "response.output_audio.done":
      case "response.audio.done":
        if (this.player) this.player.port.postMessage({ type: "end" });
        break;
      case "response.output_audio_transcript.delta":
      case "response.audio_transcript.delta": {
        const reply = this.replies.get(ev.response_id);
        if (!reply || reply.cut) break;
        reply.itemId = reply.itemId || ev.item_id;
        reply.text += ev.delta || "";
        reply.pending.push({ at: (this.queued.get(ev.item_id) || 0) + 1, text: ev.delta || "" });
        this.reveal(reply);
        break;
      }
      case "response.done": {
        const response = ev.response || {};
        const reply = this.replies.get(response.id) || this.newReply(response.id);
        this.replies.set(response.id, reply);
        reply.status = response.status || "completed";
        reply.timings = response.silvertalk_timings || response.timings || ev.timings || {};
        // A reply without audio (or whose audio already played) is shown whole at once.
        if (!reply.itemId || !this.playerActive) this.reveal(reply, !reply.cut);
        this.ui.turn(reply.cut ? { ...reply, status: "cancelled" } : reply);
        if (response.id === this.responseId) this.responseId = null;
        if (!this.playerActive && !this.responseId) this.settle();
        break;
      }
      case "silvertalk.photo.show":
        if (ev.photo) this.ui.showPhoto(ev.photo, ev.memory || null);
        break;
      case "error": {
        const err = ev.error || {};
        this.ui.message(`서버 오류 · Server error: ${err.message || err.type || "unknown"}`, "error");
        break;
      }
      default:
        break;
    }
  }
}
