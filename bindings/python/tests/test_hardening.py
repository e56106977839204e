"""Bad input from Python gets an error (naming the argument, except pyo3's own integer overflows), and poisons nothing: the Session, the
Call and the Rng passed with them stay usable after each kind of malformed argument (wrong types,
huge sizes, negative / NaN / fractional / overflowing times). And a freed Rng leaves no key behind
in the memory it gave back."""

import ctypes
import gc
import os

import pytest

import confchain
from confchain import Call, Participant, PrivateKey, Rng, Session, Update

# Tests of sessions against the server model need a module built with the `testkit` feature (the
# wheel users install has no server model).
needs_testkit = pytest.mark.skipif(not hasattr(confchain, "Server"), reason="built without the testkit feature")


def refused(exc, field, f, *args, **kwargs):
    with pytest.raises(exc) as e:
        f(*args, **kwargs)
    assert field in str(e.value), f"{e.value!r} does not name {field}"


BAD_TIMES = [(-1, ValueError), (2**64, ValueError), (float("nan"), TypeError), (1.5, TypeError),
             (float("inf"), TypeError), ("5", TypeError), (None, TypeError)]


@needs_testkit
def test_session_and_rng_survive_malformed_arguments(pump):
    rng = Rng(bytes([21] * 32))
    server = confchain.Server()
    alice = Session(1)
    alice.create(0, rng)
    pump(server, [alice], 0, rng)
    assert alice.state == "joined"
    good = Update.chain_blocks(0, [], 1)

    # Wrong types where an update, bytes or a list is expected.
    refused(TypeError, "update", alice.handle_update, "update", 1, rng)
    refused(TypeError, "update", alice.handle_update, None, 1, rng)
    refused(TypeError, "rng", alice.handle_update, good, 1, "rng")
    refused(TypeError, "blocks", Update.chain_blocks, 0, 2_000_000_000, 1)
    refused(TypeError, "blocks", Update.chain_blocks, 0, [2_000_000_000], 1)
    refused(TypeError, "blocks", Update.chain_blocks, 0, ["text"], 1)
    refused(TypeError, "data", Update.encrypted_message, 2, 2_000_000_000)
    refused(TypeError, "updates", alice.handle_response, 1, 1, rng, updates=5)
    refused(TypeError, "updates", alice.handle_response, 1, 1, rng, updates=[5])
    refused(TypeError, "error", alice.handle_response, 1, 1, rng, error=5)
    refused(TypeError, "data", alice.encrypt, 0, 2_000_000_000, 1, rng)
    refused(TypeError, "packet", alice.decrypt, 2, "packet", 1)
    # Sizes past the bounds, refused before anything is copied.
    refused(ValueError, "blocks", Update.chain_blocks, 0, [b""] * 65_537, 1)
    with pytest.raises(OverflowError):
        Update.chain_blocks(2**40, [], 1)
    with pytest.raises(OverflowError):
        Update.chain_blocks(0, [], -(2**40))
    # Times.
    for t, exc in BAD_TIMES:
        refused(exc, "now_ms", alice.handle_update, good, t, rng)
        refused(exc, "now_ms", alice.handle_timeout, t, rng)
        refused(exc, "now_ms", alice.leave, t)
        refused(exc, "now_ms", alice.encrypt, 0, b"x", t, rng)
        refused(exc, "now_ms", alice.handle_response, 1, t, rng)
    with pytest.raises(OverflowError):
        alice.handle_response(-1, 1, rng)

    # Everything still works: the session takes a well-formed update, times out, encrypts; the rng
    # draws; a second member joins through the same session and rng.
    assert alice.state == "joined"
    alice.handle_update(good, 1, rng)
    alice.handle_timeout(1, rng)
    PrivateKey.generate(rng)
    bob = Session(2)
    bob.join(2, rng)
    pump(server, [alice, bob], 2, rng)
    assert bob.state == "joined"
    assert bob.decrypt(1, alice.encrypt(0, b"frame", 3, rng), 3) == b"frame"


def test_call_survives_malformed_arguments():
    rng = Rng(bytes([22] * 32))
    key = PrivateKey.generate(rng)
    zero = confchain.to_server_form(confchain.create_zero_block(key, [Participant(1, key.public_key, 3)], 0, rng))
    refused(TypeError, "last_block", Call, 1, key, 2_000_000_000, rng)
    call = Call(1, key, zero, rng)
    refused(TypeError, "block", call.apply_block, 2_000_000_000, 0, rng)
    refused(TypeError, "now_ms", call.apply_block, zero, float("nan"), rng)
    refused(TypeError, "message", call.receive_broadcast, None)
    refused(ValueError, "now_ms", call.handle_timeout, -5)
    refused(ValueError, "public_key", confchain.create_zero_block, key, [Participant(1, b"short", 3)], 0, rng)
    refused(TypeError, "seed", Rng, 32)
    refused(ValueError, "32 bytes", Rng, b"x" * 31)
    refused(TypeError, "seed", PrivateKey.from_bytes, "x" * 32)
    refused(TypeError, "data", confchain.to_server_form, 2_000_000_000)
    assert len(call.encrypt(0, b"\x04\x05", 0, rng)) > 2
    assert call.height == 0


def test_freed_rng_leaves_no_key_behind():
    def holds(address, size, seed):
        return seed in ctypes.string_at(address, size)

    seed = os.urandom(32)
    rng = Rng(seed)
    PrivateKey.generate(rng)
    address, size = id(rng), type(rng).__basicsize__
    # Control: the live object holds its key (the seed), and the scan finds it.
    assert holds(address, size, seed), "the live key is not found: the scan proves nothing"
    del rng
    gc.collect()
    # The freed block (still mapped: the small-object allocator keeps its arenas) is scanned.
    assert not holds(address, size, seed), "a freed Rng left its key behind"
