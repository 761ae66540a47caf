// AudioWorklet: microphone audio -> mono 16-bit PCM chunks (little-endian Int16Array buffers) plus
// the chunk's RMS and peak for the level meter. Runs on the audio rendering thread.
// Quantisation matches the server's own: clip to [-1, 1], round(x * 32767).

class Pcm16Capture extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    this.chunk = Math.max(128, opts.chunkSamples | 0 || 2048);
    this.reset();
  }

  reset() {
    this.buf = new Int16Array(this.chunk);
    this.n = 0;
    this.sumsq = 0;
    this.peak = 0;
  }

  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const channels = input.length;
    const frames = input[0].length;
    for (let i = 0; i < frames; i++) {
      let s = 0;
      for (let c = 0; c < channels; c++) s += input[c][i];
      s /= channels;
      if (s > 1) s = 1;
      else if (s < -1) s = -1;
      this.buf[this.n++] = Math.round(s * 32767);
      this.sumsq += s * s;
      const a = s < 0 ? -s : s;
      if (a > this.peak) this.peak = a;
      if (this.n === this.chunk) {
        this.port.postMessage(
          { pcm: this.buf.buffer, rms: Math.sqrt(this.sumsq / this.chunk), peak: this.peak },
          [this.buf.buffer],
        );
        this.reset();
      }
    }
    return true;
  }
}

registerProcessor("pcm16-capture", Pcm16Capture);
