//! The standard performance workloads, shared by the criterion benches (`benches/confchain.rs`)
//! and `confchain bench`. Each workload is set up once (untimed) and then run op by op.
#![allow(dead_code, missing_docs)]

use confchain::crypto;
use confchain::frame::{self, AudioLevel, Codec};
use confchain::{
    build_zero_block, Call, Chain, GroupParticipant, GroupState, Permissions, PlainBlock, PrivateKey, PublicKey,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// Payload sizes of the packet workloads.
pub const PACKET_SIZES: [usize; 4] = [16, 1024, 16384, 65536];

/// SHA-512 compressions every packet needs whatever its size, in encryption and in decryption:
/// `kdf` of the one-time secret and the AES key of the body (HMAC-SHA512 under a fresh key, four
/// each) and the header under the epoch's prepared key (two). They are part of a packet's floor.
pub const PACKET_FIXED_SHA512_BLOCKS: f64 = 10.0;

/// SHA-512 compressions of reading our key from a key-rotation block, besides the shared secret:
/// the header's `kdf` and cipher key, then the key's `kdf` and cipher key (HMAC-SHA512 under fresh
/// keys, four each).
pub const BLOCK_APPLY_FIXED_SHA512_BLOCKS: f64 = 16.0;

/// Packets decrypted per untimed batch of [`PacketDecrypt::refill`]: at most 256 KiB of them, so a
/// packet is decrypted while it is still in the cache, as a client decrypts what it just received
/// (a 64-packet batch of 64 KiB ones, 4 MiB, measured 10-13% slower here: the packets came from
/// memory, not from the cache).
pub fn decrypt_batch(size: usize) -> usize {
    (262_144 / size.max(1)).clamp(4, 512)
}
/// A workload whose inputs are made in untimed batches: a packet decrypts only once, so every
/// op needs a fresh one.
pub trait Batched {
    /// Makes `n` fresh inputs (untimed).
    fn refill(&mut self, n: usize);
    /// Runs one op on the next input (after [`Batched::refill`]).
    fn run(&mut self);
}

/// Time `iters` ops take, inputs made in untimed batches of at most `batch` (criterion's
/// `iter_custom`).
pub fn time_iters(w: &mut impl Batched, iters: u64, batch: usize) -> std::time::Duration {
    let (mut total, mut left) = (std::time::Duration::ZERO, iters);
    while left > 0 {
        let n = left.min(batch.max(1) as u64);
        w.refill(n as usize);
        let t = std::time::Instant::now();
        for _ in 0..n {
            w.run();
        }
        total += t.elapsed();
        left -= n;
    }
    total
}

/// Runs batches until `budget` of timed work (at least 3 ops; at most 20 budgets of wall time)
/// and returns (time spent in ops, ops).
pub fn time_for(w: &mut impl Batched, budget: std::time::Duration, batch: usize) -> (std::time::Duration, u64) {
    let start = std::time::Instant::now();
    let (mut busy, mut n) = (std::time::Duration::ZERO, 0u64);
    while n < 3 || busy < budget {
        busy += time_iters(w, batch as u64, batch);
        n += batch.max(1) as u64;
        if start.elapsed() > budget * 20 {
            break;
        }
    }
    (busy, n)
}

/// Group sizes of the block workloads.
pub const GROUP_SIZES: [usize; 3] = [10, 100, 1000];

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

const ADD_REMOVE: Permissions = Permissions::from_bits_retain(3);

/// Two members (1 and 2) of a call in one epoch.
pub fn two_member_calls(rng: &mut ChaCha20Rng) -> (Call, Call) {
    let a = PrivateKey::generate(rng);
    let b = PrivateKey::generate(rng);
    let state = GroupState {
        participants: vec![
            GroupParticipant { user_id: 1, public_key: a.public_key(), flags: ADD_REMOVE, version: 0 },
            GroupParticipant { user_id: 2, public_key: b.public_key(), flags: ADD_REMOVE, version: 0 },
        ],
        external_permissions: Permissions::NONE,
    };
    let zero = build_zero_block(state, &a, rng).expect("zero block").to_server_form();
    let alice = Call::new(1, a, &zero, rng).expect("call");
    let bob = Call::new(2, b, &zero, rng).expect("call");
    (alice, bob)
}

/// `packet_encrypt/{size}`: member 1 encrypts payloads of `size` bytes on channel 0.
pub struct PacketEncrypt {
    call: Call,
    rng: ChaCha20Rng,
    payload: Vec<u8>,
    out: Vec<u8>,
}

impl PacketEncrypt {
    pub fn new(size: usize) -> Self {
        let mut rng = rng(1);
        let (call, _) = two_member_calls(&mut rng);
        let mut payload = vec![0u8; size];
        rng.fill_bytes(&mut payload);
        PacketEncrypt { call, rng, payload, out: Vec::with_capacity(size + 512) }
    }

    pub fn run(&mut self) {
        self.out.clear();
        self.call.encrypt_into(0, &self.payload, 0, 0, &mut self.rng, &mut self.out).expect("encrypt");
    }
}

/// `packet_decrypt/{size}`: member 2 decrypts fresh packets (new seqnos) of `size` bytes.
/// Packets are made in batches outside the timed part (see [`PacketDecrypt::refill`]).
pub struct PacketDecrypt {
    sender: Call,
    receiver: Call,
    rng: ChaCha20Rng,
    payload: Vec<u8>,
    packets: Vec<Vec<u8>>,
    out: Vec<u8>,
}

impl PacketDecrypt {
    pub fn new(size: usize) -> Self {
        let mut rng = rng(2);
        let (sender, receiver) = two_member_calls(&mut rng);
        let mut payload = vec![0u8; size];
        rng.fill_bytes(&mut payload);
        PacketDecrypt { sender, receiver, rng, payload, packets: Vec::new(), out: Vec::with_capacity(size + 512) }
    }
}

impl Batched for PacketDecrypt {
    fn refill(&mut self, n: usize) {
        self.packets.clear();
        for _ in 0..n {
            self.packets.push(self.sender.encrypt(0, &self.payload, 0, 0, &mut self.rng).expect("encrypt"));
        }
        self.packets.reverse();
    }

    fn run(&mut self) {
        let p = self.packets.pop().expect("refill first");
        self.out.clear();
        self.receiver.decrypt_into(1, &p, 0, &mut self.out).expect("decrypt");
    }
}

/// The frame workloads: name, codec, frame size (issue 29's kinds: an Opus packet, VP8 delta and
/// key frames, an H.264 IDR access unit with SPS, PPS and SEI).
pub const FRAME_KINDS: [(&str, Codec, usize); 4] = [
    ("opus_60", Codec::Opus, 60),
    ("vp8_delta_2k", Codec::Vp8, 2_048),
    ("vp8_key_20k", Codec::Vp8, 20_480),
    ("h264_idr_50k", Codec::H264, 51_200),
];

/// A frame of `codec` of `size` bytes as an encoder would emit it: an H.264 IDR access unit
/// (3-byte start codes, which the layer widens; SPS, PPS and a 64-byte SEI; the slice data without
/// start codes), a VP8 key or delta frame, random Opus bytes.
pub fn media_frame(codec: Codec, size: usize, rng: &mut ChaCha20Rng) -> Vec<u8> {
    let mut body = vec![0u8; size];
    rng.fill_bytes(&mut body);
    for b in &mut body {
        if *b == 0 {
            *b = 0x80; // no start code in the slice data
        }
    }
    let head: Vec<u8> = match codec {
        Codec::H264 => {
            let mut h =
                vec![0, 0, 1, 0x67, 0x42, 0xc0, 0x1f, 0xda, 0x01, 0x40, 0x16, 0xe8, 0, 0, 1, 0x68, 0xce, 0x3c, 0x80];
            h.extend([0, 0, 1, 0x06, 0x05, 0x3c]);
            h.extend([0x5a; 60]);
            h.extend([0x80, 0, 0, 1, 0x65, 0x88, 0x84, 0x21]);
            h
        }
        Codec::Vp8 if size > 4_096 => vec![0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a, 0x80, 0x02, 0x68, 0x01],
        Codec::Vp8 => vec![0x31],
        _ => Vec::new(),
    };
    body.splice(..head.len().min(size), head);
    body.truncate(size);
    body
}

/// `frame_encrypt/{kind}`: member 1 encrypts frames through the frame layer
/// (`Call::encrypt_frame_into`), or (`bare`) the same laid-out bytes with the same clear prefix
/// as a bare packet (`Call::encrypt_into`): the layer's own cost is the difference.
pub struct FrameEncrypt {
    call: Call,
    rng: ChaCha20Rng,
    codec: Codec,
    frame: Vec<u8>,
    laid_out: (Vec<u8>, usize),
    bare: bool,
    out: Vec<u8>,
}

impl FrameEncrypt {
    pub fn new(codec: Codec, size: usize, bare: bool) -> Self {
        let mut rng = rng(3);
        let (call, _) = two_member_calls(&mut rng);
        let frame = media_frame(codec, size, &mut rng);
        let mut data = Vec::new();
        let prefix = frame::plaintext_into(codec, &frame, AudioLevel::default(), &mut data);
        FrameEncrypt { call, rng, codec, frame, laid_out: (data, prefix), bare, out: Vec::with_capacity(size + 1024) }
    }

    pub fn run(&mut self) {
        self.out.clear();
        if self.bare {
            let (data, prefix) = &self.laid_out;
            self.call.encrypt_into(0, data, *prefix, 0, &mut self.rng, &mut self.out).expect("encrypt");
        } else {
            let level = AudioLevel { level: 30, speech: true };
            self.call
                .encrypt_frame_into(0, self.codec, &self.frame, level, 0, &mut self.rng, &mut self.out)
                .expect("frame");
        }
    }
}

/// `frame_decrypt/{kind}`: member 2 decrypts fresh frames (`Call::decrypt_frame_into`), or
/// (`bare`) the same packets with `Call::decrypt_into`.
pub struct FrameDecrypt {
    sender: Call,
    receiver: Call,
    rng: ChaCha20Rng,
    codec: Codec,
    frame: Vec<u8>,
    bare: bool,
    packets: Vec<Vec<u8>>,
    out: Vec<u8>,
}

impl FrameDecrypt {
    pub fn new(codec: Codec, size: usize, bare: bool) -> Self {
        let mut rng = rng(4);
        let (sender, receiver) = two_member_calls(&mut rng);
        let frame = media_frame(codec, size, &mut rng);
        FrameDecrypt {
            sender,
            receiver,
            rng,
            codec,
            frame,
            bare,
            packets: Vec::new(),
            out: Vec::with_capacity(size + 1024),
        }
    }

    pub fn size(&self) -> usize {
        self.frame.len()
    }
}

impl Batched for FrameDecrypt {
    fn refill(&mut self, n: usize) {
        self.packets.clear();
        for _ in 0..n {
            let p = self.sender.encrypt_frame(0, self.codec, &self.frame, AudioLevel::default(), 0, &mut self.rng);
            self.packets.push(p.expect("encrypt"));
        }
        self.packets.reverse();
    }

    fn run(&mut self) {
        let p = self.packets.pop().expect("refill first");
        self.out.clear();
        if self.bare {
            self.receiver.decrypt_into(1, &p, 0, &mut self.out).expect("decrypt");
        } else {
            self.receiver.decrypt_frame_into(1, self.codec, &p, 0, &mut self.out).expect("decrypt");
        }
    }
}

/// Users 1, 2, ... holding `keys`, all with add+remove; closed to self-joins.
pub fn members(keys: &[PrivateKey]) -> GroupState {
    GroupState {
        participants: keys
            .iter()
            .enumerate()
            .map(|(i, k)| GroupParticipant {
                user_id: i as i64 + 1,
                public_key: k.public_key(),
                flags: ADD_REMOVE,
                version: 0,
            })
            .collect(),
        external_permissions: Permissions::NONE,
    }
}

/// A chain whose last block holds `n` members (all with add+remove), the signer's key, and the state.
pub fn group_chain(n: usize, rng: &mut ChaCha20Rng) -> (Chain, PrivateKey, GroupState) {
    let keys: Vec<PrivateKey> = (0..n).map(|_| PrivateKey::generate(rng)).collect();
    let state = members(&keys);
    let zero = build_zero_block(state.clone(), &keys[0], rng).expect("zero block");
    let mut chain = Chain::empty();
    chain.apply(&zero.to_server_form()).expect("apply");
    let signer = keys.into_iter().last().expect("n >= 1");
    (chain, signer, state)
}

/// `block_build/{n}`: a key-rotation block for the same `n` members.
pub struct BlockBuild {
    chain: Chain,
    signer: PrivateKey,
    state: GroupState,
    rng: ChaCha20Rng,
}

impl BlockBuild {
    pub fn new(n: usize) -> Self {
        let mut rng = rng(3);
        let (chain, signer, state) = group_chain(n, &mut rng);
        BlockBuild { chain, signer, state, rng }
    }

    pub fn run(&mut self) -> PlainBlock {
        self.chain.build_change_state(self.state.clone(), &self.signer, &mut self.rng).expect("build")
    }
}

/// `block_apply/{n}`: apply that block (parse, verify, validate) and derive one member's key.
pub struct BlockApply {
    chain: Chain,
    block: Vec<u8>,
    member: PrivateKey,
    member_id: i64,
}

impl BlockApply {
    pub fn new(n: usize) -> Self {
        let mut b = BlockBuild::new(n);
        let block = b.run().to_server_form();
        let member_id = n as i64;
        BlockApply { chain: b.chain, block, member: b.signer, member_id }
    }

    /// Size of the block (server form), which its signature and hash cover.
    pub fn block_len(&self) -> usize {
        self.block.len()
    }

    pub fn run(&mut self) {
        let mut chain = self.chain.clone();
        chain.apply(&self.block).expect("apply");
        let key = chain.group_key(self.member_id, &self.member).expect("key");
        std::hint::black_box(key);
    }
}

/// The primitives that set the floor of the packet workloads.
pub struct Primitives {
    key: PrivateKey,
    other: PublicKey,
    message: [u8; 36],
    signature: [u8; 64],
    verifying: ed25519_dalek::VerifyingKey,
    prepared: crypto::PreparedKey,
    buf: Vec<u8>,
}

impl Primitives {
    pub fn new() -> Self {
        let mut rng = rng(4);
        let key = PrivateKey::generate(&mut rng);
        let other = PrivateKey::generate(&mut rng).public_key();
        let message = [7u8; 36];
        let signature = key.sign(&message);
        let verifying = key.public_key().verifying_key().expect("valid key");
        let prepared = crypto::PreparedKey::new(&key.public_key()).expect("valid key");
        Primitives { key, other, message, signature, verifying, prepared, buf: vec![0u8; 65536] }
    }

    pub fn sign(&mut self) {
        std::hint::black_box(self.key.sign(&self.message));
    }

    pub fn verify(&mut self) {
        crypto::verify_with(&self.verifying, &self.message, &self.signature).expect("verify");
    }

    /// Verification with the key's precomputed tables (what a call uses for its senders' packets);
    /// not part of any floor, which keeps the plain verification.
    pub fn verify_prepared(&mut self) {
        self.prepared.verify(&self.message, &self.signature).expect("verify");
    }

    /// Building a key's tables (once per sender per call).
    pub fn prepare_key(&mut self) {
        std::hint::black_box(crypto::PreparedKey::new(&self.key.public_key()).expect("valid key"));
    }

    /// Verification with the key given as its 32 bytes (decompressed each time), as a block's
    /// signer's key arrives; OpenSSL's verification does the same.
    pub fn verify_key_bytes(&mut self) {
        self.key.public_key().verify(&self.message, &self.signature).expect("verify");
    }

    pub fn x25519(&mut self) {
        std::hint::black_box(self.key.shared_secret(&self.other).expect("shared secret"));
    }

    /// AES-256-CBC encryption of the buffer (64 KiB).
    pub fn aes_cbc_encrypt(&mut self) {
        crypto::bench_aes_cbc_encrypt(&mut self.buf).expect("whole blocks");
    }

    /// AES-256-CBC decryption of the buffer (64 KiB).
    pub fn aes_cbc_decrypt(&mut self) {
        crypto::bench_aes_cbc_decrypt(&mut self.buf).expect("whole blocks");
    }

    /// HMAC-SHA256 of the buffer (64 KiB).
    pub fn hmac_sha256(&mut self) {
        std::hint::black_box(crypto::hmac_sha256(b"key", &[&self.buf]));
    }

    /// SHA-512 of the buffer (64 KiB): the price of a SHA-512 compression at its best.
    pub fn sha512(&mut self) {
        std::hint::black_box(crypto::sha512(&self.buf));
    }
}

impl Default for Primitives {
    fn default() -> Self {
        Self::new()
    }
}

/// The frames of one sender: (sender user id, packet).
pub type Frames = Vec<(i64, Vec<u8>)>;

/// A call of `senders + 1` members (user 1 receives) with `per_sender` 1 KiB frames from each
/// sender, made in advance: `(receiver, frames by sender)`.
pub fn media_setup(senders: usize, per_sender: usize, seed: u64) -> (Call, Vec<Frames>) {
    let mut rng = rng(seed);
    let keys: Vec<PrivateKey> = (0..=senders).map(|_| PrivateKey::generate(&mut rng)).collect();
    let state = members(&keys);
    let zero = build_zero_block(state, &keys[0], &mut rng).expect("zero block").to_server_form();
    let receiver = Call::new(1, keys[0].clone(), &zero, &mut rng).expect("call");
    let mut payload = vec![0u8; 1024];
    rng.fill_bytes(&mut payload);
    let frames = keys
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, k)| {
            let call = Call::new(i as i64 + 1, k.clone(), &zero, &mut rng).expect("call");
            let enc = call.media_encryptor(&mut rng);
            (0..per_sender)
                .map(|_| {
                    let mut p = Vec::with_capacity(1400);
                    enc.encrypt_into(0, &payload, 0, 0, &mut p).expect("encrypt");
                    (i as i64 + 1, p)
                })
                .collect()
        })
        .collect();
    (receiver, frames)
}

/// `media_decrypt_threads/{threads}`: frames of 100 senders decrypted through one shared
/// `MediaDecryptor` by `threads` threads, each taking its own senders. Returns frames/s.
pub fn media_decrypt_threads(threads: usize, per_sender: usize) -> f64 {
    let (receiver, frames) = media_setup(100, per_sender, 11);
    let decryptor = receiver.media_decryptor();
    let total: usize = frames.iter().map(Vec::len).sum();
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let (decryptor, frames) = (&decryptor, &frames);
            s.spawn(move || {
                let mut out = Vec::with_capacity(1400);
                for sender in frames.iter().skip(t).step_by(threads) {
                    for (id, p) in sender {
                        out.clear();
                        decryptor.decrypt_into(*id, p, 0, &mut out).expect("decrypt");
                    }
                }
            });
        }
    });
    total as f64 / start.elapsed().as_secs_f64()
}

/// Latency of media operations (µs: p50, p99, p99.9, max) while another thread applies a block
/// of a `group`-member call every `interval_ms` for `blocks` blocks: through the media handles,
/// or (`locked`) through one `Mutex<Call>` shared by the media and signalling threads.
pub fn media_latency_during_apply(group: usize, blocks: usize, interval_ms: u64, locked: bool) -> [f64; 4] {
    use std::sync::Mutex;
    use std::time::{Duration, Instant};
    let mut rng = rng(12);
    let (chain, signer, state) = group_chain(group, &mut rng);
    let mut c = chain.clone();
    let built: Vec<Vec<u8>> = (0..blocks)
        .map(|_| {
            let b = c.build_change_state(state.clone(), &signer, &mut rng).expect("build").to_server_form();
            c.apply(&b).expect("apply");
            b
        })
        .collect();
    // The measured member is the signer (user `group`): its call applies the blocks while its
    // media thread encrypts frames.
    let call = Call::from_chain(group as i64, signer, chain, &mut rng).expect("member call");
    let encryptor = call.media_encryptor(&mut rng);
    let shared = Mutex::new(call);
    let stop = std::sync::atomic::AtomicBool::new(false);
    let mut latencies: Vec<f64> = Vec::with_capacity(1 << 20);
    std::thread::scope(|s| {
        let (shared, stop, built) = (&shared, &stop, &built);
        s.spawn(move || {
            let mut rng = self::rng(14);
            for (i, b) in built.iter().enumerate() {
                std::thread::sleep(Duration::from_millis(interval_ms));
                let now = (i as u64 + 1) * interval_ms;
                shared.lock().expect("lock").apply_block(b, now, &mut rng).expect("apply");
            }
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
        });
        let mut rng = self::rng(15);
        let mut out = Vec::with_capacity(1400);
        let frame = [7u8; 1024];
        while !stop.load(std::sync::atomic::Ordering::Relaxed) {
            out.clear();
            let t = Instant::now();
            if locked {
                shared.lock().expect("lock").encrypt_into(0, &frame, 0, 0, &mut rng, &mut out).expect("encrypt");
            } else {
                encryptor.encrypt_into(0, &frame, 0, 0, &mut out).expect("encrypt");
            }
            latencies.push(t.elapsed().as_secs_f64() * 1e6);
        }
    });
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q) as usize];
    [at(0.5), at(0.99), at(0.999), at(1.0)]
}

/// The call size of Telegram's public app configs (`conference_call_size_limit`).
pub const CALL_SIZE: usize = 200;

/// What one client of a call of `n` members pays (`call_size/*/{n}`): applying a join (a
/// self-add making it `n` members, with a new key for all), applying a removal (`n` to `n - 1`),
/// a whole verification round (`n` commits and `n` reveals, every one verified) and decrypting
/// a `sendGroupCallEncryptedMessage` payload. The measured member is user 1; each operation
/// starts from a fresh `Call` made outside the timed part ([`CallAtSize::fresh`]).
pub struct CallAtSize {
    n: usize,
    keys: Vec<PrivateKey>,
    /// `n - 1` members, open to self-adds.
    before_join: Chain,
    /// The self-add of user `n` on `before_join`.
    join: Vec<u8>,
    /// `n` members.
    full: Chain,
    /// The removal of user 2 from `full`.
    removal: Vec<u8>,
    /// The `n` commits, then the `n` reveals, of `full`'s height (server form).
    broadcasts: Vec<Vec<u8>>,
}

/// The seed each member's call is made with: the same member makes the same commit every time.
fn member_rng(user_id: i64) -> ChaCha20Rng {
    rng(10_000 + user_id as u64)
}

impl CallAtSize {
    pub fn new(n: usize) -> Self {
        let mut rng = rng(21);
        let keys: Vec<PrivateKey> = (0..n).map(|_| PrivateKey::generate(&mut rng)).collect();
        let mut state = members(&keys);
        state.external_permissions = ADD_REMOVE;
        let joiner = state.participants.pop().expect("n >= 2");
        let zero = build_zero_block(state.clone(), &keys[0], &mut rng).expect("zero block");
        let mut before_join = Chain::empty();
        before_join.apply(&zero.to_server_form()).expect("apply");
        let join = before_join
            .build_self_add(joiner, keys.last().expect("n >= 2"), &mut rng)
            .expect("self-add")
            .to_server_form();
        let mut full = before_join.clone();
        full.apply(&join).expect("apply join");
        let mut remaining = full.group_state().clone();
        remaining.participants.retain(|p| p.user_id != 2);
        let removal = full.build_change_state(remaining, &keys[0], &mut rng).expect("removal").to_server_form();

        // Every member's commit, delivered to everyone, then every member's reveal.
        let mut calls: Vec<Call> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| {
                let id = i as i64 + 1;
                Call::from_chain(id, k.clone(), full.clone(), &mut member_rng(id)).expect("member call")
            })
            .collect();
        let server = |plain: Vec<u8>| confchain::to_server_form(&plain).expect("server form");
        let commits: Vec<Vec<u8>> = calls.iter_mut().flat_map(|c| c.poll_outbound()).map(server).collect();
        assert_eq!(commits.len(), n, "one commit per member");
        for c in &mut calls {
            for b in &commits {
                c.receive_broadcast(b).expect("commit");
            }
        }
        let reveals: Vec<Vec<u8>> = calls.iter_mut().flat_map(|c| c.poll_outbound()).map(server).collect();
        assert_eq!(reveals.len(), n, "one reveal per member");
        let broadcasts = commits.into_iter().chain(reveals).collect();
        CallAtSize { n, keys, before_join, join, full, removal, broadcasts }
    }

    /// User 1's call on the full chain, or (`before_join`) on the chain before the join.
    pub fn fresh(&self, before_join: bool) -> Call {
        let chain = if before_join { &self.before_join } else { &self.full };
        Call::from_chain(1, self.keys[0].clone(), chain.clone(), &mut member_rng(1)).expect("call")
    }

    /// Sizes of the join and removal blocks (server form).
    pub fn block_lens(&self) -> (usize, usize) {
        (self.join.len(), self.removal.len())
    }

    pub fn members(&self) -> usize {
        self.n
    }

    pub fn apply_join(&self, call: &mut Call) {
        call.apply_block(&self.join, 0, &mut rng(22)).expect("apply join");
    }

    pub fn apply_removal(&self, call: &mut Call) {
        call.apply_block(&self.removal, 0, &mut rng(23)).expect("apply removal");
    }

    /// The whole round: every commit, then every reveal; the emojis are there at the end.
    pub fn verification_round(&self, call: &mut Call) {
        for b in &self.broadcasts {
            call.receive_broadcast(b).expect("broadcast");
        }
        assert!(call.emojis().is_some(), "the round completes");
    }

    /// User 1 decrypting `sendGroupCallEncryptedMessage` payloads from user 2.
    pub fn message_decrypt(&self) -> MessageDecrypt {
        let sender = Call::from_chain(2, self.keys[1].clone(), self.full.clone(), &mut member_rng(2)).expect("call");
        MessageDecrypt { sender, receiver: self.fresh(false), messages: Vec::new(), rng: rng(24) }
    }
}

/// `call_size/message_decrypt/{n}`: see [`CallAtSize::message_decrypt`].
pub struct MessageDecrypt {
    sender: Call,
    receiver: Call,
    messages: Vec<Vec<u8>>,
    rng: ChaCha20Rng,
}

impl MessageDecrypt {
    /// The message every decryption opens: the payload of a typical call update (about 100 bytes).
    pub const MESSAGE: &'static str =
        r#"{"_":"groupCallMessage","text":"hello from a member of a large call","id":42}"#;
}

impl Batched for MessageDecrypt {
    fn refill(&mut self, n: usize) {
        self.messages.clear();
        for _ in 0..n {
            self.messages.push(self.sender.encrypt_message(Self::MESSAGE, 0, &mut self.rng).expect("message"));
        }
        self.messages.reverse();
    }

    fn run(&mut self) {
        let m = self.messages.pop().expect("refill first");
        std::hint::black_box(self.receiver.decrypt_message(2, &m, 0).expect("decrypt"));
    }
}
