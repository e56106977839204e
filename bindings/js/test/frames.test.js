// Media frames through the package (node --test): the vectors made by running tgcalls' own frame
// layer (vectors/frames/, every file there), the Call's and the media handles' frame functions,
// the typed drops (FRAME__START_CODE, FRAME__EMPTY) and bad input.
import test from "node:test";
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import {
  CHANNEL_MAIN,
  CHANNEL_SCREENCAST,
  Call,
  ConfchainError,
  MAX_FRAME_ATTEMPTS,
  PayloadType,
  PrivateKey,
  Rng,
  audioLevelFromByte,
  audioLevelFromLinear,
  audioLevelFromPeak,
  audioLevelToByte,
  audioLevelToLinear,
  codecFromMimeType,
  codecName,
  createZeroBlock,
  framePlaintext,
  isValidEncryptedFrame,
  stripReceivedFrame,
  toServerForm,
} from "../index.js";

const dir = new URL("../../../vectors/frames/", import.meta.url);
const load = (name) => (existsSync(new URL(name, dir)) ? JSON.parse(readFileSync(new URL(name, dir), "utf8")) : null);
const hex = (s) => Uint8Array.from(Buffer.from(s, "hex"));
const toHex = (b) => Buffer.from(b).toString("hex");
const f32 = (bits) => new DataView(Uint8Array.from(Buffer.from(bits, "hex")).buffer).getFloat32(0, false);

test("send vectors: what goes into call_encrypt on every attempt, and what is sent", (t) => {
  const v = load("send.json");
  if (!v) return t.skip("vectors/frames/send.json is not there yet");
  let retried = 0;
  for (const c of v.cases) {
    const name = `${c.name}: ${c.note ?? ""}`;
    // Both ways of naming the codec: the payload type (tgcalls' mapping) and the name.
    assert.equal(codecName(c.payload_type), c.codec, name);
    const p = framePlaintext(c.payload_type, hex(c.frame), c.audio_level, c.has_speech);
    const q = framePlaintext(c.codec, hex(c.frame), c.audio_level, c.has_speech);
    assert.deepEqual([toHex(q.data), q.clearPrefix], [toHex(p.data), p.clearPrefix], name);
    for (const call of c.calls) assert.deepEqual([toHex(p.data), p.clearPrefix], [call.data, call.prefix], name);
    // The retry loop over the fake call_encrypt's outputs, with the package's validation.
    let sent = null;
    let attempts = 0;
    for (const out of c.fake_outputs.slice(0, MAX_FRAME_ATTEMPTS)) {
      attempts++;
      if (out === "") break;
      if (isValidEncryptedFrame(c.payload_type, hex(out), p.clearPrefix)) {
        sent = out;
        break;
      }
    }
    assert.equal(attempts, c.calls.length, `${name}: attempts`);
    assert.equal(sent, c.sent, `${name}: sent`);
    if (attempts > 1) retried++;
  }
  assert.ok(v.cases.length > 20 && retried > 0, "the vectors include retries");
});

test("receive vectors: what reaches the decoder", (t) => {
  const v = load("receive.json");
  if (!v) return t.skip("vectors/frames/receive.json is not there yet");
  for (const c of v.cases) {
    const name = `${c.name}: ${c.note ?? ""}`;
    assert.equal(codecName(c.payload_type), c.codec, name);
    if (c.decrypted === "") {
      assert.equal(c.delivered, null, name); // a failed decrypt is dropped
      continue;
    }
    const r = stripReceivedFrame(c.payload_type, hex(c.decrypted));
    if (c.delivered === null) assert.equal(r.data.length, 0, name);
    else assert.equal(toHex(r.data), c.delivered, name);
    assert.equal(r.level, c.level ?? null, `${name}: level`);
    assert.equal(r.speech, c.speech ?? null, `${name}: speech`);
  }
});

test("level vectors: tgcalls' conversions both ways", (t) => {
  const v = load("levels.json");
  if (!v) return t.skip("vectors/frames/levels.json is not there yet");
  for (const c of v.to_byte) {
    const linear = c.linear_f32_bits ? f32(c.linear_f32_bits) : c.linear;
    const level = audioLevelFromLinear(linear);
    assert.equal(level, c.level, `linear ${linear}`);
    const speech = c.speech ?? (c.voice && !c.muted);
    assert.equal(audioLevelToByte(level, speech), c.byte, `linear ${linear}, speech ${speech}`);
    assert.deepEqual(audioLevelFromByte(c.byte), { level: c.level, speech });
  }
  for (const c of v.from_byte) {
    const expected = c.linear_f32_bits ? f32(c.linear_f32_bits) : c.linear;
    assert.equal(audioLevelToLinear(c.byte & 0x7f), expected, `byte ${c.byte}`);
  }
});

test("constants, codecs and the pure helpers", () => {
  assert.deepEqual({ ...PayloadType }, { OPUS: 111, VP8: 100, VP9: 102, H264: 104 });
  assert.deepEqual([CHANNEL_MAIN, CHANNEL_SCREENCAST, MAX_FRAME_ATTEMPTS], [0, 1, 4]);
  assert.deepEqual([111, 100, 104, 102, 96, "OPUS", "vp8", "H264", "unknown"].map(codecName), [
    "opus", "vp8", "h264", "unknown", "unknown", "opus", "vp8", "h264", "unknown",
  ]);
  assert.deepEqual(["audio/opus", "video/VP8", "video/H264", "video/VP9", "video/AV1", "audio/red"].map(codecFromMimeType), [
    "opus", "vp8", "h264", "unknown", "unknown", "unknown",
  ]);
  // Opus: the trailer 01, speech << 7 | level; all encrypted.
  assert.deepEqual(framePlaintext("opus", Uint8Array.of(9, 9), 12, true), { data: Uint8Array.of(9, 9, 1, 0x8c), clearPrefix: 0 });
  // VP8: 10 clear bytes on a key frame, 1 on a delta frame.
  assert.equal(framePlaintext("vp8", new Uint8Array(30), undefined, undefined).clearPrefix, 10);
  assert.equal(framePlaintext("vp8", new Uint8Array(30).fill(1)).clearPrefix, 1);
  // H.264: a 3-byte start code widened, SPS in clear, IDR slice header up to its pps id + 1.
  const sps = [0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0x8c];
  const idr = [0, 0, 0, 1, 0x65, 0x88, 0x84, 0x21, 0x22, 0x23];
  const p = framePlaintext("h264", Uint8Array.from([...sps, ...idr]));
  assert.deepEqual([...p.data], [0, ...sps, ...idr]);
  assert.equal(p.clearPrefix, 9 + 4 + 4);
  assert.equal(isValidEncryptedFrame("h264", Uint8Array.of(5, 5, 5, 0, 0, 1, 7), 3), false);
  assert.equal(isValidEncryptedFrame("h264", Uint8Array.of(0, 0, 1, 5, 5, 5, 5, 7), 4), true, "inside the prefix");
  assert.equal(isValidEncryptedFrame("vp8", Uint8Array.of(5, 0, 0, 1, 7), 1), true);
  assert.deepEqual(stripReceivedFrame("opus", Uint8Array.of(7, 1, 0x8c)), { data: Uint8Array.of(7), level: 12, speech: true });
  assert.deepEqual(stripReceivedFrame("vp8", Uint8Array.of(7, 1, 0x8c)), { data: Uint8Array.of(7, 1, 0x8c), level: null, speech: null });
  assert.equal(audioLevelFromPeak(4000), 0);
  assert.equal(audioLevelFromPeak(0), 127);
  assert.equal(audioLevelFromLinear(0.5), 6);
});

function members(seed) {
  const rng = new Rng(new Uint8Array(32).fill(seed));
  const [ka, kb] = [PrivateKey.generate(rng), PrivateKey.generate(rng)];
  const participants = [
    { userId: 1n, publicKey: ka.publicKey, flags: 7 },
    { userId: 2n, publicKey: kb.publicKey, flags: 3 },
  ];
  const zero = toServerForm(createZeroBlock(ka, participants, 0, rng));
  return { rng, alice: new Call(1n, ka, zero, rng), bob: new Call(2n, kb, zero, rng) };
}

test("Call: frames round-trip per codec; another call decodes nothing", () => {
  const { rng, alice, bob } = members(5);
  const opus = Uint8Array.from({ length: 60 }, (_, i) => i);
  const packet = alice.encryptFrame(0, "opus", opus, 1000, rng, 20, true);
  assert.deepEqual(bob.decryptFrame(1n, "opus", packet, 1000), { data: opus, level: 20, speech: true });

  const key = Uint8Array.from({ length: 200 }, (_, i) => (i * 7) & 0xfe); // P bit clear: a key frame
  const sent = alice.encryptFrameDetailed(0, PayloadType.VP8, key, 1000, rng);
  assert.equal(sent.clearPrefix, 10);
  assert.equal(sent.attempts, 1);
  assert.deepEqual(sent.packet.slice(0, 10), key.slice(0, 10), "VP8 key frame header in clear");
  assert.deepEqual(bob.decryptFrame(1n, "vp8", sent.packet, 1000), { data: key, level: null, speech: null });

  const h264 = Uint8Array.from([0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0x8c, 0, 0, 1, 0x65, 0x88, 0x84, ...new Array(300).fill(0x5a)]);
  const s = alice.encryptFrameDetailed(CHANNEL_SCREENCAST, "h264", h264, 1000, rng);
  const widened = framePlaintext("h264", h264);
  assert.equal(s.clearPrefix, widened.clearPrefix);
  assert.deepEqual(s.packet.slice(0, s.clearPrefix), widened.data.slice(0, s.clearPrefix));
  assert.ok(isValidEncryptedFrame("h264", s.packet, s.clearPrefix));
  assert.deepEqual(bob.decryptFrame(1n, "h264", s.packet, 1000).data, widened.data, "start codes arrive widened");

  const other = members(6);
  assert.throws(() => other.bob.decryptFrame(1n, "opus", packet, 1000), (e) => e instanceof ConfchainError);
  assert.throws(() => bob.decryptFrame(1n, "opus", packet, 1000), (e) => e.name === "REPLAY", "once only");
});

test("typed drops: FRAME__EMPTY and FRAME__START_CODE", () => {
  const { rng, alice, bob } = members(7);
  // A packet whose plaintext is empty (sent without the frame layer): dropped, typed.
  const empty = alice.encrypt(0, new Uint8Array(0), 1000, rng);
  assert.throws(() => bob.decryptFrame(1n, "vp8", empty, 1000), (e) => e instanceof ConfchainError && e.name === "FRAME__EMPTY");
  // Re-key until the epoch's hash puts a start code after every H.264 prefix (about 1 in 256).
  const frame = Uint8Array.from([0, 0, 0, 1, 0x65, 0x88, 0x84, 0x10, 0x20, 0x30, 0x40, 0x50]);
  let t = 1000;
  let rekeys = 0;
  for (;;) {
    const block = toServerForm(alice.buildRekey(rng));
    alice.applyBlock(block, t, rng);
    bob.applyBlock(block, t, rng);
    rekeys++;
    t += 10_001; // the new epoch alone
    try {
      const s = alice.encryptFrameDetailed(0, "h264", frame, t, rng);
      assert.deepEqual(bob.decryptFrame(1n, "h264", s.packet, t).data, frame);
    } catch (e) {
      assert.ok(e instanceof ConfchainError && e.name === "FRAME__START_CODE", String(e));
      break;
    }
    assert.ok(rekeys < 5000, "no blackout epoch in 5000 re-keys");
  }
  // The same epoch carries VP8 and audio.
  const vp8 = alice.encryptFrame(0, "vp8", Uint8Array.of(1, 2, 3, 0, 0, 1), t, rng);
  assert.deepEqual(bob.decryptFrame(1n, "vp8", vp8, t).data, Uint8Array.of(1, 2, 3, 0, 0, 1));
});

test("media handles: frames with the call's epochs, following its blocks", () => {
  const { rng, alice, bob } = members(8);
  const enc = alice.mediaEncryptor(rng);
  const dec = bob.mediaDecryptor();
  const frame = Uint8Array.of(1, 2, 3, 4);
  const p = enc.encryptFrame(0, "opus", frame, 1000, 30, false);
  assert.deepEqual(dec.decryptFrame(1n, "opus", p, 1000), { data: frame, level: 30, speech: false });
  assert.throws(() => bob.decryptFrame(1n, "opus", p, 1000), (e) => e.name === "REPLAY", "the call's replay windows");
  const d = enc.encryptFrameDetailed(0, "vp8", frame, 1000);
  assert.equal(d.attempts, 1);
  assert.deepEqual(dec.decryptFrame(1n, "vp8", d.packet, 1000).data, frame);
  assert.deepEqual(dec.decrypt(1n, enc.encrypt(0, frame, 1000, 2), 1000), frame);
  // Bob removed at 2000: he decodes through the grace period, nothing after it.
  const removal = toServerForm(alice.buildRemove(BigInt64Array.from([2n]), rng));
  alice.applyBlock(removal, 2000, rng);
  bob.applyBlock(removal, 2000, rng);
  assert.deepEqual(dec.decryptFrame(1n, "vp8", enc.encryptFrame(0, "vp8", frame, 11_999), 11_999).data, frame);
  assert.throws(() => dec.decryptFrame(1n, "vp8", enc.encryptFrame(0, "vp8", frame, 12_000), 12_000), (e) => e instanceof ConfchainError);
  assert.deepEqual([...dec.liveEpochs(12_000)], []);
});

test("bad input: errors name the field, the objects stay usable", () => {
  const { rng, alice, bob } = members(9);
  const frame = Uint8Array.of(1, 2, 3);
  const invalid = (f, field) =>
    assert.throws(f, (e) => (e instanceof ConfchainError || e instanceof TypeError) && e.message.includes(field));
  invalid(() => alice.encryptFrame(0, "av1", frame, 0, rng), "codec");
  invalid(() => alice.encryptFrame(0, 300, frame, 0, rng), "codec");
  invalid(() => alice.encryptFrame(0, {}, frame, 0, rng), "codec");
  invalid(() => alice.encryptFrame(0, "opus", [1, 2], 0, rng), "frame");
  invalid(() => alice.encryptFrame(0, "opus", frame, 0, rng, 256), "level");
  invalid(() => alice.encryptFrame(0, "opus", frame, 0, rng, 1.5), "level");
  invalid(() => alice.encryptFrame(0, "opus", frame, -1, rng), "nowMs");
  invalid(() => bob.decryptFrame(1n, "opus", "packet", 0), "packet");
  invalid(() => isValidEncryptedFrame("h264", frame, -1), "clearPrefix");
  const hostile = { valueOf() { throw new Error("hostile valueOf"); } };
  assert.throws(() => alice.encryptFrame(0, "opus", frame, 0, rng, hostile), /hostile/);
  assert.throws(() => alice.encryptFrame(0, "opus", frame, hostile, rng), /hostile/);
  const p = alice.encryptFrame(0, "opus", frame, 0, rng);
  assert.deepEqual(bob.decryptFrame(1n, "opus", p, 0).data, frame, "the call and the rng stay usable");
});
