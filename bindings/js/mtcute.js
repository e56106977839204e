// Carries a confchain Session over mtcute (tested with @mtcute/core 0.30.3 and @mtcute/tl 223.0.0,
// which has every method the session uses). `import { MtcuteConference } from "confchain/mtcute"`.
//
// The session decides what to send; the adapter turns each request into mtcute's TL object
// (`{_: "phone.joinGroupCall", call, joinAs, params, publicKey, block, ...}`, filling the call,
// joinAs, params, randomId, source and the flags), sends it with `client.call`, and turns the
// result or the error back into what the session takes: `updates` into session updates,
// `tl.RpcError` (FLOOD_WAIT_%d with seconds 30) into "FLOOD_WAIT_30", a transport failure into
// "TIMEOUT". Pushed updates go through `handleUpdate` (hook it to `client.onRawUpdate`);
// `updateGroupCallConnection` goes to your `onConnection` callback.
//
// What stays yours: the MTProto connection (a logged-in TelegramClient), the media stack and the
// `params` JSON it produces, showing the emojis, and when to rejoin. mtcute sleeps through flood
// waits shorter than its `floodSleepThreshold` (10 s by default) by itself.
//
// GramJS (the `telegram` npm package) is at layer 198 and has no getGroupCallChainBlocks: it
// cannot carry a session.
import { Long, MtTimeoutError, TransportError, tl } from "@mtcute/core";

/** The layer's method for each session request kind. */
export const METHODS = {
  create_conference: "phone.createConferenceCall",
  get_chain_blocks: "phone.getGroupCallChainBlocks",
  join: "phone.joinGroupCall",
  delete_participants: "phone.deleteConferenceCallParticipants",
  send_broadcast: "phone.sendConferenceCallBroadcast",
  send_encrypted_message: "phone.sendGroupCallEncryptedMessage",
  leave: "phone.leaveGroupCall",
  get_group_participants: "phone.getGroupParticipants",
};

const long = (v) => Long.fromString(BigInt(v).toString());
const big = (l) => BigInt(l.toString());

/** The API error string the session takes for an error thrown by `client.call`. */
export function errorString(err) {
  if (err instanceof tl.RpcError) {
    if (err.text === "FLOOD_WAIT_%d") return `FLOOD_WAIT_${err.seconds}`;
    if (err.code === -503 || err.text === "Timeout") return "TIMEOUT";
    if (err.text.includes("%d")) {
      // A parameterized error mtcute split: put the number back.
      const value = err.seconds ?? err.newDc ?? err.dc ?? err.minutes ?? err.which ?? err.codeLength;
      return err.text.replace("%d", String(value));
    }
    return err.text;
  }
  // Anything else that got no answer: the connection, a timeout (MtTimeoutError, TransportError).
  if (err instanceof MtTimeoutError || err instanceof TransportError) return "TIMEOUT";
  if (err && typeof err === "object" && ["ECONNRESET", "ECONNREFUSED", "ETIMEDOUT", "EPIPE"].includes(err.code)) {
    return "TIMEOUT";
  }
  throw err;
}

function callId(call) {
  return call && call._ === "inputGroupCall" ? [big(call.id), big(call.accessHash)] : undefined;
}

const same = (a, b) => a !== undefined && b !== undefined && a[0] === b[0] && a[1] === b[1];

/**
 * The Session configuration Telegram's app config sets, from `help.getAppConfig`:
 * `new Session(userId, await sessionConfig(client))` takes the call size limit the server gives
 * (`conference_call_size_limit`, brought into the session's range, 2 to 10,000); `{}` without it.
 */
export async function sessionConfig(client) {
  return appSessionConfig(await client.call({ _: "help.getAppConfig", hash: 0 }));
}

/** `sessionConfig` of a `help.appConfig` already fetched. */
export function appSessionConfig(appConfig) {
  const config = appConfig && appConfig.config;
  if (!config || config._ !== "jsonObject") return {};
  for (const item of config.value) {
    if (item.key === "conference_call_size_limit" && item.value._ === "jsonNumber" && Number.isFinite(item.value.value)) {
      return { callSizeLimit: Math.trunc(Math.min(Math.max(item.value.value, 2), 10_000)) };
    }
  }
  return {};
}

/** The updates inside a result (`updates`, `updatesCombined`, `updateShort`). */
export function updatesOf(result) {
  if (!result || typeof result !== "object") return [];
  if (result._ === "updates" || result._ === "updatesCombined") return result.updates;
  if (result._ === "updateShort") return [result.update];
  return [];
}

/** One conference call carried by an mtcute client. */
export class MtcuteConference {
  /**
   * @param {{call: (o: object) => Promise<any>}} client  an mtcute TelegramClient (or anything with `call`)
   * @param {import("./index.js").Session} session
   * @param {import("./index.js").Rng} rng
   * @param {object} options  `params` (string or () => string), `call` (an mtcute InputGroupCall,
   *   or inputGroupCallSlug / inputGroupCallInviteMessage before the identity is known), `joinAs`,
   *   `randomId`, `source`, `inviteHash`, `muted`, `videoStopped`, `onConnection(params, presentation)`,
   *   `onOther(update)`, `clock()` (milliseconds), `sources` (a SourceTable: every participant
   *   update about the call is applied to it, with mtcute's own `source`, `video` and
   *   `presentation`; `onSources(changes)` hears what changed)
   */
  constructor(client, session, rng, options = {}) {
    this.client = client;
    this.session = session;
    this.rng = rng;
    this.params = options.params ?? "{}";
    this.call = options.call;
    this.joinAs = options.joinAs ?? { _: "inputPeerSelf" };
    // One randomId per conference: a create retried after a lost answer is the same create.
    this.randomId = options.randomId ?? globalThis.crypto.getRandomValues(new Int32Array(1))[0];
    this.source = options.source ?? 0;
    this.inviteHash = options.inviteHash;
    this.muted = options.muted ?? false;
    this.videoStopped = options.videoStopped ?? false;
    this.onConnection = options.onConnection;
    this.onOther = options.onOther;
    this.clock = options.clock ?? (() => performance.now());
    this.sources = options.sources;
    this.onSources = options.onSources;
  }

  #params() {
    return { _: "dataJSON", data: typeof this.params === "function" ? this.params() : this.params };
  }

  /** mtcute's TL object for a session request. */
  toFunction(request) {
    const method = METHODS[request.kind];
    if (method === undefined) throw new Error(`unknown request kind ${request.kind}`);
    const flags = { muted: this.muted || undefined, videoStopped: this.videoStopped || undefined };
    if (request.kind === "create_conference") {
      const randomId = request.randomId ?? this.randomId;
      if (request.block === undefined) return { _: method, randomId, ...flags };
      // join, publicKey, block and params share flags.3: all four are set together.
      return { _: method, randomId, join: true, publicKey: request.publicKey, block: request.block, params: this.#params(), ...flags };
    }
    if (this.call === undefined) throw new Error("the call is not known yet: create it or pass options.call");
    const call = this.call;
    switch (request.kind) {
      case "get_chain_blocks":
        return { _: method, call, subChainId: request.subChain, offset: request.offset, limit: request.limit };
      case "join":
        return {
          _: method,
          call,
          joinAs: this.joinAs,
          params: this.#params(),
          inviteHash: this.inviteHash,
          publicKey: request.publicKey,
          block: request.block,
          ...flags,
        };
      case "delete_participants":
        return {
          _: method,
          call,
          ids: request.userIds.map(long),
          block: request.block,
          onlyLeft: request.kick ? undefined : true,
          kick: request.kick ? true : undefined,
        };
      case "send_broadcast":
        return { _: method, call, block: request.block };
      case "send_encrypted_message":
        return { _: method, call, encryptedMessage: request.encryptedMessage };
      case "get_group_participants":
        // Who sends on these SSRCs (TL ints: the SSRCs' low 32 bits, signed).
        return { _: method, call, ids: [], sources: request.sources.map((s) => s | 0), offset: "", limit: request.sources.length };
      default:
        return { _: method, call, source: this.source };
    }
  }

  /**
   * Maps mtcute updates to the session's; `fromResult`: they came in the result of our own request
   * (whose call, when only a slug or invite message named it, is learned here). Routes the rest.
   */
  take(updates, fromResult = false) {
    const out = [];
    let known = callId(this.call);
    for (const u of updates) {
      if (u._ === "updateGroupCallConnection") {
        this.onConnection?.(u.params.data, Boolean(u.presentation));
        continue;
      }
      const about = u._ === "updateGroupCall" ? [big(u.call.id), big(u.call.accessHash)] : callId(u.call);
      if (known === undefined && fromResult && about !== undefined) {
        known = about;
        this.call = { _: "inputGroupCall", id: long(about[0]), accessHash: long(about[1]) };
      }
      if (!same(about, known)) {
        this.onOther?.(u);
        continue;
      }
      switch (u._) {
        case "updateGroupCall": {
          const discarded = u.call._ === "groupCallDiscarded";
          out.push({ call: { id: about[0], accessHash: about[1] }, discarded, inviteLink: discarded ? undefined : u.call.inviteLink });
          break;
        }
        case "updateGroupCallChainBlocks":
          out.push({ subChain: u.subChainId, blocks: u.blocks, nextOffset: u.nextOffset });
          break;
        case "updateGroupCallEncryptedMessage":
          if (u.fromId._ === "peerUser") out.push({ from: BigInt(u.fromId.userId), encryptedMessage: u.encryptedMessage });
          break;
        case "updateGroupCallParticipants": {
          // mtcute's groupCallParticipant as it is, with its user id: `date` and `source` (audio
          // SSRC; together they name the participation), `video` and `presentation` ({endpoint,
          // sourceGroups: [{semantics, sources}], audioSource}). The session keeps its own map of
          // them (`session.sourceMap()`); a `sources` table of the application's gets them too.
          const participants = u.participants
            .filter((p) => p.peer._ === "peerUser")
            .map((p) => ({
              userId: BigInt(p.peer.userId),
              left: Boolean(p.left),
              date: p.date,
              source: p.source,
              video: p.video,
              presentation: p.presentation,
            }));
          if (this.sources) {
            const changes = this.sources.apply(participants);
            if (changes.length > 0) this.onSources?.(changes);
          }
          out.push({ participants });
          break;
        }
        default:
          this.onOther?.(u);
      }
    }
    return out;
  }

  /** Sends one request and gives the session its response. */
  async send(request) {
    const fn = this.toFunction(request);
    let result;
    try {
      result = await this.client.call(fn);
    } catch (err) {
      this.session.handleResponse(request.id, undefined, errorString(err), this.clock(), this.rng);
      return;
    }
    // A lookup's phone.groupParticipants is the participants update it amounts to.
    const updates =
      result?._ === "phone.groupParticipants"
        ? [{ _: "updateGroupCallParticipants", call: fn.call, participants: result.participants, version: 0 }]
        : updatesOf(result);
    this.session.handleResponse(request.id, this.take(updates, true), undefined, this.clock(), this.rng);
  }

  /** Sends every request the session has, in order; how many were sent. */
  async flush() {
    let n = 0;
    for (let r = this.session.pollRequest(); r !== undefined; r = this.session.pollRequest()) {
      await this.send(r);
      n += 1;
    }
    return n;
  }

  /** Feeds one pushed update (`client.onRawUpdate.add((info) => conf.handleUpdate(info.update))`). */
  handleUpdate(update) {
    const mapped = this.take([update]);
    for (const u of mapped) this.session.handleUpdate(u, this.clock(), this.rng);
    return mapped.length > 0;
  }
}
