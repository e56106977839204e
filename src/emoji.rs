//! Telegram's emoji fingerprints: the 333-emoji table and the four emojis of a hash, shared by the
//! conference verification and one-to-one calls.

const EMOJI_DATA: &str = include_str!("data/emojis.txt");

/// Telegram's 333-emoji fingerprint table, in order.
pub fn emoji_table() -> impl Iterator<Item = &'static str> {
    EMOJI_DATA.lines()
}

/// The table, split once (looking an emoji up by position must not walk the text every time).
fn table() -> &'static [&'static str] {
    static TABLE: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| emoji_table().collect())
}

fn emoji(i: usize) -> &'static str {
    table().get(i).copied().unwrap_or("?")
}

/// The four emojis for a hash of at least 32 bytes: for i in 0..4,
/// `EMOJIS[(be64(hash[8i..8i+8]) & 0x7fff_ffff_ffff_ffff) % 333]`.
///
/// ```
/// let emojis = confchain::emojis_from_hash(&[0u8; 32]);
/// assert_eq!(emojis.len(), 4);
/// ```
pub fn emojis_from_hash(hash: &[u8]) -> [&'static str; 4] {
    let mut out = ["?"; 4];
    for (slot, chunk) in out.iter_mut().zip(hash.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        let v = u64::from_be_bytes(b) & 0x7fff_ffff_ffff_ffff;
        *slot = emoji((v % 333) as usize);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn table_has_its_size() {
        assert_eq!(super::emoji_table().count(), 333);
    }
}
