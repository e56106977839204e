//! One-to-one calls: the Diffie-Hellman exchange of `phone.requestCall` / `acceptCall` /
//! `confirmCall` in the 2048-bit group of `messages.getDhConfig`.
//!
//! ```text
//!  caller                                   callee
//!  Caller::new(config, rng): a, g_a
//!  requestCall(g_a_hash) ───────────────▶   Callee::new(config, g_a_hash, rng): b, g_b
//!                        ◀─────────────── acceptCall(g_b)
//!  Caller::on_accepted(g_b) → key, fingerprint
//!  confirmCall(g_a, fingerprint) ───────▶   Callee::on_confirmed(g_a, fingerprint) → key
//!  both show emojis_from_hash(SHA-256(key || g_a))
//! ```
//!
//! Big numbers come from `crypto-bigint` (fixed-size 2048-bit integers; modular exponentiation
//! with the secret exponents runs in constant time, and the exponents zeroize on drop), primality
//! from `crypto-primes` (Baillie-PSW: Miller-Rabin base 2 and a strong Lucas test, no known
//! counterexample, deterministic, so no RNG is needed). See SPEC.md §13.

use std::collections::HashSet;

use crypto_bigint::modular::runtime_mod::{DynResidue, DynResidueParams};
use crypto_bigint::{Encoding, Integer, U2048};
use crypto_primes::hazmat::{lucas_test, AStarBase, LucasCheck, MillerRabin};
use rand_core::CryptoRngCore;
use sha1::Sha1;
use sha2::Digest;
use zeroize::Zeroize;

use crate::crypto::{self, Secret};
use crate::emoji::emojis_from_hash;
use crate::error::{Error, ErrorKind, Result};

/// Telegram's current `dh_prime` (with g = 3), a known safe prime (big-endian).
pub const TELEGRAM_PRIME: [u8; 256] = [
    0xc7, 0x1c, 0xae, 0xb9, 0xc6, 0xb1, 0xc9, 0x04, 0x8e, 0x6c, 0x52, 0x2f, 0x70, 0xf1, 0x3f, 0x73, 0x98, 0x0d, 0x40,
    0x23, 0x8e, 0x3e, 0x21, 0xc1, 0x49, 0x34, 0xd0, 0x37, 0x56, 0x3d, 0x93, 0x0f, 0x48, 0x19, 0x8a, 0x0a, 0xa7, 0xc1,
    0x40, 0x58, 0x22, 0x94, 0x93, 0xd2, 0x25, 0x30, 0xf4, 0xdb, 0xfa, 0x33, 0x6f, 0x6e, 0x0a, 0xc9, 0x25, 0x13, 0x95,
    0x43, 0xae, 0xd4, 0x4c, 0xce, 0x7c, 0x37, 0x20, 0xfd, 0x51, 0xf6, 0x94, 0x58, 0x70, 0x5a, 0xc6, 0x8c, 0xd4, 0xfe,
    0x6b, 0x6b, 0x13, 0xab, 0xdc, 0x97, 0x46, 0x51, 0x29, 0x69, 0x32, 0x84, 0x54, 0xf1, 0x8f, 0xaf, 0x8c, 0x59, 0x5f,
    0x64, 0x24, 0x77, 0xfe, 0x96, 0xbb, 0x2a, 0x94, 0x1d, 0x5b, 0xcd, 0x1d, 0x4a, 0xc8, 0xcc, 0x49, 0x88, 0x07, 0x08,
    0xfa, 0x9b, 0x37, 0x8e, 0x3c, 0x4f, 0x3a, 0x90, 0x60, 0xbe, 0xe6, 0x7c, 0xf9, 0xa4, 0xa4, 0xa6, 0x95, 0x81, 0x10,
    0x51, 0x90, 0x7e, 0x16, 0x27, 0x53, 0xb5, 0x6b, 0x0f, 0x6b, 0x41, 0x0d, 0xba, 0x74, 0xd8, 0xa8, 0x4b, 0x2a, 0x14,
    0xb3, 0x14, 0x4e, 0x0e, 0xf1, 0x28, 0x47, 0x54, 0xfd, 0x17, 0xed, 0x95, 0x0d, 0x59, 0x65, 0xb4, 0xb9, 0xdd, 0x46,
    0x58, 0x2d, 0xb1, 0x17, 0x8d, 0x16, 0x9c, 0x6b, 0xc4, 0x65, 0xb0, 0xd6, 0xff, 0x9c, 0xa3, 0x92, 0x8f, 0xef, 0x5b,
    0x9a, 0xe4, 0xe4, 0x18, 0xfc, 0x15, 0xe8, 0x3e, 0xbe, 0xa0, 0xf8, 0x7f, 0xa9, 0xff, 0x5e, 0xed, 0x70, 0x05, 0x0d,
    0xed, 0x28, 0x49, 0xf4, 0x7b, 0xf9, 0x59, 0xd9, 0x56, 0x85, 0x0c, 0xe9, 0x29, 0x85, 0x1f, 0x0d, 0x81, 0x15, 0xf6,
    0x35, 0xb1, 0x05, 0xee, 0x2e, 0x4e, 0x15, 0xd0, 0x4b, 0x24, 0x54, 0xbf, 0x6f, 0x4f, 0xad, 0xf0, 0x34, 0xb1, 0x04,
    0x03, 0x11, 0x9c, 0xd8, 0xe3, 0xb9, 0x2f, 0xcc, 0x5b,
];

fn check_error(message: &str) -> Error {
    Error::new(ErrorKind::DhCheck, message)
}

/// Primes already proven safe (or not), so the slow test runs once per prime. Starts with
/// [`TELEGRAM_PRIME`] marked good.
#[derive(Debug, Clone)]
pub struct PrimeCache {
    good: HashSet<[u8; 256]>,
    bad: HashSet<[u8; 256]>,
}

impl Default for PrimeCache {
    fn default() -> Self {
        PrimeCache { good: HashSet::from([TELEGRAM_PRIME]), bad: HashSet::new() }
    }
}

impl PrimeCache {
    /// A cache that knows only [`TELEGRAM_PRIME`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty cache: every prime is tested.
    pub fn empty() -> Self {
        PrimeCache { good: HashSet::new(), bad: HashSet::new() }
    }

    /// Marks `p` (256 bytes, big-endian) as a known safe prime.
    pub fn mark_good(&mut self, p: [u8; 256]) {
        self.good.insert(p);
    }
}

/// Baillie-PSW on an odd candidate.
fn is_prime(n: &U2048) -> bool {
    if n.is_even().into() {
        return *n == U2048::from_u8(2);
    }
    if *n == U2048::ONE {
        return false;
    }
    MillerRabin::new(n).test_base_two().is_probably_prime()
        && lucas_test(n, AStarBase, LucasCheck::Strong).is_probably_prime()
}

/// A checked DH configuration (`messages.getDhConfig`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DhConfig {
    g: u32,
    p: U2048,
}

/// Parses a big-endian number of at most 256 bytes.
fn number(bytes: &[u8]) -> Option<U2048> {
    if bytes.len() > 256 {
        return None;
    }
    let mut padded = [0u8; 256];
    padded.get_mut(256usize.checked_sub(bytes.len())?..)?.copy_from_slice(bytes);
    Some(U2048::from_be_bytes(padded))
}

/// Minimal big-endian form (no leading zero bytes), as `g_a` and `g_b` travel.
fn minimal(n: &U2048) -> Vec<u8> {
    let bytes = n.to_be_bytes();
    let first = bytes.iter().position(|b| *b != 0).unwrap_or(bytes.len());
    bytes.get(first..).unwrap_or_default().to_vec()
}

impl DhConfig {
    /// Checks `g` and `p` as the reference does: p has exactly 2048 bits ("p is not 2048-bit
    /// number"), g in 2..=7 with the quadratic-residue rule on p mod 4g ("Bad prime mod 4g"), p prime
    /// ("p is not a prime number") and (p - 1) / 2 prime ("(p - 1) / 2 is not a prime number"),
    /// the last two skipped for primes `cache` knows (and remembered when proven).
    pub fn new(g: i32, p: &[u8], cache: &mut PrimeCache) -> Result<Self> {
        let n = number(p).ok_or_else(|| check_error("p is not 2048-bit number"))?;
        if n.bits_vartime() != 2048 {
            return Err(check_error("p is not 2048-bit number"));
        }
        let bytes = n.to_be_bytes();
        // r < m <= 24, so r * 256 + 255 cannot overflow.
        let rem = |m: u32| {
            bytes
                .iter()
                .fold(0u32, |r, b| (r.wrapping_mul(256).wrapping_add(u32::from(*b))).checked_rem(m).unwrap_or(0))
        };
        let mod_ok = match g {
            2 => rem(8) == 7,
            3 => rem(3) == 2,
            4 => true,
            5 => matches!(rem(5), 1 | 4),
            6 => matches!(rem(24), 19 | 23),
            7 => matches!(rem(7), 3 | 5 | 6),
            _ => false,
        };
        if !mod_ok {
            return Err(check_error("Bad prime mod 4g"));
        }
        let key = n.to_be_bytes();
        if cache.bad.contains(&key) {
            return Err(check_error("p or (p - 1) / 2 is not a prime number"));
        }
        if !cache.good.contains(&key) {
            if !is_prime(&n) {
                cache.bad.insert(key);
                return Err(check_error("p is not a prime number"));
            }
            if !is_prime(&n.shr_vartime(1)) {
                cache.bad.insert(key);
                return Err(check_error("(p - 1) / 2 is not a prime number"));
            }
            cache.good.insert(key);
        }
        Ok(DhConfig { g: g as u32, p: n })
    }

    /// Telegram's current configuration (g = 3, [`TELEGRAM_PRIME`]), without re-testing.
    pub fn telegram() -> Self {
        DhConfig { g: 3, p: U2048::from_be_bytes(TELEGRAM_PRIME) }
    }

    /// The generator.
    pub fn g(&self) -> u32 {
        self.g
    }

    /// The prime, 256 bytes big-endian.
    pub fn p(&self) -> [u8; 256] {
        self.p.to_be_bytes()
    }

    /// `base^exp mod p`, constant-time in `exp`.
    fn pow(&self, base: &U2048, exp: &U2048) -> U2048 {
        let params = DynResidueParams::new(&self.p);
        let mut power = DynResidue::new(base, params).pow(exp);
        let out = power.retrieve();
        power.zeroize();
        out
    }

    /// Both public values must lie in [2^1984, p - 2^1984].
    fn range_check(&self, g_a: &U2048, g_b: &U2048) -> Result<()> {
        let low = U2048::ONE.shl_vartime(2048 - 64);
        let high = self.p.wrapping_sub(&low);
        if [g_a, g_b].iter().any(|x| **x < low || **x > high) {
            return Err(check_error("g^a or g^b is not between 2^{2048-64} and dh_prime - 2^{2048-64}"));
        }
        Ok(())
    }
}

/// A secret 2048-bit exponent; zeroized on drop.
struct Exponent(U2048);

impl Drop for Exponent {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl Exponent {
    fn random(rng: &mut impl CryptoRngCore) -> Self {
        let mut bytes = [0u8; 256];
        rng.fill_bytes(&mut bytes);
        let e = Exponent(U2048::from_be_bytes(bytes));
        bytes.zeroize();
        e
    }
}

/// The agreed key of a one-to-one call.
#[derive(Clone, PartialEq, Eq)]
pub struct DhKey {
    key: Secret<256>,
    fingerprint: i64,
    emoji_hash: [u8; 32],
}

impl std::fmt::Debug for DhKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DhKey(fingerprint {})", self.fingerprint)
    }
}

impl DhKey {
    /// Takes the shared power `g^ab mod p` and wipes it (and every copy made here).
    fn new(mut shared: U2048, g_a: &U2048) -> Self {
        let mut bytes = shared.to_be_bytes();
        shared.zeroize();
        let key = Secret::from_bytes(bytes);
        bytes.zeroize();
        let sha = Sha1::digest(key.expose());
        let mut fp = [0u8; 8];
        fp.copy_from_slice(sha.get(12..20).unwrap_or(&[0; 8]));
        let mut h = sha2::Sha256::new();
        h.update(key.expose());
        h.update(minimal(g_a));
        DhKey { key, fingerprint: i64::from_le_bytes(fp), emoji_hash: h.finalize().into() }
    }

    /// The 256-byte key (big-endian, with leading zeros).
    pub fn key(&self) -> &Secret<256> {
        &self.key
    }

    /// `key_fingerprint`: the little-endian int64 at bytes 12..20 of SHA-1(key).
    pub fn fingerprint(&self) -> i64 {
        self.fingerprint
    }

    /// The four emojis both sides show: from SHA-256(key || g_a).
    pub fn emojis(&self) -> [&'static str; 4] {
        emojis_from_hash(&self.emoji_hash)
    }
}

/// The calling side.
pub struct Caller {
    config: DhConfig,
    a: Exponent,
    g_a: U2048,
}

/// What the caller sends in confirmCall, and the key.
#[derive(Debug, Clone)]
pub struct Confirmation {
    /// `g_a`, minimal big-endian.
    pub g_a: Vec<u8>,
    /// `key_fingerprint`.
    pub key_fingerprint: i64,
    /// The key.
    pub key: DhKey,
}

impl Caller {
    /// Draws the secret `a` (256 bytes from `rng`) and computes `g_a`.
    pub fn new(config: DhConfig, rng: &mut impl CryptoRngCore) -> Self {
        Caller::with_exponent(config, Exponent::random(rng))
    }

    /// With a given exponent (256 bytes, big-endian), for known-answer tests.
    pub fn from_exponent(config: DhConfig, a: &[u8]) -> Result<Self> {
        let a = number(a).ok_or_else(|| Error::new(ErrorKind::InvalidInput, "exponent longer than 256 bytes"))?;
        Ok(Caller::with_exponent(config, Exponent(a)))
    }

    fn with_exponent(config: DhConfig, a: Exponent) -> Self {
        let g_a = config.pow(&U2048::from_u32(config.g), &a.0);
        Caller { config, a, g_a }
    }

    /// `g_a`, minimal big-endian.
    pub fn g_a(&self) -> Vec<u8> {
        minimal(&self.g_a)
    }

    /// `g_a_hash = SHA-256(g_a)`, for requestCall.
    pub fn g_a_hash(&self) -> [u8; 32] {
        crypto::sha256(&self.g_a())
    }

    /// On phoneCallAccepted: checks `g_b`, computes the key and what confirmCall sends.
    pub fn on_accepted(&self, g_b: &[u8]) -> Result<Confirmation> {
        let g_b = number(g_b)
            .ok_or_else(|| check_error("g^a or g^b is not between 2^{2048-64} and dh_prime - 2^{2048-64}"))?;
        self.config.range_check(&self.g_a, &g_b)?;
        let key = DhKey::new(self.config.pow(&g_b, &self.a.0), &self.g_a);
        Ok(Confirmation { g_a: self.g_a(), key_fingerprint: key.fingerprint(), key })
    }
}

/// The called side.
pub struct Callee {
    config: DhConfig,
    b: Exponent,
    g_b: U2048,
    g_a_hash: [u8; 32],
}

impl Callee {
    /// On an incoming call (with the caller's `g_a_hash`): draws `b` (256 bytes) and computes `g_b`.
    pub fn new(config: DhConfig, g_a_hash: [u8; 32], rng: &mut impl CryptoRngCore) -> Self {
        Callee::with_exponent(config, g_a_hash, Exponent::random(rng))
    }

    /// With a given exponent (256 bytes, big-endian), for known-answer tests.
    pub fn from_exponent(config: DhConfig, g_a_hash: [u8; 32], b: &[u8]) -> Result<Self> {
        let b = number(b).ok_or_else(|| Error::new(ErrorKind::InvalidInput, "exponent longer than 256 bytes"))?;
        Ok(Callee::with_exponent(config, g_a_hash, Exponent(b)))
    }

    fn with_exponent(config: DhConfig, g_a_hash: [u8; 32], b: Exponent) -> Self {
        let g_b = config.pow(&U2048::from_u32(config.g), &b.0);
        Callee { config, b, g_b, g_a_hash }
    }

    /// `g_b`, minimal big-endian, for acceptCall.
    pub fn g_b(&self) -> Vec<u8> {
        minimal(&self.g_b)
    }

    /// On phoneCall with `g_a` and `key_fingerprint`: checks the hash ("g_a_hash mismatch"), the
    /// range, computes the key and checks the fingerprint.
    pub fn on_confirmed(&self, g_a: &[u8], key_fingerprint: i64) -> Result<DhKey> {
        let key = self.check(g_a)?;
        if key.fingerprint() != key_fingerprint {
            return Err(check_error("Key fingerprint mismatch"));
        }
        Ok(key)
    }

    fn check(&self, g_a: &[u8]) -> Result<DhKey> {
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&crypto::sha256(g_a)[..], &self.g_a_hash[..])) {
            return Err(check_error("g_a_hash mismatch"));
        }
        let g_a = number(g_a)
            .ok_or_else(|| check_error("g^a or g^b is not between 2^{2048-64} and dh_prime - 2^{2048-64}"))?;
        self.config.range_check(&g_a, &self.g_b)?;
        Ok(DhKey::new(self.config.pow(&g_a, &self.b.0), &g_a))
    }
}

/// The reference's combined check, for both roles: `g_a` against `g_a_hash` (when given), the
/// configuration (skipping the primality tests for primes `cache` knows), then both values' range.
pub fn run_checks(
    g: i32,
    p: &[u8],
    g_a: &[u8],
    g_b: &[u8],
    g_a_hash: Option<&[u8]>,
    cache: &mut PrimeCache,
) -> Result<()> {
    if let Some(hash) = g_a_hash {
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&crypto::sha256(g_a)[..], hash)) {
            return Err(check_error("g_a_hash mismatch"));
        }
    }
    let config = DhConfig::new(g, p, cache)?;
    let range = || check_error("g^a or g^b is not between 2^{2048-64} and dh_prime - 2^{2048-64}");
    let (a, b) = (number(g_a).ok_or_else(range)?, number(g_b).ok_or_else(range)?);
    config.range_check(&a, &b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn telegram_prime_is_a_safe_prime() {
        let p = U2048::from_be_bytes(TELEGRAM_PRIME);
        assert!(is_prime(&p));
        assert!(is_prime(&p.shr_vartime(1)));
        assert!(DhConfig::new(3, &TELEGRAM_PRIME, &mut PrimeCache::empty()).is_ok());
    }
}
