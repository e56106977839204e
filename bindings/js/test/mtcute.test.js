// Whole conferences carried by mtcute with no network: every request is mtcute's TL object,
// serialized by mtcute's writer (@mtcute/tl's writer map on TlBinaryWriter), answered by the
// server model's TL front from those bytes, and parsed back by mtcute's reader (and
// tl.RpcError.fromTl for errors) into the objects the adapter maps. Pinned in package.json:
// @mtcute/core 0.30.3, @mtcute/tl 223.0.0.
import test from "node:test";
import assert from "node:assert/strict";
import { Long, tl, MtTimeoutError } from "@mtcute/core";
import { TlBinaryReader, TlBinaryWriter } from "@mtcute/tl-runtime";
import { __tlWriterMap } from "@mtcute/tl/binary/writer.js";
import { __tlReaderMap } from "@mtcute/tl/binary/reader.js";
import { Rng, Session, SourceTable } from "../index.js";
import { Server, TlFront } from "../testkit.js";
import { MtcuteConference, errorString, sessionConfig, updatesOf } from "../mtcute.js";

const CALL_ID = 0x12345678n;
const ACCESS_HASH = -77n;
const RPC_ERROR = 0x2144ca19;

const serialize = (obj) => TlBinaryWriter.serializeObject(__tlWriterMap, obj);
const parse = (bytes) => TlBinaryReader.deserializeObject(__tlReaderMap, bytes);
const inputCall = (id, hash) => ({ _: "inputGroupCall", id: Long.fromString(String(id)), accessHash: Long.fromString(String(hash)) });

class Net {
  constructor() {
    this.server = new Server();
    this.front = new TlFront(CALL_ID, ACCESS_HASH);
    this.pending = [];
    this.methods = new Set();
  }
}

/** What the adapter uses of an mtcute client: `call(obj)`; failures through mtcute's types. */
class FakeClient {
  constructor(net, userId) {
    this.net = net;
    this.userId = userId;
    this.inject = [];
    this.sent = [];
  }

  async call(obj) {
    this.sent.push(obj);
    const bytes = serialize(obj); // mtcute's serializer
    const forced = this.inject.shift();
    if (forced instanceof Error) throw forced;
    let result;
    if (forced !== undefined) {
      result = serialize({ _: "mt_rpc_error", errorCode: 420, errorMessage: forced });
    } else {
      this.net.methods.add(new DataView(bytes.buffer, bytes.byteOffset).getUint32(0, true));
      const answer = this.net.front.handle(this.net.server, this.userId, bytes);
      this.net.pending.push(...answer.pushes);
      result = answer.result;
    }
    if (new DataView(result.buffer, result.byteOffset).getUint32(0, true) === RPC_ERROR) {
      const [code, message] = readRpcError(result);
      throw tl.RpcError.fromTl({ errorCode: code, errorMessage: message }); // as mtcute's session does
    }
    return parse(result); // mtcute's parser
  }
}

function readRpcError(bytes) {
  const r = TlBinaryReader.manual(bytes, 4);
  return [r.int(), r.string()];
}

class Member {
  constructor(net, userId, clock, options = {}) {
    this.client = new FakeClient(net, userId);
    this.session = new Session(userId);
    this.rng = new Rng(new Uint8Array(32).fill(Number(userId)));
    this.connections = [];
    this.events = [];
    this.conf = new MtcuteConference(this.client, this.session, this.rng, {
      params: `{"ssrc":${userId}}`,
      clock,
      onConnection: (p) => this.connections.push(p),
      ...options,
    });
  }

  drain() {
    for (let e = this.session.pollEvent(); e !== undefined; e = this.session.pollEvent()) this.events.push(e);
  }
}

async function settle(net, members, clock, rounds = 40) {
  for (let i = 0; i < rounds; i++) {
    for (const m of members) await m.conf.flush();
    const pending = net.pending.splice(0);
    for (const { to, updates } of pending) {
      const parsed = parse(updates); // mtcute's parser
      assert.deepEqual(serialize(parsed), updates, "mtcute writes back the front's bytes exactly");
      for (const m of members.filter((m) => m.client.userId === to)) {
        for (const u of updatesOf(parsed)) m.conf.handleUpdate(u);
      }
    }
    clock.ms += 300;
    for (const m of members) {
      m.session.handleTimeout(clock.ms, m.rng);
      m.drain();
    }
  }
}

test("pinned mtcute versions", async () => {
  const { readFile } = await import("node:fs/promises");
  const version = async (name) =>
    JSON.parse(await readFile(new URL(`../node_modules/@mtcute/${name}/package.json`, import.meta.url))).version;
  assert.equal(await version("core"), "0.30.3");
  assert.equal(await version("tl"), "223.0.0");
  const schema = await import("@mtcute/tl");
  assert.equal(schema.tl.LAYER, 223);
});

test("error strings through mtcute's errors", () => {
  for (const [code, message] of [
    [420, "FLOOD_WAIT_30"],
    [420, "FLOOD_PREMIUM_WAIT_5"],
    [403, "GROUPCALL_FORBIDDEN"],
    [400, "GROUPCALL_JOIN_MISSING"],
    [400, "GROUPCALL_INVALID"],
    [400, "GROUPCALL_SSRC_DUPLICATE_MUCH"],
    [400, "CONF_WRITE_CHAIN_INVALID"],
  ]) {
    const err = tl.RpcError.fromTl({ errorCode: code, errorMessage: message });
    assert.equal(errorString(err), message);
  }
  assert.equal(tl.RpcError.fromTl({ errorCode: 420, errorMessage: "FLOOD_WAIT_30" }).seconds, 30);
  assert.equal(errorString(new MtTimeoutError(1000)), "TIMEOUT");
  assert.throws(() => errorString(new TypeError("a bug is not an API error")));
});

test("a conference over mtcute", async () => {
  const net = new Net();
  const clock = { ms: 1000 };
  const now = () => clock.ms;
  const slug = net.front.inviteLink.split("/").pop();
  const alice = new Member(net, 1n, now);
  const bob = new Member(net, 2n, now, { call: { _: "inputGroupCallSlug", slug } });
  const carol = new Member(net, 3n, now, { call: inputCall(CALL_ID, ACCESS_HASH) });
  const everyone = [alice, bob, carol];

  alice.session.create(true, clock.ms, alice.rng);
  await settle(net, [alice], clock, 3);
  assert.equal(alice.session.state, "joined");
  assert.equal(alice.client.sent[0]._, "phone.createConferenceCall");
  assert.equal(alice.client.sent[0].join, true);
  assert.equal(big(alice.conf.call.id), CALL_ID, "the create's result named the call");
  assert.ok(alice.connections[0].includes("transport"), "updateGroupCallConnection reached the app");

  bob.session.join(clock.ms, bob.rng);
  await settle(net, [alice, bob], clock, 4);
  carol.session.join(clock.ms, carol.rng);
  await settle(net, everyone, clock);
  assert.equal(bob.conf.call._, "inputGroupCall", "the join by slug learned the identity");
  for (const m of everyone) {
    assert.equal(m.session.state, "joined");
    assert.equal(m.session.height, 2);
  }
  assert.deepEqual(alice.session.emojis, carol.session.emojis);

  alice.session.sendMessage('{"_":"groupCallMessage","text":"hi"}', clock.ms, alice.rng);
  await settle(net, everyone, clock, 3);
  for (const m of [bob, carol]) {
    assert.ok(m.events.some((e) => e.kind === "message_received" && e.from === 1n));
  }

  // A flood wait and a timeout on bob's next requests, through mtcute's own error types.
  bob.client.inject.push("FLOOD_WAIT_1", new MtTimeoutError(1000));
  alice.session.remove([3n], true, clock.ms, alice.rng);
  await settle(net, everyone, clock, 60);
  assert.equal(carol.session.state, "removed");
  const del = alice.client.sent.find((f) => f._ === "phone.deleteConferenceCallParticipants");
  assert.ok(del.kick && !del.onlyLeft && del.ids[0].toString() === "3");
  assert.equal(alice.session.height, 3);
  assert.equal(bob.session.height, 3);
  assert.equal(bob.client.inject.length, 0);

  // An update about another call never reaches the session.
  const forged = parse(serialize({ _: "updateGroupCallChainBlocks", call: inputCall(CALL_ID + 1n, ACCESS_HASH), subChainId: 0, blocks: [new Uint8Array(8)], nextOffset: 9 }));
  assert.equal(bob.conf.handleUpdate(forged), false);

  bob.session.leave(clock.ms);
  await settle(net, [alice, bob], clock, 3);
  assert.equal(bob.session.state, "left");
  assert.equal(bob.client.sent.at(-1)._, "phone.leaveGroupCall");

  for (const id of [0x7d0444bb, 0x8fb53057, 0xee9f88a6, 0xc6701900, 0xe5afa56d, 0x8ca60525, 0x500377f9]) {
    assert.ok(net.methods.has(id), `${id.toString(16)} crossed as mtcute's bytes`);
  }
});

test("a discarded call reaches the session", () => {
  const conf = new MtcuteConference(null, new Session(1n), new Rng(new Uint8Array(32)), { call: inputCall(CALL_ID, ACCESS_HASH) });
  const ended = parse(serialize({ _: "updateGroupCall", call: { _: "groupCallDiscarded", id: Long.fromString(String(CALL_ID)), accessHash: Long.fromString(String(ACCESS_HASH)), duration: 5 } }));
  const mapped = conf.take([ended]);
  assert.deepEqual(mapped, [{ call: { id: CALL_ID, accessHash: ACCESS_HASH }, discarded: true, inviteLink: undefined }]);
});

function big(l) {
  return BigInt(l.toString());
}

test("participants' sources reach the SSRC table through mtcute's own types", () => {
  const sources = new SourceTable();
  const heard = [];
  const conf = new MtcuteConference(null, new Session(1n), new Rng(new Uint8Array(32)), {
    call: inputCall(CALL_ID, ACCESS_HASH),
    sources,
    onSources: (c) => heard.push(...c),
  });
  const group = (semantics, s) => ({ _: "groupCallParticipantVideoSourceGroup", semantics, sources: s });
  const participant = (userId, source, extra = {}) => ({
    _: "groupCallParticipant",
    peer: { _: "peerUser", userId },
    date: 0,
    source,
    ...extra,
  });
  const update = parse(
    serialize({
      _: "updateGroupCallParticipants",
      call: inputCall(CALL_ID, ACCESS_HASH),
      participants: [
        participant(2, -5, {
          video: { _: "groupCallParticipantVideo", endpoint: "e", sourceGroups: [group("SIM", [10, 11]), group("FID", [10, 12])] },
          presentation: { _: "groupCallParticipantVideo", endpoint: "p", sourceGroups: [group("SIM", [20])], audioSource: 21 },
        }),
        participant(3, 30),
      ],
      version: 1,
    }),
  );
  const [mapped] = conf.take([update]);
  assert.deepEqual(mapped.participants.map((p) => [p.userId, p.left]), [[2n, false], [3n, false]]);
  assert.deepEqual(sources.get(2 ** 32 - 5), { userId: 2n, kind: "audio" }, "a negative TL int is the SSRC above 2^31");
  assert.deepEqual(sources.get(12), { userId: 2n, kind: "video" });
  assert.deepEqual(sources.get(20), { userId: 2n, kind: "screencast" });
  assert.deepEqual(sources.get(21), { userId: 2n, kind: "screencastAudio" });
  assert.deepEqual(sources.get(30), { userId: 3n, kind: "audio" });
  assert.equal(heard.length, 7);
  assert.equal(sources.size, 7);
  // User 3 leaves: its SSRC is nobody's.
  const left = parse(
    serialize({
      _: "updateGroupCallParticipants",
      call: inputCall(CALL_ID, ACCESS_HASH),
      participants: [participant(3, 30, { left: true })],
      version: 2,
    }),
  );
  conf.take([left]);
  assert.equal(sources.get(30), undefined);
  assert.deepEqual(heard.at(-1), { userId: 3n, kind: "audio", ssrc: 30, unmapped: true });
});

test("sessionConfig: the call size limit of Telegram's app config, through mtcute's writer and reader", async () => {
  const app = (...pairs) => ({ _: "jsonObject", value: pairs.map(([key, value]) => ({ _: "jsonObjectValue", key, value })) });
  const cases = [
    [app(["a", { _: "jsonNull" }], ["conference_call_size_limit", { _: "jsonNumber", value: 500 }]), 500],
    [app(["conference_call_size_limit", { _: "jsonNumber", value: 1e9 }]), 10_000],
    [app(["conference_call_size_limit", { _: "jsonString", value: "500" }]), 200],
    [app(), 200],
  ];
  for (const [config, limit] of cases) {
    const client = {
      async call(obj) {
        assert.equal(obj._, "help.getAppConfig");
        serialize(obj); // mtcute can write the request
        return parse(serialize({ _: "help.appConfig", hash: 1, config }));
      },
    };
    assert.equal(new Session(1n, await sessionConfig(client)).config.callSizeLimit, limit);
  }
});
