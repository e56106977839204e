//! An in-memory model of what Telegram's server does with one conference call: it orders blocks,
//! keeps both sub-chains with their offsets, answers the requests a [`Session`](crate::session)
//! sends, and pushes updates to the members. Use it to test a client with no network: feed it each
//! request a session emits, give the session the response, and deliver the pushes.
//!
//! ```
//! use confchain::server::Server;
//! use confchain::session::{Session, SessionConfig, SessionState};
//! # use rand_core::SeedableRng;
//! # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
//! let mut server = Server::new();
//! let mut alice = Session::new(1, SessionConfig::default());
//! alice.create(true, 0, &mut rng)?;
//! while let Some((id, request)) = alice.poll_request() {
//!     let (response, pushes) = server.handle(1, &request);
//!     alice.handle_response(id, response, 0, &mut rng);
//!     for (to, update) in pushes {
//!         assert_eq!(to, 1); // alice is alone: only her own broadcasts are echoed to her
//!         alice.handle_update(update, 0, &mut rng);
//!     }
//! }
//! assert_eq!(alice.state(), SessionState::Joined);
//! assert_eq!(server.height(), 0);
//! assert!(alice.call().unwrap().emojis().is_some(), "a round of one completes");
//! # Ok::<(), confchain::Error>(())
//! ```
//!
//! What it models (SPEC.md §15 lists the sources; *inferred* marks what no code or document
//! shows): blocks come back in server form (constructor id + 1); a block is accepted only if it
//! extends the current tip and passes every chain rule, else `CONF_WRITE_CHAIN_INVALID`; a join
//! block may only add (or replace) the joiner (*inferred* beyond "only adds the new user"); offsets
//! of sub-chain 0 equal heights; `offset = -1` returns the last block; pages hold at most `limit`
//! entries; join and create responses carry both sub-chains (sub-chain 1 from the broadcasts of the
//! current height, *inferred*); every new block and broadcast is pushed to the joined members,
//! broadcasts to their sender too (*inferred*); encrypted messages are relayed to the other members;
//! non-members get only the last block, and members that were removed get `GROUPCALL_FORBIDDEN`
//! (*documented with low confidence*).

pub mod tl;

use std::collections::BTreeSet;

use crate::api::{Request, Response, SubChain, Update};
use crate::chain::Chain;
use crate::wire::{to_server_form, Block, Broadcast};

/// The server's model of one conference call (see the module docs).
#[derive(Debug, Default)]
pub struct Server {
    chain: Chain,
    blocks: Vec<Vec<u8>>,
    broadcasts: Vec<Vec<u8>>,
    members: BTreeSet<i64>,
    created: bool,
}

/// Updates to push: (recipient user id, update).
pub type Pushes = Vec<(i64, Update)>;

fn error(e: &str) -> (Response, Pushes) {
    (Response::Error(e.to_owned()), Vec::new())
}

fn len_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

impl Server {
    /// A call that does not exist yet (a create starts it), or, with [`Server::existing`], one
    /// created "create only" whose chain is empty.
    pub fn new() -> Self {
        Server::default()
    }

    /// A conference created without joining: empty chain, anyone with the link may join.
    pub fn existing() -> Self {
        Server { created: true, ..Server::default() }
    }

    /// Whether the conference exists (created, with or without a first block).
    pub fn is_created(&self) -> bool {
        self.created
    }

    /// Height of the last block (-1 when empty).
    pub fn height(&self) -> i32 {
        self.chain.height()
    }

    /// The chain state the server holds.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// Every block, server form (offset = index).
    pub fn blocks(&self) -> &[Vec<u8>] {
        &self.blocks
    }

    /// Every broadcast, server form.
    pub fn broadcasts(&self) -> &[Vec<u8>] {
        &self.broadcasts
    }

    /// Users joined to the call (the media session, not the chain).
    pub fn members(&self) -> impl Iterator<Item = i64> + '_ {
        self.members.iter().copied()
    }

    /// Handles one request from user `from`: the response for it, and the updates to push.
    pub fn handle(&mut self, from: i64, request: &Request) -> (Response, Pushes) {
        match request {
            Request::GetChainBlocks { sub_chain, offset, limit } => self.get(from, *sub_chain, *offset, *limit),
            Request::CreateConference { block, .. } => {
                if self.created {
                    return error("GROUPCALL_ALREADY_STARTED");
                }
                self.created = true;
                match block {
                    None => (Response::Ok(Vec::new()), Vec::new()),
                    Some(b) => self.join(from, b.as_bytes()),
                }
            }
            Request::Join { block, .. } => {
                if !self.created {
                    return error("GROUPCALL_INVALID");
                }
                self.join(from, block.as_bytes())
            }
            Request::DeleteParticipants { user_ids, block, .. } => {
                if !self.members.contains(&from) {
                    return error("GROUPCALL_FORBIDDEN");
                }
                match self.check_block(block.as_bytes()) {
                    Err(e) => error(e),
                    Ok((server, next)) => {
                        let update = self.commit(server, next);
                        for u in user_ids {
                            self.members.remove(u);
                        }
                        let pushes = self.push_to_members(Some(from), &update);
                        (Response::Ok(vec![update]), pushes)
                    }
                }
            }
            Request::SendBroadcast { block } => {
                if !self.members.contains(&from) {
                    return error("GROUPCALL_FORBIDDEN");
                }
                // The sender must be who it claims (*inferred*: the server knows who sends).
                let Ok(b) = Broadcast::decode(block) else { return error("BLOCK_INVALID") };
                if b.user_id != from {
                    return error("BLOCK_INVALID");
                }
                let Ok(server) = to_server_form(block) else { return error("BLOCK_INVALID") };
                self.broadcasts.push(server.clone());
                let update = Update::ChainBlocks {
                    sub_chain_id: SubChain::Broadcasts.id(),
                    blocks: vec![server],
                    next_offset: len_i32(self.broadcasts.len()),
                };
                // Everyone, the sender included, gets it by push; the response carries it too.
                let pushes = self.push_to_members(None, &update);
                (Response::Ok(vec![update]), pushes)
            }
            Request::SendEncryptedMessage { encrypted_message } => {
                if !self.members.contains(&from) {
                    return error("GROUPCALL_FORBIDDEN");
                }
                let update = Update::EncryptedMessage { from, encrypted_message: encrypted_message.clone() };
                (Response::Ok(Vec::new()), self.push_to_members(Some(from), &update))
            }
            Request::Leave => {
                self.members.remove(&from);
                (Response::Ok(Vec::new()), Vec::new())
            }
        }
    }

    fn get(&self, from: i64, sub: SubChain, offset: i32, limit: i32) -> (Response, Pushes) {
        if !self.created {
            return error("GROUPCALL_INVALID");
        }
        let list = match sub {
            SubChain::Blocks => &self.blocks,
            SubChain::Broadcasts => &self.broadcasts,
        };
        let total = list.len();
        let (start, end) = if offset < 0 {
            (total.saturating_sub(1), total)
        } else {
            if !self.members.contains(&from) {
                // Non-members get only the last block; a removed member is refused.
                return error("GROUPCALL_FORBIDDEN");
            }
            let start = usize::try_from(offset).unwrap_or(0).min(total);
            let n = usize::try_from(limit.max(0)).unwrap_or(0);
            (start, start.saturating_add(n).min(total))
        };
        let blocks = list.get(start..end).unwrap_or_default().to_vec();
        let update = Update::ChainBlocks { sub_chain_id: sub.id(), blocks, next_offset: len_i32(end) };
        (Response::Ok(vec![update]), Vec::new())
    }

    /// A join (or create-with-join) block: it must extend the tip and only add the joiner.
    fn join(&mut self, from: i64, plain: &[u8]) -> (Response, Pushes) {
        let (server, next) = match self.check_block(plain) {
            Ok(checked) => checked,
            Err(e) => return error(e),
        };
        // Only the joiner is added (or its older entry replaced): everyone else is unchanged.
        let signer = Block::decode(plain).ok().and_then(|b| b.signature_public_key);
        let others = |c: &Chain| {
            let mut v: Vec<_> = c.participants().iter().filter(|p| p.user_id != from).cloned().collect();
            v.sort_by_key(|p| p.user_id);
            v
        };
        let joiner = next.participants().iter().find(|p| p.user_id == from);
        if others(&self.chain) != others(&next) || joiner.map(|p| Some(p.public_key)) != Some(signer) {
            return error("BLOCK_INVALID");
        }
        let update = self.commit(server, next);
        self.members.insert(from);
        let pushes = self.push_to_members(Some(from), &update);
        // The join response: our block (sub-chain 0) and sub-chain 1 (no broadcast can be about
        // the block just added yet, so it is empty, with the next offset).
        let broadcasts = Update::ChainBlocks {
            sub_chain_id: SubChain::Broadcasts.id(),
            blocks: Vec::new(),
            next_offset: len_i32(self.broadcasts.len()),
        };
        (Response::Ok(vec![update, broadcasts]), pushes)
    }

    /// Whether a plain-form block extends the tip and is valid: its server form and the next state.
    fn check_block(&self, plain: &[u8]) -> Result<(Vec<u8>, Chain), &'static str> {
        let server = to_server_form(plain).map_err(|_| "BLOCK_INVALID")?;
        let mut next = self.chain.clone();
        match next.apply(&server) {
            Ok(()) => Ok((server, next)),
            Err(e) if matches!(e.code(), Some("INVALID_BLOCK__HEIGHT_MISMATCH" | "INVALID_BLOCK__HASH_MISMATCH")) => {
                Err("CONF_WRITE_CHAIN_INVALID")
            }
            Err(_) => Err("BLOCK_INVALID"),
        }
    }

    /// Appends a checked block; the update that announces it.
    fn commit(&mut self, server: Vec<u8>, next: Chain) -> Update {
        self.chain = next;
        self.blocks.push(server.clone());
        Update::ChainBlocks {
            sub_chain_id: SubChain::Blocks.id(),
            blocks: vec![server],
            next_offset: len_i32(self.blocks.len()),
        }
    }

    fn push_to_members(&self, except: Option<i64>, update: &Update) -> Pushes {
        self.members.iter().filter(|m| Some(**m) != except).map(|m| (*m, update.clone())).collect()
    }
}
