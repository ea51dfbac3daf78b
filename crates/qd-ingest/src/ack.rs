//! Acknowledgements: after a message is stored, tell the customer we have it.
//!
//! [`plan_acknowledgement`] decides (RFC 3834 loop rules from
//! `qd_mail::autoreply`, only for new tickets) and renders the acknowledgement from the
//! language templates; it is pure, so every "no" has a [`SkipReason`] a test can assert.
//! The per-sender daily limit needs the store: it is counted where the outbox row is
//! written, in the same transaction. [`acknowledge`] is the async step for one stored
//! message: it plans, then enqueues into the outbox together with the `ack_log` row
//! (sender kept as a hash) unless the sender's acknowledgements of the last 24 hours,
//! counted in the same transaction, reached the limit. The live pipeline plans with
//! [`plan_entry`] inside each batch's own transaction instead (`crate::steps`,
//! `qd_store::Store::store_batch_with_acks`). Sending is the outbound worker's job.

use std::path::PathBuf;

use chrono::{DateTime, Utc};
use qd_core::TicketRefFormat;
use qd_mail::autoreply::{may_auto_reply, LoopHeaders, NoAutoReply, OwnIdentity};
use qd_mail::outgoing::{
    self, new_message_id, references_for, Mailbox, Outgoing, OutgoingKind, OutgoingMessage,
    Templates,
};
use qd_mail::ParsedMail;
use qd_store::{sender_hash, EnqueueOutcome, NewOutboxEntry, OutboxKind, Store, StoredMessage};
use serde::{Deserialize, Serialize};

/// The `[ack]` section of the configuration file, as written.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AckConfig {
    /// Send acknowledgements at all.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// The From address of acknowledgements (the support address customers write to).
    pub from: String,
    /// Display name of the From address.
    #[serde(default)]
    pub from_name: Option<String>,
    /// Further addresses that are ours (other mailboxes we ingest): mail from them is
    /// never acknowledged.
    #[serde(default)]
    pub own_addresses: Vec<String>,
    /// At most this many acknowledgements per sender in 24 hours (RFC 3834 §2).
    #[serde(default = "default_max_per_day")]
    pub max_per_sender_per_day: u32,
    /// Acknowledge only messages that open a new ticket (not every reply on a ticket).
    #[serde(default = "yes")]
    pub only_new_tickets: bool,
    /// Directory with `ack.<lang>.txt` templates; the built-in ones when absent.
    #[serde(default)]
    pub templates_dir: Option<PathBuf>,
    /// Language used when the message's language has no template.
    #[serde(default = "default_language")]
    pub default_language: String,
    /// Send with the null envelope sender `<>` (RFC 3834 §3.3 recommends it for
    /// automatic responses: a bounce of an acknowledgement must not come back to us).
    #[serde(default = "yes")]
    pub null_envelope_sender: bool,
}

impl AckConfig {
    /// Acknowledgements from `from`, everything else as a config file that names only
    /// `from` would set it.
    pub fn new(from: &str) -> AckConfig {
        AckConfig {
            enabled: true,
            from: from.to_string(),
            from_name: None,
            own_addresses: Vec::new(),
            max_per_sender_per_day: default_max_per_day(),
            only_new_tickets: true,
            templates_dir: None,
            default_language: default_language(),
            null_envelope_sender: true,
        }
    }
}

fn yes() -> bool {
    true
}
fn default_max_per_day() -> u32 {
    3
}
fn default_language() -> String {
    "en".to_string()
}

/// Validated acknowledgement settings.
#[derive(Debug, Clone)]
pub struct AckSettings {
    pub enabled: bool,
    pub from: Mailbox,
    pub own: OwnIdentity,
    pub max_per_sender_per_day: u32,
    pub only_new_tickets: bool,
    pub templates: Templates,
    pub ticket_ref: TicketRefFormat,
    /// Domain of our Message-IDs.
    pub our_domain: String,
    pub null_envelope_sender: bool,
}

/// Why no acknowledgement is sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    Disabled,
    /// The message joined an existing ticket.
    NotNewTicket,
    /// RFC 3834 loop rules (or spam).
    Loop(NoAutoReply),
    /// The sender already had this many acknowledgements in 24 hours.
    DailyLimit {
        sent: u32,
    },
    /// The acknowledgement could not be built (e.g. an unusable sender address).
    Unbuildable(String),
}

impl SkipReason {
    /// Stable name for logs and counters.
    pub fn as_str(&self) -> &'static str {
        match self {
            SkipReason::Disabled => "disabled",
            SkipReason::NotNewTicket => "not_new_ticket",
            SkipReason::Loop(r) => r.as_str(),
            SkipReason::DailyLimit { .. } => "daily_limit",
            SkipReason::Unbuildable(_) => "unbuildable",
        }
    }
}

/// What [`acknowledge`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AckOutcome {
    Queued { outbox_id: i64, language: String },
    Skipped(SkipReason),
}

#[derive(Debug, thiserror::Error)]
pub enum AckConfigError {
    #[error("ack.from `{0}` is not an email address")]
    BadFrom(String),
    #[error(transparent)]
    Templates(#[from] outgoing::OutgoingError),
}

impl AckSettings {
    /// Validates the raw section. `our_domain` is the Message-ID domain (shared with the
    /// outbound settings), `ticket_ref` the subject reference format.
    pub fn from_config(
        c: &AckConfig,
        ticket_ref: TicketRefFormat,
        our_domain: &str,
    ) -> Result<AckSettings, AckConfigError> {
        let from = qd_core::normalize_address(&c.from);
        if !from.contains('@') || from.starts_with('@') || from.ends_with('@') {
            return Err(AckConfigError::BadFrom(c.from.clone()));
        }
        let templates = match &c.templates_dir {
            Some(dir) => Templates::load(dir, &c.default_language)?,
            None => {
                let t = Templates::builtin();
                if !t.languages().any(|l| l == c.default_language) {
                    return Err(
                        outgoing::OutgoingError::NoFallback(c.default_language.clone()).into(),
                    );
                }
                t.with_fallback(&c.default_language)
            }
        };
        let mut addresses = vec![from.clone()];
        addresses.extend(
            c.own_addresses
                .iter()
                .map(|a| qd_core::normalize_address(a)),
        );
        Ok(AckSettings {
            enabled: c.enabled,
            from: Mailbox {
                name: c.from_name.clone(),
                addr: from,
            },
            own: OwnIdentity {
                addresses,
                message_id_domain: Some(our_domain.to_string()),
            },
            max_per_sender_per_day: c.max_per_sender_per_day,
            only_new_tickets: c.only_new_tickets,
            templates,
            ticket_ref,
            our_domain: our_domain.to_string(),
            null_envelope_sender: c.null_envelope_sender,
        })
    }
}

/// Decides whether `parsed` (stored as `stored`) gets an acknowledgement and renders
/// it. `headers` come from the raw message ([`LoopHeaders::from_raw`]). The sender's
/// daily limit is not checked here but where the acknowledgement is enqueued.
pub fn plan_acknowledgement(
    parsed: &ParsedMail,
    headers: &LoopHeaders,
    stored: &StoredMessage,
    verdict_is_spam: bool,
    settings: &AckSettings,
    now: DateTime<Utc>,
) -> Result<OutgoingMessage, SkipReason> {
    if !settings.enabled {
        return Err(SkipReason::Disabled);
    }
    let sender = parsed.from.as_ref();
    may_auto_reply(
        headers,
        sender.map(|a| a.addr.as_str()),
        &settings.own,
        verdict_is_spam,
    )
    .map_err(SkipReason::Loop)?;
    if settings.only_new_tickets && !stored.new_ticket {
        return Err(SkipReason::NotNewTicket);
    }
    let Some(sender) = sender else {
        return Err(SkipReason::Loop(NoAutoReply::NoSender));
    };
    let ticket_ref = settings.ticket_ref.render(stored.ticket_number);
    let number = stored.ticket_number.to_string();
    let subject = parsed.subject.clone().unwrap_or_default();
    let name = sender.name.clone().unwrap_or_else(|| sender.addr.clone());
    let (language, rendered) = settings
        .templates
        .render(
            headers.content_language.as_deref(),
            &[
                ("ticket_ref", &ticket_ref),
                ("ticket_number", &number),
                ("subject", &subject),
                ("name", &name),
            ],
        )
        .map_err(|e| SkipReason::Unbuildable(e.to_string()))?;
    let out = Outgoing {
        kind: OutgoingKind::Ack,
        from: settings.from.clone(),
        to: vec![Mailbox::new(sender.addr.clone())],
        subject: rendered.subject,
        body: rendered.body,
        language: Some(language),
        in_reply_to: parsed.message_id.clone(),
        references: references_for(parsed.message_id.as_deref(), &parsed.references),
        message_id: new_message_id(&settings.our_domain, now),
        date: now,
        envelope_from: (!settings.null_envelope_sender).then(|| settings.from.addr.clone()),
    };
    outgoing::build(&out).map_err(|e| SkipReason::Unbuildable(e.to_string()))
}

/// The outbox row for a built message (`mail_from` empty = null reverse-path).
pub fn outbox_entry(
    msg: &OutgoingMessage,
    kind: OutboxKind,
    ticket_id: Option<i64>,
) -> NewOutboxEntry {
    NewOutboxEntry {
        kind,
        ticket_id,
        message_id: msg.message_id.clone(),
        in_reply_to: msg.in_reply_to.clone(),
        references: msg.references.clone(),
        mail_from: msg.envelope_from.clone().unwrap_or_default(),
        rcpt_to: msg.to.clone(),
        subject: msg.subject.clone(),
        language: msg.language.clone(),
        raw: msg.raw.clone(),
    }
}

/// Plans and enqueues the acknowledgement of one stored message. The limit is checked
/// again inside the enqueue transaction, so a burst from one sender stays within it.
pub async fn acknowledge(
    store: &Store,
    headers: &LoopHeaders,
    parsed: &ParsedMail,
    stored: &StoredMessage,
    verdict_is_spam: bool,
    settings: &AckSettings,
    now: DateTime<Utc>,
) -> Result<AckOutcome, qd_store::Error> {
    let candidate = AckCandidate {
        headers,
        parsed,
        stored,
        verdict_is_spam,
    };
    match plan(&candidate, settings, now) {
        Planned::Skip(reason) => Ok(AckOutcome::Skipped(reason)),
        Planned::Queue {
            entry,
            hash,
            language,
        } => {
            let outcome = store
                .enqueue_ack(&entry, &hash, settings.max_per_sender_per_day, now)
                .await?;
            Ok(queued(outcome, language))
        }
    }
}

/// One stored message to acknowledge (see [`plan_entry`]).
pub struct AckCandidate<'a> {
    pub headers: &'a LoopHeaders,
    pub parsed: &'a ParsedMail,
    pub stored: &'a StoredMessage,
    pub verdict_is_spam: bool,
}

/// The outbox entry and sender hash of the acknowledgement `c` is due, or `None` (the
/// reason is logged at debug level). The daily limit is the enqueue's to check.
pub fn plan_entry(
    c: &AckCandidate<'_>,
    settings: &AckSettings,
    now: DateTime<Utc>,
) -> Option<(NewOutboxEntry, String)> {
    match plan(c, settings, now) {
        Planned::Skip(_) => None,
        Planned::Queue { entry, hash, .. } => Some((*entry, hash)),
    }
}

/// What [`plan`] decided for one message.
enum Planned {
    Skip(SkipReason),
    Queue {
        entry: Box<NewOutboxEntry>,
        hash: String,
        language: String,
    },
}

/// Plans one acknowledgement. The sender's daily limit is left to the enqueue
/// transaction, which counts the last 24 hours with the batch's earlier ones included:
/// a count here as well cost a query per stored message, replies and spam included.
fn plan(c: &AckCandidate<'_>, settings: &AckSettings, now: DateTime<Utc>) -> Planned {
    let hash = c.parsed.from.as_ref().map(|a| sender_hash(&a.addr));
    let msg = match plan_acknowledgement(
        c.parsed,
        c.headers,
        c.stored,
        c.verdict_is_spam,
        settings,
        now,
    ) {
        Ok(m) => m,
        Err(reason) => {
            tracing::debug!(
                ticket = c.stored.ticket_number,
                reason = reason.as_str(),
                "no acknowledgement"
            );
            return Planned::Skip(reason);
        }
    };
    let Some(hash) = hash else {
        return Planned::Skip(SkipReason::Loop(NoAutoReply::NoSender));
    };
    let entry = Box::new(outbox_entry(
        &msg,
        OutboxKind::Ack,
        Some(c.stored.ticket_id),
    ));
    Planned::Queue {
        entry,
        hash,
        language: msg.language.unwrap_or_default(),
    }
}

fn queued(outcome: EnqueueOutcome, language: String) -> AckOutcome {
    match outcome {
        EnqueueOutcome::Queued(outbox_id) => AckOutcome::Queued {
            outbox_id,
            language,
        },
        EnqueueOutcome::LimitReached { sent } => {
            AckOutcome::Skipped(SkipReason::DailyLimit { sent })
        }
    }
}

#[cfg(test)]
mod tests {
    // Test code: a failed unwrap is a failed test with its location.
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// mail-parser keeps a bare CR inside a Message-ID; copied into our In-Reply-To and
    /// References, it let a sender add header fields (here Reply-To) to our
    /// acknowledgement.
    #[test]
    fn a_bare_cr_in_an_incoming_id_does_not_reach_our_headers() {
        let raw = b"From: Ann <ann@customer.example>\r\n\
To: support@desk.example\r\n\
Subject: Help\r\n\
Message-ID: <a\rReply-To: attacker@evil.example>\r\n\
References: <root@customer.example> <b\rBcc: attacker@evil.example>\r\n\
Date: Wed, 25 Nov 2026 08:59:00 +0000\r\n\
\r\n\
My printer is on fire.\r\n";
        let parsed = qd_mail::parse(raw);
        assert!(
            parsed
                .message_id
                .as_deref()
                .is_some_and(|id| id.contains('\r')),
            "the parser keeps the CR: {:?}",
            parsed.message_id
        );
        let cfg = AckConfig::new("support@desk.example");
        let settings = AckSettings::from_config(
            &cfg,
            TicketRefFormat::new("[#QD-{n}]").unwrap(),
            "desk.example",
        )
        .unwrap();
        let stored = StoredMessage {
            index: 0,
            message_db_id: 1,
            ticket_id: 1,
            ticket_number: 1,
            ticket_status: qd_core::TicketStatus::Open,
            new_ticket: true,
        };
        let now = chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap();
        let msg = plan_acknowledgement(
            &parsed,
            &LoopHeaders::from_raw(raw),
            &stored,
            false,
            &settings,
            now,
        )
        .unwrap();

        let bare_cr = msg.raw.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n')
            || msg.raw.last() == Some(&b'\r');
        let text = String::from_utf8_lossy(&msg.raw);
        assert!(!bare_cr, "{text:?}");
        let header_block = text.split("\r\n\r\n").next().unwrap();
        for line in header_block.split(['\r', '\n']) {
            let name = line.split(':').next().unwrap().trim().to_ascii_lowercase();
            assert!(name != "reply-to" && name != "bcc", "{text:?}");
        }
        // The unsafe ids are dropped; the clean one still threads.
        assert_eq!(msg.in_reply_to, None);
        assert_eq!(msg.references, vec!["root@customer.example".to_string()]);
        assert!(header_block.contains("References: <root@customer.example>"));
    }
}
