// Type declarations of the confchain package (the generated pkg/confchain_js.d.ts plus the
// friendly wrappers of index.js).
import type {
  Call as WasmCall,
  P2PCallee as WasmP2PCallee,
  P2PCaller as WasmP2PCaller,
  P2PKey as WasmP2PKey,
  PrivateKey as WasmPrivateKey,
  Rng as WasmRng,
  Session as WasmSession,
  MediaEncryptor as WasmMediaEncryptor,
  MediaDecryptor as WasmMediaDecryptor,
  SourceTable as WasmSourceTable,
  Codec,
  SentFrame,
  ReceivedFrame,
  FramePlaintext,
  MediaKind,
  Source,
  SourceChange,
  ParticipantVideo,
  ParticipantRecord,
  SourcedFrame,
  SessionConfig,
} from "./pkg/confchain_js.js";
export type {
  SessionConfig,
  Codec,
  SentFrame,
  ReceivedFrame,
  FramePlaintext,
  MediaKind,
  Source,
  SourceChange,
  ParticipantVideo,
  ParticipantRecord,
  SourcedFrame,
};
export {
  framePlaintext,
  isValidEncryptedFrame,
  stripReceivedFrame,
  codecName,
  audioLevelFromLinear,
  audioLevelFromPeak,
  audioLevelToLinear,
  audioLevelToByte,
  audioLevelFromByte,
} from "./pkg/confchain_js.js";

/** Thrown by every confchain function: `code` is the reference's number, `name` its code name or kind. */
export class ConfchainError extends Error {
  readonly code: number;
  readonly kind: string;
  get name(): string;
}

export declare class Rng extends WasmRng {
  constructor(seed: Uint8Array);
  /** Seeded from `crypto.getRandomValues`. */
  static fromCrypto(): Rng;
}
export declare const PrivateKey: typeof WasmPrivateKey;
export type PrivateKey = WasmPrivateKey;
export declare const Call: typeof WasmCall;
export type Call = WasmCall;

export declare const P2PCaller: typeof WasmP2PCaller;
export type P2PCaller = WasmP2PCaller;
export declare const P2PCallee: typeof WasmP2PCallee;
export type P2PCallee = WasmP2PCallee;
export declare const P2PKey: typeof WasmP2PKey;
export type P2PKey = WasmP2PKey;
export declare const Session: typeof WasmSession;
export type Session = WasmSession;

/** A request the session wants sent (`kind` names the TL method). */
export interface Request {
  id: number;
  kind:
    | "get_chain_blocks"
    | "create_conference"
    | "join"
    | "delete_participants"
    | "send_broadcast"
    | "send_encrypted_message"
    | "leave"
    | "get_group_participants";
  subChain?: number;
  offset?: number;
  limit?: number;
  publicKey?: Uint8Array;
  block?: Uint8Array;
  userIds?: bigint[];
  kick?: boolean;
  encryptedMessage?: Uint8Array;
  /** get_group_participants: the SSRCs to look up (phone.getGroupParticipants by sources). */
  sources?: number[];
}

/** updateGroupCallChainBlocks (`subChain` 0 or 1: one of another sub-chain is none of the
 * session's and is left out), updateGroupCallEncryptedMessage, or updateGroupCallParticipants (with
 * each participant's `date` and sources: what the session's `sourceMap()` is fed from). */
export type Update =
  | { subChain: number; blocks: Uint8Array[]; nextOffset: number }
  | { from: bigint; encryptedMessage: Uint8Array }
  | { participants: ParticipantRecord[] };

export interface Participant {
  userId: bigint;
  publicKey: Uint8Array;
  flags: number;
}

export declare function createZeroBlock(
  key: PrivateKey,
  participants: Participant[],
  externalPermissions: number,
  rng: Rng,
): Uint8Array;
export declare function createSelfAddBlock(
  key: PrivateKey,
  lastBlock: Uint8Array,
  userId: bigint,
  flags: number,
  rng: Rng,
): Uint8Array;
export declare function toServerForm(bytes: Uint8Array): Uint8Array;
export declare function version(): string;

/** Encrypts our media frames with the call's current epochs (`call.mediaEncryptor(rng)`). */
export declare const MediaEncryptor: typeof WasmMediaEncryptor;
export type MediaEncryptor = WasmMediaEncryptor;
/** Decrypts other members' media frames with the call's live epochs (`call.mediaDecryptor()`). */
export declare const MediaDecryptor: typeof WasmMediaDecryptor;
export type MediaDecryptor = WasmMediaDecryptor;
/** Who sends on each RTP SSRC of a call: fed with participants, read by decryptFrameFromSource. */
export declare const SourceTable: typeof WasmSourceTable;
export type SourceTable = WasmSourceTable;
/** tgcalls' payload types (browsers negotiate their own: see codecFromMimeType). */
export declare const PayloadType: { readonly OPUS: 111; readonly VP8: 100; readonly VP9: 102; readonly H264: 104 };
/** Camera and microphone (every app; screencast too on Desktop and Android). */
export declare const CHANNEL_MAIN: 0;
/** Screencast on iOS and TDLib clients. */
export declare const CHANNEL_SCREENCAST: 1;
/** H.264 encryptions of one frame before it is dropped with FRAME__START_CODE. */
export declare const MAX_FRAME_ATTEMPTS: 4;
/** "audio/opus" → "opus", "video/VP8" → "vp8", "video/H264" → "h264", anything else → "unknown". */
export declare function codecFromMimeType(mimeType: string): Codec;
