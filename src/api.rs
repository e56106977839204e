//! The API messages of a conference call: the requests a client sends (`phone.*` methods), the
//! updates the server pushes, and the outcome of a request. Both the client ([`crate::session`])
//! and the server model ([`crate::server`]) speak them; neither owns them.

use crate::crypto::PublicKey;
use crate::wire::PlainBlock;

/// Identifies a request until its response comes back.
pub type RequestId = u64;

/// The two sub-chains of `getGroupCallChainBlocks` / `updateGroupCallChainBlocks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SubChain {
    /// Sub-chain 0: participant blocks.
    Blocks = 0,
    /// Sub-chain 1: emoji-verification broadcasts.
    Broadcasts = 1,
}

impl SubChain {
    /// The `sub_chain_id` on the wire.
    pub fn id(self) -> i32 {
        self as i32
    }

    /// The sub-chain with this `sub_chain_id`, if any.
    pub fn from_id(id: i32) -> Option<SubChain> {
        match id {
            0 => Some(SubChain::Blocks),
            1 => Some(SubChain::Broadcasts),
            _ => None,
        }
    }
}

/// A request for the application to send. Each variant is one TL method of layer 230; the
/// `call: InputGroupCall` argument is the application's (the session serves one call). With
/// grammers-tl-types, for example:
///
/// | variant | TL method (grammers-tl-types) |
/// | --- | --- |
/// | `GetChainBlocks` | `functions::phone::GetGroupCallChainBlocks { call, sub_chain_id, offset, limit }` |
/// | `CreateConference` | `functions::phone::CreateConferenceCall { join: block.is_some(), public_key, block, random_id, params, .. }` |
/// | `Join` | `functions::phone::JoinGroupCall { call, join_as: inputPeerSelf, public_key, block, params, .. }` |
/// | `DeleteParticipants` | `functions::phone::DeleteConferenceCallParticipants { only_left: !kick, kick, call, ids, block }` |
/// | `SendBroadcast` | `functions::phone::SendConferenceCallBroadcast { call, block }` |
/// | `SendEncryptedMessage` | `functions::phone::SendGroupCallEncryptedMessage { call, encrypted_message }` |
/// | `Leave` | `functions::phone::LeaveGroupCall { call, source }` |
///
/// `int256` arguments are the 32 bytes of the public key; `bytes` arguments are the bytes given.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Request {
    /// `phone.getGroupCallChainBlocks(call, sub_chain_id, offset, limit)`; `offset = -1, limit = 1`
    /// asks for the last block.
    GetChainBlocks {
        /// Which sub-chain.
        sub_chain: SubChain,
        /// First offset wanted, or -1 for the last one.
        offset: i32,
        /// Most blocks wanted.
        limit: i32,
    },
    /// `phone.createConferenceCall(join = block.is_some(), public_key, block, ...)`: a new
    /// conference, joined at once with our zero block, or "create only" (the chain stays empty).
    CreateConference {
        /// Our public key (with `block`).
        public_key: Option<PublicKey>,
        /// The zero block (plain form), when joining on create.
        block: Option<PlainBlock>,
    },
    /// `phone.joinGroupCall(call, public_key, block, ...)`.
    Join {
        /// Our new public key.
        public_key: PublicKey,
        /// The zero block (empty chain) or our self-add block, plain form.
        block: PlainBlock,
    },
    /// `phone.deleteConferenceCallParticipants(only_left = !kick, kick, call, ids, block)`.
    DeleteParticipants {
        /// The users to remove.
        user_ids: Vec<i64>,
        /// The block removing them, plain form.
        block: PlainBlock,
        /// A ban (`kick`) rather than pruning users who left (`only_left`).
        kick: bool,
    },
    /// `phone.sendConferenceCallBroadcast(call, block)`: an emoji-verification broadcast, plain form.
    SendBroadcast {
        /// The broadcast.
        block: Vec<u8>,
    },
    /// `phone.sendGroupCallEncryptedMessage(call, encrypted_message)`.
    SendEncryptedMessage {
        /// The encrypted `groupCallMessage` JSON.
        encrypted_message: Vec<u8>,
    },
    /// `phone.leaveGroupCall(call, source)`.
    Leave,
}

/// A pushed update, or one carried by a response's `Updates`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Update {
    /// `updateGroupCallChainBlocks(call, sub_chain_id, blocks, next_offset)`: `blocks[i]` has offset
    /// `next_offset - len(blocks) + i`; server form.
    ChainBlocks {
        /// 0 (blocks) or 1 (broadcasts); anything else is ignored.
        sub_chain_id: i32,
        /// The blocks or broadcasts, server form.
        blocks: Vec<Vec<u8>>,
        /// The offset after the last one.
        next_offset: i32,
    },
    /// `updateGroupCallEncryptedMessage(call, from_id, encrypted_message)`.
    EncryptedMessage {
        /// The sender's user id (`from_id`).
        from: i64,
        /// The encrypted message.
        encrypted_message: Vec<u8>,
    },
}

/// The outcome of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Response {
    /// Success, with the updates the result carried (`Updates` results), or none (`Bool`).
    Ok(Vec<Update>),
    /// The API error string (`CONF_WRITE_CHAIN_INVALID`, `GROUPCALL_FORBIDDEN`, `FLOOD_WAIT_3`, ...),
    /// or a transport failure the application names (`TIMEOUT`, `NETWORK`).
    Error(String),
}
