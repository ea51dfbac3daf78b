//! The ingest write path: one transaction per batch of parsed messages.
//!
//! Order of work inside the transaction, and why:
//! 1. drop duplicates (content hash already stored, or seen earlier in the batch);
//! 2. file each sender as a contact (created when new, linked to a customer whose
//!    address matches);
//! 3. thread: a ticket reference in the subject wins, then In-Reply-To / References
//!    (latest first) against stored and in-batch Message-IDs, else a new ticket;
//! 4. allocate ticket numbers from the `ticket_number` counter with one atomic
//!    `UPDATE … RETURNING`, so concurrent writers (PostgreSQL) never collide;
//! 5. write blobs (the compressed raw mail), messages, attachments, thread references
//!    and search-queue entries;
//! 6. advance the source checkpoint in the same transaction, so a source position is
//!    either fully stored or not at all.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use qd_core::{lookup_key, Direction, TicketRefFormat, TicketStatus};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, QueryFilter, QuerySelect,
    QueryTrait,
};

use crate::blob::{PreparedBlob, CODEC_ZSTD};
use crate::crypto::CODEC_SEALED;
use crate::entity::{
    attachments, blob_mentions, blobs, contacts, counters, customers, ingest_checkpoints,
    ingest_held, messages, search_queue, thread_refs, tickets,
};
use crate::keys::PendingKeys;
use crate::{Error, Result, Store};

/// Rows per INSERT statement: SQLite allows 32,766 bound variables per statement and a
/// message row has 28 columns.
const CHUNK: usize = 500;
/// Values per `IN (…)` list.
pub(crate) const IN_CHUNK: usize = 900;
/// The longest mailbox address SMTP carries (RFC 5321 4.5.3.1: a 256-octet path less
/// its angle brackets).
pub const MAX_ADDRESS_LEN: usize = 254;

pub const TICKET_COUNTER: &str = "ticket_number";

/// One message ready to be stored (built by the ingest pipeline from a parsed mail).
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub direction: Direction,
    pub message_id: Option<String>,
    pub in_reply_to: Vec<String>,
    pub references: Vec<String>,
    pub from_addr: Option<String>,
    pub from_name: Option<String>,
    /// Display forms (`Name <addr>` or `addr`).
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub date: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub subject: String,
    pub body_text: String,
    pub body_html: Option<String>,
    pub size: i64,
    pub content_hash: String,
    pub attachments: Vec<NewAttachment>,
    /// Parse defects, as their stable snake_case names.
    pub defects: Vec<String>,
    pub source: Option<String>,
    pub source_position: Option<String>,
    /// The raw mail; taken by [`Store::store_batch`] (as are `body_text` and
    /// `body_html`: the large parts are moved into the database, not copied).
    pub blob: Option<PreparedBlob>,
    /// Team a new ticket is routed to.
    pub team: Option<String>,
    /// The filter's verdict, when the message was judged.
    pub verdict: Option<MessageVerdict>,
    /// A delivery report (bounce) of mail the outbox sent, read before the store: the
    /// entry it reports fails in the batch's transaction, whether the report is stored
    /// now or was already (fetched again after a crash).
    pub reports_failure: Option<ReportedFailure>,
}

/// What a bounce says of one outbox entry: the Message-ID it reports and the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportedFailure {
    pub original_message_id: String,
    pub error: String,
}

/// A filter verdict as the store keeps it (the filter crate's types stay out of the store).
#[derive(Debug, Clone, PartialEq)]
pub struct MessageVerdict {
    /// `ham`, `spam` or `virus`.
    pub class: String,
    pub score: f64,
    /// The tags that fired, as JSON (`[{name, score, detail}]`).
    pub tags_json: String,
    /// Held back from the inbox until staff release it (spam and virus verdicts).
    pub quarantined: bool,
}

#[derive(Debug, Clone)]
pub struct NewAttachment {
    pub filename: Option<String>,
    pub content_type: String,
    pub size: i64,
    pub digest: String,
    /// A signature matched this part: it is withheld from staff.
    pub quarantined: bool,
}

/// How far a source got; written with the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub source: String,
    pub uidvalidity: Option<i64>,
    pub position: String,
    /// IMAP UIDs at or below `position` whose mail this batch did not store and that
    /// must stay on the server (see [`HeldPosition`]). Written with the checkpoint;
    /// [`Store::checkpoint`] does not read them back ([`Store::held_uids`] does).
    pub held: Vec<HeldPosition>,
}

/// The PostgreSQL lock a storing batch holds for its transaction (SQLite's write lock
/// serialises writers by itself): whoever else must not interleave with a batch (a
/// retention delete re-checking a ticket's activity) takes it too.
pub(crate) const STORE_LOCK: &str = "SELECT pg_advisory_xact_lock(7166390)";

/// A UID the checkpoint moves past without storing its mail: over the size limit, not
/// returned by the server, or not preparable. Recorded with the checkpoint so that the
/// after-ingest action (move, delete) re-applied after a crash never touches it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldPosition {
    pub uid: i64,
    /// A fixed description (no personal data).
    pub reason: String,
}

pub struct BatchSettings<'a> {
    pub ticket_ref: &'a TicketRefFormat,
    pub now: DateTime<Utc>,
}

/// Where one message of the batch ended up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Index into the batch.
    pub index: usize,
    pub message_db_id: i64,
    pub ticket_id: i64,
    pub ticket_number: i64,
    pub ticket_status: TicketStatus,
    /// This message opened its ticket (a follow-up stored in the same batch does not).
    pub new_ticket: bool,
}

#[derive(Debug, Clone, Default)]
pub struct BatchOutcome {
    pub stored: Vec<StoredMessage>,
    /// Indexes into the batch of messages that were already stored.
    pub duplicates: Vec<usize>,
    /// Indexes into the batch of messages the store deleted before (retention,
    /// erasure): the same bytes again, not stored.
    pub forgotten: Vec<usize>,
    pub new_tickets: u64,
    /// Already-indexed messages re-queued because their ticket changed status.
    pub requeued: u64,
}

/// Acknowledgements to write with a batch (see [`Store::store_batch_with_acks`]):
/// `plan` sees the outcome and the stored messages and returns the outbox entries with
/// their sender hashes; each is subject to `max_per_day` per sender, counted in the
/// transaction with the batch's earlier ones.
pub struct BatchAcks<'a> {
    #[allow(clippy::type_complexity)]
    pub plan: &'a (dyn Fn(&BatchOutcome, &[NewMessage]) -> Vec<(crate::NewOutboxEntry, String)>
             + Send
             + Sync),
    pub max_per_day: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Slot {
    Existing(i64),
    New(usize),
}

struct TicketInfo {
    number: i64,
    status: TicketStatus,
    last_activity_at: DateTime<Utc>,
}

impl TicketInfo {
    fn of(t: &tickets::Model) -> Result<TicketInfo> {
        Ok(TicketInfo {
            number: t.number,
            status: t
                .status
                .parse()
                .map_err(|e: qd_core::ParseEnumError| Error::Inconsistent(e.to_string()))?,
            last_activity_at: t.last_activity_at,
        })
    }
}

/// The row that stores a prepared blob under `scope`: its bytes are moved out of `b` and
/// sealed with `sealer` (the scope's key) when the store has a key ring.
pub(crate) fn blob_row(
    scope: &str,
    b: &mut PreparedBlob,
    sealer: Option<&crate::crypto::DataKey>,
    now: DateTime<Utc>,
) -> Result<blobs::ActiveModel> {
    let raw = std::mem::take(&mut b.data);
    let (codec, data) = match sealer {
        Some(key) => (CODEC_SEALED, key.seal(scope, &b.digest, &raw)?),
        None => (CODEC_ZSTD, raw),
    };
    Ok(blobs::ActiveModel {
        id: NotSet,
        digest: Set(b.digest.clone()),
        digest_key: Set(lookup_key(&b.digest)),
        scope: Set(scope.to_string()),
        codec: Set(codec.to_string()),
        size: Set(b.size as i64),
        stored_size: Set(data.len() as i64),
        data: Set(data),
        created_at: Set(now),
    })
}

/// The `blob_mentions` rows of blob `blob_id` naming `mentions` (each key once).
pub(crate) fn mention_rows_of(
    blob_id: i64,
    mentions: &[String],
) -> Vec<blob_mentions::ActiveModel> {
    let mut keys: Vec<i64> = mentions.iter().map(|a| lookup_key(a)).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .map(|address_key| blob_mentions::ActiveModel {
            blob_id: Set(blob_id),
            address_key: Set(address_key),
        })
        .collect()
}

pub(crate) fn blob_scope(contact_id: Option<i64>) -> String {
    match contact_id {
        Some(id) => format!("contact-{id}"),
        None => "unattributed".to_string(),
    }
}

impl Store {
    /// Stores a batch in one transaction; see the module documentation for the steps.
    /// Blobs are taken out of the messages. An empty batch with a checkpoint just
    /// advances the checkpoint.
    pub async fn store_batch(
        &self,
        batch: &mut [NewMessage],
        checkpoint: Option<&Checkpoint>,
        settings: &BatchSettings<'_>,
    ) -> Result<BatchOutcome> {
        Ok(self
            .store_batch_with_acks(batch, checkpoint, settings, None)
            .await?
            .0)
    }

    /// [`Store::store_batch`], and the acknowledgements `acks` plans from the outcome
    /// (see [`BatchAcks`]) enqueued in the same transaction: a message is never stored
    /// without the acknowledgement it was due, and a batch costs one commit. Returns
    /// one [`EnqueueOutcome`] per planned acknowledgement, in order.
    pub async fn store_batch_with_acks(
        &self,
        batch: &mut [NewMessage],
        checkpoint: Option<&Checkpoint>,
        settings: &BatchSettings<'_>,
        acks: Option<&BatchAcks<'_>>,
    ) -> Result<(BatchOutcome, Vec<crate::outbox::EnqueueOutcome>)> {
        let txn = self.begin_write().await?;
        if self.backend == crate::Backend::Postgres && !batch.is_empty() {
            // Dedup and threading read, then write: two batches at READ COMMITTED (two
            // watched folders receiving the same mail) would each miss the other's
            // rows. One batch at a time, as SQLite's write lock gives.
            txn.execute_unprepared(STORE_LOCK).await?;
        }
        let mut pending = PendingKeys::default();
        let outcome = self
            .store_batch_in(&txn, batch, settings, &mut pending)
            .await?;
        let reported = outcome
            .stored
            .iter()
            .map(|s| s.index)
            .chain(outcome.duplicates.iter().copied())
            .filter_map(|i| batch.get(i).and_then(|m| m.reports_failure.as_ref()));
        for r in reported {
            crate::outbox::fail_reported_in(&txn, r, settings.now).await?;
        }
        let mut enqueued = Vec::new();
        if let Some(acks) = acks {
            let planned = (acks.plan)(&outcome, batch);
            let items: Vec<(&crate::NewOutboxEntry, &str)> =
                planned.iter().map(|(e, h)| (e, h.as_str())).collect();
            enqueued = crate::outbox::enqueue_acks_in(&txn, &items, acks.max_per_day, settings.now)
                .await?;
        }
        if let Some(cp) = checkpoint {
            upsert_checkpoint(&txn, cp, settings.now).await?;
        }
        let committing = std::time::Instant::now();
        txn.commit().await?;
        pending.commit_to(self.keys.as_deref());
        tracing::debug!(
            commit_ms = committing.elapsed().as_millis() as u64,
            "batch committed"
        );
        Ok((outcome, enqueued))
    }

    async fn store_batch_in(
        &self,
        txn: &DatabaseTransaction,
        batch: &mut [NewMessage],
        settings: &BatchSettings<'_>,
        pending: &mut PendingKeys,
    ) -> Result<BatchOutcome> {
        let mut outcome = BatchOutcome::default();
        if batch.is_empty() {
            return Ok(outcome);
        }
        let now = settings.now;
        for m in batch.iter_mut() {
            strip_nul(m);
        }

        let mut phases = Phases::start();
        // 1. Duplicates.
        // The index holds 64-bit keys; `seen` compares the full hashes it returns.
        let keys: Vec<i64> = batch.iter().map(|m| lookup_key(&m.content_hash)).collect();
        let mut seen: HashSet<String> = HashSet::new();
        for chunk in keys.chunks(IN_CHUNK) {
            let rows: Vec<String> = messages::Entity::find()
                .select_only()
                .column(messages::Column::ContentHash)
                .filter(messages::Column::ContentKey.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(txn)
                .await?;
            seen.extend(rows);
        }
        // Mail deleted before (retention, quarantine expiry, erasure) and read again: a
        // rescan of a folder that keeps its mail, an archive imported twice.
        let forgotten = crate::forgotten::among(txn, &keys).await?;
        let mut keep = Vec::with_capacity(batch.len());
        for (i, m) in batch.iter().enumerate() {
            if forgotten.contains(&m.content_hash) {
                outcome.forgotten.push(i);
            } else if seen.insert(m.content_hash.clone()) {
                keep.push(i);
            } else {
                outcome.duplicates.push(i);
            }
        }
        if keep.is_empty() {
            return Ok(outcome);
        }

        phases.end("dedupe");
        // 2. Contacts.
        let contact_ids = self.file_contacts(txn, batch, &keep, now).await?;

        phases.end("contacts");
        // 3. Threading.
        let subject_refs: Vec<Option<i64>> = keep
            .iter()
            .map(|&i| settings.ticket_ref.find(&batch[i].subject))
            .collect();
        let ref_numbers: HashSet<i64> = subject_refs.iter().flatten().copied().collect();
        let mut ref_ids: HashSet<&str> = HashSet::new();
        for &i in &keep {
            let m = &batch[i];
            // A message's own Message-ID too: another copy of it (the same mail through
            // a mailing list, with a footer that changes its content hash) joins the
            // ticket the first copy opened instead of opening a second one.
            for id in m
                .in_reply_to
                .iter()
                .chain(m.references.iter())
                .chain(m.message_id.iter())
            {
                ref_ids.insert(id.as_str());
            }
        }
        let mut by_number: HashMap<i64, i64> = HashMap::new();
        let mut existing: HashMap<i64, TicketInfo> = HashMap::new();
        let numbers: Vec<i64> = ref_numbers.into_iter().collect();
        for chunk in numbers.chunks(IN_CHUNK) {
            let found = tickets::Entity::find()
                .filter(tickets::Column::Number.is_in(chunk.iter().copied()))
                .all(txn)
                .await?;
            // An anonymised ticket (its person erased, statistics kept) takes no new mail
            // by its number: joining a new message to it would tie the anonymised
            // history to whoever wrote (most likely the erased person, again).
            for t in found {
                if t.anonymised_at.is_some() {
                    continue;
                }
                by_number.insert(t.number, t.id);
                existing.insert(t.id, TicketInfo::of(&t)?);
            }
        }
        // Lookups by key return the full ids; the maps below are only ever read by the
        // exact id, so a row that merely shares a key is never matched.
        let mut by_message_id: HashMap<String, Slot> = HashMap::new();
        let ref_keys: Vec<i64> = ref_ids.into_iter().map(lookup_key).collect();
        for chunk in ref_keys.chunks(IN_CHUNK) {
            let rows: Vec<(Option<String>, i64)> = messages::Entity::find()
                .select_only()
                .column(messages::Column::MessageId)
                .column(messages::Column::TicketId)
                .filter(messages::Column::MessageIdKey.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(txn)
                .await?;
            for (mid, tid) in rows {
                if let Some(mid) = mid {
                    by_message_id.insert(mid, Slot::Existing(tid));
                }
            }
        }
        // Replies stored before their parent: the parent joins the reply's ticket.
        let own_keys: Vec<i64> = keep
            .iter()
            .filter_map(|&i| batch[i].message_id.as_deref().map(lookup_key))
            .collect();
        let mut referenced_in_db: HashMap<String, i64> = HashMap::new();
        for chunk in own_keys.chunks(IN_CHUNK) {
            let rows: Vec<(String, i64)> = thread_refs::Entity::find()
                .select_only()
                .column(thread_refs::Column::RefId)
                .column(thread_refs::Column::TicketId)
                .filter(thread_refs::Column::RefKey.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(txn)
                .await?;
            referenced_in_db.extend(rows);
        }
        let mut referenced_by: HashMap<String, Slot> = HashMap::new();
        let mut slots: Vec<Slot> = Vec::with_capacity(keep.len());
        let mut new_count = 0usize;
        for (k, &i) in keep.iter().enumerate() {
            let m = &batch[i];
            let by_ref = subject_refs[k]
                .and_then(|n| by_number.get(&n).copied())
                .map(Slot::Existing);
            let by_header = || {
                m.in_reply_to
                    .iter()
                    .chain(m.references.iter().rev())
                    .find_map(|id| by_message_id.get(id).copied())
            };
            let by_same_id = || {
                m.message_id
                    .as_ref()
                    .and_then(|mid| by_message_id.get(mid).copied())
            };
            let by_child = || {
                let mid = m.message_id.as_ref()?;
                referenced_by
                    .get(mid)
                    .copied()
                    .or_else(|| referenced_in_db.get(mid).copied().map(Slot::Existing))
            };
            let slot = match by_ref
                .or_else(by_header)
                .or_else(by_same_id)
                .or_else(by_child)
            {
                Some(s) => s,
                None => {
                    new_count += 1;
                    Slot::New(new_count - 1)
                }
            };
            if let Some(mid) = &m.message_id {
                by_message_id.entry(mid.clone()).or_insert(slot);
            }
            for r in thread_refs_of(m) {
                referenced_by.entry(r.to_string()).or_insert(slot);
            }
            slots.push(slot);
        }

        // Existing tickets reached through headers need their number and status too.
        let missing: Vec<i64> = slots
            .iter()
            .filter_map(|s| match s {
                Slot::Existing(id) if !existing.contains_key(id) => Some(*id),
                _ => None,
            })
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        for chunk in missing.chunks(IN_CHUNK) {
            for t in tickets::Entity::find()
                .filter(tickets::Column::Id.is_in(chunk.iter().copied()))
                .all(txn)
                .await?
            {
                existing.insert(t.id, TicketInfo::of(&t)?);
            }
        }

        phases.end("threading");
        // 4. New tickets.
        let mut new_ids: Vec<(i64, i64)> = Vec::with_capacity(new_count);
        if new_count > 0 {
            let last = allocate(txn, TICKET_COUNTER, new_count as i64).await?;
            let first = last - new_count as i64 + 1;
            // A new ticket spans every message of its slot in this batch: a whole
            // thread imported at once must not look as old as its first message
            // (retention counts from the last activity).
            let mut span: Vec<Option<(DateTime<Utc>, DateTime<Utc>)>> = vec![None; new_count];
            for (k, &i) in keep.iter().enumerate() {
                let Slot::New(n) = slots[k] else { continue };
                let m = &batch[i];
                let Some(entry) = span.get_mut(n) else {
                    continue;
                };
                *entry = Some(match *entry {
                    // The opener sets both ends.
                    None => (m.received_at, m.received_at),
                    // Quarantined followers do not keep a ticket alive.
                    Some(span) if is_quarantined(m) => span,
                    Some((first, last)) => (
                        Ord::min(first, m.received_at),
                        Ord::max(last, m.received_at),
                    ),
                });
            }
            let mut models = Vec::with_capacity(new_count);
            for (k, &i) in keep.iter().enumerate() {
                let Slot::New(n) = slots[k] else { continue };
                // Only the first message of a new ticket opens it; later ones in the
                // batch point at the same slot.
                if models.len() != n {
                    continue;
                }
                let m = &batch[i];
                let (first_at, last_at) = span
                    .get(n)
                    .copied()
                    .flatten()
                    .unwrap_or((m.received_at, m.received_at));
                let contact = contact_ids.get(k).copied().flatten();
                models.push(tickets::ActiveModel {
                    id: NotSet,
                    number: Set(first + n as i64),
                    subject: Set(m.subject.clone()),
                    status: Set(TicketStatus::Open.as_str().to_string()),
                    team: Set(m.team.clone()),
                    assignee: Set(None),
                    requester_id: Set(contact.map(|c| c.0)),
                    customer_id: Set(contact.and_then(|c| c.1)),
                    created_at: Set(first_at),
                    last_activity_at: Set(last_at),
                    legal_hold: Set(false),
                    retention_class: Set(None),
                    anonymised_at: Set(None),
                });
            }
            let mut number_to_id = HashMap::new();
            for chunk in take_chunks(models, CHUNK) {
                for t in tickets::Entity::insert_many(chunk)
                    .exec_with_returning(txn)
                    .await?
                {
                    number_to_id.insert(t.number, t.id);
                }
            }
            for n in 0..new_count {
                let number = first + n as i64;
                let id = number_to_id.get(&number).copied().ok_or_else(|| {
                    Error::Inconsistent(format!("ticket {number} was not returned on insert"))
                })?;
                new_ids.push((id, number));
            }
            outcome.new_tickets = new_count as u64;
        }
        let resolve = |slot: Slot| -> i64 {
            match slot {
                Slot::Existing(id) => id,
                Slot::New(n) => new_ids[n].0,
            }
        };

        // Existing tickets: activity moves forward, an inbound reply reopens. Quarantined
        // mail (spam, a virus, perhaps with a forged reference) does neither: it is held
        // back from staff, and must not restart a ticket's retention clock.
        let mut touched: HashMap<i64, (DateTime<Utc>, bool)> = HashMap::new();
        for (k, &i) in keep.iter().enumerate() {
            if let Slot::Existing(id) = slots[k] {
                let m = &batch[i];
                if is_quarantined(m) {
                    continue;
                }
                let e = touched.entry(id).or_insert((m.received_at, false));
                e.0 = Ord::max(e.0, m.received_at);
                e.1 |= m.direction == Direction::In;
            }
        }
        let mut requeue_tickets = Vec::new();
        for (&id, &(at, inbound)) in &touched {
            let Some(info) = existing.get_mut(&id) else {
                return Err(Error::Inconsistent(format!(
                    "ticket {id} vanished during the batch"
                )));
            };
            let mut update = tickets::Entity::update_many()
                .col_expr(
                    tickets::Column::LastActivityAt,
                    Expr::value(Ord::max(info.last_activity_at, at)),
                )
                .filter(tickets::Column::Id.eq(id));
            if inbound && info.status != TicketStatus::Open {
                update = update.col_expr(
                    tickets::Column::Status,
                    Expr::value(TicketStatus::Open.as_str()),
                );
                info.status = TicketStatus::Open;
                requeue_tickets.push(id);
            }
            update.exec(txn).await?;
        }

        phases.end("tickets");
        // 5. Blobs (raw mail), then messages.
        let mut blob_jobs: Vec<(usize, String, PreparedBlob)> = Vec::new();
        for (k, &i) in keep.iter().enumerate() {
            if let Some(b) = batch[i].blob.take() {
                let scope = blob_scope(contact_ids.get(k).copied().flatten().map(|c| c.0));
                blob_jobs.push((k, scope, b));
            }
        }
        let mut blob_ids: HashMap<(String, String), i64> = HashMap::new();
        let sealers = match &self.keys {
            Some(ring) => {
                let scopes: Vec<&str> = blob_jobs.iter().map(|(_, s, _)| s.as_str()).collect();
                Some(crate::keys::scope_keys(txn, ring, &scopes, now, pending).await?)
            }
            None => None,
        };
        // Content-addressed: a blob already stored under the same (scope, digest) is
        // reused. The index holds the digest's key; the full digest is compared here.
        let digest_keys: Vec<i64> = blob_jobs
            .iter()
            .map(|(_, _, b)| lookup_key(&b.digest))
            .collect();
        for chunk in digest_keys.chunks(IN_CHUNK) {
            let rows: Vec<(i64, String, String)> = blobs::Entity::find()
                .select_only()
                .column(blobs::Column::Id)
                .column(blobs::Column::Scope)
                .column(blobs::Column::Digest)
                .filter(blobs::Column::DigestKey.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(txn)
                .await?;
            for (id, scope, digest) in rows {
                blob_ids.insert((scope, digest), id);
            }
        }
        let mut blob_rows: Vec<blobs::ActiveModel> = Vec::with_capacity(blob_jobs.len());
        let mut queued: HashSet<(String, String)> = HashSet::new();
        for (_, scope, b) in blob_jobs.iter_mut() {
            let id = (scope.clone(), b.digest.clone());
            if blob_ids.contains_key(&id) || !queued.insert(id) {
                continue;
            }
            let sealer = sealers.as_ref().and_then(|k| k.get(scope.as_str()));
            blob_rows.push(blob_row(scope, b, sealer.map(|k| &**k), now)?);
        }
        // Few rows per statement: each carries a whole compressed message. RETURNING
        // names the rows (not their order), so ids map back by (scope, digest).
        for chunk in take_chunks(blob_rows, 50) {
            let stmt = blobs::Entity::insert_many(chunk)
                .into_query()
                .returning(Query::returning().columns([
                    blobs::Column::Id,
                    blobs::Column::Scope,
                    blobs::Column::Digest,
                ]))
                .to_owned();
            for row in txn.query_all(&stmt).await? {
                let id: i64 = row.try_get_by_index(0)?;
                let scope: String = row.try_get_by_index(1)?;
                let digest: String = row.try_get_by_index(2)?;
                blob_ids.insert((scope, digest), id);
            }
        }
        let mut blob_of: HashMap<usize, i64> = HashMap::new();
        let mut mention_rows: Vec<blob_mentions::ActiveModel> = Vec::new();
        for (k, scope, b) in blob_jobs {
            let key = (scope, b.digest);
            if let Some(&id) = blob_ids.get(&key) {
                blob_of.insert(k, id);
                // Recorded once, by the message that stored the blob.
                if queued.remove(&key) {
                    mention_rows.extend(mention_rows_of(id, &b.mentions));
                }
            }
        }
        insert_rows(txn, mention_rows).await?;

        phases.end("blobs");
        // Messages.
        let json = |v: &[String]| serde_json::to_string(v).unwrap_or_else(|_| "[]".into());
        let mut rows = Vec::with_capacity(keep.len());
        for (k, &i) in keep.iter().enumerate() {
            // The bodies are the bulk of a batch: move them, don't copy them.
            let body_text = std::mem::take(&mut batch[i].body_text);
            let body_html = batch[i].body_html.take();
            let m = &batch[i];
            let ticket_id = resolve(slots[k]);
            rows.push(messages::ActiveModel {
                id: NotSet,
                ticket_id: Set(ticket_id),
                contact_id: Set(contact_ids.get(k).copied().flatten().map(|c| c.0)),
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
                body_text: Set(body_text),
                body_html: Set(body_html),
                size: Set(m.size),
                content_hash: Set(m.content_hash.clone()),
                content_key: Set(lookup_key(&m.content_hash)),
                message_id_key: Set(m.message_id.as_deref().map(lookup_key)),
                has_attachments: Set(!m.attachments.is_empty()),
                verdict_class: Set(m.verdict.as_ref().map(|v| v.class.clone())),
                verdict_score: Set(m.verdict.as_ref().map(|v| v.score)),
                verdict_tags: Set(m.verdict.as_ref().map(|v| v.tags_json.clone())),
                quarantined: Set(m.verdict.as_ref().is_some_and(|v| v.quarantined)),
                defects: Set(json(&m.defects)),
                source: Set(m.source.clone()),
                source_position: Set(m.source_position.clone()),
                blob_id: Set(blob_of.get(&k).copied()),
            });
        }
        let mut id_by_hash: HashMap<String, i64> = HashMap::with_capacity(rows.len());
        for chunk in take_chunks(rows, CHUNK) {
            // RETURNING does not promise row order, so map ids back by content hash
            // (unique within the batch after step 1) instead of by position.
            let stmt = messages::Entity::insert_many(chunk)
                .into_query()
                .returning(
                    Query::returning()
                        .columns([messages::Column::Id, messages::Column::ContentHash]),
                )
                .to_owned();
            for row in txn.query_all(&stmt).await? {
                let id: i64 = row.try_get_by_index(0)?;
                let hash: String = row.try_get_by_index(1)?;
                id_by_hash.insert(hash, id);
            }
        }

        phases.end("messages");
        let mut attachment_rows = Vec::new();
        let mut ref_rows = Vec::new();
        let mut queue_rows = Vec::with_capacity(keep.len());
        // New tickets already opened by an earlier message of this batch.
        let mut opened: HashSet<usize> = HashSet::new();
        for (k, &i) in keep.iter().enumerate() {
            let m = &batch[i];
            let ticket_id = resolve(slots[k]);
            // Only the message that opened the ticket counts as new; a follow-up in the
            // same batch joins it (and, like any reply, gets no acknowledgement).
            let new_ticket = match slots[k] {
                Slot::New(n) => opened.insert(n),
                Slot::Existing(_) => false,
            };
            for r in thread_refs_of(m) {
                ref_rows.push(thread_refs::ActiveModel {
                    id: NotSet,
                    ref_id: Set(r.to_string()),
                    ref_key: Set(lookup_key(r)),
                    ticket_id: Set(ticket_id),
                });
            }
            let message_db_id = *id_by_hash
                .get(&m.content_hash)
                .ok_or_else(|| Error::Inconsistent("an inserted message has no id".to_string()))?;
            for a in &m.attachments {
                attachment_rows.push(attachments::ActiveModel {
                    id: NotSet,
                    message_id: Set(message_db_id),
                    filename: Set(a.filename.clone()),
                    content_type: Set(a.content_type.clone()),
                    size: Set(a.size),
                    digest: Set(a.digest.clone()),
                    quarantined: Set(a.quarantined),
                });
            }
            queue_rows.push(queue_row(message_db_id, "upsert", now));
            let (ticket_number, ticket_status) = match slots[k] {
                Slot::New(n) => (new_ids[n].1, TicketStatus::Open),
                Slot::Existing(id) => {
                    let t = existing.get(&id).ok_or_else(|| {
                        Error::Inconsistent(format!("ticket {id} vanished during the batch"))
                    })?;
                    (t.number, t.status)
                }
            };
            outcome.stored.push(StoredMessage {
                index: i,
                message_db_id,
                ticket_id,
                ticket_number,
                ticket_status,
                new_ticket,
            });
        }
        insert_rows(txn, ref_rows).await?;
        insert_rows(txn, attachment_rows).await?;

        // A reopened ticket's older messages carry a stale status in the index.
        let fresh: HashSet<i64> = outcome.stored.iter().map(|s| s.message_db_id).collect();
        for chunk in requeue_tickets.chunks(IN_CHUNK) {
            let ids: Vec<i64> = messages::Entity::find()
                .select_only()
                .column(messages::Column::Id)
                .filter(messages::Column::TicketId.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(txn)
                .await?;
            for id in ids.into_iter().filter(|id| !fresh.contains(id)) {
                queue_rows.push(queue_row(id, "upsert", now));
                outcome.requeued += 1;
            }
        }
        insert_rows(txn, queue_rows).await?;
        phases.end("queue");
        tracing::debug!(messages = keep.len(), phases = %phases, "batch stored");
        Ok(outcome)
    }

    /// Finds or creates the contact of each kept message's sender; returns, per kept
    /// message, `(contact id, customer id)`.
    async fn file_contacts(
        &self,
        txn: &DatabaseTransaction,
        batch: &[NewMessage],
        keep: &[usize],
        now: DateTime<Utc>,
    ) -> Result<Vec<Option<(i64, Option<i64>)>>> {
        let mut wanted: HashMap<String, Option<String>> = HashMap::new();
        for &i in keep {
            // An address longer than RFC 5321 allows is no one's: no contact (its index
            // entry would pass PostgreSQL's row limit and fail the batch on every retry).
            let addr = batch[i]
                .from_addr
                .as_ref()
                .filter(|a| a.len() <= MAX_ADDRESS_LEN);
            if let Some(addr) = addr {
                wanted
                    .entry(addr.clone())
                    .or_insert_with(|| batch[i].from_name.clone());
            }
        }
        let addrs: Vec<String> = wanted.keys().cloned().collect();
        let mut known: HashMap<String, (i64, Option<i64>)> = HashMap::new();
        for chunk in addrs.chunks(IN_CHUNK) {
            for c in contacts::Entity::find()
                .filter(contacts::Column::Address.is_in(chunk.iter().cloned()))
                .all(txn)
                .await?
            {
                known.insert(c.address, (c.id, c.customer_id));
            }
        }
        let seen_ids: Vec<i64> = known.values().map(|c| c.0).collect();
        for chunk in seen_ids.chunks(IN_CHUNK) {
            contacts::Entity::update_many()
                .col_expr(contacts::Column::LastSeenAt, Expr::value(now))
                .filter(contacts::Column::Id.is_in(chunk.iter().copied()))
                .exec(txn)
                .await?;
        }
        let new_addrs: Vec<String> = addrs
            .iter()
            .filter(|a| !known.contains_key(*a))
            .cloned()
            .collect();
        if !new_addrs.is_empty() {
            let mut customer_of: HashMap<String, i64> = HashMap::new();
            for chunk in new_addrs.chunks(IN_CHUNK) {
                let rows: Vec<(i64, String)> = customers::Entity::find()
                    .select_only()
                    .column(customers::Column::Id)
                    .column(customers::Column::Email)
                    .filter(customers::Column::Email.is_in(chunk.iter().cloned()))
                    .into_tuple()
                    .all(txn)
                    .await?;
                customer_of.extend(rows.into_iter().map(|(id, e)| (e, id)));
            }
            let models: Vec<contacts::ActiveModel> = new_addrs
                .iter()
                .map(|a| contacts::ActiveModel {
                    id: NotSet,
                    address: Set(a.clone()),
                    display_name: Set(wanted.get(a).cloned().flatten()),
                    customer_id: Set(customer_of.get(a).copied()),
                    created_at: Set(now),
                    last_seen_at: Set(now),
                })
                .collect();
            for chunk in models.chunks(CHUNK) {
                for c in contacts::Entity::insert_many(chunk.to_vec())
                    .exec_with_returning(txn)
                    .await?
                {
                    known.insert(c.address, (c.id, c.customer_id));
                }
            }
        }
        Ok(keep
            .iter()
            .map(|&i| {
                batch[i]
                    .from_addr
                    .as_ref()
                    .and_then(|a| known.get(a).copied())
            })
            .collect())
    }
}

/// The Message-IDs a message refers to, deduplicated; long References chains are cut to
/// their last entries (the nearest ancestors), which is all threading needs.
fn thread_refs_of(m: &NewMessage) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    let tail = m.references.len().saturating_sub(MAX_REFS);
    for r in m.in_reply_to.iter().chain(m.references[tail..].iter()) {
        if !out.contains(&r.as_str()) && Some(r) != m.message_id.as_ref() {
            out.push(r);
        }
    }
    out
}

const MAX_REFS: usize = 10;

/// Wall time of each step of a batch, for the debug log (where an import spends time).
struct Phases {
    last: std::time::Instant,
    done: Vec<(&'static str, std::time::Duration)>,
}

impl Phases {
    fn start() -> Phases {
        Phases {
            last: std::time::Instant::now(),
            done: Vec::new(),
        }
    }

    fn end(&mut self, name: &'static str) {
        let now = std::time::Instant::now();
        self.done.push((name, now - self.last));
        self.last = now;
    }
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (name, d) in &self.done {
            write!(f, "{name}={}ms ", d.as_millis())?;
        }
        Ok(())
    }
}

/// Inserts rows in statements of [`CHUNK`] rows, without returning anything.
pub(crate) async fn insert_rows<A, C>(db: &C, rows: Vec<A>) -> Result<()>
where
    A: sea_orm::ActiveModelTrait,
    C: ConnectionTrait,
{
    for chunk in take_chunks(rows, CHUNK) {
        A::Entity::insert_many(chunk)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Splits `rows` into owned chunks of at most `size`, without cloning the rows.
pub(crate) fn take_chunks<T>(rows: Vec<T>, size: usize) -> Vec<Vec<T>> {
    let size = size.max(1);
    let mut out = Vec::with_capacity(rows.len().div_ceil(size));
    // Each row is moved once. (Splitting off the tail instead moves every remaining row
    // again for each chunk: with 50 blobs per chunk that was a 16 MB copy per batch.)
    let mut rows = rows.into_iter();
    loop {
        let chunk: Vec<T> = rows.by_ref().take(size).collect();
        if chunk.is_empty() {
            return out;
        }
        out.push(chunk);
    }
}

/// Message-ID lists as stored: space-separated, `None` when empty.
pub(crate) fn non_empty(ids: &[String]) -> Option<String> {
    if ids.is_empty() {
        None
    } else {
        Some(ids.join(" "))
    }
}

pub(crate) fn queue_row(
    message_db_id: i64,
    op: &str,
    now: DateTime<Utc>,
) -> search_queue::ActiveModel {
    search_queue::ActiveModel {
        id: NotSet,
        message_db_id: Set(message_db_id),
        op: Set(op.to_string()),
        enqueued_at: Set(now),
    }
}

/// Atomically adds `n` to a named counter and returns its new value. The row is created
/// on first use.
pub(crate) async fn allocate<C: ConnectionTrait>(db: &C, name: &str, n: i64) -> Result<i64> {
    counters::Entity::insert(counters::ActiveModel {
        name: Set(name.to_string()),
        value: Set(0),
    })
    .on_conflict_do_nothing_on([counters::Column::Name])
    .exec_without_returning(db)
    .await?;
    let stmt = Query::update()
        .table(counters::Entity)
        .value(
            counters::Column::Value,
            Expr::col(counters::Column::Value).add(n),
        )
        .and_where(Expr::col(counters::Column::Name).eq(name))
        .returning_col(counters::Column::Value)
        .to_owned();
    let row = db
        .query_one(&stmt)
        .await?
        .ok_or_else(|| Error::Inconsistent(format!("counter {name} is missing")))?;
    Ok(row.try_get_by_index::<i64>(0)?)
}

fn is_quarantined(m: &NewMessage) -> bool {
    m.verdict.as_ref().is_some_and(|v| v.quarantined)
}

/// PostgreSQL text cannot hold NUL characters, and mail can carry them (`=00` in a
/// quoted-printable body, an encoded-word of one): a single such message made its whole
/// batch fail on every retry, so a folder stopped at it. They carry no meaning in text
/// and are dropped on both backends, so both store the same.
pub(crate) fn clean(s: &mut String) {
    if s.contains('\0') {
        s.retain(|c| c != '\0');
    }
}

/// [`clean`] for every text field of a message.
pub(crate) fn strip_nul(m: &mut NewMessage) {
    fn clean_opt(s: &mut Option<String>) {
        if let Some(s) = s {
            clean(s);
        }
    }
    clean(&mut m.subject);
    clean(&mut m.body_text);
    clean_opt(&mut m.body_html);
    clean_opt(&mut m.message_id);
    clean_opt(&mut m.from_addr);
    clean_opt(&mut m.from_name);
    clean_opt(&mut m.source);
    clean_opt(&mut m.source_position);
    clean_opt(&mut m.team);
    for s in m
        .in_reply_to
        .iter_mut()
        .chain(m.references.iter_mut())
        .chain(m.to.iter_mut())
        .chain(m.cc.iter_mut())
        .chain(m.defects.iter_mut())
    {
        clean(s);
    }
    if let Some(v) = &mut m.verdict {
        clean(&mut v.tags_json);
    }
    for a in &mut m.attachments {
        clean_opt(&mut a.filename);
        clean(&mut a.content_type);
        clean(&mut a.digest);
    }
}

async fn upsert_checkpoint<C: ConnectionTrait>(
    db: &C,
    cp: &Checkpoint,
    now: DateTime<Utc>,
) -> Result<()> {
    ingest_checkpoints::Entity::insert(ingest_checkpoints::ActiveModel {
        id: NotSet,
        source: Set(cp.source.clone()),
        uidvalidity: Set(cp.uidvalidity),
        position: Set(cp.position.clone()),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(ingest_checkpoints::Column::Source)
            .update_columns([
                ingest_checkpoints::Column::Uidvalidity,
                ingest_checkpoints::Column::Position,
                ingest_checkpoints::Column::UpdatedAt,
            ])
            .to_owned(),
    )
    .exec_without_returning(db)
    .await?;
    let Some(uidvalidity) = cp.uidvalidity else {
        return Ok(());
    };
    // UIDs of an earlier UIDVALIDITY name nothing any more.
    ingest_held::Entity::delete_many()
        .filter(ingest_held::Column::Source.eq(cp.source.as_str()))
        .filter(ingest_held::Column::Uidvalidity.ne(uidvalidity))
        .exec(db)
        .await?;
    for chunk in cp.held.chunks(CHUNK) {
        ingest_held::Entity::insert_many(chunk.iter().map(|h| ingest_held::ActiveModel {
            id: NotSet,
            source: Set(cp.source.clone()),
            uidvalidity: Set(uidvalidity),
            uid: Set(h.uid),
            reason: Set(h.reason.clone()),
            held_at: Set(now),
        }))
        .on_conflict(
            OnConflict::columns([
                ingest_held::Column::Source,
                ingest_held::Column::Uidvalidity,
                ingest_held::Column::Uid,
            ])
            .do_nothing()
            .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use sea_orm::{ConnectionTrait, DbBackend, Statement};

    use super::*;

    fn message(id: &str, reply_to: &[&str]) -> NewMessage {
        let raw = format!("Message-ID: <{id}>\r\nFrom: a@example.com\r\n\r\nbody of {id}\r\n");
        message_with_raw(id, reply_to, &raw)
    }

    fn message_with_raw(id: &str, reply_to: &[&str], raw: &str) -> NewMessage {
        NewMessage {
            direction: Direction::In,
            message_id: Some(id.to_string()),
            in_reply_to: reply_to.iter().map(|s| s.to_string()).collect(),
            references: vec![],
            from_addr: Some("a@example.com".into()),
            from_name: None,
            to: vec![],
            cc: vec![],
            date: None,
            received_at: Utc.with_ymd_and_hms(2024, 3, 1, 10, 0, 0).unwrap(),
            subject: format!("about {id}"),
            body_text: format!("body of {id}"),
            body_html: None,
            size: raw.len() as i64,
            content_hash: format!("hash-of-{id}"),
            attachments: vec![],
            defects: vec![],
            source: None,
            source_position: None,
            blob: Some(PreparedBlob::prepare(raw.as_bytes()).unwrap()),
            team: None,
            verdict: None,
            reports_failure: None,
        }
    }

    #[test]
    fn chunks_keep_every_row_in_order() {
        let rows: Vec<u32> = (0..1234).collect();
        let chunks = take_chunks(rows.clone(), 500);
        let sizes: Vec<usize> = chunks.iter().map(Vec::len).collect();
        assert_eq!(sizes, [500, 500, 234]);
        assert_eq!(chunks.concat(), rows);
        assert!(take_chunks(Vec::<u32>::new(), 50).is_empty());
        assert_eq!(take_chunks(vec![1, 2], 0), [vec![1], vec![2]]);
    }

    async fn sqlite_store(dir: &std::path::Path) -> Store {
        let url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
        Store::connect(&url).await.unwrap()
    }

    fn settings(fmt: &TicketRefFormat) -> BatchSettings<'_> {
        BatchSettings {
            ticket_ref: fmt,
            now: Utc.with_ymd_and_hms(2024, 3, 2, 0, 0, 0).unwrap(),
        }
    }

    async fn exec(store: &Store, sql: &str) {
        store
            .db
            .execute_raw(Statement::from_string(DbBackend::Sqlite, sql))
            .await
            .unwrap();
    }

    /// Mentions are recorded with each blob stored, and `record_mentions` reads blobs
    /// stored before the table existed (the migration's counter), then stops.
    #[tokio::test]
    async fn mentions_are_recorded_now_and_for_older_blobs() {
        use crate::entity::blob_mentions;
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
        let settings = settings(&fmt);
        let raw = |n: usize| {
            format!(
                "Message-ID: <m{n}@x>\r\nFrom: a@example.com\r\nTo: b@example.com\r\n\
                 Reply-To: Carl <Carl@Example.org>\r\nDelivered-To: dan{n}@example.org\r\n\r\nbody {n}\r\n"
            )
        };
        let mut batch: Vec<NewMessage> = (0..3)
            .map(|n| message_with_raw(&format!("m{n}@x"), &[], &raw(n)))
            .collect();
        let out = store
            .store_batch(&mut batch, None, &settings)
            .await
            .unwrap();
        // Mail filed on a ticket directly (a bounce, a sent copy) records them too.
        let filed = message_with_raw("m3@x", &[], &raw(3));
        store
            .store_on_ticket(out.stored[0].ticket_id, filed, settings.now)
            .await
            .unwrap();
        let keys_of = |rows: Vec<blob_mentions::Model>| {
            let mut k: Vec<i64> = rows.into_iter().map(|r| r.address_key).collect();
            k.sort_unstable();
            k
        };
        let rows = blob_mentions::Entity::find().all(&store.db).await.unwrap();
        let mut want: Vec<i64> = vec![lookup_key("carl@example.org"); 4];
        want.extend((0..4).map(|n| lookup_key(&format!("dan{n}@example.org"))));
        want.sort_unstable();
        assert_eq!(keys_of(rows), want, "From and To are columns, not mentions");
        assert_eq!(store.record_mentions().await.unwrap(), 0, "nothing older");

        // As if the blobs had been stored before migration 10.
        exec(&store, "DELETE FROM blob_mentions").await;
        exec(
            &store,
            "UPDATE counters SET value = (SELECT MAX(id) + 1 FROM blobs) \
             WHERE name = 'blob_mentions_unread_below'",
        )
        .await;
        assert_eq!(store.record_mentions().await.unwrap(), 4);
        let rows = blob_mentions::Entity::find().all(&store.db).await.unwrap();
        assert_eq!(keys_of(rows), want);
        assert_eq!(store.record_mentions().await.unwrap(), 0, "read once");
    }

    /// A lookup key is a hint: rows that share a key with what is looked up, but not its
    /// text, are neither duplicates, nor thread parents, nor the same blob. Keys are
    /// forged here, as finding a real 64-bit SHA-256 collision is out of reach.
    #[tokio::test]
    async fn rows_that_only_share_a_key_are_not_matched() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
        let settings = settings(&fmt);
        // "first" refers to "parent@x", which is never stored.
        let mut first = vec![message("first@x", &["parent@x"])];
        let out = store
            .store_batch(&mut first, None, &settings)
            .await
            .unwrap();
        let first_ticket = out.stored[0].ticket_id;

        let second = message("second@x", &["lookalike@x"]);
        let second_digest = second.blob.as_ref().unwrap().digest.clone();
        // Make the stored rows' keys equal those of what the next batch looks up.
        let k = |s: &str| lookup_key(s);
        exec(
            &store,
            &format!(
                "UPDATE messages SET content_key = {}, message_id_key = {}",
                k("hash-of-second@x"),
                k("lookalike@x")
            ),
        )
        .await;
        exec(
            &store,
            &format!("UPDATE thread_refs SET ref_key = {}", k("second@x")),
        )
        .await;
        exec(
            &store,
            &format!("UPDATE blobs SET digest_key = {}", k(&second_digest)),
        )
        .await;

        let mut batch = vec![second];
        let out = store
            .store_batch(&mut batch, None, &settings)
            .await
            .unwrap();
        assert!(
            out.duplicates.is_empty(),
            "same key, other hash: not a duplicate"
        );
        assert_eq!(out.stored.len(), 1);
        assert!(
            out.stored[0].new_ticket && out.stored[0].ticket_id != first_ticket,
            "neither its In-Reply-To nor a reference to its own id may thread it"
        );
        let raw = store
            .raw_message(out.stored[0].message_db_id)
            .await
            .unwrap()
            .unwrap();
        assert!(raw.starts_with(b"Message-ID: <second@x>"), "its own blob");
        assert_eq!(store.stats().await.unwrap().blobs, 2);
    }
}
