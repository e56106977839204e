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
//! These functions are stateless: [`crate::Call`] owns the epochs, sequence numbers and replay
//! windows and calls them. Encryption writes the whole packet into one buffer in place;
//! `decrypt_into` (crate-internal) runs the whole receive path given a way to look epochs up.

use rand_core::CryptoRngCore;

use zeroize::Zeroize;

use crate::crypto::{self, PreparedKey, PrivateKey, PublicKey, Secret};
use crate::error::{Error, ErrorKind, Result};
use crate::limits::{MAX_CHANNEL, MAX_CLEAR_PREFIX, MAX_EPOCHS};
use crate::wire::{id, GroupState};

/// Fails unless `channel` is in 0..=1023.
pub fn validate_channel(channel: i32) -> Result<()> {
    if !(0..=MAX_CHANNEL).contains(&channel) {
        return Err(Error::bare(ErrorKind::InvalidCallChannelId));
    }
    Ok(())
}

/// An epoch as the packet codec sees it: the block hash that names it and its header key (the
/// only part of the group key packets use; zeroized on drop).
#[derive(Clone, Debug)]
pub struct EpochKey {
    /// Hash of the block that opened the epoch.
    pub hash: [u8; 32],
    header_key: crypto::HeaderKey,
}

impl EpochKey {
    /// Prepares an epoch key.
    pub fn new(hash: [u8; 32], group_key: &Secret<32>) -> Self {
        EpochKey { hash, header_key: crypto::HeaderKey::new(group_key.expose()) }
    }

    fn decrypt_header(&self, header: &[u8], body: &[u8]) -> Result<Secret<32>> {
        self.header_key.decrypt(header, body)
    }
}

/// What a packet carries, written straight into the packet: a clear prefix and a payload.
///
/// Plain bytes (`(data, clear_prefix_len)`) are one; the frame layer's plaintexts
/// ([`crate::frame`]) are others, which widen H.264 start codes or append the audio trailer as
/// they are written, so no frame is copied to a scratch buffer first.
///
/// Nothing trusts the two lengths to agree: the send path checks `clear_prefix_len() <=
/// total_len()` (and the prefix limit) with [`check_clear_prefix`] before anything is
/// written.
pub trait Plaintext {
    /// Bytes of the clear prefix.
    fn clear_prefix_len(&self) -> usize;
    /// Bytes of the whole plaintext: the clear prefix and the payload.
    fn total_len(&self) -> usize;
    /// Bytes of the payload (encrypted).
    fn payload_len(&self) -> usize {
        self.total_len().saturating_sub(self.clear_prefix_len())
    }
    /// Appends the clear prefix (exactly [`Plaintext::clear_prefix_len`] bytes).
    fn write_clear_prefix(&self, out: &mut Vec<u8>);
    /// Appends the payload (exactly [`Plaintext::payload_len`] bytes).
    fn write_payload(&self, out: &mut Vec<u8>);
}

/// Bytes whose first `clear_prefix_len` stay in clear.
impl Plaintext for (&[u8], usize) {
    fn clear_prefix_len(&self) -> usize {
        self.1
    }
    fn total_len(&self) -> usize {
        self.0.len()
    }
    fn write_clear_prefix(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.get(..self.1).unwrap_or_default());
    }
    fn write_payload(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self.0.get(self.1..).unwrap_or_default());
    }
}

/// Encrypts `data` (whose first `clear_prefix_len` bytes stay in clear) for every epoch in
/// `epochs`, appending the packet to `out`. Draws the 32-byte one-time secret, then the prefix
/// bytes of `encrypt_data`, from `rng`.
#[allow(clippy::too_many_arguments)]
// Without `hazmat` nothing in the library calls this: calls encrypt through `Call` (conformance tests and benchmarks use it directly).
#[cfg(feature = "hazmat")]
pub fn encrypt_into<'a>(
    epochs: impl ExactSizeIterator<Item = &'a EpochKey> + Clone,
    signer: &PrivateKey,
    channel: i32,
    seqno: u32,
    data: &[u8],
    clear_prefix_len: usize,
    rng: &mut impl CryptoRngCore,
    out: &mut Vec<u8>,
) -> Result<()> {
    encrypt_plaintext_into(epochs, signer, channel, seqno, &(data, clear_prefix_len), rng, out)
}

/// [`encrypt_into`] for any [`Plaintext`]: the packet is written into `out` in one pass, the
/// plaintext directly into its place. On error `out` is left as it was.
#[allow(clippy::arithmetic_side_effects)] // lengths of slices (<= isize::MAX), count <= 15
pub fn encrypt_plaintext_into<'a>(
    epochs: impl ExactSizeIterator<Item = &'a EpochKey> + Clone,
    signer: &PrivateKey,
    channel: i32,
    seqno: u32,
    plaintext: &impl Plaintext,
    rng: &mut impl CryptoRngCore,
    out: &mut Vec<u8>,
) -> Result<()> {
    let prefix_len = plaintext.clear_prefix_len();
    check_clear_prefix(plaintext.total_len(), prefix_len)?;
    let payload_len = plaintext.payload_len();
    if epochs.len() == 0 {
        return Err(Error::bare(ErrorKind::EncryptUnknownEpoch));
    }
    if epochs.len() > MAX_EPOCHS {
        return Err(Error::new(ErrorKind::LimitExceeded, "Too many active epochs"));
    }
    let one_time = Secret::<32>::random(rng);
    validate_channel(channel)?;
    let count = epochs.len();
    let pad = crypto::prefix_len(8 + payload_len);

    // Layout, written in one pass into `out`:
    //   clear_prefix | head | hashes | headers (filled last) | msg_id | pad | channel | seqno | payload | sig | trailer
    let start = out.len();
    out.reserve(prefix_len + 4 + 64 * count + 16 + pad + 8 + payload_len + 64 + 4);
    plaintext.write_clear_prefix(out);
    let head_at = out.len();
    out.extend_from_slice(&(count as u32).to_le_bytes());
    for e in epochs.clone() {
        out.extend_from_slice(&e.hash);
    }
    let headers_at = out.len();
    out.resize(headers_at + 32 * count + 16 + pad, 0);
    let body_at = headers_at + 32 * count;
    if let Some(random) = out.get_mut(body_at + 16..) {
        rng.fill_bytes(random);
    }
    out.extend_from_slice(&channel.to_le_bytes());
    out.extend_from_slice(&seqno.to_le_bytes());
    plaintext.write_payload(out);

    // extra = magic || head_and_hashes || clear_prefix, read in place (no copy, no allocation).
    let (front, sealed) = out.split_at_mut(body_at);
    let (prefix_and_head, headers) = front.split_at_mut(headers_at);
    let (before, head) = prefix_and_head.split_at(head_at);
    let clear = before.get(start..).unwrap_or_default();
    let magic = id::CALL_PACKET.to_le_bytes();
    let sealed_result = crypto::seal_in_place(sealed, pad, one_time.expose(), &[&magic, head, clear]).and_then(|id| {
        for (slot, e) in headers.chunks_exact_mut(32).zip(epochs) {
            slot.copy_from_slice(&e.header_key.encrypt(one_time.expose(), sealed)?);
        }
        Ok(id)
    });
    let large_msg_id = match sealed_result {
        Ok(id) => id,
        Err(e) => {
            // Never leave a half-built packet (with plaintext in it) behind.
            discard_from(out, start);
            return Err(e);
        }
    };
    out.extend_from_slice(&signer.sign(&signed_message(&large_msg_id)));
    out.extend_from_slice(&(prefix_len as u32).to_le_bytes());
    Ok(())
}

/// What a packet's signature covers: `le32(0x1ce56c2d) || large_msg_id`.
fn signed_message(large_msg_id: &[u8; 32]) -> [u8; 36] {
    let mut m = [0u8; 36];
    let (magic, id) = m.split_at_mut(4);
    magic.copy_from_slice(&id::CALL_PACKET_LARGE_MSG_ID.to_le_bytes());
    id.copy_from_slice(large_msg_id);
    m
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
        self.head_and_hashes.get(4..)?.chunks_exact(32).nth(i)?.try_into().ok()
    }

    /// The `i`-th encrypted header.
    pub fn header(&self, i: usize) -> Option<&'a [u8]> {
        self.headers.chunks_exact(32).nth(i)
    }
}

fn invalid(m: &str) -> Error {
    Error::new(ErrorKind::InvalidPacket, m)
}

/// Splits a packet, with the reference's checks and messages (size, clear prefix, version,
/// reserved bits, epoch count, truncation).
// Without `hazmat` nothing in the library calls this: calls split packets themselves (the fuzz targets use it).
#[cfg(feature = "hazmat")]
pub fn parse(packet: &[u8]) -> Result<ParsedPacket<'_>> {
    let (clear_prefix, encrypted) = split_trailer(packet)?;
    parse_encrypted(clear_prefix, encrypted)
}

/// Reads the trailing clear-prefix length: returns `(clear_prefix, encrypted part)`.
pub fn split_trailer(packet: &[u8]) -> Result<(&[u8], &[u8])> {
    let (rest, trailer) = packet.split_last_chunk::<4>().ok_or_else(|| invalid("Packet too small"))?;
    let prefix_len = u32::from_le_bytes(*trailer) as usize;
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
    let table = count.saturating_mul(32); // count <= 15
    r.take(table)?;
    let (head_and_hashes, rest) = encrypted.split_at(r.position());
    let headers = r.take(table)?;
    let body = rest.get(headers.len()..).unwrap_or_default();
    Ok(ParsedPacket { clear_prefix, head_and_hashes, epoch_count: count, headers, body })
}

/// The verified contents of a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    /// The sender's key (in the epoch the packet was opened with).
    pub sender: PublicKey,
    /// The channel the sender wrote.
    pub channel: i32,
    /// The sender's sequence number on that channel.
    pub seqno: u32,
}

/// Decrypts and authenticates the body of a parsed packet with a recovered one-time secret and the
/// claimed sender's key: MAC first, then the signature. Appends `clear_prefix || payload` to `out`
/// (on error `out` is left as it was).
#[allow(clippy::arithmetic_side_effects)] // offsets inside `out`, bounded by its length
fn open_into(
    p: &ParsedPacket<'_>,
    one_time: &Secret<32>,
    sender: (PublicKey, &PreparedKey),
    out: &mut Vec<u8>,
) -> Result<Opened> {
    let (sealed, signature) = p.body.split_last_chunk::<64>().ok_or_else(|| invalid("Not enough encryption data"))?;
    let magic = id::CALL_PACKET.to_le_bytes();
    let extra: [&[u8]; 3] = [&magic, p.head_and_hashes, p.clear_prefix];

    let start = out.len();
    out.reserve(p.clear_prefix.len() + sealed.len());
    out.extend_from_slice(p.clear_prefix);
    let body_at = out.len();
    out.extend_from_slice(sealed);
    match open_body(out.get_mut(body_at..).unwrap_or_default(), one_time, &extra, sender, signature) {
        Ok((opened, payload)) => {
            // Move the payload right after the clear prefix.
            let payload = body_at + payload.start..body_at + payload.end;
            let len = payload.len();
            out.copy_within(payload, body_at);
            out.truncate(body_at + len);
            Ok(opened)
        }
        Err(e) => {
            // Nothing unauthenticated is left behind, not even in the buffer's spare capacity.
            discard_from(out, start);
            Err(e)
        }
    }
}

/// Decrypts `sealed` in place, checks MAC and signature, reads channel and seqno; returns them and
/// the payload's range in `sealed`.
fn open_body(
    sealed: &mut [u8],
    one_time: &Secret<32>,
    extra: &[&[u8]],
    (sender, verifying): (PublicKey, &PreparedKey),
    signature: &[u8; 64],
) -> Result<(Opened, std::ops::Range<usize>)> {
    let (range, large_msg_id) = crypto::open_in_place(sealed, one_time.expose(), extra)?;
    verifying.verify(&signed_message(&large_msg_id), signature)?;
    let mut r = crate::tl::Reader::new(sealed.get(range.clone()).unwrap_or_default());
    let channel = r.i32()?;
    validate_channel(channel)?;
    let seqno = r.u32()?;
    Ok((Opened { sender, channel, seqno }, range.start.saturating_add(8)..range.end))
}

/// Wipes and drops `out[start..]` (decrypted bytes that must not be handed out).
pub(crate) fn discard_from(out: &mut Vec<u8>, start: usize) {
    if let Some(tail) = out.get_mut(start..) {
        tail.zeroize();
    }
    out.truncate(start);
}

/// An epoch as the receive path needs it: its key and its group state (who may send in it).
pub(crate) type EpochView<'e> = (&'e EpochKey, &'e GroupState);

/// The whole receive path of a packet from `sender_user_id`, in the reference's order: size and
/// prefix checks, "encrypted by us", head checks; then for the first listed epoch we hold
/// (`lookup` by block hash): the header, the sender in that epoch's state, MAC, signature,
/// channel. Appends `clear_prefix || payload` to `out` (nothing on error). The replay check is
/// the caller's, with the returned sender key, channel and seqno.
pub(crate) fn decrypt_into<'e>(
    packet: &[u8],
    me: i64,
    sender_user_id: i64,
    lookup: impl Fn(&[u8; 32]) -> Option<EpochView<'e>>,
    mut verifying_key: impl FnMut(&PublicKey) -> Result<std::sync::Arc<PreparedKey>>,
    out: &mut Vec<u8>,
) -> Result<Opened> {
    let (clear_prefix, encrypted) = split_trailer(packet)?;
    if sender_user_id == me {
        return Err(Error::new(ErrorKind::OwnPacket, "Packet is encrypted by us"));
    }
    let p = parse_encrypted(clear_prefix, encrypted)?;
    for i in 0..p.epoch_count {
        let (Some(hash), Some(header)) = (p.epoch_hash(i), p.header(i)) else {
            break;
        };
        let Some((key, state)) = lookup(hash) else {
            continue;
        };
        let one_time = key.decrypt_header(header, p.body)?;
        let sender = state
            .participant(sender_user_id)
            .map(|p| p.public_key)
            .ok_or_else(|| Error::new(ErrorKind::ParticipantNotFound, "Participant not found"))?;
        let verifying = verifying_key(&sender)?;
        return open_into(&p, &one_time, (sender, &verifying), out);
    }
    Err(Error::bare(ErrorKind::DecryptUnknownEpoch))
}
