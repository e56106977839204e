//! The failure policy and recovery (SPEC.md §8.1): a valid block we cannot read ends our old key;
//! a later good block gives us a key again; a call resyncs in place keeping its key, sequence
//! numbers and replay windows, reporting a trusted tip apart from a verified block and never
//! adopting a tip its own rules can check and refuse; caller time never overflows; the epoch
//! boundary is the reference's.

mod common;

use common::ADD_REMOVE;
use confchain::limits::EPOCH_GRACE_MS;
use confchain::{
    build_zero_block, Block, Call, CallEvent, Chain, Change, ErrorKind, GroupParticipant, GroupState, Permissions,
    PlainBlock, PrivateKey, PublicKey, UnverifiedTip,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

struct Conf {
    rng: ChaCha20Rng,
    keys: Vec<PrivateKey>,
    server: Chain,
    blocks: Vec<Vec<u8>>,
    calls: Vec<Call>,
}

fn member(id: i64, key: &PrivateKey) -> GroupParticipant {
    GroupParticipant { user_id: id, public_key: key.public_key(), flags: ADD_REMOVE, version: 0 }
}

/// Alice (1, all permissions), bob (2) and carol (3, add+remove) in one call, at the zero block.
fn three() -> Conf {
    let mut rng = ChaCha20Rng::seed_from_u64(13);
    let keys: Vec<PrivateKey> = (0..3).map(|_| PrivateKey::generate(&mut rng)).collect();
    let state = GroupState {
        participants: keys.iter().enumerate().map(|(i, k)| member(i as i64 + 1, k)).collect(),
        external_permissions: Permissions::NONE,
    };
    let mut state = state;
    state.participants[0].flags = Permissions::ALL; // alice may also set values
    let zero = build_zero_block(state, &keys[0], &mut rng).unwrap().to_server_form();
    let mut server = Chain::empty();
    server.apply(&zero).unwrap();
    let calls = (0..3).map(|i| Call::new(i as i64 + 1, keys[i].clone(), &zero, &mut rng).unwrap()).collect();
    Conf { rng, keys, server, blocks: vec![zero], calls }
}

impl Conf {
    /// The server accepts a block (it checks the chain rules, not anyone's key header).
    fn publish(&mut self, block: &PlainBlock) -> Vec<u8> {
        let server = block.to_server_form();
        self.server.apply(&server).unwrap();
        self.blocks.push(server.clone());
        server
    }

    /// A block built by alice that sets `state`, with the key header of `victim` replaced by
    /// garbage: valid for the chain (every other member reads its key), unreadable for `victim`.
    fn with_garbage_header(&mut self, state: GroupState, victim: i64) -> PlainBlock {
        let built = self.server.build_change_state(state, &self.keys[0], &mut self.rng).unwrap();
        let Block { changes, .. } = built.decode().unwrap();
        let mut changes = changes;
        for c in &mut changes {
            if let Change::SetSharedKey(k) = c {
                let i = k.dest_user_id.iter().position(|u| *u == victim).unwrap();
                k.dest_header.set(i, &[0x5a; 32]);
            }
        }
        self.server.build_block(changes, &self.keys[0]).unwrap()
    }

    fn state(&self) -> GroupState {
        self.server.group_state().clone()
    }

    fn events(&mut self, i: usize) -> Vec<CallEvent> {
        std::iter::from_fn(|| self.calls[i].poll_event()).collect()
    }
}

/// The attack from issue 13: alice removes carol with a block whose header for bob is garbage.
/// Bob must stop encrypting under the pre-removal key, and once the grace period is over carol
/// (who kept her copy of that key) must not read anything bob sends.
#[test]
fn unreadable_removal_block_ends_the_old_key() {
    let mut c = three();
    let mut state = c.state();
    state.participants.retain(|p| p.user_id != 3);
    let block = c.with_garbage_header(state, 2);
    let block = c.publish(&block);
    let now = 1_000;
    for i in 0..3 {
        c.calls[i].apply_block(&block, now, &mut c.rng).unwrap();
    }
    // Bob applied the block: his chain advanced, he knows he holds no key.
    assert_eq!(c.calls[1].height(), 1);
    assert!(c.calls[1].is_member() && !c.calls[1].has_current_key());
    let events = c.events(1);
    assert!(events.iter().any(|e| matches!(e, CallEvent::KeyUnavailable { height: 1, error } if error.kind() == ErrorKind::InvalidSharedKey || error.kind() == ErrorKind::Decrypt)), "{events:?}");
    let err = c.calls[1].encrypt(0, b"secret", 0, now, &mut c.rng).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyUnavailable);
    assert_eq!(err.numeric_code(), 100);
    // Carol saw her removal; 60 s later nothing bob could send reaches her.
    assert!(!c.calls[2].is_member());
    let later = now + 60_000;
    assert_eq!(c.calls[1].encrypt(0, b"secret", 0, later, &mut c.rng).unwrap_err().kind(), ErrorKind::KeyUnavailable);
    // Alice still encrypts; carol cannot read her after the grace period either.
    let p = c.calls[0].encrypt(0, b"to bob", 0, later, &mut c.rng).unwrap();
    assert_eq!(c.calls[2].decrypt(1, &p, later).unwrap_err().code(), Some("DECRYPT__UNKNOWN_EPOCH"));
    // Bob's old epoch is gone after its grace period, exactly as after any block.
    c.calls[1].handle_timeout(later);
    assert!(c.calls[1].active_epochs().is_empty());
}

/// A valid block whose group state has no shared key (a SetGroupState alone, with a set-value to
/// make it a change): every member advances and nobody holds a key; the next good block restores
/// encryption for everyone without a new Call.
#[test]
fn keyless_block_then_recovery_on_the_next_good_block() {
    let mut c = three();
    let state = c.state();
    let keyless = c.server.build_block(vec![Change::SetGroupState(state.clone())], &c.keys[0]).unwrap();
    let keyless = c.publish(&keyless);
    for i in 0..3 {
        c.calls[i].apply_block(&keyless, 500, &mut c.rng).unwrap();
        assert_eq!(c.calls[i].height(), 1);
        assert!(!c.calls[i].has_current_key());
        assert_eq!(c.calls[i].key_fingerprint(), None);
        assert_eq!(c.calls[i].encrypt(0, b"x", 0, 500, &mut c.rng).unwrap_err().kind(), ErrorKind::KeyUnavailable);
    }
    // A later block with a key: everyone encrypts again, on the same Call.
    let rekey = c.server.build_change_state(state, &c.keys[0], &mut c.rng).unwrap();
    let rekey = c.publish(&rekey);
    for i in 0..3 {
        c.calls[i].apply_block(&rekey, 600, &mut c.rng).unwrap();
        assert!(c.calls[i].has_current_key());
    }
    let p = c.calls[1].encrypt(0, b"back", 0, 600, &mut c.rng).unwrap();
    assert_eq!(c.calls[0].decrypt(2, &p, 600).unwrap(), b"back");
    assert_eq!(c.calls[2].decrypt(2, &p, 600).unwrap(), b"back");
    assert_eq!(c.calls[0].key_fingerprint(), c.calls[2].key_fingerprint());
}

/// Invalid blocks are still rejected with nothing changed.
#[test]
fn invalid_blocks_still_change_nothing() {
    let mut c = three();
    let block = c.server.build_change_state(c.state(), &c.keys[0], &mut c.rng).unwrap();
    let mut bad = block.to_server_form();
    bad[100] ^= 1;
    let before = (c.calls[1].height(), c.calls[1].active_epochs(), c.calls[1].key_fingerprint());
    assert!(c.calls[1].apply_block(&bad, 0, &mut c.rng).is_err());
    assert!(c.calls[1].check_block(&bad).is_err());
    assert!(c.calls[1].check_block(&block.to_server_form()).is_ok());
    assert_eq!((c.calls[1].height(), c.calls[1].active_epochs(), c.calls[1].key_fingerprint()), before);
}

/// Resync in place: after 3,000 packets, bob misses two blocks (the first refused), adopts the
/// server's last block, and packets keep flowing both ways (no "Message is too old").
#[test]
fn resync_in_place_keeps_sequence_numbers_and_windows() {
    let mut c = three();
    let mut now = 0;
    for i in 0..3_000u32 {
        now += 1;
        let (from, to, from_id) = if i % 2 == 0 { (0, 1, 1) } else { (1, 0, 2) };
        let p = c.calls[from].encrypt(0, &i.to_le_bytes(), 0, now, &mut c.rng).unwrap();
        assert_eq!(c.calls[to].decrypt(from_id, &p, now).unwrap(), i.to_le_bytes());
    }
    // Two re-keys; bob gets neither (say the first was refused and the second missed).
    for _ in 0..2 {
        let b = c.server.build_change_state(c.state(), &c.keys[0], &mut c.rng).unwrap();
        let b = c.publish(&b);
        c.calls[0].apply_block(&b, now, &mut c.rng).unwrap();
        c.calls[2].apply_block(&b, now, &mut c.rng).unwrap();
    }
    let tip = |b: &Vec<u8>| UnverifiedTip::from_server_block(b).unwrap();
    let last = tip(c.blocks.last().unwrap());
    // The block we already have is a no-op; the server's last one is adopted; an older one then
    // cannot be.
    c.events(1);
    c.calls[1].resync(tip(&c.blocks[0]), now, &mut c.rng).unwrap();
    assert_eq!(c.calls[1].height(), 0);
    assert!(c.events(1).is_empty(), "the same block again changes nothing");
    c.calls[1].resync(last.clone(), now, &mut c.rng).unwrap();
    // Adopted on trust: reported as such, never as a verified block.
    let events = c.events(1);
    assert!(events.contains(&CallEvent::TipAdopted { height: 2 }), "{events:?}");
    assert!(!events.iter().any(|e| matches!(e, CallEvent::BlockApplied { .. })), "{events:?}");
    c.calls[1].resync(last, now, &mut c.rng).unwrap();
    assert_eq!(c.calls[1].resync(tip(&c.blocks[1]), now, &mut c.rng).unwrap_err().kind(), ErrorKind::InvalidInput);
    assert_eq!(c.calls[1].height(), 2);
    assert_eq!(c.calls[1].key_fingerprint(), c.calls[0].key_fingerprint());
    for i in 0..100u32 {
        now += 1;
        let p = c.calls[1].encrypt(0, b"from bob", 0, now, &mut c.rng).unwrap();
        assert_eq!(c.calls[0].decrypt(2, &p, now).unwrap(), b"from bob", "packet {i} after resync");
        assert_eq!(c.calls[2].decrypt(2, &p, now).unwrap(), b"from bob");
        let p = c.calls[0].encrypt(0, b"from alice", 0, now, &mut c.rng).unwrap();
        assert_eq!(c.calls[1].decrypt(1, &p, now).unwrap(), b"from alice");
        // Bob's replay windows survived: an old packet of alice is still refused.
    }
    let replayed = c.calls[0].encrypt(0, b"once", 0, now, &mut c.rng).unwrap();
    c.calls[1].decrypt(1, &replayed, now).unwrap();
    assert_eq!(c.calls[1].decrypt(1, &replayed, now).unwrap_err().kind(), ErrorKind::Replay);
}

/// `now` near u64::MAX: no overflow (no panic in debug builds), and the grace period is kept.
#[test]
fn time_near_the_end_of_u64() {
    let mut c = three();
    let b = c.server.build_change_state(c.state(), &c.keys[0], &mut c.rng).unwrap();
    let b = c.publish(&b);
    let now = u64::MAX - 5;
    c.calls[0].apply_block(&b, now, &mut c.rng).unwrap();
    assert_eq!(c.calls[0].poll_timeout(), Some(u64::MAX), "saturated, not wrapped");
    assert_eq!(c.calls[0].active_epochs(), vec![0, 1], "the old epoch is still in its grace period");
    c.calls[0].handle_timeout(u64::MAX - 1);
    assert_eq!(c.calls[0].active_epochs(), vec![0, 1]);
    c.calls[0].handle_timeout(u64::MAX);
    assert_eq!(c.calls[0].active_epochs(), vec![1]);
    let p = c.calls[0].encrypt(0, b"x", 0, u64::MAX, &mut c.rng).unwrap();
    c.calls[1].apply_block(&b, u64::MAX, &mut c.rng).unwrap();
    assert_eq!(c.calls[1].decrypt(1, &p, u64::MAX).unwrap(), b"x");
}

/// The reference forgets a replaced epoch when forget_at <= now: usable at 9,999 ms after the
/// replacing block, gone at 10,000 and 10,001.
#[test]
fn epoch_boundary_matches_the_reference() {
    for (after, readable) in [(EPOCH_GRACE_MS - 1, true), (EPOCH_GRACE_MS, false), (EPOCH_GRACE_MS + 1, false)] {
        let mut c = three();
        let old = c.calls[0].encrypt(0, b"old epoch", 0, 0, &mut c.rng).unwrap();
        let b = c.server.build_change_state(c.state(), &c.keys[0], &mut c.rng).unwrap();
        let b = c.publish(&b);
        let t0 = 1_000;
        c.calls[1].apply_block(&b, t0, &mut c.rng).unwrap();
        let r = c.calls[1].decrypt(1, &old, t0 + after);
        assert_eq!(r.is_ok(), readable, "{after} ms after the block: {r:?}");
        if !readable {
            assert_eq!(r.unwrap_err().code(), Some("DECRYPT__UNKNOWN_EPOCH"));
        }
    }
}

/// Issue 23, item 1, at the call's level: an outsider signs the next block, adding itself. The
/// rules refuse it (it has no rights), and a resync to that very block, which directly follows
/// ours and so can be checked, must refuse it too: trusting the tip would give the outsider every
/// key we use from then on. Nothing changes, and we keep encrypting for the real members only.
#[test]
fn resync_refuses_a_tip_that_the_rules_refuse() {
    let mut c = three();
    let outsider = PrivateKey::generate(&mut c.rng);
    let mut state = c.state();
    state.participants.push(GroupParticipant {
        user_id: 66,
        public_key: outsider.public_key(),
        flags: Permissions::ALL,
        version: 0,
    });
    // Built by hand (the builders refuse it): a genuine add with a valid key for everyone,
    // re-signed by the outsider, who has no right to add anyone.
    let mut forged = c.server.build_change_state(state, &c.keys[0], &mut c.rng).unwrap().decode().unwrap();
    forged.signature_public_key = Some(outsider.public_key());
    forged.signature = outsider.sign(&forged.signing_bytes());
    let forged = confchain::to_server_form(&forged.encode()).unwrap();
    let refused = c.calls[1].check_block(&forged).unwrap_err();
    assert_eq!(refused.code(), Some("INVALID_BLOCK__NO_PERMISSIONS"));
    c.events(1);
    let before = (c.calls[1].height(), c.calls[1].key_fingerprint(), c.calls[1].participants().to_vec());
    let tip = UnverifiedTip::from_server_block(&forged).expect("consistent on its own");
    let e = c.calls[1].resync(tip, 5, &mut c.rng).unwrap_err();
    assert_eq!(e, refused, "the rules' own error");
    assert_eq!((c.calls[1].height(), c.calls[1].key_fingerprint(), c.calls[1].participants().to_vec()), before);
    assert!(c.events(1).is_empty());
    // Our packets are still for the real members only: the outsider's key reads none of them.
    let p = c.calls[1].encrypt(0, b"members only", 0, 5, &mut c.rng).unwrap();
    assert_eq!(c.calls[0].decrypt(2, &p, 5).unwrap(), b"members only");
    assert!(c.calls[1].participants().iter().all(|p| p.user_id != 66));
}

/// A tip that directly follows our block and passes the rules is applied as a verified block.
#[test]
fn resync_to_the_next_block_verifies_it() {
    let mut c = three();
    let b = c.server.build_change_state(c.state(), &c.keys[2], &mut c.rng).unwrap();
    let b = c.publish(&b);
    c.events(1);
    c.calls[1].resync(UnverifiedTip::from_server_block(&b).unwrap(), 5, &mut c.rng).unwrap();
    let events = c.events(1);
    assert!(events.contains(&CallEvent::BlockApplied { height: 1 }), "{events:?}");
    assert!(!events.iter().any(|e| matches!(e, CallEvent::TipAdopted { .. })), "{events:?}");
    c.calls[0].apply_block(&b, 5, &mut c.rng).unwrap();
    assert_eq!(c.calls[1].key_fingerprint(), c.calls[0].key_fingerprint());
}

/// A participant key that is not a curve point: the reference accepts the block and keeps
/// re-keying over it; so does confchain (same shared-secret bytes, SPEC.md §11).
#[test]
fn off_curve_participant_keys_do_not_stall_the_call() {
    let mut c = three();
    // Find 32 bytes that are not a valid Ed25519 point (and not y = 1).
    let off_curve = (2u8..=255)
        .map(|b| PublicKey::from_bytes([b; 32]))
        .find(|k| k.verifying_key().is_err())
        .expect("an off-curve encoding");
    let mut state = c.state();
    state.participants.push(GroupParticipant {
        user_id: 9,
        public_key: off_curve,
        flags: Permissions::NONE,
        version: 0,
    });
    let add = c.server.build_change_state(state.clone(), &c.keys[0], &mut c.rng).unwrap();
    let add = c.publish(&add);
    for i in 0..3 {
        c.calls[i].apply_block(&add, 0, &mut c.rng).unwrap();
    }
    // Re-keying and removing still work with that member listed.
    let rekey = c.calls[1].build_rekey(&mut c.rng).unwrap();
    let rekey = c.publish(&rekey);
    for i in 0..3 {
        c.calls[i].apply_block(&rekey, 0, &mut c.rng).unwrap();
    }
    assert_eq!(c.calls[0].key_fingerprint(), c.calls[2].key_fingerprint());
    let remove = c.calls[0].build_remove(&[9], &mut c.rng).unwrap();
    c.publish(&remove);
}

/// Puts into the call participants whose keys have no shared secret, with a block built by hand:
/// alice's builder cannot compute a header for them, so the block is built for stand-in keys and
/// the keys swapped afterwards (the rules check who is listed, not what the headers hold).
fn add_keyless_participants(c: &mut Conf, keyless: &[(i64, PublicKey)]) {
    let mut state = c.state();
    for (user_id, _) in keyless {
        let stand_in = PrivateKey::generate(&mut c.rng);
        state.participants.push(GroupParticipant {
            user_id: *user_id,
            public_key: stand_in.public_key(),
            flags: Permissions::NONE,
            version: 0,
        });
    }
    let built = c.server.build_change_state(state, &c.keys[0], &mut c.rng).unwrap();
    let mut changes = built.decode().unwrap().changes;
    for change in &mut changes {
        if let Change::SetGroupState(s) = change {
            for (user_id, bad) in keyless {
                s.participants.iter_mut().find(|p| p.user_id == *user_id).unwrap().public_key = *bad;
            }
        }
    }
    let block = c.server.build_block(changes, &c.keys[0]).unwrap();
    let block = c.publish(&block);
    for call in &mut c.calls {
        call.apply_block(&block, 0, &mut c.rng).unwrap();
    }
    for (_, bad) in keyless {
        assert!(c.calls[1].participants().iter().any(|p| p.public_key == *bad));
    }
}

fn identity_key() -> PublicKey {
    let mut y = [0u8; 32];
    y[0] = 1;
    PublicKey::from_bytes(y)
}

/// y = p - 1 = 2^255 - 20 (little-endian): the Edwards point of order 2, whose u is 0.
fn order_two_key() -> PublicKey {
    let mut y = [0xff; 32];
    y[0] = 0xec;
    y[31] = 0x7f;
    PublicKey::from_bytes(y)
}

/// With two keyless participants, the error is the first listed one's, as in the reference's
/// loop, also for groups large enough for the parallel key headers (feature `parallel`, 8+).
#[test]
fn the_first_keyless_participant_names_the_error() {
    for (first, second, message) in [
        (identity_key(), order_two_key(), "Failed to compute modulo inverse"),
        (order_two_key(), identity_key(), "Failed to compute shared secret"),
    ] {
        let mut c = three();
        for id in 20..25 {
            let k = PrivateKey::generate(&mut c.rng);
            let mut state = c.state();
            state.participants.push(member(id, &k));
            let b = c.server.build_change_state(state, &c.keys[0], &mut c.rng).unwrap();
            let b = c.publish(&b);
            for call in &mut c.calls {
                call.apply_block(&b, 0, &mut c.rng).unwrap();
            }
        }
        add_keyless_participants(&mut c, &[(10, first), (11, second)]);
        assert!(c.calls[0].participants().len() >= 10);
        let e = c.calls[0].build_rekey(&mut c.rng).unwrap_err();
        assert_eq!((e.kind(), e.message()), (ErrorKind::SharedSecret, message));
        // Issue 30 item 1: the builder says which entry blocks it.
        assert_eq!(e.participant(), Some(10));
    }
}

/// Issue 23, item 4: builders compute the shared secrets first and check the rules after, as
/// tde2e does (Call::build_change_state builds the key headers, then Blockchain::build_block
/// checks permissions). A member without add/remove rights re-keying over a group that holds the
/// identity key (y = 1: "Failed to compute modulo inverse") or an order-2 point (y = -1, u = 0:
/// "Failed to compute shared secret") gets the shared-secret error (numeric 100), not
/// INVALID_BLOCK__NO_PERMISSIONS (207): the same error the reference gives, whoever asks.
#[test]
fn builders_compute_shared_secrets_before_checking_permissions() {
    for (bad, message) in
        [(identity_key(), "Failed to compute modulo inverse"), (order_two_key(), "Failed to compute shared secret")]
    {
        let mut c = three();
        // Bob loses his add/remove rights.
        let demote = c.calls[0].build_set_permissions(2, Permissions::NONE, &mut c.rng).unwrap();
        let demote = c.publish(&demote);
        for call in &mut c.calls {
            call.apply_block(&demote, 0, &mut c.rng).unwrap();
        }
        // Control: over an ordinary group, bob's re-key is refused for permissions.
        let e = c.calls[1].build_rekey(&mut c.rng).unwrap_err();
        assert_eq!((e.code(), e.numeric_code()), (Some("INVALID_BLOCK__NO_PERMISSIONS"), 207));
        add_keyless_participants(&mut c, &[(10, bad)]);
        // Over the keyless participant, the shared secret fails first, for bob as for alice.
        for signer in [1, 0] {
            let e = c.calls[signer].build_rekey(&mut c.rng).unwrap_err();
            assert_eq!((e.kind(), e.message(), e.numeric_code()), (ErrorKind::SharedSecret, message, 100), "{signer}");
        }
        // The same through every builder that re-keys, and for a non-member's self-add.
        let e = c.calls[1].build_remove(&[3], &mut c.rng).unwrap_err();
        assert_eq!((e.kind(), e.message()), (ErrorKind::SharedSecret, message));
        let e = c.calls[1].build_set_permissions(3, Permissions::NONE, &mut c.rng).unwrap_err();
        assert_eq!((e.kind(), e.message()), (ErrorKind::SharedSecret, message));
        let outsider = PrivateKey::generate(&mut c.rng);
        let e = c.server.build_self_add(member(50, &outsider), &outsider, &mut c.rng).unwrap_err();
        assert_eq!((e.kind(), e.message()), (ErrorKind::SharedSecret, message));
        // Once the keyless participant is gone, bob is refused for permissions again, and alice
        // may re-key.
        let mut state = c.state();
        state.participants.retain(|p| p.user_id != 10);
        let e = c.calls[1].build_change_state(state.clone(), &mut c.rng).unwrap_err();
        assert_eq!(e.code(), Some("INVALID_BLOCK__NO_PERMISSIONS"));
        assert!(c.calls[0].build_change_state(state, &mut c.rng).is_ok());
    }
}

/// Where confchain is deliberately more robust than the reference (which aborts): a set-value
/// change whose key is not 32 bytes, or is all zeros, is accepted like any other.
#[test]
fn odd_set_value_keys_are_accepted() {
    let mut c = three();
    for key in [&b"short"[..], &[0u8; 32][..], &[7u8; 40][..]] {
        let block = c.server.build_set_value(key, b"value", [3; 32], &c.keys[0]).unwrap();
        let block = c.publish(&block);
        c.calls[1].apply_block(&block, 0, &mut c.rng).unwrap();
    }
    assert_eq!(c.calls[1].height(), 3);
    assert!(c.calls[1].has_current_key(), "set-value blocks keep the key");
}

#[test]
fn build_remove_of_a_non_participant_is_an_error() {
    let mut c = three();
    let e = c.calls[0].build_remove(&[42], &mut c.rng).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ParticipantNotFound);
    assert!(c.calls[0].build_remove(&[3], &mut c.rng).is_ok());
}

#[test]
fn verification_names_who_is_missing() {
    let mut c = three();
    assert_eq!(c.calls[0].verification_missing(), vec![1, 2, 3]);
    let commits: Vec<Vec<u8>> = (0..2).flat_map(|i| c.calls[i].poll_outbound()).collect();
    for b in &commits {
        c.calls[0].receive_broadcast(&confchain::to_server_form(b).unwrap()).unwrap();
    }
    assert_eq!(c.calls[0].verification_missing(), vec![3], "carol never committed");
}

/// A tip is verified against nothing, but it must be consistent on its own (SPEC.md §4.3): a
/// negative height, a block with no group state or no shared key to read, or a state that breaks
/// the structural rules is refused before anyone can trust it.
#[test]
fn an_unverified_tip_must_be_consistent_on_its_own() {
    let mut c = three();
    let rekey = c.server.build_change_state(c.state(), &c.keys[0], &mut c.rng).unwrap();
    let tip_of = |b: &Block| UnverifiedTip::from_block(b.clone());
    let good = rekey.decode().unwrap();
    assert_eq!(tip_of(&good).unwrap().participants(), c.state().participants.as_slice());

    let mut negative = good.clone();
    negative.height = -1;
    assert_eq!(tip_of(&negative).unwrap_err().message(), "INVALID_BLOCK: negative height");

    // A set-value block that omits the shared key from its proof: nothing tells the key.
    let set_value = c.server.build_set_value(b"k", b"v", [1; 32], &c.keys[0]).unwrap().decode().unwrap();
    assert!(tip_of(&set_value).is_ok());
    let mut keyless = set_value.clone();
    keyless.state_proof.shared_key = None;
    assert_eq!(tip_of(&keyless).unwrap_err().kind(), ErrorKind::InvalidStateProofSecret);
    let mut stateless = set_value.clone();
    stateless.state_proof.group_state = None;
    assert_eq!(tip_of(&stateless).unwrap_err().kind(), ErrorKind::InvalidStateProofGroup);

    // A proof whose state lists one user twice.
    let mut duplicate = set_value;
    let state = duplicate.state_proof.group_state.as_mut().unwrap();
    let first = state.participants[0].clone();
    state.participants[1].user_id = first.user_id;
    assert_eq!(tip_of(&duplicate).unwrap_err().kind(), ErrorKind::InvalidGroupState);
}
