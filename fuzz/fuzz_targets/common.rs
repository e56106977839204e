//! Fixtures shared by the fuzz targets: a small deterministic conference.
#![allow(dead_code)]

use confchain::{build_zero_block, to_server_form, Call, Chain, GroupParticipant, GroupState, Permissions, PrivateKey};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub struct Fixture {
    pub keys: Vec<PrivateKey>,
    pub state: GroupState,
    /// Server-form blocks: a zero block with 3 members, then a re-key.
    pub blocks: Vec<Vec<u8>>,
    pub chain: Chain,
    pub alice: Call,
    pub bob: Call,
    /// Valid packets from alice (1) to bob (2), and commit broadcasts.
    pub packets: Vec<Vec<u8>>,
    pub broadcasts: Vec<Vec<u8>>,
}

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

pub fn fixture() -> Fixture {
    let mut rng = rng(1);
    let keys: Vec<PrivateKey> = (0..3).map(|_| PrivateKey::generate(&mut rng)).collect();
    let state = GroupState {
        participants: keys
            .iter()
            .enumerate()
            .map(|(i, k)| GroupParticipant {
                user_id: i as i64 + 1,
                public_key: k.public_key(),
                flags: Permissions::from_bits_retain(3),
                version: i as i32 % 2,
            })
            .collect(),
        external_permissions: Permissions::from_bits_retain(3),
    };
    let mut chain = Chain::empty();
    let zero = build_zero_block(state.clone(), &keys[0], &mut rng).unwrap().to_server_form();
    chain.apply(&zero).unwrap();
    let rekey = chain.build_change_state(state.clone(), &keys[1], &mut rng).unwrap().to_server_form();
    let mut alice = Call::new(1, keys[0].clone(), &zero, &mut rng).unwrap();
    let mut bob = Call::new(2, keys[1].clone(), &zero, &mut rng).unwrap();
    chain.apply(&rekey).unwrap();
    alice.apply_block(&rekey, 0, &mut rng).unwrap();
    bob.apply_block(&rekey, 0, &mut rng).unwrap();
    let packets = vec![
        alice.encrypt(0, b"", 0, 0, &mut rng).unwrap(),
        alice.encrypt(1, b"media frame with prefix", 5, 0, &mut rng).unwrap(),
        alice.encrypt_message("{\"_\":\"groupCallMessage\"}", 0, &mut rng).unwrap(),
    ];
    let mut broadcasts: Vec<Vec<u8>> = alice.poll_outbound();
    broadcasts.extend(bob.poll_outbound());
    let broadcasts = broadcasts.iter().map(|b| to_server_form(b).unwrap()).collect();
    Fixture { keys, state, blocks: vec![zero, rekey], chain, alice, bob, packets, broadcasts }
}
