//! Messages we send: acknowledgements and staff replies, built with mail-builder.
//!
//! [`build`] turns an [`Outgoing`] description into an [`OutgoingMessage`] — the wire
//! bytes plus the envelope and threading facts the outbox stores. Threading headers
//! follow RFC 5322 §3.6.4 (In-Reply-To the parent, References the parent's References
//! plus the parent); acknowledgements carry `Auto-Submitted: auto-replied` (RFC 3834 §5)
//! and `X-Auto-Response-Suppress: All` so that other responders stay quiet; staff replies
//! ask only auto-replies to stay quiet (`OOF, AutoReply`), so bounces still come back.
//! [`Templates`] renders the acknowledgement text per language from
//! `config/templates/ack.<lang>.txt`, falling back to English.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use mail_builder::headers::address::Address as MbAddress;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;
use mail_builder::MessageBuilder;

/// What went wrong while building or rendering.
#[derive(Debug, thiserror::Error)]
pub enum OutgoingError {
    #[error("no recipient")]
    NoRecipient,
    #[error("address `{0}` is not a usable mailbox")]
    BadAddress(String),
    #[error("writing the message failed: {0}")]
    Write(#[from] std::io::Error),
    #[error("template {name}: {reason}")]
    Template { name: String, reason: String },
    #[error("the templates have no `{0}` fallback language")]
    NoFallback(String),
}

/// Which kind of message; decides the automatic-response headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutgoingKind {
    /// An automatic acknowledgement (RFC 3834 auto-reply).
    Ack,
    /// A message written by staff.
    Reply,
}

/// A mailbox: optional display name and address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mailbox {
    pub name: Option<String>,
    pub addr: String,
}

impl Mailbox {
    pub fn new(addr: impl Into<String>) -> Mailbox {
        Mailbox {
            name: None,
            addr: addr.into(),
        }
    }

    fn to_builder(&self) -> Result<MbAddress<'static>, OutgoingError> {
        let addr = self.addr.trim();
        let valid = addr.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty()
                && !d.is_empty()
                && !addr.contains(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | ','))
        });
        if !valid {
            return Err(OutgoingError::BadAddress(addr.to_string()));
        }
        Ok(MbAddress::new_address(self.name.clone(), addr.to_string()))
    }
}

/// Everything needed to build one message.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub kind: OutgoingKind,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
    pub subject: String,
    pub body: String,
    /// BCP 47 tag for `Content-Language`.
    pub language: Option<String>,
    /// Normalised Message-ID of the message we answer (no angle brackets).
    pub in_reply_to: Option<String>,
    /// The References chain to send (see [`references_for`]).
    pub references: Vec<String>,
    /// Our Message-ID (see [`new_message_id`]).
    pub message_id: String,
    pub date: DateTime<Utc>,
    /// Envelope sender; `None` sends with the null reverse-path `<>`.
    pub envelope_from: Option<String>,
}

/// A built message: wire bytes plus what the outbox records about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub kind: OutgoingKind,
    /// Our Message-ID, no angle brackets.
    pub message_id: String,
    /// The threading ids as written (unsafe ones dropped, see [`is_sendable_id`]).
    pub in_reply_to: Option<String>,
    pub references: Vec<String>,
    pub from: String,
    /// Header and envelope recipients (addresses only).
    pub to: Vec<String>,
    /// Envelope sender; `None` is the null reverse-path.
    pub envelope_from: Option<String>,
    pub subject: String,
    pub language: Option<String>,
    /// CRLF line endings, ready for SMTP `DATA`.
    pub raw: Vec<u8>,
}

/// Most References entries we send: the first (thread root) and the nearest ancestors,
/// as RFC 5322 §3.6.4 allows trimming the middle.
const MAX_REFERENCES: usize = 20;

/// The References of a reply to a message with `parent_id` and `parent_refs`.
pub fn references_for(parent_id: Option<&str>, parent_refs: &[String]) -> Vec<String> {
    let mut refs: Vec<String> = parent_refs.to_vec();
    if let Some(id) = parent_id {
        if !refs.iter().any(|r| r == id) {
            refs.push(id.to_string());
        }
    }
    if refs.len() > MAX_REFERENCES {
        let tail = refs.split_off(refs.len() - (MAX_REFERENCES - 1));
        refs.truncate(1);
        refs.extend(tail);
    }
    refs
}

/// A fresh Message-ID in our domain, no angle brackets: time plus 96 random bits, so
/// ids never repeat across instances.
pub fn new_message_id(our_domain: &str, now: DateTime<Utc>) -> String {
    let r1: u64 = rand::random();
    let r2: u32 = rand::random();
    format!(
        "qd.{}.{:016x}{:08x}@{}",
        now.timestamp_millis(),
        r1,
        r2,
        our_domain
    )
}

/// `Re: <subject>` with the ticket reference, unless the subject already carries both.
pub fn reply_subject(original: &str, ticket_ref: &str) -> String {
    let original = original.trim();
    let with_ref = if original.to_lowercase().contains(&ticket_ref.to_lowercase()) {
        original.to_string()
    } else if original.is_empty() {
        ticket_ref.to_string()
    } else {
        format!("{original} {ticket_ref}")
    };
    let lower = with_ref.to_lowercase();
    if lower.starts_with("re:") || lower.starts_with("aw:") || lower.starts_with("sv:") {
        with_ref
    } else {
        format!("Re: {with_ref}")
    }
}

/// Builds the message.
pub fn build(o: &Outgoing) -> Result<OutgoingMessage, OutgoingError> {
    if o.to.is_empty() {
        return Err(OutgoingError::NoRecipient);
    }
    let to: Vec<MbAddress<'static>> =
        o.to.iter()
            .map(Mailbox::to_builder)
            .collect::<Result<_, _>>()?;
    // The ids we answer come from incoming mail, and mail-parser keeps a bare CR inside
    // an id: written back, `<a\rReply-To: x@evil>` would add a header field to our
    // message. An id that is not one token of visible characters is dropped; the
    // ticket reference in the subject still threads the answer.
    let in_reply_to = o.in_reply_to.clone().filter(|id| is_sendable_id(id));
    let references: Vec<String> = o
        .references
        .iter()
        .filter(|id| is_sendable_id(id))
        .cloned()
        .collect();
    let mut b = MessageBuilder::new()
        .from(o.from.to_builder()?)
        .to(MbAddress::new_list(to))
        .subject(o.subject.clone())
        .message_id(o.message_id.clone())
        .date(o.date.timestamp());
    if let Some(parent) = &in_reply_to {
        b = b.in_reply_to(parent.clone());
    }
    if !references.is_empty() {
        b = b.references(MessageId::new_list(references.iter().cloned()));
    }
    if let Some(lang) = &o.language {
        b = b.header("Content-Language", Raw::new(lang.clone()));
    }
    if o.kind == OutgoingKind::Ack {
        // RFC 3834 §5: an automatic response says so, and asks other responders (and
        // Exchange's out-of-office) not to answer it.
        b = b
            .header("Auto-Submitted", Raw::new("auto-replied"))
            .header("X-Auto-Response-Suppress", Raw::new("All"))
            .header("Precedence", Raw::new("auto_reply"));
    } else {
        // Out-of-office and other auto-replies only; `All` would also ask Exchange not
        // to send the delivery reports (NDR) that mark an outbox entry failed.
        b = b.header("X-Auto-Response-Suppress", Raw::new("OOF, AutoReply"));
    }
    let raw = b.text_body(o.body.clone()).write_to_vec()?;
    Ok(OutgoingMessage {
        kind: o.kind,
        message_id: o.message_id.clone(),
        in_reply_to,
        references,
        from: o.from.addr.clone(),
        to: o.to.iter().map(|m| m.addr.clone()).collect(),
        envelope_from: o.envelope_from.clone(),
        subject: o.subject.clone(),
        language: o.language.clone(),
        raw,
    })
}

/// Whether a Message-ID (without angle brackets) may be written into a header of ours:
/// not empty, and no control character, white space or angle bracket, any of which
/// could end the id or the header field early.
pub fn is_sendable_id(id: &str) -> bool {
    !id.is_empty()
        && !id
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || matches!(c, '<' | '>'))
}

/// Placeholders a template may use.
pub const PLACEHOLDERS: &[&str] = &["ticket_ref", "ticket_number", "subject", "name"];

/// One template: a subject line and a body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub subject: String,
    pub body: String,
}

/// The acknowledgement templates by language, with a fallback language.
#[derive(Debug, Clone)]
pub struct Templates {
    by_lang: BTreeMap<String, Template>,
    fallback: String,
}

const BUILTIN: &[(&str, &str)] = &[
    ("en", include_str!("../../../config/templates/ack.en.txt")),
    ("nl", include_str!("../../../config/templates/ack.nl.txt")),
    ("fr", include_str!("../../../config/templates/ack.fr.txt")),
];

impl Templates {
    /// The templates shipped in `config/templates/` (compiled in), English fallback.
    pub fn builtin() -> Templates {
        let mut by_lang = BTreeMap::new();
        for (lang, text) in BUILTIN {
            // The shipped files are checked by a test; a broken one is skipped here
            // rather than taking the process down.
            if let Ok(t) = parse_template(&format!("ack.{lang}.txt"), text) {
                by_lang.insert((*lang).to_string(), t);
            }
        }
        Templates {
            by_lang,
            fallback: "en".to_string(),
        }
    }

    /// Loads every `ack.<lang>.txt` in `dir`; `fallback` must be among them.
    pub fn load(dir: &Path, fallback: &str) -> Result<Templates, OutgoingError> {
        let mut by_lang = BTreeMap::new();
        let entries = std::fs::read_dir(dir).map_err(|e| OutgoingError::Template {
            name: dir.display().to_string(),
            reason: e.to_string(),
        })?;
        for entry in entries {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(lang) = name
                .strip_prefix("ack.")
                .and_then(|n| n.strip_suffix(".txt"))
            else {
                continue;
            };
            let text =
                std::fs::read_to_string(entry.path()).map_err(|e| OutgoingError::Template {
                    name: name.clone(),
                    reason: e.to_string(),
                })?;
            by_lang.insert(lang.to_ascii_lowercase(), parse_template(&name, &text)?);
        }
        let fallback = fallback.to_ascii_lowercase();
        if !by_lang.contains_key(&fallback) {
            return Err(OutgoingError::NoFallback(fallback));
        }
        Ok(Templates { by_lang, fallback })
    }

    /// The same templates with another fallback language (which must exist; an unknown
    /// one keeps the current fallback).
    pub fn with_fallback(mut self, lang: &str) -> Templates {
        let lang = lang.to_ascii_lowercase();
        if self.by_lang.contains_key(&lang) {
            self.fallback = lang;
        }
        self
    }

    /// The languages available.
    pub fn languages(&self) -> impl Iterator<Item = &str> {
        self.by_lang.keys().map(String::as_str)
    }

    /// The language used for `wanted` (a BCP 47 tag such as `nl-BE`, or a list like
    /// `fr-CH, en;q=0.8`): the first tag whose primary subtag has a template, else the
    /// fallback.
    pub fn pick(&self, wanted: Option<&str>) -> &str {
        if let Some(w) = wanted {
            for tag in w.split(',') {
                let primary = tag
                    .split(';')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .split(['-', '_'])
                    .next()
                    .unwrap_or("")
                    .to_ascii_lowercase();
                if let Some((k, _)) = self.by_lang.get_key_value(&primary) {
                    return k;
                }
            }
        }
        &self.fallback
    }

    /// Renders subject and body for `wanted` with `vars`; returns the language used.
    pub fn render(
        &self,
        wanted: Option<&str>,
        vars: &[(&str, &str)],
    ) -> Result<(String, Template), OutgoingError> {
        let lang = self.pick(wanted).to_string();
        let t = self
            .by_lang
            .get(&lang)
            .ok_or_else(|| OutgoingError::NoFallback(lang.clone()))?;
        Ok((
            lang,
            Template {
                // A subject is one line whatever the variables hold.
                subject: fill(&t.subject, vars).replace(['\r', '\n'], " "),
                body: fill(&t.body, vars),
            },
        ))
    }
}

/// `Subject: …` on the first line, a blank line, then the body. Placeholders are
/// `{name}`; an unknown one is an error at load time, not a surprise in a customer's
/// mailbox.
fn parse_template(name: &str, text: &str) -> Result<Template, OutgoingError> {
    let err = |reason: String| OutgoingError::Template {
        name: name.to_string(),
        reason,
    };
    let text = text.replace("\r\n", "\n");
    let (first, rest) = text.split_once('\n').unwrap_or((&text, ""));
    let subject = first
        .strip_prefix("Subject:")
        .ok_or_else(|| err("the first line must be `Subject: …`".into()))?
        .trim()
        .to_string();
    let body = rest
        .strip_prefix('\n')
        .ok_or_else(|| err("a blank line must follow the subject".into()))?
        .to_string();
    for part in [&subject, &body] {
        let mut s = part.as_str();
        while let Some(open) = s.find('{') {
            let after = &s[open + 1..];
            let Some(close) = after.find('}') else { break };
            let key = &after[..close];
            if !PLACEHOLDERS.contains(&key) {
                return Err(err(format!(
                    "unknown placeholder {{{key}}} (known: {})",
                    PLACEHOLDERS.join(", ")
                )));
            }
            s = &after[close + 1..];
        }
    }
    Ok(Template { subject, body })
}

/// Replaces `{key}` by its value in one pass, so values are never expanded again.
fn fill(text: &str, vars: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(text.len() + 64);
    let mut s = text;
    while let Some(open) = s.find('{') {
        out.push_str(&s[..open]);
        let after = &s[open + 1..];
        match after.find('}').and_then(|close| {
            let key = &after[..close];
            vars.iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| (close, *v))
        }) {
            Some((close, value)) => {
                out.push_str(value);
                s = &after[close + 1..];
            }
            None => {
                out.push('{');
                s = after;
            }
        }
    }
    out.push_str(s);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_templates_parse_and_fall_back_to_english() {
        let t = Templates::builtin();
        assert_eq!(t.languages().collect::<Vec<_>>(), vec!["en", "fr", "nl"]);
        assert_eq!(t.pick(Some("nl-BE")), "nl");
        assert_eq!(t.pick(Some("de-DE, fr;q=0.8")), "fr");
        assert_eq!(t.pick(Some("de")), "en");
        assert_eq!(t.pick(None), "en");
    }

    #[test]
    fn values_are_not_expanded_twice() {
        assert_eq!(
            fill(
                "{subject} / {ticket_ref}",
                &[("subject", "{ticket_ref}"), ("ticket_ref", "[#QD-1]")]
            ),
            "{ticket_ref} / [#QD-1]"
        );
        assert_eq!(fill("a {x} b", &[]), "a {x} b");
    }

    #[test]
    fn unknown_placeholders_are_refused() {
        assert!(parse_template("t", "Subject: {nope}\n\nbody").is_err());
        assert!(parse_template("t", "no subject line\n\nbody").is_err());
    }

    #[test]
    fn references_keep_root_and_nearest() {
        let refs: Vec<String> = (0..30).map(|i| format!("m{i}@x")).collect();
        let out = references_for(Some("parent@x"), &refs);
        assert_eq!(out.len(), MAX_REFERENCES);
        assert_eq!(out[0], "m0@x");
        assert_eq!(out.last().map(String::as_str), Some("parent@x"));
    }

    /// A staff reply asks Exchange for no out-of-office answer but still for its delivery
    /// reports; an acknowledgement asks for nothing at all.
    #[test]
    fn staff_replies_still_ask_for_delivery_reports() {
        let msg = |kind| {
            let out = build(&Outgoing {
                kind,
                from: Mailbox::new("support@desk.example"),
                to: vec![Mailbox::new("ann@customer.example")],
                subject: "Re: printer [#QD-1]".into(),
                body: "Done.\n".into(),
                language: None,
                in_reply_to: None,
                references: Vec::new(),
                message_id: "qd.1.a@desk.example".into(),
                date: DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap_or_default(),
                envelope_from: None,
            })
            .expect("builds");
            String::from_utf8_lossy(&out.raw).into_owned()
        };
        let reply = msg(OutgoingKind::Reply);
        assert!(
            reply.contains("X-Auto-Response-Suppress: OOF, AutoReply\r\n"),
            "{reply}"
        );
        assert!(!reply.contains("Auto-Submitted"));
        let ack = msg(OutgoingKind::Ack);
        assert!(ack.contains("X-Auto-Response-Suppress: All\r\n"), "{ack}");
    }

    #[test]
    fn reply_subject_adds_ref_once() {
        assert_eq!(
            reply_subject("Printer broken", "[#QD-7]"),
            "Re: Printer broken [#QD-7]"
        );
        assert_eq!(reply_subject("RE: x [#qd-7]", "[#QD-7]"), "RE: x [#qd-7]");
    }
}
