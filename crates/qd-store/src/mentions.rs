//! Recording which addresses the stored raw mail names outside From, To and Cc
//! (`blob_mentions`), for blobs stored before the table existed.
//!
//! A blob stored since migration 10 has its rows from the moment it was stored. Older
//! blobs are sealed, and the migration had no key to read them, so it left the counter
//! [`UNREAD_BELOW`]: every blob with a lower id may still be unread. [`Store::record_mentions`]
//! reads them, highest id first, a batch per transaction, moving the counter down as it
//! goes; an interrupted run resumes where it stopped. Erasure runs it first, so it never
//! misses mail stored before the table.

use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};

use crate::batch::{insert_rows, mention_rows_of};
use crate::crypto::CryptoError;
use crate::entity::{blob_mentions, blobs, counters};
use crate::{Error, Result, Store};

use migration::m20261205_000010_blob_mentions::UNREAD_BELOW;

/// Blobs read per transaction.
const BATCH: u64 = 200;

impl Store {
    /// Records the mentions of every blob stored before `blob_mentions` existed; returns
    /// how many blobs it read. Needs the master key when those blobs are sealed. A blob
    /// that does not open with the key it needs stops the run with that error (a wrong
    /// master key must not pass for "nothing to find": `quietdesk keys check` lists such
    /// blobs). Only a blob whose key was destroyed (its person erased) or whose bytes no
    /// longer decode is passed over, logged: nothing can be read from it, by anyone.
    pub async fn record_mentions(&self) -> Result<u64> {
        let mut read = 0u64;
        loop {
            let txn = self.begin_write().await?;
            let below = counters::Entity::find_by_id(UNREAD_BELOW.to_string())
                .one(&txn)
                .await?
                .map_or(0, |c| c.value);
            if below <= 0 {
                txn.rollback().await?;
                return Ok(read);
            }
            // Ids first, then one blob at a time: a blob may be a 50 MB message.
            let ids: Vec<i64> = blobs::Entity::find()
                .select_only()
                .column(blobs::Column::Id)
                .filter(blobs::Column::Id.lt(below))
                .order_by_desc(blobs::Column::Id)
                .limit(BATCH)
                .into_tuple()
                .all(&txn)
                .await?;
            let lowest = ids.last().copied().unwrap_or(0);
            for id in ids {
                let Some(b) = blobs::Entity::find_by_id(id).one(&txn).await? else {
                    continue;
                };
                let raw = match crate::keys::open_blob(&txn, self.keys.as_deref(), b).await {
                    Ok(raw) => raw,
                    Err(e @ (Error::Blob(_) | Error::Crypto(CryptoError::Destroyed(_)))) => {
                        tracing::warn!(blob = id, error = %e, "stored mail does not open; its mentions stay unrecorded");
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                // A blob whose id was reused after a delete may already have its rows.
                blob_mentions::Entity::delete_many()
                    .filter(blob_mentions::Column::BlobId.eq(id))
                    .exec(&txn)
                    .await?;
                let mentions = qd_core::mentioned_addresses(&raw);
                insert_rows(&txn, mention_rows_of(id, &mentions)).await?;
                read += 1;
            }
            counters::Entity::update_many()
                .col_expr(counters::Column::Value, Expr::value(lowest))
                .filter(counters::Column::Name.eq(UNREAD_BELOW))
                .exec(&txn)
                .await?;
            txn.commit().await?;
        }
    }
}
