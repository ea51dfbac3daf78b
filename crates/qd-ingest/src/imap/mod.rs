//! The IMAP source: mail taken from configured mailboxes into the store, exactly once.
//!
//! - [`config`]: [`MailboxConfig`] (`[[ingest.mailboxes]]`) and `imap[s]://` URLs.
//! - [`conn`]: TCP, implicit TLS or STARTTLS (rustls), LOGIN / PLAIN / XOAUTH2.
//! - [`sync`]: one pass over one folder: checkpoint -> sizes -> `UID FETCH … BODY.PEEK[]`
//!   in batches -> parse -> [`qd_store::Store::store_batch`] with the checkpoint
//!   (`imap:<mailbox>/<folder>`, UIDVALIDITY, last UID) in the same transaction ->
//!   the after-ingest action (move, flag, delete) only once the batch is committed.
//! - [`watch`]: the continuous mode: IDLE (or polling), renewal, stall detection,
//!   reconnection with backoff, clean stop on cancellation.
//!
//! Exactly once rests on three facts: a UID is only skipped once its batch (and the
//! checkpoint) committed; a UIDVALIDITY change rescans from UID 1 behind the store's
//! content-hash duplicate check; and the after-ingest action is idempotent and
//! re-applied to everything at or below the checkpoint after a reconnect, so a crash
//! between commit and move leaves nothing behind and nothing doubled.
//!
//! [`AfterStore`] is the seam for the rest of the pipeline (filter verdicts,
//! acknowledgements): it sees each message before it is stored and each committed batch.

pub mod config;
pub mod conn;
pub mod sync;
pub mod watch;

use std::sync::Arc;
use std::time::Instant;

use futures::future::BoxFuture;
use qd_core::Clock;
use qd_filter::AuthOutcome;
use qd_mail::{MessageView, ParsedMail};
use qd_store::{BatchOutcome, EnqueueOutcome, NewMessage, NewOutboxEntry, Store};
use serde::Serialize;

pub use config::{
    parse_mailbox_url, AfterIngest, Auth, MailboxConfig, Secret, Tls, DEFAULT_PROCESSED_FOLDER,
};
pub use watch::run;

use crate::{Failure, ImportSettings};

/// The keyword set on messages refused for their size, so the after-ingest recovery
/// (which moves everything at or below the checkpoint) leaves them where staff can see
/// them.
pub const REFUSED_KEYWORD: &str = "$QuietdeskRefused";

/// What went wrong talking to a mailbox or storing its mail.
#[derive(Debug, thiserror::Error)]
pub enum ImapError {
    #[error("IMAP configuration: {0}")]
    Config(String),
    #[error("mailbox {mailbox}: cannot connect to {address}: {source}")]
    Connect {
        mailbox: String,
        address: String,
        #[source]
        source: std::io::Error,
    },
    #[error("mailbox {mailbox}: TLS failed: {reason}")]
    Tls { mailbox: String, reason: String },
    #[error("mailbox {mailbox}: authentication failed for user {user}: {reason} (check the user, the secret and the auth method)")]
    Auth {
        mailbox: String,
        user: String,
        reason: String,
    },
    #[error("mailbox {mailbox}: no answer from the server during {during}; the connection is taken as dead")]
    Stalled {
        mailbox: String,
        during: &'static str,
    },
    #[error("mailbox {mailbox}: {reason}")]
    Protocol { mailbox: String, reason: String },
    #[error("mailbox {mailbox}, folder {folder}: {reason}")]
    Folder {
        mailbox: String,
        folder: String,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] qd_store::Error),
    #[error("parse worker failed: {0}")]
    Worker(String),
}

impl ImapError {
    /// Errors that a new connection cannot cure; the continuous mode still retries them,
    /// but slowly.
    pub fn is_permanent(&self) -> bool {
        matches!(self, ImapError::Config(_) | ImapError::Auth { .. })
    }
}

/// An error of the pipeline hook; logged, never fatal to ingestion (the mail is stored).
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

/// What the pipeline keeps of an arrived message for the steps after the commit.
pub struct Arrived {
    /// The parsed message without its bodies ([`ParsedMail::without_bodies`]).
    pub parsed: ParsedMail,
    /// The loop-relevant header fields, read from the raw message.
    pub loop_headers: qd_mail::autoreply::LoopHeaders,
    /// A delivery status notification (a bounce), read when the message comes from a
    /// null sender or a mailer daemon.
    pub bounce: Option<qd_mail::bounce::Bounce>,
    /// Read again in a rescan after a UIDVALIDITY change, and received more than
    /// [`REREAD_ACK_WINDOW`] ago: answered when it first came, or deleted from the store
    /// since (retention, erasure) while it stayed on the server. Never acknowledged.
    pub reread_old: bool,
}

/// Mail a rescan reads again is still acknowledged when it arrived this recently: it may
/// have come between the last pass and the server's change.
pub const REREAD_ACK_WINDOW: chrono::TimeDelta = chrono::TimeDelta::hours(24);

impl Arrived {
    /// What the steps after the store need of a raw message and its parse.
    pub fn of(raw: &[u8], parsed: &ParsedMail) -> Arrived {
        let loop_headers = qd_mail::autoreply::LoopHeaders::from_raw(raw);
        let from_machine = parsed.from.as_ref().is_some_and(|a| {
            let local = a.addr.split('@').next().unwrap_or_default();
            local.eq_ignore_ascii_case("mailer-daemon") || local.eq_ignore_ascii_case("postmaster")
        });
        let null_sender = loop_headers
            .return_path
            .as_deref()
            .is_some_and(qd_mail::autoreply::is_null_path);
        // Only mail that can be a bounce is parsed for one (a second parse).
        let bounce = if from_machine || null_sender {
            qd_mail::bounce::parse_bounce(raw)
        } else {
            None
        };
        Arrived {
            parsed: parsed.without_bodies(),
            loop_headers,
            bounce,
            reread_old: false,
        }
    }
}

/// One committed batch, as the hook sees it.
pub struct StoredBatch<'a> {
    pub mailbox: &'a str,
    pub folder: &'a str,
    pub team: Option<&'a str>,
    /// Indexes in `outcome.stored` and `outcome.duplicates` point into `messages` and
    /// `arrived` (what was stored, with the verdicts `before_store` set).
    pub outcome: &'a BatchOutcome,
    pub messages: &'a [NewMessage],
    pub arrived: &'a [Arrived],
    /// What became of the acknowledgements [`AfterStore::plan_acks`] planned, in order
    /// (written in the batch's transaction).
    pub acks: &'a [EnqueueOutcome],
}

/// The seam where the pipeline steps around the store plug in: the filter (before
/// store) and the acknowledgements (in the batch's transaction). See [`crate::steps`].
pub trait AfterStore: Send + Sync {
    /// Whether [`AfterStore::before_store`] is to run. Building the view it receives
    /// costs about two thirds of a parse, so a hook that does nothing before the store
    /// says no.
    fn runs_before_store(&self) -> bool {
        true
    }

    /// Runs on the async side for each fetched batch before it is parsed: sender
    /// authentication against DNS (SPF, DKIM, DMARC, ARC), one entry per raw message in
    /// order (`None`: not checked). An empty answer checks none.
    fn authenticate<'a>(
        &'a self,
        _raw: &'a [(u32, Vec<u8>)],
    ) -> BoxFuture<'a, Vec<Option<AuthOutcome>>> {
        Box::pin(async { Vec::new() })
    }

    /// Runs on a parse worker for every message before it is stored (when
    /// [`AfterStore::runs_before_store`]), with the filter's view of it (no text; built
    /// by the same parse as `parsed`) and what [`AfterStore::authenticate`] found; may
    /// change what is stored (verdict, quarantine, team, ...).
    fn before_store(
        &self,
        _view: &MessageView,
        _parsed: &ParsedMail,
        _auth: Option<&AuthOutcome>,
        _message: &mut NewMessage,
    ) {
    }

    /// `Some(limit)` when the hook queues acknowledgements: at most `limit` per sender
    /// in 24 hours.
    fn ack_limit(&self) -> Option<u32> {
        None
    }

    /// Runs inside the batch's transaction once its messages are written (so ticket
    /// numbers are known): the acknowledgements to enqueue with them, each with its
    /// sender hash. Must not block: it runs on the writer's path.
    fn plan_acks(
        &self,
        _outcome: &BatchOutcome,
        _messages: &[NewMessage],
        _arrived: &[Arrived],
    ) -> Vec<(NewOutboxEntry, String)> {
        Vec::new()
    }

    /// Runs after the batch committed and before the after-ingest action on the server.
    fn after_store<'a>(&'a self, batch: StoredBatch<'a>) -> BoxFuture<'a, Result<(), HookError>>;
}

/// What one folder pass did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FolderSummary {
    pub mailbox: String,
    pub folder: String,
    /// The checkpoint key.
    pub source: String,
    pub uidvalidity: Option<u32>,
    /// The checkpoint after this pass.
    pub last_uid: Option<u32>,
    /// The UIDVALIDITY changed and the folder was read again from UID 1.
    pub rescanned: bool,
    /// New messages found (`stored + duplicates + forgotten + failed`).
    pub fetched: u64,
    pub stored: u64,
    pub duplicates: u64,
    /// Mail the store deleted before (retention or erasure) read again, e.g. by a rescan
    /// of a folder that keeps its mail: not stored again.
    pub forgotten: u64,
    /// Refused (over the size limit) or unstorable.
    pub failed: u64,
    pub tickets: u64,
    /// Stored messages with at least one parse defect.
    pub defective: u64,
    pub bytes: u64,
    /// Messages moved, flagged or deleted on the server after the commit.
    pub after_applied: u64,
    /// Why the pass stopped early, if it did.
    pub error: Option<String>,
    /// Refused messages with their reasons (at most [`crate::pipeline::MAX_REPORTED`]).
    pub failures: Vec<Failure>,
}

/// What `ingest --once` did over all mailboxes.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestSummary {
    pub fetched: u64,
    pub stored: u64,
    pub duplicates: u64,
    /// Mail deleted before (retention or erasure) read again, not stored.
    pub forgotten: u64,
    pub failed: u64,
    pub tickets: u64,
    pub defective: u64,
    pub bytes: u64,
    /// Folders whose pass ended with an error (see `folders[].error`).
    pub errors: u64,
    pub seconds: f64,
    /// Fetched messages per second over the whole run.
    pub messages_per_sec: f64,
    /// At most [`crate::pipeline::MAX_REPORTED`] refused messages with their reasons.
    pub failures: Vec<Failure>,
    pub folders: Vec<FolderSummary>,
}

impl IngestSummary {
    fn add(&mut self, f: &FolderSummary) {
        self.fetched += f.fetched;
        self.stored += f.stored;
        self.duplicates += f.duplicates;
        self.forgotten += f.forgotten;
        self.failed += f.failed;
        self.tickets += f.tickets;
        self.defective += f.defective;
        self.bytes += f.bytes;
        if f.error.is_some() {
            self.errors += 1;
        }
        for x in &f.failures {
            if self.failures.len() < crate::pipeline::MAX_REPORTED {
                self.failures.push(x.clone());
            }
        }
    }
}

/// Everything an ingest needs besides the mailboxes.
#[derive(Clone)]
pub struct IngestContext {
    pub store: Store,
    /// Defaults for size limit and batch size, the ticket reference format.
    pub settings: ImportSettings,
    pub clock: Arc<dyn Clock>,
    pub hook: Option<Arc<dyn AfterStore>>,
}

/// Fetches everything new from every folder of every mailbox once, then returns. One
/// failing mailbox (unreachable, wrong password) does not stop the others: its error is
/// in the summary (`errors`, `folders[].error`). Only configuration errors fail the call.
pub async fn ingest_once(
    ctx: &IngestContext,
    mailboxes: &[MailboxConfig],
) -> Result<IngestSummary, ImapError> {
    let started = Instant::now();
    for m in mailboxes {
        m.validate()?;
    }
    let never = tokio_util::sync::CancellationToken::new();
    let mut summary = IngestSummary::default();
    for m in mailboxes {
        let folders = sync::once(ctx, m, &never).await;
        for f in folders {
            summary.add(&f);
            summary.folders.push(f);
        }
    }
    for f in summary.folders.iter() {
        if let Some(e) = &f.error {
            tracing::warn!(mailbox = %f.mailbox, folder = %f.folder, error = %e, "IMAP ingest failed");
        }
    }
    summary.seconds = started.elapsed().as_secs_f64();
    summary.messages_per_sec = if summary.seconds > 0.0 {
        summary.fetched as f64 / summary.seconds
    } else {
        0.0
    };
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `Return-Path: <> (bounce)` was not seen as a null sender (the comment was kept),
    /// so a report from a sender that is not a mailer daemon was never read as a bounce.
    #[test]
    fn a_null_return_path_with_a_comment_is_read_for_a_bounce() {
        let raw = "Return-Path: <> (bounce)\r\n\
From: Delivery notices <notices@relay.example>\r\n\
Subject: Undelivered mail\r\n\
Message-ID: <dsn2@relay.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\
\r\n\
--B\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; relay.example\r\n\
\r\n\
Final-Recipient: rfc822; gone@customer.example\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
\r\n\
--B\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
Message-ID: <qd.5.mno@desk.example>\r\n\
\r\n\
--B--\r\n";
        let arrived = Arrived::of(raw.as_bytes(), &qd_mail::parse(raw.as_bytes()));
        let bounce = arrived.bounce.expect("read as a bounce");
        assert_eq!(bounce.original_message_id, "qd.5.mno@desk.example");
    }
}
