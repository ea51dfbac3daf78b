//! The pipeline steps around the store for live mail: the filter before it, the
//! acknowledgement after the commit (parse -> **filter** -> thread -> store ->
//! **acknowledge**).
//!
//! [`Steps`] plugs into the IMAP ingester as its [`AfterStore`] hook. The filter sees
//! only the [`MessageView`] built from the raw bytes (headers, structure, digests); its
//! verdict is stored with the message, and spam and virus verdicts quarantine the
//! message and the parts a signature matched. Acknowledgements follow the RFC 3834 rules
//! in [`crate::ack`]; a quarantined message is never acknowledged.
//!
//! The filter judges with what staff taught it (the learned model in the store): the
//! model is loaded by [`Steps::refresh_learner`] and reloaded after a batch whenever its
//! generation in the store moved (staff marked mail as spam or not spam meanwhile).

use std::sync::{Arc, RwLock};

use futures::future::BoxFuture;
use qd_core::Clock;
use qd_filter::{Class, Filter, JudgeContext, Learner, MessageView, Verdict};
use qd_mail::ParsedMail;
use qd_store::{MessageVerdict, NewMessage, Store};

use crate::ack::{acknowledge_all, AckCandidate, AckOutcome, AckSettings};
use crate::imap::{AfterStore, HookError, StoredBatch};

/// The filter and acknowledgement steps; each is optional.
pub struct Steps {
    store: Store,
    clock: Arc<dyn Clock>,
    filter: Option<Arc<Filter>>,
    ack: Option<AckSettings>,
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
            learner: Arc::default(),
        }
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
pub fn apply_verdict(v: &Verdict, message: &mut NewMessage) {
    let quarantined = v.class != Class::Ham;
    for a in &mut message.attachments {
        if v.infected.iter().any(|d| d.eq_ignore_ascii_case(&a.digest)) {
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
    fn before_store(&self, raw: &[u8], _parsed: &ParsedMail, message: &mut NewMessage) {
        let Some(filter) = &self.filter else {
            return;
        };
        let view = MessageView::from_raw(raw);
        let ctx = JudgeContext::at(self.clock.now());
        let learned = self.learner.read().ok();
        let verdict = match learned.as_ref().and_then(|l| l.as_ref()) {
            Some((_, learner)) => filter.judge(&view, &ctx.with_learner(learner)),
            None => filter.judge(&view, &ctx),
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

    fn after_store<'a>(&'a self, batch: StoredBatch<'a>) -> BoxFuture<'a, Result<(), HookError>> {
        Box::pin(async move {
            if let Err(e) = self.refresh_learner().await {
                tracing::warn!(error = %e, "learned model not reloaded");
            }
            let Some(settings) = &self.ack else {
                return Ok(());
            };
            let now = self.clock.now();
            let candidates: Vec<AckCandidate<'_>> = batch
                .outcome
                .stored
                .iter()
                .filter_map(|stored| {
                    let message = batch.messages.get(stored.index)?;
                    let arrived = batch.arrived.get(stored.index)?;
                    let verdict_is_spam = message
                        .verdict
                        .as_ref()
                        .is_some_and(|v| v.quarantined || v.class != "ham");
                    Some(AckCandidate {
                        headers: &arrived.loop_headers,
                        parsed: &arrived.parsed,
                        stored,
                        verdict_is_spam,
                    })
                })
                .collect();
            let mut failed = 0u32;
            // One failure (the database went away for a moment) must not cost the other
            // senders of the batch their acknowledgement: `acknowledge_all` falls back
            // to one transaction each.
            let outcomes = acknowledge_all(&self.store, &candidates, settings, now).await;
            for (c, outcome) in candidates.iter().zip(outcomes) {
                match outcome {
                    Ok(AckOutcome::Queued { outbox_id, .. }) => {
                        tracing::debug!(
                            ticket = c.stored.ticket_number,
                            outbox_id,
                            "acknowledgement queued"
                        );
                    }
                    Ok(AckOutcome::Skipped(_)) => {}
                    Err(e) => {
                        tracing::warn!(ticket = c.stored.ticket_number, error = %e, "acknowledgement not queued");
                        failed += 1;
                    }
                }
            }
            if failed > 0 {
                return Err(format!("{failed} acknowledgements could not be queued").into());
            }
            Ok(())
        })
    }
}
