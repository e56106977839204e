// Two sessions through the server model, in JavaScript.
import test from "node:test";
import assert from "node:assert/strict";
import { Rng, Session } from "../index.js";
import { Server } from "../testkit.js";

function pump(server, sessions, now, rng) {
  for (let busy = true; busy; ) {
    busy = false;
    for (const [userId, s] of sessions) {
      for (let r = s.pollRequest(); r !== undefined; r = s.pollRequest()) {
        busy = true;
        const { updates, error, pushes } = server.handle(userId, r);
        s.handleResponse(r.id, updates, error, now, rng);
        for (const { to, update } of pushes) sessions.get(to).handleUpdate(update, now, rng);
      }
    }
  }
}

test("two sessions join through the server model and agree", () => {
  const rng = new Rng(new Uint8Array(32).fill(4));
  const server = new Server();
  const sessions = new Map([[1n, new Session(1n)], [2n, new Session(2n)]]);
  sessions.get(1n).create(true, 0, rng);
  pump(server, sessions, 0, rng);
  sessions.get(2n).join(0, rng);
  const tip = sessions.get(2n).pollRequest();
  assert.deepEqual([tip.kind, tip.subChain, tip.offset, tip.limit], ["get_chain_blocks", 0, -1, 1]);
  const { updates } = server.handle(2n, tip);
  sessions.get(2n).handleResponse(tip.id, updates, undefined, 0, rng);
  pump(server, sessions, 0, rng);
  const [alice, bob] = [sessions.get(1n), sessions.get(2n)];
  assert.equal(alice.state, "joined");
  assert.equal(bob.state, "joined");
  assert.equal(server.height, 1);
  assert.deepEqual(alice.emojis, bob.emojis);
  const packet = alice.encrypt(0, new Uint8Array([1, 2, 3]), 5, rng);
  assert.deepEqual(bob.decrypt(1n, packet, 5), new Uint8Array([1, 2, 3]));
  // Media frames with the session's call (what the browser transform can be given instead of a Call).
  const sent = alice.encryptFrameDetailed(0, "opus", new Uint8Array([9, 9]), 5, rng, 3, true);
  assert.equal(sent.attempts, 1);
  assert.deepEqual(bob.decryptFrame(1n, "opus", sent.packet, 5), { data: new Uint8Array([9, 9]), level: 3, speech: true });
  assert.deepEqual(bob.decryptFrame(1n, 100, alice.encryptFrame(0, "video/VP8", new Uint8Array([1, 2]), 5, rng), 5).data, new Uint8Array([1, 2]));
  assert.throws(() => new Session(3n).encryptFrame(0, "opus", new Uint8Array(1), 5, rng), (e) => e.name === "INVALID_INPUT");
  alice.sendMessage('{"_":"groupCallMessage","random_id":"1"}', 5, rng);
  pump(server, sessions, 5, rng);
  const got = [];
  for (let e = bob.pollEvent(); e !== undefined; e = bob.pollEvent()) if (e.kind === "message_received") got.push(e);
  assert.equal(got.length, 1);
  assert.equal(got[0].from, 1n);
});

// Issue 34: a member who joined later hears the earlier ones through the session's own source
// map: its first frame on an unknown SSRC is a typed drop and a lookup; the answer maps it, with no
// table of the application's.
test("a late joiner decrypts by SSRC through the session's map after one lookup", () => {
  const rng = new Rng(new Uint8Array(32).fill(34));
  const server = new Server();
  const sessions = new Map([[1n, new Session(1n)], [2n, new Session(2n)]]);
  sessions.get(1n).create(true, 0, rng);
  pump(server, sessions, 0, rng);
  sessions.get(2n).join(0, rng);
  pump(server, sessions, 0, rng);
  const [alice, bob] = [sessions.get(1n), sessions.get(2n)];
  assert.equal(bob.state, "joined");
  const map = bob.sourceMap();
  const aliceSsrc = 1000; // the server model gives the first participation the lowest SSRC
  assert.equal(map.get(aliceSsrc), undefined);
  const first = alice.encryptFrame(0, "opus", new Uint8Array([7, 7]), 5, rng, 3, true);
  assert.throws(() => bob.decryptFrameFromSource(map, aliceSsrc, "opus", first, 5), (e) => e.name === "FRAME__UNKNOWN_SOURCE");
  bob.handleTimeout(6, rng);
  let lookup;
  for (let r = bob.pollRequest(); r !== undefined; r = bob.pollRequest()) if (r.kind === "get_group_participants") lookup = r;
  assert.deepEqual([lookup.kind, [...lookup.sources]], ["get_group_participants", [aliceSsrc]]);
  const { updates } = server.handle(2n, lookup);
  bob.handleResponse(lookup.id, updates, undefined, 6, rng);
  assert.deepEqual(map.get(aliceSsrc), { userId: 1n, kind: "audio" });
  const next = alice.encryptFrame(0, "opus", new Uint8Array([8, 8]), 7, rng, 3, true);
  const r = bob.decryptFrameFromSource(map, aliceSsrc, "opus", next, 7);
  assert.deepEqual([r.data, r.userId, r.kind], [new Uint8Array([8, 8]), 1n, "audio"]);
  assert.throws(() => map.apply([]), (e) => e.name === "INVALID_INPUT");
});

test("a session's configuration: SessionConfig's fields in camelCase, checked as the core checks them", () => {
  const byDefault = new Session(1n).config;
  assert.equal(byDefault.callSizeLimit, 200);
  assert.equal(byDefault.pruneLeft, true);
  assert.equal(Object.keys(byDefault).length, 19);
  const s = new Session(1n, { callSizeLimit: 1000, pruneLeft: false, maxRequestsPerSecond: 5, pollLimit: undefined });
  assert.deepEqual(s.config, { ...byDefault, callSizeLimit: 1000, pruneLeft: false, maxRequestsPerSecond: 5 });
  for (const bad of [{ callSizeLimit: 1 }, { callSizeLimt: 1000 }, { pollLimit: 2 ** 40 }, { callSizeLimit: -1 }, { callSizeLimit: 1.5 }]) {
    assert.throws(() => new Session(1n, bad), (e) => e.name === "INVALID_INPUT", JSON.stringify(bad));
  }
  for (const bad of [{ pruneLeft: 1 }, { callSizeLimit: "1000" }, 7, [1]]) {
    assert.throws(() => new Session(1n, bad), TypeError, JSON.stringify(bad));
  }
  // A session made after a refused one works (no borrow left taken).
  assert.equal(new Session(2n, null).config.callSizeLimit, 200);
});
