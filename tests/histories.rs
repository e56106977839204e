//! Property tests over random chain histories: create, joins, leaves and rejoins with new keys,
//! removals, permission changes, re-keys, set-value blocks and closing the call, built with the
//! library's builders and ordered by an in-memory server. After every block: every member derives
//! the same key, non-members get none, removed members cannot read later epochs once the grace
//! period is over, builders refuse exactly what an independent permission model refuses, and
//! mutated blocks are rejected with the state unchanged (or, for bytes outside the canonical form,
//! accepted with the very same hash).
//!
//! `CONFCHAIN_CASES` raises the number of histories (default 24).

use confchain::limits::EPOCH_GRACE_MS;
use confchain::{
    build_zero_block, to_server_form, Block, Call, Chain, Change, ErrorKind, GroupParticipant, GroupState, Permissions,
    PlainBlock, PrivateKey,
};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

const USERS: usize = 6;

fn cases() -> u32 {
    std::env::var("CONFCHAIN_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(24)
}

#[derive(Clone, Debug)]
enum Op {
    Join { user: usize, flags: i32 },
    Rejoin { user: usize },
    Remove { signer: usize, target: usize },
    SetFlags { signer: usize, target: usize, flags: i32 },
    Rekey { signer: usize },
    SetValue { signer: usize },
    Close { signer: usize, external: i32 },
}

fn op() -> impl Strategy<Value = Op> {
    let u = 0..USERS;
    prop_oneof![
        4 => (u.clone(), prop_oneof![4 => 1i32..4, 1 => 0i32..8]).prop_map(|(user, flags)| Op::Join { user, flags }),
        1 => u.clone().prop_map(|user| Op::Rejoin { user }),
        2 => (u.clone(), u.clone()).prop_map(|(signer, target)| Op::Remove { signer, target }),
        2 => (u.clone(), u.clone(), 0i32..8).prop_map(|(signer, target, flags)| Op::SetFlags { signer, target, flags }),
        2 => u.clone().prop_map(|signer| Op::Rekey { signer }),
        1 => u.clone().prop_map(|signer| Op::SetValue { signer }),
        1 => (u, 0i32..4).prop_map(|(signer, external)| Op::Close { signer, external }),
    ]
}

struct User {
    id: i64,
    key: PrivateKey,
    call: Option<Call>,
}

struct World {
    rng: ChaCha20Rng,
    users: Vec<User>,
    server: Chain,
    blocks: Vec<Vec<u8>>,
    now: u64,
}

/// Independent permission model: may `signer` turn the current state into `new`?
fn model_allows(state: &GroupState, signer_key: &confchain::PublicKey, new: &GroupState) -> bool {
    let me = state.participants.iter().find(|p| &p.public_key == signer_key);
    let perms = me.map(|p| p.flags.bits() & 7).unwrap_or(state.external_permissions.bits() & 7);
    let (add, remove) = (perms & 1 != 0, perms & 2 != 0);
    let same = |a: &GroupParticipant, b: &GroupParticipant| a.user_id == b.user_id && a.public_key == b.public_key;
    if new.external_permissions.bits() & !state.external_permissions.bits() != 0 {
        return false;
    }
    if state.participants.iter().any(|o| !new.participants.iter().any(|n| same(o, n))) && !remove {
        return false;
    }
    let mut granted = 0;
    for n in &new.participants {
        match state.participants.iter().find(|o| same(o, n)) {
            None if !add => return false,
            None => granted |= n.flags.bits(),
            Some(o) if o.flags != n.flags => {
                if !(add && remove) {
                    return false;
                }
                granted |= n.flags.bits() & !o.flags.bits();
            }
            Some(_) => {}
        }
    }
    if granted & !perms != 0 {
        return false;
    }
    // The signer must end up a participant with add or remove permission (to set the new key).
    new.participants.iter().any(|p| &p.public_key == signer_key && p.flags.bits() & 3 != 0)
}

impl World {
    fn new(seed: u64) -> World {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let users =
            (0..USERS).map(|i| User { id: 100 + i as i64, key: PrivateKey::generate(&mut rng), call: None }).collect();
        World { rng, users, server: Chain::empty(), blocks: vec![], now: 0 }
    }

    fn member(&self, u: usize) -> Option<&GroupParticipant> {
        let user = &self.users[u];
        self.server
            .group_state()
            .participants
            .iter()
            .find(|p| p.user_id == user.id && p.public_key == user.key.public_key())
    }

    /// Builds `new` signed by `u`; checks the builder against the model; submits if built.
    fn change(&mut self, u: usize, new: GroupState) -> Result<(), TestCaseError> {
        let signer = self.users[u].key.clone();
        let allowed = model_allows(self.server.group_state(), &signer.public_key(), &new);
        let built = self.server.build_change_state(new, &signer, &mut self.rng);
        match built {
            Ok(block) => {
                prop_assert!(allowed, "builder accepted what the model refuses");
                self.submit(block)
            }
            Err(e) => {
                prop_assert!(!allowed, "builder refused what the model allows: {:?}", e);
                prop_assert!(
                    matches!(e.kind(), ErrorKind::NoPermissions | ErrorKind::InvalidGroupState),
                    "unexpected refusal {:?}",
                    e
                );
                Ok(())
            }
        }
    }

    fn submit(&mut self, plain: PlainBlock) -> Result<(), TestCaseError> {
        let server = plain.to_server_form();
        let before = self.server.clone();
        self.check_mutations(&before, &server)?;
        self.server.apply(&server).map_err(|e| TestCaseError::fail(format!("server refused a built block: {e}")))?;
        self.blocks.push(server.clone());
        self.now += 1_000;
        let (now, rng) = (self.now, &mut self.rng);
        for u in &mut self.users {
            if let Some(call) = u.call.as_mut() {
                call.apply_block(&server, now, rng).map_err(|e| TestCaseError::fail(format!("call refused: {e}")))?;
            }
        }
        Ok(())
    }

    /// Mutations of a block that the chain must reject without changing, or (outside the
    /// canonical form) accept with the same hash.
    fn check_mutations(&mut self, before: &Chain, server: &[u8]) -> Result<(), TestCaseError> {
        let mut expected = before.clone();
        expected.apply(server).map_err(|e| TestCaseError::fail(format!("{e}")))?;
        let mut variants: Vec<Vec<u8>> = Vec::new();
        for _ in 0..4 {
            let mut m = server.to_vec();
            let i = (self.rng.next_u32() as usize) % m.len();
            m[i] ^= 1 << (self.rng.next_u32() % 8);
            variants.push(m);
        }
        let block = Block::decode_server(server).unwrap();
        let reencode = |b: &Block| to_server_form(&b.encode()).unwrap();
        if block.changes.len() > 1 {
            let mut b = block.clone();
            b.changes.swap(0, 1);
            variants.push(reencode(&b));
            let mut b = block.clone();
            b.changes.pop();
            variants.push(reencode(&b));
        }
        let mut b = block.clone();
        b.changes.push(b.changes[0].clone());
        variants.push(reencode(&b));
        let mut b = block.clone();
        b.changes.insert(0, Change::Noop { nonce: [7; 32] });
        variants.push(reencode(&b));
        if let Some(old) = self.blocks.last() {
            variants.push(old.clone());
            let mut b = block.clone();
            b.state_proof = Block::decode_server(old).unwrap().state_proof;
            variants.push(reencode(&b));
        }
        for v in variants {
            let mut c = before.clone();
            match c.apply(&v) {
                Err(_) => {
                    prop_assert_eq!(c.height(), before.height(), "rejected mutation changed the height");
                    prop_assert_eq!(c.hash(), before.hash(), "rejected mutation changed the hash");
                    prop_assert_eq!(c.group_state(), before.group_state(), "rejected mutation changed the state");
                    prop_assert_eq!(c.shared_key(), before.shared_key(), "rejected mutation changed the key");
                }
                Ok(()) => {
                    prop_assert_eq!(c.hash(), expected.hash(), "a mutated block was accepted as a different block");
                }
            }
        }
        Ok(())
    }

    fn run(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let state = self.server.group_state().clone();
        match *op {
            Op::Join { user, flags } | Op::SetFlags { signer: user, target: _, flags }
                if matches!(op, Op::Join { .. }) =>
            {
                if self.member(user).is_some() {
                    return Ok(());
                }
                // A new call needs a new key: receivers' replay windows are keyed by the sender's
                // key, and a new call restarts its sequence numbers (SPEC.md §11).
                if self.users[user].call.take().is_some() {
                    self.users[user].key = PrivateKey::generate(&mut self.rng);
                }
                self.join(user, flags)?;
            }
            Op::Rejoin { user } => {
                if self.member(user).is_none() {
                    return Ok(());
                }
                self.users[user].key = PrivateKey::generate(&mut self.rng);
                self.users[user].call = None;
                self.join(user, 3)?;
            }
            Op::Remove { signer, target } => {
                let mut new = state.clone();
                new.participants.retain(|p| p.user_id != self.users[target].id);
                self.change(signer, new)?;
            }
            Op::SetFlags { signer, target, flags } => {
                let mut new = state.clone();
                if let Some(p) = new.participants.iter_mut().find(|p| p.user_id == self.users[target].id) {
                    p.flags = Permissions::from_bits_retain(flags);
                }
                self.change(signer, new)?;
            }
            Op::Rekey { signer } => self.change(signer, state)?,
            Op::Close { signer, external } => {
                let mut new = state.clone();
                new.external_permissions = Permissions::from_bits_retain(external);
                self.change(signer, new)?;
            }
            Op::SetValue { signer } => {
                let key = self.users[signer].key.clone();
                let may = self.member(signer).is_some_and(|p| p.flags.contains(Permissions::SET_VALUE));
                match self.server.build_set_value(b"k", b"v", [9; 32], &key) {
                    Ok(block) => {
                        prop_assert!(may, "set-value built without the permission");
                        self.submit(block)?;
                    }
                    Err(e) => prop_assert!(!may, "set-value refused: {:?}", e),
                }
            }
            Op::Join { .. } => unreachable!(),
        }
        self.check_keys()
    }

    fn join(&mut self, user: usize, flags: i32) -> Result<(), TestCaseError> {
        let u = &self.users[user];
        let flags = Permissions::from_bits_retain(flags);
        let me = GroupParticipant { user_id: u.id, public_key: u.key.public_key(), flags, version: 0 };
        let mut new = self.server.group_state().clone();
        new.participants.retain(|p| p.user_id != u.id);
        new.participants.push(me.clone());
        let key = u.key.clone();
        let allowed = model_allows(self.server.group_state(), &key.public_key(), &new);
        match self.server.build_self_add(me, &key, &mut self.rng) {
            Ok(block) => {
                prop_assert!(allowed, "self-add built against the model");
                self.submit(block)?;
                let last = self.blocks.last().unwrap().clone();
                let id = self.users[user].id;
                let call = Call::new(id, key, &last, &mut self.rng).map_err(|e| TestCaseError::fail(format!("{e}")))?;
                self.users[user].call = Some(call);
            }
            Err(e) => prop_assert!(!allowed, "self-add refused: {:?}", e),
        }
        Ok(())
    }

    fn check_keys(&mut self) -> Result<(), TestCaseError> {
        let mut fingerprint = None;
        for u in 0..USERS {
            let user = &self.users[u];
            let key = self.server.group_key(user.id, &user.key);
            match (self.member(u).is_some(), key) {
                (true, Ok(k)) => {
                    let call = user.call.as_ref().expect("members have calls");
                    prop_assert_eq!(
                        call.key_fingerprint(),
                        Some(k.fingerprint()),
                        "call and chain disagree for user {}",
                        u
                    );
                    match &fingerprint {
                        None => fingerprint = Some(k.fingerprint()),
                        Some(f) => prop_assert_eq!(f, &k.fingerprint(), "members disagree on the key"),
                    }
                }
                (false, Err(e)) => prop_assert!(matches!(e.kind(), ErrorKind::NotParticipant | ErrorKind::WrongUserId)),
                (member, key) => prop_assert!(false, "member {} got {:?}", member, key.map(|k| k.fingerprint())),
            }
        }
        // Anyone who holds a call but is no longer a member cannot read a packet of the current
        // epoch once the grace period is over.
        let Some(sender) = (0..USERS).find(|&u| self.member(u).is_some()) else { return Ok(()) };
        self.now += EPOCH_GRACE_MS + 1;
        let (now, rng) = (self.now, &mut self.rng);
        let sender_id = self.users[sender].id;
        let packet = self.users[sender].call.as_mut().unwrap().encrypt(3, b"after h", 0, now, rng).unwrap();
        for u in 0..USERS {
            if u == sender {
                continue;
            }
            let member = self.member(u).is_some();
            if let Some(call) = self.users[u].call.as_mut() {
                let r = call.decrypt(sender_id, &packet, now);
                if member {
                    prop_assert_eq!(r.as_deref().ok(), Some(&b"after h"[..]), "member {} cannot read: {:?}", u, r);
                } else {
                    prop_assert!(r.is_err(), "a removed member decrypted a later epoch");
                }
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn random_histories(seed in any::<u64>(), creator_flags in 1i32..8, ops in prop::collection::vec(op(), 1..28)) {
        let mut w = World::new(seed);
        let creator = &w.users[0];
        let flags = Permissions::from_bits_retain(creator_flags);
        let me = GroupParticipant { user_id: creator.id, public_key: creator.key.public_key(), flags, version: 0 };
        let key = creator.key.clone();
        let state = GroupState { participants: vec![me], external_permissions: Permissions::ADD_USERS | Permissions::REMOVE_USERS };
        let zero = build_zero_block(state, &key, &mut w.rng);
        if creator_flags & 3 == 0 {
            // A creator without add/remove cannot set the first key.
            prop_assert!(zero.is_err());
            return Ok(());
        }
        w.submit(zero.unwrap())?;
        let last = w.blocks.last().unwrap().clone();
        let call = Call::new(w.users[0].id, key, &last, &mut w.rng).unwrap();
        w.users[0].call = Some(call);
        w.check_keys()?;
        for op in &ops {
            w.run(op)?;
        }
    }
}
