// Type declarations of confchain/transform (transform.js).
import type { Call, MediaDecryptor, MediaEncryptor, Rng, Session, SourceTable } from "./index.js";

/** One side's counters. `cryptoMs`: time spent in encryptFrame/decryptFrame. */
export interface SideStats {
  frames: number;
  ok: number;
  dropped: number;
  bytesIn: number;
  bytesOut: number;
  cryptoMs: number;
  byCodec: Record<string, number>;
  /** Dropped frames by error name (FRAME__START_CODE, DECRYPT__UNKNOWN_EPOCH, ...). */
  errors: Record<string, number>;
}
export interface TransformStats {
  send: SideStats & {
    /** Extra H.264 encryptions (attempts beyond the first), dropped frames' 3 included. */
    retries: number;
    /** H.264 frames that needed more than one attempt. */
    retriedFrames: number;
    /** H.264 frames dropped because all 4 attempts held a start code. */
    startCodeDrops: number;
  };
  receive: SideStats & {
    /** Empty frames the browser handed over: dropped without decrypting, not counted in `dropped`. */
    empty: number;
  };
}

/** What the worker forwards of each encoded frame. */
export interface FrameInfo {
  type?: "key" | "delta" | "empty";
  payloadType?: number;
  mimeType?: string;
  ssrc?: number;
  csrcs?: number[];
  audioLevel?: number;
}

export interface MediaTransformOptions {
  /** The member's call, or its session (frames go through the session's current call), or a function returning either. */
  call?: Call | Session | (() => Call | Session);
  rng?: Rng;
  encryptor?: MediaEncryptor;
  decryptor?: MediaDecryptor;
  /** Time in integer milliseconds (default Date.now). */
  now?: () => number;
  /** 0 (default) or 1 (screencast on iOS/TDLib). */
  channel?: number;
  audioLevel?: (info: FrameInfo) => { level: number; speech: boolean } | undefined;
  worker?: Worker;
}

export declare class MediaTransform {
  constructor(options: MediaTransformOptions);
  stats: TransformStats;
  /** The level trailer of the last audio frame received. */
  lastLevel?: { userId: bigint; level: number; speech: boolean };
  resetStats(): void;
  attachSender(sender: RTCRtpSender, options?: { channel?: number; mode?: "script" | "streams" }): "script" | "streams";
  attachReceiver(
    receiver: RTCRtpReceiver,
    options:
      | { userId: bigint | ((info: FrameInfo) => bigint); mode?: "script" | "streams" }
      | { sources: SourceTable; mode?: "script" | "streams" },
  ): "script" | "streams";
  close(): void;
}

/** Frames per second of one side's crypto (frames / cryptoMs). */
export declare function framesPerSecond(side: SideStats): number;
