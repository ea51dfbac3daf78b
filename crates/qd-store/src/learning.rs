//! What the spam filter learned from staff, and the quarantine staff act on.
//!
//! The model is a weight per token hash (see `qd_filter::Learner`, online logistic
//! regression). [`Store::teach`] records one message's feedback — the step the learner
//! took and the tokens it took it on — and adds the step to those weights, in one
//! transaction; teaching the same message the other label first subtracts the earlier
//! step, so the weights stay exactly the sum of the feedback that exists.
//! [`Store::learned_model`] loads the whole model; [`Store::learned_generation`] tells a
//! running process whether it changed.
//!
//! Forgetting people: the hashes that name a person (sender addresses) are kept apart
//! (`personal_tokens`). When a message is deleted — retention or erasure — its step is
//! subtracted from its personal tokens, which are dropped, and the feedback row loses
//! its link to the message ([`forget_people`]); the structural tokens stay as anonymous
//! statistics, so the filter does not forget spam when quarantined spam expires.

use chrono::{DateTime, Utc};
use qd_core::Label;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, OnConflict, Query};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};
use serde::Serialize;

use crate::entity::{filter_feedback, filter_model, filter_tokens, messages};
use crate::{Actor, Error, Result, Store};

/// Rows per multi-row statement.
const CHUNK: usize = 500;

/// One message as staff label it, with the token hashes the filter drew from it.
#[derive(Debug, Clone)]
pub struct Teaching<'a> {
    pub message_db_id: i64,
    pub label: Label,
    /// The step the learner takes on each token (positive for spam).
    pub step: f64,
    /// Structural tokens (header shapes, domains, MIME structure, digests).
    pub tokens: &'a [u64],
    /// Tokens that name a person (sender addresses); forgotten with the message.
    pub personal: &'a [u64],
}

/// What [`Store::teach`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TeachOutcome {
    /// First feedback on this message.
    Learned,
    /// The message had been taught the other label; that was taken back first.
    Relabelled,
    /// The message had already been taught this label.
    Unchanged,
}

/// The whole learned model, as stored.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LearnedModel {
    pub spam_messages: u32,
    pub ham_messages: u32,
    pub generation: i64,
    /// (token hash, weight)
    pub tokens: Vec<(u64, f64)>,
}

/// Earlier feedback on one message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Taught {
    pub label: Label,
    pub step: f64,
}

fn to_db(h: u64) -> i64 {
    i64::from_le_bytes(h.to_le_bytes())
}

fn from_db(h: i64) -> u64 {
    u64::from_le_bytes(h.to_le_bytes())
}

fn count(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

/// Token hashes as stored in a feedback row: 8 bytes each, little-endian.
fn encode(hashes: &[u64]) -> Vec<u8> {
    hashes.iter().flat_map(|h| h.to_le_bytes()).collect()
}

fn decode(bytes: &[u8]) -> Vec<u64> {
    bytes
        .chunks_exact(8)
        .filter_map(|c| <[u8; 8]>::try_from(c).ok())
        .map(u64::from_le_bytes)
        .collect()
}

fn label_of(s: &str) -> Result<Label> {
    s.parse()
        .map_err(|e: qd_core::ParseEnumError| Error::Inconsistent(e.to_string()))
}

impl Store {
    /// Records staff feedback on one message and learns its tokens (see the module docs).
    pub async fn teach(&self, t: &Teaching<'_>, actor: &Actor<'_>) -> Result<TeachOutcome> {
        let txn = self.begin_write().await?;
        messages::Entity::find_by_id(t.message_db_id)
            .one(&txn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("message {}", t.message_db_id)))?;
        let earlier = filter_feedback::Entity::find()
            .filter(filter_feedback::Column::MessageId.eq(t.message_db_id))
            .order_by_desc(filter_feedback::Column::Id)
            .one(&txn)
            .await?;
        let mut outcome = TeachOutcome::Learned;
        if let Some(old) = earlier {
            let old_label = label_of(&old.label)?;
            if old_label == t.label {
                txn.rollback().await?;
                return Ok(TeachOutcome::Unchanged);
            }
            let mut hashes = decode(&old.tokens);
            hashes.extend(decode(old.personal_tokens.as_deref().unwrap_or_default()));
            add_step(&txn, &hashes, -old.step).await?;
            bump_model(&txn, old_label, -1, actor.now).await?;
            filter_feedback::Entity::delete_by_id(old.id)
                .exec(&txn)
                .await?;
            outcome = TeachOutcome::Relabelled;
        }
        filter_feedback::ActiveModel {
            id: NotSet,
            message_id: Set(Some(t.message_db_id)),
            label: Set(t.label.as_str().to_string()),
            staff: Set(actor.name.to_string()),
            created_at: Set(actor.now),
            step: Set(t.step),
            tokens: Set(encode(t.tokens)),
            personal_tokens: Set(Some(encode(t.personal))),
        }
        .insert(&txn)
        .await?;
        let mut all: Vec<u64> = t.tokens.to_vec();
        all.extend_from_slice(t.personal);
        add_step(&txn, &all, t.step).await?;
        bump_model(&txn, t.label, 1, actor.now).await?;
        self.audit_in(
            &txn,
            actor.name,
            &format!("filter.teach.{}", t.label),
            "message",
            Some(t.message_db_id),
            actor.reason.map(str::to_string),
            actor.now,
        )
        .await?;
        txn.commit().await?;
        Ok(outcome)
    }

    /// What staff last taught about a message, if anything.
    pub async fn taught(&self, message_db_id: i64) -> Result<Option<Taught>> {
        filter_feedback::Entity::find()
            .filter(filter_feedback::Column::MessageId.eq(message_db_id))
            .order_by_desc(filter_feedback::Column::Id)
            .one(&self.db)
            .await?
            .map(|f| {
                Ok(Taught {
                    label: label_of(&f.label)?,
                    step: f.step,
                })
            })
            .transpose()
    }

    /// The whole learned model.
    pub async fn learned_model(&self) -> Result<LearnedModel> {
        let head = filter_model::Entity::find_by_id(1).one(&self.db).await?;
        let tokens = filter_tokens::Entity::find()
            .all(&self.db)
            .await?
            .into_iter()
            .map(|r| (from_db(r.hash), r.weight))
            .collect();
        Ok(LearnedModel {
            spam_messages: head.as_ref().map_or(0, |h| count(h.spam_messages)),
            ham_messages: head.as_ref().map_or(0, |h| count(h.ham_messages)),
            generation: head.map_or(0, |h| h.generation),
            tokens,
        })
    }

    /// The learned model's generation: it changes whenever the model does.
    pub async fn learned_generation(&self) -> Result<i64> {
        Ok(filter_model::Entity::find_by_id(1)
            .one(&self.db)
            .await?
            .map_or(0, |h| h.generation))
    }

    /// A message by its database id, or by its Message-ID (the newest of that id).
    pub async fn find_message(&self, reference: &str) -> Result<Option<messages::Model>> {
        if let Ok(id) = reference.trim().parse::<i64>() {
            return Ok(messages::Entity::find_by_id(id).one(&self.db).await?);
        }
        let Some(mid) = qd_core::normalize_message_id(reference) else {
            return Ok(None);
        };
        Ok(messages::Entity::find()
            .filter(messages::Column::MessageIdKey.eq(qd_core::lookup_key(&mid)))
            .filter(messages::Column::MessageId.eq(mid))
            .order_by_desc(messages::Column::Id)
            .one(&self.db)
            .await?)
    }

    /// Quarantined messages, newest first, at most `limit`.
    pub async fn quarantined(&self, limit: u64) -> Result<Vec<messages::Model>> {
        Ok(messages::Entity::find()
            .filter(messages::Column::Quarantined.eq(true))
            .order_by_desc(messages::Column::Id)
            .limit(limit)
            .all(&self.db)
            .await?)
    }

    /// Takes a message out of quarantine (its quarantined attachments stay quarantined)
    /// and records who did it. Returns the message as it was.
    pub async fn release_message(
        &self,
        message_db_id: i64,
        actor: &Actor<'_>,
    ) -> Result<messages::Model> {
        let txn = self.begin_serialized().await?;
        let m = messages::Entity::find_by_id(message_db_id)
            .one(&txn)
            .await?
            .ok_or_else(|| Error::NotFound(format!("message {message_db_id}")))?;
        if !m.quarantined {
            return Err(Error::Invalid(format!(
                "message {message_db_id} is not quarantined"
            )));
        }
        messages::Entity::update_many()
            .col_expr(messages::Column::Quarantined, Expr::value(false))
            .filter(messages::Column::Id.eq(message_db_id))
            .exec(&txn)
            .await?;
        self.audit_in(
            &txn,
            actor.name,
            "quarantine.release",
            "message",
            Some(message_db_id),
            actor.reason.map(str::to_string),
            actor.now,
        )
        .await?;
        txn.commit().await?;
        Ok(m)
    }
}

/// Tokens whose weight is this close to zero are gone (nothing is left of them).
const ZERO: f64 = 1e-12;

/// Adds `step` to the weight of each token (new tokens start at zero); tokens left at
/// zero are deleted.
async fn add_step<C: ConnectionTrait>(db: &C, hashes: &[u64], step: f64) -> Result<()> {
    let w = filter_tokens::Column::Weight;
    for chunk in hashes.chunks(CHUNK) {
        let rows = chunk.iter().map(|h| filter_tokens::ActiveModel {
            hash: Set(to_db(*h)),
            weight: Set(step),
        });
        filter_tokens::Entity::insert_many(rows)
            .on_conflict(
                OnConflict::column(filter_tokens::Column::Hash)
                    .value(
                        w,
                        Expr::col((filter_tokens::Entity, w))
                            .add(Expr::col((Alias::new("excluded"), w))),
                    )
                    .to_owned(),
            )
            .exec_without_returning(db)
            .await?;
        filter_tokens::Entity::delete_many()
            .filter(filter_tokens::Column::Hash.is_in(chunk.iter().map(|h| to_db(*h))))
            .filter(w.between(-ZERO, ZERO))
            .exec(db)
            .await?;
    }
    Ok(())
}

/// Adds `delta` to `label`'s message count (when not zero) and moves the generation on.
async fn bump_model<C: ConnectionTrait>(
    db: &C,
    label: Label,
    delta: i32,
    now: DateTime<Utc>,
) -> Result<()> {
    filter_model::Entity::insert(filter_model::ActiveModel {
        id: Set(1),
        spam_messages: Set(0),
        ham_messages: Set(0),
        generation: Set(0),
        updated_at: Set(None),
    })
    .on_conflict_do_nothing_on([filter_model::Column::Id])
    .exec_without_returning(db)
    .await?;
    let target = match label {
        Label::Spam => filter_model::Column::SpamMessages,
        Label::Ham => filter_model::Column::HamMessages,
    };
    let mut stmt = Query::update();
    stmt.table(filter_model::Entity)
        .value(
            filter_model::Column::Generation,
            Expr::col(filter_model::Column::Generation).add(1),
        )
        .value(filter_model::Column::UpdatedAt, now)
        .and_where(Expr::col(filter_model::Column::Id).eq(1));
    if delta != 0 {
        stmt.value(
            target,
            Expr::case(
                Expr::col(target).add(delta).gte(0),
                Expr::col(target).add(delta),
            )
            .finally(0),
        );
    }
    db.execute(&stmt).await?;
    Ok(())
}

/// Unlearns and drops the personal tokens of the feedback on these messages and cuts
/// the feedback's link to them; called inside the transaction that deletes them.
pub(crate) async fn forget_people<C: ConnectionTrait>(
    db: &C,
    message_ids: &[i64],
    now: DateTime<Utc>,
) -> Result<u64> {
    let rows = filter_feedback::Entity::find()
        .filter(filter_feedback::Column::MessageId.is_in(message_ids.iter().copied()))
        .all(db)
        .await?;
    if rows.is_empty() {
        return Ok(0);
    }
    for row in &rows {
        let personal = decode(row.personal_tokens.as_deref().unwrap_or_default());
        if !personal.is_empty() {
            add_step(db, &personal, -row.step).await?;
        }
    }
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    filter_feedback::Entity::update_many()
        .col_expr(
            filter_feedback::Column::MessageId,
            Expr::value(Option::<i64>::None),
        )
        .col_expr(
            filter_feedback::Column::PersonalTokens,
            Expr::value(Option::<Vec<u8>>::None),
        )
        .filter(filter_feedback::Column::Id.is_in(ids))
        .exec(db)
        .await?;
    bump_model(db, Label::Ham, 0, now).await?;
    Ok(rows.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_blobs_round_trip_every_bit() {
        let hashes = [0, 1, u64::MAX, 0x8000_0000_0000_0000, 0x0123_4567_89ab_cdef];
        assert_eq!(decode(&encode(&hashes)), hashes);
        for h in hashes {
            assert_eq!(from_db(to_db(h)), h);
        }
        // a torn blob yields the whole hashes only
        assert_eq!(decode(&encode(&hashes)[..12]), vec![0]);
    }
}
