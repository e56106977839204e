//! The call packet codec: media frames and `sendGroupCallEncryptedMessage` payloads.
//!
//! ```text
//! packet = clear_prefix
//!        || le32(epoch_count | version << 8 | reserved << 16)      version 0, reserved 0, count <= 15
//!        || epoch_hash[0..count]                                   32 bytes each, ascending height
//!        || encrypt_header(one_time, body, epoch_key[i])           32 bytes each
//!        || body = encrypt_data(le32(channel) || le32(seqno) || payload, one_time,
//!                               extra = le32(0x40a6bee9) || head_and_hashes || clear_prefix)
//!                  || Ed25519(le32(0x1ce56c2d) || large_msg_id)
//!        || le32(len(clear_prefix))
//! ```
//!
//! These functions are stateless: [`crate::call::Call`] owns the epochs, sequence numbers and
//! replay windows and calls them. Encryption writes the whole packet into one buffer in place.

use rand_core::CryptoRngCore;

use crate::crypto::{self, PrivateKey, Secret};
use crate::error::{Error, ErrorKind, Result};
use crate::wire::id;

/// Highest channel id (channels are 0..=1023).
pub const MAX_CHANNEL: i32 = 1023;
/// Most epochs a packet may list (and a call keeps active).
pub const MAX_EPOCHS: usize = 15;
/// Largest clear prefix (exclusive bound, as in the reference).
pub const MAX_CLEAR_PREFIX: usize = 1 << 16;
/// Largest packet accepted for decryption.
pub const MAX_PACKET_SIZE: usize = 16 << 20;

/// Fails unless `channel` is in 0..=1023.
pub fn validate_channel(channel: i32) -> Result<()> {
    if !(0..=MAX_CHANNEL).contains(&channel) {
        return Err(Error::bare(ErrorKind::InvalidCallChannelId));
    }
    Ok(())
}

/// An epoch as the packet codec sees it: the block hash that names it and its group key.
pub struct EpochKey<'a> {
    /// Hash of the block that opened the epoch.
    pub hash: &'a [u8; 32],
    /// The epoch's group key.
    pub key: &'a Secret<32>,
}

/// Encrypts `data` (whose first `clear_prefix_len` bytes stay in clear) for every epoch in
/// `epochs`, appending the packet to `out`. Draws the 32-byte one-time secret, then the prefix
/// bytes of `encrypt_data`, from `rng`.
#[allow(clippy::too_many_arguments)]
pub fn encrypt_into(
    epochs: &[EpochKey<'_>],
    signer: &PrivateKey,
    channel: i32,
    seqno: u32,
    data: &[u8],
    clear_prefix_len: usize,
    rng: &mut impl CryptoRngCore,
    out: &mut Vec<u8>,
) -> Result<()> {
    check_clear_prefix(data.len(), clear_prefix_len)?;
    if epochs.is_empty() {
        return Err(Error::bare(ErrorKind::EncryptUnknownEpoch));
    }
    if epochs.len() > MAX_EPOCHS {
        return Err(Error::new(ErrorKind::LimitExceeded, "Too many active epochs"));
    }
    let one_time = Secret::<32>::random(rng);
    validate_channel(channel)?;
    let (prefix, payload) = data.split_at(clear_prefix_len);
    let count = epochs.len();
    let inner_len = 8 + payload.len();
    let pad = crypto::prefix_len(inner_len);
    let body_len = 16 + pad + inner_len + 64;
    let start = out.len();
    out.reserve(prefix.len() + 4 + 64 * count + body_len + 4);

    out.extend_from_slice(prefix);
    let head_at = out.len();
    out.extend_from_slice(&(count as u32).to_le_bytes());
    for e in epochs {
        out.extend_from_slice(e.hash);
    }
    let head_end = out.len();
    out.resize(head_end + 32 * count, 0);
    let body_at = out.len();
    out.resize(body_at + 16 + pad, 0);
    rng.fill_bytes(&mut out[body_at + 16..body_at + 16 + pad]);
    out.extend_from_slice(&channel.to_le_bytes());
    out.extend_from_slice(&seqno.to_le_bytes());
    out.extend_from_slice(payload);

    // extra = magic || head_and_hashes || clear_prefix
    let mut extra = Vec::with_capacity(4 + (head_end - head_at) + prefix.len());
    extra.extend_from_slice(&id::CALL_PACKET.to_le_bytes());
    extra.extend_from_slice(&out[head_at..head_end]);
    extra.extend_from_slice(prefix);
    let (before, sealed) = out.split_at_mut(body_at);
    let large_msg_id = crypto::seal_in_place(sealed, pad, one_time.expose(), &extra);
    let mut to_sign = [0u8; 36];
    to_sign[..4].copy_from_slice(&id::CALL_PACKET_LARGE_MSG_ID.to_le_bytes());
    to_sign[4..].copy_from_slice(&large_msg_id);
    let signature = signer.sign(&to_sign);
    for (i, e) in epochs.iter().enumerate() {
        let header = crypto::encrypt_header(one_time.expose(), sealed, e.key.expose())?;
        before[head_end + 32 * i..head_end + 32 * (i + 1)].copy_from_slice(&header);
    }
    out.extend_from_slice(&signature);
    out.extend_from_slice(&(clear_prefix_len as u32).to_le_bytes());
    debug_assert_eq!(out.len() - start, prefix.len() + 4 + 64 * count + body_len + 4);
    Ok(())
}

/// Fails unless the clear prefix fits in the data and below [`MAX_CLEAR_PREFIX`].
pub fn check_clear_prefix(data_len: usize, clear_prefix_len: usize) -> Result<()> {
    if clear_prefix_len > data_len || clear_prefix_len >= MAX_CLEAR_PREFIX {
        return Err(Error::new(ErrorKind::InvalidInput, "Unencrypted header length is too large"));
    }
    Ok(())
}

/// A packet split into its parts (nothing decrypted yet).
#[derive(Debug, Clone, Copy)]
pub struct ParsedPacket<'a> {
    /// The clear prefix.
    pub clear_prefix: &'a [u8],
    /// `le32(head) || epoch hashes`: part of the MAC's extra data.
    pub head_and_hashes: &'a [u8],
    /// Number of epochs listed.
    pub epoch_count: usize,
    /// The encrypted headers, 32 bytes each.
    pub headers: &'a [u8],
    /// `encrypt_data` output followed by the 64-byte signature.
    pub body: &'a [u8],
}

impl<'a> ParsedPacket<'a> {
    /// The hash of the `i`-th epoch listed.
    pub fn epoch_hash(&self, i: usize) -> Option<&'a [u8; 32]> {
        self.head_and_hashes.get(4 + 32 * i..4 + 32 * (i + 1))?.try_into().ok()
    }

    /// The `i`-th encrypted header.
    pub fn header(&self, i: usize) -> Option<&'a [u8]> {
        self.headers.get(32 * i..32 * (i + 1))
    }
}

fn invalid(m: &str) -> Error {
    Error::new(ErrorKind::InvalidPacket, m)
}

/// Splits a packet, with the reference's checks and messages (size, clear prefix, version,
/// reserved bits, epoch count, truncation).
pub fn parse(packet: &[u8]) -> Result<ParsedPacket<'_>> {
    let (clear_prefix, encrypted) = split_trailer(packet)?;
    parse_encrypted(clear_prefix, encrypted)
}

/// Reads the trailing clear-prefix length: returns `(clear_prefix, encrypted part)`.
pub fn split_trailer(packet: &[u8]) -> Result<(&[u8], &[u8])> {
    if packet.len() > MAX_PACKET_SIZE {
        return Err(Error::new(ErrorKind::LimitExceeded, "packet too large"));
    }
    let (rest, trailer) = packet.split_at(packet.len().checked_sub(4).ok_or_else(|| invalid("Packet too small"))?);
    let prefix_len = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]) as usize;
    if prefix_len > rest.len() || prefix_len >= MAX_CLEAR_PREFIX {
        return Err(invalid("Unencrypted prefix size is too large"));
    }
    Ok(rest.split_at(prefix_len))
}

/// Parses the encrypted part: head, epoch hashes, headers, body.
pub fn parse_encrypted<'a>(clear_prefix: &'a [u8], encrypted: &'a [u8]) -> Result<ParsedPacket<'a>> {
    let mut r = crate::tl::Reader::new(encrypted);
    let head = r.u32()?;
    let count = (head & 0xff) as usize;
    if (head >> 8) & 0xff != 0 {
        return Err(invalid("Unsupported protocol version"));
    }
    if head >> 16 != 0 {
        return Err(invalid("Reserved part of head is not zero"));
    }
    if count > MAX_EPOCHS {
        return Err(invalid("Too many active epochs"));
    }
    r.take(32 * count)?;
    let head_end = r.position();
    r.take(32 * count)?;
    let headers_end = r.position();
    Ok(ParsedPacket {
        clear_prefix,
        head_and_hashes: &encrypted[..head_end],
        epoch_count: count,
        headers: &encrypted[head_end..headers_end],
        body: &encrypted[headers_end..],
    })
}

/// The verified contents of a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The channel the sender wrote.
    pub channel: i32,
    /// The sender's sequence number on that channel.
    pub seqno: u32,
}

/// Decrypts and authenticates the body of a parsed packet with a recovered one-time secret and the
/// claimed sender's key: MAC first, then the signature. Appends `clear_prefix || payload` to `out`
/// (on error `out` is left as it was).
pub fn open_into(
    p: &ParsedPacket<'_>,
    one_time: &Secret<32>,
    sender: &ed25519_dalek::VerifyingKey,
    out: &mut Vec<u8>,
) -> Result<Opened> {
    let split = p.body.len().checked_sub(64).ok_or_else(|| invalid("Not enough encryption data"))?;
    let (sealed, signature) = p.body.split_at(split);
    let signature: &[u8; 64] = signature.try_into().map_err(|_| invalid("Not enough encryption data"))?;
    let mut extra = Vec::with_capacity(4 + p.head_and_hashes.len() + p.clear_prefix.len());
    extra.extend_from_slice(&id::CALL_PACKET.to_le_bytes());
    extra.extend_from_slice(p.head_and_hashes);
    extra.extend_from_slice(p.clear_prefix);

    let start = out.len();
    out.reserve(p.clear_prefix.len() + sealed.len());
    out.extend_from_slice(p.clear_prefix);
    let body_at = out.len();
    out.extend_from_slice(sealed);
    let result = (|| {
        let (range, large_msg_id) = crypto::open_in_place(&mut out[body_at..], one_time.expose(), &extra)?;
        let mut to_verify = [0u8; 36];
        to_verify[..4].copy_from_slice(&id::CALL_PACKET_LARGE_MSG_ID.to_le_bytes());
        to_verify[4..].copy_from_slice(&large_msg_id);
        crypto::verify_with(sender, &to_verify, signature)?;
        let plain = &out[body_at + range.start..body_at + range.end];
        let mut r = crate::tl::Reader::new(plain);
        let channel = r.i32()?;
        validate_channel(channel)?;
        let seqno = r.u32()?;
        Ok((Opened { channel, seqno }, body_at + range.start + 8..body_at + range.end))
    })();
    match result {
        Ok((opened, payload)) => {
            out.copy_within(payload.clone(), body_at);
            out.truncate(body_at + payload.len());
            Ok(opened)
        }
        Err(e) => {
            out.truncate(start);
            Err(e)
        }
    }
}
