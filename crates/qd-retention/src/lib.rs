//! Retention runs, erasure on request, and the data-subject export.
//!
//! - [`run`] evaluates every ticket and every quarantined message with the pure rules of
//!   [`qd_core::retention`] at a given `now`, and (unless it is a dry run) deletes what is
//!   due through the store, in batches of one transaction each. A crash leaves every
//!   batch either done or not started, and a rerun finds the rest: the run is idempotent.
//!   It records one deletion event per class with counts only.
//! - [`erase`] removes (or, with `anonymise`, neutralises) everything about one person.
//! - [`export::export`] writes the person's data as a zip: HTML summary, JSON, .eml files,
//!   staff accesses.
//!
//! The search index follows through the store's queue: deletions queue `delete` entries
//! in the same transactions, and the indexer merges deleted documents away once the queue
//! is empty. The caller (the binary) runs the indexer and checkpoints the SQLite WAL.

pub mod export;

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use qd_core::retention::{
    audit_cutoff, evaluate_quarantined, evaluate_ticket, CustomerFacts, QuarantineFacts,
    TicketFacts,
};
use qd_core::{CustomerStatus, Decision, RetentionClass, RetentionPolicy};
use qd_store::{Actor, DeletionCounts, Store, SubjectRef};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] qd_store::Error),
    #[error("no customer or contact is known as {0}")]
    UnknownSubject(String),
    #[error("cannot write the export: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot write the export archive: {0}")]
    Zip(#[from] zip::result::ZipError),
    #[error("cannot encode the export: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Rows read per page while evaluating.
const PAGE: u64 = 5_000;
/// Tickets (or messages) deleted per transaction: small enough that a crash loses
/// little work and readers are not blocked for long, large enough to amortise commits.
const DELETE_BATCH: usize = 500;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub now: DateTime<Utc>,
    pub dry_run: bool,
    /// How many due items a dry run lists (all are counted).
    pub list_limit: usize,
}

/// One item that is (or would be) deleted.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DueItem {
    /// `ticket` or `message` (a quarantined message).
    pub kind: &'static str,
    /// Ticket number, or the message's database id.
    pub id: i64,
    pub class: RetentionClass,
    pub due: DateTime<Utc>,
}

/// When a customer's correspondence will next be due.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CustomerDue {
    pub customer_id: i64,
    pub status: String,
    pub legal_hold: bool,
    pub tickets: u64,
    /// The earliest due date among their tickets; `None` while nothing is ever due (an
    /// active customer, or a hold).
    pub next_due: Option<DateTime<Utc>>,
    /// Tickets due now.
    pub due_now: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ClassReport {
    /// Items (tickets, or quarantined messages) due at `now`.
    pub due: u64,
    /// What was deleted (zero on a dry run).
    pub deleted: DeletionCounts,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub now: DateTime<Utc>,
    pub dry_run: bool,
    pub tickets_evaluated: u64,
    pub quarantined_evaluated: u64,
    pub held: u64,
    pub classes: BTreeMap<RetentionClass, ClassReport>,
    pub customers_deleted: u64,
    pub audit_events_deleted: u64,
    /// The first `list_limit` due items.
    pub items: Vec<DueItem>,
    pub customers: Vec<CustomerDue>,
    pub seconds: f64,
}

fn ticket_facts(r: &qd_store::RetentionRow) -> TicketFacts {
    TicketFacts {
        customer: r.customer_status.as_ref().map(|s| CustomerFacts {
            // An unreadable status keeps data (treated as active): never delete on a guess.
            status: s.parse().unwrap_or(CustomerStatus::Active),
            former_since: r.former_since,
            legal_hold: r.customer_hold.unwrap_or(false),
        }),
        last_activity_at: r.last_activity_at,
        legal_hold: r.legal_hold || r.participant_hold,
        tax_evidence: r.retention_class.as_deref() == Some(RetentionClass::TaxEvidence.as_str()),
        participant_active: r.participant_active,
        participant_former_since: r.participant_former_since,
    }
}

/// Evaluates everything at `opts.now` and deletes what is due (unless a dry run).
pub async fn run(store: &Store, policy: &RetentionPolicy, opts: &RunOptions) -> Result<RunReport> {
    run_with(store, policy, opts, &mut |_| {}).await
}

/// [`run`], telling `before_ticket_deletes` which messages each batch of ticket deletes
/// will take, before it starts (not on a dry run). The binary uses it to drop them from the search
/// index on another thread while the store deletes them; the deletes queued in the same
/// transactions still reach the index afterwards and find nothing left.
pub async fn run_with(
    store: &Store,
    policy: &RetentionPolicy,
    opts: &RunOptions,
    before_ticket_deletes: &mut (dyn FnMut(Vec<i64>) + Send),
) -> Result<RunReport> {
    let started = Instant::now();
    let now = opts.now;
    let mut report = RunReport {
        now,
        dry_run: opts.dry_run,
        tickets_evaluated: 0,
        quarantined_evaluated: 0,
        held: 0,
        classes: BTreeMap::new(),
        customers_deleted: 0,
        audit_events_deleted: 0,
        items: Vec::new(),
        customers: Vec::new(),
        seconds: 0.0,
    };
    let mut customers: BTreeMap<i64, CustomerDue> = BTreeMap::new();

    // 1. Quarantined messages first: a spam ticket then empties and goes with them.
    // Each due message with the facts it was judged by (see `delete_due_quarantined`).
    let mut due_msgs: BTreeMap<RetentionClass, Vec<qd_store::QuarantineRow>> = BTreeMap::new();
    let mut after = 0;
    loop {
        let rows = store.quarantine_rows(after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.message_db_id;
        for r in &rows {
            report.quarantined_evaluated += 1;
            let facts = QuarantineFacts {
                virus: r.verdict_class.as_deref() == Some("virus"),
                received_at: r.received_at,
                legal_hold: r.ticket_hold
                    || r.customer_hold.unwrap_or(false)
                    || r.contact_hold.unwrap_or(false),
            };
            match evaluate_quarantined(&facts, policy, now) {
                Decision::Delete { class, due } => {
                    due_msgs.entry(class).or_default().push(r.clone());
                    if report.items.len() < opts.list_limit {
                        report.items.push(DueItem {
                            kind: "message",
                            id: r.message_db_id,
                            class,
                            due,
                        });
                    }
                }
                Decision::Hold => report.held += 1,
                Decision::Keep { .. } => {}
            }
        }
    }
    for (class, ids) in &due_msgs {
        let entry = report.classes.entry(*class).or_default();
        entry.due += ids.len() as u64;
        if !opts.dry_run {
            for chunk in ids.chunks(DELETE_BATCH) {
                let c = store.delete_due_quarantined(chunk, now).await?;
                entry.deleted.add(&c);
            }
        }
    }

    // 2. Tickets.
    // Each due ticket with the facts it was judged by (see `delete_due_tickets`).
    let mut due_tickets: BTreeMap<RetentionClass, Vec<qd_store::RetentionRow>> = BTreeMap::new();
    let mut after = 0;
    loop {
        let rows = store.retention_rows(after, PAGE).await?;
        let Some(last) = rows.last() else { break };
        after = last.ticket_id;
        for r in &rows {
            report.tickets_evaluated += 1;
            let decision = evaluate_ticket(&ticket_facts(r), policy, now);
            if let Some(cid) = r.customer_id {
                let c = customers.entry(cid).or_insert_with(|| CustomerDue {
                    customer_id: cid,
                    status: r.customer_status.clone().unwrap_or_default(),
                    legal_hold: r.customer_hold.unwrap_or(false),
                    tickets: 0,
                    next_due: None,
                    due_now: 0,
                });
                c.tickets += 1;
                if let Some(d) = decision.due() {
                    c.next_due = Some(c.next_due.map_or(d, |n| n.min(d)));
                }
                if decision.is_delete() {
                    c.due_now += 1;
                }
            }
            match decision {
                Decision::Delete { class, due } => {
                    due_tickets.entry(class).or_default().push(r.clone());
                    if report.items.len() < opts.list_limit {
                        report.items.push(DueItem {
                            kind: "ticket",
                            id: r.number,
                            class,
                            due,
                        });
                    }
                }
                Decision::Hold => report.held += 1,
                Decision::Keep { .. } => {}
            }
        }
    }
    for (class, ids) in &due_tickets {
        let entry = report.classes.entry(*class).or_default();
        entry.due += ids.len() as u64;
        if !opts.dry_run {
            for chunk in ids.chunks(DELETE_BATCH) {
                // Chunk by chunk: a run that stops half-way has taken out of the index
                // only what it was about to delete (a ticket kept by the re-check in the
                // transaction is queued for the index again there).
                let tickets: Vec<i64> = chunk.iter().map(|d| d.ticket_id).collect();
                before_ticket_deletes(store.message_ids_of_tickets(&tickets).await?);
                let c = store.delete_due_tickets(chunk, now).await?;
                entry.deleted.add(&c);
            }
        }
    }

    // 3. Former customers past their retention with nothing left, prospects whose
    // requests' retention has passed since they became one (their tickets went first;
    // one with tickets left stays), and old access logs.
    if !opts.dry_run {
        let former = store.customers_with_status("former").await?;
        let prospects = store.customers_with_status("prospect").await?;
        let former_term_over =
            |since: DateTime<Utc>| policy.customer_after_former.after(since) <= now;
        let gone: Vec<_> = former
            .iter()
            .filter(|c| c.former_since.is_some_and(former_term_over))
            .chain(prospects.iter().filter(|c| {
                // A prospect that was a customer keeps its record as a former one would.
                policy.non_customer_after_activity.after(c.status_since) <= now
                    && c.former_since.is_none_or(former_term_over)
            }))
            .filter(|c| !c.legal_hold)
            .cloned()
            .collect();
        if !gone.is_empty() {
            report.customers_deleted = store
                .delete_customers_without_tickets(&gone, now)
                .await?
                .customers;
        }
        if let Some(cutoff) = audit_cutoff(policy, now) {
            report.audit_events_deleted = store.delete_access_audit_before(cutoff).await?;
        }
        // One deletion event per class, with counts and no personal data.
        for (class, r) in &report.classes {
            if r.deleted.is_empty() {
                continue;
            }
            let detail = serde_json::json!({"class": class, "due": r.due, "deleted": r.deleted});
            store
                .audit(
                    "retention",
                    "retention.delete",
                    class.as_str(),
                    None,
                    Some(detail.to_string()),
                    now,
                )
                .await?;
        }
        // Every run, also one that deleted nothing: on PostgreSQL, a key an erasure
        // destroyed while an older transaction was open is still in the files.
        store.purge_freed().await?;
    }
    report.customers = customers.into_values().collect();
    report.seconds = started.elapsed().as_secs_f64();
    tracing::info!(
        dry_run = opts.dry_run,
        tickets = report.tickets_evaluated,
        quarantined = report.quarantined_evaluated,
        seconds = report.seconds,
        "retention run finished"
    );
    Ok(report)
}

/// Who an erasure or export is about.
#[derive(Debug, Clone)]
pub enum Subject {
    Customer(qd_store::entity::customers::Model),
    /// Someone who only wrote to us.
    Contact(qd_store::entity::contacts::Model),
    /// Someone who never wrote and is no customer: only named in other people's mail.
    Address(String),
}

/// Finds a customer by id or address, else a contact by address.
pub async fn resolve(store: &Store, text: &str) -> Result<Subject> {
    let who = SubjectRef::parse(text);
    if let Some(c) = store.find_customer(&who).await? {
        return Ok(Subject::Customer(c));
    }
    if let SubjectRef::Email(e) = &who {
        if let Some(c) = store.find_contact(e).await? {
            return Ok(Subject::Contact(c));
        }
    }
    Err(Error::UnknownSubject(text.to_string()))
}

/// [`resolve`], or for an address nobody is known by, that address: someone only named
/// in other people's mail, whose erasure rewrites that mail.
pub async fn resolve_for_erasure(store: &Store, text: &str) -> Result<Subject> {
    match resolve(store, text).await {
        Err(Error::UnknownSubject(_))
            if matches!(SubjectRef::parse(text), SubjectRef::Email(_)) =>
        {
            match SubjectRef::parse(text) {
                SubjectRef::Email(e) => Ok(Subject::Address(e)),
                SubjectRef::Id(_) => Err(Error::UnknownSubject(text.to_string())),
            }
        }
        other => other,
    }
}

/// Erasure on request: deletes everything about the person (or, with `anonymise`,
/// replaces their personal data by stable tokens and keeps ticket statistics).
pub async fn erase(
    store: &Store,
    subject: &Subject,
    anonymise: bool,
    actor: &Actor<'_>,
) -> Result<DeletionCounts> {
    let counts = match (subject, anonymise) {
        (Subject::Customer(c), false) => store.erase_customer(c, actor).await?,
        (Subject::Contact(c), false) => store.erase_contact(c, actor).await?,
        (Subject::Customer(c), true) => {
            let contacts: Vec<i64> = store.contacts_of(c).await?.iter().map(|x| x.id).collect();
            store.anonymise_people(Some(c.id), &contacts, actor).await?
        }
        (Subject::Contact(c), true) => store.anonymise_people(None, &[c.id], actor).await?,
        // Nothing of theirs to keep statistics of: anonymising is erasing.
        (Subject::Address(a), _) => store.erase_address(a, actor).await?,
    };
    store.purge_freed().await?;
    Ok(counts)
}
