//! Read paths and small maintenance writes that several workers share: counts, the
//! search queue, documents for the indexer, checkpoints.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use qd_core::TicketStatus;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, EntityTrait, FromQueryResult, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;

use crate::batch::Checkpoint;
use crate::entity::{
    blobs, contacts, customers, ingest_checkpoints, ingest_held, messages, search_queue,
    ticket_tags, tickets,
};
use crate::{Result, Store};

const IN_CHUNK: usize = 900;

/// Row counts for `quietdesk stats`.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Stats {
    pub customers: u64,
    pub contacts: u64,
    pub tickets: u64,
    pub messages: u64,
    pub quarantined_messages: u64,
    pub blobs: u64,
    pub search_queue: u64,
    /// Mail left on an IMAP server unstored (over the size limit, not returned, refused
    /// by the database): see `ingest_held`.
    pub held_on_server: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueItem {
    pub id: i64,
    pub message_db_id: i64,
    pub op: String,
}

/// Everything the search index holds about one message.
#[derive(Debug, Clone)]
pub struct IndexRow {
    pub message_db_id: i64,
    pub ticket_id: i64,
    pub ticket_number: i64,
    pub ticket_status: String,
    pub subject: String,
    pub body: String,
    pub from: String,
    pub to: String,
    pub date: DateTime<Utc>,
    pub tags: Vec<String>,
    pub has_attachment: bool,
}

/// What a search hit shows.
#[derive(Debug, Clone)]
pub struct MessageText {
    pub message_db_id: i64,
    pub ticket_number: i64,
    pub message_id: Option<String>,
    pub subject: String,
    pub body: String,
}

#[derive(FromQueryResult)]
struct IndexCols {
    id: i64,
    ticket_id: i64,
    subject: String,
    body_text: String,
    from_name: Option<String>,
    from_addr: Option<String>,
    to_addrs: String,
    cc_addrs: String,
    date: Option<DateTime<Utc>>,
    received_at: DateTime<Utc>,
    has_attachments: bool,
}

fn display(name: &Option<String>, addr: &Option<String>) -> String {
    match (name, addr) {
        (Some(n), Some(a)) => format!("{n} <{a}>"),
        (None, Some(a)) => a.clone(),
        (Some(n), None) => n.clone(),
        (None, None) => String::new(),
    }
}

fn json_list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

impl Store {
    pub async fn stats(&self) -> Result<Stats> {
        let db = &self.db;
        Ok(Stats {
            customers: customers::Entity::find().count(db).await?,
            contacts: contacts::Entity::find().count(db).await?,
            tickets: tickets::Entity::find().count(db).await?,
            messages: messages::Entity::find().count(db).await?,
            quarantined_messages: messages::Entity::find()
                .filter(messages::Column::Quarantined.eq(true))
                .count(db)
                .await?,
            blobs: blobs::Entity::find().count(db).await?,
            search_queue: search_queue::Entity::find().count(db).await?,
            held_on_server: ingest_held::Entity::find().count(db).await?,
        })
    }

    /// The oldest pending search-queue entries with an id above `after`.
    pub async fn search_queue_batch(&self, after: i64, limit: u64) -> Result<Vec<QueueItem>> {
        Ok(search_queue::Entity::find()
            .filter(search_queue::Column::Id.gt(after))
            .order_by_asc(search_queue::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?
            .into_iter()
            .map(|q| QueueItem {
                id: q.id,
                message_db_id: q.message_db_id,
                op: q.op,
            })
            .collect())
    }

    /// Queues these messages to be indexed again (`upsert`; one no longer stored is
    /// deleted from the index instead). For work handed to the index ahead of a store
    /// change that then failed.
    pub async fn search_queue_upsert(
        &self,
        message_db_ids: &[i64],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let rows: Vec<_> = message_db_ids
            .iter()
            .map(|&id| crate::batch::queue_row(id, "upsert", now))
            .collect();
        crate::batch::insert_rows(&self.db, rows).await
    }

    /// Removes queue entries once the index has committed them.
    pub async fn search_queue_delete(&self, ids: &[i64]) -> Result<()> {
        for chunk in ids.chunks(IN_CHUNK) {
            search_queue::Entity::delete_many()
                .filter(search_queue::Column::Id.is_in(chunk.iter().copied()))
                .exec(&self.db)
                .await?;
        }
        Ok(())
    }

    /// The ids of every queue entry committed now. A full reindex drops exactly these
    /// once it is done: their changes are in the store it reads. An entry committed
    /// later stays for the indexer, even with a lower id (PostgreSQL hands out sequence
    /// values in no commit order: an erasure that took id 100 may commit after an
    /// import's 101, and dropping everything up to 101 lost its delete).
    pub async fn search_queue_ids(&self) -> Result<Vec<i64>> {
        Ok(search_queue::Entity::find()
            .select_only()
            .column(search_queue::Column::Id)
            .order_by_asc(search_queue::Column::Id)
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// The highest message id, if any message is stored.
    pub async fn max_message_id(&self) -> Result<Option<i64>> {
        let max: Option<Option<i64>> = messages::Entity::find()
            .select_only()
            .column_as(messages::Column::Id.max(), "m")
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(max.flatten())
    }

    /// Message ids in id order after `after`, for paging through the whole store.
    pub async fn message_ids_after(&self, after: i64, limit: u64) -> Result<Vec<i64>> {
        Ok(messages::Entity::find()
            .select_only()
            .column(messages::Column::Id)
            .filter(messages::Column::Id.gt(after))
            .order_by_asc(messages::Column::Id)
            .limit(limit)
            .into_tuple()
            .all(&self.db)
            .await?)
    }

    /// Index documents for the given messages; ids with no row (deleted meanwhile) are
    /// simply absent from the result.
    pub async fn index_rows(&self, ids: &[i64]) -> Result<Vec<IndexRow>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IN_CHUNK) {
            // Only what the index needs: HTML bodies can be large and are not indexed.
            let msgs: Vec<IndexCols> = messages::Entity::find()
                .select_only()
                .columns([
                    messages::Column::Id,
                    messages::Column::TicketId,
                    messages::Column::Subject,
                    messages::Column::BodyText,
                    messages::Column::FromName,
                    messages::Column::FromAddr,
                    messages::Column::ToAddrs,
                    messages::Column::CcAddrs,
                    messages::Column::Date,
                    messages::Column::ReceivedAt,
                    messages::Column::HasAttachments,
                ])
                .filter(messages::Column::Id.is_in(chunk.iter().copied()))
                .into_model::<IndexCols>()
                .all(&self.db)
                .await?;
            let mut ticket_ids: Vec<i64> = msgs.iter().map(|m| m.ticket_id).collect();
            ticket_ids.sort_unstable();
            ticket_ids.dedup();
            let tickets: HashMap<i64, tickets::Model> = tickets::Entity::find()
                .filter(tickets::Column::Id.is_in(ticket_ids.iter().copied()))
                .all(&self.db)
                .await?
                .into_iter()
                .map(|t| (t.id, t))
                .collect();
            let mut tags: HashMap<i64, Vec<String>> = HashMap::new();
            for t in ticket_tags::Entity::find()
                .filter(ticket_tags::Column::TicketId.is_in(ticket_ids.iter().copied()))
                .all(&self.db)
                .await?
            {
                tags.entry(t.ticket_id).or_default().push(t.tag);
            }
            for m in msgs {
                let Some(t) = tickets.get(&m.ticket_id) else {
                    continue;
                };
                let mut to = json_list(&m.to_addrs);
                to.extend(json_list(&m.cc_addrs));
                out.push(IndexRow {
                    message_db_id: m.id,
                    ticket_id: m.ticket_id,
                    ticket_number: t.number,
                    ticket_status: t.status.clone(),
                    subject: m.subject,
                    body: m.body_text,
                    from: display(&m.from_name, &m.from_addr),
                    to: to.join(" "),
                    date: m.date.unwrap_or(m.received_at),
                    tags: tags.get(&m.ticket_id).cloned().unwrap_or_default(),
                    has_attachment: m.has_attachments,
                });
            }
        }
        Ok(out)
    }

    /// Subjects and bodies for search hits, in the order of `ids` (any number of them:
    /// the lookups go in chunks, under the backends' limits on bound parameters).
    pub async fn message_texts(&self, ids: &[i64]) -> Result<Vec<MessageText>> {
        let mut rows: Vec<(i64, i64, Option<String>, String, String)> =
            Vec::with_capacity(ids.len());
        for chunk in ids.chunks(IN_CHUNK) {
            rows.extend(
                messages::Entity::find()
                    .select_only()
                    .column(messages::Column::Id)
                    .column(messages::Column::TicketId)
                    .column(messages::Column::MessageId)
                    .column(messages::Column::Subject)
                    .column(messages::Column::BodyText)
                    .filter(messages::Column::Id.is_in(chunk.iter().copied()))
                    .into_tuple::<(i64, i64, Option<String>, String, String)>()
                    .all(&self.db)
                    .await?,
            );
        }
        let ticket_ids: Vec<i64> = rows
            .iter()
            .map(|r| r.1)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let mut numbers: HashMap<i64, i64> = HashMap::with_capacity(ticket_ids.len());
        for chunk in ticket_ids.chunks(IN_CHUNK) {
            numbers.extend(
                tickets::Entity::find()
                    .select_only()
                    .column(tickets::Column::Id)
                    .column(tickets::Column::Number)
                    .filter(tickets::Column::Id.is_in(chunk.iter().copied()))
                    .into_tuple::<(i64, i64)>()
                    .all(&self.db)
                    .await?,
            );
        }
        let mut by_id: HashMap<i64, MessageText> = rows
            .into_iter()
            .map(|(id, tid, mid, subject, body)| {
                (
                    id,
                    MessageText {
                        message_db_id: id,
                        ticket_number: numbers.get(&tid).copied().unwrap_or_default(),
                        message_id: mid,
                        subject,
                        body,
                    },
                )
            })
            .collect();
        Ok(ids.iter().filter_map(|id| by_id.remove(id)).collect())
    }

    pub async fn checkpoint(&self, source: &str) -> Result<Option<Checkpoint>> {
        Ok(ingest_checkpoints::Entity::find()
            .filter(ingest_checkpoints::Column::Source.eq(source))
            .one(&self.db)
            .await?
            .map(|c| Checkpoint {
                source: c.source,
                uidvalidity: c.uidvalidity,
                position: c.position,
                held: Vec::new(),
            }))
    }

    /// Forgets where a source was read up to: its next import starts at the beginning.
    pub async fn delete_checkpoint(&self, source: &str) -> Result<()> {
        ingest_checkpoints::Entity::delete_many()
            .filter(ingest_checkpoints::Column::Source.eq(source))
            .exec(&self.db)
            .await?;
        Ok(())
    }

    /// The UIDs of `source` under `uidvalidity` that a checkpoint moved past without
    /// storing their mail ([`crate::HeldPosition`]): the after-ingest action must leave
    /// them on the server.
    pub async fn held_uids(&self, source: &str, uidvalidity: i64) -> Result<HashSet<i64>> {
        let uids: Vec<i64> = ingest_held::Entity::find()
            .select_only()
            .column(ingest_held::Column::Uid)
            .filter(ingest_held::Column::Source.eq(source))
            .filter(ingest_held::Column::Uidvalidity.eq(uidvalidity))
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(uids.into_iter().collect())
    }

    /// Forgets held UIDs whose mail is now stored, or gone from the server.
    pub async fn release_held(&self, source: &str, uidvalidity: i64, uids: &[i64]) -> Result<()> {
        for chunk in uids.chunks(IN_CHUNK) {
            ingest_held::Entity::delete_many()
                .filter(ingest_held::Column::Source.eq(source))
                .filter(ingest_held::Column::Uidvalidity.eq(uidvalidity))
                .filter(ingest_held::Column::Uid.is_in(chunk.iter().copied()))
                .exec(&self.db)
                .await?;
        }
        Ok(())
    }

    pub async fn ticket_by_number(&self, number: i64) -> Result<Option<tickets::Model>> {
        Ok(tickets::Entity::find()
            .filter(tickets::Column::Number.eq(number))
            .one(&self.db)
            .await?)
    }

    /// Messages of one ticket, oldest first.
    pub async fn ticket_messages(&self, ticket_id: i64) -> Result<Vec<messages::Model>> {
        Ok(messages::Entity::find()
            .filter(messages::Column::TicketId.eq(ticket_id))
            .order_by_asc(messages::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// Changes a ticket's status and queues its messages for re-indexing (the index
    /// filters on status). Returns false when the ticket does not exist.
    pub async fn set_ticket_status(&self, ticket_id: i64, status: TicketStatus) -> Result<bool> {
        let txn = self.begin_write().await?;
        let res = tickets::Entity::update_many()
            .col_expr(tickets::Column::Status, Expr::value(status.as_str()))
            .filter(tickets::Column::Id.eq(ticket_id))
            .exec(&txn)
            .await?;
        if res.rows_affected == 0 {
            return Ok(false);
        }
        let ids: Vec<i64> = messages::Entity::find()
            .select_only()
            .column(messages::Column::Id)
            .filter(messages::Column::TicketId.eq(ticket_id))
            .into_tuple()
            .all(&txn)
            .await?;
        let now = Utc::now();
        let rows = ids
            .into_iter()
            .map(|id| crate::batch::queue_row(id, "upsert", now))
            .collect();
        crate::batch::insert_rows(&txn, rows).await?;
        txn.commit().await?;
        Ok(true)
    }

    /// The raw message as received, decoded and checked against its digest; `None` when
    /// the message or its blob is gone.
    pub async fn raw_message(&self, message_db_id: i64) -> Result<Option<Vec<u8>>> {
        let Some(m) = messages::Entity::find_by_id(message_db_id)
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        let Some(blob_id) = m.blob_id else {
            return Ok(None);
        };
        let Some(b) = blobs::Entity::find_by_id(blob_id).one(&self.db).await? else {
            return Ok(None);
        };
        Ok(Some(
            crate::keys::open_blob(&self.db, self.keys.as_deref(), b).await?,
        ))
    }

    /// Whether the store deleted or anonymised a message with this Message-ID
    /// (retention, quarantine expiry, erasure): a rescan must not take it back.
    pub async fn forgot_message_id(&self, message_id: &str) -> Result<bool> {
        crate::forgotten::has_message_id(&self.db, message_id).await
    }

    /// The ticket that holds the message with this Message-ID, if any.
    pub async fn ticket_of_message_id(&self, message_id: &str) -> Result<Option<i64>> {
        Ok(messages::Entity::find()
            .select_only()
            .column(messages::Column::TicketId)
            .filter(messages::Column::MessageIdKey.eq(qd_core::lookup_key(message_id)))
            .filter(messages::Column::MessageId.eq(message_id))
            .into_tuple()
            .one(&self.db)
            .await?)
    }
}
