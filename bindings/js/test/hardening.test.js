// Bad input from JavaScript gets an error naming the field, and poisons nothing: the Session, the
// Call, the Server and the Rng passed with them stay usable after each kind of malformed argument
// (wasm-bindgen holds their borrows while a method runs; an exception or trap thrown through it
// would leave them taken, "recursive use of an object", for good). And a freed Rng leaves no key
// in the memory it gave back.
import test from "node:test";
import assert from "node:assert/strict";
import { Call, ConfchainError, PrivateKey, Rng, Session, createZeroBlock, toServerForm } from "../index.js";
import { Server } from "../testkit.js";
import { initSync } from "../pkg/confchain_js.js";

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

// Throws `kind` (TypeError or ConfchainError INVALID_INPUT) with a message naming `field`.
function refused(f, kind, field) {
  assert.throws(f, (e) => {
    assert.ok(e instanceof kind, `${e} is not a ${kind.name}`);
    if (kind === ConfchainError) assert.equal(e.kind, "INVALID_INPUT");
    assert.ok(e.message.includes(field), `"${e.message}" does not name ${field}`);
    return true;
  });
}

const throwing = new Proxy({}, {
  get() {
    throw new Error("hostile getter");
  },
});
const throwingItem = Object.defineProperty([], 0, {
  get() {
    throw new Error("hostile item");
  },
});

test("malformed updates and responses: errors naming the field, session and rng still usable", () => {
  const rng = new Rng(new Uint8Array(32).fill(9));
  const server = new Server();
  const alice = new Session(1n);
  const sessions = new Map([[1n, alice]]);
  alice.create(true, 0, rng);
  pump(server, sessions, 0, rng);
  assert.equal(alice.state, "joined");

  const update = (u) => () => alice.handleUpdate(u, 1, rng);
  refused(update(undefined), TypeError, "update");
  refused(update(null), TypeError, "update");
  refused(update(5), TypeError, "update");
  refused(update({}), TypeError, "update");
  refused(update(throwing), TypeError, "update");
  refused(update({ subChain: 0, nextOffset: 2 }), TypeError, "update.blocks");
  refused(update({ subChain: 0, blocks: 2e9, nextOffset: 2 }), TypeError, "update.blocks");
  refused(update({ subChain: 0, blocks: [2e9], nextOffset: 2 }), TypeError, "update.blocks[0]");
  refused(update({ subChain: 0, blocks: ["ab"], nextOffset: 2 }), TypeError, "update.blocks[0]");
  refused(update({ subChain: 0, blocks: [{ length: 2e9 }], nextOffset: 2 }), TypeError, "update.blocks[0]");
  refused(update({ subChain: 0, blocks: throwingItem, nextOffset: 2 }), ConfchainError, "update.blocks[0]");
  refused(update({ subChain: 0, blocks: { length: 2e9 }, nextOffset: 2 }), TypeError, "update.blocks");
  refused(update({ subChain: 0, blocks: [] }), TypeError, "update.nextOffset");
  refused(update({ subChain: 0.5, blocks: [], nextOffset: 2 }), ConfchainError, "update.subChain");
  refused(update({ subChain: "0", blocks: [], nextOffset: 2 }), TypeError, "update.subChain");
  refused(update({ from: 2n, encryptedMessage: 2e9 }), TypeError, "update.encryptedMessage");
  refused(update({ from: 2n }), TypeError, "update.encryptedMessage");
  refused(update({ from: 1.5, encryptedMessage: new Uint8Array(4) }), ConfchainError, "update.from");
  refused(update({ from: "2", encryptedMessage: new Uint8Array(4) }), TypeError, "update.from");
  refused(update({ from: 2n ** 70n, encryptedMessage: new Uint8Array(4) }), ConfchainError, "update.from");

  const response = (id, updates, error) => () => alice.handleResponse(id, updates, error, 1, rng);
  refused(response(1, 5), TypeError, "updates");
  refused(response(1, "x"), TypeError, "updates");
  refused(response(1, [null]), TypeError, "updates[0]");
  refused(response(1, [{ subChain: 0, blocks: [2e9], nextOffset: 1 }]), TypeError, "updates[0].blocks[0]");
  refused(response(1, undefined, 5), TypeError, "error");
  refused(response(1, undefined, "E".repeat(1 << 24)), ConfchainError, "error");
  refused(response(-1, []), ConfchainError, "id");
  refused(response(NaN, []), ConfchainError, "id");

  // Times: NaN, negative, fractional, infinite.
  for (const t of [NaN, -1, 1.5, Infinity, -Infinity]) {
    refused(() => alice.handleUpdate({ subChain: 0, blocks: [], nextOffset: 1 }, t, rng), ConfchainError, "nowMs");
    refused(() => alice.handleTimeout(t, rng), ConfchainError, "nowMs");
    refused(() => alice.leave(t), ConfchainError, "nowMs");
    refused(() => alice.encrypt(0, new Uint8Array(3), t, rng), ConfchainError, "nowMs");
  }
  refused(() => alice.encrypt(0, 2e9, 1, rng), TypeError, "data");
  refused(() => alice.decrypt(2n, 2e9, 1), TypeError, "packet");

  // Everything still works: the session polls, encrypts, takes a well-formed update; the rng
  // draws; a second member joins through the same session and rng.
  assert.equal(alice.state, "joined");
  assert.notEqual(alice.pollTimeout(), undefined);
  alice.handleTimeout(1, rng);
  PrivateKey.generate(rng);
  const bob = new Session(2n);
  sessions.set(2n, bob);
  bob.join(2, rng);
  pump(server, sessions, 2, rng);
  assert.equal(bob.state, "joined");
  const packet = alice.encrypt(0, new Uint8Array([1, 2, 3]), 3, rng);
  assert.deepEqual(bob.decrypt(1n, packet, 3), new Uint8Array([1, 2, 3]));
});

test("malformed requests to the server model and arguments to a call leave them usable", () => {
  const rng = new Rng(new Uint8Array(32).fill(10));
  const server = new Server();
  refused(() => server.handle(1n, undefined), TypeError, "request");
  refused(() => server.handle(1n, throwing), TypeError, "request");
  refused(() => server.handle(1n, { kind: "join", publicKey: 2e9, block: new Uint8Array(8) }), TypeError, "publicKey");
  refused(() => server.handle(1n, { kind: "join", publicKey: new Uint8Array(31) }), ConfchainError, "publicKey");
  refused(() => server.handle(1n, { kind: "get_chain_blocks", subChain: 0, offset: 1.5 }), ConfchainError, "offset");
  refused(() => server.handle(1n, { kind: "delete_participants", userIds: [{}] }), TypeError, "userIds[0]");
  refused(() => server.handle(1n, { kind: "send_broadcast", block: 2e9 }), TypeError, "block");
  const s = new Session(1n);
  s.create(true, 0, rng);
  pump(server, new Map([[1n, s]]), 0, rng);
  assert.equal(server.height, 0);

  const key = PrivateKey.generate(rng);
  const zero = toServerForm(createZeroBlock(key, [{ userId: 1n, publicKey: key.publicKey, flags: 7 }], 0, rng));
  refused(() => new Call(1n, key, 2e9, rng), TypeError, "lastBlock");
  const call = new Call(1n, key, zero, rng);
  refused(() => call.applyBlock(2e9, 0, rng), TypeError, "block");
  refused(() => call.applyBlock(zero, NaN, rng), ConfchainError, "nowMs");
  refused(() => call.receiveBroadcast(undefined), TypeError, "message");
  refused(() => call.decryptMessage(1n, [1, 2], 0), TypeError, "message");
  refused(() => call.handleTimeout(-5), ConfchainError, "nowMs");
  refused(() => new Rng(32), TypeError, "seed");
  refused(() => new Rng(new Uint8Array(31)), ConfchainError, "seed");
  refused(() => PrivateKey.fromBytes("x".repeat(32)), TypeError, "seed");
  refused(() => toServerForm(2e9), TypeError, "bytes");
  const packet = call.encrypt(0, new Uint8Array([4, 5]), 0, rng);
  assert.ok(packet.length > 2);
  assert.equal(call.height, 0);
});

test("a freed Rng leaves no key in the memory it gave back", () => {
  // The module's heap (Rust's wasm32 layout puts the shadow stack in the first MiB, the heap
  // above it) is scanned for the seed, the RNG's ChaCha20 key: found while the Rng lives (the
  // control), gone once it is freed.
  const HEAP = 1 << 20;
  const holds = (seed) => {
    const m = new Uint8Array(initSync({ module: new Uint8Array() }).memory.buffer);
    for (let i = m.indexOf(seed[0], HEAP); i !== -1; i = m.indexOf(seed[0], i + 1)) {
      let j = 1;
      while (j < 32 && m[i + j] === seed[j]) j++;
      if (j === 32) return true;
    }
    return false;
  };
  const seed = globalThis.crypto.getRandomValues(new Uint8Array(32));
  const rng = new Rng(seed);
  PrivateKey.generate(rng);
  assert.ok(holds(seed), "the live key is not found: the scan proves nothing");
  rng.free();
  assert.ok(!holds(seed), "a freed Rng left its key behind");
});
