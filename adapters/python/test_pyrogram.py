"""Whole conferences carried by Pyrogram (Kurigram) with no network.

Every request is Pyrogram's own raw function object, serialized by Pyrogram (``query.write()``),
answered by the server model from those bytes, and parsed back by Pyrogram (``TLObject.read``,
``RPCError.raise_it``) into the objects the adapter maps. Pinned: Kurigram 2.2.26
(``adapters/ci.sh`` installs it).
"""

import asyncio

import pytest

pyrogram = pytest.importorskip("pyrogram")

from io import BytesIO  # noqa: E402

from pyrogram import errors, raw  # noqa: E402
from pyrogram.raw.core import TLObject  # noqa: E402

import confchain  # noqa: E402
from confchain.pyrogram import PyrogramConference, error_string, session_config  # noqa: E402
from harness import ACCESS_HASH, CALL_ID, Clock, Network, settle  # noqa: E402

types = raw.types
phone = raw.functions.phone
RPC_ERROR = types.RpcError.ID.to_bytes(4, "little")


def read(data):
    return TLObject.read(BytesIO(data))  # Pyrogram's parser


def test_pinned_version(tmp_path, monkeypatch):
    assert pyrogram.__version__ == "2.2.26"
    assert raw.all.layer >= 216


@pytest.fixture(autouse=True)
def _cwd(tmp_path, monkeypatch):
    # Pyrogram appends errors it has no class for to ./unknown_errors.txt.
    monkeypatch.chdir(tmp_path)


class FakeClient:
    """What the adapter uses of a ``pyrogram.Client``: ``await client.invoke(query)`` and raw
    handlers. Injected failures go through Pyrogram's own types and error conversion too."""

    def __init__(self, net, user_id):
        self.net, self.user_id = net, user_id
        self.handlers = []
        self.inject = []  # next outcomes to force: an exception, or an error string sent as rpc_error
        self.sent = []  # the function objects sent

    async def invoke(self, request):
        self.sent.append(request)
        data = request.write()  # Pyrogram's serializer
        if self.inject:
            forced = self.inject.pop(0)
            if isinstance(forced, BaseException):
                raise forced
            code = 420 if forced.startswith("FLOOD") else 400
            result = types.RpcError(error_code=code, error_message=forced).write()
        else:
            result = self.net.answer(self.user_id, data)
        obj = read(result)
        if result[:4] == RPC_ERROR:
            # As Pyrogram's session does with an rpc_result that carries rpc_error.
            errors.RPCError.raise_it(obj, type(request))
        return obj

    def add_handler(self, handler, group=0):
        self.handlers.append(handler)
        return handler, group

    def remove_handler(self, handler, group=0):
        self.handlers.remove(handler)

    async def push(self, data):
        updates = read(data)
        assert isinstance(updates, types.Updates)
        assert updates.write() == bytes(data), "the library writes back the front's bytes exactly"
        for u in updates.updates:  # Pyrogram hands raw handlers one update at a time
            for h in list(self.handlers):
                await h.callback(self, u, {}, {})


class Member:
    def __init__(self, net, user_id, clock, seed, **kw):
        self.client = FakeClient(net, user_id)
        self.session = confchain.Session(user_id)
        self.rng = confchain.Rng(bytes([seed]) * 32)
        self.connections = []
        self.conf = PyrogramConference(
            self.client,
            self.session,
            self.rng,
            params='{"ufrag":"%d","ssrc":%d}' % (user_id, user_id),
            clock=clock,
            on_connection=lambda params, presentation: self.connections.append(params),
            **kw,
        )
        self.conf.attach()
        self.events = []

    def drain_events(self):
        while True:
            e = self.session.poll_event()
            if e is None:
                return
            self.events.append(e)

    def kinds(self):
        return [e.kind for e in self.events]


def test_error_strings_through_pyrogram_errors():
    request = phone.LeaveGroupCall(call=types.InputGroupCall(id=1, access_hash=2), source=0)
    for code, message in [
        (420, "FLOOD_WAIT_30"),
        (420, "FLOOD_PREMIUM_WAIT_5"),
        (403, "GROUPCALL_FORBIDDEN"),
        (400, "GROUPCALL_JOIN_MISSING"),
        (400, "GROUPCALL_INVALID"),
        (400, "GROUPCALL_SSRC_DUPLICATE_MUCH"),
        (400, "CONF_WRITE_CHAIN_INVALID"),
        (400, "BLOCK_INVALID"),
        (500, "INTERNAL_SERVER_ERROR"),
    ]:
        rpc = read(types.RpcError(error_code=code, error_message=message).write())
        with pytest.raises(errors.RPCError) as exc:
            errors.RPCError.raise_it(rpc, type(request))
        assert error_string(exc.value) == message, (message, type(exc.value))
    with pytest.raises(errors.FloodWait):
        errors.RPCError.raise_it(types.RpcError(error_code=420, error_message="FLOOD_WAIT_30"), type(request))
    with pytest.raises(errors.RPCError) as exc:
        errors.RPCError.raise_it(types.RpcError(error_code=-503, error_message="Timeout"), type(request))
    assert error_string(exc.value) == "TIMEOUT"
    # -503 with another text is still no answer in time (transient), not an unknown error.
    with pytest.raises(errors.RPCError) as exc:
        errors.RPCError.raise_it(types.RpcError(error_code=-503, error_message="Timedout"), type(request))
    assert error_string(exc.value) == "TIMEOUT"
    assert error_string(ConnectionError("reset")) == "TIMEOUT"
    assert error_string(asyncio.TimeoutError()) == "TIMEOUT"
    with pytest.raises(ValueError):
        error_string(ValueError("a bug is not an API error"))


def test_functions_carry_the_applications_part():
    """Flags and arguments of each function, read back from Pyrogram's bytes by confchain's front."""
    conf = PyrogramConference(None, confchain.Session(1), confchain.Rng(b"\x01" * 32), params='{"a":1}', random_id=77)
    s = confchain.Session(1)
    rng = confchain.Rng(b"\x02" * 32)
    s.create(0, rng, join=True)
    create = conf.to_function(s.poll_request())
    assert create.join and create.params.data == '{"a":1}' and create.random_id == 77
    raw_bytes = create.write()
    assert raw_bytes[:4] == (0x7D0444BB).to_bytes(4, "little") and raw_bytes[4] == 8  # join, public_key, block, params: flags.3
    with pytest.raises(ValueError):  # the call is not known before the create's result
        conf.to_function(type("R", (), {"kind": "leave"})())
    s2 = confchain.Session(2)
    s2.create(0, rng, join=False)
    only = conf.to_function(s2.poll_request())
    assert only.write()[4:8] == b"\x00\x00\x00\x00", "create only: no flags.3 at all"


def test_conference_over_pyrogram():
    asyncio.run(_conference())


async def _conference():
    net, clock = Network(), Clock()
    alice = Member(net, 1, clock, 1)
    bob = Member(net, 2, clock, 2, call=types.InputGroupCallSlug(slug=net.slug))  # a join by link
    carol = Member(net, 3, clock, 3, call=types.InputGroupCall(id=CALL_ID, access_hash=ACCESS_HASH))
    everyone = [alice, bob, carol]

    alice.session.create(clock.ms, alice.rng, join=True)
    await settle(net, [alice], clock, rounds=3)
    assert alice.session.state == "joined"
    assert isinstance(alice.client.sent[0], phone.CreateConferenceCall)
    assert alice.conf.call == types.InputGroupCall(id=CALL_ID, access_hash=ACCESS_HASH), "the create's result named the call"
    assert alice.connections and "transport" in alice.connections[0], "updateGroupCallConnection reached the app"

    for m in (bob, carol):
        m.session.join(clock.ms, m.rng)
        await settle(net, everyone, clock, rounds=4)
    await settle(net, everyone, clock)
    for m in everyone:
        assert m.session.state == "joined", (m.client.user_id, m.kinds())
        assert m.session.height == 2, (m.client.user_id, net.server.height, [x.session.height for x in everyone], m.kinds())
    assert bob.conf.call == types.InputGroupCall(id=CALL_ID, access_hash=ACCESS_HASH), "the join by slug learned the identity"
    assert bob.connections, "bob's media stack got its connection"
    assert len({m.session.key_fingerprint for m in everyone}) == 1
    assert all(m.session.emojis for m in everyone) and len({tuple(m.session.emojis) for m in everyone}) == 1

    # Messages: relayed as updateGroupCallEncryptedMessage, parsed by Pyrogram.
    alice.session.send_message('{"_":"groupCallMessage","text":"hi"}', clock.ms, alice.rng)
    await settle(net, everyone, clock, rounds=3)
    for m in (bob, carol):
        got = [e for e in m.events if e.kind == "message_received"]
        assert got and got[-1].from_id == 1 and "hi" in got[-1].text

    # A flood wait and a lost connection on bob's next requests: the session gets the strings
    # back from Pyrogram's exceptions and the conference still converges.
    bob.client.inject = ["FLOOD_WAIT_1", ConnectionError("reset by peer")]

    # A removal (kick): carol is out, the others re-key.
    alice.session.remove([3], clock.ms, alice.rng, kick=True)
    await settle(net, everyone, clock)
    assert carol.session.state == "removed", carol.kinds()
    assert any(isinstance(f, phone.DeleteConferenceCallParticipants) and f.kick for f in alice.client.sent)
    assert alice.session.height == bob.session.height == 3
    assert alice.session.key_fingerprint == bob.session.key_fingerprint
    assert not bob.client.inject, "the injected failures were consumed"

    # Hostile pushes: an update about another call never reaches the session.
    other_call = types.InputGroupCall(id=CALL_ID + 1, access_hash=ACCESS_HASH)
    forged = types.UpdateGroupCallChainBlocks(call=other_call, sub_chain_id=0, blocks=[b"\x00" * 8], next_offset=99)
    parsed = read(forged.write())
    assert bob.conf.handle_update(parsed) is False
    assert bob.session.height == 3

    # Leaving: leaveGroupCall names the call and our source; the server forgets bob.
    bob.session.leave(clock.ms)
    await settle(net, everyone, clock, rounds=3)
    assert isinstance(bob.client.sent[-1], phone.LeaveGroupCall)
    assert bob.session.state == "left"

    # Every request crossed as Pyrogram's bytes and the front decoded all of them.
    kinds = {data[:4] for _, data in net.log}
    for cls in (
        phone.CreateConferenceCall,
        phone.JoinGroupCall,
        phone.GetGroupCallChainBlocks,
        phone.SendConferenceCallBroadcast,
        phone.SendGroupCallEncryptedMessage,
        phone.DeleteConferenceCallParticipants,
        phone.LeaveGroupCall,
    ):
        assert cls.ID.to_bytes(4, "little") in kinds, cls.__name__


def test_discarded_call_is_mapped():
    conf = PyrogramConference(None, confchain.Session(1), confchain.Rng(b"\x05" * 32))
    conf.call = types.InputGroupCall(id=CALL_ID, access_hash=ACCESS_HASH)
    ended = types.UpdateGroupCall(call=types.GroupCallDiscarded(id=CALL_ID, access_hash=ACCESS_HASH, duration=10))
    parsed = read(ended.write())
    mapped = conf.take([parsed])
    assert len(mapped) == 1 and "discarded: true" in repr(mapped[0])
    # Someone else's call ending is not ours.
    other = types.UpdateGroupCall(call=types.GroupCallDiscarded(id=CALL_ID + 1, access_hash=ACCESS_HASH, duration=10))
    assert conf.take([read(other.write())]) == []


class AppConfigClient:
    """Answers help.getAppConfig with `config` (written and read back by Pyrogram)."""

    def __init__(self, config):
        self.config = config

    async def invoke(self, request):
        assert isinstance(request, raw.functions.help.GetAppConfig) and request.hash == 0
        return TLObject.read(BytesIO(raw.types.help.AppConfig(hash=1, config=self.config).write()))


def test_session_config_from_the_app_config():
    """conference_call_size_limit sets the session's call size limit (brought into its range);
    without it, or not a number, the default stays."""
    j = raw.types

    def app(*pairs):
        return j.JsonObject(value=[j.JsonObjectValue(key=k, value=v) for k, v in pairs])

    cases = [
        (app(("a", j.JsonNull()), ("conference_call_size_limit", j.JsonNumber(value=500.0))), 500),
        (app(("conference_call_size_limit", j.JsonNumber(value=1e9))), 10_000),
        (app(("conference_call_size_limit", j.JsonString(value="500"))), 200),
        (app(), 200),
    ]
    for config, limit in cases:
        keywords = asyncio.run(session_config(AppConfigClient(config)))
        assert confchain.Session(1, **keywords).config["call_size_limit"] == limit
