//! Encryption at rest for raw mail, with one key per scope (crypto-shredding).
//!
//! Every blob scope (`contact-<id>`: the person a message is filed under) has its own
//! random 256-bit data key. Data keys are stored in `blob_keys` sealed with the master key
//! (XChaCha20-Poly1305, the scope name as associated data, so a sealed key cannot be
//! moved to another scope). Blobs are sealed with their scope's key (the blob digest and
//! scope as associated data). Erasing a person destroys their scopes' keys: any copy of
//! their blobs — in a backup, in a free page, on a replica — is then ciphertext nobody
//! can open. The master key never touches the database; it comes from the environment
//! or a file (the binary decides).
//!
//! Why per contact rather than per customer: a customer's data is the data of its
//! contacts, so destroying the keys of all of a customer's contacts shreds the customer;
//! and linking a contact to a customer later needs no re-encryption.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use chacha20poly1305::aead::rand_core::RngCore;
use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{AeadCore, XChaCha20Poly1305, XNonce};
use zeroize::Zeroizing;

/// The codec of blobs sealed with a scope key (zstd inside, then the AEAD).
pub const CODEC_SEALED: &str = "zstd+xchacha20poly1305";

const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(
        "the master key must be 32 bytes written as 64 hex digits (got {0} characters); \
         generate one with `openssl rand -hex 32`"
    )]
    BadMasterKey(usize),
    #[error("the key of {0} was destroyed: its data was erased")]
    Destroyed(String),
    #[error(
        "cannot open sealed data of {0}: wrong master key or corrupt data \
         (was the master key changed?)"
    )]
    Open(String),
    #[error("sealing failed")]
    Seal,
}

/// The key that seals every data key. Zeroed on drop; never printed.
#[derive(Clone)]
pub struct MasterKey(Zeroizing<[u8; KEY_LEN]>);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(…)")
    }
}

impl MasterKey {
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> MasterKey {
        MasterKey(Zeroizing::new(bytes))
    }

    /// Parses 64 hex digits (surrounding whitespace ignored).
    pub fn parse_hex(text: &str) -> Result<MasterKey, CryptoError> {
        let t = text.trim();
        let mut out = [0u8; KEY_LEN];
        if t.len() != KEY_LEN * 2 || hex::decode_to_slice(t, &mut out).is_err() {
            return Err(CryptoError::BadMasterKey(t.len()));
        }
        Ok(MasterKey::from_bytes(out))
    }

    /// A fresh random key (for a new installation).
    pub fn generate() -> MasterKey {
        let mut out = [0u8; KEY_LEN];
        OsRng.fill_bytes(&mut out);
        MasterKey::from_bytes(out)
    }

    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(hex::encode(*self.0))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&*self.0).into())
    }
}

/// Opens a sealed data key to its raw bytes (for re-sealing under a new master key).
pub(crate) fn unwrap_raw(
    master: &MasterKey,
    scope: &str,
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let raw = Zeroizing::new(open_with(
        &master.cipher(),
        wrapped,
        &key_aad(scope),
        scope,
    )?);
    if raw.len() != KEY_LEN {
        return Err(CryptoError::Open(scope.to_string()));
    }
    Ok(raw)
}

/// Seals raw data-key bytes under `master` for `scope`.
pub(crate) fn wrap_raw(
    master: &MasterKey,
    scope: &str,
    raw: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    seal_with(&master.cipher(), raw, &key_aad(scope))
}

/// One scope's data key.
pub(crate) struct DataKey(XChaCha20Poly1305);

fn seal_with(cipher: &XChaCha20Poly1305, msg: &[u8], aad: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let ct = cipher
        .encrypt(&nonce, Payload { msg, aad })
        .map_err(|_| CryptoError::Seal)?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

fn open_with(
    cipher: &XChaCha20Poly1305,
    data: &[u8],
    aad: &[u8],
    what: &str,
) -> Result<Vec<u8>, CryptoError> {
    if data.len() < NONCE_LEN {
        return Err(CryptoError::Open(what.to_string()));
    }
    let (nonce, ct) = data.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce
        .try_into()
        .map_err(|_| CryptoError::Open(what.to_string()))?;
    cipher
        .decrypt(&XNonce::from(nonce), Payload { msg: ct, aad })
        .map_err(|_| CryptoError::Open(what.to_string()))
}

fn key_aad(scope: &str) -> Vec<u8> {
    let mut aad = b"quietdesk blob key v1\0".to_vec();
    aad.extend_from_slice(scope.as_bytes());
    aad
}

fn blob_aad(scope: &str, digest: &str) -> Vec<u8> {
    let mut aad = b"quietdesk blob v1\0".to_vec();
    aad.extend_from_slice(scope.as_bytes());
    aad.push(0);
    aad.extend_from_slice(digest.as_bytes());
    aad
}

impl DataKey {
    /// A new random key and its sealed form for `blob_keys`.
    pub(crate) fn generate(
        master: &MasterKey,
        scope: &str,
    ) -> Result<(DataKey, Vec<u8>), CryptoError> {
        let mut raw = Zeroizing::new([0u8; KEY_LEN]);
        OsRng.fill_bytes(&mut *raw);
        let wrapped = wrap_raw(master, scope, raw.as_slice())?;
        Ok((DataKey(XChaCha20Poly1305::new((&*raw).into())), wrapped))
    }

    pub(crate) fn unwrap(
        master: &MasterKey,
        scope: &str,
        wrapped: &[u8],
    ) -> Result<DataKey, CryptoError> {
        let raw = unwrap_raw(master, scope, wrapped)?;
        Ok(DataKey(XChaCha20Poly1305::new(raw.as_slice().into())))
    }

    pub(crate) fn seal(
        &self,
        scope: &str,
        digest: &str,
        data: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        seal_with(&self.0, data, &blob_aad(scope, digest))
    }

    pub(crate) fn open(
        &self,
        scope: &str,
        digest: &str,
        data: &[u8],
    ) -> Result<Vec<u8>, CryptoError> {
        open_with(&self.0, data, &blob_aad(scope, digest), scope)
    }
}

/// The master key plus the data keys unwrapped so far in this process.
pub(crate) struct KeyRing {
    pub(crate) master: MasterKey,
    cache: Mutex<HashMap<String, Arc<DataKey>>>,
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyRing(…)")
    }
}

impl KeyRing {
    pub(crate) fn new(master: MasterKey) -> KeyRing {
        KeyRing {
            master,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub(crate) fn cached(&self, scope: &str) -> Option<Arc<DataKey>> {
        self.cache.lock().ok()?.get(scope).cloned()
    }

    /// Only for keys whose row is committed (see `keys::PendingKeys`).
    pub(crate) fn remember(&self, scope: &str, key: Arc<DataKey>) {
        if let Ok(mut c) = self.cache.lock() {
            c.insert(scope.to_string(), key);
        }
    }

    /// Drops a destroyed scope's key from memory too.
    pub(crate) fn forget(&self, scope: &str) {
        if let Ok(mut c) = self.cache.lock() {
            c.remove(scope);
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn keys_and_blobs_round_trip_and_bind_to_their_scope() {
        let master = MasterKey::generate();
        let (key, wrapped) = DataKey::generate(&master, "contact-1").unwrap();
        let sealed = key.seal("contact-1", "abc", b"raw mail").unwrap();
        assert!(!sealed.windows(8).any(|w| w == b"raw mail"));

        let again = DataKey::unwrap(&master, "contact-1", &wrapped).unwrap();
        assert_eq!(
            again.open("contact-1", "abc", &sealed).unwrap(),
            b"raw mail"
        );
        // A sealed key moved to another scope, or a blob moved, does not open.
        assert!(DataKey::unwrap(&master, "contact-2", &wrapped).is_err());
        assert!(again.open("contact-2", "abc", &sealed).is_err());
        assert!(again.open("contact-1", "abd", &sealed).is_err());
        // Another master key opens nothing.
        assert!(DataKey::unwrap(&MasterKey::generate(), "contact-1", &wrapped).is_err());
    }

    #[test]
    fn master_keys_parse_from_hex_only() {
        let k = MasterKey::generate();
        let parsed = MasterKey::parse_hex(&format!(" {} \n", k.to_hex().as_str())).unwrap();
        assert_eq!(*parsed.0, *k.0);
        assert!(matches!(
            MasterKey::parse_hex("abcd"),
            Err(CryptoError::BadMasterKey(4))
        ));
        assert!(MasterKey::parse_hex(&"zz".repeat(32)).is_err());
        assert_eq!(format!("{k:?}"), "MasterKey(…)");
    }
}
