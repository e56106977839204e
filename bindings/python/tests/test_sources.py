"""Who sent a frame (issue 34): the SSRC table, decryption by SSRC, the typed drop of an unknown
or stale SSRC, and the adapters' participant records from the libraries' own objects."""

from types import SimpleNamespace as NS

import pytest

import confchain
from confchain import Call, ConfchainError, Participant, PrivateKey, Rng, SourceTable
from confchain._adapter import participant_sources, to_confchain_updates


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
