// The worker of confchain's WebRTC Encoded Transform (see transform.js). It holds no key and loads
// no WebAssembly: it forwards every encoded frame (its bytes transferred, not copied) over the
// MessagePort it was given to the page's MediaTransform, which encrypts or decrypts it with the
// member's Call, and puts the result back into the frame. A frame the page answers without data
// (a failed encrypt or decrypt) is dropped: nothing reaches the packetizer or the decoder in clear.
// Frames stay in order: one frame per stream is in flight at a time.
"use strict";

function run(readable, writable, port) {
  const waiting = new Map();
  let next = 0;
  port.onmessage = ({ data }) => {
    const done = waiting.get(data.id);
    if (done) {
      waiting.delete(data.id);
      done(data.data);
    }
  };
  const transform = new TransformStream({
    transform(frame, controller) {
      const id = next++;
      const metadata = frame.getMetadata ? frame.getMetadata() : {};
      const bytes = frame.data;
      const message = {
        id,
        data: bytes,
        type: frame.type,
        payloadType: metadata.payloadType,
        mimeType: metadata.mimeType,
        ssrc: metadata.synchronizationSource,
        csrcs: metadata.contributingSources,
        audioLevel: metadata.audioLevel,
      };
      return new Promise((resolve) => {
        waiting.set(id, (result) => {
          if (result && result.byteLength > 0) {
            frame.data = result;
            controller.enqueue(frame);
          }
          resolve();
        });
        port.postMessage(message, [bytes]);
      });
    },
  });
  readable
    .pipeThrough(transform)
    .pipeTo(writable)
    .catch(() => {})
    .finally(() => port.close());
}

// RTCRtpScriptTransform: `new RTCRtpScriptTransform(worker, { port }, [port])`.
self.onrtctransform = (event) => {
  const { readable, writable, options } = event.transformer;
  run(readable, writable, options.port);
};

// The same for streams a page took with createEncodedStreams() and transferred here.
self.onmessage = (event) => {
  const m = event.data;
  if (m && m.confchainStreams) run(m.readable, m.writable, m.port);
};
