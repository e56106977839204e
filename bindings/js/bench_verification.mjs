// The emoji verification round in Node: one member of an N-member call takes the round's 2N
// broadcasts (N commits, N reveals, its own two echoed back by the server among them), through
// this package's `Call.receiveBroadcast`, and, in the same process and interleaved, through the
// official web client's TypeScript (tweb, `src/lib/calls/e2e/`) when its sources are given.
//
//   node bench_verification.mjs [--tweb DIR] [--sizes 2,20,200] [--runs 5]
//
// DIR holds tweb's `src/lib/calls/e2e/{crypto,keys,tl,tlTypes,emoji}.ts`; esbuild,
// libsodium-wrappers and aes-js must resolve from there (its node_modules or a parent's). Those
// files are bundled with esbuild, tweb's `@lib/crypto/subtle` stubbed with Node's Web Crypto.
// Without --tweb only our side is measured. Nothing of tweb's is in this repository.
//
// What is timed, per round, both sides the same: the observer's own commit echo and the other
// N-1 members' commits, taking its own reveal, then its own reveal echo and the N-1 reveals, in
// server form, one at a time and in order, until the round ends (emojis known). The observer is
// set up (our `new Call(...)` from the zero block; tweb's `VerificationChain.start`) untimed.
// tweb's side is what tweb's `E2eCall.receiveInbound` runs (`serverToLocal`, `decodeGroupBroadcast`,
// `VerificationChain.receive`, each awaited) without its queue and delayed-broadcast buffer.
//
// The broadcasts of the other members are made once per N by real members: Calls of this
// package, and a tweb VerificationChain for the observer's user in the round that produced them,
// so each side accepts the other's broadcasts (an interop check: the script fails if tweb's round
// or ours does not end, or if their four emojis differ).
import { createHash } from "node:crypto";
import { readFileSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL, fileURLToPath } from "node:url";
import { Call, PrivateKey, Rng, createZeroBlock, toServerForm } from "./index.js";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const sizes = opt("--sizes", "2,20,200").split(",").map(Number);
const runs = Number(opt("--runs", "5"));
const twebDir = opt("--tweb", undefined);

const sha256 = (b) => new Uint8Array(createHash("sha256").update(b).digest());
const seedOf = (i) => sha256(new TextEncoder().encode(`bench member ${i}`));
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

// Telegram's four emojis of an emoji hash (src/emoji.rs), to compare tweb's hash with ours.
const emojiTable = readFileSync(fileURLToPath(new URL("../../src/data/emojis.txt", import.meta.url)), "utf8")
  .split("\n")
  .filter((l) => l.length);
const emojisOf = (hash) =>
  [0, 1, 2, 3].map((i) => {
    const v = Buffer.from(hash.subarray(8 * i, 8 * i + 8)).readBigUInt64BE() & 0x7fffffffffffffffn;
    return emojiTable[Number(v % 333n)];
  });

async function loadTweb(dir) {
  const e2e = resolve(dir, "src/lib/calls/e2e");
  const require = createRequire(join(e2e, "crypto.ts"));
  const esbuild = require(require.resolve("esbuild"));
  const out = mkdtempSync(join(tmpdir(), "tweb-bench-"));
  const file = join(out, "tweb.mjs");
  await esbuild.build({
    stdin: {
      contents: [
        `export {VerificationChain} from ${JSON.stringify(join(e2e, "emoji.ts"))};`,
        `export {PrivateKey, PublicKey} from ${JSON.stringify(join(e2e, "keys.ts"))};`,
        `export {ensureCryptoReady} from ${JSON.stringify(join(e2e, "crypto.ts"))};`,
        `export {decodeGroupBroadcast} from ${JSON.stringify(join(e2e, "tlTypes.ts"))};`,
        `export {TLReader, serverToLocal, localToServer} from ${JSON.stringify(join(e2e, "tl.ts"))};`,
      ].join("\n"),
      resolveDir: e2e,
      loader: "ts",
    },
    bundle: true,
    format: "esm",
    platform: "node",
    outfile: file,
    logLevel: "warning",
    plugins: [
      {
        name: "tweb-stubs",
        setup(build) {
          build.onResolve({ filter: /^@lib\/crypto\/subtle$/ }, () => ({ path: "subtle", namespace: "stub" }));
          build.onLoad({ filter: /.*/, namespace: "stub" }, () => ({
            contents: "export default globalThis.crypto.subtle;",
            loader: "js",
          }));
        },
      },
    ],
  });
  // libsodium-wrappers is CommonJS inside an ES bundle: give it a require.
  const code = readFileSync(file, "utf8");
  writeFileSync(
    file,
    `import { createRequire as __cr } from "node:module"; const require = __cr(${JSON.stringify(join(e2e, "x.js"))});\n` + code,
  );
  const t = await import(pathToFileURL(file).href);
  rmSync(out, { recursive: true, force: true });
  await t.ensureCryptoReady();
  return t;
}

const tweb = twebDir ? await loadTweb(twebDir) : undefined;
if (!twebDir) console.error("bench_verification: no --tweb DIR given: measuring confchain only (see benches/README.md)");

/** One N: the call, the others' broadcasts (server form), and the interop check. */
async function setup(n) {
  const rng = new Rng(new Uint8Array(32).fill(7));
  const seeds = Array.from({ length: n }, (_, i) => seedOf(i));
  const keys = seeds.map((s) => PrivateKey.fromBytes(s));
  const participants = keys.map((k, i) => ({ userId: BigInt(i + 1), publicKey: k.publicKey, flags: 3 }));
  const zeroPlain = createZeroBlock(keys[0], participants, 3, rng);
  const zero = toServerForm(zeroPlain);
  const blockHash = sha256(zeroPlain);
  const members = keys.slice(1).map((k, i) => new Call(BigInt(i + 2), k, zero, rng));
  const commits = members.map((m) => toServerForm(m.pullOutbound()[0]));
  if (commits.some((c) => !Buffer.from(c.subarray(80, 112)).equals(Buffer.from(blockHash)))) {
    throw new Error("the broadcasts' chain hash is not SHA-256 of the zero block");
  }
  // The observer's user (1) in the round that made the broadcasts: tweb's chain if tweb is
  // there, else one of our Calls.
  let observerCommit, observerReveal, observerEmojis;
  let twebChain;
  if (tweb) {
    const priv = tweb.PrivateKey.fromSeed(seeds[0]);
    const vp = participants.map((p) => ({ userId: p.userId, publicKey: new tweb.PublicKey(p.publicKey) }));
    twebChain = await tweb.VerificationChain.start(0, blockHash, vp[0], priv, vp);
    observerCommit = tweb.localToServer(twebChain.pullOutbound()[0]);
  } else {
    const obs = new Call(1n, keys[0], zero, rng);
    observerCommit = toServerForm(obs.pullOutbound()[0]);
    twebChain = obs;
  }
  const allCommits = [observerCommit, ...commits];
  for (const m of members) for (const c of allCommits) m.receiveBroadcast(c);
  const reveals = members.map((m) => toServerForm(m.pullOutbound()[0]));
  if (tweb) {
    for (const c of commits) await twebChain.receive(tweb.decodeGroupBroadcast(new tweb.TLReader(tweb.serverToLocal(c))));
    observerReveal = tweb.localToServer(twebChain.pullOutbound()[0]);
    for (const r of reveals) await twebChain.receive(tweb.decodeGroupBroadcast(new tweb.TLReader(tweb.serverToLocal(r))));
    const s = twebChain.snapshot();
    if (s.phase !== "end") throw new Error(`interop: tweb's round did not end (${s.commitsSeen} commits, ${s.revealsSeen} reveals)`);
    observerEmojis = emojisOf(s.emojiHash);
  } else {
    for (const c of allCommits) twebChain.receiveBroadcast(c);
    observerReveal = toServerForm(twebChain.pullOutbound()[0]);
    for (const r of reveals) twebChain.receiveBroadcast(r);
    observerEmojis = twebChain.emojis;
  }
  for (const m of members) for (const r of [observerReveal, ...reveals]) m.receiveBroadcast(r);
  for (const m of members) {
    if (!m.emojis || m.emojis.join() !== observerEmojis.join()) {
      throw new Error(`interop: emojis differ: ${m.emojis} vs ${observerEmojis}`);
    }
  }
  return { n, seeds, keys, participants, zero, blockHash, commits, reveals, rng, emojis: observerEmojis };
}

/** Our observer's round: ms for the timed part. */
function oursRound(s) {
  const call = new Call(1n, s.keys[0], s.zero, s.rng);
  const own = toServerForm(call.pullOutbound()[0]);
  const t = performance.now();
  call.receiveBroadcast(own);
  for (const c of s.commits) call.receiveBroadcast(c);
  call.receiveBroadcast(toServerForm(call.pullOutbound()[0]));
  for (const r of s.reveals) call.receiveBroadcast(r);
  const ms = performance.now() - t;
  if (!call.emojis) throw new Error("our round did not end");
  call.free();
  return ms;
}

/** tweb's observer's round: ms for the timed part. */
async function twebRound(s) {
  const priv = tweb.PrivateKey.fromSeed(s.seeds[0]);
  const vp = s.participants.map((p) => ({ userId: p.userId, publicKey: new tweb.PublicKey(p.publicKey) }));
  const chain = await tweb.VerificationChain.start(0, s.blockHash, vp[0], priv, vp);
  const own = tweb.localToServer(chain.pullOutbound()[0]);
  const take = (bytes) => chain.receive(tweb.decodeGroupBroadcast(new tweb.TLReader(tweb.serverToLocal(bytes))));
  const t = performance.now();
  await take(own);
  for (const c of s.commits) await take(c);
  await take(tweb.localToServer(chain.pullOutbound()[0]));
  for (const r of s.reveals) await take(r);
  const ms = performance.now() - t;
  if (chain.snapshot().phase !== "end") throw new Error("tweb's round did not end");
  return ms;
}

for (const n of sizes) {
  const s = await setup(n);
  // Rounds per sample: at least 400 broadcasts, so that small calls are not timer noise.
  const reps = Math.max(1, Math.ceil(400 / (2 * n)));
  const sample = async (f) => {
    let ms = 0;
    for (let i = 0; i < reps; i++) ms += await f(s);
    return ms / reps;
  };
  await sample(oursRound);
  if (tweb) await sample(twebRound);
  const ours = [];
  const theirs = [];
  for (let r = 0; r < runs; r++) {
    // Interleaved, alternating which side goes first.
    if (tweb && r % 2) theirs.push(await sample(twebRound));
    ours.push(await sample(oursRound));
    if (tweb && !(r % 2)) theirs.push(await sample(twebRound));
  }
  const line = {
    n,
    broadcasts: 2 * n,
    rounds_per_sample: reps,
    confchain_ms: +median(ours).toFixed(3),
    confchain_runs_ms: ours.map((x) => +x.toFixed(3)),
    confchain_us_per_broadcast: +((median(ours) * 1000) / (2 * n)).toFixed(1),
  };
  if (tweb) {
    Object.assign(line, {
      tweb_ms: +median(theirs).toFixed(3),
      tweb_runs_ms: theirs.map((x) => +x.toFixed(3)),
      tweb_us_per_broadcast: +((median(theirs) * 1000) / (2 * n)).toFixed(1),
      speedup: +(median(theirs) / median(ours)).toFixed(2),
      speedup_runs: theirs.map((x, i) => +(x / ours[i]).toFixed(2)),
      emojis_agree: true,
    });
  }
  console.log(JSON.stringify(line));
}
