// A three-member conference through the WebAssembly package (node --test).
import test from "node:test";
import assert from "node:assert/strict";
import { Call, ConfchainError, PrivateKey, Rng, createSelfAddBlock, createZeroBlock, toServerForm, version } from "../index.js";

const seeded = (n) => new Rng(new Uint8Array(32).fill(n));

function relay(calls) {
  for (let round = 0; round < 4; round++) {
    const out = calls.flatMap((c) => c.pullOutbound());
    for (const b of out) for (const c of calls) c.receiveBroadcast(toServerForm(b));
  }
}

test("three members: joins, verification, packets, messages, removal", () => {
  const rng = seeded(1);
  assert.match(version(), /^\d+\.\d+\.\d+$/);
  const keys = [1, 2, 3].map(() => PrivateKey.generate(rng));
  const zero = toServerForm(createZeroBlock(keys[0], [{ userId: 1n, publicKey: keys[0].publicKey, flags: 7 }], 3, rng));
  const alice = new Call(1n, keys[0], zero, rng);
  const join2 = toServerForm(createSelfAddBlock(keys[1], zero, 2n, 3, rng));
  alice.applyBlock(join2, 0, rng);
  const bob = new Call(2n, keys[1], join2, rng);
  const join3 = toServerForm(createSelfAddBlock(keys[2], join2, 3n, 3, rng));
  alice.applyBlock(join3, 0, rng);
  bob.applyBlock(join3, 0, rng);
  const carol = new Call(3n, keys[2], join3, rng);
  const calls = [alice, bob, carol];
  assert.deepEqual([...carol.participants], [1n, 2n, 3n]);
  assert.equal(new Set(calls.map((c) => c.keyFingerprint)).size, 1);

  relay(calls);
  const emojis = calls.map((c) => c.emojis.join(""));
  assert.equal(emojis[0].length > 0, true);
  assert.equal(new Set(emojis).size, 1, "everyone sees the same emojis");
  assert.equal(alice.verificationWords.length, 24);

  const frame = new TextEncoder().encode("HDRopus frame");
  const packet = alice.encrypt(1, frame, 5000, rng, 3);
  assert.deepEqual(packet.slice(0, 3), frame.slice(0, 3), "the clear prefix stays in clear");
  assert.deepEqual(bob.decrypt(1n, packet, 5000), frame);
  assert.deepEqual(carol.decrypt(1n, packet, 5000), frame);
  assert.throws(() => bob.decrypt(1n, packet, 5000), (e) => e instanceof ConfchainError && e.name === "REPLAY" && e.code === 100);

  const message = carol.encryptMessage('{"_":"groupCallMessage"}', 5000, rng);
  assert.equal(alice.decryptMessage(3n, message, 5000), '{"_":"groupCallMessage"}');

  const removal = toServerForm(alice.buildRemove(BigInt64Array.from([3n]), rng));
  for (const c of calls) c.applyBlock(removal, 6000, rng);
  assert.equal(carol.isMember, false);
  assert.throws(() => carol.encrypt(0, frame, 6000, rng), (e) => e.code === 300 && e.name === "INVALID_CALL_GROUP_STATE__NOT_PARTICIPANT");
  assert.equal(alice.pollTimeout(), 10000, "the epochs of the joins (applied at 0) retire first");
  const events = [];
  for (let e = alice.pollEvent(); e !== undefined; e = alice.pollEvent()) events.push(e.kind);
  assert.ok(events.includes("block_applied") && events.includes("verification_done"), events.join());
});

test("errors carry the reference's codes", () => {
  const rng = seeded(2);
  const key = PrivateKey.generate(rng);
  const zero = toServerForm(createZeroBlock(key, [{ userId: 1n, publicKey: key.publicKey, flags: 3 }], 0, rng));
  const call = new Call(1n, key, zero, rng);
  assert.throws(() => call.applyBlock(zero, 0, rng), (e) => e instanceof ConfchainError && e instanceof Error && e.code === 204 && e.name === "INVALID_BLOCK__HEIGHT_MISMATCH");
  assert.throws(() => call.applyBlock(new Uint8Array([1, 2]), 0, rng), (e) => e.name === "PARSE" && e.code === 100);
  assert.throws(() => new Rng(new Uint8Array(3)), (e) => e.name === "INVALID_INPUT");
  assert.equal(Rng.fromCrypto() instanceof Rng, true);
});
