//! Short, fixed-size index keys for long text identifiers.
//!
//! Message-IDs, content hashes and blob digests are 40–100 characters long and random, so
//! an index over the text itself is large and every insert lands on a page of its own.
//! The store indexes a 64-bit [`lookup_key`] of such a column instead: the index is five
//! to eight times smaller, stays in cache, and a batch of inserts shares its pages.
//! A key is only a hint: a lookup by key must compare the full text of the rows it finds,
//! because different texts may (very rarely) share a key.

use sha2::{Digest, Sha256};

/// The first eight bytes of the SHA-256 of `text`, as a big-endian signed integer (the
/// type both SQLite and PostgreSQL index natively). A cryptographic hash keeps the keys
/// evenly spread even for identifiers a sender chose to collide.
pub fn lookup_key(text: &str) -> i64 {
    let digest = Sha256::digest(text.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_stable_across_versions() {
        // A stored key must match the key computed by any later version: this pins the
        // function (SHA-256("abc") starts ba7816bf8f01cfea).
        assert_eq!(lookup_key("abc"), 0xba78_16bf_8f01_cfea_u64 as i64);
    }

    #[test]
    fn different_texts_get_different_keys() {
        assert_ne!(lookup_key("<a@example.com>"), lookup_key("<b@example.com>"));
        assert_ne!(lookup_key(""), lookup_key(" "));
    }
}
