// One-to-one calls (requestCall, acceptCall, confirmCall) through the WebAssembly package.
import test from "node:test";
import assert from "node:assert/strict";
import { ConfchainError, P2PCallee, P2PCaller, Rng } from "../index.js";

test("both sides agree on the key, fingerprint and emojis", () => {
  const rng = new Rng(new Uint8Array(32).fill(6));
  const caller = new P2PCaller(rng);
  const callee = new P2PCallee(caller.gAHash, rng);
  const k1 = caller.onAccepted(callee.gB);
  const k2 = callee.onConfirmed(caller.gA, k1.fingerprint);
  assert.deepEqual(k1.key(), k2.key());
  assert.equal(k1.key().length, 256);
  assert.deepEqual(k1.emojis, k2.emojis);
  assert.throws(() => callee.onConfirmed(caller.gA, k1.fingerprint ^ 1n), (e) => e instanceof ConfchainError && e.name === "DH_CHECK");
});
