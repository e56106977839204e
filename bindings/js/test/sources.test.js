// Who sent a frame (issue 34): the SSRC table through the package, decryption by SSRC on Call and
// MediaDecryptor, the typed drop of an unknown or stale SSRC, and hostile records refused.
import test from "node:test";
import assert from "node:assert/strict";
import { Call, PrivateKey, Rng, SourceTable, createZeroBlock, toServerForm } from "../index.js";

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

test("frames by SSRC: the table names the sender; unknown and stale SSRCs are typed drops", () => {
  const { rng, alice, bob } = members(9);
  const table = new SourceTable();
  const frame = Uint8Array.from({ length: 40 }, (_, i) => i);
  const packet = alice.encryptFrame(0, "opus", frame, 1000, rng, 10, false);
  assert.throws(() => bob.decryptFrameFromSource(table, 777, "opus", packet, 1000), (e) => e.name === "FRAME__UNKNOWN_SOURCE");
  assert.deepEqual(table.takeMisses(), Uint32Array.of(777));
  const changes = table.apply([{ userId: 1n, source: 777, video: { sourceGroups: [{ semantics: "SIM", sources: [778] }] } }]);
  assert.deepEqual(changes, [
    { userId: 1n, kind: "audio", ssrc: 777, unmapped: false },
    { userId: 1n, kind: "video", ssrc: 778, unmapped: false },
  ]);
  const r = bob.decryptFrameFromSource(table, 777, "opus", packet, 1000);
  assert.deepEqual(r, { data: frame, level: 10, speech: false, userId: 1n, kind: "audio" });
  // Through the media handle too.
  const dec = bob.mediaDecryptor();
  const again = alice.encryptFrame(0, "opus", frame, 1000, rng, 10, false);
  assert.equal(dec.decryptFrameFromSource(table, 777, "opus", again, 1000).userId, 1n);
  // The SSRC moves to user 2: says from whom; alice's frames on it no longer open.
  const moved = table.apply([{ userId: 2n, source: 777 }]);
  assert.deepEqual(moved, [{ userId: 2n, kind: "audio", ssrc: 777, unmapped: false, previousUserId: 1n }]);
  const third = alice.encryptFrame(0, "opus", frame, 1000, rng, 10, false);
  assert.throws(() => bob.decryptFrameFromSource(table, 777, "opus", third, 1000), (e) => e.name !== "FRAME__UNKNOWN_SOURCE");
  table.apply([{ userId: 2n, source: 777, left: true }]);
  assert.throws(() => dec.decryptFrameFromSource(table, 777, "opus", third, 1000), (e) => e.name === "FRAME__UNKNOWN_SOURCE");
});

test("hostile records: bad SSRCs and user ids are refused, huge groups are cut", () => {
  const table = new SourceTable();
  for (const bad of [
    [{ userId: 1n, source: 2 ** 32 }],
    [{ userId: 1n, source: 1.5 }],
    [{ userId: 1n, source: "7" }],
    [{ userId: "x", source: 7 }],
    [{ userId: 1n, source: 7, video: { sourceGroups: "no" } }],
  ]) {
    assert.throws(() => table.apply(bad));
  }
  assert.equal(table.size, 0, "nothing applied from a refused batch");
  const many = Array.from({ length: 1000 }, (_, i) => i + 1);
  const groups = Array.from({ length: 100 }, () => ({ semantics: "SIM", sources: many }));
  table.apply([{ userId: 1n, source: 5000, video: { sourceGroups: groups } }]);
  assert.ok(table.size <= 16, `${table.size} SSRCs for one participant`);
});

test("a table holds its capacity: past it the participant updated least recently is forgotten", () => {
  const records = Array.from({ length: 1500 }, (_, i) => ({ userId: BigInt(101 + i), source: i + 1 }));
  const [byDefault, large, tiny] = [new SourceTable(), new SourceTable(2000), new SourceTable(0)];
  byDefault.apply(records);
  large.apply(records);
  tiny.apply(records.slice(0, 2));
  assert.deepEqual([byDefault.size, large.size, tiny.size], [1000, 1500, 1]);
  assert.equal(byDefault.get(1), undefined);
  assert.equal(large.get(1).userId, 101n);
  assert.equal(tiny.get(2).userId, 102n);
});
