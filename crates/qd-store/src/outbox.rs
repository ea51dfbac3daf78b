//! The outbox: outgoing mail waiting for, in, or done with delivery, and the
//! acknowledgement log that holds the per-sender daily limit.
//!
//! Producers (the ingest acknowledgement, staff replies) enqueue a rendered message,
//! alone or inside a caller's [`WriteTxn`]. The outbound worker claims due entries with
//! one atomic `UPDATE … WHERE id IN (SELECT … [FOR UPDATE SKIP LOCKED]) RETURNING *`:
//! on PostgreSQL several workers never claim the same row, on SQLite the write lock
//! (`BEGIN IMMEDIATE`) serialises them. A claim is a lease (`claimed_until`): a worker
//! that dies mid-send leaves a `sending` row that is claimed again once the lease ends.
//! Outcomes are [`Store::outbox_mark_sent`] (which records the sent message on its
//! ticket, `direction = out`, in the same transaction, so replies and bounces thread to
//! it), [`Store::outbox_retry_later`], [`Store::outbox_retry_for`] (some recipients
//! took it, the others are deferred) and [`Store::outbox_mark_failed`]. A bounce marks
//! its entry failed and files the DSN on the entry's ticket
//! ([`Store::outbox_record_bounce`]).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, LockBehavior, LockType, Order, Query};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait, FromQueryResult,
    PaginatorTrait, QueryFilter, QuerySelect, QueryTrait,
};
use sha2::{Digest, Sha256};

use qd_core::lookup_key;

use crate::batch::{blob_row, blob_scope, insert_rows, non_empty, queue_row, NewMessage};
use crate::entity::{ack_log, attachments, blobs, messages, outbox, thread_refs, tickets};
use crate::keys::PendingKeys;
use crate::{Backend, Error, Result, Store};

/// What an outbox entry is; stored as its `as_str` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxKind {
    /// An automatic acknowledgement of a customer's message (RFC 3834 rules apply).
    Ack,
    /// A staff reply.
    Reply,
    /// Any other message we send on a ticket's behalf.
    Notification,
}

impl OutboxKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxKind::Ack => "ack",
            OutboxKind::Reply => "reply",
            OutboxKind::Notification => "notification",
        }
    }

    fn parse(s: &str) -> Result<OutboxKind> {
        match s {
            "ack" => Ok(OutboxKind::Ack),
            "reply" => Ok(OutboxKind::Reply),
            "notification" => Ok(OutboxKind::Notification),
            other => Err(Error::Inconsistent(format!(
                "unknown outbox kind `{other}`"
            ))),
        }
    }
}

/// Delivery state of an outbox entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxStatus {
    Queued,
    /// Claimed by a worker until `claimed_until`.
    Sending,
    Sent,
    Failed,
}

impl OutboxStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            OutboxStatus::Queued => "queued",
            OutboxStatus::Sending => "sending",
            OutboxStatus::Sent => "sent",
            OutboxStatus::Failed => "failed",
        }
    }

    fn parse(s: &str) -> Result<OutboxStatus> {
        match s {
            "queued" => Ok(OutboxStatus::Queued),
            "sending" => Ok(OutboxStatus::Sending),
            "sent" => Ok(OutboxStatus::Sent),
            "failed" => Ok(OutboxStatus::Failed),
            other => Err(Error::Inconsistent(format!(
                "unknown outbox status `{other}`"
            ))),
        }
    }
}

/// A rendered message to enqueue.
#[derive(Debug, Clone)]
pub struct NewOutboxEntry {
    pub kind: OutboxKind,
    pub ticket_id: Option<i64>,
    /// Our Message-ID, without angle brackets (unique in the outbox).
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    /// Envelope sender (SMTP `MAIL FROM`).
    pub mail_from: String,
    /// Envelope recipients (SMTP `RCPT TO`).
    pub rcpt_to: Vec<String>,
    pub subject: String,
    pub language: Option<String>,
    /// The complete message as it goes on the wire.
    pub raw: Vec<u8>,
}

/// An outbox row.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboxEntry {
    pub id: i64,
    pub kind: OutboxKind,
    pub ticket_id: Option<i64>,
    pub message_id: String,
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    pub subject: String,
    pub language: Option<String>,
    /// `None` once sent: the copy on the ticket is then the record.
    pub raw: Option<Vec<u8>>,
    pub status: OutboxStatus,
    /// Delivery attempts started so far (a claim counts as one).
    pub attempts: u32,
    pub next_attempt_at: DateTime<Utc>,
    pub claimed_until: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    /// The `messages` row that records the sent message on its ticket.
    pub sent_message_db_id: Option<i64>,
}

impl OutboxEntry {
    fn of(m: outbox::Model) -> Result<OutboxEntry> {
        Ok(OutboxEntry {
            id: m.id,
            kind: OutboxKind::parse(&m.kind)?,
            ticket_id: m.ticket_id,
            message_id: m.message_id,
            in_reply_to: m.in_reply_to,
            references: m
                .references
                .map(|r| r.split_whitespace().map(str::to_string).collect())
                .unwrap_or_default(),
            mail_from: m.mail_from,
            rcpt_to: serde_json::from_str(&m.rcpt_to).map_err(|e| {
                Error::Inconsistent(format!("outbox {} has bad recipients: {e}", m.id))
            })?,
            subject: m.subject,
            language: m.language,
            raw: m.raw,
            status: OutboxStatus::parse(&m.status)?,
            attempts: u32::try_from(m.attempts).unwrap_or(0),
            next_attempt_at: m.next_attempt_at,
            claimed_until: m.claimed_until,
            last_error: m.last_error,
            created_at: m.created_at,
            sent_at: m.sent_at,
            failed_at: m.failed_at,
            sent_message_db_id: m.sent_message_db_id,
        })
    }
}

/// What [`Store::enqueue_ack`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueOutcome {
    /// Queued as this outbox id.
    Queued(i64),
    /// The sender already got `sent` acknowledgements in the last 24 hours.
    LimitReached { sent: u32 },
}

/// A write transaction handed to callers that want several store writes to commit
/// together (e.g. a staff reply and its ticket status change). Dropping it rolls back.
pub struct WriteTxn(DatabaseTransaction);

impl WriteTxn {
    pub async fn commit(self) -> Result<()> {
        Ok(self.0.commit().await?)
    }

    pub async fn rollback(self) -> Result<()> {
        Ok(self.0.rollback().await?)
    }
}

/// The key of a sender in `ack_log`: SHA-256 (hex) of the normalised address, so the
/// log can count per sender without holding an address. A `+tag` is left out: a
/// responder that answers from a fresh `support+<id>@…` each time is one sender.
pub fn sender_hash(addr: &str) -> String {
    let addr = qd_core::normalize_address(addr);
    let key = match addr.rsplit_once('@') {
        Some((local, domain)) => match local.split_once('+') {
            Some((base, _)) if !base.is_empty() => format!("{base}@{domain}"),
            _ => addr.clone(),
        },
        None => addr.clone(),
    };
    let mut h = Sha256::new();
    h.update(b"quietdesk-ack-log\0");
    h.update(key.as_bytes());
    hex::encode(h.finalize())
}

fn day_before(now: DateTime<Utc>) -> DateTime<Utc> {
    now - chrono::TimeDelta::hours(24)
}

/// Senders per count query and outbox rows per multi-row insert in [`enqueue_acks_in`]
/// (each row carries a whole message).
const SENDERS_PER_QUERY: usize = 500;
const ENTRIES_PER_INSERT: usize = 100;

fn entry_row(e: &NewOutboxEntry, now: DateTime<Utc>) -> Result<outbox::ActiveModel> {
    // A subject or Message-ID taken from a customer's mail may hold NUL characters,
    // which PostgreSQL text refuses (the whole ingest batch then failed).
    let text = |s: &str| {
        let mut s = s.to_string();
        crate::batch::clean(&mut s);
        s
    };
    let rcpt: Vec<String> = e.rcpt_to.iter().map(|r| text(r)).collect();
    let rcpt = serde_json::to_string(&rcpt)
        .map_err(|err| Error::Inconsistent(format!("recipients do not serialise: {err}")))?;
    Ok(outbox::ActiveModel {
        id: NotSet,
        kind: Set(e.kind.as_str().to_string()),
        ticket_id: Set(e.ticket_id),
        message_id: Set(text(&e.message_id)),
        in_reply_to: Set(e.in_reply_to.as_deref().map(text)),
        references: Set(if e.references.is_empty() {
            None
        } else {
            Some(text(&e.references.join(" ")))
        }),
        mail_from: Set(text(&e.mail_from)),
        rcpt_to: Set(rcpt),
        subject: Set(text(&e.subject)),
        language: Set(e.language.as_deref().map(text)),
        raw: Set(Some(e.raw.clone())),
        status: Set(OutboxStatus::Queued.as_str().to_string()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        claimed_until: Set(None),
        last_error: Set(None),
        created_at: Set(now),
        sent_at: Set(None),
        failed_at: Set(None),
        sent_message_db_id: Set(None),
    })
}

async fn insert_entry<C: ConnectionTrait>(
    db: &C,
    e: &NewOutboxEntry,
    now: DateTime<Utc>,
) -> Result<i64> {
    Ok(outbox::Entity::insert(entry_row(e, now)?)
        .exec(db)
        .await?
        .last_insert_id)
}

/// Enqueues the acknowledgements of one stored batch inside its transaction (see
/// [`Store::store_batch_with_acks`]), set-wise: one count per chunk of senders, then
/// the outbox and log rows in multi-row inserts. Each acknowledgement is checked
/// against the limit with the batch's earlier ones counted. (One transaction per
/// acknowledgement cost more than the rest of the live pipeline: IMAP benchmark,
/// 4,000 new tickets.)
pub(crate) async fn enqueue_acks_in<C: ConnectionTrait>(
    txn: &C,
    items: &[(&NewOutboxEntry, &str)],
    max_per_day: u32,
    now: DateTime<Utc>,
) -> Result<Vec<EnqueueOutcome>> {
    if items.is_empty() {
        return Ok(Vec::new());
    }
    let since = day_before(now);
    let mut senders: Vec<&str> = items.iter().map(|(_, h)| *h).collect();
    senders.sort_unstable();
    senders.dedup();
    let mut sent: HashMap<String, u32> = HashMap::new();
    for chunk in senders.chunks(SENDERS_PER_QUERY) {
        let rows: Vec<(String, i64)> = ack_log::Entity::find()
            .select_only()
            .column(ack_log::Column::SenderHash)
            .column_as(ack_log::Column::Id.count(), "n")
            .filter(ack_log::Column::SenderHash.is_in(chunk.iter().copied()))
            .filter(ack_log::Column::At.gt(since))
            .group_by(ack_log::Column::SenderHash)
            .into_tuple()
            .all(txn)
            .await?;
        for (hash, n) in rows {
            sent.insert(hash, u32::try_from(n).unwrap_or(u32::MAX));
        }
    }
    // Decide in order, counting the batch's own acknowledgements.
    let mut outcomes: Vec<Option<EnqueueOutcome>> = Vec::with_capacity(items.len());
    let mut accepted: Vec<usize> = Vec::new();
    for (i, (_, hash)) in items.iter().enumerate() {
        let n = sent.entry((*hash).to_string()).or_default();
        if *n >= max_per_day {
            outcomes.push(Some(EnqueueOutcome::LimitReached { sent: *n }));
        } else {
            *n += 1;
            outcomes.push(None);
            accepted.push(i);
        }
    }
    // Outbox rows; RETURNING names them by Message-ID (unique), not by order.
    let mut ids: HashMap<String, i64> = HashMap::with_capacity(accepted.len());
    for chunk in accepted.chunks(ENTRIES_PER_INSERT) {
        let rows = chunk
            .iter()
            .filter_map(|&i| items.get(i))
            .map(|(e, _)| entry_row(e, now))
            .collect::<Result<Vec<_>>>()?;
        let stmt = outbox::Entity::insert_many(rows)
            .into_query()
            .returning(Query::returning().columns([outbox::Column::Id, outbox::Column::MessageId]))
            .to_owned();
        for row in txn.query_all(&stmt).await? {
            let id: i64 = row.try_get_by_index(0)?;
            let message_id: String = row.try_get_by_index(1)?;
            ids.insert(message_id, id);
        }
    }
    let log: Vec<ack_log::ActiveModel> = accepted
        .iter()
        .filter_map(|&i| items.get(i))
        .map(|(e, hash)| ack_log::ActiveModel {
            id: NotSet,
            sender_hash: Set((*hash).to_string()),
            ticket_id: Set(e.ticket_id),
            at: Set(now),
        })
        .collect();
    insert_rows(txn, log).await?;
    for &i in &accepted {
        let id = items
            .get(i)
            .and_then(|(e, _)| ids.get(&e.message_id))
            .copied()
            .ok_or_else(|| {
                Error::Inconsistent("an inserted acknowledgement has no outbox id".into())
            })?;
        if let Some(slot) = outcomes.get_mut(i) {
            *slot = Some(EnqueueOutcome::Queued(id));
        }
    }
    outcomes
        .into_iter()
        .map(|o| o.ok_or_else(|| Error::Inconsistent("acknowledgement left undecided".into())))
        .collect()
}

impl Store {
    /// Starts a write transaction for callers outside this crate (see [`WriteTxn`]).
    pub async fn begin_write_txn(&self) -> Result<WriteTxn> {
        Ok(WriteTxn(self.begin_write().await?))
    }

    /// Enqueues a message; it is due at once. Returns the outbox id.
    pub async fn outbox_enqueue(&self, entry: &NewOutboxEntry, now: DateTime<Utc>) -> Result<i64> {
        let txn = self.begin_write().await?;
        let id = insert_entry(&txn, entry, now).await?;
        txn.commit().await?;
        Ok(id)
    }

    /// Enqueues a message inside the caller's transaction.
    pub async fn outbox_enqueue_in(
        &self,
        txn: &WriteTxn,
        entry: &NewOutboxEntry,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        insert_entry(&txn.0, entry, now).await
    }

    /// Enqueues an acknowledgement unless `sender_hash` already had `max_per_day` in the
    /// last 24 hours; the count, the log row and the entry commit together. (On
    /// PostgreSQL two instances acknowledging the same sender in the same instant may
    /// each pass the check once; the limit is a loop brake, not an accounting rule.)
    pub async fn enqueue_ack(
        &self,
        entry: &NewOutboxEntry,
        sender_hash: &str,
        max_per_day: u32,
        now: DateTime<Utc>,
    ) -> Result<EnqueueOutcome> {
        let txn = self.begin_write().await?;
        let outcome = enqueue_acks_in(&txn, &[(entry, sender_hash)], max_per_day, now)
            .await?
            .pop()
            .ok_or_else(|| Error::Inconsistent("an acknowledgement left undecided".into()))?;
        txn.commit().await?;
        Ok(outcome)
    }

    /// Deletes acknowledgement log rows older than `before` (they only matter for a day).
    pub async fn prune_ack_log(&self, before: DateTime<Utc>) -> Result<u64> {
        Ok(ack_log::Entity::delete_many()
            .filter(ack_log::Column::At.lt(before))
            .exec(&self.db)
            .await?
            .rows_affected)
    }

    /// Claims up to `limit` due entries for `lease` from `now`: queued entries whose
    /// time came by `due_by` and `sending` entries whose lease ran out by then (a drain
    /// passes its start, so what it puts back is not taken again in the same drain).
    /// Each claim counts as an attempt.
    pub async fn outbox_claim_due(
        &self,
        due_by: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: u64,
        lease: std::time::Duration,
    ) -> Result<Vec<OutboxEntry>> {
        let lease = chrono::TimeDelta::from_std(lease)
            .map_err(|e| Error::Inconsistent(format!("lease out of range: {e}")))?;
        let mut due = Query::select();
        due.column(outbox::Column::Id)
            .from(outbox::Entity)
            .cond_where(
                Condition::any()
                    .add(
                        Condition::all()
                            .add(outbox::Column::Status.eq(OutboxStatus::Queued.as_str()))
                            .add(outbox::Column::NextAttemptAt.lte(due_by)),
                    )
                    .add(
                        Condition::all()
                            .add(outbox::Column::Status.eq(OutboxStatus::Sending.as_str()))
                            .add(outbox::Column::ClaimedUntil.lt(due_by)),
                    ),
            )
            .order_by(outbox::Column::NextAttemptAt, Order::Asc)
            .order_by(outbox::Column::Id, Order::Asc)
            .limit(limit);
        if self.backend == Backend::Postgres {
            // Concurrent workers skip each other's rows instead of queueing behind them.
            due.lock_with_behavior(LockType::Update, LockBehavior::SkipLocked);
        }
        let claim = Query::update()
            .table(outbox::Entity)
            .value(outbox::Column::Status, OutboxStatus::Sending.as_str())
            .value(outbox::Column::ClaimedUntil, now + lease)
            .value(
                outbox::Column::Attempts,
                Expr::col(outbox::Column::Attempts).add(1),
            )
            .and_where(Expr::col(outbox::Column::Id).in_subquery(due))
            .returning_all()
            .to_owned();
        let txn = self.begin_write().await?;
        let rows = txn.query_all(&claim).await?;
        txn.commit().await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            out.push(OutboxEntry::of(outbox::Model::from_query_result(
                &row, "",
            )?)?);
        }
        out.sort_by_key(|e| (e.next_attempt_at, e.id));
        Ok(out)
    }

    /// Marks an entry sent and, when `record` is given, files it on the entry's ticket as
    /// an outgoing message in the same transaction (its raw bytes move from the outbox to
    /// the blob store). Returns the message's database id.
    ///
    /// Not fenced by the claim: the message did go out, whoever holds the entry now (a
    /// worker that re-claimed it after this one's lease ran out would otherwise send it
    /// again). An entry already marked sent, or gone (erased meanwhile), is left as it
    /// is and gives `None`: the copy is filed once.
    ///
    /// `note` (kept as the entry's `last_error`) names the recipients that did not get
    /// it while others did: refused for good, or given up on. An entry whose copy was
    /// filed at an earlier, partial delivery ([`Store::outbox_retry_for`]) keeps that
    /// copy and drops its raw bytes.
    pub async fn outbox_mark_sent(
        &self,
        id: i64,
        now: DateTime<Utc>,
        record: Option<NewMessage>,
        note: Option<&str>,
    ) -> Result<Option<i64>> {
        let txn = self.begin_serialized().await?;
        let mut pending = PendingKeys::default();
        // Update first: on PostgreSQL the row lock makes a concurrent mark wait, then
        // find the entry sent.
        let update = outbox::Entity::update_many()
            .col_expr(
                outbox::Column::Status,
                Expr::value(OutboxStatus::Sent.as_str()),
            )
            .col_expr(outbox::Column::SentAt, Expr::value(now))
            .col_expr(
                outbox::Column::ClaimedUntil,
                Expr::value(Option::<DateTime<Utc>>::None),
            )
            .col_expr(outbox::Column::LastError, Expr::value(note))
            .filter(outbox::Column::Status.ne(OutboxStatus::Sent.as_str()));
        let Some(entry) = update_and_read(&txn, update, id).await? else {
            txn.rollback().await?;
            return Ok(None);
        };
        let message_db_id = match entry.sent_message_db_id {
            // Filed when the first recipients took it.
            Some(filed) => Some(filed),
            None => file_sent_copy(self, &txn, &entry, record, now, &mut pending).await?,
        };
        if message_db_id.is_some() {
            // The raw bytes are kept only while no copy on the ticket exists.
            outbox::Entity::update_many()
                .col_expr(outbox::Column::SentMessageDbId, Expr::value(message_db_id))
                .col_expr(outbox::Column::Raw, Expr::value(Option::<Vec<u8>>::None))
                .filter(outbox::Column::Id.eq(id))
                .exec(&txn)
                .await?;
        }
        txn.commit().await?;
        pending.commit_to(self.keys.as_deref());
        Ok(message_db_id)
    }

    /// Puts a claimed entry back in the queue until `next_attempt_at`, only while this
    /// worker's claim holds: `attempt` is the entry's attempt count when it was claimed,
    /// and a later claim (after this one's lease ran out) has a higher one. Returns
    /// whether the claim still held.
    pub async fn outbox_retry_later(
        &self,
        id: i64,
        attempt: u32,
        error: &str,
        next_attempt_at: DateTime<Utc>,
    ) -> Result<bool> {
        self.requeue_claimed(id, attempt, next_attempt_at, Some(error))
            .await
    }

    /// After a delivery that not every recipient took: while this worker's claim of
    /// attempt `attempt` holds, the entry waits until `next_attempt_at` for `remaining`
    /// (the recipients the relay deferred), with `error` saying who took it and who did
    /// not. When some recipient did take it, `record` is the sent copy: it is filed on
    /// the ticket now (once; the raw bytes stay for the retry), because that recipient has
    /// it whatever becomes of the others. Returns whether the claim still held.
    #[allow(clippy::too_many_arguments)]
    pub async fn outbox_retry_for(
        &self,
        id: i64,
        attempt: u32,
        remaining: &[String],
        error: &str,
        next_attempt_at: DateTime<Utc>,
        record: Option<NewMessage>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let rcpt_to = serde_json::to_string(remaining)
            .map_err(|e| Error::Inconsistent(format!("recipients of outbox {id}: {e}")))?;
        let txn = self.begin_serialized().await?;
        let mut pending = PendingKeys::default();
        let update = claimed(
            queued_update(next_attempt_at)
                .col_expr(outbox::Column::LastError, Expr::value(error))
                .col_expr(outbox::Column::RcptTo, Expr::value(rcpt_to)),
            attempt,
        );
        let Some(entry) = update_and_read(&txn, update, id).await? else {
            txn.rollback().await?;
            return Ok(false);
        };
        if entry.sent_message_db_id.is_none() {
            if let Some(filed) =
                file_sent_copy(self, &txn, &entry, record, now, &mut pending).await?
            {
                outbox::Entity::update_many()
                    .col_expr(outbox::Column::SentMessageDbId, Expr::value(filed))
                    .filter(outbox::Column::Id.eq(id))
                    .exec(&txn)
                    .await?;
            }
        }
        txn.commit().await?;
        pending.commit_to(self.keys.as_deref());
        Ok(true)
    }

    /// Hands a claim back unused (the worker did not try to send): the entry is queued
    /// again, due `now` (so the drain that started before does not take it again), its
    /// attempt count restored. Only while this worker's claim of attempt `attempt`
    /// holds; returns whether it did.
    pub async fn outbox_release_claim(
        &self,
        id: i64,
        attempt: u32,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.requeue_claimed(id, attempt, now, None).await
    }

    /// Queues a claimed entry again while the claim of attempt `attempt` holds: after a
    /// failed attempt (`error` recorded) or unused (`None`: the attempt is given back).
    async fn requeue_claimed(
        &self,
        id: i64,
        attempt: u32,
        next_attempt_at: DateTime<Utc>,
        error: Option<&str>,
    ) -> Result<bool> {
        let update = queued_update(next_attempt_at);
        let update = match error {
            Some(e) => update.col_expr(outbox::Column::LastError, Expr::value(e)),
            None => update.col_expr(
                outbox::Column::Attempts,
                Expr::col(outbox::Column::Attempts).sub(1),
            ),
        };
        self.while_claimed(update, id, attempt).await
    }

    /// Runs `update` on entry `id` only while the claim of attempt `attempt` holds (a
    /// later claim has a higher count); whether it did.
    async fn while_claimed(
        &self,
        update: sea_orm::UpdateMany<outbox::Entity>,
        id: i64,
        attempt: u32,
    ) -> Result<bool> {
        let updated = claimed(update, attempt)
            .filter(outbox::Column::Id.eq(id))
            .exec(&self.db)
            .await?;
        Ok(updated.rows_affected > 0)
    }

    /// Gives up on a claimed entry, only while this worker's claim of attempt `attempt`
    /// holds (see [`Store::outbox_retry_later`]). Returns whether it did.
    pub async fn outbox_mark_failed(
        &self,
        id: i64,
        attempt: u32,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        self.while_claimed(failed_update(error, now), id, attempt)
            .await
    }

    pub async fn outbox_get(&self, id: i64) -> Result<Option<OutboxEntry>> {
        outbox::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(OutboxEntry::of)
            .transpose()
    }

    /// The entry that sent the message with this Message-ID (angle brackets optional).
    pub async fn outbox_find_by_message_id(&self, message_id: &str) -> Result<Option<OutboxEntry>> {
        let Some(mid) = qd_core::normalize_message_id(message_id) else {
            return Ok(None);
        };
        outbox::Entity::find()
            .filter(outbox::Column::MessageId.eq(mid))
            .one(&self.db)
            .await?
            .map(OutboxEntry::of)
            .transpose()
    }

    /// Entries addressed to any of `addresses` (an envelope recipient, case-insensitive)
    /// that have no copy on a ticket yet: mail waiting, being sent, failed, or sent
    /// without a ticket. Sent mail with a copy is exported with its ticket. Oldest first.
    pub async fn outbox_unrecorded_to(&self, addresses: &[String]) -> Result<Vec<OutboxEntry>> {
        use sea_orm::sea_query::Func;
        use sea_orm::QueryOrder;
        let mut out: Vec<OutboxEntry> = Vec::new();
        for address in addresses {
            let rows = outbox::Entity::find()
                .filter(outbox::Column::SentMessageDbId.is_null())
                .filter(
                    Expr::expr(Func::lower(Expr::col(outbox::Column::RcptTo)))
                        .like(crate::erase::contains_lowercase(address)),
                )
                .order_by_asc(outbox::Column::Id)
                .all(&self.db)
                .await?;
            for row in rows {
                let entry = OutboxEntry::of(row)?;
                let theirs = entry
                    .rcpt_to
                    .iter()
                    .any(|r| qd_core::mailbox_is(r, address));
                if theirs && !out.iter().any(|e| e.id == entry.id) {
                    out.push(entry);
                }
            }
        }
        out.sort_by_key(|e| e.id);
        Ok(out)
    }

    /// Entries of a ticket, oldest first (for the staff view and tests).
    pub async fn outbox_for_ticket(&self, ticket_id: i64) -> Result<Vec<OutboxEntry>> {
        use sea_orm::QueryOrder;
        outbox::Entity::find()
            .filter(outbox::Column::TicketId.eq(ticket_id))
            .order_by_asc(outbox::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(OutboxEntry::of)
            .collect()
    }

    /// A delivery status notification for entry `id` came back: the entry is marked
    /// failed with `diagnostic`, and the DSN (when given) is filed on the entry's ticket
    /// as an inbound message, all in one transaction. Returns the DSN's message id, or
    /// `None` when it was not filed (no ticket, or already stored).
    pub async fn outbox_record_bounce(
        &self,
        id: i64,
        diagnostic: &str,
        dsn: Option<NewMessage>,
        now: DateTime<Utc>,
    ) -> Result<Option<i64>> {
        let txn = self.begin_serialized().await?;
        let mut pending = PendingKeys::default();
        let entry = outbox::Entity::find_by_id(id)
            .one(&txn)
            .await?
            .ok_or_else(|| Error::Inconsistent(format!("outbox entry {id} is gone")))?;
        mark_failed(&txn, id, diagnostic, now).await?;
        let filed = match (dsn, entry.ticket_id) {
            (Some(mut m), Some(ticket_id)) => {
                let before = messages::Entity::find()
                    .filter(messages::Column::ContentKey.eq(lookup_key(&m.content_hash)))
                    .filter(messages::Column::ContentHash.eq(m.content_hash.clone()))
                    .count(&txn)
                    .await?;
                if before == 0 {
                    Some(attach_in(self, &txn, ticket_id, &mut m, now, &mut pending).await?)
                } else {
                    None
                }
            }
            _ => None,
        };
        txn.commit().await?;
        pending.commit_to(self.keys.as_deref());
        Ok(filed)
    }

    /// Files one message on a given ticket, bypassing threading: for messages whose
    /// ticket is known from elsewhere (a bounce of our own mail, a message staff moved).
    /// A message whose content hash is already stored is not stored again; its id is
    /// returned instead.
    pub async fn store_on_ticket(
        &self,
        ticket_id: i64,
        mut message: NewMessage,
        now: DateTime<Utc>,
    ) -> Result<i64> {
        let txn = self.begin_serialized().await?;
        let mut pending = PendingKeys::default();
        let id = attach_in(self, &txn, ticket_id, &mut message, now, &mut pending).await?;
        txn.commit().await?;
        pending.commit_to(self.keys.as_deref());
        Ok(id)
    }
}

async fn mark_failed<C: ConnectionTrait>(
    db: &C,
    id: i64,
    error: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    failed_update(error, now)
        .filter(outbox::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// Fails the entry a bounce reports (by its Message-ID), if it is ours; whether one was.
pub(crate) async fn fail_reported_in(
    txn: &DatabaseTransaction,
    reported: &crate::ReportedFailure,
    now: DateTime<Utc>,
) -> Result<bool> {
    let Some(mid) = qd_core::normalize_message_id(&reported.original_message_id) else {
        return Ok(false);
    };
    let failed = failed_update(&reported.error, now)
        .filter(outbox::Column::MessageId.eq(mid))
        .exec(txn)
        .await?
        .rows_affected;
    if failed > 0 {
        tracing::info!(entries = failed, "bounce recorded");
    }
    Ok(failed > 0)
}

/// The update that marks entries failed (the caller adds which).
/// An entry queued again, due at `next_attempt_at`, its claim ended.
fn queued_update(next_attempt_at: DateTime<Utc>) -> sea_orm::UpdateMany<outbox::Entity> {
    outbox::Entity::update_many()
        .col_expr(
            outbox::Column::Status,
            Expr::value(OutboxStatus::Queued.as_str()),
        )
        .col_expr(outbox::Column::NextAttemptAt, Expr::value(next_attempt_at))
        .col_expr(
            outbox::Column::ClaimedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
}

/// `update`, only while the claim of attempt `attempt` holds (a later claim has a higher
/// count).
fn claimed(
    update: sea_orm::UpdateMany<outbox::Entity>,
    attempt: u32,
) -> sea_orm::UpdateMany<outbox::Entity> {
    update
        .filter(outbox::Column::Status.eq(OutboxStatus::Sending.as_str()))
        .filter(outbox::Column::Attempts.eq(i64::from(attempt)))
}

/// Runs `update` on entry `id` in `txn`; the entry as it is afterwards, or `None` when
/// the update matched nothing.
async fn update_and_read(
    txn: &DatabaseTransaction,
    update: sea_orm::UpdateMany<outbox::Entity>,
    id: i64,
) -> Result<Option<outbox::Model>> {
    let updated = update
        .filter(outbox::Column::Id.eq(id))
        .exec(txn)
        .await?
        .rows_affected;
    if updated == 0 {
        return Ok(None);
    }
    outbox::Entity::find_by_id(id)
        .one(txn)
        .await?
        .map(Some)
        .ok_or_else(|| Error::Inconsistent(format!("outbox entry {id} is gone")))
}

fn failed_update(error: &str, now: DateTime<Utc>) -> sea_orm::UpdateMany<outbox::Entity> {
    outbox::Entity::update_many()
        .col_expr(
            outbox::Column::Status,
            Expr::value(OutboxStatus::Failed.as_str()),
        )
        .col_expr(outbox::Column::FailedAt, Expr::value(now))
        .col_expr(
            outbox::Column::ClaimedUntil,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(outbox::Column::LastError, Expr::value(error))
}

/// Files `record`, the sent copy of outbox `entry`, on the entry's ticket; its message
/// id, or `None` when there is no record, no ticket, or the record was made from bytes
/// the entry no longer holds (an erasure rewrote them while the mail was out: the entry
/// keeps what erasure left).
async fn file_sent_copy(
    store: &Store,
    txn: &DatabaseTransaction,
    entry: &outbox::Model,
    record: Option<NewMessage>,
    now: DateTime<Utc>,
    pending: &mut PendingKeys,
) -> Result<Option<i64>> {
    let current = entry.raw.as_deref().map(|r| hex::encode(Sha256::digest(r)));
    let record =
        record.filter(|m| m.blob.as_ref().map(|b| b.digest.as_str()) == current.as_deref());
    Ok(match (record, entry.ticket_id) {
        (Some(mut m), Some(ticket_id)) => {
            Some(attach_in(store, txn, ticket_id, &mut m, now, pending).await?)
        }
        _ => None,
    })
}

/// Writes one message (blob, row, attachments, thread refs, search-queue entry) on
/// `ticket_id` and moves the ticket's activity forward. The blob is scoped to the
/// ticket's requester, so erasing that contact erases our mail to them too. A content
/// hash that is already stored returns the stored message's id.
async fn attach_in(
    store: &Store,
    txn: &DatabaseTransaction,
    ticket_id: i64,
    m: &mut NewMessage,
    now: DateTime<Utc>,
    pending: &mut PendingKeys,
) -> Result<i64> {
    crate::batch::strip_nul(m);
    if let Some(existing) = messages::Entity::find()
        .filter(messages::Column::ContentKey.eq(lookup_key(&m.content_hash)))
        .filter(messages::Column::ContentHash.eq(m.content_hash.clone()))
        .one(txn)
        .await?
    {
        return Ok(existing.id);
    }
    let ticket = tickets::Entity::find_by_id(ticket_id)
        .one(txn)
        .await?
        .ok_or_else(|| Error::Inconsistent(format!("ticket {ticket_id} does not exist")))?;
    let scope = blob_scope(ticket.requester_id);
    let mut blob_id = None;
    if let Some(mut b) = m.blob.take() {
        // Content-addressed: the same mail under the same scope is stored once.
        let stored: Option<i64> = blobs::Entity::find()
            .select_only()
            .column(blobs::Column::Id)
            .filter(blobs::Column::DigestKey.eq(lookup_key(&b.digest)))
            .filter(blobs::Column::Digest.eq(b.digest.clone()))
            .filter(blobs::Column::Scope.eq(scope.clone()))
            .into_tuple()
            .one(txn)
            .await?;
        blob_id = match stored {
            Some(id) => Some(id),
            None => {
                // Sealed with the scope's key when the store has a key ring, as ingest
                // does.
                let sealer = match &store.keys {
                    Some(ring) => {
                        crate::keys::scope_keys(txn, ring, &[scope.as_str()], now, pending)
                            .await?
                            .remove(scope.as_str())
                    }
                    None => None,
                };
                let row = blob_row(&scope, &mut b, sealer.as_deref(), now)?;
                let id = blobs::Entity::insert(row).exec(txn).await?.last_insert_id;
                // As for every stored blob: what its header block names, for erasure.
                crate::batch::insert_rows(txn, crate::batch::mention_rows_of(id, &b.mentions))
                    .await?;
                Some(id)
            }
        };
    }
    let json = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
    let row = messages::ActiveModel {
        id: NotSet,
        ticket_id: Set(ticket_id),
        contact_id: Set(None),
        direction: Set(m.direction.as_str().to_string()),
        message_id: Set(m.message_id.clone()),
        in_reply_to: Set(non_empty(&m.in_reply_to)),
        references: Set(non_empty(&m.references)),
        from_addr: Set(m.from_addr.clone()),
        from_name: Set(m.from_name.clone()),
        to_addrs: Set(json(&m.to)),
        cc_addrs: Set(json(&m.cc)),
        date: Set(m.date),
        received_at: Set(m.received_at),
        subject: Set(m.subject.clone()),
        body_text: Set(std::mem::take(&mut m.body_text)),
        body_html: Set(m.body_html.take()),
        size: Set(m.size),
        content_hash: Set(m.content_hash.clone()),
        content_key: Set(lookup_key(&m.content_hash)),
        message_id_key: Set(m.message_id.as_deref().map(lookup_key)),
        has_attachments: Set(!m.attachments.is_empty()),
        verdict_class: Set(None),
        verdict_score: Set(None),
        verdict_tags: Set(None),
        quarantined: Set(false),
        defects: Set(json(&m.defects)),
        source: Set(m.source.clone()),
        source_position: Set(m.source_position.clone()),
        blob_id: Set(blob_id),
    };
    let message_db_id = messages::Entity::insert(row)
        .exec(txn)
        .await?
        .last_insert_id;
    let mut refs: Vec<&String> = Vec::new();
    for r in m
        .in_reply_to
        .iter()
        .chain(m.references.iter().rev().take(10))
    {
        if !refs.contains(&r) && Some(r) != m.message_id.as_ref() {
            refs.push(r);
        }
    }
    insert_rows(
        txn,
        refs.into_iter()
            .map(|r| thread_refs::ActiveModel {
                id: NotSet,
                ref_id: Set(r.clone()),
                ref_key: Set(lookup_key(r)),
                ticket_id: Set(ticket_id),
            })
            .collect(),
    )
    .await?;
    insert_rows(
        txn,
        m.attachments
            .iter()
            .map(|a| attachments::ActiveModel {
                id: NotSet,
                message_id: Set(message_db_id),
                filename: Set(a.filename.clone()),
                content_type: Set(a.content_type.clone()),
                size: Set(a.size),
                digest: Set(a.digest.clone()),
                quarantined: Set(false),
            })
            .collect(),
    )
    .await?;
    insert_rows(txn, vec![queue_row(message_db_id, "upsert", now)]).await?;
    // Our own mail moves the ticket's activity; a bounce does too, so staff see it.
    if m.received_at > ticket.last_activity_at {
        tickets::Entity::update_many()
            .col_expr(tickets::Column::LastActivityAt, Expr::value(m.received_at))
            .filter(tickets::Column::Id.eq(ticket_id))
            .exec(txn)
            .await?;
    }
    Ok(message_db_id)
}

#[cfg(test)]
mod sender_hash_tests {
    use super::sender_hash;

    #[test]
    fn a_plus_tag_does_not_make_another_sender() {
        let base = sender_hash("support@vendor.example");
        assert_eq!(sender_hash("Support+4711@Vendor.example"), base);
        assert_eq!(sender_hash("support+4712@vendor.example"), base);
        assert_ne!(sender_hash("sales@vendor.example"), base);
        assert_ne!(
            sender_hash("+x@vendor.example"),
            sender_hash("@vendor.example")
        );
    }
}
