//! Physical deletion: the store side of retention and erasure.
//!
//! Deleting a ticket removes, in one transaction: its attachments' rows, thread
//! references, tags, outbox entries and acknowledgement log rows, its messages, the raw
//! mail blobs no other message uses, and the ticket; it queues a `delete` for every
//! message in `search_queue`, so the index drops them when the indexer next runs (and a
//! crash between the two is repaired on restart). Contacts left with nothing are deleted
//! and their blob keys destroyed. SQLite runs with `secure_delete`, so freed pages are
//! zeroed; the caller checkpoints the WAL after a run.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Alias, Expr, ExprTrait, JoinType, Order, Query};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseTransaction, EntityTrait, FromQueryResult, QueryFilter,
    QueryOrder, QuerySelect,
};
use serde::Serialize;

use crate::batch::{blob_scope, insert_rows, mention_rows_of, queue_row};
use crate::entity::{
    ack_log, attachments, audit_events, blob_mentions, blobs, changes, contacts, customers,
    messages, outbox, thread_refs, ticket_tags, tickets,
};
use crate::{Result, Store};

const IN_CHUNK: usize = 500;

/// What one deletion removed; recorded (as counts only) in the deletion event.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct DeletionCounts {
    pub tickets: u64,
    pub messages: u64,
    pub attachments: u64,
    pub blobs: u64,
    pub keys_destroyed: u64,
    pub contacts: u64,
    pub customers: u64,
    pub outbox: u64,
    pub changes: u64,
    /// Other people's messages (and outbox entries) that named the person as a
    /// recipient, whose To/Cc entries for them were replaced by `[erased]`.
    pub redacted: u64,
}

impl DeletionCounts {
    pub fn add(&mut self, o: &DeletionCounts) {
        self.tickets += o.tickets;
        self.messages += o.messages;
        self.attachments += o.attachments;
        self.blobs += o.blobs;
        self.keys_destroyed += o.keys_destroyed;
        self.contacts += o.contacts;
        self.customers += o.customers;
        self.outbox += o.outbox;
        self.changes += o.changes;
        self.redacted += o.redacted;
    }

    pub fn is_empty(&self) -> bool {
        *self == DeletionCounts::default()
    }
}

/// The retention facts of one ticket, joined with its customer.
#[derive(Debug, Clone, FromQueryResult)]
pub struct RetentionRow {
    pub ticket_id: i64,
    pub number: i64,
    pub requester_id: Option<i64>,
    pub customer_id: Option<i64>,
    pub last_activity_at: DateTime<Utc>,
    pub legal_hold: bool,
    pub retention_class: Option<String>,
    pub customer_status: Option<String>,
    pub former_since: Option<DateTime<Utc>>,
    pub customer_hold: Option<bool>,
    /// A customer under legal hold wrote in this ticket (one of its contacts), though
    /// the ticket is someone else's: the hold covers all of that customer's mail.
    pub participant_hold: bool,
    /// An active customer's contact wrote in this ticket.
    pub participant_active: bool,
    /// The latest `former_since` of the other customers (not active) whose contacts
    /// wrote in this ticket.
    pub participant_former_since: Option<DateTime<Utc>>,
}

impl RetentionRow {
    /// Whether `other` (the same ticket read again) would be judged on the same facts.
    /// Holds are left out: the deletion checks them on their own.
    fn same_facts(&self, other: &RetentionRow) -> bool {
        self.last_activity_at == other.last_activity_at
            && self.customer_id == other.customer_id
            && self.requester_id == other.requester_id
            && self.retention_class == other.retention_class
            && self.customer_status == other.customer_status
            && self.former_since == other.former_since
            && self.participant_active == other.participant_active
            && self.participant_former_since == other.participant_former_since
    }
}

/// The ids of the contacts of customers under legal hold.
fn contacts_of_held_customers() -> sea_orm::sea_query::SelectStatement {
    let (ct, cu) = (contacts::Entity, customers::Entity);
    Query::select()
        .column((ct, contacts::Column::Id))
        .from(ct)
        .join(
            JoinType::InnerJoin,
            cu,
            Expr::col((cu, customers::Column::Id)).equals((ct, contacts::Column::CustomerId)),
        )
        .and_where(Expr::col((cu, customers::Column::LegalHold)).eq(true))
        .to_owned()
}

/// The ids of tickets in which a contact of a customer under legal hold wrote.
fn tickets_with_held_participants() -> sea_orm::sea_query::SelectStatement {
    Query::select()
        .column(messages::Column::TicketId)
        .from(messages::Entity)
        .and_where(Expr::col(messages::Column::ContactId).in_subquery(contacts_of_held_customers()))
        .to_owned()
}

/// Over the customers whose contacts wrote in the ticket of the outer query: `select`,
/// where `cond` (a correlated subquery: one index lookup on the ticket's messages).
fn participants(
    select: sea_orm::sea_query::SimpleExpr,
    cond: sea_orm::sea_query::SimpleExpr,
) -> sea_orm::sea_query::SelectStatement {
    let (m, ct, cu) = (messages::Entity, contacts::Entity, customers::Entity);
    Query::select()
        .expr(select)
        .from(m)
        .join(
            JoinType::InnerJoin,
            ct,
            Expr::col((ct, contacts::Column::Id)).equals((m, messages::Column::ContactId)),
        )
        .join(
            JoinType::InnerJoin,
            cu,
            Expr::col((cu, customers::Column::Id)).equals((ct, contacts::Column::CustomerId)),
        )
        .and_where(
            Expr::col((m, messages::Column::TicketId))
                .equals((tickets::Entity, tickets::Column::Id)),
        )
        .and_where(cond)
        .to_owned()
}

/// Tickets joined with their customer's retention facts ([`RetentionRow`]).
fn retention_query() -> sea_orm::sea_query::SelectStatement {
    let t = tickets::Entity;
    let c = customers::Entity;
    Query::select()
        .expr_as(Expr::col((t, tickets::Column::Id)), Alias::new("ticket_id"))
        .column((t, tickets::Column::Number))
        .column((t, tickets::Column::RequesterId))
        .column((t, tickets::Column::CustomerId))
        .column((t, tickets::Column::LastActivityAt))
        .column((t, tickets::Column::LegalHold))
        .column((t, tickets::Column::RetentionClass))
        .expr_as(
            Expr::col((c, customers::Column::Status)),
            Alias::new("customer_status"),
        )
        .column((c, customers::Column::FormerSince))
        .expr_as(
            Expr::col((c, customers::Column::LegalHold)),
            Alias::new("customer_hold"),
        )
        .expr_as(
            Expr::col((t, tickets::Column::Id)).in_subquery(tickets_with_held_participants()),
            Alias::new("participant_hold"),
        )
        // In these subqueries `customers` is the subquery's own table (the participants'
        // customers), which shadows the ticket's customer joined below.
        .expr_as(
            Expr::exists(participants(
                Expr::val(1),
                Expr::col((customers::Entity, customers::Column::Status)).eq("active"),
            )),
            Alias::new("participant_active"),
        )
        .expr_as(
            sea_orm::sea_query::SimpleExpr::SubQuery(
                None,
                Box::new(
                    sea_orm::sea_query::QueryStatementBuilder::into_sub_query_statement(
                        participants(
                            Expr::col((customers::Entity, customers::Column::FormerSince)).max(),
                            Expr::col((customers::Entity, customers::Column::Status)).ne("active"),
                        ),
                    ),
                ),
            ),
            Alias::new("participant_former_since"),
        )
        .from(t)
        .join(
            JoinType::LeftJoin,
            c,
            Expr::col((c, customers::Column::Id)).equals((t, tickets::Column::CustomerId)),
        )
        .to_owned()
}

/// One quarantined message with the holds that may protect it.
#[derive(Debug, Clone, FromQueryResult)]
pub struct QuarantineRow {
    pub message_db_id: i64,
    pub ticket_id: i64,
    pub verdict_class: Option<String>,
    pub received_at: DateTime<Utc>,
    pub ticket_hold: bool,
    pub customer_hold: Option<bool>,
    /// The sender is a contact of a customer under legal hold (`None`: no contact).
    pub contact_hold: Option<bool>,
}

/// Quarantined messages with the holds that may protect them ([`QuarantineRow`]).
fn quarantine_query() -> sea_orm::sea_query::SelectStatement {
    let m = messages::Entity;
    let t = tickets::Entity;
    let c = customers::Entity;
    Query::select()
        .expr_as(
            Expr::col((m, messages::Column::Id)),
            Alias::new("message_db_id"),
        )
        .column((m, messages::Column::TicketId))
        .column((m, messages::Column::VerdictClass))
        .column((m, messages::Column::ReceivedAt))
        .expr_as(
            Expr::col((t, tickets::Column::LegalHold)),
            Alias::new("ticket_hold"),
        )
        .expr_as(
            Expr::col((c, customers::Column::LegalHold)),
            Alias::new("customer_hold"),
        )
        .expr_as(
            Expr::col((m, messages::Column::ContactId)).in_subquery(contacts_of_held_customers()),
            Alias::new("contact_hold"),
        )
        .from(m)
        .join(
            JoinType::InnerJoin,
            t,
            Expr::col((t, tickets::Column::Id)).equals((m, messages::Column::TicketId)),
        )
        .join(
            JoinType::LeftJoin,
            c,
            Expr::col((c, customers::Column::Id)).equals((t, tickets::Column::CustomerId)),
        )
        .and_where(Expr::col((m, messages::Column::Quarantined)).eq(true))
        .to_owned()
}

impl QuarantineRow {
    /// Whether `other` (the same message read again) would be judged on the same facts.
    fn same_facts(&self, other: &QuarantineRow) -> bool {
        self.ticket_id == other.ticket_id
            && self.verdict_class == other.verdict_class
            && self.received_at == other.received_at
            && self.ticket_hold == other.ticket_hold
            && self.customer_hold == other.customer_hold
            && self.contact_hold == other.contact_hold
    }
}

impl Store {
    /// Tickets with id > `after`, in id order, with their customer's facts.
    pub async fn retention_rows(&self, after: i64, limit: u64) -> Result<Vec<RetentionRow>> {
        let t = tickets::Entity;
        let q = retention_query()
            .and_where(Expr::col((t, tickets::Column::Id)).gt(after))
            .order_by((t, tickets::Column::Id), Order::Asc)
            .limit(limit)
            .to_owned();
        let stmt = self.db.get_database_backend().build(&q);
        Ok(RetentionRow::find_by_statement(stmt).all(&self.db).await?)
    }

    /// Quarantined messages with id > `after`, in id order.
    pub async fn quarantine_rows(&self, after: i64, limit: u64) -> Result<Vec<QuarantineRow>> {
        let m = messages::Entity;
        let q = quarantine_query()
            .and_where(Expr::col((m, messages::Column::Id)).gt(after))
            .order_by((m, messages::Column::Id), Order::Asc)
            .limit(limit)
            .to_owned();
        let stmt = self.db.get_database_backend().build(&q);
        Ok(QuarantineRow::find_by_statement(stmt).all(&self.db).await?)
    }

    /// Deletes the quarantined messages a retention run found due, each given with the
    /// facts it was judged by. One released from quarantine, put under a hold or
    /// otherwise changed since is skipped: the facts are read again in the deleting
    /// transaction.
    pub async fn delete_due_quarantined(
        &self,
        due: &[QuarantineRow],
        now: DateTime<Utc>,
    ) -> Result<DeletionCounts> {
        let txn = self.begin_serialized().await?;
        let judged: std::collections::HashMap<i64, &QuarantineRow> =
            due.iter().map(|d| (d.message_db_id, d)).collect();
        let mut still_due: Vec<i64> = Vec::with_capacity(due.len());
        let ids: Vec<i64> = due.iter().map(|d| d.message_db_id).collect();
        for chunk in ids.chunks(IN_CHUNK) {
            let q = quarantine_query()
                .and_where(
                    Expr::col((messages::Entity, messages::Column::Id))
                        .is_in(chunk.iter().copied()),
                )
                .to_owned();
            let stmt = txn.get_database_backend().build(&q);
            for now_row in QuarantineRow::find_by_statement(stmt).all(&txn).await? {
                if judged
                    .get(&now_row.message_db_id)
                    .is_some_and(|j| j.same_facts(&now_row))
                {
                    still_due.push(now_row.message_db_id);
                }
            }
        }
        let counts = self.delete_messages_txn(&txn, &still_due, now).await?;
        txn.commit().await?;
        Ok(counts)
    }

    /// Deletes whole tickets (everything in them) in one transaction.
    pub async fn delete_tickets(
        &self,
        ticket_ids: &[i64],
        now: DateTime<Utc>,
    ) -> Result<DeletionCounts> {
        self.delete_tickets_if(ticket_ids, None, now).await
    }

    /// Deletes the tickets a retention run found due, each given with the facts it was
    /// judged by: one whose facts changed since (a reply stored, its customer's status or
    /// dates set, the ticket filed under another customer or given a class while the run
    /// went on) is skipped, like a held one, and waits for the next run's judgement.
    pub async fn delete_due_tickets(
        &self,
        due: &[RetentionRow],
        now: DateTime<Utc>,
    ) -> Result<DeletionCounts> {
        let ids: Vec<i64> = due.iter().map(|d| d.ticket_id).collect();
        let judged: std::collections::HashMap<i64, &RetentionRow> =
            due.iter().map(|d| (d.ticket_id, d)).collect();
        self.delete_tickets_if(&ids, Some(&judged), now).await
    }

    async fn delete_tickets_if(
        &self,
        ticket_ids: &[i64],
        judged: Option<&std::collections::HashMap<i64, &RetentionRow>>,
        now: DateTime<Utc>,
    ) -> Result<DeletionCounts> {
        // A batch storing a reply updates its ticket's activity before it commits:
        // without its lock, the re-check below would read the old time, and the delete
        // would wait for the batch and then take the reply along (by cascade, without
        // its index delete or its record in `forgotten_mail`).
        let txn = self.begin_serialized().await?;
        let mut counts = DeletionCounts::default();
        let mut touched_contacts = HashSet::new();
        for chunk in ticket_ids.chunks(IN_CHUNK) {
            // A hold set since the caller chose these tickets wins: checked here, inside
            // the deleting transaction. Their documents are queued again, in case the
            // caller already took them out of the index.
            let held_customers = Query::select()
                .column(customers::Column::Id)
                .from(customers::Entity)
                .and_where(Expr::col(customers::Column::LegalHold).eq(true))
                .to_owned();
            let mut held: HashSet<i64> = tickets::Entity::find()
                .select_only()
                .column(tickets::Column::Id)
                .filter(tickets::Column::Id.is_in(chunk.iter().copied()))
                .filter(
                    sea_orm::Condition::any()
                        .add(tickets::Column::LegalHold.eq(true))
                        .add(tickets::Column::CustomerId.in_subquery(held_customers))
                        .add(tickets::Column::Id.in_subquery(tickets_with_held_participants())),
                )
                .into_tuple::<i64>()
                .all(&txn)
                .await?
                .into_iter()
                .collect();
            // So does any change since the run judged the ticket (a reply stored, the
            // customer's status set meanwhile): the facts are read again here.
            if let Some(judged) = judged {
                let q = retention_query()
                    .and_where(
                        Expr::col((tickets::Entity, tickets::Column::Id))
                            .is_in(chunk.iter().copied()),
                    )
                    .to_owned();
                let stmt = txn.get_database_backend().build(&q);
                let now_facts = RetentionRow::find_by_statement(stmt).all(&txn).await?;
                held.extend(
                    now_facts
                        .iter()
                        .filter(|r| judged.get(&r.ticket_id).is_some_and(|j| !j.same_facts(r)))
                        .map(|r| r.ticket_id),
                );
            }
            if !held.is_empty() {
                let kept: Vec<i64> = ids_where::<messages::Entity, _>(
                    &txn,
                    messages::Column::Id,
                    messages::Column::TicketId,
                    &held.iter().copied().collect::<Vec<_>>(),
                )
                .await?;
                insert_rows(
                    &txn,
                    kept.into_iter()
                        .map(|id| queue_row(id, "upsert", now))
                        .collect(),
                )
                .await?;
            }
            let chunk: Vec<i64> = chunk
                .iter()
                .copied()
                .filter(|id| !held.contains(id))
                .collect();
            let chunk = chunk.as_slice();
            let msg_ids = messages_and_senders(&txn, chunk).await?;
            touched_contacts.extend(msg_ids.iter().filter_map(|(_, c)| *c));
            let requesters: Vec<i64> = ids_where::<tickets::Entity, _>(
                &txn,
                tickets::Column::RequesterId,
                tickets::Column::Id,
                chunk,
            )
            .await?;
            touched_contacts.extend(requesters);
            let ids: Vec<i64> = msg_ids.iter().map(|(id, _)| *id).collect();
            counts.add(&delete_messages_in(&txn, &ids, now).await?);
            counts.add(&delete_ticket_rows(&txn, chunk).await?);
        }
        let contacts: Vec<i64> = touched_contacts.into_iter().collect();
        counts.add(&self.delete_empty_contacts(&txn, &contacts, now).await?);
        txn.commit().await?;
        Ok(counts)
    }

    /// Deletes single messages (quarantined mail), and their tickets when left empty.
    pub async fn delete_messages(
        &self,
        message_ids: &[i64],
        now: DateTime<Utc>,
    ) -> Result<DeletionCounts> {
        let txn = self.begin_serialized().await?;
        let counts = self.delete_messages_txn(&txn, message_ids, now).await?;
        txn.commit().await?;
        Ok(counts)
    }

    async fn delete_messages_txn(
        &self,
        txn: &DatabaseTransaction,
        message_ids: &[i64],
        now: DateTime<Utc>,
    ) -> Result<DeletionCounts> {
        let mut counts = DeletionCounts::default();
        let mut tickets_touched = HashSet::new();
        let mut contacts_touched = HashSet::new();
        for chunk in message_ids.chunks(IN_CHUNK) {
            let rows: Vec<(i64, Option<i64>)> = messages::Entity::find()
                .select_only()
                .column(messages::Column::TicketId)
                .column(messages::Column::ContactId)
                .filter(messages::Column::Id.is_in(chunk.iter().copied()))
                .into_tuple()
                .all(txn)
                .await?;
            for (t, c) in rows {
                tickets_touched.insert(t);
                contacts_touched.extend(c);
            }
            counts.add(&delete_messages_in(txn, chunk, now).await?);
        }
        // Tickets left without messages go too.
        let touched: Vec<i64> = tickets_touched.into_iter().collect();
        for chunk in touched.chunks(IN_CHUNK) {
            let still: HashSet<i64> = ids_where::<messages::Entity, _>(
                txn,
                messages::Column::TicketId,
                messages::Column::TicketId,
                chunk,
            )
            .await?
            .into_iter()
            .collect();
            let empty: Vec<i64> = chunk
                .iter()
                .copied()
                .filter(|t| !still.contains(t))
                .collect();
            if !empty.is_empty() {
                let requesters: Vec<i64> = ids_where::<tickets::Entity, _>(
                    txn,
                    tickets::Column::RequesterId,
                    tickets::Column::Id,
                    &empty,
                )
                .await?;
                contacts_touched.extend(requesters);
                counts.add(&delete_ticket_rows(txn, &empty).await?);
            }
        }
        let contacts: Vec<i64> = contacts_touched.into_iter().collect();
        counts.add(&self.delete_empty_contacts(txn, &contacts, now).await?);
        Ok(counts)
    }

    /// Deletes contacts (of `candidates`) that no ticket or message refers to any more,
    /// with their rectification history, and destroys their blob keys.
    async fn delete_empty_contacts(
        &self,
        txn: &DatabaseTransaction,
        candidates: &[i64],
        now: DateTime<Utc>,
    ) -> Result<DeletionCounts> {
        let mut counts = DeletionCounts::default();
        for chunk in candidates.chunks(IN_CHUNK) {
            let used_by_msgs: HashSet<i64> = ids_where::<messages::Entity, _>(
                txn,
                messages::Column::ContactId,
                messages::Column::ContactId,
                chunk,
            )
            .await?
            .into_iter()
            .collect();
            let used_by_tickets: HashSet<i64> = ids_where::<tickets::Entity, _>(
                txn,
                tickets::Column::RequesterId,
                tickets::Column::RequesterId,
                chunk,
            )
            .await?
            .into_iter()
            .collect();
            let empty: Vec<i64> = chunk
                .iter()
                .copied()
                .filter(|c| !used_by_msgs.contains(c) && !used_by_tickets.contains(c))
                .collect();
            counts.add(&self.delete_contact_rows(txn, &empty, now).await?);
        }
        Ok(counts)
    }

    async fn delete_contact_rows(
        &self,
        txn: &DatabaseTransaction,
        ids: &[i64],
        now: DateTime<Utc>,
    ) -> Result<DeletionCounts> {
        let mut counts = DeletionCounts::default();
        if ids.is_empty() {
            return Ok(counts);
        }
        let scopes: Vec<String> = ids.iter().map(|c| blob_scope(Some(*c))).collect();
        let (keys, blobs) =
            crate::keys::destroy_scopes(txn, self.keys.as_deref(), &scopes, now).await?;
        counts.keys_destroyed += keys;
        counts.blobs += blobs;
        counts.changes += changes::Entity::delete_many()
            .filter(changes::Column::EntityType.eq("contact"))
            .filter(changes::Column::EntityId.is_in(ids.iter().copied()))
            .exec(txn)
            .await?
            .rows_affected;
        counts.contacts += contacts::Entity::delete_many()
            .filter(contacts::Column::Id.is_in(ids.iter().copied()))
            .exec(txn)
            .await?
            .rows_affected;
        Ok(counts)
    }

    /// Erasure of a customer on request: every ticket they requested or that is filed
    /// under them, every message they sent anywhere, their contacts (keys destroyed),
    /// their history and the customer row. Records an `erasure` audit event with counts.
    pub async fn erase_customer(
        &self,
        customer: &customers::Model,
        actor: &crate::Actor<'_>,
    ) -> Result<DeletionCounts> {
        let contact_ids: Vec<i64> = self
            .contacts_of(customer)
            .await?
            .iter()
            .map(|c| c.id)
            .collect();
        let counts = self
            .erase_people(Some(customer.id), &contact_ids, actor, "customer")
            .await?;
        Ok(counts)
    }

    /// The `erasure` audit event: its kind, the reason given and the counts, no
    /// personal data.
    async fn audit_erasure(
        &self,
        txn: &DatabaseTransaction,
        actor: &crate::Actor<'_>,
        kind: &str,
        counts: &DeletionCounts,
    ) -> Result<()> {
        let detail = serde_json::json!({
            "kind": kind,
            "reason": actor.reason,
            "counts": counts,
        });
        self.audit_in(
            txn,
            actor.name,
            "erasure",
            kind,
            None,
            Some(detail.to_string()),
            actor.now,
        )
        .await
    }

    /// Erasure of someone who never wrote and is no customer: they are only named in
    /// other people's mail (in Cc, Reply-To, ...). Their address is erased from it as in
    /// every erasure ([`redact_recipients`]); nothing else is theirs. Records an
    /// `erasure` audit event with counts. The address itself is not recorded.
    pub async fn erase_address(
        &self,
        address: &str,
        actor: &crate::Actor<'_>,
    ) -> Result<DeletionCounts> {
        let address = address.trim().to_lowercase();
        if !address.contains('@') {
            return Err(crate::Error::Invalid(format!(
                "{address} is not an address"
            )));
        }
        let now = actor.now;
        self.record_mentions().await?;
        let txn = self.begin_serialized().await?;
        let mut counts = DeletionCounts::default();
        counts.redacted += redact_recipients(
            &txn,
            self.keys.as_deref(),
            std::slice::from_ref(&address),
            now,
        )
        .await?;
        if counts.redacted == 0 {
            // A mistyped address, or one erased before: nothing to do, and no audit
            // event that claims an erasure.
            txn.rollback().await?;
            return Err(crate::Error::Invalid(format!(
                "no customer or contact is known as {address}, and no stored mail names it"
            )));
        }
        self.audit_erasure(&txn, actor, "address", &counts).await?;
        txn.commit().await?;
        Ok(counts)
    }

    /// Erasure of someone who is only a contact (never a customer).
    pub async fn erase_contact(
        &self,
        contact: &contacts::Model,
        actor: &crate::Actor<'_>,
    ) -> Result<DeletionCounts> {
        self.erase_people(None, &[contact.id], actor, "contact")
            .await
    }

    async fn erase_people(
        &self,
        customer_id: Option<i64>,
        contact_ids: &[i64],
        actor: &crate::Actor<'_>,
        kind: &str,
    ) -> Result<DeletionCounts> {
        let now = actor.now;
        // Mail stored before mentions were recorded must be findable too.
        self.record_mentions().await?;
        let txn = self.begin_serialized().await?;
        let mut counts = DeletionCounts::default();
        // Their tickets, whole.
        let cond = tickets_of_person(customer_id, contact_ids);
        let ticket_ids: Vec<i64> = tickets::Entity::find()
            .select_only()
            .column(tickets::Column::Id)
            .filter(cond)
            .into_tuple()
            .all(&txn)
            .await?;
        refuse_if_held(&txn, customer_id, &ticket_ids, contact_ids).await?;
        // Others who wrote only on their tickets (a colleague in copy, a third party):
        // with that mail gone, their contact rows hold an address for nothing.
        let mut others: HashSet<i64> = HashSet::new();
        for chunk in ticket_ids.chunks(IN_CHUNK) {
            let rows = messages_and_senders(&txn, chunk).await?;
            others.extend(rows.iter().filter_map(|(_, c)| *c));
            let ids: Vec<i64> = rows.iter().map(|(id, _)| *id).collect();
            counts.add(&delete_messages_in(&txn, &ids, now).await?);
            counts.add(&delete_ticket_rows(&txn, chunk).await?);
        }
        others.retain(|c| !contact_ids.contains(c));
        // Their messages on other people's tickets.
        for chunk in contact_ids.chunks(IN_CHUNK) {
            let ids: Vec<i64> = ids_where::<messages::Entity, _>(
                &txn,
                messages::Column::Id,
                messages::Column::ContactId,
                chunk,
            )
            .await?;
            counts.add(&delete_messages_in(&txn, &ids, now).await?);
        }
        let addresses = addresses_of(&txn, customer_id, contact_ids).await?;
        counts.redacted += redact_recipients(&txn, self.keys.as_deref(), &addresses, now).await?;
        counts.add(&self.delete_contact_rows(&txn, contact_ids, now).await?);
        let others: Vec<i64> = others.into_iter().collect();
        counts.add(&self.delete_empty_contacts(&txn, &others, now).await?);
        if let Some(cid) = customer_id {
            counts.changes += changes::Entity::delete_many()
                .filter(changes::Column::EntityType.eq("customer"))
                .filter(changes::Column::EntityId.eq(cid))
                .exec(&txn)
                .await?
                .rows_affected;
            counts.customers += customers::Entity::delete_many()
                .filter(customers::Column::Id.eq(cid))
                .exec(&txn)
                .await?
                .rows_affected;
        }
        self.audit_erasure(&txn, actor, kind, &counts).await?;
        txn.commit().await?;
        Ok(counts)
    }

    /// Deletes customers a retention run judged past their retention (`judged`, as the
    /// run read them), with no ticket left. Each is read again in the deleting
    /// transaction: one whose status, its dates or its legal hold changed since (a
    /// billing sync made it active again, staff set a hold) stays until the next run.
    pub async fn delete_customers_without_tickets(
        &self,
        judged: &[customers::Model],
        now: DateTime<Utc>,
    ) -> Result<DeletionCounts> {
        let txn = self.begin_serialized().await?;
        let mut counts = DeletionCounts::default();
        for rows in judged.chunks(IN_CHUNK) {
            let current: Vec<customers::Model> = customers::Entity::find()
                .filter(customers::Column::Id.is_in(rows.iter().map(|c| c.id)))
                .all(&txn)
                .await?;
            let same = |c: &customers::Model| {
                current.iter().any(|n| {
                    n.id == c.id
                        && !n.legal_hold
                        && n.legal_hold == c.legal_hold
                        && n.status == c.status
                        && n.status_since == c.status_since
                        && n.active_since == c.active_since
                        && n.former_since == c.former_since
                })
            };
            let chunk: Vec<i64> = rows.iter().filter(|c| same(c)).map(|c| c.id).collect();
            let chunk = chunk.as_slice();
            let busy: HashSet<i64> = ids_where::<tickets::Entity, _>(
                &txn,
                tickets::Column::CustomerId,
                tickets::Column::CustomerId,
                chunk,
            )
            .await?
            .into_iter()
            .collect();
            let free: Vec<i64> = chunk
                .iter()
                .copied()
                .filter(|c| !busy.contains(c))
                .collect();
            if free.is_empty() {
                continue;
            }
            let contact_ids: Vec<i64> = ids_where::<contacts::Entity, _>(
                &txn,
                contacts::Column::Id,
                contacts::Column::CustomerId,
                &free,
            )
            .await?;
            counts.add(&self.delete_empty_contacts(&txn, &contact_ids, now).await?);
            // Contacts still in use (messages on other tickets) stay, unlinked.
            contacts::Entity::update_many()
                .col_expr(
                    contacts::Column::CustomerId,
                    Expr::value(Option::<i64>::None),
                )
                .filter(contacts::Column::CustomerId.is_in(free.iter().copied()))
                .exec(&txn)
                .await?;
            counts.changes += changes::Entity::delete_many()
                .filter(changes::Column::EntityType.eq("customer"))
                .filter(changes::Column::EntityId.is_in(free.iter().copied()))
                .exec(&txn)
                .await?
                .rows_affected;
            counts.customers += customers::Entity::delete_many()
                .filter(customers::Column::Id.is_in(free.iter().copied()))
                .exec(&txn)
                .await?
                .rows_affected;
        }
        txn.commit().await?;
        Ok(counts)
    }

    /// Deletes staff-access audit events (views) older than `cutoff`; deletion and
    /// erasure events stay (they hold no personal data and prove what was done).
    pub async fn delete_access_audit_before(&self, cutoff: DateTime<Utc>) -> Result<u64> {
        Ok(audit_events::Entity::delete_many()
            .filter(audit_events::Column::At.lt(cutoff))
            .filter(audit_events::Column::Action.is_in(["view", "search"]))
            .exec(&self.db)
            .await?
            .rows_affected)
    }

    /// The customers with this status (`former`, `prospect`): for retention of the
    /// customer rows themselves.
    pub async fn customers_with_status(&self, status: &str) -> Result<Vec<customers::Model>> {
        Ok(customers::Entity::find()
            .filter(customers::Column::Status.eq(status))
            .all(&self.db)
            .await?)
    }
}

/// Tickets a person requested (any of their contacts) or that are filed under their
/// customer record.
/// Erasure on request yields to a legal hold and to the tax-evidence class (GDPR Art.
/// 17(3)(b) and (e)): refuses when the customer is held, or when any ticket the erasure
/// would touch (theirs, or another one holding their messages) is held or is tax
/// evidence. Checked inside the erasure's transaction.
async fn refuse_if_held<C: ConnectionTrait>(
    db: &C,
    customer_id: Option<i64>,
    own_tickets: &[i64],
    contact_ids: &[i64],
) -> Result<()> {
    let mut touched: Vec<i64> = own_tickets.to_vec();
    touched.extend(
        ids_where::<messages::Entity, _>(
            db,
            messages::Column::TicketId,
            messages::Column::ContactId,
            contact_ids,
        )
        .await?,
    );
    touched.sort_unstable();
    touched.dedup();
    // A hold on a customer covers everything filed under them: the person's own
    // customer record, the customer their contacts belong to (a colleague at a held
    // company is erased as a contact), and the customer of any ticket touched.
    let mut customers_of: Vec<i64> = customer_id.into_iter().collect();
    customers_of.extend(
        ids_where::<contacts::Entity, _>(
            db,
            contacts::Column::CustomerId,
            contacts::Column::Id,
            contact_ids,
        )
        .await?,
    );
    refuse_if_tickets_held(db, customers_of, &touched).await
}

/// Refuses when any of `customers`, the customer of any ticket in `touched`, or one of
/// those tickets is under legal hold, or such a ticket is tax evidence.
async fn refuse_if_tickets_held<C: ConnectionTrait>(
    db: &C,
    mut customers_of: Vec<i64>,
    touched: &[i64],
) -> Result<()> {
    customers_of.extend(
        ids_where::<tickets::Entity, _>(
            db,
            tickets::Column::CustomerId,
            tickets::Column::Id,
            touched,
        )
        .await?,
    );
    customers_of.sort_unstable();
    customers_of.dedup();
    for chunk in customers_of.chunks(IN_CHUNK) {
        let held: Vec<i64> = customers::Entity::find()
            .select_only()
            .column(customers::Column::Id)
            .filter(customers::Column::Id.is_in(chunk.iter().copied()))
            .filter(customers::Column::LegalHold.eq(true))
            .into_tuple()
            .all(db)
            .await?;
        if let Some(cid) = held.first() {
            return Err(crate::Error::Held(format!(
                "customer {cid} is under legal hold"
            )));
        }
    }
    let mut held: Vec<(i64, bool)> = Vec::new();
    for chunk in touched.chunks(IN_CHUNK) {
        let rows: Vec<(i64, bool)> = tickets::Entity::find()
            .select_only()
            .column(tickets::Column::Number)
            .column(tickets::Column::LegalHold)
            .filter(tickets::Column::Id.is_in(chunk.iter().copied()))
            .filter(
                sea_orm::Condition::any()
                    .add(tickets::Column::LegalHold.eq(true))
                    .add(
                        tickets::Column::RetentionClass
                            .eq(qd_core::retention::RetentionClass::TaxEvidence.as_str()),
                    ),
            )
            .into_tuple()
            .all(db)
            .await?;
        held.extend(rows);
    }
    if held.is_empty() {
        return Ok(());
    }
    held.sort_unstable();
    let list = |hold: bool| {
        held.iter()
            .filter(|h| h.1 == hold)
            .map(|h| format!("#{}", h.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut why = Vec::new();
    if held.iter().any(|h| h.1) {
        why.push(format!("tickets under legal hold: {}", list(true)));
    }
    if held.iter().any(|h| !h.1) {
        why.push(format!("tickets kept as tax evidence: {}", list(false)));
    }
    Err(crate::Error::Held(why.join("; ")))
}

/// The person's addresses: their contacts' and the customer's own.
async fn addresses_of<C: ConnectionTrait>(
    db: &C,
    customer_id: Option<i64>,
    contact_ids: &[i64],
) -> Result<Vec<String>> {
    let mut out: Vec<String> = Vec::new();
    for chunk in contact_ids.chunks(IN_CHUNK) {
        let rows: Vec<String> = contacts::Entity::find()
            .select_only()
            .column(contacts::Column::Address)
            .filter(contacts::Column::Id.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(db)
            .await?;
        out.extend(rows);
    }
    if let Some(cid) = customer_id {
        if let Some(c) = customers::Entity::find_by_id(cid).one(db).await? {
            out.push(c.email);
        }
    }
    // Addresses they had before a rectification still stand in other people's mail.
    let mut previous = changes::Entity::find()
        .select_only()
        .column(changes::Column::OldValue)
        .filter(
            sea_orm::Condition::all()
                .add(changes::Column::EntityType.eq("contact"))
                .add(changes::Column::Field.eq("address"))
                .add(changes::Column::EntityId.is_in(contact_ids.iter().copied())),
        )
        .into_tuple::<Option<String>>()
        .all(db)
        .await?;
    if let Some(cid) = customer_id {
        previous.extend(
            changes::Entity::find()
                .select_only()
                .column(changes::Column::OldValue)
                .filter(changes::Column::EntityType.eq("customer"))
                .filter(changes::Column::Field.eq("email"))
                .filter(changes::Column::EntityId.eq(cid))
                .into_tuple::<Option<String>>()
                .all(db)
                .await?,
        );
    }
    out.extend(previous.into_iter().flatten());
    let mut out: Vec<String> = out
        .into_iter()
        .map(|a| a.trim().to_lowercase())
        .filter(|a| a.contains('@'))
        .collect();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Erases `addresses` from the header blocks of the raw mail of `message_ids` (and from
/// the whole of it when `everywhere`: delivery reports). A blob
/// is rewritten in place under its scope (sealed again with the scope's key when it was
/// sealed); when the rewritten mail already exists in that scope, its messages point at
/// the existing blob and the old one goes.
/// Returns how many blobs were rewritten.
async fn redact_blobs(
    txn: &DatabaseTransaction,
    ring: Option<&crate::crypto::KeyRing>,
    mut blob_ids: Vec<i64>,
    addresses: &[String],
    everywhere: bool,
    now: DateTime<Utc>,
) -> Result<u64> {
    let mut rewritten = 0u64;
    blob_ids.sort_unstable();
    blob_ids.dedup();
    for blob_id in blob_ids {
        let Some(row) = blobs::Entity::find_by_id(blob_id).one(txn).await? else {
            continue;
        };
        let (scope, sealed) = (row.scope.clone(), row.codec == crate::crypto::CODEC_SEALED);
        let mut raw = crate::keys::open_blob(txn, ring, row).await?;
        let mut changed = false;
        for a in addresses {
            if let Some(r) = qd_core::erase_address_in_headers(&raw, a) {
                raw = r;
                changed = true;
            }
            if everywhere {
                if let Some(r) = qd_core::erase_address_everywhere(&raw, a) {
                    raw = r;
                    changed = true;
                }
            }
        }
        if !changed {
            continue;
        }
        rewritten += 1;
        let mut prepared = crate::PreparedBlob::prepare(&raw)?;
        let same = blobs::Entity::find()
            .select_only()
            .column(blobs::Column::Id)
            .filter(blobs::Column::Scope.eq(scope.as_str()))
            .filter(blobs::Column::Digest.eq(prepared.digest.as_str()))
            .into_tuple::<i64>()
            .one(txn)
            .await?;
        if let Some(existing) = same {
            messages::Entity::update_many()
                .col_expr(messages::Column::BlobId, Expr::value(existing))
                .filter(messages::Column::BlobId.eq(blob_id))
                .exec(txn)
                .await?;
            blobs::Entity::delete_by_id(blob_id).exec(txn).await?;
            continue;
        }
        // Sealed again with the key it was opened with (an erased scope has none).
        let key = match (sealed, ring) {
            (true, Some(ring)) => Some(crate::keys::existing_key(txn, ring, &scope).await?),
            (true, None) => return Err(crate::Error::NoMasterKey),
            (false, _) => None,
        };
        let mut row = crate::batch::blob_row(&scope, &mut prepared, key.as_deref(), now)?;
        row.id = sea_orm::ActiveValue::Unchanged(blob_id);
        // The blob keeps its first creation time.
        row.created_at = sea_orm::ActiveValue::NotSet;
        blobs::Entity::update(row).exec(txn).await?;
        blob_mentions::Entity::delete_many()
            .filter(blob_mentions::Column::BlobId.eq(blob_id))
            .exec(txn)
            .await?;
        insert_rows(txn, mention_rows_of(blob_id, &prepared.mentions)).await?;
    }
    Ok(rewritten)
}

/// The blobs whose recorded mentions ([`blob_mentions`]) include `address`. A key only
/// hints (two addresses may share one): the rewrite finds the address or changes nothing.
async fn blobs_mentioning(txn: &DatabaseTransaction, address: &str) -> Result<Vec<i64>> {
    Ok(blob_mentions::Entity::find()
        .select_only()
        .column(blob_mentions::Column::BlobId)
        .filter(blob_mentions::Column::AddressKey.eq(qd_core::lookup_key(address)))
        .into_tuple()
        .all(txn)
        .await?)
}

/// Messages from a mail system's own mailbox (`MAILER-DAEMON@…`, `postmaster@…`): the
/// senders of delivery reports.
fn is_report_sender() -> sea_orm::Condition {
    use sea_orm::sea_query::{Func, LikeExpr};
    let from = || Expr::expr(Func::lower(Expr::col(messages::Column::FromAddr)));
    sea_orm::Condition::any()
        .add(from().like(LikeExpr::new("mailer-daemon@%")))
        .add(from().like(LikeExpr::new("postmaster@%")))
}

/// An outbox entry as an erasure rewrites it: id, recipients, raw bytes, last error.
type OutboxRecipientRow = (i64, String, String, Option<Vec<u8>>, Option<String>);

/// What stays of an erased person as a recipient of other people's mail.
const ERASED_RECIPIENT: &str = "[erased]";

/// Replaces the person as a recipient in the messages and outbox entries that stay
/// (another customer's reply-all that had them in Cc, a staff reply copied to them) and
/// queues those messages for re-indexing, so `to:` no longer finds them. Their raw mail
/// (the stored blob, an outbox entry's bytes) loses the person's mailbox from its
/// header block too ([`qd_core::erase_address_in_headers`]); the body, the sender's
/// own text, stays. Returns how many rows changed.
async fn redact_recipients(
    txn: &DatabaseTransaction,
    ring: Option<&crate::crypto::KeyRing>,
    addresses: &[String],
    now: DateTime<Utc>,
) -> Result<u64> {
    use sea_orm::sea_query::Func;
    let mut changed = 0u64;
    let mut requeue: Vec<i64> = Vec::new();
    let mut mentioned: Vec<i64> = Vec::new();
    let mut reports: Vec<i64> = Vec::new();
    for address in addresses {
        let pattern = || contains_lowercase(address);
        let rows: Vec<(i64, String, String)> = messages::Entity::find()
            .select_only()
            .column(messages::Column::Id)
            .column(messages::Column::ToAddrs)
            .column(messages::Column::CcAddrs)
            .filter(
                sea_orm::Condition::any()
                    .add(
                        Expr::expr(Func::lower(Expr::col(messages::Column::ToAddrs)))
                            .like(pattern()),
                    )
                    .add(
                        Expr::expr(Func::lower(Expr::col(messages::Column::CcAddrs)))
                            .like(pattern()),
                    ),
            )
            .into_tuple()
            .all(txn)
            .await?;
        for (id, to, cc) in rows {
            let (to, to_changed) = without_recipient(&to, address);
            let (cc, cc_changed) = without_recipient(&cc, address);
            if !(to_changed || cc_changed) {
                continue;
            }
            messages::Entity::update_many()
                .col_expr(messages::Column::ToAddrs, Expr::value(to))
                .col_expr(messages::Column::CcAddrs, Expr::value(cc))
                .filter(messages::Column::Id.eq(id))
                .exec(txn)
                .await?;
            changed += 1;
            requeue.push(id);
        }
        mentioned.extend(blobs_mentioning(txn, address).await?);
        // Subjects that name them ("Refund for carol@…" on someone else's ticket): the
        // message's (shown and indexed), the ticket's and an outbox entry's. The raw
        // mail's Subject goes with its header block (found through the mentions).
        let named = erase_address_in_column::<messages::Entity>(
            txn,
            messages::Column::Id,
            messages::Column::Subject,
            address,
            sea_orm::Condition::all(),
        )
        .await?;
        changed += named.len() as u64;
        requeue.extend(named);
        changed += erase_address_in_column::<tickets::Entity>(
            txn,
            tickets::Column::Id,
            tickets::Column::Subject,
            address,
            sea_orm::Condition::all(),
        )
        .await?
        .len() as u64;
        let rows: Vec<(i64, String, Option<Vec<u8>>)> = outbox::Entity::find()
            .select_only()
            .column(outbox::Column::Id)
            .column(outbox::Column::Subject)
            .column(outbox::Column::Raw)
            .filter(Expr::expr(Func::lower(Expr::col(outbox::Column::Subject))).like(pattern()))
            .into_tuple()
            .all(txn)
            .await?;
        for (id, subject, raw) in rows {
            let Some(subject) = qd_core::erase_address_in_text(&subject, address) else {
                continue;
            };
            let raw = raw.map(|r| qd_core::erase_address_in_headers(&r, address).unwrap_or(r));
            outbox::Entity::update_many()
                .col_expr(outbox::Column::Subject, Expr::value(subject))
                .col_expr(outbox::Column::Raw, Expr::value(raw))
                .filter(outbox::Column::Id.eq(id))
                .exec(txn)
                .await?;
            changed += 1;
        }
        // Delivery reports (bounces) quote the undelivered mail's recipients in their
        // body, which is nobody's own text: there the address goes everywhere.
        // The sender first: bodies are long, and only reports' are read.
        let named = erase_address_in_column::<messages::Entity>(
            txn,
            messages::Column::Id,
            messages::Column::BodyText,
            address,
            sea_orm::Condition::all().add(is_report_sender()),
        )
        .await?;
        changed += named.len() as u64;
        requeue.extend(&named);
        reports.extend(named);
        let rows: Vec<OutboxRecipientRow> = outbox::Entity::find()
            .select_only()
            .column(outbox::Column::Id)
            .column(outbox::Column::Status)
            .column(outbox::Column::RcptTo)
            .column(outbox::Column::Raw)
            .column(outbox::Column::LastError)
            .filter(Expr::expr(Func::lower(Expr::col(outbox::Column::RcptTo))).like(pattern()))
            .into_tuple()
            .all(txn)
            .await?;
        for (id, status, rcpt, raw, last_error) in rows {
            // Mail still to be sent no longer goes to them: `[erased]` is no address, and
            // the relay would refuse the whole entry for it. With nobody left, it goes.
            let waiting = status == crate::OutboxStatus::Queued.as_str()
                || status == crate::OutboxStatus::Sending.as_str();
            let (rcpt, rcpt_changed, left) =
                edit_recipients(&rcpt, address, (!waiting).then_some(ERASED_RECIPIENT));
            if rcpt_changed && left == 0 {
                outbox::Entity::delete_many()
                    .filter(outbox::Column::Id.eq(id))
                    .exec(txn)
                    .await?;
                changed += 1;
            } else if rcpt_changed {
                let raw = raw.map(|r| qd_core::erase_address_in_headers(&r, address).unwrap_or(r));
                // A delivery error quotes the recipient (`550 <carl@…> unknown`).
                let last_error =
                    last_error.map(|e| qd_core::erase_address_in_text(&e, address).unwrap_or(e));
                outbox::Entity::update_many()
                    .col_expr(outbox::Column::RcptTo, Expr::value(rcpt))
                    .col_expr(outbox::Column::Raw, Expr::value(raw))
                    .col_expr(outbox::Column::LastError, Expr::value(last_error))
                    .filter(outbox::Column::Id.eq(id))
                    .exec(txn)
                    .await?;
                changed += 1;
            }
        }
    }
    let report_blobs = ids_where::<messages::Entity, _>(
        txn,
        messages::Column::BlobId,
        messages::Column::Id,
        &reports,
    )
    .await?;
    let mut recipients_of = ids_where::<messages::Entity, _>(
        txn,
        messages::Column::BlobId,
        messages::Column::Id,
        &requeue,
    )
    .await?;
    recipients_of.retain(|id| !report_blobs.contains(id));
    mentioned.retain(|id| !recipients_of.contains(id) && !report_blobs.contains(id));
    // Other people's mail kept as evidence (a hold, tax evidence) is not rewritten
    // either: the erasure yields, as it does for the person's own tickets.
    let mut touched: Vec<i64> = ids_where::<messages::Entity, _>(
        txn,
        messages::Column::TicketId,
        messages::Column::Id,
        &requeue,
    )
    .await?;
    touched.extend(
        ids_where::<messages::Entity, _>(
            txn,
            messages::Column::TicketId,
            messages::Column::BlobId,
            &mentioned,
        )
        .await?,
    );
    touched.sort_unstable();
    touched.dedup();
    refuse_if_tickets_held(txn, Vec::new(), &touched).await?;
    redact_blobs(txn, ring, recipients_of, addresses, false, now).await?;
    redact_blobs(txn, ring, report_blobs, addresses, true, now).await?;
    // Raw mail that names them only outside To and Cc (Reply-To, Bcc, Delivered-To,
    // Received `for`, ...): found through the mentions recorded with each blob.
    changed += redact_blobs(txn, ring, mentioned, addresses, false, now).await?;
    requeue.sort_unstable();
    requeue.dedup();
    insert_rows(
        txn,
        requeue
            .into_iter()
            // `redact`: indexed again like an upsert, and the replaced document's old
            // terms must leave the segment files (the indexer merges them away).
            .map(|id| queue_row(id, "redact", now))
            .collect(),
    )
    .await?;
    Ok(changed)
}

/// Replaces `address` in the text `column` of the rows of `E` that match `filter` and
/// name it ([`qd_core::erase_address_in_text`]); returns the ids of the rows changed.
async fn erase_address_in_column<E: EntityTrait>(
    txn: &DatabaseTransaction,
    id: E::Column,
    column: E::Column,
    address: &str,
    filter: sea_orm::Condition,
) -> Result<Vec<i64>> {
    use sea_orm::sea_query::Func;
    let rows: Vec<(i64, String)> = E::find()
        .select_only()
        .column(id)
        .column(column)
        .filter(filter)
        .filter(Expr::expr(Func::lower(Expr::col(column))).like(contains_lowercase(address)))
        .into_tuple()
        .all(txn)
        .await?;
    let mut changed = Vec::new();
    for (row, text) in rows {
        let Some(text) = qd_core::erase_address_in_text(&text, address) else {
            continue;
        };
        E::update_many()
            .col_expr(column, Expr::value(text))
            .filter(id.eq(row))
            .exec(txn)
            .await?;
        changed.push(row);
    }
    Ok(changed)
}

/// The messages of `tickets` with the contact each came from (`None`: ours, or none).
async fn messages_and_senders(
    txn: &DatabaseTransaction,
    tickets: &[i64],
) -> Result<Vec<(i64, Option<i64>)>> {
    Ok(messages::Entity::find()
        .select_only()
        .column(messages::Column::Id)
        .column(messages::Column::ContactId)
        .filter(messages::Column::TicketId.is_in(tickets.iter().copied()))
        .into_tuple()
        .all(txn)
        .await?)
}

/// A LIKE pattern for text that contains `address`, lowercased, its wildcards escaped:
/// to match against `lower(column)` (ASCII case-folding on SQLite), the caller then
/// checking each hit exactly.
pub(crate) fn contains_lowercase(address: &str) -> sea_orm::sea_query::LikeExpr {
    let escaped = address
        .to_lowercase()
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    sea_orm::sea_query::LikeExpr::new(format!("%{escaped}%")).escape('\\')
}

/// A JSON list of recipients (`Name <addr>` or `addr`) with every entry for `address`
/// replaced by [`ERASED_RECIPIENT`]; whether anything changed. A value that is not such
/// a list is left alone.
fn without_recipient(json: &str, address: &str) -> (String, bool) {
    let (out, changed, _) = edit_recipients(json, address, Some(ERASED_RECIPIENT));
    (out, changed)
}

/// The entries for `address` in a JSON list of recipients replaced by `with`, or left
/// out without it; whether anything changed, and how many entries the list keeps.
fn edit_recipients(json: &str, address: &str, with: Option<&str>) -> (String, bool, usize) {
    let Ok(list) = serde_json::from_str::<Vec<String>>(json) else {
        return (json.to_string(), false, 1);
    };
    let mut changed = false;
    let list: Vec<String> = list
        .into_iter()
        .filter_map(|entry| {
            if !qd_core::mailbox_is(&entry, address) {
                return Some(entry);
            }
            changed = true;
            with.map(str::to_string)
        })
        .collect();
    let out = serde_json::to_string(&list).unwrap_or_else(|_| json.to_string());
    (out, changed, list.len())
}

fn tickets_of_person(customer_id: Option<i64>, contact_ids: &[i64]) -> sea_orm::Condition {
    let cond = sea_orm::Condition::any()
        .add(tickets::Column::RequesterId.is_in(contact_ids.iter().copied()));
    match customer_id {
        Some(cid) => cond.add(tickets::Column::CustomerId.eq(cid)),
        None => cond,
    }
}

/// The non-NULL values of column `select` in the rows of `E` whose `key` is one of
/// `ids`, queried in chunks that fit a statement's bound-variable limit.
async fn ids_where<E: EntityTrait, C: ConnectionTrait>(
    db: &C,
    select: E::Column,
    key: E::Column,
    ids: &[i64],
) -> Result<Vec<i64>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(IN_CHUNK) {
        let rows: Vec<Option<i64>> = E::find()
            .select_only()
            .column(select)
            .filter(key.is_in(chunk.iter().copied()))
            .into_tuple()
            .all(db)
            .await?;
        out.extend(rows.into_iter().flatten());
    }
    Ok(out)
}

/// Deletes messages and what hangs off them (attachments, outbox entries that recorded
/// them, now-unused blobs) and queues their index deletes.
async fn delete_messages_in(
    txn: &DatabaseTransaction,
    ids: &[i64],
    now: DateTime<Utc>,
) -> Result<DeletionCounts> {
    let mut counts = DeletionCounts::default();
    for chunk in ids.chunks(IN_CHUNK) {
        let blob_ids: HashSet<i64> = ids_where::<messages::Entity, _>(
            txn,
            messages::Column::BlobId,
            messages::Column::Id,
            chunk,
        )
        .await?
        .into_iter()
        .collect();
        crate::learning::forget_people(txn, chunk, now).await?;
        crate::forgotten::remember(txn, chunk, now).await?;
        counts.attachments += attachments::Entity::delete_many()
            .filter(attachments::Column::MessageId.is_in(chunk.iter().copied()))
            .exec(txn)
            .await?
            .rows_affected;
        counts.outbox += outbox::Entity::delete_many()
            .filter(outbox::Column::SentMessageDbId.is_in(chunk.iter().copied()))
            .exec(txn)
            .await?
            .rows_affected;
        counts.messages += messages::Entity::delete_many()
            .filter(messages::Column::Id.is_in(chunk.iter().copied()))
            .exec(txn)
            .await?
            .rows_affected;
        insert_rows(
            txn,
            chunk
                .iter()
                .map(|id| queue_row(*id, "delete", now))
                .collect(),
        )
        .await?;
        counts.blobs += delete_unreferenced_blobs(txn, blob_ids).await?;
    }
    Ok(counts)
}

/// Deletes those of `blob_ids` no message refers to any more (raw mail is shared when
/// two messages' bytes are the same, or became the same after a redaction); returns how
/// many went.
async fn delete_unreferenced_blobs(
    txn: &DatabaseTransaction,
    blob_ids: impl IntoIterator<Item = i64>,
) -> Result<u64> {
    let blob_ids: Vec<i64> = blob_ids.into_iter().collect();
    if blob_ids.is_empty() {
        return Ok(0);
    }
    let still: HashSet<i64> = ids_where::<messages::Entity, _>(
        txn,
        messages::Column::BlobId,
        messages::Column::BlobId,
        &blob_ids,
    )
    .await?
    .into_iter()
    .collect();
    let unused: Vec<i64> = blob_ids
        .into_iter()
        .filter(|b| !still.contains(b))
        .collect();
    if unused.is_empty() {
        return Ok(0);
    }
    Ok(blobs::Entity::delete_many()
        .filter(blobs::Column::Id.is_in(unused))
        .exec(txn)
        .await?
        .rows_affected)
}

/// Deletes ticket rows and their dependants (the messages must be gone already).
async fn delete_ticket_rows(txn: &DatabaseTransaction, ids: &[i64]) -> Result<DeletionCounts> {
    let mut counts = DeletionCounts::default();
    if ids.is_empty() {
        return Ok(counts);
    }
    thread_refs::Entity::delete_many()
        .filter(thread_refs::Column::TicketId.is_in(ids.iter().copied()))
        .exec(txn)
        .await?;
    ticket_tags::Entity::delete_many()
        .filter(ticket_tags::Column::TicketId.is_in(ids.iter().copied()))
        .exec(txn)
        .await?;
    counts.outbox += outbox::Entity::delete_many()
        .filter(outbox::Column::TicketId.is_in(ids.iter().copied()))
        .exec(txn)
        .await?
        .rows_affected;
    ack_log::Entity::delete_many()
        .filter(ack_log::Column::TicketId.is_in(ids.iter().copied()))
        .exec(txn)
        .await?;
    counts.tickets += tickets::Entity::delete_many()
        .filter(tickets::Column::Id.is_in(ids.iter().copied()))
        .exec(txn)
        .await?
        .rows_affected;
    Ok(counts)
}

impl Store {
    /// Tickets a person requested or that are filed under their customer, by number.
    pub async fn tickets_of(
        &self,
        customer_id: Option<i64>,
        contact_ids: &[i64],
    ) -> Result<Vec<tickets::Model>> {
        let cond = tickets_of_person(customer_id, contact_ids);
        Ok(tickets::Entity::find()
            .filter(cond)
            .order_by_asc(tickets::Column::Number)
            .all(&self.db)
            .await?)
    }

    /// The ids of every message on these tickets.
    pub async fn message_ids_of_tickets(&self, ticket_ids: &[i64]) -> Result<Vec<i64>> {
        ids_where::<messages::Entity, _>(
            &self.db,
            messages::Column::Id,
            messages::Column::TicketId,
            ticket_ids,
        )
        .await
    }

    /// Messages a person sent on tickets that are not theirs.
    pub async fn messages_by_contacts_elsewhere(
        &self,
        contact_ids: &[i64],
        own_tickets: &[i64],
    ) -> Result<Vec<messages::Model>> {
        let mut out = Vec::new();
        for chunk in contact_ids.chunks(IN_CHUNK) {
            let rows = messages::Entity::find()
                .filter(messages::Column::ContactId.is_in(chunk.iter().copied()))
                .order_by_asc(messages::Column::Id)
                .all(&self.db)
                .await?;
            out.extend(
                rows.into_iter()
                    .filter(|m| !own_tickets.contains(&m.ticket_id)),
            );
        }
        Ok(out)
    }

    /// Messages on tickets that are not the person's whose To or Cc may name one of
    /// `addresses` (a text match, case-insensitive: the caller checks each recipient),
    /// staff notes left out. Oldest first.
    pub async fn messages_naming_elsewhere(
        &self,
        addresses: &[String],
        own_tickets: &[i64],
    ) -> Result<Vec<messages::Model>> {
        use sea_orm::sea_query::Func;
        let mut out: Vec<messages::Model> = Vec::new();
        for address in addresses {
            let pattern = || contains_lowercase(address);
            let rows = messages::Entity::find()
                .filter(messages::Column::Direction.ne("note"))
                .filter(
                    sea_orm::Condition::any()
                        .add(
                            Expr::expr(Func::lower(Expr::col(messages::Column::ToAddrs)))
                                .like(pattern()),
                        )
                        .add(
                            Expr::expr(Func::lower(Expr::col(messages::Column::CcAddrs)))
                                .like(pattern()),
                        ),
                )
                .order_by_asc(messages::Column::Id)
                .all(&self.db)
                .await?;
            for m in rows {
                if !own_tickets.contains(&m.ticket_id) && !out.iter().any(|o| o.id == m.id) {
                    out.push(m);
                }
            }
        }
        out.sort_by_key(|m| m.id);
        Ok(out)
    }

    /// Attachments of messages, in message order.
    pub async fn attachments_of(&self, message_ids: &[i64]) -> Result<Vec<attachments::Model>> {
        let mut out = Vec::new();
        for chunk in message_ids.chunks(IN_CHUNK) {
            out.extend(
                attachments::Entity::find()
                    .filter(attachments::Column::MessageId.is_in(chunk.iter().copied()))
                    .order_by_asc(attachments::Column::Id)
                    .all(&self.db)
                    .await?,
            );
        }
        Ok(out)
    }

    /// Erasure that keeps statistics: a customer's (or contact's) tickets and messages
    /// stay as rows with dates, direction, status, team and sizes, but every personal
    /// field is replaced by a stable token (`erased-contact-<id>`, the same token for the
    /// same person everywhere) or emptied; raw mail and attachments' names are deleted,
    /// keys destroyed, index documents removed, history dropped.
    pub async fn anonymise_people(
        &self,
        customer_id: Option<i64>,
        contact_ids: &[i64],
        actor: &crate::Actor<'_>,
    ) -> Result<DeletionCounts> {
        let now = actor.now;
        self.record_mentions().await?;
        let txn = self.begin_serialized().await?;
        let mut counts = DeletionCounts::default();
        let cond = tickets_of_person(customer_id, contact_ids);
        let ticket_ids: Vec<i64> = tickets::Entity::find()
            .select_only()
            .column(tickets::Column::Id)
            .filter(cond)
            .into_tuple()
            .all(&txn)
            .await?;
        refuse_if_held(&txn, customer_id, &ticket_ids, contact_ids).await?;
        let mut msg_ids: Vec<i64> = Vec::new();
        for chunk in ticket_ids.chunks(IN_CHUNK) {
            msg_ids.extend(
                ids_where::<messages::Entity, _>(
                    &txn,
                    messages::Column::Id,
                    messages::Column::TicketId,
                    chunk,
                )
                .await?,
            );
        }
        for chunk in contact_ids.chunks(IN_CHUNK) {
            msg_ids.extend(
                ids_where::<messages::Entity, _>(
                    &txn,
                    messages::Column::Id,
                    messages::Column::ContactId,
                    chunk,
                )
                .await?,
            );
        }
        msg_ids.sort_unstable();
        msg_ids.dedup();
        for chunk in msg_ids.chunks(IN_CHUNK) {
            let blob_ids: Vec<i64> = ids_where::<messages::Entity, _>(
                &txn,
                messages::Column::BlobId,
                messages::Column::Id,
                chunk,
            )
            .await?
            .into_iter()
            .collect();
            crate::learning::forget_people(&txn, chunk, now).await?;
            // The Message-ID goes below: remember it (hashed) so a rescan does not take
            // the mail back as new.
            crate::forgotten::remember(&txn, chunk, now).await?;
            counts.messages += messages::Entity::update_many()
                .col_expr(messages::Column::Subject, Expr::value("[erased]"))
                .col_expr(messages::Column::BodyText, Expr::value(""))
                .col_expr(
                    messages::Column::BodyHtml,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(
                    messages::Column::FromName,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(
                    messages::Column::FromAddr,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(messages::Column::ToAddrs, Expr::value("[]"))
                .col_expr(messages::Column::CcAddrs, Expr::value("[]"))
                .col_expr(
                    messages::Column::MessageId,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(
                    messages::Column::MessageIdKey,
                    Expr::value(Option::<i64>::None),
                )
                .col_expr(
                    messages::Column::InReplyTo,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(
                    messages::Column::References,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(
                    messages::Column::VerdictTags,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(messages::Column::BlobId, Expr::value(Option::<i64>::None))
                .col_expr(
                    messages::Column::Source,
                    Expr::value(Option::<String>::None),
                )
                .col_expr(
                    messages::Column::SourcePosition,
                    Expr::value(Option::<String>::None),
                )
                .filter(messages::Column::Id.is_in(chunk.iter().copied()))
                .exec(&txn)
                .await?
                .rows_affected;
            counts.attachments += attachments::Entity::update_many()
                .col_expr(
                    attachments::Column::Filename,
                    Expr::value(Option::<String>::None),
                )
                .filter(attachments::Column::MessageId.is_in(chunk.iter().copied()))
                .exec(&txn)
                .await?
                .rows_affected;
            counts.outbox += outbox::Entity::delete_many()
                .filter(outbox::Column::SentMessageDbId.is_in(chunk.iter().copied()))
                .exec(&txn)
                .await?
                .rows_affected;
            insert_rows(
                &txn,
                chunk
                    .iter()
                    .map(|id| queue_row(*id, "delete", now))
                    .collect(),
            )
            .await?;
            // After the messages let go of them (blob_id NULL above).
            counts.blobs += delete_unreferenced_blobs(&txn, blob_ids).await?;
        }
        for chunk in ticket_ids.chunks(IN_CHUNK) {
            tickets::Entity::update_many()
                .col_expr(tickets::Column::Subject, Expr::value("[erased]"))
                .col_expr(tickets::Column::AnonymisedAt, Expr::value(now))
                .filter(tickets::Column::Id.is_in(chunk.iter().copied()))
                .exec(&txn)
                .await?;
            thread_refs::Entity::delete_many()
                .filter(thread_refs::Column::TicketId.is_in(chunk.iter().copied()))
                .exec(&txn)
                .await?;
            // The acknowledgement log keys senders by an unkeyed hash of their address:
            // anyone who knows the address would find the anonymised tickets again.
            ack_log::Entity::delete_many()
                .filter(ack_log::Column::TicketId.is_in(chunk.iter().copied()))
                .exec(&txn)
                .await?;
            counts.outbox += outbox::Entity::delete_many()
                .filter(outbox::Column::TicketId.is_in(chunk.iter().copied()))
                .exec(&txn)
                .await?
                .rows_affected;
        }
        counts.tickets = ticket_ids.len() as u64;
        let addresses = addresses_of(&txn, customer_id, contact_ids).await?;
        counts.redacted += redact_recipients(&txn, self.keys.as_deref(), &addresses, now).await?;
        let scopes: Vec<String> = contact_ids.iter().map(|c| blob_scope(Some(*c))).collect();
        let (keys, blobs) =
            crate::keys::destroy_scopes(&txn, self.keys.as_deref(), &scopes, now).await?;
        counts.keys_destroyed += keys;
        counts.blobs += blobs;
        for id in contact_ids {
            contacts::Entity::update_many()
                .col_expr(
                    contacts::Column::Address,
                    Expr::value(format!("erased-contact-{id}@erased.invalid")),
                )
                .col_expr(
                    contacts::Column::DisplayName,
                    Expr::value(Option::<String>::None),
                )
                .filter(contacts::Column::Id.eq(*id))
                .exec(&txn)
                .await?;
        }
        counts.contacts = contact_ids.len() as u64;
        counts.changes += changes::Entity::delete_many()
            .filter(changes::Column::EntityType.eq("contact"))
            .filter(changes::Column::EntityId.is_in(contact_ids.iter().copied()))
            .exec(&txn)
            .await?
            .rows_affected;
        if let Some(cid) = customer_id {
            customers::Entity::update_many()
                .col_expr(
                    customers::Column::Email,
                    Expr::value(format!("erased-customer-{cid}@erased.invalid")),
                )
                .col_expr(customers::Column::Name, Expr::value(Option::<String>::None))
                .filter(customers::Column::Id.eq(cid))
                .exec(&txn)
                .await?;
            counts.customers = 1;
            counts.changes += changes::Entity::delete_many()
                .filter(changes::Column::EntityType.eq("customer"))
                .filter(changes::Column::EntityId.eq(cid))
                .exec(&txn)
                .await?
                .rows_affected;
        }
        self.audit_erasure(&txn, actor, "anonymise", &counts)
            .await?;
        txn.commit().await?;
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_erased_address_is_replaced() {
        let json = r#"["Alice <Alice@Example.org>","bob@example.org","ob@example.org","Eve <alice@example.org.evil>"]"#;
        let (out, changed) = without_recipient(json, "alice@example.org");
        assert!(changed);
        assert_eq!(
            out,
            r#"["[erased]","bob@example.org","ob@example.org","Eve <alice@example.org.evil>"]"#
        );
        let (same, changed) = without_recipient(json, "ob@example.org");
        assert!(changed);
        assert!(same.contains("bob@example.org"), "{same}");
        assert!(!without_recipient("not json", "a@b").1);
    }
}
