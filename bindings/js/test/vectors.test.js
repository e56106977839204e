// The reference's vectors through the WebAssembly package: packets.json (every event) and the
// chain files (membership and key agreement after every block).
import test from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { createHash } from "node:crypto";
import { Call, ConfchainError, PrivateKey, Rng } from "../index.js";

const vectors = new URL("../../../vectors/tde2e/", import.meta.url);
const load = (name) => JSON.parse(readFileSync(new URL(name, vectors), "utf8"));
const hex = (s) => Uint8Array.from(s.match(/../g) ?? [], (h) => parseInt(h, 16));

test("packets.json: every apply, encrypt and decrypt event", () => {
  const v = load("packets.json");
  const rng = new Rng(new Uint8Array(32).fill(7));
  const keys = new Map(v.keys.map((k) => [BigInt(k.user_id), PrivateKey.fromBytes(hex(k.private_key))]));
  const blocks = v.blocks.map(hex);
  const calls = new Map();
  let n = 0;
  for (const e of v.events) {
    if (e.op === "apply_block") {
      const block = blocks[e.block_index];
      for (const c of calls.values()) c.applyBlock(block, 0, rng);
      for (const [uid, key] of keys) {
        if (calls.has(uid)) continue;
        try {
          calls.set(uid, new Call(uid, key, block, rng));
        } catch {
          // not a participant of this block yet
        }
      }
    } else if (e.op === "encrypt" || e.op === "decrypt") {
      const call = calls.get(BigInt(e.op === "encrypt" ? e.sender : e.receiver));
      const run = () =>
        e.op === "encrypt"
          ? call.encrypt(e.channel, hex(e.data), 0, rng, e.unencrypted_prefix_size)
          : call.decrypt(BigInt(e.sender), hex(e.packet), 0);
      if (e.expect === "ok") {
        const out = run();
        if (e.op === "decrypt") assert.deepEqual(out, hex(e.plaintext));
        else assert.equal(out.length, hex(e.packet).length);
      } else {
        assert.throws(run, (err) => {
          assert.ok(err instanceof ConfchainError);
          assert.equal(err.message, e.expect.message);
          if (e.expect.error) assert.equal(err.name, e.expect.error);
          return true;
        });
      }
    }
    n++;
  }
  assert.ok(n > 50);
});

for (const file of ["chain_basic_v0.json", "chain_basic_v1.json", "chain_random_walk.json"]) {
  test(`${file}: members agree on the key after every block`, () => {
    const v = load(file);
    const rng = new Rng(new Uint8Array(32).fill(3));
    const keys = new Map(v.keys.map((k) => [BigInt(k.user_id), PrivateKey.fromBytes(hex(k.private_key))]));
    const calls = new Map();
    for (const step of v.steps) {
      const block = hex(step.block);
      for (const [uid, c] of calls) {
        c.applyBlock(block, 0, rng);
        if (!c.isMember) calls.delete(uid);
      }
      for (const p of step.state.participants) {
        const uid = BigInt(p.user_id);
        if (!calls.has(uid) && keys.has(uid)) calls.set(uid, new Call(uid, keys.get(uid), block, rng));
      }
      // Every member's key is the reference's (its fingerprint: SHA-256 of the key, 4 bytes).
      const fingerprint = (k) => createHash("sha256").update(hex(k)).digest("hex").slice(0, 8);
      for (const g of step.group_keys) {
        const c = calls.get(BigInt(g.user_id));
        if (c) assert.equal(c.keyFingerprint, fingerprint(g.group_key), `user ${g.user_id} at height ${step.height}`);
      }
      for (const c of calls.values()) assert.equal(c.height, step.height);
    }
  });
}
