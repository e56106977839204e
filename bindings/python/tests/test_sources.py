"""Who sent a frame (issue 34): the SSRC table, decryption by SSRC, the typed drop of an unknown
or stale SSRC, and the adapters' participant records from the libraries' own objects."""

from types import SimpleNamespace as NS

import pytest

import confchain
from confchain import Call, ConfchainError, Participant, PrivateKey, Rng, SourceTable
from confchain._adapter import participant_sources, to_confchain_updates


with_testkit = pytest.mark.skipif(not hasattr(confchain, "Server"), reason="built without the testkit feature")


def two_members():
    rng = Rng(bytes([3]) * 32)
    keys = [PrivateKey.generate(rng) for _ in range(2)]
    parts = [Participant(i + 1, k.public_key, 3) for i, k in enumerate(keys)]
    zero = confchain.to_server_form(confchain.create_zero_block(keys[0], parts, 0, rng))
    return rng, Call(1, keys[0], zero, rng), Call(2, keys[1], zero, rng)


def test_frames_by_ssrc():
    rng, alice, bob = two_members()
    table = SourceTable()
    packet = alice.encrypt_frame(0, "opus", b"hello", 1000, rng, 9, True)
    with pytest.raises(ConfchainError) as e:
        bob.decrypt_frame_from_source(table, 4242, "opus", packet, 1000)
    assert e.value.name == "FRAME__UNKNOWN_SOURCE"
    assert table.take_misses() == [4242]
    changes = table.apply([(1, False, 4242, ([[10, 11]], None), ([[20]], 21))])
    assert len(changes) == 5 and len(table) == 5
    assert table.get(21) == (1, "screencast_audio")
    assert bob.decrypt_frame_from_source(table, 4242, "opus", packet, 1000) == (b"hello", 9, True, 1, "audio")
    again = alice.encrypt_frame(0, "opus", b"again", 1000, rng, 9, True)
    assert bob.media_decryptor().decrypt_frame_from_source(table, 4242, "opus", again, 1000)[3:] == (1, "audio")
    # The SSRC moves to user 2, then user 2 leaves: a typed drop, no key tried.
    assert table.apply([(2, False, 4242, None, None)])[0] == (4242, 2, "audio", False, 1)
    table.apply([(2, True, 4242, None, None)])
    with pytest.raises(ConfchainError) as e:
        bob.decrypt_frame_from_source(table, 4242, "opus", again, 1000)
    assert e.value.name == "FRAME__UNKNOWN_SOURCE"
    # Negative TL ints are SSRCs above 2^31; anything else out of 32 bits is refused.
    table.apply([(3, False, -5, None, None)])
    assert table.get(2**32 - 5) == (3, "audio")
    with pytest.raises(ValueError):
        table.apply([(3, False, 2**32, None, None)])


def test_adapter_records_from_the_library_objects():
    """Telethon and Pyrogram objects have the same field names (NS stands in for either)."""

    def group(*s):
        return NS(semantics="SIM", sources=list(s))

    cam = NS(endpoint="e", source_groups=[group(10, 11), group(10, 12)], audio_source=None)
    p = NS(peer=NS(user_id=2), left=False, source=-5, video=cam, presentation=None)
    assert participant_sources(p) == (2, False, -5, ([[10, 11], [10, 12]], None), None)
    PeerUser = type("PeerUser", (), {})
    peer = PeerUser()
    peer.user_id = 2
    UpdateGroupCallParticipants = type("UpdateGroupCallParticipants", (), {})
    InputGroupCall = type("InputGroupCall", (), {})
    u = UpdateGroupCallParticipants()
    u.call = InputGroupCall()
    u.call.id, u.call.access_hash = 7, 8
    u.participants = [NS(peer=peer, left=False, source=30, video=cam, presentation=None)]
    table = SourceTable()
    mapped, other, _ = to_confchain_updates([u], (7, 8), sources=table)
    assert len(mapped) == 1 and other == []
    assert table.get(30) == (2, "audio") and table.get(12) == (2, "video")


@with_testkit
def test_the_sessions_source_map(pump):
    """A frame decrypts by SSRC through the session's own map: an SSRC it misses is looked up by
    the session, and full participant records fill it."""
    rng = Rng(bytes([6]) * 32)
    server = confchain.Server()
    alice, bob = confchain.Session(1), confchain.Session(2)
    alice.create(0, rng)
    pump(server, [alice, bob], 0, rng)
    bob.join(0, rng)
    pump(server, [alice, bob], 0, rng)
    assert alice.state == bob.state == "joined"
    table = bob.source_map()
    alice_ssrc = 1000  # the server model gives the first participation the lowest SSRC
    assert table.get(alice_ssrc) is None
    first = alice.encrypt_frame(0, "opus", b"\x07\x07", 5, rng, 3, True)
    with pytest.raises(ConfchainError) as e:
        bob.decrypt_frame_from_source(table, alice_ssrc, "opus", first, 5)
    assert e.value.name == "FRAME__UNKNOWN_SOURCE"
    bob.handle_timeout(6, rng)
    lookups = [r for r in iter(bob.poll_request, None) if r.kind == "get_group_participants"]
    assert [(r.kind, r.sources) for r in lookups] == [("get_group_participants", [alice_ssrc])]
    updates, error, _ = server.handle(2, lookups[0])
    bob.handle_response(lookups[0].id, 6, rng, updates=updates, error=error)
    assert table.get(alice_ssrc) == (1, "audio")
    # The frame that came before the answer (held by the application) decrypts now.
    assert bob.decrypt_frame_from_source(table, alice_ssrc, "opus", first, 7) == (b"\x07\x07", 3, True, 1, "audio")
    following = alice.encrypt_frame(0, "opus", b"\x08\x08", 7, rng, 3, True)
    assert bob.decrypt_frame_from_source(table, alice_ssrc, "opus", following, 7)[3:] == (1, "audio")
    # The session applies its own updates: full records (the camera too) map, pairs still work.
    with pytest.raises(ValueError):
        table.apply([])
    record = (1, False, alice_ssrc, ([[2000, 2001]], None), None, 0, 0)
    bob.handle_update(confchain.update_participants([record]), 8, rng)
    assert table.get(2001) == (1, "video")
    bob.handle_update(confchain.update_participants([(3, True)]), 8, rng)
    assert bob.state == "joined" and table.get(alice_ssrc) == (1, "audio")
    # The session empties its map when it leaves.
    bob.leave(9)
    pump(server, [alice, bob], 9, rng)
    assert bob.state == "left" and len(table) == 0


def test_participant_records():
    """SourceTable.apply and update_participants take the same records, 2 to 7 fields."""
    table = SourceTable()
    table.apply([(1, False), (2, False, 10), (3, False, 20, None, ([[30]], 31), 1700000000, 5)])
    assert (table.get(10), table.get(30), table.get(31)) == ((2, "audio"), (3, "screencast"), (3, "screencast_audio"))
    for bad in [(1,), (1, False, 0, None, None, 0, 0, 0)]:
        with pytest.raises(ValueError):
            table.apply([bad])
    with pytest.raises(TypeError):
        confchain.update_participants([[1, False]])
    assert confchain.update_participants([(1, False), (2, True, 10, None, None, 1700000000)]) is not None


def test_adapter_lookup():
    """The session's lookup as the libraries' GetGroupParticipants, and its answer's participants
    as the session's update (NS stands in for the library's objects)."""
    from confchain._adapter import Conference, participants_update

    class Library(Conference):
        types = NS(InputPeerSelf=lambda: "self")

        def function_class(self, name):
            return lambda **kw: (name, kw)

    conference = Library(None, None, None, call="the call")
    function = conference.to_function(NS(kind="get_group_participants", sources=[5, 2**32 - 5]))
    assert function == (
        "GetGroupParticipants",
        {"call": "the call", "ids": [], "sources": [5, -5], "offset": "", "limit": 2},
    )
    PeerUser = type("PeerUser", (), {})
    peer = PeerUser()
    peer.user_id = 4
    answer = [NS(peer=peer, left=False, source=-5, video=None, presentation=None, date=1700000000)]
    table = SourceTable()
    assert participants_update(answer, 12, table) is not None
    assert table.get(2**32 - 5) == (4, "audio")


def test_a_table_holds_its_capacity():
    """Past its capacity a table forgets the participant updated least recently; the default
    holds 1,000 (five times the default call size limit)."""
    records = [(100 + u, False, u) for u in range(1, 1501)]
    default, large = SourceTable(), SourceTable(capacity=2000)
    default.apply(records)
    large.apply(records)
    assert (len(default), len(large)) == (1000, 1500)
    assert default.get(1) is None and default.get(1500) == (1600, "audio")
    assert large.get(1) == (101, "audio")
    tiny = SourceTable(0)  # at least one participant
    tiny.apply(records[:2])
    assert len(tiny) == 1 and tiny.get(2) == (102, "audio")
