// Joins a Telegram conference call by its link with mtcute, end-to-end encrypted by confchain.
//
//   npm install confchain @mtcute/node@0.30.3
//   TG_API_ID=... TG_API_HASH=... node mtcute-join.mjs https://t.me/call/<slug>
//
// What this example leaves to you, as a real application owns it:
//  * the media stack: MEDIA_PARAMS is a placeholder for the join JSON your WebRTC stack produces;
//    the transport parameters Telegram answers with arrive in onConnection; frames are encrypted
//    with session.encrypt / session.decrypt;
//  * showing the emojis (verification_done) for the members to compare aloud;
//  * the rejoin policy: this example stops when the session is removed, fails or leaves.
// (GramJS, the `telegram` package, is at layer 198 and lacks getGroupCallChainBlocks.)
import { TelegramClient } from "@mtcute/node";
import { Rng, Session } from "confchain";
import { MtcuteConference } from "confchain/mtcute";

const SSRC = 0x1234; // our audio source, as the media stack picked it
const MEDIA_PARAMS = JSON.stringify({ ufrag: "<ice ufrag>", pwd: "<ice pwd>", fingerprints: [], ssrc: SSRC, "ssrc-groups": [] });
const DONE = new Set(["removed", "failed", "left"]);

const slug = process.argv[2].replace(/\/$/, "").split("/").pop();
const client = new TelegramClient({ apiId: Number(process.env.TG_API_ID), apiHash: process.env.TG_API_HASH, storage: "confchain.session" });
const me = await client.start();
const session = new Session(BigInt(me.id));
const rng = Rng.fromCrypto();
const conf = new MtcuteConference(client, session, rng, {
  params: MEDIA_PARAMS,
  call: { _: "inputGroupCallSlug", slug }, // the real identity is learned from the join
  source: SSRC,
  onConnection: (params) => console.log("for the media stack:", params.slice(0, 80), "..."),
});
client.onRawUpdate.add((info) => conf.handleUpdate(info.update));

session.join(conf.clock(), rng);
let stop = false;
process.on("SIGINT", () => (stop = true));
while (!stop && !DONE.has(session.state)) {
  await conf.flush();
  session.handleTimeout(conf.clock(), rng);
  await conf.flush();
  for (let e = session.pollEvent(); e !== undefined; e = session.pollEvent()) {
    if (e.kind === "verification_done") console.log("compare with the others:", e.emojis.join(" "));
    else console.log(e);
  }
  const due = session.pollTimeout();
  const wait = due === undefined ? 1000 : Math.min(1000, Math.max(0, due - conf.clock()));
  await new Promise((resolve) => setTimeout(resolve, wait));
}
if (!DONE.has(session.state)) {
  session.leave(conf.clock());
  await conf.flush();
}
await client.close();
