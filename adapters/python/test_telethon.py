"""Whole conferences carried by Telethon with no network.

Every request is Telethon's own function object, serialized by Telethon (``bytes(request)``),
answered by the server model from those bytes, and parsed back by Telethon
(``request.read_result``, ``tgread_object``, ``rpc_message_to_error``) into the objects the adapter
maps. Pinned: Telethon 1.45.0 (``adapters/ci.sh`` installs it).
"""

import asyncio

import pytest

telethon = pytest.importorskip("telethon")

from telethon import errors, types  # noqa: E402
from telethon.extensions import BinaryReader  # noqa: E402
from telethon.tl.functions import phone  # noqa: E402

import confchain  # noqa: E402
from confchain.telethon import TelethonConference, error_string, session_config  # noqa: E402
from harness import ACCESS_HASH, CALL_ID, Clock, Network, settle  # noqa: E402

RPC_ERROR = types.RpcError.CONSTRUCTOR_ID.to_bytes(4, "little")


def test_pinned_version():
    assert telethon.__version__ == "1.45.0"


class FakeClient:
    """What the adapter uses of a ``TelegramClient``: ``await client(request)`` and raw handlers.
    Injected failures go through Telethon's own types and error conversion too."""

    def __init__(self, net, user_id):
        self.net, self.user_id = net, user_id
        self.handlers = []
        self.inject = []  # next outcomes to force: an exception, or an error string sent as rpc_error
        self.sent = []  # the function objects sent

    async def __call__(self, request):
        self.sent.append(request)
        data = bytes(request)  # Telethon's serializer
        if self.inject:
            forced = self.inject.pop(0)
            if isinstance(forced, BaseException):
                raise forced
            code = 420 if forced.startswith("FLOOD") else 400
            result = bytes(types.RpcError(error_code=code, error_message=forced))
        else:
            result = self.net.answer(self.user_id, data)
        reader = BinaryReader(result)
        if result[:4] == RPC_ERROR:
            # As Telethon's MTProtoSender does with an rpc_result that carries rpc_error.
            raise errors.rpc_message_to_error(reader.tgread_object(), request)
        return request.read_result(reader)  # Telethon's parser

    def add_event_handler(self, callback, event=None):
        self.handlers.append(callback)

    def remove_event_handler(self, callback, event=None):
        self.handlers.remove(callback)

    async def push(self, data):
        updates = BinaryReader(data).tgread_object()  # Telethon's parser
        assert isinstance(updates, types.Updates)
        assert bytes(updates) == bytes(data), "the library writes back the front's bytes exactly"
        for u in updates.updates:  # Telethon hands events.Raw handlers one update at a time
            for h in list(self.handlers):
                await h(u)


class Member:
    def __init__(self, net, user_id, clock, seed, **kw):
        self.client = FakeClient(net, user_id)
        self.session = confchain.Session(user_id)
        self.rng = confchain.Rng(bytes([seed]) * 32)
        self.connections = []
        self.conf = TelethonConference(
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


def test_error_strings_through_telethon_errors():
    request = phone.LeaveGroupCallRequest(types.InputGroupCall(1, 2), 0)
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
        rpc = BinaryReader(bytes(types.RpcError(code, message))).tgread_object()
        exc = errors.rpc_message_to_error(rpc, request)
        assert error_string(exc) == message, (message, type(exc))
    assert isinstance(errors.rpc_message_to_error(types.RpcError(420, "FLOOD_WAIT_30"), request), errors.FloodWaitError)
    assert error_string(errors.rpc_message_to_error(types.RpcError(-503, "Timeout"), request)) == "TIMEOUT"
    # -503 with another text is still no answer in time (transient), not an unknown error.
    assert error_string(errors.rpc_message_to_error(types.RpcError(-503, "Timedout"), request)) == "TIMEOUT"
    # An error Telethon does not know keeps its text: the session does not retry it as transient.
    assert error_string(errors.rpc_message_to_error(types.RpcError(400, "SOMETHING_NEW"), request)) == "SOMETHING_NEW"
    assert error_string(ConnectionError("reset")) == "TIMEOUT"
    assert error_string(asyncio.TimeoutError()) == "TIMEOUT"
    with pytest.raises(ValueError):
        error_string(ValueError("a bug is not an API error"))


def test_functions_carry_the_applications_part():
    """Flags and arguments of each function, read back from Telethon's bytes by confchain's front."""
    conf = TelethonConference(None, confchain.Session(1), confchain.Rng(b"\x01" * 32), params='{"a":1}', random_id=77)
    s = confchain.Session(1)
    rng = confchain.Rng(b"\x02" * 32)
    s.create(0, rng, join=True)
    create = conf.to_function(s.poll_request())
    assert create.join and create.params.data == '{"a":1}' and create.random_id == 77
    raw = bytes(create)
    assert raw[:4] == (0x7D0444BB).to_bytes(4, "little") and raw[4] == 8  # join, public_key, block, params: flags.3
    with pytest.raises(ValueError):  # the call is not known before the create's result
        conf.to_function(type("R", (), {"kind": "leave"})())
    s2 = confchain.Session(2)
    s2.create(0, rng, join=False)
    only = conf.to_function(s2.poll_request())
    assert bytes(only)[4:8] == b"\x00\x00\x00\x00", "create only: no flags.3 at all"


def test_conference_over_telethon():
    asyncio.run(_conference())


async def _conference():
    net, clock = Network(), Clock()
    alice = Member(net, 1, clock, 1)
    bob = Member(net, 2, clock, 2, call=types.InputGroupCallSlug(net.slug))  # a join by link
    carol = Member(net, 3, clock, 3, call=types.InputGroupCall(CALL_ID, ACCESS_HASH))
    everyone = [alice, bob, carol]

    alice.session.create(clock.ms, alice.rng, join=True)
    await settle(net, [alice], clock, rounds=3)
    assert alice.session.state == "joined"
    assert isinstance(alice.client.sent[0], phone.CreateConferenceCallRequest)
    assert alice.conf.call == types.InputGroupCall(CALL_ID, ACCESS_HASH), "the create's result named the call"
    assert alice.connections and "transport" in alice.connections[0], "updateGroupCallConnection reached the app"

    for m in (bob, carol):
        m.session.join(clock.ms, m.rng)
        await settle(net, everyone, clock, rounds=4)
    await settle(net, everyone, clock)
    for m in everyone:
        assert m.session.state == "joined", (m.client.user_id, m.kinds())
        assert m.session.height == 2, (m.client.user_id, net.server.height, [x.session.height for x in everyone], m.kinds())
    assert bob.conf.call == types.InputGroupCall(CALL_ID, ACCESS_HASH), "the join by slug learned the identity"
    assert bob.connections, "bob's media stack got its connection"
    assert len({m.session.key_fingerprint for m in everyone}) == 1
    assert all(m.session.emojis for m in everyone) and len({tuple(m.session.emojis) for m in everyone}) == 1

    # Messages: relayed as updateGroupCallEncryptedMessage, parsed by Telethon.
    alice.session.send_message('{"_":"groupCallMessage","text":"hi"}', clock.ms, alice.rng)
    await settle(net, everyone, clock, rounds=3)
    for m in (bob, carol):
        got = [e for e in m.events if e.kind == "message_received"]
        assert got and got[-1].from_id == 1 and "hi" in got[-1].text

    # A flood wait and a lost connection on bob's next requests: the session gets the strings
    # back from Telethon's exceptions and the conference still converges.
    bob.client.inject = ["FLOOD_WAIT_1", ConnectionError("reset by peer")]

    # A removal (kick): carol is out, the others re-key.
    alice.session.remove([3], clock.ms, alice.rng, kick=True)
    await settle(net, everyone, clock)
    assert carol.session.state == "removed", carol.kinds()
    assert any(isinstance(f, phone.DeleteConferenceCallParticipantsRequest) and f.kick for f in alice.client.sent)
    assert alice.session.height == bob.session.height == 3
    assert alice.session.key_fingerprint == bob.session.key_fingerprint
    assert not bob.client.inject, "the injected failures were consumed"

    # Hostile pushes: an update about another call never reaches the session.
    other_call = types.InputGroupCall(CALL_ID + 1, ACCESS_HASH)
    forged = types.UpdateGroupCallChainBlocks(other_call, 0, [b"\x00" * 8], 99)
    parsed = BinaryReader(bytes(forged)).tgread_object()
    assert bob.conf.handle_update(parsed) is False
    assert bob.session.height == 3

    # Leaving: leaveGroupCall names the call and our source; the server forgets bob.
    bob.session.leave(clock.ms)
    await settle(net, everyone, clock, rounds=3)
    assert isinstance(bob.client.sent[-1], phone.LeaveGroupCallRequest)
    assert bob.session.state == "left"

    # Every request crossed as Telethon's bytes and the front decoded all of them.
    kinds = {data[:4] for _, data in net.log}
    for cls in (
        phone.CreateConferenceCallRequest,
        phone.JoinGroupCallRequest,
        phone.GetGroupCallChainBlocksRequest,
        phone.SendConferenceCallBroadcastRequest,
        phone.SendGroupCallEncryptedMessageRequest,
        phone.DeleteConferenceCallParticipantsRequest,
        phone.LeaveGroupCallRequest,
    ):
        assert cls.CONSTRUCTOR_ID.to_bytes(4, "little") in kinds, cls.__name__


def test_discarded_call_is_mapped():
    conf = TelethonConference(None, confchain.Session(1), confchain.Rng(b"\x05" * 32))
    conf.call = types.InputGroupCall(CALL_ID, ACCESS_HASH)
    ended = types.UpdateGroupCall(call=types.GroupCallDiscarded(CALL_ID, ACCESS_HASH, 10))
    parsed = BinaryReader(bytes(ended)).tgread_object()
    mapped = conf.take([parsed])
    assert len(mapped) == 1 and "discarded: true" in repr(mapped[0])
    # Someone else's call ending is not ours.
    other = types.UpdateGroupCall(call=types.GroupCallDiscarded(CALL_ID + 1, ACCESS_HASH, 10))
    assert conf.take([BinaryReader(bytes(other)).tgread_object()]) == []


def test_pushes_never_teach_or_reach_with_only_a_slug():
    """Known only by slug, a pushed update about any call is not ours and teaches no identity;
    with the identity known, another call's blocks and end stay out of the session."""
    conf = TelethonConference(None, confchain.Session(1), confchain.Rng(b"\x06" * 32))
    conf.call = types.InputGroupCallSlug("abc")
    other = types.UpdateGroupCall(call=types.GroupCallDiscarded(CALL_ID + 1, ACCESS_HASH, 10))
    assert conf.take([BinaryReader(bytes(other)).tgread_object()]) == []
    assert isinstance(conf.call, types.InputGroupCallSlug), "a push teaches nothing"
    conf.call = types.InputGroupCall(CALL_ID, ACCESS_HASH)
    blocks = types.UpdateGroupCallChainBlocks(
        call=types.InputGroupCall(CALL_ID, ACCESS_HASH + 1), sub_chain_id=0, blocks=[b"x"], next_offset=1
    )
    slug_blocks = types.UpdateGroupCallChainBlocks(
        call=types.InputGroupCallSlug("abc"), sub_chain_id=0, blocks=[b"x"], next_offset=1
    )
    items = [BinaryReader(bytes(u)).tgread_object() for u in (other, blocks, slug_blocks)]
    assert conf.take(items, result=True) == []
    assert (conf.call.id, conf.call.access_hash) == (CALL_ID, ACCESS_HASH)


class AppConfigClient:
    """Answers help.getAppConfig with `config` (serialized and parsed back by Telethon)."""

    def __init__(self, config):
        self.config = config

    async def __call__(self, request):
        assert type(request).__name__ == "GetAppConfigRequest" and request.hash == 0
        data = bytes(types.help.AppConfig(hash=1, config=self.config))
        return request.read_result(BinaryReader(data))


def test_session_config_from_the_app_config():
    """conference_call_size_limit sets the session's call size limit (brought into its range);
    without it, or not a number, the default stays."""

    def app(*pairs):
        return types.JsonObject(value=[types.JsonObjectValue(key=k, value=v) for k, v in pairs])

    cases = [
        (app(("a", types.JsonNull()), ("conference_call_size_limit", types.JsonNumber(value=500.0))), 500),
        (app(("conference_call_size_limit", types.JsonNumber(value=1.0))), 2),
        (app(("conference_call_size_limit", types.JsonString(value="500"))), 200),
        (app(), 200),
    ]
    for config, limit in cases:
        keywords = asyncio.run(session_config(AppConfigClient(config)))
        assert confchain.Session(1, **keywords).config["call_size_limit"] == limit
