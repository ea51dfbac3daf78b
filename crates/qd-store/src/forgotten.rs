//! Mail the store deleted or anonymised and must not take back: the content hashes of
//! such messages and their hashed Message-IDs (`forgotten_mail`). Every deletion of message
//! rows, and every anonymisation, records them in its transaction; every batch checks
//! them beside the duplicate check.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QuerySelect,
};
use sha2::{Digest, Sha256};

use crate::batch::{insert_rows, IN_CHUNK};
use crate::entity::{forgotten_mail, messages};
use crate::Result;

/// Records the content hashes of `message_ids` (one chunk, before their rows go).
pub(crate) async fn remember<C: ConnectionTrait>(
    db: &C,
    message_ids: &[i64],
    now: DateTime<Utc>,
) -> Result<()> {
    let mut hashes: Vec<(String, i64, Option<String>)> = Vec::new();
    for chunk in message_ids.chunks(IN_CHUNK) {
        let rows: Vec<(String, i64, Option<String>)> = messages::Entity::find()
            .select_only()
            .column(messages::Column::ContentHash)
            .column(messages::Column::ContentKey)
            .column(messages::Column::MessageId)
            .filter(messages::Column::Id.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(db)
            .await?;
        hashes.extend(rows);
    }
    if hashes.is_empty() {
        return Ok(());
    }
    let keys: Vec<i64> = hashes.iter().map(|h| h.1).collect();
    let known = among(db, &keys).await?;
    let mut added: HashSet<String> = HashSet::new();
    let rows: Vec<forgotten_mail::ActiveModel> = hashes
        .into_iter()
        .filter(|(hash, _, _)| !known.contains(hash) && added.insert(hash.clone()))
        .map(|(hash, key, message_id)| forgotten_mail::ActiveModel {
            id: sea_orm::ActiveValue::NotSet,
            content_key: Set(key),
            content_hash: Set(hash),
            message_id_key: Set(message_id.as_deref().map(qd_core::lookup_key)),
            message_id_hash: Set(message_id.as_deref().map(digest)),
            forgotten_at: Set(now),
        })
        .collect();
    insert_rows(db, rows).await
}

/// Whether a deleted message had this Message-ID.
pub(crate) async fn has_message_id<C: ConnectionTrait>(db: &C, message_id: &str) -> Result<bool> {
    let found: Option<i64> = forgotten_mail::Entity::find()
        .select_only()
        .column(forgotten_mail::Column::Id)
        .filter(forgotten_mail::Column::MessageIdKey.eq(qd_core::lookup_key(message_id)))
        .filter(forgotten_mail::Column::MessageIdHash.eq(digest(message_id)))
        .into_tuple()
        .one(db)
        .await?;
    Ok(found.is_some())
}

/// What is kept of a Message-ID: its SHA-256, in hex.
fn digest(message_id: &str) -> String {
    hex::encode(Sha256::digest(message_id.as_bytes()))
}

/// The forgotten content hashes whose lookup key is among `keys` (compare the full hash:
/// a key is only a hint).
pub(crate) async fn among<C: ConnectionTrait>(db: &C, keys: &[i64]) -> Result<HashSet<String>> {
    let mut out = HashSet::new();
    for chunk in keys.chunks(IN_CHUNK) {
        let rows: Vec<String> = forgotten_mail::Entity::find()
            .select_only()
            .column(forgotten_mail::Column::ContentHash)
            .filter(forgotten_mail::Column::ContentKey.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(db)
            .await?;
        out.extend(rows);
    }
    Ok(out)
}
