//! RFC 3834 rules: may we answer this message automatically?
//!
//! [`LoopHeaders::from_raw`] reads the few header fields the rules need straight from the
//! header block ([`crate::ParsedMail`] does not keep them); [`may_auto_reply`] is a pure
//! function of those headers, the sender, our own addresses and the filter's spam
//! verdict. Every refusal has a [`NoAutoReply`] reason, so the caller can log and count
//! it and tests can assert it.

/// List header fields (RFC 2369, RFC 2919) whose presence marks list traffic.
const LIST_HEADERS: &[&str] = &[
    "list-id",
    "list-unsubscribe",
    "list-post",
    "list-help",
    "list-owner",
    "list-subscribe",
    "list-archive",
];

/// Header fields some autoresponders set instead of `Auto-Submitted`.
const AUTORESPONDER_HEADERS: &[&str] = &["x-autoreply", "x-autorespond", "x-autoresponse"];

/// Local parts (before `@`) of senders that are machines, compared case-insensitively
/// after removing `-`, `_` and `.` (so `no-reply`, `no_reply` and `noreply` match one
/// entry).
const MACHINE_LOCAL_PARTS: &[&str] = &[
    "mailerdaemon",
    "postmaster",
    "noreply",
    "donotreply",
    "bounce",
    "bounces",
    "listserv",
    "majordomo",
    "mailman",
];

/// The header fields of one message that the loop rules look at.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoopHeaders {
    /// Every `Auto-Submitted` value, lowercased, comments and parameters dropped. All
    /// count: a sender cannot undo a marker by putting `no` above it.
    pub auto_submitted: Vec<String>,
    /// Every `Precedence` value, lowercased.
    pub precedence: Vec<String>,
    /// Names (lowercase) of the list header fields present.
    pub list_headers: Vec<String>,
    /// The last `Return-Path` value as written (`<>` for a bounce).
    pub return_path: Option<String>,
    /// `X-Auto-Response-Suppress` value (Microsoft Exchange).
    pub auto_response_suppress: Option<String>,
    /// The first autoresponder marker field present (`X-Autoreply`, …).
    pub autoresponder_marker: Option<String>,
    /// Addresses in `From` and `Sender`, normalised.
    pub senders: Vec<String>,
    /// The Message-ID, normalised (for recognising our own mail coming back).
    pub message_id: Option<String>,
    /// `Content-Language`, else `Accept-Language`: which template language to answer in.
    pub content_language: Option<String>,
}

impl LoopHeaders {
    /// Reads the fields from the header block of `raw` (an mbox envelope line is
    /// skipped; a block without a blank line ends at the end of the input).
    pub fn from_raw(raw: &[u8]) -> LoopHeaders {
        let (raw, _) = crate::strip_mbox_envelope(raw);
        let mut out = LoopHeaders::default();
        for (name, value) in header_fields(raw) {
            let value = value.trim();
            match name.as_str() {
                "auto-submitted" => out.auto_submitted.push(keyword(value)),
                "precedence" => out.precedence.push(keyword(value)),
                // The topmost one is the envelope sender of this delivery; lower ones
                // come from earlier hops (a bounce forwarded on keeps its `<>` there).
                "return-path" => {
                    out.return_path.get_or_insert_with(|| value.to_string());
                }
                "x-auto-response-suppress" => {
                    out.auto_response_suppress
                        .get_or_insert_with(|| value.to_string());
                }
                "from" | "sender" => out.senders.extend(addresses(value)),
                "content-language" => out.content_language = Some(value.to_string()),
                "accept-language" => {
                    out.content_language
                        .get_or_insert_with(|| value.to_string());
                }
                // The first Message-ID counts; later ones fall through to no arm below.
                "message-id" if out.message_id.is_none() => {
                    out.message_id = qd_core::normalize_message_id(value);
                }
                n if LIST_HEADERS.contains(&n) && !out.list_headers.iter().any(|h| h == n) => {
                    out.list_headers.push(n.to_string());
                }
                n if AUTORESPONDER_HEADERS.contains(&n) => {
                    out.autoresponder_marker
                        .get_or_insert_with(|| n.to_string());
                }
                _ => {}
            }
        }
        out
    }
}

/// Why we must not answer automatically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoAutoReply {
    /// `Auto-Submitted` with a value other than `no` (RFC 3834 §2, §5).
    AutoSubmitted(String),
    /// `Precedence: bulk`, `list` or `junk` (de-facto, RFC 3834 §2).
    Precedence(String),
    /// A list header field is present (RFC 2369, RFC 2919).
    MailingList(String),
    /// `Return-Path: <>`: a bounce or another notification (RFC 5321 §4.5.5).
    NullReturnPath,
    /// `X-Auto-Response-Suppress` asks for no automatic replies (`All` or `AutoReply`).
    ResponseSuppressed(String),
    /// A non-standard autoresponder marker such as `X-Autoreply`.
    AutoresponderMarker(String),
    /// The sender's local part is a machine's (`mailer-daemon`, `postmaster`,
    /// `no-reply`, …); the matched local part is kept.
    MachineSender(String),
    /// The sender is one of our own addresses.
    OwnAddress,
    /// The Message-ID is in our own domain: our mail came back.
    OwnMessage,
    /// The filter judged the message spam.
    Spam,
    /// No sender address to answer.
    NoSender,
}

impl NoAutoReply {
    /// A stable snake_case name for logs and metrics (no personal data).
    pub fn as_str(&self) -> &'static str {
        match self {
            NoAutoReply::AutoSubmitted(_) => "auto_submitted",
            NoAutoReply::Precedence(_) => "precedence",
            NoAutoReply::MailingList(_) => "mailing_list",
            NoAutoReply::NullReturnPath => "null_return_path",
            NoAutoReply::ResponseSuppressed(_) => "response_suppressed",
            NoAutoReply::AutoresponderMarker(_) => "autoresponder_marker",
            NoAutoReply::MachineSender(_) => "machine_sender",
            NoAutoReply::OwnAddress => "own_address",
            NoAutoReply::OwnMessage => "own_message",
            NoAutoReply::Spam => "spam",
            NoAutoReply::NoSender => "no_sender",
        }
    }
}

impl std::fmt::Display for NoAutoReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who we are, for recognising our own mail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OwnIdentity {
    /// Our sending and receiving addresses, normalised.
    pub addresses: Vec<String>,
    /// The domain of the Message-IDs we generate.
    pub message_id_domain: Option<String>,
}

impl OwnIdentity {
    fn is_own_address(&self, addr: &str) -> bool {
        let addr = qd_core::normalize_address(addr);
        self.addresses
            .iter()
            .any(|a| qd_core::normalize_address(a) == addr)
    }
}

/// Decides whether an automatic answer to `sender` is allowed. The order of the checks
/// decides which reason is reported when several apply: explicit markers first, then
/// the sender, then the filter's verdict.
pub fn may_auto_reply(
    headers: &LoopHeaders,
    sender: Option<&str>,
    own: &OwnIdentity,
    is_spam: bool,
) -> Result<(), NoAutoReply> {
    // Any marker suppresses, not only the first field: a message may carry several
    // (one per hop that added one), and RFC 3834 §2 asks us to err on the side of
    // silence.
    if let Some(v) = headers.auto_submitted.iter().find(|v| *v != "no") {
        return Err(NoAutoReply::AutoSubmitted(v.clone()));
    }
    if let Some(v) = headers
        .precedence
        .iter()
        .find(|v| matches!(v.as_str(), "bulk" | "list" | "junk" | "auto_reply"))
    {
        return Err(NoAutoReply::Precedence(v.clone()));
    }
    if let Some(h) = headers.list_headers.first() {
        return Err(NoAutoReply::MailingList(h.clone()));
    }
    if headers.return_path.as_deref().is_some_and(is_null_path) {
        return Err(NoAutoReply::NullReturnPath);
    }
    if let Some(v) = &headers.auto_response_suppress {
        let suppressed = v
            .split(',')
            .map(|t| t.trim().to_ascii_lowercase())
            .any(|t| t == "all" || t == "autoreply");
        if suppressed {
            return Err(NoAutoReply::ResponseSuppressed(v.clone()));
        }
    }
    if let Some(m) = &headers.autoresponder_marker {
        return Err(NoAutoReply::AutoresponderMarker(m.clone()));
    }
    if let (Some(domain), Some(mid)) = (&own.message_id_domain, &headers.message_id) {
        let ours = mid
            .rsplit_once('@')
            .is_some_and(|(_, d)| d.eq_ignore_ascii_case(domain));
        if ours {
            return Err(NoAutoReply::OwnMessage);
        }
    }
    let Some(sender) = sender
        .map(qd_core::normalize_address)
        .filter(|s| !s.is_empty())
    else {
        return Err(NoAutoReply::NoSender);
    };
    for addr in std::iter::once(&sender).chain(headers.senders.iter()) {
        if let Some(local) = machine_local_part(addr) {
            return Err(NoAutoReply::MachineSender(local));
        }
        if own.is_own_address(addr) {
            return Err(NoAutoReply::OwnAddress);
        }
    }
    if is_spam {
        return Err(NoAutoReply::Spam);
    }
    Ok(())
}

/// The local part of `addr` when it names a machine, else `None`.
fn machine_local_part(addr: &str) -> Option<String> {
    let local = addr
        .rsplit_once('@')
        .map_or(addr, |(l, _)| l)
        .to_lowercase();
    // `bounces+token@…`, `owner-list@…`, `list-request@…` are list and bounce handlers.
    let base = local.split('+').next().unwrap_or(&local);
    let squashed: String = base
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.'))
        .collect();
    // `noreply-aws@`, `notifications-noreply@`, `do-not-reply.billing@`: the words
    // anywhere in the name.
    let hit = MACHINE_LOCAL_PARTS.contains(&squashed.as_str())
        || squashed.contains("noreply")
        || squashed.contains("donotreply")
        || base.starts_with("owner-")
        || base.ends_with("-request")
        || base.ends_with("-bounces")
        || base.starts_with("bounce-");
    hit.then_some(local)
}

/// Whether a `Return-Path` value is the null reverse-path `<>` (RFC 5321 §4.5.5).
/// Comments are dropped first: RFC 5322 allows them around the path, and
/// `<> (bounce)` is as null as `<>`.
pub fn is_null_path(value: &str) -> bool {
    qd_core::normalize_address(&without_comments(value)).is_empty()
}

/// `value` without its RFC 5322 comments (parenthesised, nestable, with quoted pairs);
/// parentheses inside a quoted string are kept.
fn without_comments(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let mut depth = 0usize;
    let mut quoted = false;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                let next = chars.next();
                if depth == 0 {
                    out.push(c);
                    out.extend(next);
                }
            }
            '"' if depth == 0 => {
                quoted = !quoted;
                out.push(c);
            }
            '(' if !quoted => depth += 1,
            ')' if !quoted && depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out
}

/// The first token of a structured value: `auto-replied; owner=x` → `auto-replied`,
/// `bulk (comment)` → `bulk`.
fn keyword(value: &str) -> String {
    value
        .split(|c: char| c == ';' || c == '(' || c.is_whitespace())
        .find(|t| !t.is_empty())
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Addresses in an address-list value, normalised; good enough for `From`/`Sender`
/// (takes what is in angle brackets, or bare tokens with an `@`).
fn addresses(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = value;
    let mut found_bracket = false;
    while let Some(open) = rest.find('<') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('>') else { break };
        let a = qd_core::normalize_address(&after[..close]);
        if !a.is_empty() {
            out.push(a);
        }
        found_bracket = true;
        rest = &after[close + 1..];
    }
    if !found_bracket {
        out.extend(
            value
                .split([',', ' ', '\t'])
                .filter(|t| t.contains('@'))
                .map(qd_core::normalize_address),
        );
    }
    out
}

/// Unfolded header fields of the header block: `(lowercase name, value)`.
fn header_fields(raw: &[u8]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in raw.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        let text = String::from_utf8_lossy(line);
        if line.starts_with(b" ") || line.starts_with(b"\t") {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(text.trim());
            }
            continue;
        }
        if let Some((name, value)) = text.split_once(':') {
            out.push((name.trim().to_ascii_lowercase(), value.to_string()));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> OwnIdentity {
        OwnIdentity {
            addresses: vec!["support@desk.example".into()],
            message_id_domain: Some("desk.example".into()),
        }
    }

    fn check(headers: &str, sender: &str) -> Result<(), NoAutoReply> {
        let raw = format!("{headers}\r\n\r\nbody\r\n");
        may_auto_reply(
            &LoopHeaders::from_raw(raw.as_bytes()),
            Some(sender),
            &own(),
            false,
        )
    }

    #[test]
    fn an_ordinary_message_may_be_answered() {
        let h = "From: Ann <ann@customer.example>\r\nMessage-ID: <1@customer.example>\r\nAuto-Submitted: no";
        assert_eq!(check(h, "ann@customer.example"), Ok(()));
    }

    #[test]
    fn every_loop_marker_has_its_reason() {
        let cases: &[(&str, &str)] = &[
            ("Auto-Submitted: auto-replied", "auto_submitted"),
            (
                "Auto-Submitted: Auto-Generated; owner-email=x@y",
                "auto_submitted",
            ),
            ("Precedence: bulk", "precedence"),
            ("Precedence: list", "precedence"),
            ("Precedence: junk", "precedence"),
            // What our own acknowledgements (and other responders) carry.
            ("Precedence: auto_reply", "precedence"),
            ("List-Id: <news.lists.example>", "mailing_list"),
            ("List-Unsubscribe: <mailto:u@lists.example>", "mailing_list"),
            ("Return-Path: <>", "null_return_path"),
            // The topmost Return-Path is this delivery's envelope sender.
            (
                "Return-Path: <>\r\nReturn-Path: <ann@customer.example>",
                "null_return_path",
            ),
            (
                "X-Auto-Response-Suppress: DR, AutoReply",
                "response_suppressed",
            ),
            ("X-Autoreply: yes", "autoresponder_marker"),
            // Every Auto-Submitted and Precedence field counts, not only the first.
            (
                "Auto-Submitted: no\r\nAuto-Submitted: auto-replied",
                "auto_submitted",
            ),
            ("Precedence: first-class\r\nPrecedence: bulk", "precedence"),
            // Comments around the null path do not make it a sender.
            ("Return-Path: <> (bounce)", "null_return_path"),
            ("Return-Path: (daemon) <>", "null_return_path"),
            ("Message-ID: <abc@desk.example>", "own_message"),
        ];
        for (header, reason) in cases {
            let got = check(header, "ann@customer.example");
            assert_eq!(got.map_err(|r| r.as_str()), Err(*reason), "{header}");
        }
        assert_eq!(
            check("Precedence: first-class", "ann@customer.example"),
            Ok(())
        );
        assert_eq!(
            check("X-Auto-Response-Suppress: OOF", "ann@customer.example"),
            Ok(())
        );
        assert_eq!(
            check(
                "Auto-Submitted: no\r\nAuto-Submitted: No (checked)",
                "ann@customer.example"
            ),
            Ok(())
        );
        assert_eq!(
            check(
                "Return-Path: <ann@customer.example> (via relay)",
                "ann@customer.example"
            ),
            Ok(())
        );
    }

    #[test]
    fn machine_senders_are_not_answered() {
        for s in [
            "MAILER-DAEMON@mx.example",
            "postmaster@example.org",
            "no-reply@shop.example",
            "noreply@shop.example",
            "do_not_reply@shop.example",
            "bounces+123@mail.example",
            "owner-users@lists.example",
            "users-request@lists.example",
            "noreply-aws@cloud.example",
            "notifications-noreply@forge.example",
            "do-not-reply.billing@shop.example",
        ] {
            assert!(
                matches!(check("Subject: x", s), Err(NoAutoReply::MachineSender(_))),
                "{s}"
            );
        }
        assert_eq!(check("Subject: x", "noreen@example.org"), Ok(()));
    }

    #[test]
    fn our_own_address_spam_and_no_sender_are_not_answered() {
        assert_eq!(
            check("Subject: x", "Support@Desk.Example"),
            Err(NoAutoReply::OwnAddress)
        );
        let h = LoopHeaders::default();
        assert_eq!(
            may_auto_reply(&h, Some("ann@customer.example"), &own(), true),
            Err(NoAutoReply::Spam)
        );
        assert_eq!(
            may_auto_reply(&h, None, &own(), false),
            Err(NoAutoReply::NoSender)
        );
    }

    #[test]
    fn folded_headers_and_sender_field_are_read() {
        let raw = b"From: a@customer.example\r\nSender: \"Daemon\"\r\n <MAILER-DAEMON@mx.example>\r\nList-Id:\r\n <x.example>\r\n\r\nList-Id: not a header\r\n";
        let h = LoopHeaders::from_raw(raw);
        assert_eq!(
            h.senders,
            vec!["a@customer.example", "mailer-daemon@mx.example"]
        );
        assert_eq!(h.list_headers, vec!["list-id"]);
    }
}
