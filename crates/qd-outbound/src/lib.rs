//! The outbound worker: drains the store's outbox over SMTP, and files bounces.
//!
//! [`Worker`] holds the relay's connection settings (STARTTLS, implicit TLS or plain,
//! optional AUTH) from [`SmtpSettings`] and opens one lettre SMTP connection per
//! delivery, the whole of which is bounded in time. [`Worker::drain_once`] claims
//! due outbox entries and sends each as its stored raw bytes with an explicit envelope:
//! success marks the entry sent and records the message on its ticket (`direction =
//! out`), a permanent `5xx` or an unusable address fails it at once, anything else
//! (connection refused, timeout, `4xx`) retries with exponential backoff and jitter
//! until `max_attempts`. Recipients are answered one by one: the message goes to those
//! the relay takes, one it refuses for good is named in the entry, and one it defers is
//! tried again alone (the copy on the ticket is filed when the first recipient has it).
//! [`Worker::run`] repeats that until shutdown. [`handle_bounce`] ties a delivery status
//! notification to the outbox entry it reports on: the entry is marked failed and the
//! DSN is filed on the entry's ticket.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lettre::transport::smtp::authentication::{Credentials, DEFAULT_MECHANISMS};
use lettre::transport::smtp::client::{AsyncSmtpConnection, Certificate, Tls, TlsParameters};
use lettre::transport::smtp::commands::{Data, Mail, Rcpt};
use lettre::transport::smtp::extension::{ClientId, Extension, MailBodyParameter, MailParameter};
use qd_core::{Clock, Direction};
use qd_mail::bounce::{parse_bounce, Bounce};
use qd_store::{NewAttachment, NewMessage, OutboxEntry, PreparedBlob, Store};
use serde::{Deserialize, Serialize};

/// What went wrong in the worker (delivery failures are outcomes, not errors).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] qd_store::Error),
    #[error("SMTP settings: {0}")]
    Config(String),
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Transport security of the SMTP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text (only for a relay on localhost or a trusted network).
    None,
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    #[default]
    StartTls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// The `[smtp]` section of the configuration file.
#[derive(Clone, Deserialize, Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SmtpSettings {
    /// SMTP relay host name (also the name checked against its certificate).
    pub host: String,
    #[serde(default = "default_port")]
    pub port: u16,
    /// `none`, `starttls` or `tls`.
    #[serde(default)]
    pub tls: TlsMode,
    /// AUTH user; no AUTH when absent.
    #[serde(default)]
    pub username: Option<String>,
    /// AUTH password; set by the binary from the environment, never from the file.
    #[serde(skip)]
    pub password: Option<String>,
    /// File holding the AUTH password (first line), e.g. a Docker secret.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Extra CA certificate (PEM) to trust, for a relay with a private CA.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Longest time one delivery may take, seconds: from connecting to the relay's answer
    /// to the message, every command included. Capped at half of `lease_secs` (see
    /// [`SmtpSettings::delivery_limit`]); a delivery that runs out is retried later.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// Default From address of our mail.
    pub from: String,
    /// Domain of our Message-IDs and the EHLO name.
    pub our_domain: String,
    /// Attempts before an entry fails for good.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
    /// First retry delay, seconds; doubles per attempt.
    #[serde(default = "default_backoff_base_secs")]
    pub backoff_base_secs: u64,
    /// Longest retry delay, seconds.
    #[serde(default = "default_backoff_max_secs")]
    pub backoff_max_secs: u64,
    /// Entries claimed per round.
    #[serde(default = "default_batch")]
    pub batch: u32,
    /// How often [`Worker::run`] looks for due entries, seconds.
    #[serde(default = "default_poll_secs")]
    pub poll_secs: u64,
    /// How long a claim lasts before another worker may take the entry over, seconds.
    #[serde(default = "default_lease_secs")]
    pub lease_secs: u64,
}

impl std::fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("password_file", &self.password_file)
            .field("our_domain", &self.our_domain)
            .field("max_attempts", &self.max_attempts)
            .finish_non_exhaustive()
    }
}

fn default_port() -> u16 {
    587
}
fn default_timeout_secs() -> u64 {
    30
}
/// With the default backoff (60 s doubling, at most 6 h, ±20 %), 28 attempts span about
/// 4.9 days: RFC 5321 4.5.4.1 wants a sender to keep trying for 4–5 days, so a relay
/// outage of a few hours fails nothing.
fn default_max_attempts() -> u32 {
    28
}
fn default_backoff_base_secs() -> u64 {
    60
}
fn default_backoff_max_secs() -> u64 {
    6 * 3600
}
fn default_batch() -> u32 {
    20
}
fn default_poll_secs() -> u64 {
    5
}
fn default_lease_secs() -> u64 {
    300
}

impl SmtpSettings {
    /// Settings for a relay at `host:port` with every other key at its default.
    pub fn new(host: &str, port: u16, from: &str, our_domain: &str) -> SmtpSettings {
        SmtpSettings {
            host: host.to_string(),
            port,
            tls: TlsMode::default(),
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            timeout_secs: default_timeout_secs(),
            from: from.to_string(),
            our_domain: our_domain.to_string(),
            max_attempts: default_max_attempts(),
            backoff_base_secs: default_backoff_base_secs(),
            backoff_max_secs: default_backoff_max_secs(),
            batch: default_batch(),
            poll_secs: default_poll_secs(),
            lease_secs: default_lease_secs(),
        }
    }

    /// How long one delivery may take: `timeout_secs` (at least 1 s), but never more
    /// than half a lease, else no claim would ever be long enough to send within.
    pub fn delivery_limit(&self) -> Duration {
        let lease = Duration::from_secs(self.lease_secs.max(1));
        Duration::from_secs(self.timeout_secs.max(1)).min(lease / 2)
    }

    /// The delay before attempt `attempts + 1`: `base * 2^(attempts-1)`, capped at
    /// `max`, then spread by ±20% so that entries that failed together do not retry
    /// together.
    pub fn backoff(&self, attempts: u32) -> Duration {
        let base = self.backoff_base_secs.max(1) as f64;
        let exp = attempts.saturating_sub(1).min(30) as i32;
        let secs = (base * 2f64.powi(exp)).min(self.backoff_max_secs.max(1) as f64);
        let jitter: f64 = 0.8 + rand::random::<f64>() * 0.4;
        Duration::from_secs_f64(secs * jitter)
    }
}

/// Installs rustls' aws-lc-rs crypto provider for the process. rustls panics when two
/// providers are compiled in (aws-lc-rs and ring are, through sqlx and mail-auth) and
/// none is chosen; a provider installed earlier is fine.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// What one [`Worker::drain_once`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Summary {
    pub claimed: u64,
    pub sent: u64,
    /// Put back for a later attempt.
    pub retried: u64,
    /// Given up (permanent refusal, bad address, or out of attempts).
    pub failed: u64,
    /// Outcomes not written because another worker had re-claimed the entry (this
    /// one's lease ran out) or it was erased meanwhile.
    pub lost_claims: u64,
}

#[derive(Debug, PartialEq, Eq)]
enum Delivery {
    /// Taken for every recipient the relay did not refuse for good; `refused` names the
    /// ones it did, with its replies.
    Sent {
        refused: Option<String>,
    },
    /// Some recipients deferred (a `4xx` to their `RCPT TO`): they wait for a retry,
    /// the ones refused for good are dropped. `delivered`: the relay took the message
    /// for at least one other recipient. `note` says who took it and who did not.
    Deferred {
        remaining: Vec<String>,
        delivered: bool,
        note: String,
    },
    Permanent(String),
    Transient(String),
}

/// What the relay answered to one delivery, recipient by recipient.
#[derive(Debug, Default, PartialEq, Eq)]
struct Answer {
    /// The recipients it took the message for.
    accepted: Vec<String>,
    /// Refused for a while (`4xx`), with the reply.
    deferred: Vec<(String, String)>,
    /// Refused for good (`5xx`), with the reply.
    refused: Vec<(String, String)>,
}

impl Answer {
    /// The outcome for the entry. A relay that refuses one recipient of several (a
    /// mistyped Cc) still delivers to the others, as every MTA does; only the
    /// recipients it deferred are tried again.
    fn outcome(self) -> Delivery {
        let listed = |rs: &[(String, String)]| {
            rs.iter()
                .map(|(r, reply)| format!("{r}: {reply}"))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let refused = (!self.refused.is_empty()).then(|| listed(&self.refused));
        if self.deferred.is_empty() {
            return match (self.accepted.is_empty(), refused) {
                (false, refused) => Delivery::Sent {
                    refused: refused.map(|r| format!("refused for good: {r}")),
                },
                (true, Some(r)) => Delivery::Permanent(r),
                (true, None) => Delivery::Permanent("no recipients".to_string()),
            };
        }
        let deferred = listed(&self.deferred);
        if self.accepted.is_empty() && refused.is_none() {
            return Delivery::Transient(deferred);
        }
        let mut note = Vec::new();
        if !self.accepted.is_empty() {
            note.push(format!("delivered to {}", self.accepted.join(", ")));
        }
        if let Some(r) = refused {
            note.push(format!("refused for good: {r}"));
        }
        note.push(format!("deferred: {deferred}"));
        Delivery::Deferred {
            remaining: self.deferred.into_iter().map(|(r, _)| r).collect(),
            delivered: !self.accepted.is_empty(),
            note: note.join("; "),
        }
    }
}

/// The outbox worker.
pub struct Worker {
    settings: SmtpSettings,
    tls: Tls,
    hello: ClientId,
    credentials: Option<Credentials>,
}

impl Worker {
    pub fn new(mut settings: SmtpSettings) -> Result<Worker, Error> {
        install_crypto_provider();
        if settings.password.is_none() {
            if let Some(path) = &settings.password_file {
                let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
                    path: path.clone(),
                    source,
                })?;
                settings.password = Some(text.lines().next().unwrap_or("").to_string());
            }
        }
        let tls_params = || -> Result<TlsParameters, Error> {
            let mut b = TlsParameters::builder(settings.host.clone());
            if let Some(path) = &settings.ca_file {
                let pem = std::fs::read(path).map_err(|source| Error::Read {
                    path: path.clone(),
                    source,
                })?;
                let cert = Certificate::from_pem(&pem)
                    .map_err(|e| Error::Config(format!("ca_file {}: {e}", path.display())))?;
                b = b.add_root_certificate(cert);
            }
            b.build_rustls()
                .map_err(|e| Error::Config(format!("TLS for {}: {e}", settings.host)))
        };
        let tls = match settings.tls {
            TlsMode::None => Tls::None,
            TlsMode::StartTls => Tls::Required(tls_params()?),
            TlsMode::Tls => Tls::Wrapper(tls_params()?),
        };
        let credentials = settings.username.as_ref().map(|user| {
            Credentials::new(user.clone(), settings.password.clone().unwrap_or_default())
        });
        Ok(Worker {
            tls,
            hello: ClientId::Domain(settings.our_domain.clone()),
            credentials,
            settings,
        })
    }

    pub fn settings(&self) -> &SmtpSettings {
        &self.settings
    }

    /// Sends every entry that is due at `now`, until none is left; entries put back for
    /// later are not retried in the same call. (The clock stands still: see
    /// [`Worker::drain`].)
    pub async fn drain_once(&self, store: &Store, now: DateTime<Utc>) -> Result<Summary, Error> {
        self.drain(store, &qd_core::FixedClock(now)).await
    }

    /// Sends every entry that is due when the drain starts, until none is left (what it
    /// puts back for later waits for a later drain). The clock is read for each claim
    /// and each outcome, so the leases of a long drain start when their claims do. An outcome is written only while this worker's claim holds (a worker that
    /// re-claimed an entry after the lease ran out decides it), except "sent", which is
    /// true whoever holds the entry. A store error that is not about one entry (the
    /// database unavailable) ends the drain; claimed entries then wait for their lease.
    pub async fn drain(&self, store: &Store, clock: &dyn Clock) -> Result<Summary, Error> {
        self.drain_until(store, clock, &AtomicBool::new(false))
            .await
    }

    /// [`Worker::drain`], ending before the next entry once `stop` is set: a shutdown
    /// waits for the send in progress (bounded by the delivery limit), not for every
    /// entry that is due. Claimed entries not tried wait for their lease to run out.
    async fn drain_until(
        &self,
        store: &Store,
        clock: &dyn Clock,
        stop: &AtomicBool,
    ) -> Result<Summary, Error> {
        let mut summary = Summary::default();
        let lease = Duration::from_secs(self.settings.lease_secs.max(1));
        // How long a send may take: `deliver` gives up after this.
        let send_time = chrono::TimeDelta::from_std(self.settings.delivery_limit())
            .unwrap_or(chrono::TimeDelta::seconds(30));
        let margin = chrono::TimeDelta::from_std(lease / 4)
            .unwrap_or(CLAIM_MARGIN)
            .min(CLAIM_MARGIN);
        let start = clock.now();
        loop {
            let batch = u64::from(self.settings.batch.max(1));
            let claimed = store
                .outbox_claim_due(start, clock.now(), batch, lease)
                .await?;
            if claimed.is_empty() {
                return Ok(summary);
            }
            let mut claimed = claimed.into_iter();
            while let Some(entry) = claimed.next() {
                if stop.load(Ordering::Acquire) {
                    // Handed back, so the next start sends them at once rather than
                    // after their lease.
                    let now = clock.now();
                    for e in std::iter::once(entry).chain(claimed) {
                        store.outbox_release_claim(e.id, e.attempts, now).await?;
                    }
                    return Ok(summary);
                }
                summary.claimed += 1;
                // The claim covers the whole batch: slow sends before this one may have
                // used most of it. A send must end (delivery limit) before the claim does,
                // or another worker could take the entry and send it as well; a claim
                // too short for that is handed back unused.
                let now = clock.now();
                // A margin for recording the outcome, and for clocks that differ between
                // two workers' machines (claims are written with the claimer's clock).
                if entry
                    .claimed_until
                    .is_some_and(|until| until <= now + send_time + margin)
                {
                    let released = store
                        .outbox_release_claim(entry.id, entry.attempts, now)
                        .await?;
                    tracing::warn!(
                        outbox = entry.id,
                        released,
                        "claim too short to send within; handed back for the next drain"
                    );
                    summary.lost_claims += 1;
                    continue;
                }
                let delivery = self.deliver(&entry).await;
                let now = clock.now();
                let out_of_attempts = entry.attempts >= self.settings.max_attempts;
                let held = match delivery {
                    Delivery::Sent { refused } => {
                        record_sent_within_claim(store, &entry, now, refused.as_deref()).await?;
                        tracing::info!(outbox = entry.id, kind = entry.kind.as_str(), "sent");
                        summary.sent += 1;
                        true
                    }
                    Delivery::Permanent(err) => {
                        self.give_up(store, &entry, &err, false, now, &mut summary)
                            .await?
                    }
                    Delivery::Transient(err) if out_of_attempts => {
                        let err = format!("gave up after {} attempts: {err}", entry.attempts);
                        self.give_up(store, &entry, &err, false, now, &mut summary)
                            .await?
                    }
                    Delivery::Deferred {
                        delivered, note, ..
                    } if out_of_attempts => {
                        let err = format!("gave up after {} attempts: {note}", entry.attempts);
                        self.give_up(store, &entry, &err, delivered, now, &mut summary)
                            .await?
                    }
                    Delivery::Transient(err) => {
                        let next = self.next_attempt(&entry, now);
                        let held = store
                            .outbox_retry_later(entry.id, entry.attempts, &err, next)
                            .await?;
                        if held {
                            tracing::info!(
                                outbox = entry.id,
                                attempts = entry.attempts,
                                "delivery deferred"
                            );
                            summary.retried += 1;
                        }
                        held
                    }
                    Delivery::Deferred {
                        remaining,
                        delivered,
                        note,
                    } => {
                        let next = self.next_attempt(&entry, now);
                        let held = retry_for_within_claim(
                            store, &entry, &remaining, &note, next, delivered, now,
                        )
                        .await?;
                        if held {
                            tracing::info!(
                                outbox = entry.id,
                                attempts = entry.attempts,
                                delivered,
                                deferred = remaining.len(),
                                "delivery deferred for some recipients"
                            );
                            summary.retried += 1;
                        }
                        held
                    }
                };
                if !held {
                    tracing::warn!(
                        outbox = entry.id,
                        attempts = entry.attempts,
                        "claim lost while sending (lease ran out or the entry was erased); \
                         outcome left to the current holder"
                    );
                    summary.lost_claims += 1;
                }
            }
        }
    }

    /// Drains the outbox every `poll_secs` until `shutdown` completes. A store error is
    /// logged and the loop goes on (the database may be restarting). When shutdown comes
    /// during a drain, the send in progress finishes (bounded by
    /// [`SmtpSettings::delivery_limit`]) and no further entry is tried.
    pub async fn run(
        &self,
        store: &Store,
        clock: &dyn Clock,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), Error> {
        tokio::pin!(shutdown);
        let poll = Duration::from_secs(self.settings.poll_secs.max(1));
        let mut last_prune: Option<DateTime<Utc>> = None;
        loop {
            let stop = AtomicBool::new(false);
            let drain = self.drain_until(store, clock, &stop);
            tokio::pin!(drain);
            let (result, stopping) = tokio::select! {
                r = &mut drain => (r, false),
                _ = &mut shutdown => {
                    stop.store(true, Ordering::Release);
                    (drain.await, true)
                }
            };
            if let Err(e) = result {
                tracing::warn!(error = %e, "outbox round failed");
            }
            if stopping {
                return Ok(());
            }
            let now = clock.now();
            if last_prune.is_none_or(|t| now - t > chrono::TimeDelta::hours(1)) {
                // The acknowledgement log only matters for a day.
                if let Err(e) = store.prune_ack_log(now - chrono::TimeDelta::days(2)).await {
                    tracing::warn!(error = %e, "pruning the acknowledgement log failed");
                }
                last_prune = Some(now);
            }
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// When attempt `entry.attempts + 1` is due.
    fn next_attempt(&self, entry: &OutboxEntry, now: DateTime<Utc>) -> DateTime<Utc> {
        let delay = self.settings.backoff(entry.attempts);
        now + chrono::TimeDelta::from_std(delay).unwrap_or(chrono::TimeDelta::hours(1))
    }

    /// Ends an entry that will not be delivered (further). One that some recipient
    /// took, at this attempt (`delivered`) or an earlier one, is sent, with `err` as its
    /// note: that recipient has it, and its copy is (or now goes) on the ticket. Any
    /// other is failed. Whether the claim held.
    async fn give_up(
        &self,
        store: &Store,
        entry: &OutboxEntry,
        err: &str,
        delivered: bool,
        now: DateTime<Utc>,
        summary: &mut Summary,
    ) -> Result<bool, Error> {
        if delivered || entry.sent_message_db_id.is_some() {
            record_sent_within_claim(store, entry, now, Some(err)).await?;
            tracing::warn!(outbox = entry.id, "not delivered to every recipient");
            summary.sent += 1;
            return Ok(true);
        }
        let held = store
            .outbox_mark_failed(entry.id, entry.attempts, err, now)
            .await?;
        if held {
            tracing::warn!(outbox = entry.id, attempts = entry.attempts, "gave up");
            summary.failed += 1;
        }
        Ok(held)
    }

    async fn deliver(&self, entry: &OutboxEntry) -> Delivery {
        let Some(raw) = entry.raw.as_deref() else {
            return Delivery::Permanent("no message bytes to send".to_string());
        };
        let from = if entry.mail_from.is_empty() {
            None
        } else {
            match entry.mail_from.parse::<lettre::Address>() {
                Ok(a) => Some(a),
                Err(e) => return Delivery::Permanent(format!("bad envelope sender: {e}")),
            }
        };
        let mut to = Vec::with_capacity(entry.rcpt_to.len());
        for r in &entry.rcpt_to {
            match r.parse::<lettre::Address>() {
                Ok(a) => to.push((a, r.as_str())),
                Err(e) => return Delivery::Permanent(format!("bad recipient address: {e}")),
            }
        }
        if to.is_empty() {
            return Delivery::Permanent("no recipients".to_string());
        }
        // lettre's timeout covers only the TCP connect: a relay that greets and then
        // falls silent would hold this send (and the worker, and shutdown) forever, and
        // another instance would send the entry again once the lease ran out.
        let limit = self.settings.delivery_limit();
        match tokio::time::timeout(limit, self.send(from, &to, raw)).await {
            Ok(Ok(answer)) => answer.outcome(),
            Ok(Err(SendError::Smtp(e))) => classify(
                e.is_permanent(),
                e.status().map(|c| c.to_string()).as_deref(),
                e.to_string(),
            ),
            Ok(Err(SendError::Unsupported(e))) => Delivery::Transient(e),
            // If the relay had already taken the message and only its answer was late,
            // the retry sends it twice; SMTP cannot tell (RFC 1047), and a late duplicate
            // is better than a lost reply.
            Err(_) => Delivery::Transient(format!(
                "the relay did not finish the delivery within {} s (timed out)",
                limit.as_secs()
            )),
        }
    }

    /// One delivery on a connection of its own. Not lettre's pool: a send cut short by
    /// the time limit leaves its connection mid-transaction, and the pool would take it
    /// back as healthy, so the next send would read the stale replies of this one (or
    /// wait on the same silent relay). Here the connection is dropped with the future.
    ///
    /// The transaction is lettre's `send`, one command at a time, so that a recipient
    /// the relay refuses does not end it: the message goes to the recipients it took.
    async fn send(
        &self,
        from: Option<lettre::Address>,
        to: &[(lettre::Address, &str)],
        raw: &[u8],
    ) -> Result<Answer, SendError> {
        let s = &self.settings;
        let wrapper = match &self.tls {
            Tls::Wrapper(p) => Some(p.clone()),
            _ => None,
        };
        let mut conn = AsyncSmtpConnection::connect_tokio1(
            (s.host.as_str(), s.port),
            Some(s.delivery_limit()),
            &self.hello,
            wrapper,
            None,
        )
        .await?;
        if let Tls::Required(p) = &self.tls {
            conn.starttls(p.clone(), &self.hello).await?;
        }
        if let Some(credentials) = &self.credentials {
            conn.auth(DEFAULT_MECHANISMS, credentials).await?;
        }
        // RFC 6531 and RFC 6152, as lettre's own `send` checks them.
        let mut options = Vec::new();
        let non_ascii = from
            .iter()
            .chain(to.iter().map(|(a, _)| a))
            .any(|a: &lettre::Address| !AsRef::<str>::as_ref(a).is_ascii());
        if non_ascii {
            if !conn.server_info().supports_feature(Extension::SmtpUtfEight) {
                return Err(SendError::Unsupported(
                    "the envelope has non-ASCII addresses and the relay does not offer \
                     SMTPUTF8"
                        .to_string(),
                ));
            }
            options.push(MailParameter::SmtpUtfEight);
        }
        if !raw.is_ascii() {
            if !conn.server_info().supports_feature(Extension::EightBitMime) {
                return Err(SendError::Unsupported(
                    "the message has 8-bit content and the relay does not offer 8BITMIME"
                        .to_string(),
                ));
            }
            options.push(MailParameter::Body(MailBodyParameter::EightBitMime));
        }
        let mut answer = Answer::default();
        let result = async {
            conn.command(Mail::new(from, options)).await?;
            for (address, text) in to {
                match conn.command(Rcpt::new(address.clone(), Vec::new())).await {
                    Ok(_) => answer.accepted.push(text.to_string()),
                    // A refusal of *us* (authentication) is about every message.
                    Err(e) if e.status().is_some() && !refuses_us(&e) => {
                        let reply = (text.to_string(), e.to_string());
                        if e.is_permanent() {
                            answer.refused.push(reply);
                        } else {
                            answer.deferred.push(reply);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            if !answer.accepted.is_empty() {
                conn.command(Data).await?;
                conn.message(raw).await?;
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            conn.abort().await;
            return Err(e.into());
        }
        // The message is taken (or no one would take it); saying goodbye must not hold
        // up the drain, nor turn a delivery into a failure.
        tokio::spawn(async move {
            let _ = tokio::time::timeout(QUIT_LIMIT, conn.quit()).await;
        });
        Ok(answer)
    }
}

/// Why a delivery did not get as far as the relay's answers.
#[derive(Debug, thiserror::Error)]
enum SendError {
    #[error(transparent)]
    Smtp(#[from] lettre::transport::smtp::Error),
    /// The message needs an extension the relay does not offer.
    #[error("{0}")]
    Unsupported(String),
}

/// RFC 4954's refusals of the client rather than the message (see [`classify`]).
fn refuses_us(e: &lettre::transport::smtp::Error) -> bool {
    is_refusal_of_us(e.status().map(|c| c.to_string()).as_deref())
}

/// Whether a reply code is 530 (authentication required), 534 (mechanism too weak),
/// 535 (credentials invalid) or 538 (encryption required).
fn is_refusal_of_us(code: Option<&str>) -> bool {
    matches!(code, Some("530" | "534" | "535" | "538"))
}

/// How long a QUIT after a delivery may wait for the relay's answer.
const QUIT_LIMIT: Duration = Duration::from_secs(5);

/// What an SMTP error means for the entry. A 5xx reply is a permanent refusal of the
/// message, except the replies that refuse *us* (RFC 4954: 530 authentication
/// required, 534 mechanism too weak, 535 credentials invalid, 538 encryption required):
/// after a password change every queued message would otherwise fail at once. Those are
/// retried, and the error says what to fix.
fn classify(permanent: bool, code: Option<&str>, text: String) -> Delivery {
    match code {
        _ if is_refusal_of_us(code) => Delivery::Transient(format!(
            "the relay refused our login ({text}); check smtp.username and the password"
        )),
        _ if permanent => Delivery::Permanent(text),
        _ => Delivery::Transient(text),
    }
}

/// Builds a worker for `settings` and drains once (for `ingest --once` and tests).
pub async fn drain_once(
    store: &Store,
    settings: &SmtpSettings,
    now: DateTime<Utc>,
) -> Result<Summary, Error> {
    Worker::new(settings.clone())?.drain_once(store, now).await
}

/// [`record_sent`], tried again while the database is unavailable (see [`within_claim`]).
async fn record_sent_within_claim(
    store: &Store,
    entry: &OutboxEntry,
    now: DateTime<Utc>,
    note: Option<&str>,
) -> Result<(), Error> {
    within_claim(entry, now, |at| record_sent(store, entry, at, note)).await
}

/// [`Store::outbox_retry_for`] after a delivery that some recipients deferred, with the
/// sent copy when some recipient took it, tried again while the database is unavailable
/// (see [`within_claim`]). When the copy cannot be filed (anything but an unavailable
/// database), the entry still waits for the deferred recipients only; the copy is then
/// filed when they take it. Whether the claim held.
async fn retry_for_within_claim(
    store: &Store,
    entry: &OutboxEntry,
    remaining: &[String],
    note: &str,
    next: DateTime<Utc>,
    delivered: bool,
    now: DateTime<Utc>,
) -> Result<bool, Error> {
    within_claim(entry, now, |at| async move {
        let record = || {
            entry
                .raw
                .as_deref()
                .filter(|_| delivered)
                .map(|raw| sent_record(raw, at))
        };
        let retry = |record| {
            store.outbox_retry_for(entry.id, entry.attempts, remaining, note, next, record, at)
        };
        match retry(record()).await {
            Err(e) if delivered && !e.is_unavailable() => {
                tracing::warn!(
                    outbox = entry.id,
                    error = %e,
                    "delivered to some recipients, but its copy could not be filed on the ticket"
                );
                Ok(retry(None).await?)
            }
            other => Ok(other?),
        }
    })
    .await
}

/// Runs `step` (which records what the relay did), and again while the database is
/// unavailable (a restart, a failover), for as long as the entry's claim lasts, less a
/// margin: the relay has the mail, and an entry left `sending` is claimed and sent again
/// once its lease runs out. `step` gets the time it runs at.
async fn within_claim<T, F, Fut>(
    entry: &OutboxEntry,
    now: DateTime<Utc>,
    mut step: F,
) -> Result<T, Error>
where
    F: FnMut(DateTime<Utc>) -> Fut,
    Fut: Future<Output = Result<T, Error>>,
{
    const MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(10);
    let budget = entry
        .claimed_until
        .map(|until| until - now - MARGIN)
        .and_then(|left| left.to_std().ok())
        .unwrap_or_default();
    let deadline = std::time::Instant::now() + budget;
    let mut pause = Duration::from_millis(250);
    let mut at = now;
    loop {
        match step(at).await {
            Err(Error::Store(e))
                if e.is_unavailable() && std::time::Instant::now() + pause < deadline =>
            {
                tracing::warn!(
                    outbox = entry.id,
                    error = %e,
                    retry_in_ms = pause.as_millis() as u64,
                    "sent, but the database is unavailable; recording it again"
                );
                tokio::time::sleep(pause).await;
                at += chrono::TimeDelta::from_std(pause).unwrap_or_default();
                pause = (pause * 2).min(Duration::from_secs(15));
            }
            other => return other,
        }
    }
}

/// Time a claim must still have beyond the delivery limit for a send to start; a quarter
/// of the lease at most (the delivery limit is half of it at most).
const CLAIM_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(30);

/// Marks a sent entry sent, with its copy filed on the ticket. When the copy cannot be
/// filed (anything but an unavailable database), the entry is still marked sent, its
/// raw bytes kept in the outbox: otherwise it would be sent again at every lease.
async fn record_sent(
    store: &Store,
    entry: &OutboxEntry,
    now: DateTime<Utc>,
    note: Option<&str>,
) -> Result<(), Error> {
    let record = || entry.raw.as_deref().map(|raw| sent_record(raw, now));
    let has_record = entry.raw.is_some();
    let mut result = store.outbox_mark_sent(entry.id, now, record(), note).await;
    if matches!(&result, Err(e) if has_record && !e.is_unavailable()) {
        // Once more: on PostgreSQL a serialization failure or deadlock passes.
        result = store.outbox_mark_sent(entry.id, now, record(), note).await;
    }
    match result {
        Ok(_) => Ok(()),
        Err(e) if has_record && !e.is_unavailable() => {
            tracing::warn!(
                outbox = entry.id,
                error = %e,
                "sent, but its copy could not be filed on the ticket (kept in the outbox)"
            );
            store.outbox_mark_sent(entry.id, now, None, note).await?;
            Ok(())
        }
        Err(e) => Err(e.into()),
    }
}

/// The record of a sent message on its ticket.
fn sent_record(raw: &[u8], now: DateTime<Utc>) -> NewMessage {
    let mut m = to_new_message(raw, now, Direction::Out);
    m.source = Some("outbox".to_string());
    m
}

fn to_new_message(raw: &[u8], now: DateTime<Utc>, direction: Direction) -> NewMessage {
    let parsed = qd_mail::parse(raw);
    let display = |a: &qd_mail::Address| match &a.name {
        Some(n) => format!("{n} <{}>", a.addr),
        None => a.addr.clone(),
    };
    NewMessage {
        direction,
        message_id: parsed.message_id.clone(),
        in_reply_to: parsed.in_reply_to.clone(),
        references: parsed.references.clone(),
        from_addr: parsed.from.as_ref().map(|a| a.addr.clone()),
        from_name: parsed.from.as_ref().and_then(|a| a.name.clone()),
        to: parsed.to.iter().map(display).collect(),
        cc: parsed.cc.iter().map(display).collect(),
        date: parsed.date,
        received_at: now,
        subject: parsed.subject.clone().unwrap_or_default(),
        body_text: parsed.text,
        body_html: parsed.html,
        size: parsed.size as i64,
        content_hash: parsed.content_hash,
        attachments: parsed
            .attachments
            .into_iter()
            .map(|a| NewAttachment {
                filename: a.filename,
                content_type: a.content_type,
                size: a.size as i64,
                digest: a.sha256,
                quarantined: false,
            })
            .collect(),
        defects: parsed
            .defects
            .iter()
            .map(|d| d.as_str().to_string())
            .collect(),
        source: None,
        source_position: None,
        blob: PreparedBlob::prepare(raw).ok(),
        team: None,
        verdict: None,
        reports_failure: None,
    }
}

/// What [`handle_bounce`] did with a delivery status notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BounceOutcome {
    /// A permanent failure of outbox entry `outbox_id`: the entry is failed and the DSN
    /// filed on its ticket (`message_db_id`, `None` when the entry has no ticket or the
    /// DSN was stored before).
    Failed {
        outbox_id: i64,
        ticket_id: Option<i64>,
        message_db_id: Option<i64>,
        bounce: Bounce,
    },
    /// A delay warning (`Action: delayed`) for entry `outbox_id`: filed on the ticket,
    /// the entry keeps its state.
    Delayed {
        outbox_id: i64,
        ticket_id: Option<i64>,
        message_db_id: Option<i64>,
        bounce: Bounce,
    },
    /// A bounce of a message the outbox does not know (sent by someone else): the caller
    /// ingests it as ordinary mail.
    Unmatched(Bounce),
}

/// Handles a message that may be a bounce of our mail. `Ok(None)`: not a bounce, ingest
/// it as usual. The DSN's In-Reply-To is set to the bounced message's id, so that it
/// also threads to the sent copy if it is ever ingested again.
pub async fn handle_bounce(
    store: &Store,
    raw: &[u8],
    now: DateTime<Utc>,
) -> Result<Option<BounceOutcome>, Error> {
    let Some(bounce) = parse_bounce(raw) else {
        return Ok(None);
    };
    let Some(entry) = store
        .outbox_find_by_message_id(&bounce.original_message_id)
        .await?
    else {
        return Ok(Some(BounceOutcome::Unmatched(bounce)));
    };
    let mut dsn = to_new_message(raw, now, Direction::In);
    if dsn.in_reply_to.is_empty() {
        dsn.in_reply_to.push(entry.message_id.clone());
    }
    dsn.source = Some("bounce".to_string());
    if bounce.is_permanent_failure() {
        let message_db_id = store
            .outbox_record_bounce(entry.id, &bounce.summary(), Some(dsn), now)
            .await?;
        tracing::info!(outbox = entry.id, status = ?bounce.status, "bounce recorded");
        Ok(Some(BounceOutcome::Failed {
            outbox_id: entry.id,
            ticket_id: entry.ticket_id,
            message_db_id,
            bounce,
        }))
    } else {
        let message_db_id = match entry.ticket_id {
            Some(t) => Some(store.store_on_ticket(t, dsn, now).await?),
            None => None,
        };
        Ok(Some(BounceOutcome::Delayed {
            outbox_id: entry.id,
            ticket_id: entry.ticket_id,
            message_db_id,
            bounce,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_login_is_retried_not_a_refused_message() {
        let t = || "535 5.7.8 authentication failed".to_string();
        assert!(matches!(
            classify(true, Some("535"), t()),
            Delivery::Transient(e) if e.contains("check smtp.username")
        ));
        assert_eq!(
            classify(true, Some("550"), "550 no such user".into()),
            Delivery::Permanent("550 no such user".into())
        );
        assert_eq!(
            classify(false, Some("451"), "451 try later".into()),
            Delivery::Transient("451 try later".into())
        );
    }

    #[test]
    fn recipients_the_relay_did_not_take_are_named_and_only_the_deferred_wait() {
        let reply = |r: &str, text: &str| (r.to_string(), text.to_string());
        let all_taken = Answer {
            accepted: vec!["a@x".into(), "b@x".into()],
            ..Answer::default()
        };
        assert_eq!(all_taken.outcome(), Delivery::Sent { refused: None });
        let one_refused = Answer {
            accepted: vec!["a@x".into()],
            refused: vec![reply("b@x", "550 no such user")],
            ..Answer::default()
        };
        assert!(matches!(
            one_refused.outcome(),
            Delivery::Sent { refused: Some(n) } if n.contains("b@x: 550 no such user") && !n.contains("a@x")
        ));
        let all_refused = Answer {
            refused: vec![reply("a@x", "550 no"), reply("b@x", "553 bad")],
            ..Answer::default()
        };
        assert_eq!(
            all_refused.outcome(),
            Delivery::Permanent("a@x: 550 no; b@x: 553 bad".into())
        );
        let all_deferred = Answer {
            deferred: vec![reply("a@x", "452 full")],
            ..Answer::default()
        };
        assert_eq!(
            all_deferred.outcome(),
            Delivery::Transient("a@x: 452 full".into())
        );
        let mixed = Answer {
            accepted: vec![],
            deferred: vec![reply("a@x", "452 full")],
            refused: vec![reply("b@x", "550 no")],
        };
        match mixed.outcome() {
            Delivery::Deferred {
                remaining,
                delivered,
                note,
            } => {
                assert_eq!(remaining, vec!["a@x"]);
                assert!(!delivered);
                assert!(note.contains("b@x: 550 no") && note.contains("a@x: 452 full"));
            }
            other => panic!("{other:?}"),
        }
    }

    /// The default retries span RFC 5321's 4–5 days (jitter aside).
    #[test]
    fn the_default_retries_last_about_five_days() {
        let s: SmtpSettings =
            toml::from_str("host = \"h\"\nfrom = \"a@b\"\nour_domain = \"b\"").unwrap();
        let nominal: f64 = (1..s.max_attempts)
            .map(|a| {
                let exp = a.saturating_sub(1).min(30) as i32;
                (s.backoff_base_secs as f64 * 2f64.powi(exp)).min(s.backoff_max_secs as f64)
            })
            .sum();
        let days = nominal / 86_400.0;
        assert!((4.0..5.5).contains(&days), "{days} days");
    }
}
