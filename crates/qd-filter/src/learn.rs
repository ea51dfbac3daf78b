//! Learned signals from staff feedback, still without text.
//!
//! "Mark as spam / not spam" teaches tokens drawn from the [`MessageView`] only: header
//! names present, the leading header order, X-Mailer, the Message-ID and Date shapes,
//! the sender's address and domains (From, Reply-To, Return-Path), the origin hop's
//! network and reverse-DNS domain, MIME types, charsets, encodings, the structure, part
//! digests and size buckets. Never body words, never the Subject's words, never
//! recipient addresses (those are ours and say nothing about the sender), never tokens
//! naming our own domains.
//!
//! The model is online logistic regression over the hashed tokens (as in Goodman and
//! Yih, "Online discriminative spam filter training", CEAS 2006): each token has a
//! weight, the spam probability is the logistic of the weights' sum, and learning a
//! message adds one step, `LEARNING_RATE · (y − p)`, to the weight of each of its
//! tokens. A step is remembered with the feedback, so it can be taken back exactly:
//! relabelling subtracts it, and forgetting a person subtracts it from the tokens that
//! name them.
//! It beat the Robinson/Fisher token-count model we had first on the TREC-style online
//! evaluation (see ARCHITECTURE.md). Tokens are stored as 64-bit FNV-1a hashes, so the
//! model holds no address in clear.
//!
//! The model starts from the static rules' opinion and learns only the correction to
//! it: a message's logit is its *prior* (the rules' score less the spam threshold, one
//! point per logit unit, see [`Features::with_prior`]) plus the weights of its tokens.
//! Mail the rules already judge right moves the weights little; mail they misjudge moves
//! them most. The verdict then adds the weights' sum, less [`LEARNED_MARGIN`], to the
//! rules' score as one `LEARNED_SPAM` or `LEARNED_HAM` tag, so the rules and the model
//! never count the same evidence twice, and the spam threshold keeps its meaning.

use std::collections::HashMap;

use qd_mail::MessageView;
use serde::{Deserialize, Serialize};

use crate::util::{domain_of, host_in_domain, is_private_ip, registered_domain};
use crate::verdict::Tag;

pub use qd_core::Label;

/// The learning rate: how far one message moves the weights of its tokens.
pub const LEARNING_RATE: f64 = 0.09;

/// How sure the model must be, in logit units, before what it learned pushes a message
/// toward spam: its evidence counts less this margin. 1.2 is the cost-sensitive
/// decision for a false positive costing about 3.3 missed spams (spam when the model's
/// probability is at least 0.77, σ(1.2)). With the rate above it was chosen on the
/// TREC-style online run over the shared corpus; neighbouring values (rate 0.085–0.095,
/// margin 1.15–1.25) trade a few false positives for a few misses (see ARCHITECTURE.md).
pub const LEARNED_MARGIN: f64 = 1.2;
/// Below this many messages learned the model abstains.
const MIN_TRAINED: u32 = 10;

/// What the model sees of one message (see [`Learner::features`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features {
    pub structural: Vec<u64>,
    pub personal: Vec<u64>,
    /// The logit the model starts from before its weights (see [`Features::with_prior`]).
    pub prior: f64,
}

impl Features {
    /// Sets the static rules' opinion the model corrects: [`prior()`] of the rules' score.
    /// Judging and learning a message must use the same prior; without one (0) the
    /// model stands alone.
    pub fn with_prior(mut self, prior: f64) -> Features {
        self.prior = prior;
        self
    }

    /// Every token hash, structural then personal.
    pub fn all(&self) -> impl Iterator<Item = u64> + '_ {
        self.structural.iter().chain(&self.personal).copied()
    }
}

/// The online model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Learner {
    /// Messages learned per class.
    pub spam_messages: u32,
    pub ham_messages: u32,
    /// Token hash → weight.
    weights: HashMap<u64, f64>,
    /// Domains whose tokens are never learned (our own).
    #[serde(default)]
    exclude: Vec<String>,
}

fn fnv1a(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Digits to `9`, letters to `a`/`A`, runs collapsed: the shape of an identifier.
fn shape(s: &str) -> String {
    let mut out = String::new();
    let mut last = None;
    for c in s.chars().take(64) {
        let k = if c.is_ascii_digit() {
            '9'
        } else if c.is_ascii_lowercase() {
            'a'
        } else if c.is_ascii_uppercase() {
            'A'
        } else if c.is_alphanumeric() {
            'u'
        } else {
            c
        };
        if last != Some(k) {
            out.push(k);
        }
        last = Some(k);
    }
    out
}

/// Header fields written by the receiving side: their presence tells about our own
/// infrastructure, not the sender.
fn is_trace(name: &str) -> bool {
    matches!(
        name,
        "received"
            | "return-path"
            | "delivered-to"
            | "x-original-to"
            | "envelope-to"
            | "x-envelope-to"
            | "x-envelope-from"
            | "x-rcpt-to"
            | "x-spam-status"
            | "x-spam-flag"
            | "x-spam-level"
            | "x-spam-checker-version"
            | "authentication-results"
            | "received-spf"
    )
}

impl Learner {
    pub fn new() -> Learner {
        Learner::default()
    }

    /// Never learn tokens that name these domains (our own).
    pub fn with_excluded_domains(mut self, domains: Vec<String>) -> Learner {
        self.exclude = domains;
        self
    }

    /// How many distinct tokens the model holds.
    pub fn len(&self) -> usize {
        self.weights.len()
    }

    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// The tokens of a message, deduplicated, as readable strings (for tests and
    /// explanations; the model stores only their hashes).
    pub fn tokens(&self, view: &MessageView, rules: &[&str]) -> Vec<String> {
        let mut t: Vec<String> = Vec::with_capacity(64);
        // Which static rules fired: the model learns how much each one means here.
        t.extend(rules.iter().map(|r| format!("rule:{r}")));
        let mut names: Vec<String> = Vec::new();
        for h in view.headers() {
            let n = h.name.to_ascii_lowercase();
            if !is_trace(&n) {
                names.push(n.clone());
            }
            t.push(format!("h:{n}"));
        }
        t.push(format!(
            "order:{}",
            names.iter().take(4).cloned().collect::<Vec<_>>().join(",")
        ));
        // Which header follows which: a mailer's fingerprint, whatever its name.
        for pair in names.windows(2) {
            if let [a, b] = pair {
                t.push(format!("hp:{a}>{b}"));
            }
        }
        if let Some(ct) = view.header("Content-Type") {
            if let Some(b) = ct
                .raw
                .split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| k.trim().eq_ignore_ascii_case("boundary"))
                .map(|(_, v)| v.trim().trim_matches('"'))
            {
                t.push(format!("bnd:{}", shape(b)));
            }
        }
        if let Some(m) = view
            .header("X-Mailer")
            .or_else(|| view.header("User-Agent"))
        {
            let m = m.raw.to_ascii_lowercase();
            t.push(format!("xm:{}", m.chars().take(40).collect::<String>()));
            t.push(format!(
                "xmw:{}",
                m.split(|c: char| !c.is_ascii_alphabetic())
                    .find(|w| !w.is_empty())
                    .unwrap_or_default()
            ));
        } else {
            t.push("xm:none".into());
        }
        if let Some(mid) = view.header("Message-ID") {
            let raw = mid.raw.trim().trim_start_matches('<').trim_end_matches('>');
            match raw.rsplit_once('@') {
                Some((left, right)) => {
                    t.push(format!("mid:{}", shape(left)));
                    t.push(format!("midh:{}", registered_domain(right)));
                    t.push(format!("midhs:{}", shape(right)));
                }
                None => t.push(format!("mid:{}", shape(raw))),
            }
        } else {
            t.push("mid:none".into());
        }
        if let Some(d) = view.header("Date") {
            t.push(format!("date:{}", shape(&d.raw)));
            let tz = d.raw.split_whitespace().nth(5).unwrap_or_default();
            t.push(format!("tz:{tz}"));
        }
        for (field, key) in [("From", "from"), ("Reply-To", "rt"), ("Sender", "snd")] {
            if let Some(a) = view
                .header(field)
                .and_then(|h| h.addresses.iter().find(|a| !a.addr.is_empty()))
            {
                if let Some(d) = domain_of(&a.addr) {
                    t.push(format!("{key}:{}", a.addr));
                    t.push(format!("{key}d:{}", d.to_ascii_lowercase()));
                    t.push(format!("{key}rd:{}", registered_domain(d)));
                    t.push(format!(
                        "{key}l:{}",
                        shape(a.addr.split('@').next().unwrap_or_default())
                    ));
                }
                t.push(format!("{key}name:{}", a.name.is_some()));
            }
        }
        if let Some(rp) = view.header("Return-Path") {
            let rp = rp.raw.trim().trim_start_matches('<').trim_end_matches('>');
            if let Some(d) = domain_of(rp) {
                t.push(format!("rprd:{}", registered_domain(d)));
            }
        }
        let origin = view
            .headers_named("Received")
            .filter_map(|h| h.received.as_ref())
            .filter(|r| r.ip.is_some_and(|ip| !is_private_ip(&ip)))
            .last();
        if let Some(o) = origin {
            if let Some(std::net::IpAddr::V4(ip)) = o.ip {
                let [a, b, c, _] = ip.octets();
                t.push(format!("net16:{a}.{b}"));
                t.push(format!("net24:{a}.{b}.{c}"));
            }
            if let Some(r) = o.rdns.as_deref() {
                t.push(format!("ordns:{}", registered_domain(r)));
                t.push(format!("ordnss:{}", shape(r)));
            }
            if let Some(h) = o.helo.as_deref() {
                t.push(format!("ohelos:{}", shape(h)));
            }
        }
        // The hops above the border (the newest hop that received from a public address)
        // were written by the receiving side: they describe us, not the sender. The
        // border hop itself names the sender's last relay, in our words.
        let hops: Vec<_> = view
            .headers_named("Received")
            .filter_map(|h| h.received.as_ref())
            .collect();
        let border = hops
            .iter()
            .position(|r| r.ip.is_some_and(|ip| !is_private_ip(&ip)))
            .unwrap_or(0);
        let theirs = hops.get(border..).unwrap_or_default();
        t.push(format!("hops:{}", theirs.len().min(12)));
        for (i, hop) in theirs.iter().enumerate() {
            let ours = i == 0;
            if let Some(by) = hop.by.as_deref().filter(|_| !ours) {
                t.push(format!("rby:{}", registered_domain(by)));
            }
            if let Some(r) = hop.rdns.as_deref() {
                t.push(format!("rfrom:{}", registered_domain(r)));
            }
            if let Some(h) = hop.helo.as_deref() {
                t.push(format!("rhelo:{}", shape(h)));
            }
            if let Some(w) = hop.with.as_deref().filter(|_| !ours) {
                t.push(format!("rwith:{}", w.to_ascii_lowercase()));
            }
            if let Some(ip) = hop.ip {
                t.push(format!("rip:{}", ip_prefix(&ip)));
            }
        }
        // How the sender's names agree with each other (not who they are).
        let from_rd = view
            .header("From")
            .and_then(|h| h.addresses.iter().find_map(|a| domain_of(&a.addr)))
            .map(registered_domain);
        if let Some(from_rd) = &from_rd {
            let mid_rd = view
                .header("Message-ID")
                .and_then(|m| m.raw.trim().trim_end_matches('>').rsplit_once('@'))
                .map(|(_, d)| registered_domain(d));
            t.push(format!("rel:mid=from:{}", mid_rd.as_ref() == Some(from_rd)));
            let rp_rd = view
                .header("Return-Path")
                .and_then(|h| domain_of(h.raw.trim().trim_start_matches('<').trim_end_matches('>')))
                .map(registered_domain);
            if let Some(rp_rd) = rp_rd {
                t.push(format!("rel:rp=from:{}", &rp_rd == from_rd));
            }
            if let Some(o) = origin.and_then(|o| o.rdns.as_deref()) {
                t.push(format!(
                    "rel:origin=from:{}",
                    &registered_domain(o) == from_rd
                ));
            }
        }
        if let Some(o) = origin {
            if let (Some(h), Some(r)) = (o.helo.as_deref(), o.rdns.as_deref()) {
                t.push(format!(
                    "rel:helo=rdns:{}",
                    registered_domain(h) == registered_domain(r)
                ));
            }
        }
        // Whether the envelope recipient is among the visible ones (Bcc'd mass mail is not).
        let envelope = ["Delivered-To", "X-Original-To", "Envelope-To"]
            .iter()
            .find_map(|f| view.header(f))
            .map(|h| {
                h.raw
                    .trim()
                    .trim_start_matches('<')
                    .trim_end_matches('>')
                    .to_ascii_lowercase()
            });
        if let Some(rcpt) = envelope {
            let visible: Vec<String> = ["To", "Cc"]
                .iter()
                .flat_map(|f| view.headers_named(f))
                .flat_map(|h| h.addresses.iter().map(|a| a.addr.to_ascii_lowercase()))
                .collect();
            let same_domain = domain_of(&rcpt).is_some_and(|d| {
                visible
                    .iter()
                    .any(|v| domain_of(v).is_some_and(|vd| vd.eq_ignore_ascii_case(d)))
            });
            t.push(format!(
                "rel:rcpt=to:{}",
                if visible.contains(&rcpt) {
                    "address"
                } else if same_domain {
                    "domain"
                } else {
                    "none"
                }
            ));
        }
        // How far the Date is from the first hop's time stamp (log2 of seconds).
        let first_hop = view
            .headers_named("Received")
            .filter_map(|h| h.received.as_ref().and_then(|r| r.date))
            .last();
        if let (Some(d), Some(r)) = (view.header("Date").and_then(|d| d.date), first_hop) {
            let secs = (r - d).num_seconds();
            let bucket = 64 - secs.unsigned_abs().leading_zeros();
            t.push(format!(
                "dskew:{}{bucket}",
                if secs < 0 { "-" } else { "+" }
            ));
        }
        for h in view.headers() {
            let n = h.name.to_ascii_lowercase();
            if !worded(&n) {
                continue;
            }
            for w in header_words(&h.raw).take(24) {
                t.push(format!("w:{n}:{w}"));
            }
        }
        let recipients: usize = ["To", "Cc"]
            .iter()
            .flat_map(|f| view.headers_named(f))
            .map(|h| h.addresses.len())
            .sum();
        t.push(format!("rcpts:{}", recipients.min(10)));
        let mut structure = String::new();
        for p in view.parts() {
            let mime = p.mime_type();
            structure.push_str(&format!("{}{mime};", p.depth));
            t.push(format!("ct:{mime}"));
            if let Some(c) = &p.charset {
                t.push(format!("cs:{c}"));
            }
            if let Some(e) = &p.transfer_encoding {
                t.push(format!("cte:{e}"));
            }
            if let Some(n) = &p.file_name {
                let ext = n
                    .rsplit('.')
                    .next()
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                t.push(format!("ext:{ext}"));
            }
            if let Some(m) = &p.md5 {
                if p.decoded_size > 0 {
                    t.push(format!("md5:{m}"));
                }
            }
            t.push(format!(
                "psize:{}:{}",
                mime,
                64 - p.decoded_size.leading_zeros()
            ));
        }
        t.push(format!("struct:{structure}"));
        t.push(format!(
            "size:{}",
            64 - (view.size() as u64).leading_zeros()
        ));
        if let Some(s) = view.header("Subject") {
            t.push(format!("subj8:{}", s.eight_bit));
            for c in &s.encoded_charsets {
                t.push(format!("subjcs:{c}"));
            }
        }
        if let Some(p) = view.header("Precedence") {
            t.push(format!("prec:{}", p.raw.trim().to_ascii_lowercase()));
        }
        t.retain(|tok| !self.exclude.iter().any(|d| mentions_domain(tok, d)));
        t.sort();
        t.dedup();
        t
    }

    /// What the model sees of a message: its token hashes, split into structural ones
    /// and personal ones (sender addresses, which are forgotten with the message).
    /// `rules` names the static rules that fired on it (see [`Learner::tokens`]).
    pub fn features(&self, view: &MessageView, rules: &[&str]) -> Features {
        let (personal, structural): (Vec<String>, Vec<String>) = self
            .tokens(view, rules)
            .into_iter()
            .partition(|t| is_personal(t));
        Features {
            structural: structural.iter().map(|t| fnv1a(t)).collect(),
            personal: personal.iter().map(|t| fnv1a(t)).collect(),
            prior: 0.0,
        }
    }

    /// A model as stored: message counts per class and a weight per token hash.
    pub fn from_weights(
        spam_messages: u32,
        ham_messages: u32,
        weights: impl IntoIterator<Item = (u64, f64)>,
    ) -> Learner {
        Learner {
            spam_messages,
            ham_messages,
            weights: weights.into_iter().collect(),
            exclude: Vec::new(),
        }
    }

    fn weights_sum(&self, f: &Features) -> f64 {
        f.all().filter_map(|h| self.weights.get(&h)).sum()
    }

    /// What the model learned about a message beyond its prior (the sum of its tokens'
    /// weights, in logit units), or `None` while the model knows too little.
    pub fn evidence(&self, f: &Features) -> Option<f64> {
        self.trained().then(|| self.weights_sum(f))
    }

    fn trained(&self) -> bool {
        self.spam_messages + self.ham_messages >= MIN_TRAINED
    }

    /// The step learning a message as `label` takes now: `LEARNING_RATE · (y − p)`,
    /// where `p` includes the message's prior; positive for spam. It is added to the
    /// weight of every token of the message.
    pub fn step(&self, f: &Features, label: Label) -> f64 {
        let p = logistic(f.prior + self.weights_sum(f));
        let y = match label {
            Label::Spam => 1.0,
            Label::Ham => 0.0,
        };
        LEARNING_RATE * (y - p)
    }

    /// Adds (`add`) or takes back a `step` on the message's tokens. Message counts are
    /// kept by [`Learner::count`].
    pub fn apply(&mut self, f: &Features, step: f64, add: bool) {
        let delta = if add { step } else { -step };
        for h in f.all() {
            let w = self.weights.entry(h).or_default();
            *w += delta;
            if w.abs() < 1e-12 {
                self.weights.remove(&h);
            }
        }
    }

    /// Counts (`add`) or uncounts one message of `label`.
    pub fn count(&mut self, label: Label, add: bool) {
        let n = match label {
            Label::Spam => &mut self.spam_messages,
            Label::Ham => &mut self.ham_messages,
        };
        *n = if add {
            n.saturating_add(1)
        } else {
            n.saturating_sub(1)
        };
    }

    /// Learns one message as `label`; returns the step taken (to take it back later).
    pub fn learn(&mut self, f: &Features, label: Label) -> f64 {
        let step = self.step(f, label);
        self.apply(f, step, true);
        self.count(label, true);
        step
    }

    /// Takes back an earlier [`Learner::learn`] of a message as `label` that took `step`.
    pub fn unlearn(&mut self, f: &Features, label: Label, step: f64) {
        self.apply(f, step, false);
        self.count(label, false);
    }

    /// The spam probability of a message, prior included, or `None` while the model
    /// knows too little.
    pub fn probability(&self, f: &Features) -> Option<f32> {
        self.trained()
            .then(|| logistic(f.prior + self.weights_sum(f)) as f32)
    }
}

/// The prior of a message whose static rules scored `rule_score` against a spam
/// threshold of `spam_threshold`: one score point per logit unit, even odds at the
/// threshold.
pub fn prior(rule_score: f32, spam_threshold: f32) -> f64 {
    f64::from(rule_score) - f64::from(spam_threshold)
}

fn logistic(z: f64) -> f64 {
    1.0 / (1.0 + (-z.clamp(-40.0, 40.0)).exp())
}

/// At most this much can the learned correction add (`LEARNED_SPAM`) or take away
/// (`LEARNED_HAM`) by default: enough to overrule any set of structural rules, not a
/// virus signature.
pub(crate) const LEARNED_SPAM_DEFAULT: f32 = 10.0;
pub(crate) const LEARNED_HAM_DEFAULT: f32 = -10.0;

/// Whether a tag is the learned model's own (`LEARNED_SPAM`, `LEARNED_HAM`) rather than
/// a static rule's.
pub fn is_learned_tag(name: &str) -> bool {
    name.starts_with("LEARNED_")
}

/// The learned correction as a tag: the model's `evidence` less [`LEARNED_MARGIN`],
/// within the configured limits (`spam_cap` ≥ 0 ≥ `ham_cap`; a limit of 0 switches
/// that direction off). The explanation gives the model's probability, from `prior`
/// and `evidence` as [`Learner::probability`] computes it.
pub(crate) fn learned_tag(evidence: f64, prior: f64, spam_cap: f32, ham_cap: f32) -> Tag {
    let p = logistic(prior + evidence);
    let correction = (evidence - LEARNED_MARGIN) as f32;
    let score = correction.min(spam_cap.max(0.0)).max(ham_cap.min(0.0));
    let name = if score > 0.0 {
        "LEARNED_SPAM"
    } else {
        "LEARNED_HAM"
    };
    Tag::new(
        name,
        score,
        format!("learned correction {correction:+.2} to the rules (spam probability {p:.3})"),
    )
}

/// Headers whose words are learned. Not the Subject (the message's own words), not
/// recipients (ours), not fields handled above by shape (Date, Message-ID, Received,
/// sender addresses).
fn worded(name: &str) -> bool {
    !(is_trace(name)
        || matches!(
            name,
            "subject"
                | "to"
                | "cc"
                | "bcc"
                | "date"
                | "message-id"
                | "in-reply-to"
                | "references"
                | "from"
                | "reply-to"
                | "sender"
                | "thread-topic"
                | "thread-index"
                | "comments"
                | "keywords"
        ))
}

/// Words of a header value, lowercased; IPv4 addresses become their /24 and long
/// identifiers their shape, so the model holds neither whole addresses nor unique ids.
fn header_words(raw: &str) -> impl Iterator<Item = String> + '_ {
    raw.split(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                ';' | ',' | '"' | '<' | '>' | '(' | ')' | '[' | ']' | '=' | '/' | ':'
            )
    })
    .filter(|w| w.len() >= 2)
    .map(|w| {
        let w = w.trim_matches(|c: char| matches!(c, '.' | '\'' | '-'));
        if let Ok(ip) = w.parse::<std::net::IpAddr>() {
            ip_prefix(&ip)
        } else if w.len() > 24 || w.chars().filter(char::is_ascii_digit).count() > 4 {
            shape(w)
        } else {
            w.to_ascii_lowercase()
        }
    })
    .filter(|w| !w.is_empty())
}

/// An IP address cut to its /24 (IPv4) or /48 (IPv6), as stored everywhere else.
fn ip_prefix(ip: &std::net::IpAddr) -> String {
    qd_core::anonymise_ip(*ip).to_string()
}

/// Tokens that hold a whole address: the sender's (see [`Learner::tokens`]: `from:`,
/// `rt:`, `snd:`), and any other with an address in it (a header word such as
/// `w:errors-to:alice@example.org`). Personal tokens are forgotten with the person.
fn is_personal(token: &str) -> bool {
    ["from:", "rt:", "snd:"]
        .iter()
        .any(|p| token.starts_with(p))
        || token.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty() && !local.ends_with(':') && !domain.is_empty()
        })
}

fn mentions_domain(token: &str, domain: &str) -> bool {
    let value = token.split_once(':').map_or(token, |(_, v)| v);
    let host = value.rsplit('@').next().unwrap_or(value);
    host_in_domain(host, domain)
}

#[cfg(test)]
mod tests {
    use super::is_personal;

    #[test]
    fn tokens_that_hold_an_address_are_personal() {
        for t in [
            "from:alice@example.org",
            "rt:alice@example.org",
            "w:errors-to:alice@example.org",
            "w:disposition-notification-to:bob@example.org",
        ] {
            assert!(is_personal(t), "{t}");
        }
        // A bare domain (DKIM's i=@domain) and structure are not.
        for t in [
            "w:x-mailer:outlook",
            "dkim-i:@example.org",
            "mime:text/plain",
            "@",
        ] {
            assert!(!is_personal(t), "{t}");
        }
    }
}
