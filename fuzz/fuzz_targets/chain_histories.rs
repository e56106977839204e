//! Structure-aware: an `Arbitrary` description of a history (joins, removals, permission changes,
//! re-keys, closing) is built with the library's builders and applied by every member. Invariants:
//! builders never produce a block the chain refuses, members always agree on the key, non-members
//! never get one.
#![no_main]

use arbitrary::Arbitrary;
use confchain::{build_zero_block, Chain, GroupParticipant, GroupState, Permissions};
use confchain::{Call, PrivateKey};
use libfuzzer_sys::fuzz_target;

#[path = "common.rs"]
mod common;

#[derive(Arbitrary, Debug)]
enum Op {
    Join { user: u8, flags: u8, version: i8 },
    Remove { signer: u8, target: u8 },
    SetFlags { signer: u8, target: u8, flags: u8 },
    Rekey { signer: u8 },
    Close { signer: u8, external: u8 },
}

#[derive(Arbitrary, Debug)]
struct History {
    seed: u64,
    creator_flags: u8,
    ops: Vec<Op>,
    start_ms: u64,
    step_ms: u64,
}

const USERS: usize = 5;

fuzz_target!(|h: History| {
    let mut rng = common::rng(h.seed);
    let keys: Vec<PrivateKey> = (0..USERS).map(|_| PrivateKey::generate(&mut rng)).collect();
    let id = |u: usize| 10 + u as i64;
    let me = GroupParticipant {
        user_id: id(0),
        public_key: keys[0].public_key(),
        flags: Permissions::from_bits_retain(i32::from(h.creator_flags % 8)),
        version: 0,
    };
    let state = GroupState { participants: vec![me], external_permissions: Permissions::from_bits_retain(3) };
    let Ok(zero) = build_zero_block(state, &keys[0], &mut rng) else {
        return;
    };
    let zero = zero.to_server_form();
    let mut server = Chain::empty();
    server.apply(&zero).unwrap();
    let mut calls: Vec<Option<Call>> = (0..USERS).map(|_| None).collect();
    calls[0] = Some(Call::new(id(0), keys[0].clone(), &zero, &mut rng).unwrap());
    let mut now = h.start_ms;
    for op in h.ops.iter().take(24) {
        let state = server.group_state().clone();
        let (signer, new) = match *op {
            Op::Join { user, flags, version } => {
                let u = user as usize % USERS;
                if calls[u].is_some() {
                    continue;
                }
                let mut s = state.clone();
                s.participants.retain(|p| p.user_id != id(u));
                s.participants.push(GroupParticipant {
                    user_id: id(u),
                    public_key: keys[u].public_key(),
                    flags: Permissions::from_bits_retain(i32::from(flags % 8)),
                    version: i32::from(version),
                });
                (u, s)
            }
            Op::Remove { signer, target } => {
                let mut s = state.clone();
                s.participants.retain(|p| p.user_id != id(target as usize % USERS));
                (signer as usize % USERS, s)
            }
            Op::SetFlags { signer, target, flags } => {
                let mut s = state.clone();
                if let Some(p) = s.participants.iter_mut().find(|p| p.user_id == id(target as usize % USERS)) {
                    p.flags = Permissions::from_bits_retain(i32::from(flags % 8));
                }
                (signer as usize % USERS, s)
            }
            Op::Rekey { signer } => (signer as usize % USERS, state.clone()),
            Op::Close { signer, external } => {
                let mut s = state.clone();
                s.external_permissions = Permissions::from_bits_retain(i32::from(external % 4));
                (signer as usize % USERS, s)
            }
        };
        let Ok(block) = server.build_change_state(new, &keys[signer], &mut rng) else { continue };
        let block = block.to_server_form();
        server.apply(&block).expect("a built block is accepted");
        // Caller time goes anywhere, up to u64::MAX (nothing may overflow).
        now = now.saturating_add(h.step_ms);
        for c in calls.iter_mut().flatten() {
            c.apply_block(&block, now, &mut rng).expect("members accept a valid block");
        }
        if let Op::Join { user, .. } = *op {
            let u = user as usize % USERS;
            calls[u] = Some(Call::new(id(u), keys[u].clone(), &block, &mut rng).unwrap());
        }
        let mut fingerprint = None;
        for (u, key) in keys.iter().enumerate() {
            let member = server.group_state().participants.iter().any(|p| p.user_id == id(u));
            match server.group_key(id(u), key) {
                Ok(k) => {
                    assert!(member);
                    let f = k.fingerprint();
                    assert_eq!(fingerprint.get_or_insert_with(|| f.clone()), &f);
                    assert_eq!(calls[u].as_ref().and_then(|c| c.key_fingerprint()), Some(f));
                }
                Err(_) => assert!(!member),
            }
        }
        // Users who left for good do not come back under the same key in this model.
        for (u, c) in calls.iter_mut().enumerate() {
            if c.as_ref().is_some_and(|c| !c.is_member())
                && !server.group_state().participants.iter().any(|p| p.user_id == id(u))
            {
                *c = None;
            }
        }
    }
});
