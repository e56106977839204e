// Type-checked with `tsc --noEmit` against index.d.ts and the generated declarations.
import { Call, ConfchainError, PrivateKey, Rng, createZeroBlock, toServerForm } from "../index.js";

const rng: Rng = Rng.fromCrypto();
const key: PrivateKey = PrivateKey.generate(rng);
const zero: Uint8Array = toServerForm(createZeroBlock(key, [{ userId: 1n, publicKey: key.publicKey, flags: 3 }], 0, rng));
const call: Call = new Call(1n, key, zero, rng);
const height: number = call.height;
try {
  call.applyBlock(zero, 0, rng);
} catch (e) {
  if (e instanceof ConfchainError) {
    const code: number = e.code;
    console.log(code, e.name, height);
  }
}

import { Session, type Request, type SessionConfig } from "../index.js";
import { Server } from "../testkit.js";
const session: Session = new Session(7n);
const large: SessionConfig = { callSizeLimit: 1000, pruneLeft: false };
const limit: number = new Session(8n, large).config.callSizeLimit;
void limit;
session.join(0, rng);
const request = session.pollRequest() as Request | undefined;
if (request) console.log(request.kind, new Server().height);

// The TL front (for MTProto-library tests; testkit.js, a build with the testkit feature).
import { TlFront } from "../testkit.js";
const front: TlFront = new TlFront(1n, 2n);
const link: string = front.inviteLink;
void link;

// Media frames and the browser's Encoded Transform.
import { MediaDecryptor, MediaEncryptor, framePlaintext, type ReceivedFrame, type SentFrame } from "../index.js";
import { MediaTransform, framesPerSecond } from "../transform.js";
const sent: SentFrame = call.encryptFrameDetailed(0, "h264", new Uint8Array(8), 0, rng);
const got: ReceivedFrame = call.decryptFrame(1n, "opus", sent.packet, 0);
const level: number | null = got.level;
const enc: MediaEncryptor = call.mediaEncryptor(rng);
const dec: MediaDecryptor = call.mediaDecryptor();
const prefix: number = framePlaintext(104, new Uint8Array(4), 0, false).clearPrefix;
const transform = new MediaTransform({ call, rng, now: () => 0 });
const fps: number = framesPerSecond(transform.stats.send);
const viaSession = new MediaTransform({ call: session, rng });
void viaSession;
void [level, enc, dec, prefix, fps];

// Who sent a frame: the SSRC table, decryption by SSRC, receivers attached by SSRC.
import { SourceTable, type SourceChange, type SourcedFrame } from "../index.js";
const sources: SourceTable = new SourceTable();
const changes: SourceChange[] = sources.apply([{ userId: 1n, source: 5, video: { sourceGroups: [{ sources: [6] }] } }]);
const byIt: SourcedFrame = call.decryptFrameFromSource(sources, 5, "opus", sent.packet, 0);
const fromDec: SourcedFrame = dec.decryptFrameFromSource(sources, 5, "opus", sent.packet, 0);
const misses: Uint32Array = sources.takeMisses();
declare const receiver: RTCRtpReceiver;
if (Math.random() > 2) transform.attachReceiver(receiver, { sources });
void [changes, byIt.userId, fromDec.kind, misses];
