"""The media frame layer through the Python module: tgcalls' vectors (vectors/frames/), frames of
every codec through a call, a session's call and the media handles, the Opus level, and the typed
drops (FRAME__START_CODE, FRAME__EMPTY)."""

import glob
import json
import math
import os
import struct

import pytest

import confchain
from confchain import Call, ConfchainError, Participant, PrivateKey, Rng

# Tests of sessions against the server model need a module built with the `testkit` feature (the
# wheel users install has no server model).
needs_testkit = pytest.mark.skipif(not hasattr(confchain, "Server"), reason="built without the testkit feature")

VECTORS = os.environ.get("CONFCHAIN_VECTORS") or os.path.join(os.path.dirname(__file__), "..", "..", "..", "vectors")
FRAMES = os.path.join(VECTORS, "frames")


def vector_file(name):
    path = os.path.join(FRAMES, name)
    if not os.path.exists(path):
        pytest.skip(f"vectors/frames/{name} is not in this tree")
    with open(path) as f:
        return json.load(f)


def unhex(s):
    return None if s is None else bytes.fromhex(s)


def test_the_vector_files_are_all_read():
    # Every JSON file under vectors/frames/ is one of the three this module tests.
    for path in glob.glob(os.path.join(FRAMES, "*.json")):
        assert os.path.basename(path) in ("send.json", "receive.json", "levels.json"), path


def test_send_vectors():
    cases = vector_file("send.json")["cases"]
    assert cases
    for case in cases:
        name = case["name"]
        codec = case["codec"]
        assert confchain.codec_from_payload_type(case["payload_type"]) == codec, name
        data, prefix = confchain.frame_plaintext(
            case["payload_type"], unhex(case["frame"]), case.get("audio_level", 0), case.get("has_speech", False)
        )
        for call in case["calls"]:
            assert (data.hex(), prefix) == (call["data"], call["prefix"]), name
        # tgcalls' loop over what the fake call_encrypt returned.
        calls, sent = 0, None
        for out in [unhex(o) for o in case["fake_outputs"]][: confchain.FRAME_MAX_ATTEMPTS]:
            calls += 1
            if not out:
                break
            if confchain.frame_is_valid_encrypted(codec, out, prefix):
                sent = out
                break
        assert calls == len(case["calls"]), name
        assert sent == unhex(case["sent"]), name


def test_receive_vectors():
    cases = vector_file("receive.json")["cases"]
    assert cases
    for case in cases:
        name, codec = case["name"], case["codec"]
        assert confchain.codec_from_payload_type(case["payload_type"]) == codec, name
        decrypted = unhex(case["decrypted"])
        if not decrypted:
            assert case["delivered"] is None, name
            continue
        frame, level, speech = confchain.frame_strip_received(case["payload_type"], decrypted)
        if case["delivered"] is None:
            assert frame == b"", name
        else:
            assert frame == unhex(case["delivered"]), name
        assert (level, speech) == (case["level"], case["speech"]), name


def f32(case):
    """The case's linear amplitude, exactly the f32 tgcalls computed with."""
    if "linear_f32_bits" in case:
        return struct.unpack(">f", bytes.fromhex(case["linear_f32_bits"]))[0]
    return case["linear"]


def test_level_vectors():
    v = vector_file("levels.json")
    assert v["to_byte"] and v["from_byte"]
    for c in v["to_byte"]:
        level = confchain.audio_level_from_linear(f32(c))
        if "level" in c:
            assert level == c["level"], c
        assert confchain.audio_level_to_byte(level, c.get("speech", False)) == c["byte"], c
    for c in v["from_byte"]:
        level, _ = confchain.audio_level_from_byte(c["byte"])
        assert confchain.audio_level_to_linear(level) == pytest.approx(f32(c), rel=1e-6), c


def members(n, rng):
    keys = [PrivateKey.generate(rng) for _ in range(n)]
    parts = [Participant(i + 1, k.public_key, 3) for i, k in enumerate(keys)]
    zero = confchain.to_server_form(confchain.create_zero_block(keys[0], parts, 0, rng))
    return [Call(i + 1, k, zero, rng) for i, k in enumerate(keys)]


# SPS, PPS, an IDR slice behind a 3-byte start code (widened to 4), and slice data with no zero.
H264_HEAD = bytes.fromhex("0000000167 42c01eda 000001 68ce010f20 000001 658884".replace(" ", ""))


def h264_frame(size):
    return H264_HEAD + bytes((i * 131 + 7) % 251 + 1 for i in range(size - len(H264_HEAD)))


def test_constants_and_helpers():
    assert (confchain.PAYLOAD_TYPE_OPUS, confchain.PAYLOAD_TYPE_VP8, confchain.PAYLOAD_TYPE_H264) == (111, 100, 104)
    assert confchain.PAYLOAD_TYPE_VP9 == 102 and confchain.codec_from_payload_type(102) == "unknown"
    assert [confchain.codec_from_payload_type(p) for p in (111, 100, 104, 96)] == ["opus", "vp8", "h264", "unknown"]
    assert (confchain.CHANNEL_MAIN, confchain.CHANNEL_SCREENCAST, confchain.FRAME_MAX_ATTEMPTS) == (0, 1, 4)
    # Opus: frame || 01 || speech << 7 | level, nothing in clear.
    assert confchain.frame_plaintext("opus", b"abc", 5, True) == (b"abc\x01\x85", 0)
    assert confchain.frame_strip_received("opus", b"abc\x01\x85") == (b"abc", 5, True)
    assert confchain.frame_strip_received("opus", b"abc\x00\x85") == (b"abc\x00", None, None)  # legacy 1-byte flags
    assert confchain.frame_strip_received("vp8", b"abc\x01\x85") == (b"abc\x01\x85", None, None)
    assert confchain.frame_plaintext(100, b"\x10" + bytes(20)) == (b"\x10" + bytes(20), 10)  # VP8 key frame
    assert confchain.frame_plaintext(100, b"\x11" + bytes(20))[1] == 1  # VP8 delta frame
    data, prefix = confchain.frame_plaintext("h264", h264_frame(100))
    assert data == H264_HEAD[:9] + b"\x00" + H264_HEAD[9:17] + b"\x00" + h264_frame(100)[17:]
    assert prefix == 4 + 5 + 4 + 5 + 4 + 4  # start codes, SPS, PPS whole, slice header to pps_id + 1 byte
    assert confchain.frame_is_valid_encrypted("h264", b"\x00\x00\x00\x01\x65\x00\x00\x01\x99\x42", 5) is False
    assert confchain.frame_is_valid_encrypted("vp8", b"\x00\x00\x01\x00\x00\x01", 0) is True
    assert confchain.audio_level_to_byte(12, True) == 0x8C and confchain.audio_level_from_byte(0x8C) == (12, True)
    assert confchain.audio_level_from_linear(0.0) == 127 and confchain.audio_level_from_linear(1.0) == 0
    assert confchain.audio_level_from_linear(0.5) == 6
    assert confchain.audio_level_from_peak(4000) == 0 and confchain.audio_level_from_peak(0) == 127
    assert confchain.audio_level_to_linear(20) == pytest.approx(0.1)
    # Names as the core reads them: SDP/MIME names in any case; any other codec is the unknown path.
    assert confchain.frame_plaintext("video/H264", b"\x00\x00\x01\x41\x9a")[1] > 0
    assert confchain.frame_plaintext("AV1", b"x") == (b"x\x01\x00", 0)
    with pytest.raises(ValueError):
        confchain.frame_plaintext(300, b"x")
    with pytest.raises(TypeError):
        confchain.frame_plaintext(1.5, b"x")
    assert confchain.frame_plaintext("opus", b"x", 200)[0] == b"x\x01\x48"  # tgcalls sends level & 0x7f
    with pytest.raises(OverflowError):
        confchain.frame_plaintext("opus", b"x", 256)


def test_frames_through_a_call_and_the_media_handles():
    rng = Rng(bytes([29] * 32))
    alice, bob = members(2, rng)
    opus = b"\x78\x01\x02\x03"
    packet = alice.encrypt_frame(0, "opus", opus, 10, rng, level=40, speech=True)
    assert bob.decrypt_frame(1, "opus", packet, 10) == (opus, 40, True)
    # The default level is tgcalls' AudioLevel default: 0, no speech.
    assert bob.decrypt_frame(1, 111, alice.encrypt_frame(0, 111, opus, 10, rng), 10) == (opus, 0, False)

    enc, dec = alice.media_encryptor(rng), bob.media_decryptor()
    vp8 = b"\x10" + bytes(range(1, 200))
    packet, prefix, attempts = enc.encrypt_frame_info(0, "vp8", vp8, 20)
    assert (prefix, attempts) == (10, 1) and packet[:10] == vp8[:10]
    assert dec.decrypt_frame(1, "vp8", packet, 20) == (vp8, None, None)
    assert dec.decrypt_frame(1, "opus", enc.encrypt_frame(1, "opus", opus, 21, level=3), 21) == (opus, 3, False)

    # H.264: the frame arrives widened; big frames sometimes need a retry, and it is counted.
    frame = h264_frame(60_000)
    widened, prefix = confchain.frame_plaintext("h264", frame)
    retried = 0
    for i in range(3000):
        packet, sent_prefix, attempts = alice.encrypt_frame_info(0, "h264", frame, 30, rng)
        assert sent_prefix == prefix and packet[:prefix] == widened[:prefix]
        assert confchain.frame_is_valid_encrypted("h264", packet, prefix)
        assert dec.decrypt_frame(1, "h264", packet, 30) == (widened, None, None)
        if attempts > 1:
            retried = i + 1
            break
    assert retried, "no H.264 retry in 3000 frames of 60 KB"

    # Errors are the binding's ConfchainError; nothing is returned in clear.
    with pytest.raises(ConfchainError) as e:
        dec.decrypt_frame(1, "h264", packet, 30)
    assert e.value.name == "REPLAY"
    with pytest.raises(ConfchainError) as e:
        bob.decrypt_frame(1, "vp8", alice.encrypt(0, b"", 40, rng), 40)
    assert e.value.name == "FRAME__EMPTY" and e.value.code == 100
    with pytest.raises(OverflowError):
        alice.encrypt_frame(0, "opus", opus, 10, rng, level=-1)


@needs_testkit
def test_session_call_frames(pump):
    rng = Rng(bytes([30] * 32))
    server = confchain.Server()
    alice, bob = confchain.Session(1), confchain.Session(2)
    alice.create(0, rng)
    pump(server, [alice, bob], 0, rng)
    bob.join(0, rng)
    pump(server, [alice, bob], 0, rng)
    assert alice.state == bob.state == "joined"
    packet = alice.encrypt_frame(0, "opus", b"hi", 5, rng, level=7)
    assert bob.decrypt_frame(1, "opus", packet, 5) == (b"hi", 7, False)
    packet, prefix, attempts = bob.encrypt_frame_info(0, "vp8", b"\x11abc", 5, rng)
    assert (prefix, attempts) == (1, 1)
    assert alice.decrypt_frame(2, "vp8", packet, 5) == (b"\x11abc", None, None)


def test_start_code_blackout_is_a_typed_drop():
    # A call whose epoch hash starts with 01 puts `00 00 00 01` right after every H.264 prefix
    # (the packet's epoch count is `01 00 00 00`): every attempt fails, the frame is dropped with
    # FRAME__START_CODE, while VP8 and audio flow. About 1 epoch in 256.
    rng = Rng(bytes([31] * 32))
    key = PrivateKey.generate(rng)
    me = [Participant(1, key.public_key, 3)]
    for tries in range(1, 4001):
        call = Call(1, key, confchain.to_server_form(confchain.create_zero_block(key, me, 0, rng)), rng)
        try:
            call.encrypt_frame(0, "h264", H264_HEAD, 0, rng)
        except ConfchainError as e:
            assert e.name == "FRAME__START_CODE" and e.code == 100, e
            call.encrypt_frame(0, "vp8", b"\x10" + bytes(20), 0, rng)
            call.encrypt_frame(0, "opus", b"x", 0, rng)
            break
    else:
        pytest.fail("no blackout epoch in 4000 calls")
    assert tries < 4000
    print(f"blackout epoch after {tries} calls")


def test_level_round_trip_from_peak():
    # The level a sender computes from its peak reaches the receiver, and maps back to amplitude.
    for peak in (0, 1, 40, 400, 4000, 32767):
        level = confchain.audio_level_from_peak(peak)
        expected = 127 if peak == 0 else min(127, max(0, int(-20 * math.log10(peak / 4000))))
        assert abs(level - expected) <= 1, (peak, level)
