//! Cryptographic primitives of the protocol: hashes, `kdf`, `encrypt_data`/`decrypt_data`,
//! `encrypt_header`/`decrypt_header`, Ed25519 identity keys and the Ed25519→X25519 shared secret.
//!
//! Everything here is built from RustCrypto and dalek crates; only the protocol's compositions are
//! written by hand. Randomness always comes from the caller (`&mut impl CryptoRngCore`), and every
//! function that draws it has a twin taking the random bytes explicitly, so known-answer tests can
//! replay the reference's draws byte for byte.

use std::fmt;

use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit};
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::Identity;
use curve25519_dalek::montgomery::MontgomeryPoint;
use ed25519_dalek::hazmat::{raw_sign, raw_verify, ExpandedSecretKey};
use ed25519_dalek::{SigningKey, VerifyingKey};
use hmac::{Hmac, KeyInit, Mac};
use rand_core::CryptoRngCore;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::error::{Error, ErrorKind, Result};

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// SHA-256.
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

/// SHA-512.
pub fn sha512(data: &[u8]) -> [u8; 64] {
    Sha512::digest(data).into()
}

/// HMAC-SHA256 over the concatenation of `parts`.
// Without `hazmat` nothing in the library calls this: the benchmarks measure it.
#[cfg(feature = "hazmat")]
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    #[allow(clippy::expect_used)] // HMAC accepts keys of every length: this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any size");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA512 over the concatenation of `parts`.
pub fn hmac_sha512(key: &[u8], parts: &[&[u8]]) -> Secret<64> {
    #[allow(clippy::expect_used)] // HMAC accepts keys of every length: this cannot fail.
    let mut mac = <Hmac<Sha512> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any size");
    for p in parts {
        mac.update(p);
    }
    Secret(mac.finalize().into_bytes().into())
}

/// `kdf(secret, label) = HMAC-SHA512(key = secret, msg = label)`.
pub fn kdf(secret: &[u8], label: &[u8]) -> Secret<64> {
    hmac_sha512(secret, &[label])
}

/// Secret bytes: zeroized on drop, compared in constant time, never printed.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret<const N: usize>([u8; N]);

impl<const N: usize> Secret<N> {
    /// Wraps secret bytes.
    pub fn from_bytes(bytes: [u8; N]) -> Self {
        Secret(bytes)
    }

    /// Copies from a slice of exactly `N` bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let arr: [u8; N] = bytes.try_into().ok()?;
        Some(Secret(arr))
    }

    /// Draws `N` bytes from the caller's RNG.
    pub fn random(rng: &mut impl CryptoRngCore) -> Self {
        let mut s = Secret([0u8; N]);
        rng.fill_bytes(&mut s.0);
        s
    }

    /// The secret bytes. Handle with care.
    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }

    /// A short public fingerprint: the first 4 bytes of SHA-256 of the secret, in hex. Safe to log.
    pub fn fingerprint(&self) -> String {
        hex4(&sha256(&self.0))
    }
}

impl Secret<64> {
    /// The first 32 bytes (e.g. `HMAC-SHA512(..)[0..32]`).
    pub fn first_half(&self) -> Secret<32> {
        let (lo, _) = self.halves();
        let mut out = Secret([0u8; 32]);
        out.0.copy_from_slice(lo);
        out
    }

    /// The two 32-byte halves.
    pub fn halves(&self) -> (&[u8], &[u8]) {
        self.0.split_at(32)
    }
}

impl<const N: usize> PartialEq for Secret<N> {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl<const N: usize> Eq for Secret<N> {}

impl<const N: usize> fmt::Debug for Secret<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret<{N}>(fingerprint {})", self.fingerprint())
    }
}

/// The first four bytes in hex: a short, safe-to-log fingerprint.
pub(crate) fn hex4(bytes: &[u8]) -> String {
    bytes.iter().take(4).map(|b| format!("{b:02x}")).collect()
}

/// An Ed25519 public identity key (32 bytes, compressed Edwards point).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey([u8; 32]);

impl PublicKey {
    /// Wraps the 32 raw bytes (not validated until used).
    pub const fn from_bytes(bytes: [u8; 32]) -> Self {
        PublicKey(bytes)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Decompresses the key for verification.
    pub fn verifying_key(&self) -> Result<VerifyingKey> {
        VerifyingKey::from_bytes(&self.0).map_err(|_| Error::new(ErrorKind::InvalidInput, "Invalid public key"))
    }

    /// Whether anyone can compute a shared secret with this key, so that a block keeping it as a
    /// participant can be built (issue 30 item 1). False for the identity (y = 1 mod p) and for
    /// every key of small order, on the curve or its twist: X25519 with any clamped scalar gives
    /// zero for those, so one X25519 with a fixed scalar tells. The chain rules accept such keys
    /// (as the reference's do); the session removes them ([`crate::session`]).
    pub fn is_usable(&self) -> bool {
        const PROBE: [u8; 32] = [0x5a; 32];
        memo::verdict(memo::Check::Usable, &[&self.0], || {
            x25519_any_key(&PROBE, self).is_ok_and(|x| x.iter().any(|b| *b != 0))
        })
    }

    /// Verifies an Ed25519 signature; fails with "Wrong signature" ([`ErrorKind::WrongSignature`]).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> Result<()> {
        let holds = memo::verdict(memo::Check::Signature, &[&self.0, signature, message], || {
            self.verifying_key().is_ok_and(|key| verify_with(&key, message, signature).is_ok())
        });
        if holds {
            Ok(())
        } else {
            Err(wrong_signature())
        }
    }
}

/// Verifies with an already decompressed key.
///
/// This is RFC 8032 cofactorless verification with a canonical `S`, the rule OpenSSL (and so the
/// reference) applies. confchain deliberately does not use the stricter `verify_strict`: a
/// participant block the official clients accept must never be refused here, or a hostile member
/// could fork confchain clients off the call (SPEC.md §11).
pub fn verify_with(key: &VerifyingKey, message: &[u8], signature: &[u8; 64]) -> Result<()> {
    let sig = ed25519_dalek::Signature::from_bytes(signature);
    raw_verify::<VerifySha512>(key, message, &sig).map_err(|_| wrong_signature())
}

/// The SHA-512 that verification hashes the signed message with (`SHA-512(R || A || M)`): the
/// only SHA-512 that runs over long input (a 1,000-member block is ~96 KB). Without the
/// `openssl-sha512` feature it is RustCrypto's.
#[cfg(not(feature = "openssl-sha512"))]
type VerifySha512 = Sha512;

/// With the `openssl-sha512` feature, verification hashes with OpenSSL's libcrypto, whose
/// SHA-512 (AVX2 + BMI2 assembly) is ~30% faster than RustCrypto's on x86-64 (benches/README.md).
/// Only public data goes through it (the signature, the key and the message): signing and HMAC
/// keep RustCrypto's SHA-512, whose state wipes itself on drop.
#[cfg(feature = "openssl-sha512")]
type VerifySha512 = openssl_sha512::Sha512;

#[cfg(feature = "openssl-sha512")]
mod openssl_sha512 {
    use sha2::digest::consts::U64;
    use sha2::digest::{FixedOutput, HashMarker, Output, OutputSizeUser, Update};

    /// OpenSSL's SHA-512 behind the `digest` traits ed25519-dalek's verification is generic over.
    #[derive(Clone, Default)]
    pub struct Sha512(openssl::sha::Sha512);

    impl HashMarker for Sha512 {}

    impl OutputSizeUser for Sha512 {
        type OutputSize = U64;
    }

    impl Update for Sha512 {
        fn update(&mut self, data: &[u8]) {
            self.0.update(data);
        }
    }

    impl FixedOutput for Sha512 {
        fn finalize_into(self, out: &mut Output<Self>) {
            out.copy_from_slice(&self.0.finish());
        }
    }
}

/// A participant's key prepared for verifying many signatures: the decompressed key and tables
/// of its multiples, so a verification costs about 120 point additions and no doublings instead
/// of a variable-base double-scalar multiplication (~250 doublings). Built once when a
/// participant's key enters a call (its key cache: [`PreparedKey::new`], about as long as 1.5
/// verifications) and dropped with it; [`PreparedKey::TABLE_BYTES`] bytes each.
///
/// The verdicts are exactly [`verify_with`]'s (ed25519-dalek's cofactorless `verify`): `s` must
/// be canonical (`s < l`), `k = SHA-512(R || A || M) mod l` over the key's bytes as received, and
/// the signature holds iff the canonical encoding of `[s]B - [k]A` equals the 32 bytes of `R`
/// (so a non-canonical `R` never verifies, and small-order or mixed-order keys verify exactly as
/// there). Only the way `[s]B - [k]A` is computed differs: as a sum of precomputed multiples, by
/// the complete Edwards addition, which gives the same group element for every key, including
/// those with a torsion component (tests/prepared_keys.rs checks the two agree).
pub struct PreparedKey {
    key: VerifyingKey,
    table: Option<std::sync::Arc<Table>>,
}

impl PreparedKey {
    /// Bytes of the tables one prepared key holds (32 × 8 extended points of 160 bytes).
    pub const TABLE_BYTES: usize = digit_count(KEY_W).div_ceil(2) * (1 << (KEY_W - 1)) * std::mem::size_of::<EdwardsPoint>();

    /// Prepares `key`: decompresses it and builds its tables.
    pub fn new(key: &PublicKey) -> Result<Self> {
        let key = key.verifying_key()?;
        let table = memo::table(key.as_bytes(), || Table::new(&key.to_edwards(), KEY_W, true));
        Ok(PreparedKey { table: Some(table), key })
    }

    /// The decompressed key only, without tables (verifies as [`verify_with`] does): for caches
    /// that have reached their bound of tables.
    pub fn without_tables(key: &PublicKey) -> Result<Self> {
        Ok(PreparedKey { key: key.verifying_key()?, table: None })
    }

    /// Whether this key has its tables.
    pub fn has_tables(&self) -> bool {
        self.table.is_some()
    }

    /// The decompressed key.
    // Without `hazmat` nothing in the library calls this: it is for the prepared-key tests and benchmarks.
    #[cfg(feature = "hazmat")]
    pub fn verifying_key(&self) -> &VerifyingKey {
        &self.key
    }

    /// Verifies an Ed25519 signature, with exactly [`verify_with`]'s verdicts; fails with "Wrong
    /// signature" ([`ErrorKind::WrongSignature`]).
    pub fn verify(&self, message: &[u8], signature: &[u8; 64]) -> Result<()> {
        // The same verdicts as `PublicKey::verify`'s, so the same memo (with the `sim` feature).
        let holds = memo::verdict(memo::Check::Signature, &[self.key.as_bytes(), signature, message], || {
            self.verify_now(message, signature).is_ok()
        });
        if holds {
            Ok(())
        } else {
            Err(wrong_signature())
        }
    }

    fn verify_now(&self, message: &[u8], signature: &[u8; 64]) -> Result<()> {
        let Some(table) = &self.table else {
            return verify_with(&self.key, message, signature);
        };
        let (r, s) = signature.split_at(32);
        let s: [u8; 32] = s.try_into().map_err(|_| wrong_signature())?;
        // ed25519-dalek's check (without its `legacy_compatibility` feature): s < l.
        let s = Option::<Scalar>::from(Scalar::from_canonical_bytes(s)).ok_or_else(wrong_signature)?;
        let mut h = VerifySha512::new();
        h.update(r);
        h.update(self.key.as_bytes());
        h.update(message);
        let k = Scalar::from_hash(h);
        debug_assert_eq!(table.bytes(), Self::TABLE_BYTES);
        let expected = combine(base_table(), &s, table, &k).compress();
        if expected.as_bytes()[..] == *r {
            Ok(())
        } else {
            Err(wrong_signature())
        }
    }
}

impl fmt::Debug for PreparedKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PreparedKey({}…, tables: {})", hex4(self.key.as_bytes()), self.table.is_some())
    }
}

/// Multiples of a point for variable-time multiplication without doublings: with a number
/// written in signed radix `2^w` (digits `d_i` in `-2^(w-1)..=2^(w-1)`), `[x]P = sum [d_i · 2^(w·i)]P`,
/// so the table holds `[j · 2^(w·i)]P` for `j` in `1..=2^(w-1)` and every digit position `i` (one
/// point addition per nonzero digit), or with `half`, only the even positions: then
/// `[x]P = sum_even + 2^w · sum_odd` (`w` more doublings, half the memory; the layout of
/// curve25519-dalek's fixed-base tables). Variable time: every value involved is public.
struct Table {
    /// Window width in bits (4..=8).
    w: u32,
    /// Only the even digit positions.
    half: bool,
    /// Row after row (one per stored digit position), `2^(w-1)` entries each.
    points: Box<[EdwardsPoint]>,
}

impl Table {
    #[allow(clippy::arithmetic_side_effects)] // group operations and small counts: no overflow
    fn new(point: &EdwardsPoint, w: u32, half: bool) -> Self {
        let per_row = 1usize << (w - 1);
        let positions = digit_count(w);
        let rows = if half { positions.div_ceil(2) } else { positions };
        let step = if half { 2 * w } else { w };
        let mut points = Vec::with_capacity(rows * per_row);
        let mut base = *point;
        for _ in 0..rows {
            let mut acc = base;
            points.push(acc);
            for _ in 1..per_row {
                acc += &base;
                points.push(acc);
            }
            for _ in 0..step {
                base = base + base;
            }
        }
        Table { w, half, points: points.into_boxed_slice() }
    }

    fn bytes(&self) -> usize {
        self.points.len().saturating_mul(std::mem::size_of::<EdwardsPoint>())
    }

    /// `acc += [digit · 2^(w·position)]P` (`-=` when `negate`) for the stored `row`.
    #[allow(clippy::arithmetic_side_effects)] // group operations on curve points: they cannot overflow
    fn add(&self, acc: &mut EdwardsPoint, row: usize, digit: i16, negate: bool) {
        let per_row = 1usize << (self.w - 1);
        let index = usize::from(digit.unsigned_abs()).checked_sub(1).map(|j| row * per_row + j);
        let Some(entry) = index.and_then(|i| self.points.get(i)) else {
            return; // digit 0
        };
        if (digit < 0) != negate {
            *acc -= entry;
        } else {
            *acc += entry;
        }
    }

    /// `acc += [x]P` (`-=` when `negate`) for the digit positions of the pass: all of them for a
    /// full table; the odd ones (`odd`) or the even ones for a half table.
    fn add_digits(&self, acc: &mut EdwardsPoint, digits: &[i16], odd: bool, negate: bool) {
        if self.half {
            let skip = usize::from(odd);
            for (row, d) in digits.iter().skip(skip).step_by(2).enumerate() {
                self.add(acc, row, *d, negate);
            }
        } else if !odd {
            for (row, d) in digits.iter().enumerate() {
                self.add(acc, row, *d, negate);
            }
        }
    }
}

/// `[s]B - [k]A` from the tables of B and A.
#[allow(clippy::arithmetic_side_effects)] // group operations on curve points: they cannot overflow
fn combine(b: &Table, s: &Scalar, a: &Table, k: &Scalar) -> EdwardsPoint {
    let sd = signed_digits(s.as_bytes(), b.w);
    let kd = signed_digits(k.as_bytes(), a.w);
    let sd = sd.get(..digit_count(b.w)).unwrap_or_default();
    let kd = kd.get(..digit_count(a.w)).unwrap_or_default();
    let mut acc = EdwardsPoint::identity();
    if a.half || b.half {
        // The odd positions, then times 2^w (both halved tables share one w).
        b.add_digits(&mut acc, sd, true, false);
        a.add_digits(&mut acc, kd, true, true);
        let w = if a.half { a.w } else { b.w };
        acc = acc.mul_by_cofactor();
        for _ in 3..w {
            acc = acc + acc;
        }
    }
    b.add_digits(&mut acc, sd, false, false);
    a.add_digits(&mut acc, kd, false, true);
    acc
}

/// How many signed radix-`2^w` digits a number below 2^253 (a reduced scalar) needs.
#[allow(clippy::arithmetic_side_effects)] // small constants
const fn digit_count(w: u32) -> usize {
    // 253 bits, plus one digit position for the final carry when w divides 253 exactly (never for
    // 4..=8, but kept general).
    let n = 253usize.div_ceil(w as usize);
    if 253 % w == 0 {
        n + 1
    } else {
        n
    }
}

/// The signed radix-`2^w` digits (`-2^(w-1)..=2^(w-1)`) of a number below 2^253, least significant
/// first: `x = sum digit[i] · 2^(w·i)` exactly. `w` in 4..=8.
#[allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)] // bit arithmetic on bounded values
fn signed_digits(bytes: &[u8; 32], w: u32) -> [i16; 64] {
    let mut digits = [0i16; 64];
    let n = digit_count(w);
    let mask = (1u32 << w) - 1;
    let half = 1i16 << (w - 1);
    let mut carry = 0i16;
    for (i, d) in digits.iter_mut().enumerate().take(n) {
        let bit = i * w as usize;
        let (byte, shift) = (bit / 8, bit % 8);
        let lo = u32::from(bytes.get(byte).copied().unwrap_or(0));
        let hi = u32::from(bytes.get(byte + 1).copied().unwrap_or(0));
        let v = (((lo | (hi << 8)) >> shift) & mask) as i16 + carry;
        carry = (v + half) >> w;
        *d = v - (carry << w);
    }
    // Below 2^253 the carry out of the last position is 0: the top digit is small.
    debug_assert_eq!(carry, 0);
    digits
}

/// Window width and layout of the base point's table: 2^8, every position (32 rows of 128 points,
/// 640 KiB, built on first use, once per process): one addition per digit of `s`.
const BASE_W: u32 = 8;
/// Window width and layout of a key's table: 2^4, even positions (32 rows of 8 points, 40 KiB).
const KEY_W: u32 = 4;

/// The base point's table, built on first use.
fn base_table() -> &'static Table {
    static TABLE: std::sync::LazyLock<Table> =
        std::sync::LazyLock::new(|| Table::new(&curve25519_dalek::constants::ED25519_BASEPOINT_POINT, BASE_W, false));
    &TABLE
}

fn wrong_signature() -> Error {
    Error::new(ErrorKind::WrongSignature, "Wrong signature")
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.0.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }
}

/// An Ed25519 private identity key (a 32-byte seed). Zeroized on drop; `Debug` shows only the
/// public key.
pub struct PrivateKey {
    signing: SigningKey,
    /// `SHA-512(seed)` as signing uses it (the clamped scalar mod l and the nonce prefix), kept so
    /// that a signature does not hash the seed again.
    expanded: ExpandedSecretKey,
    /// `SHA-512(seed)[0..32]`: the X25519 scalar (clamped where it is used).
    x25519: Secret<32>,
}

impl PrivateKey {
    /// From the 32-byte seed (the format the reference exports).
    pub fn from_bytes(seed: &[u8; 32]) -> Self {
        let h = Secret(sha512(seed));
        let x25519 = h.first_half();
        PrivateKey { signing: SigningKey::from_bytes(seed), expanded: ExpandedSecretKey::from_bytes(&h.0), x25519 }
    }

    /// From a slice that must be exactly 32 bytes.
    pub fn from_slice(seed: &[u8]) -> Result<Self> {
        let seed: [u8; 32] =
            seed.try_into().map_err(|_| Error::new(ErrorKind::InvalidInput, "Invalid private key length"))?;
        Ok(PrivateKey::from_bytes(&seed))
    }

    /// A fresh key: 32 bytes drawn from the caller's RNG.
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let seed = Secret::<32>::random(rng);
        PrivateKey::from_bytes(seed.expose())
    }

    /// The seed. Handle with care.
    pub fn to_bytes(&self) -> Secret<32> {
        Secret(self.signing.to_bytes())
    }

    /// The public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key().to_bytes())
    }

    /// Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        raw_sign::<Sha512>(&self.expanded, message, self.signing.as_ref()).to_bytes()
    }

    /// `shared_secret(self, their_public)`: both keys converted to X25519, X25519, then
    /// `HMAC-SHA512("tde2e_shared_secret", x25519_output)[0..32]`.
    ///
    /// Like the reference, this accepts ANY 32 bytes as `their_public`: y is the low 255 bits
    /// reduced mod p, u = (1+y)/(1-y) mod p, and X25519 runs on u even when it is not the
    /// u-coordinate of a curve point (it may lie on the twist). A participant key that is not a
    /// valid Ed25519 point is accepted by every chain, so refusing it here would let a member
    /// split confchain clients from the official ones (SPEC.md §11). Fails with "Failed to compute
    /// modulo inverse" when y = 1 mod p, and "Failed to compute shared secret" when X25519 gives zero.
    pub fn shared_secret(&self, their_public: &PublicKey) -> Result<Secret<32>> {
        let mut x = memo::x25519(self, their_public, || x25519_any_key(self.x25519.expose(), their_public))?;
        if x.iter().all(|b| *b == 0) {
            return Err(Error::new(ErrorKind::SharedSecret, "Failed to compute shared secret"));
        }
        let mac = hmac_sha512(b"tde2e_shared_secret", &[&x]);
        x.zeroize();
        Ok(mac.first_half())
    }
}

/// X25519 of the clamped `scalar` with the Montgomery u-coordinate of any 32 bytes read as an
/// Edwards y-coordinate (see [`PrivateKey::shared_secret`]).
fn x25519_any_key(scalar: &[u8; 32], key: &PublicKey) -> Result<[u8; 32]> {
    let mut y = key.0;
    if let Some(last) = y.last_mut() {
        *last &= 0x7f;
    }
    // y = 1 mod p (y < 2^255 < 2p, so y is 1 or p + 1): 1 - y has no inverse.
    const P_PLUS_ONE: [u8; 32] = {
        let mut b = [0xff; 32];
        b[0] = 0xee;
        b[31] = 0x7f;
        b
    };
    let mut one = [0u8; 32];
    one[0] = 1;
    if y == one || y == P_PLUS_ONE {
        return Err(Error::new(ErrorKind::SharedSecret, "Failed to compute modulo inverse"));
    }
    // Fast path, for every valid point: X25519(k, u(P)) is the u-coordinate of [k]P, and
    // computing [k]P on the Edwards curve (the vectorized constant-time variable-base
    // multiplication) is about twice as fast as the Montgomery ladder. u(P) ignores the sign bit.
    if let Some(point) = CompressedEdwardsY(key.0).decompress() {
        return Ok(point.mul_clamped(*scalar).to_montgomery().to_bytes());
    }
    // Not a point: u = (1 + y) / (1 - y) mod p, then the Montgomery ladder (X25519 is defined on
    // the twist as well). Public values only, so variable time is fine here.
    Ok(MontgomeryPoint(montgomery_u(&y)).mul_clamped(*scalar).to_bytes())
}

/// `(1 + y) / (1 - y) mod 2^255 - 19` for `y < 2^255`, `y != 1 mod p`, little-endian.
#[allow(clippy::arithmetic_side_effects)] // arithmetic mod p: it cannot overflow
fn montgomery_u(y: &[u8; 32]) -> [u8; 32] {
    use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
    use crypto_bigint::{Encoding, U256};
    let p = U256::from_be_hex("7fffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffed");
    let params = DynResidueParams::new(&p);
    let y = U256::from_le_bytes(*y);
    // y < 2^255 < 2p: one conditional subtraction reduces it.
    let y = if y >= p { y.wrapping_sub(&p) } else { y };
    let y = DynResidue::new(&y, params);
    let one = DynResidue::one(params);
    let (inverse, _) = (one - y).invert();
    (inverse * (one + y)).retrieve().to_le_bytes()
}

// `SigningKey` and `ExpandedSecretKey` zeroize on drop (ed25519-dalek's `zeroize` feature), and so
// does `Secret`.
impl ZeroizeOnDrop for PrivateKey {}

impl Clone for PrivateKey {
    fn clone(&self) -> Self {
        let seed = self.to_bytes();
        PrivateKey::from_bytes(seed.expose())
    }
}

impl PartialEq for PrivateKey {
    fn eq(&self, other: &Self) -> bool {
        self.signing.to_bytes().ct_eq(&other.signing.to_bytes()).into()
    }
}

impl Eq for PrivateKey {}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(public {}…)", hex4(self.public_key().as_bytes()))
    }
}

/// Minimum random prefix of `encrypt_data`.
pub const MIN_PADDING: usize = 16;

/// Length of the random prefix `encrypt_data` draws for `data_len` bytes of data (16..=31).
pub fn prefix_len(data_len: usize) -> usize {
    // ((16 + 15 + len) & !15) - len, without overflow for any len: 16 for whole blocks, else
    // 32 - (len mod 16).
    match data_len % 16 {
        0 => 16,
        r => 32usize.saturating_sub(r),
    }
}

/// AES-256-CBC key (`h[0..32]`) and IV (`h[32..48]`) from a 64-byte hash.
fn cbc_key_iv(h: &Secret<64>) -> (&[u8; 32], &[u8; 16]) {
    let (key, rest) = h.0.split_first_chunk::<32>().unwrap_or((&[0; 32], &[]));
    let iv = rest.first_chunk::<16>().unwrap_or(&[0; 16]);
    (key, iv)
}

/// AES-256-CBC in place, no padding. Fails (leaving `buf` untouched) unless `buf` is a whole
/// number of blocks. The cipher state zeroizes its key schedule on drop (`aes` and `cbc` with
/// their `zeroize` features).
fn cbc_encrypt(h: &Secret<64>, buf: &mut [u8]) -> Result<()> {
    let (key, iv) = cbc_key_iv(h);
    let len = buf.len();
    Aes256CbcEnc::new(key.into(), iv.into())
        .encrypt_padded::<NoPadding>(buf, len)
        .map(|_| ())
        .map_err(|_| Error::new(ErrorKind::InvalidInput, "AES-CBC input is not a whole number of blocks"))
}

/// AES-256-CBC decryption in place, no padding; fails unless `buf` is a whole number of blocks.
fn cbc_decrypt(h: &Secret<64>, buf: &mut [u8]) -> Result<()> {
    let (key, iv) = cbc_key_iv(h);
    Aes256CbcDec::new(key.into(), iv.into())
        .decrypt_padded::<NoPadding>(buf)
        .map(|_| ())
        .map_err(|_| decrypt_error("data size is not divisible by 16"))
}

#[doc(hidden)]
/// AES-256-CBC encryption of `buf` in place under a fixed key (benchmark floor only).
// Without `hazmat` nothing in the library calls this: a benchmark floor.
#[cfg(feature = "hazmat")]
pub fn bench_aes_cbc_encrypt(buf: &mut [u8]) -> Result<()> {
    cbc_encrypt(&Secret([1; 64]), buf)
}

#[doc(hidden)]
/// AES-256-CBC decryption of `buf` in place under a fixed key (benchmark floor only).
// Without `hazmat` nothing in the library calls this: a benchmark floor.
#[cfg(feature = "hazmat")]
pub fn bench_aes_cbc_decrypt(buf: &mut [u8]) -> Result<()> {
    cbc_decrypt(&Secret([1; 64]), buf)
}

/// `encrypt_data` with a random prefix drawn from `rng`. Returns `msg_id || ciphertext` and the
/// 32-byte `large_msg_id` (which call packets sign).
///
/// ```
/// use confchain::crypto::{decrypt_data, encrypt_data};
/// # use rand_core::SeedableRng;
/// # let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(7);
/// let (sealed, _) = encrypt_data(b"hello", b"secret", b"extra", &mut rng)?;
/// assert_eq!(sealed.len() % 16, 0);
/// assert_eq!(decrypt_data(&sealed, b"secret", b"extra")?.0, b"hello");
/// assert!(decrypt_data(&sealed, b"secret", b"other").is_err());
/// # Ok::<(), confchain::Error>(())
/// ```
#[allow(clippy::arithmetic_side_effects)] // lengths of slices (<= isize::MAX) plus at most 47
pub fn encrypt_data(
    data: &[u8],
    secret: &[u8],
    extra: &[u8],
    rng: &mut impl CryptoRngCore,
) -> Result<(Vec<u8>, [u8; 32])> {
    let n = prefix_len(data.len());
    let mut out = vec![0u8; 16 + n + data.len()];
    let (head, tail) = out.split_at_mut(16 + n);
    rng.fill_bytes(head.split_at_mut(16).1);
    tail.copy_from_slice(data);
    let id = seal_in_place(&mut out, n, secret, &[extra])?;
    Ok((out, id))
}

/// `encrypt_data` with the prefix bytes given (its first byte is overwritten with the prefix
/// length), for known-answer tests. `prefix` must be [`prefix_len`]`(data.len())` bytes.
#[allow(clippy::arithmetic_side_effects)] // lengths of slices (<= isize::MAX) plus at most 47
// Without `hazmat` nothing in the library calls this: the known-answer tests pick the prefix.
#[cfg(feature = "hazmat")]
pub fn encrypt_data_with_prefix(
    data: &[u8],
    secret: &[u8],
    extra: &[u8],
    prefix: &[u8],
) -> Result<(Vec<u8>, [u8; 32])> {
    let n = prefix_len(data.len());
    if prefix.len() != n {
        return Err(Error::new(ErrorKind::InvalidInput, "wrong prefix length"));
    }
    let mut out = Vec::with_capacity(16 + n + data.len());
    out.extend_from_slice(&[0u8; 16]);
    out.extend_from_slice(prefix);
    out.extend_from_slice(data);
    let id = seal_in_place(&mut out, n, secret, &[extra])?;
    Ok((out, id))
}

/// Seals `buf = [16 bytes room] || prefix(n) || data` in place: sets the prefix length byte, MACs,
/// writes the msg_id into the first 16 bytes and encrypts the rest. Returns `large_msg_id`.
/// `buf` must be at least 16 + n bytes with `n + len(data)` a multiple of 16 (else it fails and
/// nothing is left encrypted halfway: the caller discards `buf`). The extra data is given in parts
/// (their concatenation), so callers need not copy it into one buffer.
pub(crate) fn seal_in_place(buf: &mut [u8], n: usize, secret: &[u8], extra: &[&[u8]]) -> Result<[u8; 32]> {
    let (msg_id, body) = buf.split_at_mut(16);
    if let Some(first) = body.first_mut() {
        *first = n as u8;
    }
    let k = kdf(secret, b"tde2e_encrypt_data");
    let (cipher_secret, mac_secret) = k.halves();
    let large_msg_id = mac_of(mac_secret, body, extra);
    let (id16, _) = large_msg_id.split_at(16);
    msg_id.copy_from_slice(id16);
    let h = hmac_sha512(cipher_secret, &[id16]);
    cbc_encrypt(&h, body)?;
    Ok(large_msg_id)
}

/// `decrypt_data`: checks sizes, decrypts, checks the MAC in constant time and the prefix. Returns
/// the data and the `large_msg_id`.
pub fn decrypt_data(encrypted: &[u8], secret: &[u8], extra: &[u8]) -> Result<(Vec<u8>, [u8; 32])> {
    let mut buf = encrypted.to_vec();
    let (range, id) = open_in_place(&mut buf, secret, &[extra])?;
    buf.copy_within(range.clone(), 0);
    buf.truncate(range.len());
    Ok((buf, id))
}

/// Opens `msg_id || ciphertext` in place; on success the plaintext data is `buf[range]`.
pub(crate) fn open_in_place(
    buf: &mut [u8],
    secret: &[u8],
    extra: &[&[u8]],
) -> Result<(std::ops::Range<usize>, [u8; 32])> {
    if buf.len() < 16 {
        return Err(decrypt_error("encrypted_data is less than 16 bytes"));
    }
    if !buf.len().is_multiple_of(16) {
        return Err(decrypt_error("data size is not divisible by 16"));
    }
    let k = kdf(secret, b"tde2e_encrypt_data");
    let (cipher_secret, mac_secret) = k.halves();
    let (msg_id, body) = buf.split_at_mut(16);
    let h = hmac_sha512(cipher_secret, &[msg_id]);
    cbc_decrypt(&h, body)?;
    let large_msg_id = mac_of(mac_secret, body, extra);
    if !bool::from(large_msg_id.split_at(16).0.ct_eq(msg_id)) {
        return Err(decrypt_error("msg_id mismatch"));
    }
    let prefix = usize::from(body.first().copied().unwrap_or(0));
    if prefix > body.len() || prefix < MIN_PADDING {
        return Err(decrypt_error("invalid prefix size"));
    }
    Ok((16 + prefix..buf.len(), large_msg_id))
}

/// `large_msg_id = HMAC-SHA256(mac_secret, body || extra || le32(len(extra)))`, with the extra
/// data in parts.
fn mac_of(mac_secret: &[u8], body: &[u8], extra: &[&[u8]]) -> [u8; 32] {
    #[allow(clippy::expect_used)] // HMAC accepts keys of every length: this cannot fail.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(mac_secret).expect("HMAC takes keys of any size");
    mac.update(body);
    let mut len = 0usize;
    for part in extra {
        mac.update(part);
        len = len.saturating_add(part.len());
    }
    mac.update(&(len as u32).to_le_bytes());
    mac.finalize().into_bytes().into()
}

fn decrypt_error(what: &str) -> Error {
    Error::new(ErrorKind::Decrypt, format!("Failed to decrypt: {what}"))
}

/// The key of `encrypt_header`/`decrypt_header` under one secret, derived once:
/// `kdf(secret, "tde2e_encrypt_header")[0..32]`, kept as the HMAC-SHA512 state prepared with it
/// (so each header costs two SHA-512 compressions, not four). A call keeps one per epoch; it
/// zeroizes on drop (the `zeroize` features of `hmac` and `sha2`).
#[derive(Clone)]
pub struct HeaderKey {
    mac: Hmac<Sha512>,
    fingerprint: [u8; 4],
}

impl HeaderKey {
    /// Derives the header key of `secret`.
    pub fn new(secret: &[u8]) -> Self {
        let derived = kdf(secret, b"tde2e_encrypt_header");
        let (key, unused) = derived.halves();
        #[allow(clippy::expect_used)] // HMAC accepts keys of every length: this cannot fail.
        let mac = <Hmac<Sha512> as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any size");
        // A tag for `Debug` that costs no extra hash: four bytes of the half of the derivation the
        // protocol does not use (independent of the key half, so it reveals nothing about it).
        let mut fingerprint = [0u8; 4];
        fingerprint.copy_from_slice(unused.get(..4).unwrap_or(&[0; 4]));
        HeaderKey { mac, fingerprint }
    }

    fn cipher(&self, msg_id: &[u8]) -> Secret<64> {
        let mut mac = self.mac.clone();
        mac.update(msg_id);
        Secret(mac.finalize().into_bytes().into())
    }

    /// `encrypt_header`: encrypts a 32-byte header (a one-time secret), bound to the first 16
    /// bytes (msg_id) of `encrypted_message`.
    pub fn encrypt(&self, header: &[u8; 32], encrypted_message: &[u8]) -> Result<[u8; 32]> {
        let msg_id = encrypted_message.get(..16).ok_or_else(|| {
            Error::new(ErrorKind::InvalidInput, "Failed to encrypt header: encrypted_message is too small")
        })?;
        let mut out = *header;
        cbc_encrypt(&self.cipher(msg_id), &mut out)?;
        Ok(out)
    }

    /// `decrypt_header`: the inverse of [`HeaderKey::encrypt`] (unauthenticated; the MAC of the
    /// message it unlocks authenticates it).
    pub fn decrypt(&self, encrypted_header: &[u8], encrypted_message: &[u8]) -> Result<Secret<32>> {
        let msg_id = encrypted_message.get(..16).ok_or_else(|| decrypt_error("invalid message size"))?;
        let mut out = Secret::<32>::from_slice(encrypted_header).ok_or_else(|| decrypt_error("invalid header size"))?;
        cbc_decrypt(&self.cipher(msg_id), &mut out.0)?;
        Ok(out)
    }
}

// The prepared HMAC state is two SHA-512 cores (the inner and outer states) and an empty block
// buffer; with the `zeroize` features of `hmac` and `sha2` all of them wipe themselves on drop
// (checked below, as `hmac` does not mark `Hmac` itself).
impl ZeroizeOnDrop for HeaderKey {}
const _: fn() = || {
    fn wiped_on_drop<T: ZeroizeOnDrop>() {}
    wiped_on_drop::<<Sha512 as sha2::digest::block_api::CoreProxy>::Core>();
    wiped_on_drop::<sha2::digest::block_api::Buffer<<Sha512 as sha2::digest::block_api::CoreProxy>::Core>>();
    wiped_on_drop::<ExpandedSecretKey>();
    wiped_on_drop::<SigningKey>();
};

impl fmt::Debug for HeaderKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HeaderKey(fingerprint {})", hex4(&self.fingerprint))
    }
}

/// `encrypt_header(header32, encrypted_message, secret)`; see [`HeaderKey`] to reuse the key.
pub fn encrypt_header(header: &[u8; 32], encrypted_message: &[u8], secret: &[u8]) -> Result<[u8; 32]> {
    HeaderKey::new(secret).encrypt(header, encrypted_message)
}

/// `decrypt_header(encrypted_header, encrypted_message, secret)`; see [`HeaderKey`].
pub fn decrypt_header(encrypted_header: &[u8], encrypted_message: &[u8], secret: &[u8]) -> Result<Secret<32>> {
    HeaderKey::new(secret).decrypt(encrypted_header, encrypted_message)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verification hash is SHA-512 whichever backend computes it: same digests over every
    /// length around the block boundaries and a large block's, fed whole and in pieces, and the
    /// same verdicts on good and bad signatures.
    #[test]
    fn verification_sha512_is_sha512() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 + i / 251) as u8).collect();
        for len in (0..300).chain([1000, 96_316, 100_000]) {
            let (head, tail) = data[..len].split_at(len / 3);
            let whole = VerifySha512::digest(&data[..len]);
            let pieces = VerifySha512::new().chain_update(head).chain_update(tail).finalize();
            assert_eq!(whole[..], sha512(&data[..len])[..], "length {len}");
            assert_eq!(pieces, whole);
        }
        let key = PrivateKey::from_bytes(&[9; 32]);
        let signature = key.sign(&data);
        key.public_key().verify(&data, &signature).unwrap();
        assert!(key.public_key().verify(&data[1..], &signature).is_err());
    }

    /// Signed digits: in range, and they sum back to the number (checked mod l, for numbers below
    /// 2^253, every width).
    #[test]
    fn signed_digits_sum_back() {
        let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(3);
        for w in 4..=8u32 {
            for round in 0..500 {
                let mut x = [0u8; 32];
                rand_core::RngCore::fill_bytes(&mut rng, &mut x);
                x[31] &= 0x1f;
                if round == 0 {
                    x = [0xff; 32];
                    x[31] = 0x1f;
                }
                let digits = signed_digits(&x, w);
                let mut sum = Scalar::ZERO;
                let radix = Scalar::from(1u64 << w);
                for d in digits.iter().take(digit_count(w)).rev() {
                    assert!(d.unsigned_abs() <= 1 << (w - 1), "w {w} digit {d}");
                    let term = Scalar::from(u64::from(d.unsigned_abs()));
                    sum = sum * radix + if *d < 0 { -term } else { term };
                }
                assert!(digits.iter().skip(digit_count(w)).all(|d| *d == 0));
                assert_eq!(sum, Scalar::from_bytes_mod_order(x), "w {w}");
            }
        }
    }

    #[test]
    fn prefix_lengths() {
        for len in 0..100 {
            let n = prefix_len(len);
            assert!((16..32).contains(&n));
            assert_eq!((n + len) % 16, 0);
        }
    }

    #[test]
    fn secrets_are_redacted() {
        let s = Secret::from_bytes([0x41u8; 32]);
        let dbg = format!("{s:?}");
        assert!(!dbg.contains("4141"), "{dbg}");
        let k = PrivateKey::from_bytes(&[7u8; 32]);
        let dbg = format!("{k:?}");
        assert!(!dbg.contains("0707"), "{dbg}");
    }

    #[test]
    fn data_round_trip() {
        let mut rng = <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(1);
        for len in [0usize, 1, 15, 16, 17, 100] {
            let data = vec![9u8; len];
            let (enc, id) = encrypt_data(&data, b"secret", b"extra", &mut rng).unwrap();
            let (dec, id2) = decrypt_data(&enc, b"secret", b"extra").unwrap();
            assert_eq!(dec, data);
            assert_eq!(id, id2);
            assert!(decrypt_data(&enc, b"secret", b"other").is_err());
        }
    }
}

/// Results of pure computations shared by every member of a simulation (feature `testkit`, SPEC.md
/// §16): signature verdicts (key, message and signature), a key's usability, prepared keys'
/// tables, X25519 outputs. Each is a pure function of the bytes it is keyed by, all of them, so a
/// memoized result is exactly the computed one: the simulated members still check every
/// signature, the run just computes each distinct check once (a verification round's 2m
/// broadcasts are otherwise verified by all m members, and a join's m key headers are built again
/// at each lost race). Off unless a simulation runs (`memo::enable`); without the `sim` feature
/// it is not built.
pub(crate) mod memo {
    /// What a verdict is about (part of its key).
    #[derive(Clone, Copy)]
    #[cfg_attr(not(feature = "testkit"), allow(dead_code))]
    pub(crate) enum Check {
        /// [`super::PublicKey::verify`] and [`super::PreparedKey::verify`] (the same verdicts).
        Signature = 1,
        /// [`super::PublicKey::is_usable`].
        Usable = 2,
        /// Whether a key is a curve point (decompresses).
        Point = 3,
    }

    /// The memoized verdict of `check` over `parts`, or `check()` when no simulation runs here.
    #[cfg(not(feature = "testkit"))]
    #[inline(always)]
    pub(crate) fn verdict(_: Check, _: &[&[u8]], check: impl FnOnce() -> bool) -> bool {
        check()
    }

    /// The tables of a key (built by `build`), shared with every other member's with the memo on.
    #[cfg(not(feature = "testkit"))]
    #[inline(always)]
    pub(in crate::crypto) fn table(_: &[u8; 32], build: impl FnOnce() -> super::Table) -> std::sync::Arc<super::Table> {
        std::sync::Arc::new(build())
    }

    /// `compute()` (X25519 of `own`'s scalar with `their`), shared with every other member's with
    /// the memo on.
    #[cfg(not(feature = "testkit"))]
    #[inline(always)]
    pub(in crate::crypto) fn x25519(
        _: &super::PrivateKey,
        _: &super::PublicKey,
        compute: impl FnOnce() -> crate::Result<[u8; 32]>,
    ) -> crate::Result<[u8; 32]> {
        compute()
    }

    #[cfg(feature = "testkit")]
    pub(crate) use on::*;

    #[cfg(feature = "testkit")]
    mod on {
        use std::collections::HashMap;
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::{Arc, LazyLock, Mutex, MutexGuard};

        use curve25519_dalek::edwards::CompressedEdwardsY;
        use zeroize::Zeroizing;

        use super::super::{PrivateKey, PublicKey, Table};
        use super::Check;

        /// X25519 outputs kept before they start over.
        const MAX_SECRETS: usize = 1 << 18;
        /// Bytes of keys kept before the memo starts over (the checks are recomputed then).
        const MAX_BYTES: usize = 256 << 20;
        /// Tables kept before they start over (`PreparedKey::TABLE_BYTES` each).
        const MAX_TABLES: usize = 1_024;

        #[derive(Default)]
        struct Memo {
            verdicts: HashMap<Vec<u8>, bool>,
            bytes: usize,
            tables: HashMap<[u8; 32], Arc<Table>>,
            /// X25519 outputs by (our Ed25519 public key, theirs), wiped when dropped.
            secrets: HashMap<[u8; 64], Zeroizing<[u8; 32]>>,
        }

        /// Simulations running (in this process: the key headers of a block are built on
        /// rayon's threads, so the memo is the process's, not a thread's).
        static RUNNING: AtomicUsize = AtomicUsize::new(0);
        static MEMO: LazyLock<Mutex<Memo>> = LazyLock::new(Mutex::default);

        fn on() -> bool {
            RUNNING.load(Ordering::Relaxed) > 0
        }

        fn memo() -> MutexGuard<'static, Memo> {
            // A panic elsewhere while holding it leaves only whole entries: keep using it.
            MEMO.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        }

        /// Memoizes until dropped (the memo is emptied when the last simulation ends).
        pub(crate) struct Enabled(());

        /// Turns the memo on while a simulation runs.
        pub(crate) fn enable() -> Enabled {
            RUNNING.fetch_add(1, Ordering::SeqCst);
            Enabled(())
        }

        impl Drop for Enabled {
            fn drop(&mut self) {
                if RUNNING.fetch_sub(1, Ordering::SeqCst) == 1 {
                    *memo() = Memo::default();
                }
            }
        }

        /// The memoized verdict of `check` over `parts`, or `check()` when no simulation runs.
        pub(crate) fn verdict(what: Check, parts: &[&[u8]], check: impl FnOnce() -> bool) -> bool {
            if !on() {
                return check();
            }
            let mut key = Vec::with_capacity(parts.iter().fold(1, |n, p| n.saturating_add(p.len())));
            key.push(what as u8);
            for p in parts {
                // Every part but the last has a fixed length per kind: the concatenation is unambiguous.
                key.extend_from_slice(p);
            }
            if let Some(v) = memo().verdicts.get(&key).copied() {
                return v;
            }
            let v = check();
            let mut m = memo();
            if m.bytes.saturating_add(key.len()) > MAX_BYTES {
                m.verdicts.clear();
                m.bytes = 0;
            }
            m.bytes = m.bytes.saturating_add(key.len());
            m.verdicts.insert(key, v);
            v
        }

        /// The tables of a key (built by `build`), shared with every other member's with the memo on.
        pub(in crate::crypto) fn table(key: &[u8; 32], build: impl FnOnce() -> Table) -> Arc<Table> {
            if !on() {
                return Arc::new(build());
            }
            if let Some(t) = memo().tables.get(key).cloned() {
                return t;
            }
            let t = Arc::new(build());
            let mut m = memo();
            if m.tables.len() >= MAX_TABLES {
                m.tables.clear();
            }
            m.tables.insert(*key, t.clone());
            t
        }

        /// `compute()`: X25519 of `own`'s scalar `s` with `their` key, shared with every other
        /// member's with the memo on. Keyed by our public key `[s]B` rather than by the secret
        /// scalar, which is exact when `their` is a curve point `P`: `[s]P` depends only on
        /// `s mod 8l` (the curve's group has order `8l`), `[s]B` fixes `s mod l`, and the clamped
        /// `s` is a multiple of 8. A key that is not a point (X25519 on the twist, whose order is
        /// another) is computed every time.
        pub(in crate::crypto) fn x25519(
            own: &PrivateKey,
            their: &PublicKey,
            compute: impl FnOnce() -> crate::Result<[u8; 32]>,
        ) -> crate::Result<[u8; 32]> {
            if !on() {
                return compute();
            }
            let point = verdict(Check::Point, &[their.as_bytes()], || {
                CompressedEdwardsY(*their.as_bytes()).decompress().is_some()
            });
            if !point {
                return compute();
            }
            let mut key = [0u8; 64];
            key[..32].copy_from_slice(own.public_key().as_bytes());
            key[32..].copy_from_slice(their.as_bytes());
            if let Some(x) = memo().secrets.get(&key).map(|x| **x) {
                return Ok(x);
            }
            let x = compute()?;
            let mut m = memo();
            if m.secrets.len() >= MAX_SECRETS {
                m.secrets.clear();
            }
            m.secrets.insert(key, Zeroizing::new(x));
            Ok(x)
        }
    }
}
