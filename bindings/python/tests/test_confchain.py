"""A conference through the Python module, and the reference's vectors."""

import json
import os

import pytest

import confchain
from confchain import Call, ConfchainError, Participant, PrivateKey, Rng

# Tests of sessions against the server model need a module built with the `testkit` feature (the
# wheel users install has no server model).
needs_testkit = pytest.mark.skipif(not hasattr(confchain, "Server"), reason="built without the testkit feature")

VECTORS = os.environ.get("CONFCHAIN_VECTORS") or os.path.join(os.path.dirname(__file__), "..", "..", "..", "vectors")


def load(name):
    with open(os.path.join(VECTORS, "tde2e", name)) as f:
        return json.load(f)


def relay(calls):
    for _ in range(3):
        for c in calls:
            for b in c.pull_outbound():
                server = confchain.to_server_form(b)
                for d in calls:
                    d.receive_broadcast(server)


def test_three_member_conference():
    rng = Rng(bytes(range(32)))
    keys = [PrivateKey.generate(rng) for _ in range(3)]
    zero = confchain.create_zero_block(keys[0], [Participant(1, keys[0].public_key, 3)], 3, rng)
    last = confchain.to_server_form(zero)
    calls = [Call(1, keys[0], last, rng)]
    for i in (1, 2):
        join = confchain.create_self_add_block(keys[i], last, Participant(i + 1, keys[i].public_key), rng)
        last = confchain.to_server_form(join)
        for c in calls:
            c.apply_block(last, 1000 * i, rng)
        calls.append(Call(i + 1, keys[i], last, rng))
    assert [p.user_id for p in calls[2].participants] == [1, 2, 3]
    assert len({c.key_fingerprint for c in calls}) == 1

    relay(calls)
    emojis = [c.emojis for c in calls]
    assert emojis[0] is not None and len(emojis[0]) == 4
    assert emojis[0] == emojis[1] == emojis[2]
    assert len(calls[0].verification_words) == 24

    packet = calls[0].encrypt(1, b"HDRframe", 5000, rng, clear_prefix_len=3)
    assert packet.startswith(b"HDR")
    assert calls[1].decrypt(1, packet, 5000) == b"HDRframe"
    assert calls[2].decrypt(1, packet, 5000) == b"HDRframe"
    with pytest.raises(ConfchainError) as e:
        calls[1].decrypt(1, packet, 5000)
    assert e.value.code == 100 and e.value.name == "REPLAY" and "already processed" in e.value.message

    message = calls[2].encrypt_message('{"_":"groupCallMessage"}', 5000, rng)
    assert calls[0].decrypt_message(3, message, 5000) == '{"_":"groupCallMessage"}'

    removal = confchain.to_server_form(calls[0].build_remove([3], rng))
    for c in calls:
        c.apply_block(removal, 6000, rng)
    assert not calls[2].is_member
    with pytest.raises(ConfchainError) as e:
        calls[2].encrypt(0, b"x", 6000, rng)
    assert e.value.code == 300 and e.value.name == "INVALID_CALL_GROUP_STATE__NOT_PARTICIPANT"

    with pytest.raises(ConfchainError) as e:
        calls[0].apply_block(last, 7000, rng)
    assert e.value.code == 204 and e.value.name == "INVALID_BLOCK__HEIGHT_MISMATCH"
    assert calls[0].height == 3


def test_chain_vectors():
    v = load("chain_basic_v1.json")
    keys = {k["user_id"]: PrivateKey.from_bytes(bytes.fromhex(k["private_key"])) for k in v["keys"]}
    rng = Rng(bytes(32))
    calls = {}
    for step in v["steps"]:
        block = bytes.fromhex(step["block"])
        decoded = confchain.Block.decode(block)
        assert decoded.height == step["height"]
        assert decoded.hash.hex() == step["hash"]
        for c in calls.values():
            c.apply_block(block, 0, rng)
        for p in step["state"]["participants"]:
            if p["user_id"] not in calls:
                calls[p["user_id"]] = Call(p["user_id"], keys[p["user_id"]], block, rng)
        members = {p["user_id"] for p in step["state"]["participants"]}
        for uid, c in calls.items():
            assert c.is_member == (uid in members)
        assert [p.user_id for p in decoded.participants] == [p["user_id"] for p in step["state"]["participants"]]


def test_invalid_block_vectors():
    cases = [c for c in load("invalid_blocks.json") if c["error"] and c["chain"]]
    assert cases
    for case in cases:
        # Decoding alone never raises for these (they are well-formed); the codes come from applying.
        confchain.Block.decode(bytes.fromhex(case["block"]))


def test_packet_vectors():
    v = load("packets.json")
    keys = {k["user_id"]: PrivateKey.from_bytes(bytes.fromhex(k["private_key"])) for k in v["keys"]}
    blocks = [bytes.fromhex(b) for b in v["blocks"]]
    rng = Rng(bytes(32))
    calls = {}
    checked = 0
    for e in v["events"]:
        if e["op"] == "apply_block":
            block = blocks[e["block_index"]]
            for c in calls.values():
                c.apply_block(block, 0, rng)
            for p in confchain.Block.decode(block).participants:
                if p.user_id not in calls:
                    calls[p.user_id] = Call(p.user_id, keys[p.user_id], block, rng)
        elif e["op"] == "decrypt":
            packet = bytes.fromhex(e["packet"])
            call = calls[e["receiver"]]
            if e["expect"] == "ok":
                assert call.decrypt(e["sender"], packet, 0).hex() == e["plaintext"]
            else:
                with pytest.raises(ConfchainError) as err:
                    call.decrypt(e["sender"], packet, 0)
                assert err.value.message == e["expect"]["message"]
                if e["expect"]["error"]:
                    assert err.value.name == e["expect"]["error"]
            checked += 1
    assert checked > 30


def test_bad_input_raises():
    with pytest.raises(ConfchainError) as e:
        confchain.Block.decode(b"\x01\x02")
    assert e.value.name == "PARSE"
    with pytest.raises(ValueError):
        Rng(b"short")
    rng = Rng.from_os()
    assert len(PrivateKey.generate(rng).public_key) == 32


def test_events_timers_resync_and_keyless_blocks():
    rng = Rng(bytes(range(32)))
    keys = [PrivateKey.generate(rng) for _ in range(2)]
    members = [Participant(i + 1, k.public_key, 3) for i, k in enumerate(keys)]
    zero = confchain.to_server_form(confchain.create_zero_block(keys[0], members, 0, rng))
    alice, bob = Call(1, keys[0], zero, rng), Call(2, keys[1], zero, rng)
    assert alice.poll_event() is None and alice.poll_timeout() is None
    assert alice.verification_missing() == [1, 2]
    rekey = confchain.to_server_form(alice.build_rekey(rng))
    alice.check_block(rekey)
    alice.apply_block(rekey, 1000, rng)
    event = alice.poll_event()
    assert (event.kind, event.height, event.error) == ("block_applied", 1, None)
    assert alice.poll_timeout() == 11000
    alice.handle_timeout(11000)
    assert alice.active_epochs == [1]
    assert alice.poll_event().kind == "epoch_expired"
    # Bob missed the block: he adopts it in place and keeps talking.
    bob.resync(rekey, 1000, rng)
    assert bob.has_current_key and bob.key_fingerprint == alice.key_fingerprint
    assert alice.decrypt(2, bob.encrypt(0, b"hi", 1000, rng), 1000) == b"hi"


def test_one_to_one_call():
    rng = Rng(bytes(32))
    caller = confchain.P2PCaller(rng)
    callee = confchain.P2PCallee(caller.g_a_hash(), rng)
    k1 = caller.on_accepted(callee.g_b())
    k2 = callee.on_confirmed(caller.g_a(), k1.fingerprint)
    assert k1.key() == k2.key() and k1.emojis == k2.emojis and len(k1.emojis) == 4
    with pytest.raises(ConfchainError) as e:
        callee.on_confirmed(caller.g_a(), k1.fingerprint ^ 1)
    assert e.value.name == "DH_CHECK" and e.value.code == 100


@needs_testkit
def test_two_sessions_through_the_server_model(pump):
    rng = Rng(bytes([5] * 32))
    server = confchain.Server()
    alice, bob = confchain.Session(1), confchain.Session(2)
    alice.create(0, rng)  # createConferenceCall with our zero block
    first = alice.poll_request()
    assert first.kind == "create_conference" and len(first.public_key) == 32 and first.block
    updates, error, pushes = server.handle(1, first)
    alice.handle_response(first.id, 0, rng, updates=updates, error=error)
    pump(server, [alice, bob], 0, rng)
    bob.join(0, rng)
    tip = bob.poll_request()
    assert (tip.kind, tip.sub_chain, tip.offset, tip.limit) == ("get_chain_blocks", 0, -1, 1)
    updates, error, _ = server.handle(2, tip)
    bob.handle_response(tip.id, 0, rng, updates=updates, error=error)
    pump(server, [alice, bob], 0, rng)
    assert alice.state == bob.state == "joined"
    assert alice.height == bob.height == server.height == 1
    assert alice.key_fingerprint == bob.key_fingerprint
    assert alice.emojis is not None and alice.emojis == bob.emojis
    events = []
    while (e := bob.poll_event()) is not None:
        events.append(e)
    kinds = [e.kind for e in events]
    assert "joined" in kinds and "verification_done" in kinds
    assert [e.user_ids for e in events if e.kind == "participants_changed"][-1] == [1, 2]
    # Media through the session's call, a message through the server.
    packet = alice.encrypt(0, b"frame", 5, rng)
    assert bob.decrypt(1, packet, 5) == b"frame"
    alice.send_message('{"_":"groupCallMessage","random_id":"9"}', 5, rng)
    pump(server, [alice, bob], 5, rng)
    got = [e for e in iter(bob.poll_event, None) if e.kind == "message_received"]
    assert [(e.from_id, e.text) for e in got] == [(1, '{"_":"groupCallMessage","random_id":"9"}')]
    # A lost race surfaces as a retry, not an error.
    bob.handle_response(12345, 5, rng, error="CONF_WRITE_CHAIN_INVALID")  # unknown id: ignored
    assert bob.state == "joined"
    bob.leave(6)
    pump(server, [alice, bob], 6, rng)
    assert bob.state == "left"


def test_media_handles_from_threads():
    import threading

    rng = Rng(bytes([9] * 32))
    keys = [PrivateKey.generate(rng) for _ in range(3)]
    members = [Participant(i + 1, k.public_key, 3) for i, k in enumerate(keys)]
    zero = confchain.to_server_form(confchain.create_zero_block(keys[0], members, 0, rng))
    calls = [Call(i + 1, k, zero, rng) for i, k in enumerate(keys)]
    encryptors = [c.media_encryptor(rng) for c in calls]
    decryptor = calls[0].media_decryptor()
    packets = [(s + 1, encryptors[s].encrypt(0, b"frame %d" % n, 10, 2)) for s in (1, 2) for n in range(50)]
    results = []

    def work(chunk):
        for sender, p in chunk:
            results.append(decryptor.decrypt(sender, p, 10))

    # One thread per sender (within a sender, order matters: the replay window refuses a frame
    # older than the first one accepted).
    threads = [threading.Thread(target=work, args=(packets[i * 50 : (i + 1) * 50],)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == sorted(b"frame %d" % n for _ in (1, 2) for n in range(50))
    with pytest.raises(ConfchainError) as e:
        decryptor.decrypt(2, packets[0][1], 10)
    assert e.value.name == "REPLAY"


def test_session_configuration_by_keyword():
    """Session(user_id, **config): SessionConfig's fields by name, checked as the core checks them."""
    default = confchain.Session(1).config
    assert default["call_size_limit"] == 200 and default["prune_left"] is True
    s = confchain.Session(1, call_size_limit=1000, prune_left=False, max_requests_per_second=5)
    assert s.config == {**default, "call_size_limit": 1000, "prune_left": False, "max_requests_per_second": 5}
    for bad in [{"call_size_limit": 1}, {"no_such_field": 1}, {"prune_left": 2}, {"poll_limit": 2**40}]:
        with pytest.raises(ConfchainError) as e:
            confchain.Session(1, **bad)
        assert e.value.name == "INVALID_INPUT", bad
    with pytest.raises((OverflowError, TypeError)):
        confchain.Session(1, call_size_limit=-1)
    with pytest.raises(TypeError):
        confchain.Session(1, call_size_limit="big")
