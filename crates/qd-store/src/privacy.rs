//! Customers and contacts as data subjects: lifecycle status, rectification with history,
//! legal holds, the staff-access audit trail.
//!
//! Every change to a customer or contact field goes through [`Store::rectify`] or the
//! status setters, which write the previous value to `changes` in the same transaction,
//! so the export can show who changed what, when, and from what.

use chrono::{DateTime, Utc};
use qd_core::{normalize_address, CustomerStatus};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::NotSet, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
    QueryOrder, Set,
};
use serde::Serialize;

use crate::entity::{audit_events, changes, contacts, customers, tickets};
use crate::{Error, Result, Store};

/// How staff name a person on the command line: an address or a customer id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubjectRef {
    Id(i64),
    Email(String),
}

impl SubjectRef {
    pub fn parse(text: &str) -> SubjectRef {
        match text.trim().parse::<i64>() {
            Ok(id) => SubjectRef::Id(id),
            Err(_) => SubjectRef::Email(normalize_address(text)),
        }
    }
}

/// Who changed something, and why (recorded in `changes` and `audit_events`).
#[derive(Debug, Clone)]
pub struct Actor<'a> {
    pub name: &'a str,
    pub reason: Option<&'a str>,
    pub now: DateTime<Utc>,
}

/// One field change, as the export shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Change {
    pub entity_type: String,
    pub entity_id: i64,
    pub field: String,
    pub old_value: Option<String>,
    pub new_value: Option<String>,
    pub actor: String,
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// The result of a status change or sync row.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatusOutcome {
    pub customer_id: i64,
    pub created: bool,
    pub changed: bool,
    /// Contacts newly linked to the customer (an address that was only a contact).
    pub linked_contacts: u64,
}

/// One row of a billing sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRecord {
    pub email: String,
    pub name: Option<String>,
    pub status: CustomerStatus,
    pub since: DateTime<Utc>,
    pub language: Option<String>,
}

async fn record_change<C: ConnectionTrait>(
    db: &C,
    entity_type: &str,
    entity_id: i64,
    field: &str,
    old: Option<String>,
    new: Option<String>,
    actor: &Actor<'_>,
) -> Result<bool> {
    if old == new {
        return Ok(false);
    }
    changes::ActiveModel {
        id: NotSet,
        entity_type: Set(entity_type.to_string()),
        entity_id: Set(entity_id),
        field: Set(field.to_string()),
        old_value: Set(old),
        new_value: Set(new),
        actor: Set(actor.name.to_string()),
        reason: Set(actor.reason.map(str::to_string)),
        at: Set(actor.now),
    }
    .insert(db)
    .await?;
    Ok(true)
}

fn day(t: Option<DateTime<Utc>>) -> Option<String> {
    t.map(|t| t.to_rfc3339())
}

impl Store {
    /// Scope keys that exist and are not destroyed (0 on a new installation).
    pub async fn sealed_key_count(&self) -> Result<u64> {
        use sea_orm::PaginatorTrait;
        Ok(crate::entity::blob_keys::Entity::find()
            .filter(crate::entity::blob_keys::Column::WrappedKey.is_not_null())
            .count(&self.db)
            .await?)
    }

    pub async fn find_customer(&self, who: &SubjectRef) -> Result<Option<customers::Model>> {
        find_customer(&self.db, who).await
    }

    /// Sets a customer's status (with the date it took effect). An address that is
    /// unknown, or only a contact, becomes a customer; its contact (if any) is linked and
    /// its tickets follow the customer from now on.
    pub async fn set_customer_status(
        &self,
        who: &SubjectRef,
        status: CustomerStatus,
        since: DateTime<Utc>,
        actor: &Actor<'_>,
    ) -> Result<StatusOutcome> {
        let txn = self.begin_serialized().await?;
        let outcome = set_status_in(&txn, who, None, status, since, None, actor).await?;
        txn.commit().await?;
        Ok(outcome)
    }

    /// Applies a billing export: one status change per row, all in one transaction (a
    /// bad file changes nothing).
    pub async fn sync_customers(
        &self,
        rows: &[CustomerRecord],
        actor: &Actor<'_>,
    ) -> Result<Vec<StatusOutcome>> {
        let txn = self.begin_serialized().await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let who = SubjectRef::Email(normalize_address(&r.email));
            out.push(
                set_status_in(
                    &txn,
                    &who,
                    r.name.as_deref(),
                    r.status,
                    r.since,
                    r.language.as_deref(),
                    actor,
                )
                .await?,
            );
        }
        txn.commit().await?;
        Ok(out)
    }

    /// Rectification: sets one field of a customer (`name`, `email`, `language`) or a
    /// contact (`display_name`, `address`), keeping the previous value in `changes`.
    /// Returns false when the value was already that.
    pub async fn rectify(
        &self,
        entity: &str,
        id: i64,
        field: &str,
        value: Option<&str>,
        actor: &Actor<'_>,
    ) -> Result<bool> {
        let txn = self.begin_serialized().await?;
        let new = value.map(str::to_string);
        let changed = match (entity, field) {
            ("customer", "name" | "email" | "language") => {
                let c = customers::Entity::find_by_id(id)
                    .one(&txn)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("customer {id}")))?;
                let mut am: customers::ActiveModel = c.clone().into();
                let old = match field {
                    "name" => {
                        am.name = Set(new.clone());
                        c.name
                    }
                    "email" => {
                        let v = new
                            .clone()
                            .map(|e| normalize_address(&e))
                            .ok_or_else(|| Error::Invalid("a customer needs an email".into()))?;
                        am.email = Set(v);
                        Some(c.email)
                    }
                    _ => {
                        am.language = Set(new.clone());
                        c.language
                    }
                };
                am.updated_at = Set(actor.now);
                let changed = record_change(&txn, "customer", id, field, old, new, actor).await?;
                if changed {
                    let c = am.update(&txn).await?;
                    if field == "email" {
                        // Mail from the new address is this customer's from now on, and
                        // so is what it already wrote (retention follows the customer).
                        link_contacts(&txn, c.id, &c.email).await?;
                    }
                }
                changed
            }
            ("contact", "display_name" | "address") => {
                let c = contacts::Entity::find_by_id(id)
                    .one(&txn)
                    .await?
                    .ok_or_else(|| Error::NotFound(format!("contact {id}")))?;
                let mut am: contacts::ActiveModel = c.clone().into();
                let old = if field == "address" {
                    let v = new
                        .clone()
                        .map(|e| normalize_address(&e))
                        .ok_or_else(|| Error::Invalid("a contact needs an address".into()))?;
                    am.address = Set(v);
                    Some(c.address)
                } else {
                    am.display_name = Set(new.clone());
                    c.display_name
                };
                let changed = record_change(&txn, "contact", id, field, old, new, actor).await?;
                if changed {
                    am.update(&txn).await?;
                }
                changed
            }
            _ => {
                return Err(Error::Invalid(format!(
                    "cannot rectify `{field}` of a {entity} (customer: name, email, language; \
                     contact: display_name, address)"
                )))
            }
        };
        txn.commit().await?;
        Ok(changed)
    }

    /// Puts a legal hold on a customer or lifts it.
    pub async fn set_customer_hold(
        &self,
        customer_id: i64,
        hold: bool,
        actor: &Actor<'_>,
    ) -> Result<bool> {
        let txn = self.begin_serialized().await?;
        let c = customers::Entity::find_by_id(customer_id)
            .one(&txn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("customer {customer_id}")))?;
        let changed = record_change(
            &txn,
            "customer",
            customer_id,
            "legal_hold",
            Some(c.legal_hold.to_string()),
            Some(hold.to_string()),
            actor,
        )
        .await?;
        if changed {
            let mut am: customers::ActiveModel = c.into();
            am.legal_hold = Set(hold);
            am.updated_at = Set(actor.now);
            am.update(&txn).await?;
        }
        txn.commit().await?;
        Ok(changed)
    }

    /// Sets a ticket's legal hold and/or retention class (`tax_evidence`, or `None` to go
    /// back to the customer-derived class).
    pub async fn set_ticket_retention(
        &self,
        number: i64,
        hold: Option<bool>,
        class: Option<Option<String>>,
        actor: &Actor<'_>,
    ) -> Result<()> {
        let txn = self.begin_serialized().await?;
        let t = tickets::Entity::find()
            .filter(tickets::Column::Number.eq(number))
            .one(&txn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("ticket {number}")))?;
        let mut am: tickets::ActiveModel = t.clone().into();
        if let Some(h) = hold {
            am.legal_hold = Set(h);
        }
        if let Some(c) = class.clone() {
            am.retention_class = Set(c);
        }
        am.update(&txn).await?;
        self.audit_in(
            &txn,
            actor.name,
            "ticket.retention",
            "ticket",
            Some(t.id),
            Some(format!(
                "legal_hold={:?} retention_class={:?}",
                hold,
                class.flatten()
            )),
            actor.now,
        )
        .await?;
        txn.commit().await?;
        Ok(())
    }

    /// The rectification history of a customer and its contacts, oldest first.
    pub async fn changes_of(&self, customer_id: i64, contact_ids: &[i64]) -> Result<Vec<Change>> {
        let rows = changes::Entity::find()
            .filter(
                sea_orm::Condition::any()
                    .add(
                        changes::Column::EntityType
                            .eq("customer")
                            .and(changes::Column::EntityId.eq(customer_id)),
                    )
                    .add(
                        changes::Column::EntityType
                            .eq("contact")
                            .and(changes::Column::EntityId.is_in(contact_ids.iter().copied())),
                    ),
            )
            .order_by_asc(changes::Column::Id)
            .all(&self.db)
            .await?;
        Ok(rows
            .into_iter()
            .map(|c| Change {
                entity_type: c.entity_type,
                entity_id: c.entity_id,
                field: c.field,
                old_value: c.old_value,
                new_value: c.new_value,
                actor: c.actor,
                reason: c.reason,
                at: c.at,
            })
            .collect())
    }

    /// Records that `actor` did `action` on an object (a staff view of a ticket, an
    /// export, an erasure). `detail` must not hold message text or addresses.
    pub async fn audit(
        &self,
        actor: &str,
        action: &str,
        object_type: &str,
        object_id: Option<i64>,
        detail: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.audit_in(&self.db, actor, action, object_type, object_id, detail, now)
            .await
    }

    /// Records several accesses at once (a search that shows many tickets).
    pub async fn audit_many(
        &self,
        actor: &str,
        action: &str,
        object_type: &str,
        object_ids: &[i64],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let rows = object_ids
            .iter()
            .map(|id| audit_events::ActiveModel {
                id: NotSet,
                at: Set(now),
                actor: Set(actor.to_string()),
                action: Set(action.to_string()),
                object_type: Set(object_type.to_string()),
                object_id: Set(Some(*id)),
                detail: Set(None),
            })
            .collect();
        crate::batch::insert_rows(&self.db, rows).await
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn audit_in<C: ConnectionTrait>(
        &self,
        db: &C,
        actor: &str,
        action: &str,
        object_type: &str,
        object_id: Option<i64>,
        detail: Option<String>,
        now: DateTime<Utc>,
    ) -> Result<()> {
        audit_events::ActiveModel {
            id: NotSet,
            at: Set(now),
            actor: Set(actor.to_string()),
            action: Set(action.to_string()),
            object_type: Set(object_type.to_string()),
            object_id: Set(object_id),
            detail: Set(detail),
        }
        .insert(db)
        .await?;
        Ok(())
    }

    /// Audit events about the given tickets (staff accesses), oldest first.
    pub async fn ticket_accesses(&self, ticket_ids: &[i64]) -> Result<Vec<audit_events::Model>> {
        let mut out = Vec::new();
        for chunk in ticket_ids.chunks(900) {
            out.extend(
                audit_events::Entity::find()
                    .filter(audit_events::Column::ObjectType.eq("ticket"))
                    .filter(audit_events::Column::ObjectId.is_in(chunk.iter().copied()))
                    .order_by_asc(audit_events::Column::Id)
                    .all(&self.db)
                    .await?,
            );
        }
        out.sort_by_key(|e| e.id);
        Ok(out)
    }

    /// Contacts of a customer (by link, and the contact with the customer's own address).
    pub async fn contacts_of(&self, customer: &customers::Model) -> Result<Vec<contacts::Model>> {
        Ok(contacts::Entity::find()
            .filter(
                sea_orm::Condition::any()
                    .add(contacts::Column::CustomerId.eq(customer.id))
                    .add(contacts::Column::Address.eq(customer.email.clone())),
            )
            .order_by_asc(contacts::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// A contact by address (for people who are not customers).
    pub async fn find_contact(&self, address: &str) -> Result<Option<contacts::Model>> {
        Ok(contacts::Entity::find()
            .filter(contacts::Column::Address.eq(normalize_address(address)))
            .one(&self.db)
            .await?)
    }
}

async fn find_customer<C: ConnectionTrait>(
    db: &C,
    who: &SubjectRef,
) -> Result<Option<customers::Model>> {
    Ok(match who {
        SubjectRef::Id(id) => customers::Entity::find_by_id(*id).one(db).await?,
        SubjectRef::Email(e) => {
            customers::Entity::find()
                .filter(customers::Column::Email.eq(e.clone()))
                .one(db)
                .await?
        }
    })
}

async fn set_status_in<C: ConnectionTrait>(
    txn: &C,
    who: &SubjectRef,
    name: Option<&str>,
    status: CustomerStatus,
    since: DateTime<Utc>,
    language: Option<&str>,
    actor: &Actor<'_>,
) -> Result<StatusOutcome> {
    let existing = find_customer(txn, who).await?;
    let (customer, created) = match existing {
        Some(c) => (c, false),
        None => {
            let SubjectRef::Email(email) = who else {
                return Err(Error::NotFound(format!("customer {who:?}")));
            };
            let contact = contacts::Entity::find()
                .filter(contacts::Column::Address.eq(email.clone()))
                .one(txn)
                .await?;
            let c = customers::ActiveModel {
                id: NotSet,
                name: Set(name
                    .map(str::to_string)
                    .or_else(|| contact.and_then(|c| c.display_name))),
                email: Set(email.clone()),
                status: Set(CustomerStatus::Prospect.as_str().to_string()),
                status_since: Set(since),
                active_since: Set(None),
                former_since: Set(None),
                language: Set(language.map(str::to_string)),
                legal_hold: Set(false),
                created_at: Set(actor.now),
                updated_at: Set(actor.now),
            }
            .insert(txn)
            .await?;
            record_change(
                txn,
                "customer",
                c.id,
                "created",
                None,
                Some(c.email.clone()),
                actor,
            )
            .await?;
            (c, true)
        }
    };
    let id = customer.id;
    let mut am: customers::ActiveModel = customer.clone().into();
    let mut changed = created;
    let old_status = customer.status.clone();
    if old_status != status.as_str() || created {
        changed |= record_change(
            txn,
            "customer",
            id,
            "status",
            (!created).then_some(old_status),
            Some(status.as_str().to_string()),
            actor,
        )
        .await?;
        am.status = Set(status.as_str().to_string());
        am.status_since = Set(since);
    }
    match status {
        CustomerStatus::Active => {
            if customer.active_since.is_none() || customer.status != status.as_str() {
                changed |= record_change(
                    txn,
                    "customer",
                    id,
                    "active_since",
                    day(customer.active_since),
                    day(Some(since)),
                    actor,
                )
                .await?;
                am.active_since = Set(Some(since));
            }
            if customer.former_since.is_some() {
                changed |= record_change(
                    txn,
                    "customer",
                    id,
                    "former_since",
                    day(customer.former_since),
                    None,
                    actor,
                )
                .await?;
                am.former_since = Set(None);
            }
        }
        CustomerStatus::Former => {
            if customer.former_since != Some(since) {
                changed |= record_change(
                    txn,
                    "customer",
                    id,
                    "former_since",
                    day(customer.former_since),
                    day(Some(since)),
                    actor,
                )
                .await?;
                am.former_since = Set(Some(since));
            }
        }
        // An active customer moved back to prospect (a new trial after leaving) stopped
        // being a customer: retention keeps its mail for the former customer's term
        // from now. A former one keeps the date it left.
        CustomerStatus::Prospect => {
            if customer.status == CustomerStatus::Active.as_str() && customer.former_since.is_none()
            {
                changed |= record_change(
                    txn,
                    "customer",
                    id,
                    "former_since",
                    None,
                    day(Some(since)),
                    actor,
                )
                .await?;
                am.former_since = Set(Some(since));
            }
        }
    }
    if !created {
        if let Some(n) = name {
            if customer.name.as_deref() != Some(n) {
                changed |= record_change(
                    txn,
                    "customer",
                    id,
                    "name",
                    customer.name.clone(),
                    Some(n.to_string()),
                    actor,
                )
                .await?;
                am.name = Set(Some(n.to_string()));
            }
        }
        if let Some(l) = language {
            if customer.language.as_deref() != Some(l) {
                changed |= record_change(
                    txn,
                    "customer",
                    id,
                    "language",
                    customer.language.clone(),
                    Some(l.to_string()),
                    actor,
                )
                .await?;
                am.language = Set(Some(l.to_string()));
            }
        }
    }
    if changed {
        am.updated_at = Set(actor.now);
        am.update(txn).await?;
    }
    let linked = link_contacts(txn, id, &customer.email).await?;
    Ok(StatusOutcome {
        customer_id: id,
        created,
        changed,
        linked_contacts: linked,
    })
}

impl Store {
    /// Every contact with the number of messages in the tickets it opened (for the
    /// retention benchmark: the share of mail a status change makes due).
    pub async fn contact_message_counts(&self) -> Result<Vec<(i64, String, u64)>> {
        use crate::entity::messages;
        use sea_orm::sea_query::{Alias, Query};
        // Messages of the tickets each contact opened: what a retention decision about
        // the contact (as requester) covers.
        let q = Query::select()
            .column((tickets::Entity, tickets::Column::RequesterId))
            .expr_as(
                Expr::col((messages::Entity, messages::Column::Id)).count(),
                Alias::new("n"),
            )
            .from(messages::Entity)
            .inner_join(
                tickets::Entity,
                Expr::col((tickets::Entity, tickets::Column::Id))
                    .equals((messages::Entity, messages::Column::TicketId)),
            )
            .group_by_col((tickets::Entity, tickets::Column::RequesterId))
            .to_owned();
        let mut by_id: std::collections::HashMap<i64, i64> = std::collections::HashMap::new();
        for row in self.db.query_all(&q).await? {
            let requester: Option<i64> = row.try_get_by_index(0)?;
            let n: i64 = row.try_get_by_index(1)?;
            if let Some(r) = requester {
                by_id.insert(r, n);
            }
        }
        let all = contacts::Entity::find()
            .order_by_asc(contacts::Column::Id)
            .all(&self.db)
            .await?;
        Ok(all
            .into_iter()
            .map(|c| {
                let n = u64::try_from(by_id.get(&c.id).copied().unwrap_or(0)).unwrap_or(0);
                (c.id, c.address, n)
            })
            .collect())
    }
}

/// Links the unlinked contact with the customer's address `email` to customer `id` and
/// files that contact's tickets under the customer; returns how many contacts it linked.
async fn link_contacts<C: ConnectionTrait>(db: &C, id: i64, email: &str) -> Result<u64> {
    let linked = contacts::Entity::update_many()
        .col_expr(contacts::Column::CustomerId, Expr::value(id))
        .filter(contacts::Column::Address.eq(email))
        .filter(contacts::Column::CustomerId.is_null())
        .exec(db)
        .await?
        .rows_affected;
    if linked > 0 {
        let contact_ids: Vec<i64> = contacts::Entity::find()
            .filter(contacts::Column::CustomerId.eq(id))
            .all(db)
            .await?
            .into_iter()
            .map(|c| c.id)
            .collect();
        tickets::Entity::update_many()
            .col_expr(tickets::Column::CustomerId, Expr::value(id))
            .filter(tickets::Column::RequesterId.is_in(contact_ids))
            .filter(tickets::Column::CustomerId.is_null())
            .exec(db)
            .await?;
    }
    Ok(linked)
}
