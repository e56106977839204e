//! Property tests of the one-to-one DH exchange: random exchanges always agree; tampering with any
//! message is always refused with the right error.

use confchain::p2p::{Callee, Caller, DhConfig};
use confchain::ErrorKind;
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn cases() -> u32 {
    std::env::var("CONFCHAIN_CASES").ok().and_then(|v| v.parse().ok()).map(|n: u32| n / 10).unwrap_or(12).max(1)
}

const RANGE: &str = "g^a or g^b is not between 2^{2048-64} and dh_prime - 2^{2048-64}";

#[derive(Debug, Clone)]
enum Tamper {
    GbBit(usize),
    GaBit(usize),
    Fingerprint(i64),
    GbSmall(u8),
    GaHash(usize),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        (0usize..2048).prop_map(Tamper::GbBit),
        (0usize..2048).prop_map(Tamper::GaBit),
        any::<i64>().prop_filter("changes", |x| *x != 0).prop_map(Tamper::Fingerprint),
        any::<u8>().prop_map(Tamper::GbSmall),
        (0usize..256).prop_map(Tamper::GaHash),
    ]
}

fn flip(v: &mut [u8], bit: usize) {
    let n = v.len();
    v[n - 1 - (bit / 8) % n] ^= 1 << (bit % 8);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn exchanges_agree(seed in any::<u64>()) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let caller = Caller::new(DhConfig::telegram(), &mut rng);
        let callee = Callee::new(DhConfig::telegram(), caller.g_a_hash(), &mut rng);
        let confirm = caller.on_accepted(&callee.g_b()).unwrap();
        let key = callee.on_confirmed(&confirm.g_a, confirm.key_fingerprint).unwrap();
        prop_assert_eq!(&key, &confirm.key);
        prop_assert_eq!(key.emojis(), confirm.key.emojis());
    }

    #[test]
    fn tampering_is_refused(seed in any::<u64>(), t in tamper()) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let caller = Caller::new(DhConfig::telegram(), &mut rng);
        let mut g_a_hash = caller.g_a_hash();
        if let Tamper::GaHash(i) = t {
            g_a_hash[i % 32] ^= 1 << (i % 8);
        }
        let callee = Callee::new(DhConfig::telegram(), g_a_hash, &mut rng);
        let mut g_b = callee.g_b();
        match t {
            Tamper::GbBit(bit) => flip(&mut g_b, bit),
            Tamper::GbSmall(x) => g_b = vec![x],
            _ => {}
        }
        let confirm = match caller.on_accepted(&g_b) {
            Ok(c) => c,
            Err(e) => {
                prop_assert_eq!(e.kind(), ErrorKind::DhCheck);
                prop_assert_eq!(e.message(), RANGE);
                return Ok(());
            }
        };
        let mut g_a = confirm.g_a.clone();
        let mut fingerprint = confirm.key_fingerprint;
        match t {
            Tamper::GaBit(bit) => flip(&mut g_a, bit),
            Tamper::Fingerprint(x) => fingerprint ^= x,
            _ => {}
        }
        let err = callee.on_confirmed(&g_a, fingerprint).unwrap_err();
        prop_assert_eq!(err.kind(), ErrorKind::DhCheck);
        let expected = match t {
            Tamper::GaBit(_) | Tamper::GaHash(_) => "g_a_hash mismatch",
            _ => "Key fingerprint mismatch",
        };
        prop_assert_eq!(err.message(), expected);
    }
}
