// confchain/transform: end-to-end encryption of WebRTC media in the browser with the frame layer
// of Telegram's apps (tgcalls), as a WebRTC Encoded Transform.
//
//   encoder ─▶ worker (transform-worker.js) ─port─▶ page: MediaTransform ─▶ Call.encryptFrame ─┐
//   packetizer ◀─ worker ◀─port─ (packet, or nothing: the frame is dropped) ◀─────────────────┘
//
// The keys never leave the page's Call (or its media handles): the worker only forwards each
// encoded frame over a MessageChannel, its bytes transferred, and puts back what the page
// answers. The Call is used as it is at each frame, so every block the application applies to it
// (joins, removals, re-keys) takes effect on the next frame: nothing has to be re-attached.
//
// Codec: the frame's `getMetadata().mimeType` (the codec negotiated in SDP) picks it: audio/opus
// → "opus", video/VP8 → "vp8", video/H264 → "h264", anything else → "unknown" (tgcalls' rule:
// sent through the audio path, received raw). Browsers negotiate their own payload types, so the
// numbers tgcalls uses (111 Opus, 100 VP8, 104 H.264) are only the fallback for a browser whose
// metadata has no mimeType and whose sender/receiver parameters do not list the payload type.
//
// A frame whose encryption or decryption fails is dropped; nothing is ever passed in the clear.
import { audioLevelFromLinear, codecFromMimeType, codecName } from "./index.js";

const now = () => Date.now();

function emptyStats() {
  const side = () => ({ frames: 0, ok: 0, dropped: 0, bytesIn: 0, bytesOut: 0, cryptoMs: 0, byCodec: {}, errors: {} });
  return { send: { ...side(), retries: 0, retriedFrames: 0, startCodeDrops: 0 }, receive: { ...side(), empty: 0 } };
}

/** Frames per second the crypto of `side` ran at (frames / time spent in it). */
export function framesPerSecond(side) {
  return side.cryptoMs > 0 ? (side.frames * 1000) / side.cryptoMs : 0;
}

export class MediaTransform {
  /**
   * @param {object} o
   * @param {import("./index.js").Call | import("./index.js").Session | (() => any)} [o.call] the
   *   member's call or session (or a function returning the current one); with `o.rng`
   * @param {import("./index.js").Rng} [o.rng]
   * @param {import("./index.js").MediaEncryptor} [o.encryptor] instead of `call`/`rng` for sending
   * @param {import("./index.js").MediaDecryptor} [o.decryptor] instead of `call` for receiving
   * @param {() => number} [o.now] the time in integer milliseconds (default Date.now)
   * @param {number} [o.channel] 0 (default, camera and microphone) or 1 (screencast on iOS/TDLib)
   * @param {(info: {audioLevel?: number}) => ({level: number, speech: boolean} | undefined)} [o.audioLevel]
   *   the level trailer of outgoing audio (default: from the frame's metadata audioLevel when the
   *   browser gives one, else level 0 without speech)
   * @param {Worker} [o.worker] the worker to use (default: a new module worker of transform-worker.js)
   */
  constructor(o = {}) {
    this.call = o.call;
    this.rng = o.rng;
    this.encryptor = o.encryptor;
    this.decryptor = o.decryptor;
    this.now = o.now ?? now;
    this.channel = o.channel ?? 0;
    this.audioLevel = o.audioLevel;
    this.worker = o.worker;
    this.ownWorker = false;
    this.stats = emptyStats();
  }

  /** Zeroes the counters. */
  resetStats() {
    this.stats = emptyStats();
  }

  #getWorker() {
    if (!this.worker) {
      this.worker = new Worker(new URL("./transform-worker.js", import.meta.url), { name: "confchain-transform" });
      this.ownWorker = true;
    }
    return this.worker;
  }

  #currentCall() {
    return typeof this.call === "function" ? this.call() : this.call;
  }

  /**
   * Encrypts what `sender` sends. `mode` "script" (RTCRtpScriptTransform, the default where the
   * browser has it) or "streams" (createEncodedStreams: the peer connection must have been made
   * with `{ encodedInsertableStreams: true }`).
   */
  attachSender(sender, { channel, mode } = {}) {
    const ch = channel ?? this.channel;
    return this.#attach(sender, mode, (m) => this.#encrypt(sender, ch, m));
  }

  /**
   * Decrypts what `receiver` receives, as frames of `userId` (a bigint: the member whose SSRC this
   * is; or a function of `{ssrc, csrcs}` returning it), or, with `sources` (a SourceTable), of the
   * member the table maps each frame's RTP SSRC to: a frame on an SSRC the table does not map is
   * dropped (`FRAME__UNKNOWN_SOURCE` in the stats) and the SSRC kept for `sources.takeMisses()`.
   */
  attachReceiver(receiver, { userId, sources, mode } = {}) {
    if ((userId === undefined) === (sources === undefined)) {
      throw new TypeError("attachReceiver: exactly one of userId and sources is required");
    }
    return this.#attach(receiver, mode, (m) => this.#decrypt(receiver, userId, sources, m));
  }

  #attach(endpoint, mode, handle) {
    const chosen = mode ?? (typeof RTCRtpScriptTransform === "function" ? "script" : "streams");
    const { port1, port2 } = new MessageChannel();
    port1.onmessage = ({ data: m }) => {
      let out = null;
      try {
        out = handle(m);
      } finally {
        // Always answered (a throwing callback drops the frame), or the stream would stall.
        port1.postMessage({ id: m.id, data: out }, out ? [out] : []);
      }
    };
    if (chosen === "script") {
      endpoint.transform = new RTCRtpScriptTransform(this.#getWorker(), { port: port2 }, [port2]);
    } else if (chosen === "streams") {
      const { readable, writable } = endpoint.createEncodedStreams();
      this.#getWorker().postMessage({ confchainStreams: true, readable, writable, port: port2 }, [readable, writable, port2]);
    } else {
      throw new TypeError(`mode: expected "script" or "streams", got ${chosen}`);
    }
    return chosen;
  }

  #codec(endpoint, m) {
    if (m.mimeType) return codecFromMimeType(m.mimeType);
    const listed = endpoint.getParameters?.().codecs?.find((c) => c.payloadType === m.payloadType);
    if (listed) return codecFromMimeType(listed.mimeType);
    return Number.isInteger(m.payloadType) && m.payloadType >= 0 && m.payloadType < 128 ? codecName(m.payloadType) : "unknown";
  }

  #count(side, codec, error) {
    side.byCodec[codec] = (side.byCodec[codec] ?? 0) + 1;
    if (error) {
      side.dropped++;
      const name = error.name ?? String(error);
      side.errors[name] = (side.errors[name] ?? 0) + 1;
    } else {
      side.ok++;
    }
  }

  #encrypt(sender, channel, m) {
    const s = this.stats.send;
    const codec = this.#codec(sender, m);
    const frame = new Uint8Array(m.data);
    let level, speech;
    if (codec !== "vp8" && codec !== "h264") {
      const l = this.audioLevel ? this.audioLevel(m) : levelOfMetadata(m.audioLevel);
      if (l) ({ level, speech } = l);
    }
    s.frames++;
    s.bytesIn += frame.length;
    const t = performance.now();
    try {
      const time = this.now();
      const r = this.encryptor
        ? this.encryptor.encryptFrameDetailed(channel, codec, frame, time, level, speech)
        : this.#currentCall().encryptFrameDetailed(channel, codec, frame, time, this.rng, level, speech);
      s.cryptoMs += performance.now() - t;
      if (r.attempts > 1) {
        s.retries += r.attempts - 1;
        s.retriedFrames++;
      }
      s.bytesOut += r.packet.length;
      this.#count(s, codec);
      return r.packet.buffer;
    } catch (e) {
      s.cryptoMs += performance.now() - t;
      if (e?.name === "FRAME__START_CODE") {
        s.retries += 3; // every one of the 4 attempts had a start code
        s.retriedFrames++;
        s.startCodeDrops++;
      }
      this.#count(s, codec, e);
      return null;
    }
  }

  #decrypt(receiver, userId, sources, m) {
    const s = this.stats.receive;
    const codec = this.#codec(receiver, m);
    const packet = new Uint8Array(m.data);
    s.frames++;
    if (packet.length === 0) {
      // Empty frames (Chromium hands some to receive transforms, e.g. for audio packets without
      // payload) carry nothing to decrypt: dropped, counted apart from the failures.
      s.empty++;
      return null;
    }
    s.bytesIn += packet.length;
    const t = performance.now();
    try {
      const time = this.now();
      let r, from;
      if (sources !== undefined) {
        // The sender from the frame's RTP SSRC: never tried against every key.
        r = this.decryptor
          ? this.decryptor.decryptFrameFromSource(sources, m.ssrc >>> 0, codec, packet, time)
          : this.#currentCall().decryptFrameFromSource(sources, m.ssrc >>> 0, codec, packet, time);
        from = r.userId;
      } else {
        from = typeof userId === "function" ? userId(m) : userId;
        r = this.decryptor
          ? this.decryptor.decryptFrame(from, codec, packet, time)
          : this.#currentCall().decryptFrame(from, codec, packet, time);
      }
      s.cryptoMs += performance.now() - t;
      if (r.level !== null) this.lastLevel = { userId: from, level: r.level, speech: r.speech };
      s.bytesOut += r.data.length;
      this.#count(s, codec);
      // A frame that decrypted to nothing (an Opus frame that was only its trailer) is dropped too.
      return r.data.length > 0 ? r.data.buffer : null;
    } catch (e) {
      s.cryptoMs += performance.now() - t;
      this.#count(s, codec, e);
      return null;
    }
  }

  /** Ends the worker this transform started (the streams attached to it stop). */
  close() {
    if (this.ownWorker) this.worker?.terminate();
    this.worker = undefined;
  }
}

/** A linear 0..1 level (the metadata's audioLevel) as the trailer's level, without speech. */
function levelOfMetadata(linear) {
  if (typeof linear !== "number" || !(linear >= 0)) return undefined;
  return { level: audioLevelFromLinear(linear), speech: false };
}
