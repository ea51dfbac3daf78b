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
//! The model is Robinson's per-token probability with Fisher's chi-square combination
//! (Gary Robinson, "A statistical approach to the spam problem", 2003; as in SpamBayes
//! and Bogofilter): token counts per class, serde-serialisable so the caller can keep it
//! in the database. Tokens are stored as 64-bit FNV-1a hashes, so the model holds no
//! address in clear.

use std::collections::HashMap;

use qd_mail::MessageView;
use serde::{Deserialize, Serialize};

use crate::util::{domain_of, host_in_domain, is_private_ip, registered_domain};
use crate::verdict::Tag;

/// The true class of a message, as staff say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Label {
    Ham,
    Spam,
}

/// Robinson's strength of the prior for rare tokens (`s`) and the prior (`x`).
const PRIOR_STRENGTH: f64 = 0.45;
const PRIOR: f64 = 0.5;
/// Tokens closer than this to 0.5 are ignored.
const MIN_DEVIATION: f64 = 0.1;
/// At most this many of the strongest tokens are combined.
const MAX_CLUES: usize = 150;
/// Below this many messages of either class the model abstains.
const MIN_TRAINED: u32 = 5;

/// The online model.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Learner {
    /// Messages learned per class.
    pub spam_messages: u32,
    pub ham_messages: u32,
    /// Token hash → (spam count, ham count).
    tokens: HashMap<u64, (u32, u32)>,
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
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The tokens of a message, deduplicated, as readable strings (for tests and
    /// explanations; the model stores only their hashes).
    pub fn tokens(&self, view: &MessageView) -> Vec<String> {
        let mut t: Vec<String> = Vec::with_capacity(64);
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
        t.push(format!(
            "hops:{}",
            view.headers_named("Received").count().min(12)
        ));
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

    /// Learns one message as `label`.
    pub fn learn(&mut self, view: &MessageView, label: Label) {
        self.adjust(view, label, true);
    }

    /// Takes back an earlier [`Learner::learn`] (staff changed their mind).
    pub fn unlearn(&mut self, view: &MessageView, label: Label) {
        self.adjust(view, label, false);
    }

    fn adjust(&mut self, view: &MessageView, label: Label, add: bool) {
        let step = |n: &mut u32| {
            *n = if add {
                n.saturating_add(1)
            } else {
                n.saturating_sub(1)
            }
        };
        match label {
            Label::Spam => step(&mut self.spam_messages),
            Label::Ham => step(&mut self.ham_messages),
        }
        for tok in self.tokens(view) {
            let e = self.tokens.entry(fnv1a(&tok)).or_default();
            match label {
                Label::Spam => step(&mut e.0),
                Label::Ham => step(&mut e.1),
            }
        }
    }

    /// The spam probability of a message, or `None` while the model knows too little.
    pub fn probability(&self, view: &MessageView) -> Option<f32> {
        if self.spam_messages < MIN_TRAINED || self.ham_messages < MIN_TRAINED {
            return None;
        }
        let ns = f64::from(self.spam_messages);
        let nh = f64::from(self.ham_messages);
        let mut clues: Vec<f64> = self
            .tokens(view)
            .iter()
            .filter_map(|tok| self.tokens.get(&fnv1a(tok)))
            .map(|&(s, h)| {
                let (s, h) = (f64::from(s), f64::from(h));
                let ps = s / ns;
                let ph = h / nh;
                let p = if ps + ph > 0.0 { ps / (ps + ph) } else { PRIOR };
                let n = s + h;
                (PRIOR_STRENGTH * PRIOR + n * p) / (PRIOR_STRENGTH + n)
            })
            .filter(|f| (f - 0.5).abs() >= MIN_DEVIATION)
            .collect();
        if clues.is_empty() {
            return Some(0.5);
        }
        clues.sort_by(|a, b| (b - 0.5).abs().total_cmp(&(a - 0.5).abs()));
        clues.truncate(MAX_CLUES);
        let n = clues.len();
        let ln_h: f64 = clues.iter().map(|f| f.max(1e-9).ln()).sum();
        let ln_s: f64 = clues.iter().map(|f| (1.0 - f).max(1e-9).ln()).sum();
        let s = 1.0 - chi2q(-2.0 * ln_s, 2 * n);
        let h = 1.0 - chi2q(-2.0 * ln_h, 2 * n);
        Some(((s - h + 1.0) / 2.0) as f32)
    }

    /// The spam probability (0.5 while untrained) and the tag it gives with the default
    /// weights (the filter rescales with configured weights).
    pub fn score(&self, view: &MessageView) -> (f32, Vec<Tag>) {
        match self.probability(view) {
            Some(p) => (
                p,
                learned_tags(p, LEARNED_SPAM_DEFAULT, LEARNED_HAM_DEFAULT),
            ),
            None => (0.5, Vec::new()),
        }
    }
}

pub(crate) const LEARNED_SPAM_DEFAULT: f32 = 10.0;
pub(crate) const LEARNED_HAM_DEFAULT: f32 = -10.0;

/// `LEARNED_SPAM` scales with 2p−1 above one half, `LEARNED_HAM` with 1−2p below.
pub(crate) fn learned_tags(p: f32, spam_weight: f32, ham_weight: f32) -> Vec<Tag> {
    let detail = format!("learned spam probability {p:.3}");
    if p >= 0.5 {
        vec![Tag::new(
            "LEARNED_SPAM",
            spam_weight * (2.0 * p - 1.0),
            detail,
        )]
    } else {
        vec![Tag::new(
            "LEARNED_HAM",
            ham_weight * (1.0 - 2.0 * p),
            detail,
        )]
    }
}

fn mentions_domain(token: &str, domain: &str) -> bool {
    let value = token.split_once(':').map_or(token, |(_, v)| v);
    let host = value.rsplit('@').next().unwrap_or(value);
    host_in_domain(host, domain)
}

/// Upper tail of the chi-square distribution with even degrees of freedom `v`.
fn chi2q(x2: f64, v: usize) -> f64 {
    let m = x2 / 2.0;
    let mut term = (-m).exp();
    let mut sum = term;
    for i in 1..(v / 2) {
        term *= m / i as f64;
        sum += term;
    }
    sum.min(1.0)
}
