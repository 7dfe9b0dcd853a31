// A/B player on the Web Audio API. Both slots play at once, started at the same instant from
// the same offset, each through its own gain; switching sets the gains at the current audio
// time, so the other version takes over instantly at the same sample. A version's buffer can be
// replaced while playing (a preview spliced in): the new source starts at the exact playhead
// and the old one fades out over 10 ms.

const FADE_S = 0.01;

export class ABPlayer {
  constructor(sampleRate) {
    const options = sampleRate ? { sampleRate } : {};
    this.ctx = new AudioContext(options);
    this.buffers = new Map(); // version name -> AudioBuffer
    this.levels = new Map(); // version name -> integrated loudness, LUFS
    this.slots = { A: null, B: null }; // version names
    this.active = "A";
    this.matched = true;
    this.playing = false;
    this.offset = 0; // playhead (s) when paused, or where playback started
    this.startedAt = 0; // ctx time at which `offset` was playing
    this.voices = { A: null, B: null }; // {source, gain} while playing
    this.swaps = 0;
    this.listeners = [];
  }

  onChange(listener) {
    this.listeners.push(listener);
  }

  changed() {
    for (const listener of this.listeners) listener(this);
  }

  get duration() {
    let longest = 0;
    for (const name of Object.values(this.slots)) {
      const buffer = name && this.buffers.get(name);
      if (buffer) longest = Math.max(longest, buffer.duration);
    }
    return longest;
  }

  playhead() {
    if (!this.playing) return this.offset;
    return Math.min(this.offset + (this.ctx.currentTime - this.startedAt), this.duration);
  }

  async decode(arrayBuffer) {
    return this.ctx.decodeAudioData(arrayBuffer);
  }

  setVersion(name, buffer, loudnessLufs) {
    this.buffers.set(name, buffer);
    this.levels.set(name, loudnessLufs);
    if (this.playing) {
      for (const slot of ["A", "B"]) if (this.slots[slot] === name) this.restartSlot(slot);
    }
    this.changed();
  }

  // The gain that brings `name` to the level of the quieter slot (loudness-matched), or 1.
  levelGain(name) {
    if (!this.matched) return 1;
    const levels = ["A", "B"].map((s) => this.levels.get(this.slots[s])).filter((x) => Number.isFinite(x));
    const own = this.levels.get(name);
    if (!Number.isFinite(own) || levels.length === 0) return 1;
    return Math.pow(10, (Math.min(...levels) - own) / 20);
  }

  gainFor(slot) {
    return slot === this.active ? this.levelGain(this.slots[slot]) : 0;
  }

  startVoice(slot, when, offset) {
    const name = this.slots[slot];
    const buffer = name && this.buffers.get(name);
    if (!buffer) return null;
    const source = this.ctx.createBufferSource();
    source.buffer = buffer;
    const gain = this.ctx.createGain();
    gain.gain.value = this.gainFor(slot);
    source.connect(gain).connect(this.ctx.destination);
    if (offset < buffer.duration) source.start(when, offset);
    source.onended = () => {
      if (this.playing && this.voices[slot] && this.voices[slot].source === source && this.playhead() >= this.duration - 0.05) {
        this.pause();
        this.offset = 0;
        this.changed();
      }
    };
    return { source, gain };
  }

  stopVoice(voice, when) {
    if (!voice) return;
    voice.gain.gain.setValueAtTime(voice.gain.gain.value, when);
    voice.gain.gain.linearRampToValueAtTime(0, when + FADE_S);
    try { voice.source.stop(when + FADE_S); } catch (_) { /* never started */ }
  }

  async play() {
    if (this.playing) return;
    await this.ctx.resume();
    const when = this.ctx.currentTime + 0.02;
    this.startedAt = when;
    for (const slot of ["A", "B"]) this.voices[slot] = this.startVoice(slot, when, this.offset);
    this.playing = true;
    this.changed();
  }

  pause() {
    if (!this.playing) return;
    this.offset = this.playhead();
    const now = this.ctx.currentTime;
    for (const slot of ["A", "B"]) {
      this.stopVoice(this.voices[slot], now);
      this.voices[slot] = null;
    }
    this.playing = false;
    this.changed();
  }

  toggle() {
    return this.playing ? this.pause() : this.play();
  }

  seek(seconds) {
    const was = this.playing;
    if (was) this.pause();
    this.offset = Math.max(0, Math.min(seconds, this.duration));
    if (was) this.play();
    else this.changed();
  }

  // Hear `slot` ("A" or "B"): both keep running, only the gains change, at this very instant.
  hear(slot) {
    this.active = slot;
    this.applyGains();
    this.changed();
  }

  switch() {
    this.hear(this.active === "A" ? "B" : "A");
  }

  setMatched(matched) {
    this.matched = matched;
    this.applyGains();
    this.changed();
  }

  applyGains() {
    const now = this.ctx.currentTime;
    for (const slot of ["A", "B"]) {
      const voice = this.voices[slot];
      if (voice) voice.gain.gain.setValueAtTime(this.gainFor(slot), now);
    }
  }

  setSlot(slot, name) {
    this.slots[slot] = name;
    if (this.playing) this.restartSlot(slot);
    this.applyGains();
    this.changed();
  }

  // Start the slot's (new) buffer at the exact current playhead; fade the old voice out.
  restartSlot(slot) {
    const when = this.ctx.currentTime + 0.02;
    const offset = this.offset + (when - this.startedAt);
    const old = this.voices[slot];
    this.voices[slot] = this.startVoice(slot, when, offset);
    this.stopVoice(old, when);
    this.swaps += 1;
  }
}

// A copy of `base` with `excerpt` (an AudioBuffer) written over it from `startS`.
export function splice(ctx, base, excerpt, startS) {
  const out = ctx.createBuffer(base.numberOfChannels, base.length, base.sampleRate);
  const at = Math.round(startS * base.sampleRate);
  for (let ch = 0; ch < base.numberOfChannels; ch++) {
    const data = out.getChannelData(ch);
    data.set(base.getChannelData(ch));
    const src = excerpt.getChannelData(Math.min(ch, excerpt.numberOfChannels - 1));
    data.set(src.subarray(0, Math.max(0, Math.min(src.length, base.length - at))), at);
  }
  return out;
}
