"""The media frame layer through real media stacks (issue 29, "native" proof).

Frames from real encoders (PyAV's bundled libx264, libvpx and libopus) go through aiortc's RTP
packetizers (`H264Encoder`/`Vp8Encoder`/`OpusEncoder` packing, real RTP packets serialized and
parsed) and depacketizers (`h264_depayload`, `vp8_depayload`, reassembled as aiortc's jitter buffer
does), encrypted and decrypted with confchain's frame layer between two members of one call, and
decode (PyAV) to the right size and content: a block pattern per video frame, a sine's frequency
for audio.

And the reason the layer validates H.264: a naive encryption (the bare packet encryption with
tgcalls' clear prefix, no validation) whose ciphertext holds a NAL start code is split by the
packetizer and does not decrypt on the other side, while the layer's validation and retry
delivers the same frame.

Needs `av` and `aiortc` (bindings/python/test.sh installs them); skipped without them. Set
CONFCHAIN_NATIVE_REPORT=path to write the numbers as JSON.
"""

import array
import fractions
import json
import math
import os
import random
import time

import pytest

av = pytest.importorskip("av")
pytest.importorskip("aiortc")

from aiortc.codecs.h264 import H264Encoder, h264_depayload  # noqa: E402
from aiortc.codecs.opus import OpusEncoder  # noqa: E402
from aiortc.codecs.vpx import Vp8Encoder, vp8_depayload  # noqa: E402
from aiortc.rtp import RtpPacket  # noqa: E402

import confchain  # noqa: E402
from confchain import Call, ConfchainError, Participant, PrivateKey, Rng  # noqa: E402

W, H = 640, 480
REPORT = {}


def report(key, value):
    REPORT[key] = value
    print(f"{key}: {value}")
    path = os.environ.get("CONFCHAIN_NATIVE_REPORT")
    if path:
        with open(path, "w") as f:
            json.dump(REPORT, f, indent=2)


@pytest.fixture()
def members():
    """Alice (1) sends, Bob (2) receives: two members of one call."""
    rng = Rng(bytes([44] * 32))
    keys = [PrivateKey.generate(rng) for _ in range(2)]
    parts = [Participant(i + 1, k.public_key, 3) for i, k in enumerate(keys)]
    zero = confchain.to_server_form(confchain.create_zero_block(keys[0], parts, 0, rng))
    return Call(1, keys[0], zero, rng), Call(2, keys[1], zero, rng), rng


# ---- the media stack ----


def luma(seed, block):
    """A W x H luma plane of random blocks (distinct per seed): what each video frame shows."""
    rnd = random.Random(seed)
    y = bytearray(W * H)
    for by in range(0, H, block):
        row = b"".join(bytes([rnd.randrange(16, 236)]) * block for _ in range(0, W, block))
        for r in range(by, by + block):
            y[r * W : (r + 1) * W] = row
    return bytes(y)


def video_frame(y, pts):
    f = av.VideoFrame(W, H, "yuv420p")
    f.planes[0].update(y)
    f.planes[1].update(bytes([128]) * (W * H // 4))
    f.planes[2].update(bytes([128]) * (W * H // 4))
    f.pts, f.time_base = pts, fractions.Fraction(1, 30)
    return f


def decoded_luma(frame):
    plane = frame.planes[0]
    data = bytes(plane)
    return b"".join(data[r * plane.line_size : r * plane.line_size + frame.width] for r in range(frame.height))


def mean_abs_diff(a, b):
    a, b = a[::61], b[::61]
    return sum(abs(x - y) for x, y in zip(a, b)) / len(a)


def encoder(name, **options):
    enc = av.CodecContext.create(name, "w")
    enc.width, enc.height, enc.pix_fmt = W, H, "yuv420p"
    enc.time_base, enc.framerate = fractions.Fraction(1, 30), 30
    for k, v in options.items():
        setattr(enc, k, v)
    return enc


def rtp_round_trip(payloads, payload_type):
    """Each payload in a real RTP packet, serialized and parsed back (what the network carries)."""
    out = []
    for seq, payload in enumerate(payloads):
        wire = RtpPacket(payload_type=payload_type, sequence_number=seq, timestamp=0, ssrc=7, payload=payload)
        out.append(RtpPacket.parse(wire.serialize()).payload)
    return out


def through_h264_rtp(frame):
    """aiortc's H.264 packetizer (NAL split at start codes, STAP-A / FU-A) and depacketizer."""
    packet = av.Packet(frame)
    packet.pts, packet.time_base = 0, fractions.Fraction(1, 90000)
    payloads, _ = H264Encoder().pack(packet)
    data = b"".join(h264_depayload(p) for p in rtp_round_trip(payloads, confchain.PAYLOAD_TYPE_H264))
    return data, len(payloads)


def through_vp8_rtp(frame):
    packet = av.Packet(frame)
    packet.pts, packet.time_base = 0, fractions.Fraction(1, 90000)
    payloads, _ = Vp8Encoder().pack(packet)
    return b"".join(vp8_depayload(p) for p in rtp_round_trip(payloads, confchain.PAYLOAD_TYPE_VP8)), len(payloads)


def through_opus_rtp(frame):
    packet = av.Packet(frame)
    packet.pts, packet.time_base = 0, fractions.Fraction(1, 48000)
    payloads, _ = OpusEncoder().pack(packet)
    return b"".join(rtp_round_trip(payloads, confchain.PAYLOAD_TYPE_OPUS))


# ---- video ----


def test_h264_frames_through_x264_rtp_and_decoder(members):
    alice, bob, rng = members
    enc = encoder("libx264", profile="Baseline", options={"tune": "zerolatency", "preset": "ultrafast", "qp": "12"})
    dec = av.CodecContext.create("h264", "r")
    pictures = [luma(100 + i, 8) for i in range(6)]
    sizes, widened, prefixes, packets = [], 0, [], 0
    for i, y in enumerate(pictures):
        for frame in (bytes(p) for p in enc.encode(video_frame(y, i))):
            sizes.append(len(frame))
            packet, prefix, attempts = alice.encrypt_frame_info(0, "h264", frame, 10 * i, rng)
            prefixes.append(prefix)
            received, n = through_h264_rtp(packet)
            packets += n
            plain, level, speech = bob.decrypt_frame(1, "h264", received, 10 * i)
            assert level is None and speech is None
            widened += len(plain) - len(frame)
            decoded = dec.decode(av.Packet(plain))
            assert len(decoded) == 1
            d = decoded[0]
            assert (d.width, d.height) == (W, H)
            assert mean_abs_diff(decoded_luma(d), y) < 2, "the picture sent"
            assert mean_abs_diff(decoded_luma(d), pictures[(i + 1) % len(pictures)]) > 40, "not another one"
    # A member of another call decodes nothing.
    other_key = PrivateKey.generate(rng)
    other_zero = confchain.create_zero_block(other_key, [Participant(3, other_key.public_key, 3)], 0, rng)
    carol = Call(3, other_key, confchain.to_server_form(other_zero), rng)
    with pytest.raises(ConfchainError):
        carol.decrypt_frame(1, "h264", through_h264_rtp(alice.encrypt_frame(0, "h264", frame, 100, rng))[0], 100)
    report("h264", {"frames": sizes, "rtp_packets": packets, "clear_prefixes": prefixes, "bytes_widened": widened})
    # x264 writes 3-byte start codes before SEI and slices: the layer widened them (the receiver's
    # depacketizer rebuilds 4-byte codes, so without widening the clear prefix would not match).
    assert widened > 0


def test_vp8_frames_through_libvpx_rtp_and_decoder(members):
    alice, bob, rng = members
    enc = encoder("libvpx", bit_rate=8_000_000, qmin=2, qmax=12)
    enc.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    dec = av.CodecContext.create("libvpx", "r")
    pictures = [luma(200 + i, 8) for i in range(6)]
    sizes, prefixes = [], []
    # Through the thread-safe media handles this time (what a media thread holds).
    encryptor, decryptor = alice.media_encryptor(rng), bob.media_decryptor()
    for i, y in enumerate(pictures):
        for frame in (bytes(p) for p in enc.encode(video_frame(y, i))):
            sizes.append(len(frame))
            packet, prefix, attempts = encryptor.encrypt_frame_info(0, 100, frame, 10 * i)
            assert attempts == 1 and packet[:prefix] == frame[:prefix]
            prefixes.append(prefix)
            received, _ = through_vp8_rtp(packet)
            plain, _, _ = decryptor.decrypt_frame(1, 100, received, 10 * i)
            assert plain == frame
            (d,) = dec.decode(av.Packet(plain))
            assert (d.width, d.height) == (W, H)
            assert mean_abs_diff(decoded_luma(d), y) < 4
            assert mean_abs_diff(decoded_luma(d), pictures[(i + 1) % len(pictures)]) > 40
    # A key frame first (10 bytes in clear: its size is readable), then delta frames (1 byte).
    assert prefixes[0] == 10 and set(prefixes[1:]) == {1}
    report("vp8", {"frames": sizes, "clear_prefixes": prefixes})


# ---- audio ----


def sine_frames(freq, count, amplitude):
    for i in range(count):
        s = array.array("h", (int(amplitude * math.sin(2 * math.pi * freq * (i * 960 + n) / 48000)) for n in range(960)))
        f = av.AudioFrame(format="s16", layout="mono", samples=960)
        f.sample_rate, f.pts, f.time_base = 48000, i * 960, fractions.Fraction(1, 48000)
        f.planes[0].update(s.tobytes())
        yield f, max(abs(v) for v in s)


def test_opus_sine_through_libopus_rtp_and_decoder(members):
    alice, bob, rng = members
    enc = av.CodecContext.create("libopus", "w")
    enc.sample_rate, enc.layout, enc.format, enc.bit_rate = 48000, "mono", "s16", 64000
    enc.time_base = fractions.Fraction(1, 48000)
    dec = av.CodecContext.create("opus", "r")
    dec.sample_rate, dec.layout = 48000, "mono"
    freq, samples, levels, sizes = 523.25, [], set(), []
    for i, (frame, peak) in enumerate(sine_frames(freq, 50, 2000)):
        level = confchain.audio_level_from_peak(peak)
        for opus in (bytes(p) for p in enc.encode(frame)):
            sizes.append(len(opus))
            packet = alice.encrypt_frame(0, "opus", opus, 20 * i, rng, level=level, speech=True)
            got, got_level, speech = bob.decrypt_frame(1, "opus", through_opus_rtp(packet), 20 * i)
            assert got == opus and (got_level, speech) == (level, True)
            levels.add(got_level)
            for d in dec.decode(av.Packet(got)):
                samples.extend(array.array("f", bytes(d.planes[0]))[: d.samples])
    tail = samples[4800:]  # past the encoder's start-up
    crossings = sum(1 for a, b in zip(tail, tail[1:]) if (a < 0) != (b < 0))
    heard = crossings / 2 / (len(tail) / 48000)
    report("opus", {"frames": len(sizes), "bytes": [min(sizes), max(sizes)], "sent_hz": freq, "heard_hz": round(heard, 2),
                    "levels": sorted(levels), "linear": round(confchain.audio_level_to_linear(min(levels)), 4)})
    assert abs(heard - freq) < 0.01 * freq
    # Peak 2000 is tgcalls' linear 0.5 (full scale 4000): -20 log10(0.5) = 6.02, level 6.
    assert levels == {6}


# ---- the start code: naive encryption breaks, the layer's validation delivers ----


def test_h264_start_code_naive_breaks_the_layer_delivers(members):
    alice, bob, rng = members
    enc = encoder("libx264", profile="Baseline", options={"tune": "zerolatency", "preset": "ultrafast", "qp": "8"})
    y = luma(300, 4)
    (frame,) = [bytes(p) for p in enc.encode(video_frame(y, 0))]
    data, prefix = confchain.frame_plaintext("h264", frame)
    started = time.monotonic()

    # Naive: the bare packet encryption with tgcalls' data and prefix, no validation. Encrypt until
    # a ciphertext holds a start code, and send that one through the packetizer.
    naive_tries, naive_results = 0, []
    while len(naive_results) < 3 and naive_tries < 20000:
        naive_tries += 1
        packet = alice.encrypt(0, data, 1000, rng, clear_prefix_len=prefix)
        if confchain.frame_is_valid_encrypted("h264", packet, prefix):
            continue
        at = packet.find(b"\x00\x00\x01", max(prefix, 2) - 2)
        assert at >= 0
        try:
            received, _ = through_h264_rtp(packet)
        except ValueError as e:  # the depacketizer refused a NAL that the split made up
            naive_results.append({"try": naive_tries, "at": at, "outcome": f"depacketizer: {e}"})
            continue
        try:
            bob.decrypt_frame(1, "h264", received, 1000)
            naive_results.append({"try": naive_tries, "at": at, "outcome": "decrypted"})
        except ConfchainError as e:
            naive_results.append(
                {"try": naive_tries, "at": at, "outcome": e.name, "bytes_changed": len(received) - len(packet)}
            )
    assert naive_results, "no naive ciphertext with a start code"
    # A `00 00 00 01` whose next byte is a valid NAL header can survive aiortc's depacketizer (it
    # rebuilds the same 4 bytes); a 3-byte code, the common case, cannot.
    broken = [r for r in naive_results if r["outcome"] != "decrypted"]
    assert broken, naive_results

    # Naive without widening (as tgcalls before May 2025): the raw frame with the same clear NALs and
    # no start code after the prefix. The depacketizer rebuilds 3-byte start codes as 4 bytes, the
    # authenticated clear prefix changes, and the frame does not decrypt.
    unwidened_prefix = prefix - (len(data) - len(frame))
    while True:
        packet = alice.encrypt(0, frame, 1500, rng, clear_prefix_len=unwidened_prefix)
        if confchain.frame_is_valid_encrypted("h264", packet, unwidened_prefix):
            break
    received, _ = through_h264_rtp(packet)
    assert len(received) > len(packet)  # the depacketizer widened the clear start codes itself
    with pytest.raises(ConfchainError) as unwidened:
        bob.decrypt_frame(1, "h264", received, 1500)

    # The layer: the same frame, encrypted until one needed a retry; every packet arrives and decodes.
    dec = av.CodecContext.create("h264", "r")
    layer_frames, retried, attempts_seen = 0, None, {}
    while retried is None and layer_frames < 20000:
        layer_frames += 1
        packet, sent_prefix, attempts = alice.encrypt_frame_info(0, "h264", frame, 2000, rng)
        attempts_seen[attempts] = attempts_seen.get(attempts, 0) + 1
        assert sent_prefix == prefix and confchain.frame_is_valid_encrypted("h264", packet, prefix)
        if attempts > 1 or layer_frames == 1:
            received, _ = through_h264_rtp(packet)
            plain, _, _ = bob.decrypt_frame(1, "h264", received, 2000)
            assert plain == data
            (d,) = dec.decode(av.Packet(plain))
            assert (d.width, d.height) == (W, H) and mean_abs_diff(decoded_luma(d), y) < 2
            if attempts > 1:
                retried = layer_frames
    assert retried, "no retry in 20000 frames"
    report(
        "h264_start_code",
        {
            "frame_bytes": len(frame),
            "clear_prefix": prefix,
            "naive": naive_results,
            "naive_unwidened": {"clear_prefix": unwidened_prefix, "outcome": unwidened.value.name},
            "layer_frames_until_retry": retried,
            "layer_attempts": attempts_seen,
            "seconds": round(time.monotonic() - started, 2),
        },
    )
