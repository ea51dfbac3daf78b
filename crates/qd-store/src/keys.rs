//! The `blob_keys` table: finding, creating and destroying scope keys.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{ActiveValue::NotSet, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};

use crate::crypto::{CryptoError, DataKey, KeyRing, MasterKey};
use crate::entity::{blob_keys, blobs};
use crate::{Error, Result};

/// Data keys that a transaction created and that exist only once it commits: they go
/// into the process-wide cache of the [`KeyRing`] after the commit
/// ([`PendingKeys::commit_to`]), never before. A key cached before its commit outlived a
/// rolled-back transaction (a batch cut off from its database, retried by the ingester):
/// the retry sealed mail with a key whose row no longer existed, and that mail could
/// never be opened again.
#[derive(Default)]
pub(crate) struct PendingKeys(HashMap<String, Arc<DataKey>>);

impl PendingKeys {
    /// After the transaction that created these keys committed.
    pub(crate) fn commit_to(self, ring: Option<&KeyRing>) {
        if let Some(ring) = ring {
            for (scope, key) in self.0 {
                ring.remember(&scope, key);
            }
        }
    }
}

/// The data keys of `scopes`, creating those that do not exist yet (in `txn`, so a key
/// commits with the first blob it seals; until then it is held in `pending`, which must
/// live as long as `txn`). A destroyed scope is an error: its person was erased, and
/// nothing may be written under their old key again.
pub(crate) async fn scope_keys<C: ConnectionTrait>(
    txn: &C,
    ring: &KeyRing,
    scopes: &[&str],
    now: DateTime<Utc>,
    pending: &mut PendingKeys,
) -> Result<HashMap<String, Arc<DataKey>>> {
    let mut out = HashMap::new();
    let mut missing: Vec<String> = Vec::new();
    for s in scopes {
        if out.contains_key(*s) || missing.iter().any(|m| m == s) {
            continue;
        }
        match ring.cached(s).or_else(|| pending.0.get(*s).cloned()) {
            Some(k) => {
                out.insert(s.to_string(), k);
            }
            None => missing.push(s.to_string()),
        }
    }
    if missing.is_empty() {
        return Ok(out);
    }
    // Rows found here were committed by others: this transaction's own keys are in
    // `pending`, which was asked first.
    let found = load(txn, ring, &missing, &mut out, true).await?;
    let create: Vec<String> = missing.into_iter().filter(|s| !found.contains(s)).collect();
    if create.is_empty() {
        return Ok(out);
    }
    let mut rows = Vec::with_capacity(create.len());
    for scope in &create {
        let (_, wrapped) = DataKey::generate(&ring.master, scope)?;
        rows.push(blob_keys::ActiveModel {
            id: NotSet,
            scope: Set(scope.clone()),
            wrapped_key: Set(Some(wrapped)),
            created_at: Set(now),
            destroyed_at: Set(None),
        });
    }
    for chunk in crate::batch::take_chunks(rows, 200) {
        blob_keys::Entity::insert_many(chunk)
            .on_conflict_do_nothing_on([blob_keys::Column::Scope])
            .exec_without_returning(txn)
            .await?;
    }
    // Read back rather than trust our own copy: a concurrent writer (PostgreSQL) may
    // have created the key first, and then its key is the one.
    let mut created = HashMap::new();
    load(txn, ring, &create, &mut created, false).await?;
    for (scope, key) in created {
        pending.0.insert(scope.clone(), key.clone());
        out.insert(scope, key);
    }
    Ok(out)
}

/// Reads and unwraps the keys of `scopes` into `out`, and into the ring's cache when
/// `remember` (only for keys known to be committed). Returns the scopes found.
async fn load<C: ConnectionTrait>(
    txn: &C,
    ring: &KeyRing,
    scopes: &[String],
    out: &mut HashMap<String, Arc<DataKey>>,
    remember: bool,
) -> Result<Vec<String>> {
    let mut found = Vec::new();
    for chunk in scopes.chunks(500) {
        let rows = blob_keys::Entity::find()
            .filter(blob_keys::Column::Scope.is_in(chunk.iter().cloned()))
            .all(txn)
            .await?;
        for r in rows {
            let Some(wrapped) = r.wrapped_key else {
                return Err(CryptoError::Destroyed(r.scope).into());
            };
            let key = Arc::new(DataKey::unwrap(&ring.master, &r.scope, &wrapped)?);
            if remember {
                ring.remember(&r.scope, key.clone());
            }
            out.insert(r.scope.clone(), key);
            found.push(r.scope);
        }
    }
    Ok(found)
}

/// Destroys the keys of `scopes` (the row stays, without its key, as a tombstone that
/// stops new data from being sealed under a reused scope) and deletes their blobs.
/// Returns (keys destroyed, blobs deleted).
pub(crate) async fn destroy_scopes<C: ConnectionTrait>(
    txn: &C,
    ring: Option<&KeyRing>,
    scopes: &[String],
    now: DateTime<Utc>,
) -> Result<(u64, u64)> {
    let mut keys = 0;
    let mut deleted = 0;
    for chunk in scopes.chunks(500) {
        keys += blob_keys::Entity::update_many()
            .col_expr(
                blob_keys::Column::WrappedKey,
                Expr::value(Option::<Vec<u8>>::None),
            )
            .col_expr(blob_keys::Column::DestroyedAt, Expr::value(now))
            .filter(blob_keys::Column::Scope.is_in(chunk.iter().cloned()))
            .filter(blob_keys::Column::WrappedKey.is_not_null())
            .exec(txn)
            .await?
            .rows_affected;
        deleted += blobs::Entity::delete_many()
            .filter(blobs::Column::Scope.is_in(chunk.iter().cloned()))
            .exec(txn)
            .await?
            .rows_affected;
    }
    if let Some(ring) = ring {
        for s in scopes {
            ring.forget(s);
        }
    }
    Ok((keys, deleted))
}

/// The committed key of an existing scope (cached, or read and then cached); an error
/// when the scope has no key or its key was destroyed.
pub(crate) async fn existing_key<C: ConnectionTrait>(
    conn: &C,
    ring: &KeyRing,
    scope: &str,
) -> Result<Arc<DataKey>> {
    if let Some(k) = ring.cached(scope) {
        return Ok(k);
    }
    let mut out = HashMap::new();
    load(conn, ring, &[scope.to_string()], &mut out, true).await?;
    out.remove(scope)
        .ok_or_else(|| CryptoError::Destroyed(scope.to_string()).into())
}

/// Decodes a stored blob: opens it with its scope key when sealed.
pub(crate) async fn open_blob<C: ConnectionTrait>(
    conn: &C,
    ring: Option<&KeyRing>,
    b: blobs::Model,
) -> Result<Vec<u8>> {
    if b.codec == crate::crypto::CODEC_SEALED {
        let ring = ring.ok_or(Error::NoMasterKey)?;
        let key = existing_key(conn, ring, &b.scope).await?;
        let compressed = key.open(&b.scope, &b.digest, &b.data)?;
        return Ok(crate::blob::decode(
            crate::blob::CODEC_ZSTD,
            &compressed,
            &b.digest,
        )?);
    }
    Ok(crate::blob::decode(&b.codec, &b.data, &b.digest)?)
}

/// A stored raw mail that does not open, and the messages that point at it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct UnreadableBlob {
    pub blob_id: i64,
    pub scope: String,
    pub message_ids: Vec<i64>,
    pub reason: String,
}

/// What [`check_blobs`] found. `unreadable` lists at most [`MAX_LISTED`] blobs;
/// `unreadable_count` counts them all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlobReport {
    pub opened: u64,
    pub unreadable_count: u64,
    pub unreadable: Vec<UnreadableBlob>,
}

pub const MAX_LISTED: usize = 100;

/// Opens every stored blob (in id order, each checked against its digest), changing
/// nothing. A blob that does not open is reported with the messages that point at it,
/// never an error: the check goes on to the end.
pub(crate) async fn check_blobs<C: ConnectionTrait>(
    conn: &C,
    ring: Option<&KeyRing>,
    checked: &mut (dyn FnMut(u64) + Send),
) -> Result<BlobReport> {
    use sea_orm::{QueryOrder, QuerySelect};
    // Blobs are read a group at a time, up to this many stored bytes (a single message
    // may be tens of megabytes): one query per blob cost a million round trips to the
    // database on a million messages.
    const GROUP_BYTES: i64 = 8 << 20;
    let mut report = BlobReport::default();
    let mut after = 0i64;
    loop {
        let sizes: Vec<(i64, i64)> = blobs::Entity::find()
            .select_only()
            .column(blobs::Column::Id)
            .column(blobs::Column::StoredSize)
            .filter(blobs::Column::Id.gt(after))
            .order_by_asc(blobs::Column::Id)
            .limit(1000)
            .into_tuple()
            .all(conn)
            .await?;
        let Some(&(last, _)) = sizes.last() else {
            return Ok(report);
        };
        after = last;
        for group in groups_by_size(&sizes, GROUP_BYTES) {
            let rows = blobs::Entity::find()
                .filter(blobs::Column::Id.is_in(group))
                .order_by_asc(blobs::Column::Id)
                .all(conn)
                .await?;
            let n = rows.len() as u64;
            for b in rows {
                let (id, scope) = (b.id, b.scope.clone());
                match open_blob(conn, ring, b).await {
                    Ok(_) => report.opened += 1,
                    Err(e) => {
                        report.unreadable_count += 1;
                        if report.unreadable.len() < MAX_LISTED {
                            report.unreadable.push(UnreadableBlob {
                                blob_id: id,
                                scope,
                                message_ids: messages_of_blob(conn, id).await?,
                                reason: e.to_string(),
                            });
                        }
                    }
                }
            }
            checked(n);
        }
    }
}

/// Consecutive ids grouped so that a group's sizes add up to at most `limit`, except a
/// group of one that alone is larger. No group is empty.
fn groups_by_size(sizes: &[(i64, i64)], limit: i64) -> Vec<Vec<i64>> {
    let mut groups: Vec<Vec<i64>> = Vec::new();
    let mut bytes = 0i64;
    for &(id, size) in sizes {
        match groups.last_mut() {
            Some(g) if bytes + size <= limit => g.push(id),
            _ => {
                groups.push(vec![id]);
                bytes = 0;
            }
        }
        bytes += size;
    }
    groups
}

async fn messages_of_blob<C: ConnectionTrait>(conn: &C, blob_id: i64) -> Result<Vec<i64>> {
    use crate::entity::messages;
    use sea_orm::QuerySelect;
    Ok(messages::Entity::find()
        .select_only()
        .column(messages::Column::Id)
        .filter(messages::Column::BlobId.eq(blob_id))
        .into_tuple()
        .all(conn)
        .await?)
}

/// What [`rewrap_all`] and [`check_all`] found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyReport {
    /// Live data keys (opened, and re-sealed when rotating).
    pub live: u64,
    /// Tombstones of destroyed keys (erased people).
    pub destroyed: u64,
}

/// Visits every `blob_keys` row in id order, a page at a time, opening each live key
/// with `old`; with `new`, re-seals it and writes it back. Stops at the first key that
/// does not open (wrong master key): in a transaction, nothing has changed then.
async fn visit_keys<C: ConnectionTrait>(
    conn: &C,
    old: &MasterKey,
    new: Option<&MasterKey>,
) -> Result<KeyReport> {
    use sea_orm::{QueryOrder, QuerySelect};
    let mut report = KeyReport::default();
    let mut after = 0i64;
    loop {
        let rows = blob_keys::Entity::find()
            .filter(blob_keys::Column::Id.gt(after))
            .order_by_asc(blob_keys::Column::Id)
            .limit(1000)
            .all(conn)
            .await?;
        let Some(last) = rows.last() else {
            return Ok(report);
        };
        after = last.id;
        for r in rows {
            let Some(wrapped) = r.wrapped_key else {
                report.destroyed += 1;
                continue;
            };
            let raw = crate::crypto::unwrap_raw(old, &r.scope, &wrapped)?;
            report.live += 1;
            if let Some(new) = new {
                let rewrapped = crate::crypto::wrap_raw(new, &r.scope, &raw)?;
                blob_keys::Entity::update_many()
                    .col_expr(blob_keys::Column::WrappedKey, Expr::value(rewrapped))
                    .filter(blob_keys::Column::Id.eq(r.id))
                    .exec(conn)
                    .await?;
            }
        }
    }
}

/// Re-seals every live data key under `new` (master-key rotation). The caller runs it in
/// one transaction: either every key moves to the new master key or none does.
pub(crate) async fn rewrap_all<C: ConnectionTrait>(
    txn: &C,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<KeyReport> {
    visit_keys(txn, old, Some(new)).await
}

/// Opens every live data key with `master` without changing anything.
pub(crate) async fn check_all<C: ConnectionTrait>(
    conn: &C,
    master: &MasterKey,
) -> Result<KeyReport> {
    visit_keys(conn, master, None).await
}

#[cfg(test)]
mod tests {
    use super::groups_by_size;

    #[test]
    fn blobs_are_read_in_groups_bounded_by_size() {
        let sizes = [(1, 3), (2, 3), (3, 3), (4, 20), (5, 1), (6, 9)];
        assert_eq!(
            groups_by_size(&sizes, 10),
            [vec![1, 2, 3], vec![4], vec![5, 6]]
        );
        assert!(groups_by_size(&[], 10).is_empty());
        assert_eq!(groups_by_size(&[(7, 50)], 10), [vec![7]]);
    }
}
