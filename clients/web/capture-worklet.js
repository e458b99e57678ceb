// Microphone capture on the audio thread: mono mix, resample to the session rate, pcm16 frames.
//
// Posts {type: "audio", pcm: ArrayBuffer (Int16 LE, frameMs long)} and, about every 50 ms,
// {type: "level", rms, peak}. When the AudioContext already runs at the target rate (the page
// asks for 24 kHz) the resampler is a plain copy; otherwise a windowed-sinc low-pass (only when
// downsampling, against aliasing) feeds a linear interpolator that keeps its phase across blocks.

const TAPS = 31;

function lowPass(cutoff) {
  // cutoff in cycles per input sample (< 0.5); Blackman-windowed sinc, unity gain at DC.
  const h = new Float32Array(TAPS);
  const mid = (TAPS - 1) / 2;
  let sum = 0;
  for (let i = 0; i < TAPS; i++) {
    const x = i - mid;
    const sinc = x === 0 ? 2 * cutoff : Math.sin(2 * Math.PI * cutoff * x) / (Math.PI * x);
    const w = 0.42 - 0.5 * Math.cos((2 * Math.PI * i) / (TAPS - 1)) + 0.08 * Math.cos((4 * Math.PI * i) / (TAPS - 1));
    h[i] = sinc * w;
    sum += h[i];
  }
  for (let i = 0; i < TAPS; i++) h[i] /= sum;
  return h;
}

class CaptureProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    const targetRate = opts.targetRate || 24000;
    this.step = sampleRate / targetRate; // input samples per output sample
    this.frame = new Int16Array(Math.round((targetRate * (opts.frameMs || 20)) / 1000));
    this.fill = 0;
    this.t = 0; // position of the next output sample, in input samples from this block's start
    this.prev = 0; // last (filtered) input sample of the previous block
    this.fir = this.step > 1 ? lowPass(0.45 / this.step) : null;
    this.history = new Float32Array(TAPS);
    this.hpos = 0;
    this.levelEvery = Math.round(sampleRate / 20);
    this.levelCount = 0;
    this.sumSq = 0;
    this.peak = 0;
    this.running = true;
    this.port.onmessage = (e) => {
      if (e.data && e.data.type === "stop") this.running = false;
    };
  }

  filter(x) {
    if (!this.fir) return x;
    this.history[this.hpos] = x;
    let acc = 0;
    let k = this.hpos;
    for (let i = 0; i < TAPS; i++) {
      acc += this.fir[i] * this.history[k];
      k = k === 0 ? TAPS - 1 : k - 1;
    }
    this.hpos = (this.hpos + 1) % TAPS;
    return acc;
  }

  emit(v) {
    const s = v < -1 ? -1 : v > 1 ? 1 : v;
    this.frame[this.fill++] = s < 0 ? s * 0x8000 : s * 0x7fff;
    if (this.fill === this.frame.length) {
      const out = this.frame.slice().buffer;
      this.port.postMessage({ type: "audio", pcm: out }, [out]);
      this.fill = 0;
    }
  }

  process(inputs, outputs) {
    const channels = inputs[0];
    if (!this.running) return false;
    if (!channels || channels.length === 0) return true;
    const n = channels[0].length;
    const block = new Float32Array(n);
    for (const ch of channels) for (let i = 0; i < n; i++) block[i] += ch[i] / channels.length;

    for (let i = 0; i < n; i++) {
      const v = block[i];
      this.sumSq += v * v;
      const a = Math.abs(v);
      if (a > this.peak) this.peak = a;
      block[i] = this.filter(v);
    }
    this.levelCount += n;
    if (this.levelCount >= this.levelEvery) {
      this.port.postMessage({ type: "level", rms: Math.sqrt(this.sumSq / this.levelCount), peak: this.peak });
      this.levelCount = 0;
      this.sumSq = 0;
      this.peak = 0;
    }

    if (this.step === 1) {
      for (let i = 0; i < n; i++) this.emit(block[i]);
    } else {
      // Linear interpolation between input samples; index -1 is the previous block's last sample.
      while (this.t < n - 1) {
        const i = Math.floor(this.t);
        const frac = this.t - i;
        const a = i < 0 ? this.prev : block[i];
        this.emit(a + (block[i + 1] - a) * frac);
        this.t += this.step;
      }
      this.t -= n;
      this.prev = block[n - 1];
    }
    // The output stays silent: the node is wired to the destination only to keep it pulled.
    if (outputs[0] && outputs[0][0]) outputs[0][0].fill(0);
    return true;
  }
}

registerProcessor("capture-processor", CaptureProcessor);
