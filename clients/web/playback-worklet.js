// Reply playback on the audio thread, with a small jitter buffer.
//
// Messages in:  {type: "chunk", itemId, pcm: ArrayBuffer (Int16 LE at sourceRate)}
//               {type: "end"}    the response's audio is complete: play out what is left
//               {type: "clear"}  barge-in: drop everything queued, now
// Messages out: {type: "stats", played, buffered, itemId, itemPlayed, underruns, active} every ~50 ms
//               {type: "cleared", itemId, itemPlayed, dropped, played} in answer to "clear"
//
// The buffer waits for `prebufferMs` of audio before it starts (or for "end"), so network jitter
// does not turn into gaps; chunks then play back to back with no gap between them. After an
// underrun it waits for the prebuffer again instead of stuttering chunk by chunk. `played` counts
// source samples actually rendered, which is what `conversation.item.truncate` needs.

class PlaybackProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.sourceRate = opts.sourceRate || 24000;
    this.step = this.sourceRate / sampleRate; // source samples per output sample
    this.prebuffer = Math.round((this.sourceRate * (opts.prebufferMs || 80)) / 1000);
    this.queue = []; // {data: Float32Array, itemId, offset}
    this.buffered = 0;
    this.started = false;
    this.ending = false;
    this.played = 0;
    this.itemId = null;
    this.itemPlayed = 0;
    this.underruns = 0;
    this.phase = 0;
    this.cur = 0;
    this.next = null; // next source sample, pulled ahead for interpolation
    this.statsEvery = Math.round(sampleRate / 20);
    this.statsCount = 0;
    this.port.onmessage = (e) => this.onMessage(e.data);
  }

  onMessage(msg) {
    if (msg.type === "chunk") {
      const pcm = new Int16Array(msg.pcm);
      const data = new Float32Array(pcm.length);
      for (let i = 0; i < pcm.length; i++) data[i] = pcm[i] / 32768;
      this.queue.push({ data, itemId: msg.itemId, offset: 0 });
      this.buffered += data.length;
      this.ending = false;
    } else if (msg.type === "end") {
      this.ending = true;
    } else if (msg.type === "clear") {
      const dropped = this.buffered + (this.next === null ? 0 : 1);
      // The item to truncate: the one playing, or the queued one that has not started yet.
      const head = this.queue.find((c) => c.offset < c.data.length);
      if (head && head.itemId !== this.itemId) {
        this.itemId = head.itemId;
        this.itemPlayed = 0;
      }
      this.queue = [];
      this.buffered = 0;
      this.next = null;
      this.started = false;
      this.ending = false;
      this.port.postMessage({
        type: "cleared", itemId: this.itemId, itemPlayed: this.itemPlayed, dropped, played: this.played,
      });
    }
  }

  pull() {
    // One source sample from the head of the queue, or null when it is empty.
    while (this.queue.length > 0) {
      const head = this.queue[0];
      if (head.offset < head.data.length) {
        if (head.itemId !== this.itemId) {
          this.itemId = head.itemId;
          this.itemPlayed = 0;
        }
        this.buffered--;
        this.played++;
        this.itemPlayed++;
        return head.data[head.offset++];
      }
      this.queue.shift();
    }
    return null;
  }

  render(out) {
    for (let j = 0; j < out.length; j++) {
      if (this.step === 1) {
        const v = this.pull();
        if (v === null) return j;
        out[j] = v;
        continue;
      }
      while (this.phase >= 1 || this.next === null) {
        if (this.next !== null) {
          this.cur = this.next;
          this.phase -= 1;
        }
        this.next = this.pull();
        if (this.next === null) return j;
      }
      out[j] = this.cur + (this.next - this.cur) * this.phase;
      this.phase += this.step;
    }
    return out.length;
  }

  process(inputs, outputs) {
    const out = outputs[0][0];
    out.fill(0);
    if (!this.started && this.buffered > 0 && (this.buffered >= this.prebuffer || this.ending)) {
      this.started = true;
    }
    if (this.started) {
      const rendered = this.render(out);
      if (rendered < out.length) {
        // Ran dry: the end of a reply, or an underrun to rebuffer from.
        if (!this.ending) this.underruns++;
        this.started = false;
        this.phase = 0;
        this.next = null;
      }
    }
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    this.statsCount += out.length;
    if (this.statsCount >= this.statsEvery) {
      this.statsCount = 0;
      this.port.postMessage({
        type: "stats", played: this.played, buffered: this.buffered, itemId: this.itemId,
        itemPlayed: this.itemPlayed, underruns: this.underruns, active: this.started || this.buffered > 0,
      });
    }
    return true;
  }
}

registerProcessor("playback-processor", PlaybackProcessor);
