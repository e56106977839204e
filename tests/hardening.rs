//! Limits (at and just past each), hostile sizes, and secret hygiene.

mod common;

use confchain::limits::{
    HELD_BROADCASTS_PER_SENDER, HELD_BROADCAST_HEIGHTS, MAX_BLOCK_SIZE, MAX_CLEAR_PREFIX, MAX_EPOCHS,
    MAX_HELD_BROADCASTS,
};
use confchain::tl::Writer;
use confchain::wire::{id, Form};
use confchain::{
    build_zero_block, to_server_form, Block, Broadcast, BroadcastPayload, Call, CallEvent, Chain, Change, ErrorKind,
    GroupState, Permissions, PrivateKey, Secret,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(5)
}

/// A server-form block whose group state has `participants` entries and `changes` noop changes
/// (unsigned: decoding runs before any signature check).
fn crafted_block(participants: usize, noops: usize) -> Vec<u8> {
    let mut w = Writer::new();
    w.u32(id::BLOCK + 1);
    w.raw(&[0; 64]);
    w.u32(0);
    w.raw(&[0; 32]);
    w.u32((1 + noops) as u32);
    for _ in 0..noops {
        w.u32(id::CHANGE_NOOP);
        w.raw(&[0; 32]);
    }
    w.u32(id::CHANGE_SET_GROUP_STATE);
    w.u32(id::GROUP_STATE);
    w.u32(participants as u32);
    for i in 0..participants {
        w.u32(id::GROUP_PARTICIPANT);
        w.i64(i as i64);
        w.raw(&[0; 32]);
        w.i32(0);
        w.i32(0);
    }
    w.i32(3);
    w.i32(0);
    w.u32(id::STATE_PROOF);
    w.u32(0);
    w.raw(&[0; 32]);
    w.into_bytes()
}

/// Nothing but the transport bounds a block: the reference accepts 10,001 participants and
/// 1,025 changes, and so does the decoder (confchain may never be stricter, SPEC.md §10).
#[test]
fn counts_beyond_the_old_limits_decode() {
    let big = Block::decode_server(&crafted_block(10_001, 0)).unwrap();
    let Change::SetGroupState(state) = &big.changes[0] else { panic!("a group state") };
    assert_eq!(state.participants.len(), 10_001);
    assert_eq!(Block::decode_server(&crafted_block(1, 1_024)).unwrap().changes.len(), 1_025);
    // Applying fails for a real reason (here the signature), not a limit.
    let err = Chain::empty().apply(&crafted_block(10_001, 1_024)).unwrap_err();
    assert_ne!(err.kind(), ErrorKind::LimitExceeded);
}

#[test]
fn block_size_limit_is_the_largest_tl_bytes() {
    assert_eq!(MAX_BLOCK_SIZE, (1 << 24) - 1);
    // 9 MiB (refused before) is a block like any other: trailing bytes, a parse error.
    let mut nine = crafted_block(1, 0);
    nine.resize(9 << 20, 0);
    assert_eq!(Block::decode_server(&nine).unwrap_err().kind(), ErrorKind::Parse);
    let mut at = crafted_block(1, 0);
    at.resize(MAX_BLOCK_SIZE, 0);
    assert_eq!(Block::decode_server(&at).unwrap_err().kind(), ErrorKind::Parse, "trailing bytes, but not a limit");
    at.push(0);
    assert_eq!(Block::decode_server(&at).unwrap_err().kind(), ErrorKind::LimitExceeded);
}

#[test]
fn hostile_lengths_do_not_allocate() {
    // A vector count of 2^32-1 with nothing behind it, and a 0xff string length of 2^56-1.
    let mut b = crafted_block(1, 0);
    b.truncate(4 + 64 + 4 + 32);
    b.extend_from_slice(&u32::MAX.to_le_bytes());
    let e = Block::decode_server(&b).unwrap_err();
    assert_eq!(e.message(), "Wrong vector length at 108");
    let mut w = Writer::new();
    w.u32(id::BLOCK + 1);
    w.raw(&[0; 64]);
    w.u32(0);
    w.raw(&[0; 32]);
    w.u32(1);
    w.u32(id::CHANGE_SET_VALUE);
    w.raw(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00]);
    let e = Block::decode_server(&w.into_bytes()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Parse);
}

struct Pair {
    alice: Call,
    bob: Call,
    a_key: PrivateKey,
    chain: Chain,
    rng: ChaCha20Rng,
    state: GroupState,
}

fn pair() -> Pair {
    let mut rng = rng();
    let m = common::two_members(&mut rng);
    let mut chain = Chain::empty();
    chain.apply(&m.zero).unwrap();
    Pair { alice: m.alice, bob: m.bob, a_key: m.alice_key, chain, rng, state: m.state }
}

impl Pair {
    fn rekey(&mut self, now: u64) {
        let block =
            self.chain.build_change_state(self.state.clone(), &self.a_key, &mut self.rng).unwrap().to_server_form();
        self.chain.apply(&block).unwrap();
        self.alice.apply_block(&block, now, &mut self.rng).unwrap();
        self.bob.apply_block(&block, now, &mut self.rng).unwrap();
    }
}

#[test]
fn active_epochs_limit_and_grace() {
    let mut p = pair();
    for _ in 0..(MAX_EPOCHS + 5) {
        p.rekey(0);
    }
    assert_eq!(p.alice.active_epochs().len(), MAX_EPOCHS);
    let packet = p.alice.encrypt(0, b"x", 0, 0, &mut p.rng).unwrap();
    assert_eq!(packet[0] as usize, MAX_EPOCHS);
    assert_eq!(p.bob.decrypt(1, &packet, 0).unwrap(), b"x");
    // After the grace period only the current epoch is left: forgotten once forget_at <= now.
    assert_eq!(p.alice.poll_timeout(), Some(10_000));
    p.alice.handle_timeout(9_999);
    assert_eq!(p.alice.active_epochs().len(), MAX_EPOCHS, "still inside the grace period at its last millisecond");
    p.alice.handle_timeout(10_000);
    assert_eq!(p.alice.active_epochs(), vec![p.chain.height()]);
    assert!(std::iter::from_fn(|| p.alice.poll_event()).any(|e| matches!(e, CallEvent::EpochExpired { .. })));
}

#[test]
fn packet_limits() {
    let mut p = pair();
    let data = vec![1u8; MAX_CLEAR_PREFIX];
    assert!(p.alice.encrypt(0, &data, MAX_CLEAR_PREFIX - 1, 0, &mut p.rng).is_ok());
    let e = p.alice.encrypt(0, &data, MAX_CLEAR_PREFIX, 0, &mut p.rng).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput);
    assert!(p.alice.encrypt(1023, b"x", 0, 0, &mut p.rng).is_ok());
    assert_eq!(p.alice.encrypt(1024, b"x", 0, 0, &mut p.rng).unwrap_err().code(), Some("INVALID_CALL_CHANNEL_ID"));
    assert_eq!(p.alice.encrypt(-1, b"x", 0, 0, &mut p.rng).unwrap_err().code(), Some("INVALID_CALL_CHANNEL_ID"));
    // A clear prefix length pointing past the packet, and one at the limit.
    let mut bad = p.alice.encrypt(0, b"abc", 0, 0, &mut p.rng).unwrap();
    let n = bad.len();
    bad[n - 4..].copy_from_slice(&(MAX_CLEAR_PREFIX as u32).to_le_bytes());
    assert_eq!(p.bob.decrypt(1, &bad, 0).unwrap_err().message(), "Unencrypted prefix size is too large");
}

/// A clear prefix longer than the data is refused on every send path (the call, the thread-safe
/// encryptor) before anything is written or a sequence number is used; a closed call says so
/// first, as the reference's status check does.
#[test]
fn a_clear_prefix_past_the_data_is_refused_everywhere() {
    let mut p = pair();
    let encryptor = p.alice.media_encryptor(&mut p.rng);
    let mut out = b"kept".to_vec();
    let e = p.alice.encrypt_into(0, b"abc", 4, 0, &mut p.rng, &mut out).unwrap_err();
    assert_eq!((e.kind(), e.message()), (ErrorKind::InvalidInput, "Unencrypted header length is too large"));
    let e = encryptor.encrypt_into(0, b"abc", 4, 0, &mut out).unwrap_err();
    assert_eq!((e.kind(), e.message()), (ErrorKind::InvalidInput, "Unencrypted header length is too large"));
    assert_eq!(out, b"kept");
    // No sequence number was used: the next packets decrypt in order.
    let packet = p.alice.encrypt(0, b"abc", 3, 0, &mut p.rng).unwrap();
    assert_eq!(p.bob.decrypt(1, &packet, 0).unwrap(), b"abc");
    let mut packet = Vec::new();
    encryptor.encrypt_into(0, b"abc", 3, 0, &mut packet).unwrap();
    assert_eq!(p.bob.decrypt(1, &packet, 0).unwrap(), b"abc");

    p.alice.close();
    let e = p.alice.encrypt_into(0, b"abc", 4, 0, &mut p.rng, &mut out).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::CallClosed);
}

/// A commit for `height` claiming to be from `user_id`, signed by `key` (server form).
fn commit(key: &PrivateKey, user_id: i64, height: i32, hash: [u8; 32]) -> Vec<u8> {
    let mut b = Broadcast {
        signature: [0; 64],
        user_id,
        chain_height: height,
        chain_hash: hash,
        payload: BroadcastPayload::Commit([0; 32]),
    };
    b.signature = key.sign(&b.signing_bytes());
    to_server_form(&b.encode()).unwrap()
}

#[test]
fn junk_broadcasts_cannot_starve_real_ones() {
    let mut p = pair();
    let junk_key = PrivateKey::generate(&mut p.rng);
    // Far-future junk is not held at all, however much of it comes.
    for i in 0..(2 * MAX_HELD_BROADCASTS) {
        p.bob.receive_broadcast(&commit(&junk_key, i as i64, i32::MAX, [0; 32])).unwrap();
        p.bob.receive_broadcast(&commit(&junk_key, i as i64, 1 + HELD_BROADCAST_HEIGHTS, [0; 32])).unwrap();
    }
    // Junk for the next height under alice's user id, before her real commit: held, but bounded.
    for _ in 0..HELD_BROADCASTS_PER_SENDER - 1 {
        p.bob.receive_broadcast(&commit(&junk_key, 1, 1, [0; 32])).unwrap();
    }
    // Alice's real commit for the next block arrives before the block (held).
    let block = p.chain.build_change_state(p.state.clone(), &p.a_key, &mut p.rng).unwrap().to_server_form();
    p.chain.apply(&block).unwrap();
    p.alice.apply_block(&block, 0, &mut p.rng).unwrap();
    let alice_commit = to_server_form(&p.alice.poll_outbound()[0]).unwrap();
    p.bob.receive_broadcast(&alice_commit).unwrap();
    // More junk for that sender is refused, not held.
    let e = p.bob.receive_broadcast(&commit(&junk_key, 1, 1, [0; 32])).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded);
    // The block comes: the held junk fails, alice's commit counts; only bob is missing.
    p.bob.apply_block(&block, 0, &mut p.rng).unwrap();
    assert_eq!(p.bob.verification_missing(), vec![2]);
    // Total bound: junk spread over many user ids and the held window fills it, then is refused.
    let mut refused = false;
    for i in 0..(MAX_HELD_BROADCASTS as i64 + 10) {
        refused |= p.bob.receive_broadcast(&commit(&junk_key, 1_000 + i, 2, [0; 32])).is_err();
    }
    assert!(refused, "the total bound holds");
}

#[test]
fn rejected_blocks_leave_the_call_unchanged() {
    let mut p = pair();
    let block = p.chain.build_change_state(p.state.clone(), &p.a_key, &mut p.rng).unwrap();
    let mut bad = block.to_server_form();
    let n = bad.len();
    bad[n / 2] ^= 0x40;
    let outbound = p.bob.poll_outbound();
    assert_eq!(outbound.len(), 1, "bob's commit for the zero block");
    p.bob.requeue_outbound(outbound.clone());
    let before = (p.bob.height(), p.bob.active_epochs(), p.bob.key_fingerprint(), p.bob.verification_missing());
    assert!(p.bob.apply_block(&bad, 0, &mut p.rng).is_err());
    assert_eq!((p.bob.height(), p.bob.active_epochs(), p.bob.key_fingerprint(), p.bob.verification_missing()), before);
    assert_eq!(p.bob.poll_outbound(), outbound, "no new verification round: the same commit is pending");
    assert_eq!(p.bob.poll_event(), None, "no event");
    let packet = p.alice.encrypt(0, b"still fine", 0, 0, &mut p.rng).unwrap();
    assert_eq!(p.bob.decrypt(1, &packet, 0).unwrap(), b"still fine");
}

#[test]
fn secrets_are_redacted_in_debug() {
    let mut p = pair();
    let seed = *p.a_key.to_bytes().expose();
    let seed_hex = hex::encode(seed);
    for text in [format!("{:?}", p.a_key), format!("{:?}", p.alice), format!("{:?}", p.a_key.to_bytes())] {
        assert!(!text.contains(&seed_hex[..16]), "{text}");
    }
    let key = p.chain.group_key(1, &p.a_key).unwrap();
    let key_hex = hex::encode(key.expose());
    assert!(!format!("{key:?}").contains(&key_hex[..16]));
    assert!(!format!("{:?}", p.alice).contains(&key_hex[..16]));
    let nonce = Secret::<32>::random(&mut p.rng);
    assert!(!format!("{nonce:?}").contains(&hex::encode(nonce.expose())[..16]));
}

#[test]
fn secret_types_zeroize_on_drop() {
    fn zeroize_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    zeroize_on_drop::<Secret<32>>();
    zeroize_on_drop::<Secret<64>>();
    zeroize_on_drop::<PrivateKey>();
    zeroize_on_drop::<confchain::GroupKey>();
    zeroize_on_drop::<confchain::crypto::HeaderKey>();
    zeroize_on_drop::<confchain::MediaEncryptor>();
    // Constant-time equality still compares correctly.
    assert_eq!(Secret::from_bytes([1u8; 32]), Secret::from_bytes([1u8; 32]));
    assert_ne!(Secret::from_bytes([1u8; 32]), Secret::from_bytes([2u8; 32]));
}

/// The signature and the hash cover a block's canonical encoding, whatever encoding arrived.
/// Decoding is as lenient as the reference's (padding is not checked, long lengths and unknown
/// flag bits are read), so a block that differs from its canonical encoding only there must apply
/// exactly as the canonical one does; and confchain's shortcut of signing and hashing the received
/// bytes must fire only when they are canonical. Every single-bit change of a real block is tried.
#[test]
fn non_canonical_encodings_apply_as_the_canonical_one() {
    let mut rng = rng();
    let keys: Vec<PrivateKey> = (0..3).map(|_| PrivateKey::generate(&mut rng)).collect();
    let block =
        build_zero_block(common::members(&keys, Permissions::ALL), &keys[0], &mut rng).unwrap().to_server_form();
    let mut expected = Chain::empty();
    expected.apply(&block).unwrap();
    let mut non_canonical = 0;
    for i in 0..block.len() {
        for bit in 0..8 {
            let mut mutated = block.clone();
            mutated[i] ^= 1 << bit;
            let Ok((decoded, canonical)) = Block::decode_canonical(&mutated, Form::Server) else { continue };
            let reencoded = decoded.encode();
            assert_eq!(canonical, reencoded[4..] == mutated[4..], "byte {i} bit {bit}");
            if canonical {
                continue;
            }
            non_canonical += 1;
            let mut chain = Chain::empty();
            let mut via_canonical = Chain::empty();
            let result = chain.apply(&mutated).map_err(|e| e.code());
            assert_eq!(result, via_canonical.apply(&to_server_form(&reencoded).unwrap()).map_err(|e| e.code()));
            if decoded == Block::decode_server(&block).unwrap() {
                assert_eq!(result, Ok(()), "byte {i} bit {bit}");
                assert_eq!(chain.hash(), expected.hash());
            }
        }
    }
    // Padding of the shared key's bytes and the flags' unused bits, at least.
    assert!(non_canonical > 20, "{non_canonical}");
}

/// Issue 23 item 10: junk for the next height under many made-up user ids fills the held
/// broadcasts; a current member's early commit still displaces it (memory stays bounded).
#[test]
fn junk_from_many_user_ids_cannot_crowd_out_a_members_commit() {
    let mut p = pair();
    let junk_key = PrivateKey::generate(&mut p.rng);
    for i in 0..(MAX_HELD_BROADCASTS as i64 + 100) {
        let _ = p.bob.receive_broadcast(&commit(&junk_key, 1_000 + i, 1, [0; 32]));
    }
    let block = p.chain.build_change_state(p.state.clone(), &p.a_key, &mut p.rng).unwrap().to_server_form();
    p.chain.apply(&block).unwrap();
    p.alice.apply_block(&block, 0, &mut p.rng).unwrap();
    let alice_commit = to_server_form(&p.alice.poll_outbound()[0]).unwrap();
    p.bob.receive_broadcast(&alice_commit).unwrap();
    p.bob.apply_block(&block, 0, &mut p.rng).unwrap();
    assert_eq!(p.bob.verification_missing(), vec![2], "alice's early commit counted");
}

/// Issue 30 item 7: junk under a member's own id filling the per-(height, user, kind) bound
/// refused the member's real early commit (`LIMIT_EXCEEDED`), and both rounds stalled. A
/// broadcast signed with the member's current key displaces one that is not (what SPEC §7.2
/// claims, for a member whose key does not change at that height).
#[test]
fn junk_under_a_members_own_id_cannot_crowd_out_its_commit() {
    let mut p = pair();
    let junk_key = PrivateKey::generate(&mut p.rng);
    for _ in 0..HELD_BROADCASTS_PER_SENDER {
        p.bob.receive_broadcast(&commit(&junk_key, 1, 1, [0; 32])).unwrap();
    }
    let block = p.chain.build_change_state(p.state.clone(), &p.a_key, &mut p.rng).unwrap().to_server_form();
    p.chain.apply(&block).unwrap();
    p.alice.apply_block(&block, 0, &mut p.rng).unwrap();
    let alice_commit = to_server_form(&p.alice.poll_outbound()[0]).unwrap();
    p.bob.receive_broadcast(&alice_commit).unwrap();
    // More junk is still refused: the bound holds.
    let e = p.bob.receive_broadcast(&commit(&junk_key, 1, 1, [0; 32])).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::LimitExceeded);
    p.bob.apply_block(&block, 0, &mut p.rng).unwrap();
    assert_eq!(p.bob.verification_missing(), vec![2], "alice's early commit counted");
}
