//! The pipeline steps around the store for live mail: the filter before it, the
//! acknowledgements with it (parse -> **filter** -> thread -> store + **acknowledge**).
//!
//! [`Steps`] plugs into the IMAP ingester as its [`AfterStore`] hook. The filter sees
//! only the [`MessageView`] built from the raw bytes (headers, structure, digests); its
//! verdict is stored with the message, and spam and virus verdicts quarantine the
//! message and the parts a signature matched. Acknowledgements follow the RFC 3834 rules
//! in [`crate::ack`]; a quarantined message is never acknowledged. They are planned once
//! the batch's messages are written (ticket numbers known) and enqueued in the batch's
//! own transaction, so a crash never leaves stored mail without the acknowledgement it
//! was due.
//!
//! The filter judges with what staff taught it (the learned model in the store): the
//! model is loaded by [`Steps::refresh_learner`] and reloaded after a batch whenever its
//! generation in the store moved (staff marked mail as spam or not spam meanwhile).

use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::BoxFuture;
use qd_core::Clock;
use qd_filter::{
    AuthOutcome, Authenticator, Class, Filter, JudgeContext, Learner, MessageView, Verdict,
};
use qd_mail::ParsedMail;
use qd_store::{BatchOutcome, EnqueueOutcome, MessageVerdict, NewMessage, NewOutboxEntry, Store};

use crate::ack::{plan_entry, AckCandidate, AckSettings};
use crate::imap::{AfterStore, Arrived, HookError, StoredBatch};

/// Messages whose DNS checks run at once.
const AUTH_CONCURRENCY: usize = 32;

/// SPF (with the connection our border relay recorded), DKIM, DMARC and ARC for one
/// message, within `limit` (see [`Authenticator::authenticate_within`]); `None` when
/// even the From domain's side of it did not finish in time.
async fn authenticate_one(
    filter: &Filter,
    auth: &Authenticator,
    limit: Duration,
    uid: u32,
    raw: &[u8],
) -> Option<AuthOutcome> {
    let conn = filter.connection(&MessageView::headers_only(raw));
    let outcome = auth.authenticate_within(raw, conn.as_ref(), limit).await;
    if outcome.is_none() {
        tracing::warn!(uid, "sender authentication timed out; judged without DNS");
    }
    outcome
}

/// The filter and acknowledgement steps; each is optional.
pub struct Steps {
    store: Store,
    clock: Arc<dyn Clock>,
    filter: Option<Arc<Filter>>,
    ack: Option<AckSettings>,
    /// Sender authentication against DNS, and how long one message may take.
    authenticator: Option<(Arc<Authenticator>, Duration)>,
    /// The learned model and the store generation it was loaded at.
    learner: Arc<RwLock<Option<(i64, Learner)>>>,
}

impl Steps {
    pub fn new(store: Store, clock: Arc<dyn Clock>) -> Steps {
        Steps {
            store,
            clock,
            filter: None,
            ack: None,
            authenticator: None,
            learner: Arc::default(),
        }
    }

    /// Checks SPF, DKIM, DMARC and ARC against DNS before the filter judges (with a
    /// filter only). A message whose checks take longer than `per_message` has DMARC
    /// checked again from the From domain's side, within another `per_message`; when
    /// that fails too, it is judged as without DNS (by its trusted relays'
    /// Authentication-Results, if any).
    pub fn with_authenticator(mut self, auth: Arc<Authenticator>, per_message: Duration) -> Steps {
        self.authenticator = Some((auth, per_message));
        self
    }

    pub fn with_filter(mut self, filter: Arc<Filter>) -> Steps {
        self.filter = Some(filter);
        self
    }

    pub fn with_ack(mut self, ack: AckSettings) -> Steps {
        self.ack = Some(ack);
        self
    }

    /// Loads the learned model from the store when it changed since the last load (or
    /// was never loaded). Returns whether it loaded one.
    pub async fn refresh_learner(&self) -> Result<bool, qd_store::Error> {
        let Some(filter) = &self.filter else {
            return Ok(false);
        };
        let generation = self.store.learned_generation().await?;
        let current = self
            .learner
            .read()
            .ok()
            .and_then(|l| l.as_ref().map(|(g, _)| *g));
        if current == Some(generation) {
            return Ok(false);
        }
        let m = self.store.learned_model().await?;
        let learner = Learner::from_weights(m.spam_messages, m.ham_messages, m.tokens)
            .with_excluded_domains(filter.settings().our_domains.clone());
        tracing::debug!(
            generation = m.generation,
            tokens = learner.len(),
            "learned model loaded"
        );
        if let Ok(mut slot) = self.learner.write() {
            *slot = Some((m.generation, learner));
        }
        Ok(true)
    }
}

/// Records a verdict on the message about to be stored: spam and virus are
/// quarantined, and so is every attachment whose digest a virus signature matched.
///
/// The filter's digest of an infected file may match no stored attachment: a virus
/// inside an attached message (the store lists the whole message as one attachment), or
/// a broken base64 body that the filter decoded leniently. Then every attachment of the
/// message is quarantined, so that releasing the message never releases the virus.
pub fn apply_verdict(v: &Verdict, message: &mut NewMessage) {
    let quarantined = v.class != Class::Ham;
    let mut matched = false;
    for a in &mut message.attachments {
        if v.infected.iter().any(|d| d.eq_ignore_ascii_case(&a.digest)) {
            a.quarantined = true;
            matched = true;
        }
    }
    if v.class == Class::Virus && !matched {
        for a in &mut message.attachments {
            a.quarantined = true;
        }
    }
    message.verdict = Some(MessageVerdict {
        class: v.class.as_str().to_string(),
        score: f64::from(v.score),
        tags_json: serde_json::to_string(&v.tags).unwrap_or_else(|_| "[]".to_string()),
        quarantined,
    });
}

impl AfterStore for Steps {
    /// Only the filter works before the store.
    fn runs_before_store(&self) -> bool {
        self.filter.is_some()
    }

    /// DNS lookups of many messages overlap; answers are cached across batches.
    fn authenticate<'a>(
        &'a self,
        raw: &'a [(u32, Vec<u8>)],
    ) -> BoxFuture<'a, Vec<Option<AuthOutcome>>> {
        Box::pin(async move {
            let (Some(filter), Some((auth, limit))) = (&self.filter, &self.authenticator) else {
                return Vec::new();
            };
            // Each check is a task of its own: signature checks and body hashes are CPU
            // work, which would otherwise share one thread with the IMAP fetch. The set
            // aborts what still runs if the batch is dropped (shutdown).
            let mut results: Vec<Option<AuthOutcome>> = vec![None; raw.len()];
            let mut tasks = tokio::task::JoinSet::new();
            let mut pending = raw.iter().enumerate();
            loop {
                while tasks.len() < AUTH_CONCURRENCY {
                    let Some((i, (uid, bytes))) = pending.next() else {
                        break;
                    };
                    let (filter, auth, limit, uid) = (filter.clone(), auth.clone(), *limit, *uid);
                    // Copied when its turn comes: at most AUTH_CONCURRENCY at once.
                    let bytes = bytes.clone();
                    tasks.spawn(async move {
                        (
                            i,
                            authenticate_one(&filter, &auth, limit, uid, &bytes).await,
                        )
                    });
                }
                match tasks.join_next().await {
                    Some(Ok((i, outcome))) => {
                        if let Some(slot) = results.get_mut(i) {
                            *slot = outcome;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "sender authentication failed; judged without DNS");
                    }
                    None => break,
                }
            }
            results
        })
    }

    fn before_store(
        &self,
        view: &MessageView,
        _parsed: &ParsedMail,
        auth: Option<&AuthOutcome>,
        message: &mut NewMessage,
    ) {
        let Some(filter) = &self.filter else {
            return;
        };
        let mut ctx = JudgeContext::at(self.clock.now());
        if let Some(a) = auth {
            ctx = ctx.with_auth(a);
        }
        let learned = self.learner.read().ok();
        let verdict = match learned.as_ref().and_then(|l| l.as_ref()) {
            Some((_, learner)) => filter.judge(view, &ctx.with_learner(learner)),
            None => filter.judge(view, &ctx),
        };
        drop(learned);
        tracing::debug!(
            class = verdict.class.as_str(),
            score = verdict.score,
            tags = verdict.tags.len(),
            "filter verdict"
        );
        apply_verdict(&verdict, message);
    }

    fn ack_limit(&self) -> Option<u32> {
        self.ack.as_ref().map(|a| a.max_per_sender_per_day)
    }

    fn plan_acks(
        &self,
        outcome: &BatchOutcome,
        messages: &[NewMessage],
        arrived: &[Arrived],
    ) -> Vec<(NewOutboxEntry, String)> {
        let Some(settings) = &self.ack else {
            return Vec::new();
        };
        let now = self.clock.now();
        outcome
            .stored
            .iter()
            .filter_map(|stored| {
                let message = messages.get(stored.index)?;
                let arrived = arrived.get(stored.index).filter(|a| !a.reread_old)?;
                let verdict_is_spam = message
                    .verdict
                    .as_ref()
                    .is_some_and(|v| v.quarantined || v.class != "ham");
                let candidate = AckCandidate {
                    headers: &arrived.loop_headers,
                    parsed: &arrived.parsed,
                    stored,
                    verdict_is_spam,
                };
                plan_entry(&candidate, settings, now)
            })
            .collect()
    }

    fn after_store<'a>(&'a self, batch: StoredBatch<'a>) -> BoxFuture<'a, Result<(), HookError>> {
        Box::pin(async move {
            if let Err(e) = self.refresh_learner().await {
                tracing::warn!(error = %e, "learned model not reloaded");
            }
            if !batch.acks.is_empty() {
                let queued = batch
                    .acks
                    .iter()
                    .filter(|a| matches!(a, EnqueueOutcome::Queued(_)))
                    .count();
                tracing::debug!(
                    queued,
                    over_limit = batch.acks.len() - queued,
                    "acknowledgements written with the batch"
                );
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// EICAR inside an attached message: the filter's infected digest is the inner
    /// part's, the store's attachment is the whole message, and it is quarantined all the
    /// same.
    #[test]
    fn a_virus_in_an_attached_message_quarantines_the_attachment() {
        let eicar = String::from_utf8(qd_filter::signatures::eicar()).unwrap();
        let raw = format!(
            "From: a@example.com\r\nTo: help@quietdesk.example\r\nSubject: fwd\r\n\
             Message-ID: <fwd@example.com>\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n\
             --b\r\nContent-Type: text/plain\r\n\r\nsee the forwarded mail\r\n\
             --b\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"fwd.eml\"\r\n\r\n\
             From: b@example.org\r\nSubject: inner\r\nMIME-Version: 1.0\r\n\
             Content-Type: multipart/mixed; boundary=\"i\"\r\n\r\n\
             --i\r\nContent-Type: application/octet-stream; name=\"e.com\"\r\n\
             Content-Disposition: attachment; filename=\"e.com\"\r\n\r\n{eicar}\r\n--i--\r\n\
             --b--\r\n"
        );
        let (parsed, view) = qd_mail::parse_with_view(raw.as_bytes());
        let filter = qd_filter::Filter::new(qd_filter::FilterSettings::default()).unwrap();
        let verdict = filter.judge(&view, &qd_filter::JudgeContext::at(chrono::Utc::now()));
        assert_eq!(verdict.class, Class::Virus, "{verdict:?}");
        let mut m = crate::new_message(
            parsed,
            qd_store::PreparedBlob::prepare(raw.as_bytes()).unwrap(),
            None,
            None,
            None,
            chrono::Utc::now(),
        );
        assert!(!m.attachments.is_empty());
        assert!(m
            .attachments
            .iter()
            .all(|a| !verdict.infected.contains(&a.digest)));
        apply_verdict(&verdict, &mut m);
        assert!(
            m.attachments.iter().all(|a| a.quarantined),
            "{:?}",
            m.attachments
        );
        assert!(m.verdict.unwrap().quarantined);
    }
}
