//! Raw-mail blob store: one file per blob under `<root>/<scope>/<aa>/<digest>.<codec>`.
//!
//! A blob is addressed by the SHA-256 of its raw bytes *within a scope*. The scope names
//! whose key protects the blob (today `contact-<id>`, the sender the message is filed
//! under); the codec says how the bytes were written (today `zstd`). Both are recorded in
//! the `blobs` row, so a later codec (`zstd+xchacha20poly1305` with a per-scope key) can
//! coexist with old blobs, and erasing a scope means deleting its directory and, once
//! encrypted, its key. Files are written to a temporary name and renamed, so a crash
//! never leaves a half-written blob under a real name.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The codec every new blob is written with.
pub const CODEC_ZSTD: &str = "zstd";

/// zstd level 1: raw mail compresses ~3x at this level and it keeps import CPU-light;
/// higher levels gain a few percent at several times the cost.
const ZSTD_LEVEL: i32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("blob scope `{0}` is not a safe name (lowercase letters, digits and `-` only)")]
    BadScope(String),
    #[error("blob digest `{0}` is not a lowercase hex SHA-256")]
    BadDigest(String),
    #[error("unknown blob codec `{0}`")]
    UnknownCodec(String),
    #[error("blob {digest} is corrupt: its content no longer matches its digest")]
    Corrupt { digest: String },
    #[error("compressing a blob failed: {0}")]
    Compress(io::Error),
    #[error("blob I/O at {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// A raw message hashed and compressed, ready to be written under a scope. Preparing is
/// CPU work that the import pipeline does in parallel, off the writer.
#[derive(Debug, Clone)]
pub struct PreparedBlob {
    pub digest: String,
    pub size: u64,
    pub data: Vec<u8>,
}

impl PreparedBlob {
    pub fn prepare(raw: &[u8]) -> Result<PreparedBlob, BlobError> {
        let digest = hex::encode(Sha256::digest(raw));
        let data = zstd::bulk::compress(raw, ZSTD_LEVEL).map_err(BlobError::Compress)?;
        Ok(PreparedBlob {
            digest,
            size: raw.len() as u64,
            data,
        })
    }
}

#[derive(Debug, Clone)]
pub struct BlobStore {
    root: PathBuf,
}

fn valid_scope(scope: &str) -> bool {
    !scope.is_empty()
        && scope.len() <= 64
        && scope
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn valid_digest(digest: &str) -> bool {
    digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl BlobStore {
    pub fn open(root: &Path) -> Result<BlobStore, BlobError> {
        fs::create_dir_all(root).map_err(|source| BlobError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        Ok(BlobStore {
            root: root.to_path_buf(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory holding every blob of one scope.
    pub fn scope_dir(&self, scope: &str) -> Result<PathBuf, BlobError> {
        if !valid_scope(scope) {
            return Err(BlobError::BadScope(scope.to_string()));
        }
        Ok(self.root.join(scope))
    }

    pub fn path(&self, scope: &str, digest: &str) -> Result<PathBuf, BlobError> {
        if !valid_digest(digest) {
            return Err(BlobError::BadDigest(digest.to_string()));
        }
        Ok(self
            .scope_dir(scope)?
            .join(&digest[..2])
            .join(format!("{digest}.{CODEC_ZSTD}")))
    }

    /// Writes the blob unless the scope already holds it (content addressing makes a
    /// second write of the same digest a no-op).
    pub fn write(&self, scope: &str, blob: &PreparedBlob) -> Result<(), BlobError> {
        let path = self.path(scope, &blob.digest)?;
        if path.exists() {
            return Ok(());
        }
        let io_err = |source| BlobError::Io {
            path: path.clone(),
            source,
        };
        let dir = path.parent().unwrap_or(&self.root);
        fs::create_dir_all(dir).map_err(io_err)?;
        let tmp = dir.join(format!(".{}.tmp{}", blob.digest, std::process::id()));
        let mut f = fs::File::create(&tmp).map_err(io_err)?;
        f.write_all(&blob.data).map_err(io_err)?;
        drop(f);
        fs::rename(&tmp, &path).map_err(io_err)?;
        Ok(())
    }

    /// Reads a blob back and checks it against its digest.
    pub fn read(&self, scope: &str, digest: &str, codec: &str) -> Result<Vec<u8>, BlobError> {
        if codec != CODEC_ZSTD {
            return Err(BlobError::UnknownCodec(codec.to_string()));
        }
        let path = self.path(scope, digest)?;
        let data = fs::read(&path).map_err(|source| BlobError::Io {
            path: path.clone(),
            source,
        })?;
        let raw = zstd::stream::decode_all(&data[..]).map_err(|source| BlobError::Io {
            path: path.clone(),
            source,
        })?;
        if hex::encode(Sha256::digest(&raw)) != digest {
            return Err(BlobError::Corrupt {
                digest: digest.to_string(),
            });
        }
        Ok(raw)
    }

    /// Removes a blob file; `Ok(false)` when it was already gone.
    pub fn delete(&self, scope: &str, digest: &str) -> Result<bool, BlobError> {
        let path = self.path(scope, digest)?;
        match fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(BlobError::Io { path, source }),
        }
    }

    /// Number of blob files on disk (for `stats` and erasure checks).
    pub fn count_files(&self) -> Result<u64, BlobError> {
        fn walk(dir: &Path, n: &mut u64) -> io::Result<()> {
            for entry in fs::read_dir(dir)? {
                let entry = entry?;
                let ty = entry.file_type()?;
                if ty.is_dir() {
                    walk(&entry.path(), n)?;
                } else if entry.file_name().to_string_lossy().ends_with(CODEC_ZSTD) {
                    *n += 1;
                }
            }
            Ok(())
        }
        let mut n = 0;
        walk(&self.root, &mut n).map_err(|source| BlobError::Io {
            path: self.root.clone(),
            source,
        })?;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let raw = b"Subject: hi\r\n\r\nhello hello hello hello\r\n".repeat(20);
        let blob = PreparedBlob::prepare(&raw).unwrap();
        assert!(
            blob.data.len() < raw.len(),
            "zstd should shrink repetitive mail"
        );
        store.write("contact-1", &blob).unwrap();
        store.write("contact-1", &blob).unwrap();
        assert_eq!(store.count_files().unwrap(), 1);
        assert_eq!(
            store.read("contact-1", &blob.digest, CODEC_ZSTD).unwrap(),
            raw
        );
        assert!(store.delete("contact-1", &blob.digest).unwrap());
        assert!(!store.delete("contact-1", &blob.digest).unwrap());
        assert_eq!(store.count_files().unwrap(), 0);
    }

    #[test]
    fn detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        let blob = PreparedBlob::prepare(b"one").unwrap();
        let other = PreparedBlob::prepare(b"two").unwrap();
        store.write("s", &blob).unwrap();
        std::fs::write(store.path("s", &blob.digest).unwrap(), &other.data).unwrap();
        assert!(matches!(
            store.read("s", &blob.digest, CODEC_ZSTD),
            Err(BlobError::Corrupt { .. })
        ));
    }

    #[test]
    fn refuses_path_tricks() {
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(dir.path()).unwrap();
        assert!(matches!(
            store.path("../etc", &"a".repeat(64)),
            Err(BlobError::BadScope(_))
        ));
        assert!(matches!(
            store.path("s", "../../x"),
            Err(BlobError::BadDigest(_))
        ));
    }
}
