//! Staff feedback to the filter: `quietdesk filter learn` ("mark as spam / not spam")
//! and `quietdesk quarantine list|release`. Both act through [`teach`], which draws the
//! filter's tokens from the stored raw mail (headers and structure only, as the filter
//! sees it) and records them in the store's learned model; a running `serve` reloads the
//! model when it changes.

use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{ArgGroup, Args, Subcommand};
use qd_core::Label;
use qd_filter::{Learner, MessageView};
use qd_store::entity::messages;
use qd_store::{Actor, Store, TeachOutcome, Teaching};

use crate::commands::open_store;
use crate::config::Settings;
use crate::privacy_cmd::actor;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("label").required(true).args(["spam", "ham"])))]
pub struct LearnArgs {
    /// The message: its number in `quarantine list` / `ticket show`, or its Message-ID.
    pub message: String,
    /// The message is spam.
    #[arg(long)]
    pub spam: bool,
    /// The message is not spam.
    #[arg(long)]
    pub ham: bool,
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum QuarantineCommand {
    /// Quarantined messages, newest first, with the rules that put them there.
    List(QuarantineListArgs),
    /// Take a message out of quarantine; `--not-spam` also teaches the filter.
    Release(ReleaseArgs),
}

#[derive(Debug, Args)]
pub struct QuarantineListArgs {
    #[arg(long, default_value_t = 50)]
    pub limit: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReleaseArgs {
    /// The message: its number in `quarantine list`, or its Message-ID.
    pub message: String,
    /// The filter was wrong: learn the message as not spam.
    #[arg(long)]
    pub not_spam: bool,
    #[arg(long)]
    pub reason: Option<String>,
    #[arg(long)]
    pub json: bool,
}

/// The learned model as stored, ready to judge and to learn.
pub async fn load_learner(store: &Store, settings: &Settings) -> Result<Learner> {
    let m = store.learned_model().await?;
    Ok(
        Learner::from_weights(m.spam_messages, m.ham_messages, m.tokens)
            .with_excluded_domains(settings.filter.our_domains.clone()),
    )
}

/// Teaches the filter that the stored `message` is `label`: the step is computed
/// against the model as it is without this message's earlier feedback, if any.
pub async fn teach(
    store: &Store,
    settings: &Settings,
    message: &messages::Model,
    label: Label,
    actor: &Actor<'_>,
) -> Result<TeachOutcome> {
    let id = message.id;
    let earlier = store.taught(id).await?;
    if earlier.is_some_and(|e| e.label == label) {
        return Ok(TeachOutcome::Unchanged);
    }
    let raw = store
        .raw_message(id)
        .await?
        .with_context(|| format!("message {id} has no stored raw mail to learn from"))?;
    let view = MessageView::from_raw(&raw);
    // The rules that fired when the message arrived, and what they scored, as its
    // stored verdict says: the model learns its correction to them.
    let fired: Vec<(String, f32)> = rule_tags(message.verdict_tags.as_deref());
    let rules: Vec<&str> = fired.iter().map(|(n, _)| n.as_str()).collect();
    let rule_score: f32 = fired.iter().map(|(_, s)| s).sum();
    let mut learner = load_learner(store, settings).await?;
    let features = learner
        .features(&view, &rules)
        .with_prior(qd_filter::learning_prior(
            rule_score,
            settings.filter.thresholds.spam,
        ));
    if let Some(earlier) = earlier {
        learner.unlearn(&features, earlier.label, earlier.step);
    }
    let step = learner.step(&features, label);
    Ok(store
        .teach(
            &Teaching {
                message_db_id: id,
                label,
                step,
                tokens: &features.structural,
                personal: &features.personal,
            },
            actor,
        )
        .await?)
}

async fn find(store: &Store, reference: &str) -> Result<messages::Model> {
    store
        .find_message(reference)
        .await?
        .with_context(|| format!("no message {reference}"))
}

pub async fn learn(settings: &Settings, a: LearnArgs) -> Result<ExitCode> {
    let store = open_store(settings).await?;
    let m = find(&store, &a.message).await?;
    let label = if a.spam { Label::Spam } else { Label::Ham };
    let outcome = teach(
        &store,
        settings,
        &m,
        label,
        &actor(settings, a.reason.as_deref()),
    )
    .await?;
    let model = store.learned_model().await?;
    if a.json {
        out!(
            "{}",
            serde_json::json!({
                "message": m.id, "label": label, "outcome": outcome,
                "spam_messages": model.spam_messages, "ham_messages": model.ham_messages,
                "tokens": model.tokens.len(),
            })
        );
    } else {
        out!(
            "message {} learned as {label} ({outcome:?}); the model now knows {} spam and {} ham messages, {} tokens",
            m.id,
            model.spam_messages,
            model.ham_messages,
            model.tokens.len()
        );
    }
    store.close().await?;
    Ok(ExitCode::SUCCESS)
}

/// The tags of a stored verdict (its JSON, `[{name, score, detail}]`): names and scores.
fn stored_tags(tags_json: Option<&str>) -> Vec<(String, f32)> {
    let tags: Vec<serde_json::Value> = tags_json
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    tags.iter()
        .filter_map(|t| {
            let name = t.get("name")?.as_str()?.to_string();
            let score = t.get("score").and_then(|s| s.as_f64()).unwrap_or(0.0) as f32;
            Some((name, score))
        })
        .collect()
}

/// The tag names of a stored verdict, for listings.
fn tag_names(tags_json: Option<&str>) -> Vec<String> {
    stored_tags(tags_json).into_iter().map(|(n, _)| n).collect()
}

/// The static rules of a stored verdict with their scores: the learned model's own tag
/// is left out.
fn rule_tags(tags_json: Option<&str>) -> Vec<(String, f32)> {
    stored_tags(tags_json)
        .into_iter()
        .filter(|(n, _)| !qd_filter::is_learned_tag(n))
        .collect()
}

pub async fn quarantine(settings: &Settings, cmd: QuarantineCommand) -> Result<ExitCode> {
    let store = open_store(settings).await?;
    match cmd {
        QuarantineCommand::List(a) => {
            let rows = store.quarantined(a.limit).await?;
            // Listing is not reading: no subject, no sender address, no text here; staff
            // open the ticket (audited) to see more.
            let items: Vec<serde_json::Value> = rows
                .iter()
                .map(|m| {
                    serde_json::json!({
                        "message": m.id,
                        "ticket_id": m.ticket_id,
                        "received_at": m.received_at,
                        "class": m.verdict_class,
                        "score": m.verdict_score,
                        "tags": tag_names(m.verdict_tags.as_deref()),
                        "sender_domain": m.from_addr.as_deref().and_then(|a| a.rsplit_once('@')).map(|(_, d)| d),
                    })
                })
                .collect();
            if a.json {
                out!("{}", serde_json::to_string_pretty(&items)?);
            } else {
                for (m, item) in rows.iter().zip(&items) {
                    let tags: Vec<&str> = item["tags"]
                        .as_array()
                        .map(|t| t.iter().filter_map(|n| n.as_str()).collect())
                        .unwrap_or_default();
                    out!(
                        "{:>8}  {}  {:<6} {:>6.1}  {}  {}",
                        m.id,
                        m.received_at.format("%Y-%m-%d %H:%M"),
                        m.verdict_class.as_deref().unwrap_or("?"),
                        m.verdict_score.unwrap_or_default(),
                        item["sender_domain"].as_str().unwrap_or("-"),
                        tags.join(",")
                    );
                }
                out!("{} quarantined", rows.len());
            }
        }
        QuarantineCommand::Release(a) => {
            let m = find(&store, &a.message).await?;
            let actor = actor(settings, a.reason.as_deref());
            if m.verdict_class.as_deref() == Some("virus") && a.not_spam {
                bail!(
                    "message {} was judged a virus by a signature; it is not released as not-spam",
                    m.id
                );
            }
            store.release_message(m.id, &actor).await?;
            let outcome = if a.not_spam {
                Some(teach(&store, settings, &m, Label::Ham, &actor).await?)
            } else {
                None
            };
            if a.json {
                out!(
                    "{}",
                    serde_json::json!({"message": m.id, "released": true, "learned": outcome})
                );
            } else {
                out!(
                    "message {} released{}",
                    m.id,
                    if outcome.is_some() {
                        " and learned as not spam"
                    } else {
                        ""
                    }
                );
            }
        }
    }
    store.close().await?;
    Ok(ExitCode::SUCCESS)
}
