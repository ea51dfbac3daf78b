//! The spam and virus filter: judges a message from its headers, MIME structure and
//! signatures, never from its text.
//!
//! Input is a [`qd_mail::MessageView`], which by construction holds no body text (see
//! its module docs). [`Filter::judge`] runs one module per check family — [`auth`],
//! [`received`], [`headers`], [`upstream`], [`mime`], `scripts` (charsets of scripts the
//! desk does not expect), [`signatures`] and, when the
//! caller passes one, the [`learn`]ed model — each emitting named tags; weights and
//! thresholds from [`FilterSettings`] turn them into a [`Verdict`]. [`eval`] measures the
//! filter on a labelled directory (static rules, or TREC-style online learning).

pub mod auth;
pub mod eval;
pub mod headers;
pub mod learn;
pub mod mime;
pub mod received;
mod scripts;
pub mod settings;
pub mod signatures;
pub mod upstream;
mod util;
pub mod verdict;

use std::time::Duration;

use chrono::{DateTime, Utc};

pub use auth::{AuthOutcome, AuthResult, Authenticator, Connection};
pub use eval::{evaluate, EvalOptions, EvalReport, Misjudged};
pub use learn::{
    is_learned_tag, prior as learning_prior, Features, Label, Learner, LEARNED_MARGIN,
    LEARNING_RATE,
};
pub use qd_mail::MessageView;
pub use settings::{
    ClamdSettings, DnsSettings, FilterSettings, Script, Thresholds, UnreachablePolicy,
};
pub use signatures::{ClamdClient, SignatureDb};
pub use verdict::{Class, Tag, Verdict, DEFAULT_WEIGHTS};

/// What can go wrong building the filter or running an evaluation.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("cannot read signatures from {path}: {source}")]
    Signatures {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown tag {0:?} in filter.weights (see qd_filter::DEFAULT_WEIGHTS)")]
    UnknownTag(String),
    #[error("thresholds must satisfy ham <= spam <= reject (got {ham}, {spam}, {reject})")]
    Thresholds { ham: f32, spam: f32, reject: f32 },
    #[error("DNS resolver: {0}")]
    Dns(String),
    #[error("internal pattern failed to compile: {0}")]
    Pattern(#[from] regex::Error),
    #[error("cannot read {path}: {source}")]
    Read {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad manifest {path}: {reason}")]
    Manifest {
        path: std::path::PathBuf,
        reason: String,
    },
}

/// Per-message inputs besides the view.
#[derive(Debug, Clone, Copy)]
pub struct JudgeContext<'a> {
    /// The clock for Date checks. Evaluations pin it to the message's own arrival.
    pub now: DateTime<Utc>,
    /// A learned model to consult.
    pub learner: Option<&'a Learner>,
    /// Results of [`Authenticator::authenticate`]; without them, only trusted
    /// Authentication-Results / Received-SPF fields count.
    pub auth: Option<&'a AuthOutcome>,
}

impl<'a> JudgeContext<'a> {
    pub fn at(now: DateTime<Utc>) -> JudgeContext<'a> {
        JudgeContext {
            now,
            learner: None,
            auth: None,
        }
    }

    /// The clock pinned to the message's own arrival: the newest Received time stamp,
    /// else its Date, else the real clock. For old corpora and re-judging stored mail.
    pub fn pinned_to(view: &MessageView) -> JudgeContext<'a> {
        JudgeContext::at(arrival(view).unwrap_or_else(Utc::now))
    }

    pub fn with_learner(mut self, learner: &'a Learner) -> Self {
        self.learner = Some(learner);
        self
    }

    pub fn with_auth(mut self, auth: &'a AuthOutcome) -> Self {
        self.auth = Some(auth);
        self
    }
}

/// The newest Received time stamp, else the Date field.
pub fn arrival(view: &MessageView) -> Option<DateTime<Utc>> {
    view.headers_named("Received")
        .find_map(|h| h.received.as_ref().and_then(|r| r.date))
        .or_else(|| view.header("Date").and_then(|d| d.date))
}

/// The filter: compiled rules, signatures and weights. Cheap to share across threads.
pub struct Filter {
    settings: FilterSettings,
    weights: verdict::Weights,
    received: received::ReceivedRules,
    headers: headers::HeaderRules,
    signatures: SignatureDb,
    clamd: Option<ClamdClient>,
}

impl Filter {
    /// Compiles the rules and loads the signatures named by `settings`.
    pub fn new(settings: FilterSettings) -> Result<Filter, FilterError> {
        for name in settings.weights.keys() {
            if !DEFAULT_WEIGHTS.iter().any(|(n, _, _)| n == name) {
                return Err(FilterError::UnknownTag(name.clone()));
            }
        }
        let t = settings.thresholds;
        if !(t.ham <= t.spam && t.spam <= t.reject) {
            return Err(FilterError::Thresholds {
                ham: t.ham,
                spam: t.spam,
                reject: t.reject,
            });
        }
        let signatures = match &settings.signatures_dir {
            Some(dir) => SignatureDb::load_dir(dir)?,
            None => SignatureDb::builtin(),
        };
        let clamd = settings
            .clamd
            .address
            .as_deref()
            .map(|a| ClamdClient::new(a, Duration::from_millis(settings.clamd.timeout_ms)));
        Ok(Filter {
            weights: verdict::Weights::new(&settings.weights),
            received: received::ReceivedRules::new()?,
            headers: headers::HeaderRules::new()?,
            signatures,
            clamd,
            settings,
        })
    }

    pub fn settings(&self) -> &FilterSettings {
        &self.settings
    }

    pub fn signatures(&self) -> &SignatureDb {
        &self.signatures
    }

    /// The SMTP connection our border relay recorded, for SPF (see [`auth::connection`]).
    pub fn connection(&self, view: &MessageView) -> Option<Connection> {
        auth::connection(view, &self.settings.trusted_relays)
    }

    /// Judges one message. Never fails: a check that cannot run (clamd down) is a tag.
    pub fn judge(&self, view: &MessageView, ctx: &JudgeContext<'_>) -> Verdict {
        let mut hits = util::Hits::default();
        let s = &self.settings;
        let trusted_end = upstream::trusted_prefix(view, &s.trusted_relays);
        // Our own checks first; what they could not decide, our relays' results may.
        let header_auth = auth::from_trusted_headers(view, trusted_end, &s.trusted_relays);
        let auth = match ctx.auth {
            Some(a) => a.or(&header_auth),
            None => header_auth,
        };
        auth::check(&auth, &mut hits);
        received::check(view, &self.received, &mut hits);
        headers::check(view, &self.headers, &s.our_domains, ctx.now, &mut hits);
        upstream::check(view, trusted_end, &mut hits);
        mime::check(view, &mut hits);
        scripts::check(view, &s.expected_scripts, &mut hits);
        let sig = signatures::check(view, &self.signatures, self.clamd.as_ref(), &mut hits);

        let mut tags: Vec<Tag> = hits
            .items
            .into_iter()
            .map(|(name, detail)| Tag::new(name, self.weights.get(name), detail))
            .collect();
        if let Some(l) = ctx.learner {
            let rule_score: f32 = tags.iter().map(|t| t.score).sum();
            let rules: Vec<&str> = tags.iter().map(|t| t.name.as_str()).collect();
            let f = l
                .features(view, &rules)
                .with_prior(learn::prior(rule_score, s.thresholds.spam));
            if let Some(evidence) = l.evidence(&f) {
                tags.push(learn::learned_tag(
                    evidence,
                    f.prior,
                    self.weights.get("LEARNED_SPAM"),
                    self.weights.get("LEARNED_HAM"),
                ));
            }
        }
        let score: f32 = tags.iter().map(|t| t.score).sum();
        let t = s.thresholds;
        // Mail that could not be scanned whole never passes silently: clamd unreachable
        // or refusing an attachment as too large (under the quarantine policy), or parts
        // nested beyond what the view walks.
        let quarantine_unscanned = (sig.clamd_unscanned
            && s.clamd.unreachable == UnreachablePolicy::Quarantine)
            || view.truncated_tree();
        let class = if !sig.viruses.is_empty() {
            Class::Virus
        } else if score >= t.spam || quarantine_unscanned {
            Class::Spam
        } else {
            Class::Ham
        };
        Verdict {
            class,
            score,
            uncertain: class == Class::Ham && score >= t.ham,
            reject: class == Class::Virus || score >= t.reject,
            tags,
            infected: sig.infected,
        }
    }
}
