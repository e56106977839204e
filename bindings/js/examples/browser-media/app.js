// Sending media: two members of a conference in one page, each with a Call; Alice's camera
// (here a canvas) and microphone (an oscillator) go through a real RTCPeerConnection to Bob,
// encrypted frame by frame with the call's keys by confchain's WebRTC Encoded Transform.
// In an application, Bob's end is another browser and the SFU sits between them; Alice's Call
// follows the chain's blocks (joins, removals, re-keys) and the transform uses it as it is.
import { Call, PrivateKey, Rng, createZeroBlock, toServerForm } from "confchain";
import { MediaTransform } from "confchain/transform";

const log = (s) => (document.getElementById("log").textContent += s + "\n");
const rng = Rng.fromCrypto();

// The call: a zero block listing both members (a real app gets its blocks from Telegram).
const [aliceKey, bobKey] = [PrivateKey.generate(rng), PrivateKey.generate(rng)];
const zero = toServerForm(
  createZeroBlock(
    aliceKey,
    [
      { userId: 1n, publicKey: aliceKey.publicKey, flags: 7 },
      { userId: 2n, publicKey: bobKey.publicKey, flags: 3 },
    ],
    0,
    rng,
  ),
);
const alice = new Call(1n, aliceKey, zero, rng);
const bob = new Call(2n, bobKey, zero, rng);

// Media: a 440 Hz tone and a canvas.
const audio = new AudioContext();
const tone = new OscillatorNode(audio, { frequency: 440 });
const microphone = audio.createMediaStreamDestination();
tone.connect(microphone);
tone.start();
const canvas = Object.assign(document.createElement("canvas"), { width: 320, height: 240 });
const g = canvas.getContext("2d");
let x = 0;
setInterval(() => {
  g.fillStyle = "#2a6";
  g.fillRect(0, 0, 320, 240);
  g.fillStyle = "#fff";
  g.fillRect((x += 4) % 320, 100, 40, 40);
}, 33);
const camera = canvas.captureStream(30);

// Each member encrypts what it sends and decrypts what it receives with its own Call; the
// worker that WebRTC runs the transform in never sees a key.
const send = new MediaTransform({ call: alice, rng });
const receive = new MediaTransform({ call: bob });

const pcAlice = new RTCPeerConnection();
const pcBob = new RTCPeerConnection();
pcAlice.onicecandidate = (e) => e.candidate && pcBob.addIceCandidate(e.candidate);
pcBob.onicecandidate = (e) => e.candidate && pcAlice.addIceCandidate(e.candidate);
for (const track of [...microphone.stream.getTracks(), ...camera.getTracks()]) {
  send.attachSender(pcAlice.addTrack(track));
}
const received = new MediaStream();
pcBob.ontrack = (e) => {
  // The SFU tells Bob whose stream this is (the SSRC's user id); here it is Alice, user 1.
  receive.attachReceiver(e.receiver, { userId: 1n });
  received.addTrack(e.track);
};
document.getElementById("received").srcObject = received;
await pcAlice.setLocalDescription();
await pcBob.setRemoteDescription(pcAlice.localDescription);
await pcBob.setLocalDescription();
await pcAlice.setRemoteDescription(pcBob.localDescription);

// Done when Bob has decrypted a few seconds of both.
const timer = setInterval(() => {
  const { send: s } = send.stats;
  const { receive: r } = receive.stats;
  const video = document.getElementById("received");
  if (r.byCodec.opus > 50 && r.ok > 100 && video.videoWidth > 0) {
    clearInterval(timer);
    log(`alice encrypted ${s.ok} frames (${JSON.stringify(s.byCodec)}), dropped ${s.dropped}`);
    log(`bob decrypted ${r.ok} frames (${JSON.stringify(r.byCodec)}), dropped ${r.dropped} ${JSON.stringify(r.errors)}; video ${video.videoWidth}x${video.videoHeight}`);
    // The only drops expected here are duplicates: Chromium sometimes hands a receive transform
    // the same frame twice (a key frame completed again by a retransmission); the second is a
    // replay of the first and is dropped.
    document.body.dataset.done = Object.keys(r.errors).every((e) => e === "REPLAY") ? "ok" : "drops";
  }
}, 200);
