// confchain for JavaScript (Node 20+ and browsers): an ES module over the WebAssembly build.
// Loads the module at import (top-level await), then exposes the same surface as the Python
// module: keys, blocks and builders, the call (packets, messages, verification, events, timers),
// the session (a sans-IO client over the phone.* API). The server model for tests is in testkit.js
// (only in a build with `build.sh --testkit`; not in the npm package).
import * as wasm from "./pkg/confchain_js.js";
import { ConfchainError } from "__ERRORS__";

const wasmUrl = new URL("./pkg/confchain_js_bg.wasm", import.meta.url);
if (typeof process !== "undefined" && process.versions && process.versions.node) {
  const { readFile } = await import("node:fs/promises");
  wasm.initSync({ module: await readFile(wasmUrl) });
} else {
  await wasm.default({ module_or_path: wasmUrl });
}

export { ConfchainError };
export const { PrivateKey, Call, Session, P2PCaller, P2PCallee, P2PKey, toServerForm, createSelfAddBlock, version } =
  wasm;

// Media frames (the layer tgcalls puts between WebRTC and call_encrypt; see transform.js for the
// browser's Encoded Transform).
export const {
  MediaEncryptor,
  MediaDecryptor,
  SourceTable,
  framePlaintext,
  isValidEncryptedFrame,
  stripReceivedFrame,
  codecName,
  audioLevelFromLinear,
  audioLevelFromPeak,
  audioLevelToLinear,
  audioLevelToByte,
  audioLevelFromByte,
} = wasm;

/** tgcalls' payload types (what it assigns; browsers negotiate their own, see codecFromMimeType). */
export const PayloadType = Object.freeze({ OPUS: 111, VP8: 100, VP9: 102, H264: 104 });
/** Camera and microphone (every app); screencast on Desktop and Android too. */
export const CHANNEL_MAIN = 0;
/** Screencast on iOS and TDLib clients. */
export const CHANNEL_SCREENCAST = 1;
/** H.264 encryptions of one frame before it is dropped (FRAME__START_CODE). */
export const MAX_FRAME_ATTEMPTS = 4;

/**
 * The codec of a negotiated mimeType ("audio/opus", "video/VP8", "video/H264"; any other is
 * "unknown", which tgcalls sends through the audio path and receives raw).
 * @param {string} mimeType
 */
export function codecFromMimeType(mimeType) {
  switch (String(mimeType).toLowerCase()) {
    case "audio/opus":
      return "opus";
    case "video/vp8":
      return "vp8";
    case "video/h264":
      return "h264";
    default:
      return "unknown";
  }
}

/** A ChaCha20 CSPRNG. `new Rng(seed)` for tests; `Rng.fromCrypto()` seeds it from crypto.getRandomValues. */
export class Rng extends wasm.Rng {
  static fromCrypto() {
    return new Rng(globalThis.crypto.getRandomValues(new Uint8Array(32)));
  }
}

/**
 * The zero block for createConferenceCall (plain form).
 * @param {PrivateKey} key
 * @param {{userId: bigint, publicKey: Uint8Array, flags: number}[]} participants
 * @param {number} externalPermissions
 * @param {Rng} rng
 */
export function createZeroBlock(key, participants, externalPermissions, rng) {
  const ids = BigInt64Array.from(participants.map((p) => BigInt(p.userId)));
  const keys = new Uint8Array(32 * participants.length);
  participants.forEach((p, i) => keys.set(p.publicKey, 32 * i));
  const flags = Int32Array.from(participants.map((p) => p.flags));
  return wasm.createZeroBlockRaw(key, ids, keys, flags, externalPermissions, rng);
}
