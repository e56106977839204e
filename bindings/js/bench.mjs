// Packet encryption and decryption (1 KiB) and block application in Node through the package.
// Prints ops/s as JSON lines; test.sh puts them beside the native numbers of the same run.
import { Call, PrivateKey, Rng, createSelfAddBlock, createZeroBlock, toServerForm } from "./index.js";

const rng = new Rng(new Uint8Array(32).fill(9));
const a = PrivateKey.generate(rng);
const b = PrivateKey.generate(rng);
const zero = toServerForm(
  createZeroBlock(a, [{ userId: 1n, publicKey: a.publicKey, flags: 3 }, { userId: 2n, publicKey: b.publicKey, flags: 3 }], 3, rng),
);
const alice = new Call(1n, a, zero, rng);
const bob = new Call(2n, b, zero, rng);
const frame = new Uint8Array(1024).fill(1);
const measure = (name, n, f) => {
  f();
  const t = performance.now();
  for (let i = 0; i < n; i++) f();
  console.log(JSON.stringify({ name, ops_per_s: n / ((performance.now() - t) / 1000) }));
};
measure("packet_encrypt/1024", 3000, () => alice.encrypt(0, frame, 0, rng));
const packets = Array.from({ length: 3001 }, () => alice.encrypt(0, frame, 0, rng));
let k = 0;
measure("packet_decrypt/1024", 3000, () => bob.decrypt(1n, packets[k++], 0));
// Block application: 60 self-adds (groups of 3 to 62) applied by a member that follows the chain.
let last = zero;
const blocks = [];
for (let i = 0; i < 60; i++) {
  const k = PrivateKey.generate(rng);
  last = toServerForm(createSelfAddBlock(k, last, BigInt(10 + i), 3, rng));
  blocks.push(last);
}
const follower = new Call(1n, a, zero, rng);
let j = 0;
measure("block_apply/self_add", 59, () => follower.applyBlock(blocks[j++], 0, rng));
