// Runs a three-member conference with the package, in the page, and shows it.
import { Call, PrivateKey, Rng, createSelfAddBlock, createZeroBlock, toServerForm, version } from "../../index.js";

const rng = Rng.fromCrypto();
const names = ["alice", "bob", "carol"];
const keys = names.map(() => PrivateKey.generate(rng));
const zero = toServerForm(createZeroBlock(keys[0], [{ userId: 1n, publicKey: keys[0].publicKey, flags: 7 }], 3, rng));
const calls = [new Call(1n, keys[0], zero, rng)];
let last = zero;
for (const i of [1, 2]) {
  const join = toServerForm(createSelfAddBlock(keys[i], last, BigInt(i + 1), 3, rng));
  for (const c of calls) c.applyBlock(join, 0, rng);
  calls.push(new Call(BigInt(i + 1), keys[i], join, rng));
  last = join;
}
for (let round = 0; round < 4; round++) {
  const out = calls.flatMap((c) => c.pullOutbound());
  for (const b of out) for (const c of calls) c.receiveBroadcast(toServerForm(b));
}
const packet = calls[0].encrypt(0, new TextEncoder().encode("hello"), 1, rng);
const heard = calls.slice(1).map((c, i) => new TextDecoder().decode(c.decrypt(1n, packet, 1)));

const rows = document.getElementById("members");
calls.forEach((c, i) => {
  const tr = document.createElement("tr");
  for (const text of [names[i], String(c.height), [...c.activeEpochs].join(", "), c.keyFingerprint, c.emojis.join("")]) {
    const td = document.createElement("td");
    td.textContent = text;
    tr.appendChild(td);
  }
  tr.lastChild.className = "emojis";
  rows.appendChild(tr);
});
const agree = new Set(calls.map((c) => c.emojis.join(""))).size === 1 && heard.every((h) => h === "hello");
document.getElementById("status").textContent = `confchain ${version()}: ${agree ? "all members agree" : "MISMATCH"}`;
document.body.dataset.done = agree ? "ok" : "mismatch";
