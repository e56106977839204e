// Issue 34 in the browser: a member who joins late is heard and seen by every other member, with
// Chromium's real Opus and VP8 encoders and real RTP, the receivers finding each frame's sender
// by its RTP SSRC through the session's own source map (`attachReceiver(receiver, { sources:
// session.sourceMap() })`): no SSRC → user table in this page. Three sessions go through the
// server model (testkit's `Server`: the chain, and the participant updates with each
// participation's audio source and video source group, as Telegram's server sends them).
//
// 1. Alice creates the call, Bob joins; they exchange audio and video (Bob, who joined after
//    Alice, finds her SSRCs with one lookup: phone.getGroupParticipants by sources).
// 2. Carol joins while they do: the server's participant update carries her sources to Alice and
//    Bob before her first frame; she sends to both and receives from both (their SSRCs she looks
//    up: her first frames from them are dropped as FRAME__UNKNOWN_SOURCE until the answer).
// 3. Checked: Alice and Bob decrypt Carol's Opus and VP8 from her first frame, none dropped as
//    FRAME__UNKNOWN_SOURCE; Carol decrypts theirs, none dropped so once her lookups are
//    answered; every decoded video has a size.
//
// The server model assigns each participation its sources (Telegram's server echoes the ones the
// client chose in its join parameters); each member's own sources, from its join's answer, are
// put into its offers (the a=ssrc lines), so the browser sends on them.
import { Rng, Session, version } from "confchain";
import { Server } from "confchain/testkit";
import { MediaTransform } from "confchain/transform";

const logEl = document.getElementById("log");
const log = (s) => {
  logEl.textContent += s + "\n";
  console.log(s);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const fail = (s) => {
  throw new Error(s);
};
const start = Math.floor(performance.now());
const now = () => 1_000_000 + Math.floor(performance.now()) - start;
const rng = Rng.fromCrypto();
const W = 320;
const H = 240;

// ---- the server model, the members' sessions and their requests ----
const server = Server.withParticipantUpdates();
const names = new Map([[1n, "alice"], [2n, "bob"], [3n, "carol"]]);
const sessions = new Map();
// Each member's own sources, from its join's answer (what it sends on; not a map of others).
const own = new Map();

function pump() {
  for (let busy = true; busy; ) {
    busy = false;
    for (const [userId, s] of sessions) {
      for (let r = s.pollRequest(); r !== undefined; r = s.pollRequest()) {
        busy = true;
        if (r.kind === "get_group_participants") log(`${names.get(userId)} looks up SSRCs ${[...r.sources].join(", ")}`);
        const { updates, error, pushes } = server.handle(userId, r);
        for (const u of updates ?? []) {
          const me = u.participants?.find((p) => p.userId === userId && !p.left);
          if (me) own.set(userId, { audio: me.source, video: me.video?.sourceGroups[0]?.sources[0] });
        }
        s.handleResponse(r.id, updates, error, now(), rng);
        for (const { to, update } of pushes) sessions.get(to)?.handleUpdate(update, now(), rng);
      }
    }
  }
}
const ticker = setInterval(() => {
  for (const s of sessions.values()) s.handleTimeout(now(), rng);
  pump();
}, 20);

async function joined(userId, create) {
  const s = new Session(userId);
  sessions.set(userId, s);
  if (create) s.create(true, now(), rng);
  else s.join(now(), rng);
  pump();
  for (let i = 0; s.state !== "joined" || !own.has(userId); i++) {
    if (i > 200) fail(`${names.get(userId)}: ${s.state}, own sources ${JSON.stringify(own.get(userId))}`);
    await sleep(20);
  }
  const o = own.get(userId);
  log(`${names.get(userId)} (user ${userId}) joined at height ${s.height}: audio SSRC ${o.audio}, video SSRC ${o.video}`);
  return s;
}

// ---- the media: an oscillator and a moving canvas per member ----
const audioCtx = new AudioContext();
await audioCtx.resume();
function tracks(hue) {
  const osc = new OscillatorNode(audioCtx, { frequency: 300 + hue });
  const dest = audioCtx.createMediaStreamDestination();
  osc.connect(dest);
  osc.start();
  const canvas = document.createElement("canvas");
  canvas.width = W;
  canvas.height = H;
  const c = canvas.getContext("2d");
  let tick = 0;
  setInterval(() => {
    c.fillStyle = `hsl(${hue}, 80%, 50%)`;
    c.fillRect(0, 0, W, H);
    c.fillStyle = "#fff";
    c.fillRect((tick++ * 4) % W, 0, 16, H);
  }, 33);
  return { audio: dest.stream.getAudioTracks()[0], video: canvas.captureStream(30).getVideoTracks()[0] };
}

/** `sdp` with the primary SSRC of its audio and video sections replaced by `ssrcs`' ones. */
function withOwnSsrcs(sdp, ssrcs) {
  return sdp
    .split(/\r\n(?=m=)/)
    .map((section) => {
      const wanted = ssrcs[section.match(/^m=(\w+)/)?.[1]];
      const first = section.match(/^a=ssrc:(\d+)/m)?.[1];
      if (wanted === undefined || first === undefined) return section;
      return section
        .split("\r\n")
        .map((line) => (line.startsWith("a=ssrc") ? line.replace(new RegExp(`\\b${first}\\b`, "g"), String(wanted)) : line))
        .join("\r\n");
    })
    .join("\r\n");
}

const worker = new Worker(new URL("../../transform-worker.js", import.meta.url), { name: "confchain-transform" });
const transforms = [];
const links = [];

/** `from` sends its audio and video to `to`: one loopback pair of peer connections. */
async function link(from, to) {
  const [a, b] = [new RTCPeerConnection(), new RTCPeerConnection()];
  a.onicecandidate = (e) => e.candidate && b.addIceCandidate(e.candidate);
  b.onicecandidate = (e) => e.candidate && a.addIceCandidate(e.candidate);
  const send = new MediaTransform({ call: sessions.get(from), rng, now, worker });
  const receive = new MediaTransform({ call: sessions.get(to), rng, now, worker });
  send.name = `${names.get(from)} sends to ${names.get(to)}`;
  receive.name = `${names.get(to)} receives from ${names.get(from)}`;
  transforms.push(send, receive);
  const l = { from, to, a, b, receive, stream: new MediaStream() };
  b.ontrack = (e) => {
    // The sender of every frame from its SSRC, in the receiver's session's map.
    receive.attachReceiver(e.receiver, { sources: sessions.get(to).sourceMap() });
    l.stream.addTrack(e.track);
  };
  for (const track of [media.get(from).audio.clone(), media.get(from).video.clone()]) {
    const tr = a.addTransceiver(track, { direction: "sendonly" });
    if (track.kind === "video") {
      tr.setCodecPreferences(RTCRtpReceiver.getCapabilities("video").codecs.filter((c) => c.mimeType === "video/VP8"));
    }
    send.attachSender(tr.sender);
  }
  const offer = await a.createOffer();
  await a.setLocalDescription({ type: "offer", sdp: withOwnSsrcs(offer.sdp, own.get(from)) });
  await b.setRemoteDescription(a.localDescription);
  await b.setLocalDescription();
  await a.setRemoteDescription(b.localDescription);
  const v = document.createElement("video");
  v.muted = true;
  v.autoplay = true;
  v.srcObject = l.stream;
  v.play().catch(() => {});
  const f = document.createElement("figure");
  const c = document.createElement("figcaption");
  c.textContent = `${names.get(to)} sees ${names.get(from)}`;
  f.append(v, c);
  document.getElementById("videos").append(f);
  l.video = v;
  links.push(l);
  return l;
}

/**
 * The receive side of `l` decrypts Opus and VP8 frames, with no frame dropped as from an unknown
 * SSRC and almost none for any other reason (under load Chromium may hand a receive transform a
 * frame twice: refused as a REPLAY, by design).
 */
function decrypting(l) {
  const r = l.receive.stats.receive;
  const unknown = r.errors.FRAME__UNKNOWN_SOURCE ?? 0;
  if (unknown > 0) fail(`${l.receive.name}: ${unknown} frames dropped as FRAME__UNKNOWN_SOURCE after the map had the SSRCs`);
  return r.dropped * 100 <= r.ok && (r.byCodec.opus ?? 0) > 0 && (r.byCodec.vp8 ?? 0) > 0 && r.ok > 0;
}
const describe = (l) => {
  const r = l.receive.stats.receive;
  return `${l.receive.name}: ${r.ok} decrypted (${Object.entries(r.byCodec).map(([k, v]) => `${k} ${v}`).join(", ")}), ${r.dropped} dropped ${JSON.stringify(r.errors)}, video ${l.video.videoWidth}x${l.video.videoHeight}`;
};

/** Waits until the receiver of every link in `ls` has the sender's SSRCs in its session's map. */
async function mapped(ls, ms = 20000) {
  const t = performance.now();
  const known = (l) => {
    const map = sessions.get(l.to).sourceMap();
    return map.get(own.get(l.from).audio)?.userId === l.from && map.get(own.get(l.from).video)?.userId === l.from;
  };
  while (!ls.every(known)) {
    if (performance.now() - t > ms) fail(`lookups unanswered: ${ls.filter((l) => !known(l)).map((l) => l.receive.name).join(", ")}`);
    await sleep(50);
  }
}

/** Logs what `ls` dropped before their lookups were answered, and zeroes their counters. */
function before(ls) {
  for (const l of ls) {
    const r = l.receive.stats.receive;
    log(`  ${l.receive.name}, before the lookup's answer: ${r.ok} decrypted, ${r.dropped} dropped ${JSON.stringify(r.errors)}`);
    l.receive.resetStats();
  }
}

/** Waits until every link in `ls` decrypts both codecs (see `decrypting`) and shows video. */
async function settle(ls, what, ms = 20000) {
  const t = performance.now();
  while (!ls.every((l) => decrypting(l) && l.video.videoWidth > 0)) {
    if (performance.now() - t > ms) fail(`${what}: ${ls.map(describe).join("; ")}`);
    await sleep(100);
  }
  for (const l of ls) log(`  ${describe(l)}`);
}

const media = new Map();
try {
  log(`confchain ${version()}; ${navigator.userAgent}`);
  for (const [userId, hue] of [[1n, 0], [2n, 120], [3n, 240]]) media.set(userId, tracks(hue));

  // 1. Alice and Bob, exchanging media.
  const alice = await joined(1n, true);
  await joined(2n, false);
  const ab = [await link(1n, 2n), await link(2n, 1n)];
  // Bob meets Alice's SSRCs before knowing them: dropped as unknown until his lookup's answer.
  await mapped(ab);
  before(ab);
  await settle(ab, "alice and bob");
  log("alice and bob hear and see each other");

  // 2. Carol joins late: the participant update gives Alice and Bob her sources.
  const carol = await joined(3n, false);
  const c = own.get(3n);
  for (const [userId, s] of sessions) {
    if (userId === 3n) continue;
    const [audio, video] = [s.sourceMap().get(c.audio), s.sourceMap().get(c.video)];
    if (audio?.userId !== 3n || audio.kind !== "audio" || video?.userId !== 3n || video.kind !== "video") {
      fail(`${names.get(userId)}'s map after carol's join: ${JSON.stringify([audio, video], (_, v) => (typeof v === "bigint" ? String(v) : v))}`);
    }
  }
  log("the participant update mapped carol's SSRCs for alice and bob before her first frame");
  const fromCarol = [await link(3n, 1n), await link(3n, 2n)];
  const toCarol = [await link(1n, 3n), await link(2n, 3n)];

  // 3. Every member decrypts Carol from her first frame: nothing dropped, no lookup needed.
  await settle(fromCarol, "carol's media at alice and bob");
  log("alice and bob hear and see carol, late joiner, from her first frame (no FRAME__UNKNOWN_SOURCE)");
  // Carol meets the earlier members' SSRCs unknown: looked up, then everything decrypts.
  await mapped(toCarol);
  before(toCarol);
  await settle(toCarol, "alice's and bob's media at carol");
  log("carol hears and sees alice and bob once her lookups are answered");
  if (alice.state !== "joined" || carol.state !== "joined") fail(`states: ${alice.state}, ${carol.state}`);
  document.getElementById("status").textContent = "ok: a late joiner's audio and video decrypt for every member by SSRC";
  document.getElementById("status").className = "ok";
  document.body.dataset.done = "ok";
} catch (e) {
  log(`FAILED: ${e.stack ?? e}`);
  document.getElementById("status").textContent = `FAILED: ${e.message}`;
  document.getElementById("status").className = "fail";
  document.body.dataset.done = "fail";
} finally {
  clearInterval(ticker);
  for (const t of transforms) {
    const { send: s, receive: r } = t.stats;
    const side = (x) => `${x.frames} frames (${Object.entries(x.byCodec).map(([k, v]) => `${k} ${v}`).join(", ")}), ${x.dropped} dropped ${JSON.stringify(x.errors)}`;
    if (s.frames) log(`${t.name}: ${side(s)}`);
    if (r.frames) log(`${t.name}: ${side(r)}`);
  }
}
