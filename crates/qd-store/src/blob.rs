//! Raw mail, kept compressed in the `blobs` table.
//!
//! A blob is addressed by the SHA-256 of its raw bytes *within a scope*. The scope names
//! whose key will protect the blob (today `contact-<id>`, the sender the message is filed
//! under); the codec says how the bytes were written (today `zstd`). Both are recorded
//! per row, so a later codec (`zstd+xchacha20poly1305` with a per-scope key) can coexist
//! with old blobs, and erasing a scope is deleting its rows (and later its key).
//!
//! Why in the database and not one file per blob: the row and its bytes then commit in
//! one transaction (no orphan files, no rows pointing at missing files), erasure has one
//! place to prove (SQLite `secure_delete`, PostgreSQL vacuum), and creating an inode per
//! message cost 40% of an import's CPU on ext4 (measured with `perf`, 100k messages).

use std::cell::RefCell;
use std::io;

use sha2::{Digest, Sha256};

/// The codec every new blob is written with.
pub const CODEC_ZSTD: &str = "zstd";

/// zstd level 1: raw mail compresses ~3x at this level and it keeps import CPU-light;
/// higher levels gain a few percent at several times the cost.
const ZSTD_LEVEL: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("unknown blob codec `{0}`")]
    UnknownCodec(String),
    #[error("blob {digest} is corrupt: its content no longer matches its digest")]
    Corrupt { digest: String },
    #[error("compressing or decompressing a blob failed: {0}")]
    Codec(io::Error),
}

/// A raw message hashed and compressed, ready to be stored. Preparing is CPU work that
/// the import pipeline does in parallel, off the writer.
#[derive(Debug, Clone)]
pub struct PreparedBlob {
    pub digest: String,
    pub size: u64,
    pub data: Vec<u8>,
    /// What an erasure looks for: [`qd_core::mentioned_addresses`] of the raw mail.
    pub mentions: Vec<String>,
}

impl PreparedBlob {
    pub fn prepare(raw: &[u8]) -> Result<PreparedBlob, BlobError> {
        let digest = hex::encode(Sha256::digest(raw));
        // A compression context costs more to set up than a small message costs to
        // compress: keep one per thread.
        thread_local! {
            static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
                const { RefCell::new(None) };
        }
        let data = COMPRESSOR.with(|cell| {
            let mut slot = cell.borrow_mut();
            if slot.is_none() {
                *slot = Some(zstd::bulk::Compressor::new(ZSTD_LEVEL).map_err(BlobError::Codec)?);
            }
            match slot.as_mut() {
                Some(c) => c.compress(raw).map_err(BlobError::Codec),
                None => Err(BlobError::Codec(io::Error::other("no zstd context"))),
            }
        })?;
        Ok(PreparedBlob {
            digest,
            size: raw.len() as u64,
            data,
            mentions: qd_core::mentioned_addresses(raw),
        })
    }
}

/// Turns stored bytes back into the raw message and checks them against the digest.
pub fn decode(codec: &str, data: &[u8], digest: &str) -> Result<Vec<u8>, BlobError> {
    if codec != CODEC_ZSTD {
        return Err(BlobError::UnknownCodec(codec.to_string()));
    }
    let raw = zstd::stream::decode_all(data).map_err(BlobError::Codec)?;
    if hex::encode(Sha256::digest(&raw)) != digest {
        return Err(BlobError::Corrupt {
            digest: digest.to_string(),
        });
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_shrinks() {
        let raw = b"Subject: hi\r\n\r\nhello hello hello hello\r\n".repeat(20);
        let blob = PreparedBlob::prepare(&raw).unwrap();
        assert!(
            blob.data.len() < raw.len() / 2,
            "zstd should shrink repetitive mail"
        );
        assert_eq!(decode(CODEC_ZSTD, &blob.data, &blob.digest).unwrap(), raw);
        // The thread's reused context gives the same result for the next blob.
        let again = PreparedBlob::prepare(&raw).unwrap();
        assert_eq!(again.data, blob.data);
    }

    #[test]
    fn detects_corruption_and_unknown_codecs() {
        let one = PreparedBlob::prepare(b"one").unwrap();
        let two = PreparedBlob::prepare(b"two").unwrap();
        assert!(matches!(
            decode(CODEC_ZSTD, &two.data, &one.digest),
            Err(BlobError::Corrupt { .. })
        ));
        assert!(matches!(
            decode("rot13", &one.data, &one.digest),
            Err(BlobError::UnknownCodec(_))
        ));
    }
}
