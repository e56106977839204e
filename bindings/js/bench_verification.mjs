// The emoji verification round in Node: one member of an N-member call takes the round's 2N
// broadcasts (N commits, N reveals, its own two echoed back by the server among them), through
// this package's `Call.receiveBroadcast`, and, in the same process and interleaved, through the
// official web client's TypeScript (tweb, `src/lib/calls/e2e/`) when its sources are given.
//
//   node bench_verification.mjs [--tweb DIR] [--sizes 2,20,200] [--runs 5] [--pkg OTHER/index.js]
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
import { existsSync, readFileSync, mkdtempSync, writeFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { pathToFileURL, fileURLToPath } from "node:url";

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : dflt;
};
const sizes = opt("--sizes", "2,20,200").split(",").map(Number);
const runs = Number(opt("--runs", "5"));
const twebDir = opt("--tweb", undefined);
// --pkg: another build's entry (an index.js beside its pkg/), to compare builds in one process.
const pkg = opt("--pkg", undefined);
const { Call, PrivateKey, Rng, createZeroBlock, toServerForm } = await import(
  pkg ? pathToFileURL(resolve(pkg)).href : "./index.js"
);

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

let tweb;
if (!twebDir) {
  console.error("bench_verification: no --tweb DIR given: measuring confchain only (see benches/README.md)");
} else if (!existsSync(resolve(twebDir, "src/lib/calls/e2e/emoji.ts"))) {
  console.error(`bench_verification: ${twebDir} has no src/lib/calls/e2e/emoji.ts (tweb's sources): measuring confchain only`);
} else {
  try {
    tweb = await loadTweb(twebDir);
  } catch (e) {
    console.error(`bench_verification: tweb's files in ${twebDir} did not load (${e.message}): measuring confchain only`);
  }
}

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
  let observer;
  if (tweb) {
    const priv = tweb.PrivateKey.fromSeed(seeds[0]);
    const vp = participants.map((p) => ({ userId: p.userId, publicKey: new tweb.PublicKey(p.publicKey) }));
    observer = await tweb.VerificationChain.start(0, blockHash, vp[0], priv, vp);
    observerCommit = tweb.localToServer(observer.pullOutbound()[0]);
  } else {
    const obs = new Call(1n, keys[0], zero, rng);
    observerCommit = toServerForm(obs.pullOutbound()[0]);
    observer = obs;
  }
  const allCommits = [observerCommit, ...commits];
  for (const m of members) for (const c of allCommits) m.receiveBroadcast(c);
  const reveals = members.map((m) => toServerForm(m.pullOutbound()[0]));
  if (tweb) {
    for (const c of commits) await observer.receive(tweb.decodeGroupBroadcast(new tweb.TLReader(tweb.serverToLocal(c))));
    observerReveal = tweb.localToServer(observer.pullOutbound()[0]);
    for (const r of reveals) await observer.receive(tweb.decodeGroupBroadcast(new tweb.TLReader(tweb.serverToLocal(r))));
    const s = observer.snapshot();
    if (s.phase !== "end") throw new Error(`interop: tweb's round did not end (${s.commitsSeen} commits, ${s.revealsSeen} reveals)`);
    observerEmojis = emojisOf(s.emojiHash);
  } else {
    for (const c of allCommits) observer.receiveBroadcast(c);
    observerReveal = toServerForm(observer.pullOutbound()[0]);
    for (const r of [observerReveal, ...reveals]) observer.receiveBroadcast(r);
    observerEmojis = observer.emojis;
  }
  for (const m of members) for (const r of [observerReveal, ...reveals]) m.receiveBroadcast(r);
  for (const m of members) {
    if (!m.emojis || m.emojis.join() !== observerEmojis.join()) {
      throw new Error(`interop: emojis differ: ${m.emojis} vs ${observerEmojis}`);
    }
  }
  const packets = members.map((m) => m.encrypt(0, new Uint8Array(16), 0, rng));
  return { n, seeds, keys, participants, zero, blockHash, commits, reveals, packets, rng, emojis: observerEmojis };
}

/** Wall and CPU time (user + system, every thread of the process: tweb's Web Crypto digests run on
 * libuv's pool) of what `f` does, in ms. CPU time leaves out the time other processes of a loaded
 * machine take from this one. */
async function timed(f) {
  const c = process.cpuUsage();
  const t = performance.now();
  await f();
  const wall = performance.now() - t;
  const cpu = process.cpuUsage(c);
  return { wall, cpu: (cpu.user + cpu.system) / 1000 };
}

/** Our observer's round: ms for the timed part. `warm`: the observer first decrypts a packet of
 * every other member (untimed), as in a call where they have been sending media, so their keys
 * are in the call's key cache with their tables (SPEC.md §6.3, §7.2). */
async function oursRound(s, warm = false) {
  const call = new Call(1n, s.keys[0], s.zero, s.rng);
  const own = toServerForm(call.pullOutbound()[0]);
  if (warm) s.packets.forEach((p, i) => call.decrypt(BigInt(i + 2), p, 0));
  const ms = await timed(() => {
    call.receiveBroadcast(own);
    for (const c of s.commits) call.receiveBroadcast(c);
    call.receiveBroadcast(toServerForm(call.pullOutbound()[0]));
    for (const r of s.reveals) call.receiveBroadcast(r);
  });
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
  const ms = await timed(async () => {
    await take(own);
    for (const c of s.commits) await take(c);
    await take(tweb.localToServer(chain.pullOutbound()[0]));
    for (const r of s.reveals) await take(r);
  });
  if (chain.snapshot().phase !== "end") throw new Error("tweb's round did not end");
  return ms;
}

for (const n of sizes) {
  const s = await setup(n);
  // Rounds per sample: at least 400 broadcasts, so that small calls are not timer noise.
  const reps = Math.max(1, Math.ceil(400 / (2 * n)));
  const sample = async (f) => {
    const ms = { wall: 0, cpu: 0 };
    for (let i = 0; i < reps; i++) {
      const t = await f(s);
      ms.wall += t.wall / reps;
      ms.cpu += t.cpu / reps;
    }
    return ms;
  };
  const sides = [
    ["confchain", (x) => oursRound(x)],
    ["confchain_warm", (x) => oursRound(x, true)],
  ];
  if (tweb) sides.push(["tweb", twebRound]);
  const got = Object.fromEntries(sides.map(([name]) => [name, []]));
  for (const [, f] of sides) await sample(f);
  for (let r = 0; r < runs; r++) {
    // Interleaved, each side first in turn.
    for (let k = 0; k < sides.length; k++) {
      const [name, f] = sides[(r + k) % sides.length];
      got[name].push(await sample(f));
    }
  }
  const line = { n, broadcasts: 2 * n, rounds_per_sample: reps, emojis: s.emojis.join("") };
  for (const k of ["wall", "cpu"]) {
    line[k] = {};
    for (const [name] of sides) {
      const xs = got[name].map((x) => x[k]);
      line[k][`${name}_ms`] = +median(xs).toFixed(3);
      line[k][`${name}_us_per_broadcast`] = +((median(xs) * 1000) / (2 * n)).toFixed(1);
    }
    if (tweb) {
      for (const name of ["confchain", "confchain_warm"]) {
        const o = got[name].map((x) => x[k]);
        const t = got.tweb.map((x) => x[k]);
        line[k][`speedup${name.slice(9)}`] = +(median(t) / median(o)).toFixed(2);
        line[k][`speedup${name.slice(9)}_runs`] = t.map((x, i) => +(x / o[i]).toFixed(2));
      }
    }
  }
  console.log(JSON.stringify(line));
}
