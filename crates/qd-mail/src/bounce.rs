//! Delivery status notifications (bounces) of mail we sent.
//!
//! [`parse_bounce`] reads an RFC 3464 report (`multipart/report;
//! report-type=delivery-status`): the recipient block of the `message/delivery-status`
//! part gives recipient, action, status and diagnostic; the returned original
//! (`message/rfc822` or `text/rfc822-headers`) gives the Message-ID that ties the bounce
//! to our outbox entry. Bounces that are not RFC 3464 (old qmail, some Exchange and
//! hosted relays) are recognised when they come from a mailer daemon or with a null
//! Return-Path and quote the original headers in their text; what they do not say
//! stays `None`.

use mail_parser::MimeHeaders;

/// What a bounce tells about one failed delivery.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Bounce {
    /// Message-ID of the message that bounced, normalised (no angle brackets).
    pub original_message_id: String,
    /// The recipient that failed (`Final-Recipient`, else `Original-Recipient`, else
    /// `X-Failed-Recipients`), without the `rfc822;` type.
    pub recipient: Option<String>,
    /// RFC 3463 status code such as `5.1.1`.
    pub status: Option<String>,
    /// `failed`, `delayed`, `delivered`, `relayed` or `expanded`; `unknown` for a notice
    /// without a report whose words say neither failure nor delay.
    pub action: Option<String>,
    /// `Diagnostic-Code` without its type, or the best line of a non-standard bounce.
    pub diagnostic: Option<String>,
    /// Whether the report was a standard RFC 3464 delivery-status report.
    pub standard: bool,
}

impl Bounce {
    /// Whether this reports a permanent failure (action `failed` or a `5.x.x` status).
    /// A `delayed` report is only a warning: the message may still arrive.
    pub fn is_permanent_failure(&self) -> bool {
        match self.action.as_deref() {
            Some("failed") => true,
            Some(_) => false,
            None => self.status.as_deref().is_none_or(|s| s.starts_with('5')),
        }
    }

    /// One line for the outbox `last_error` (no addresses).
    pub fn summary(&self) -> String {
        let mut s = String::from("bounced");
        if let Some(st) = &self.status {
            s.push_str(&format!(" {st}"));
        }
        if let Some(d) = &self.diagnostic {
            s.push_str(&format!(": {d}"));
        }
        s
    }
}

/// Reads a bounce; `None` when `raw` is not one or names no original Message-ID.
pub fn parse_bounce(raw: &[u8]) -> Option<Bounce> {
    let (raw, _) = crate::strip_mbox_envelope(raw);
    let msg = crate::guard::parse(raw).message?;
    let mut bounce = Bounce::default();
    let mut original: Option<String> = None;
    let mut saw_report = false;
    for part in msg.parts.iter() {
        let Some(ct) = part.content_type() else {
            continue;
        };
        let ctype = ct.ctype().to_ascii_lowercase();
        let sub = ct.subtype().unwrap_or("").to_ascii_lowercase();
        match (ctype.as_str(), sub.as_str()) {
            ("message", "delivery-status" | "global-delivery-status") => {
                saw_report = true;
                read_status_fields(part.contents(), &mut bounce);
            }
            ("message", "rfc822" | "global") if original.is_none() => {
                original = part
                    .message()
                    .and_then(|m| m.message_id())
                    .and_then(qd_core::normalize_message_id)
                    .or_else(|| quoted_message_id(part.contents()));
            }
            ("text", "rfc822-headers") if original.is_none() => {
                original = quoted_message_id(part.contents());
            }
            // A read receipt (RFC 8098) or an abuse report (RFC 5965) quotes our message
            // and comes from a null sender too, but says nothing about its delivery.
            ("message", "disposition-notification" | "feedback-report") => return None,
            _ => {}
        }
    }
    bounce.standard = saw_report;
    if !saw_report {
        if !looks_like_bounce(&msg) {
            return None;
        }
        // The quoted original follows the bounce's own header block.
        let body_start = msg.root_part().offset_body as usize;
        // An attached original (message/rfc822, perhaps base64-encoded, so its
        // Message-ID is not in the raw text) found above wins over the quoted text.
        original =
            original.or_else(|| quoted_message_id(raw.get(body_start..).unwrap_or_default()));
        let text = String::from_utf8_lossy(raw.get(body_start..).unwrap_or_default()).into_owned();
        bounce.status = find_status_code(&text);
        bounce.diagnostic = text
            .lines()
            .map(str::trim)
            .find(|l| {
                let l = l.to_ascii_lowercase();
                l.starts_with('5')
                    || l.contains("user unknown")
                    || l.contains("does not exist")
                    || l.contains("no mailbox")
            })
            .map(|l| l.chars().take(300).collect());
        let subject = msg.subject().unwrap_or_default();
        bounce.action = Some(
            non_standard_action(&format!("{subject}\n{text}"), bounce.status.as_deref())
                .to_string(),
        );
    }
    if bounce.recipient.is_none() {
        bounce.recipient = msg
            .header_raw("X-Failed-Recipients")
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
    }
    bounce.original_message_id = original?;
    Some(bounce)
}

/// A bounce without a report part: from a mailer daemon or with a null Return-Path.
fn looks_like_bounce(msg: &mail_parser::Message<'_>) -> bool {
    let from_daemon = msg
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .and_then(|a| a.split('@').next())
        .map(|l| {
            let l = l.to_ascii_lowercase();
            l == "mailer-daemon" || l == "postmaster"
        })
        .unwrap_or(false);
    let null_return = msg
        .header_raw("Return-Path")
        .is_some_and(crate::autoreply::is_null_path);
    from_daemon || null_return || msg.header_raw("X-Failed-Recipients").is_some()
}

/// Per-message fields, a blank line, then one block per recipient (RFC 3464 §2.1).
/// The first recipient block with action `failed` wins, else the first block.
fn read_status_fields(text: &[u8], bounce: &mut Bounce) {
    let text = String::from_utf8_lossy(text).replace("\r\n", "\n");
    let mut blocks: Vec<Vec<(String, String)>> = Vec::new();
    let mut current: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        if line.trim().is_empty() {
            if !current.is_empty() {
                blocks.push(std::mem::take(&mut current));
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = current.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
            continue;
        }
        if let Some((k, v)) = line.split_once(':') {
            current.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    if !current.is_empty() {
        blocks.push(current);
    }
    let field = |b: &[(String, String)], name: &str| {
        b.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    };
    let recipients: Vec<&Vec<(String, String)>> = blocks
        .iter()
        .filter(|b| field(b, "final-recipient").is_some() || field(b, "action").is_some())
        .collect();
    let chosen = recipients
        .iter()
        .find(|b| field(b, "action").is_some_and(|a| a.eq_ignore_ascii_case("failed")))
        .or(recipients.first());
    let Some(b) = chosen else { return };
    let typed = |v: String| match v.split_once(';') {
        Some((_, rest)) => rest.trim().to_string(),
        None => v.trim().to_string(),
    };
    bounce.recipient = field(b, "final-recipient")
        .or_else(|| field(b, "original-recipient"))
        .map(typed)
        .map(|a| qd_core::normalize_address(&a));
    bounce.action = field(b, "action").map(|a| a.to_ascii_lowercase());
    bounce.status =
        field(b, "status").and_then(|s| s.split_whitespace().next().map(str::to_string));
    bounce.diagnostic = field(b, "diagnostic-code").map(typed);
}

/// The first `Message-ID:` header line in quoted headers (folded values included).
fn quoted_message_id(text: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(text);
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim_start_matches(['>', ' ', '\t']);
        let Some((name, value)) = trimmed.split_once(':') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("message-id") {
            continue;
        }
        let mut value = value.trim().to_string();
        if value.is_empty() {
            if let Some(next) = lines.peek() {
                value = next.trim().to_string();
            }
        }
        let id = value
            .split_whitespace()
            .next()
            .and_then(qd_core::normalize_message_id);
        if id.is_some() {
            return id;
        }
    }
    None
}

/// The action a bounce without a report states in words (its subject and its own text).
/// Such a notice may be a delay warning ("delivery delayed (#4.4.7), will keep
/// trying"), which must not fail the entry. Giving-up wording wins over the status:
/// qmail's "not going to try again" notice quotes the last temporary error (`#4.4.1`).
/// Then the status class decides (RFC 3463: 4 = persistent transient, 5 = permanent);
/// without a status, wording that promises more attempts makes a delay and wording of
/// failure a failure. A notice that says neither (an auto-reply from a null sender that
/// quotes our message) is `unknown`: it sits on the ticket and fails nothing.
fn non_standard_action(text: &str, status: Option<&str>) -> &'static str {
    let notice = own_text(text).to_lowercase();
    let says = |phrases: &[&str]| phrases.iter().any(|p| notice.contains(p));
    if says(GIVEN_UP) {
        return "failed";
    }
    match status.and_then(|s| s.chars().next()) {
        Some('4') => "delayed",
        Some('5') => "failed",
        _ if says(STILL_TRYING) => "delayed",
        _ if says(NOT_DELIVERED) => "failed",
        _ => "unknown",
    }
}

/// Wording of a notice that a message could not be delivered.
const NOT_DELIVERED: &[&str] = &[
    "undeliverable",
    "undelivered",
    "not delivered",
    "could not be delivered",
    "couldn't be delivered",
    "cannot be delivered",
    "can't be delivered",
    "unable to deliver",
    "wasn't able to deliver",
    "was not able to deliver",
    "delivery failed",
    "delivery has failed",
    "delivery to the following recipient",
    "failure notice",
    "delivery failure",
    "permanent error",
    "permanent fatal error",
    "returned mail",
    "user unknown",
    "unknown user",
    "no such user",
    "does not exist",
    "mailbox unavailable",
    "mailbox not found",
    "address rejected",
    "recipient rejected",
];

/// Wording of a notice that the sending server stopped trying.
const GIVEN_UP: &[&str] = &[
    "not going to try again",
    "will not try again",
    "won't try again",
    "giving up",
    "gave up",
    "given up",
    "retry timeout exceeded",
];

/// Wording of a notice that the sending server is still trying.
const STILL_TRYING: &[&str] = &[
    "will keep trying",
    "will continue trying",
    "will continue to try",
    "will retry",
    "will try again",
    "still trying",
    "delivery delayed",
    "delivery has been delayed",
    "delivery is delayed",
    "not yet been delivered",
    "no action is required",
    "warning message only",
    "do not need to resend",
];

/// The notice's own words: the text before the copy of our message, so that what a
/// staff reply says ("we will keep trying") cannot decide the outcome. The copy starts
/// at a separator line (`--- Below this line is a copy…`, Exim's `------ This is a
/// copy…`) or at the quoted Message-ID.
fn own_text(text: &str) -> &str {
    let mut end = 0;
    for line in text.split_inclusive('\n') {
        let t = line.trim_start_matches(['>', ' ', '\t']);
        if t.starts_with("---")
            || t.get(..11)
                .is_some_and(|h| h.eq_ignore_ascii_case("message-id:"))
        {
            break;
        }
        end += line.len();
    }
    text.get(..end).unwrap_or(text)
}

/// The first RFC 3463 status code (`[245].x.y`) in free text.
fn find_status_code(text: &str) -> Option<String> {
    for word in text.split(|c: char| {
        c.is_whitespace() || matches!(c, '(' | ')' | '[' | ']' | ',' | ';' | ':' | '#')
    }) {
        let parts: Vec<&str> = word.trim_end_matches('.').split('.').collect();
        if parts.len() == 3
            && matches!(parts[0], "2" | "4" | "5")
            && parts[1..]
                .iter()
                .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        {
            return Some(parts.join("."));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const DSN: &str = "From: Mail Delivery System <MAILER-DAEMON@mx.example>\r\n\
To: support@desk.example\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Message-ID: <dsn1@mx.example>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\r\n\
\r\n\
--B\r\n\
Content-Type: text/plain\r\n\
\r\n\
I'm sorry to have to inform you that your message could not be delivered.\r\n\
--B\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.example\r\n\
Arrival-Date: Wed, 25 Nov 2026 09:00:00 +0000\r\n\
\r\n\
Final-Recipient: rfc822; Gone@Customer.Example\r\n\
Original-Recipient: rfc822;gone@customer.example\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <gone@customer.example>: Recipient address\r\n\
\trejected: User unknown\r\n\
\r\n\
--B\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
From: support@desk.example\r\n\
Message-ID: <qd.1.abc@desk.example>\r\n\
Subject: [#QD-7] We received your message\r\n\
\r\n\
--B--\r\n";

    #[test]
    fn a_standard_dsn_is_read() {
        let b = parse_bounce(DSN.as_bytes()).expect("a bounce");
        assert_eq!(b.original_message_id, "qd.1.abc@desk.example");
        assert_eq!(b.recipient.as_deref(), Some("gone@customer.example"));
        assert_eq!(b.status.as_deref(), Some("5.1.1"));
        assert_eq!(b.action.as_deref(), Some("failed"));
        assert_eq!(
            b.diagnostic.as_deref(),
            Some("550 5.1.1 <gone@customer.example>: Recipient address rejected: User unknown")
        );
        assert!(b.standard && b.is_permanent_failure());
    }

    #[test]
    fn a_non_standard_bounce_with_quoted_headers_is_read() {
        let raw = "From: MAILER-DAEMON@old.example\r\n\
Subject: failure notice\r\n\
X-Failed-Recipients: gone@customer.example\r\n\
\r\n\
Hi. This is the qmail-send program at old.example.\r\n\
<gone@customer.example>:\r\n\
Sorry, no mailbox here by that name. (#5.1.1)\r\n\
\r\n\
--- Below this line is a copy of the message.\r\n\
\r\n\
Message-ID: <qd.2.def@desk.example>\r\n\
Subject: hello\r\n";
        let b = parse_bounce(raw.as_bytes()).expect("a bounce");
        assert_eq!(b.original_message_id, "qd.2.def@desk.example");
        assert_eq!(b.status.as_deref(), Some("5.1.1"));
        assert_eq!(b.recipient.as_deref(), Some("gone@customer.example"));
        assert!(!b.standard);
    }

    /// A plain-text delay notice counted as a permanent failure (the action was always
    /// `failed`) and failed the outbox entry of a message that was still on its way.
    #[test]
    fn a_non_standard_delay_notice_is_not_a_permanent_failure() {
        let qmail = |status: &str| {
            format!(
                "From: MAILER-DAEMON@old.example\r\n\
Subject: failure notice\r\n\
X-Failed-Recipients: gone@customer.example\r\n\
\r\n\
Hi. This is the qmail-send program at old.example.\r\n\
<gone@customer.example>:\r\n\
Sorry, no mailbox here by that name. (#{status})\r\n\
\r\n\
--- Below this line is a copy of the message.\r\n\
\r\n\
Message-ID: <qd.2.def@desk.example>\r\n\
Subject: hello\r\n"
            )
        };
        let delayed = parse_bounce(qmail("4.4.7").as_bytes()).expect("a bounce");
        assert_eq!(delayed.status.as_deref(), Some("4.4.7"));
        assert_eq!(delayed.action.as_deref(), Some("delayed"));
        assert!(!delayed.is_permanent_failure());
        let failed = parse_bounce(qmail("5.1.1").as_bytes()).expect("a bounce");
        assert_eq!(failed.action.as_deref(), Some("failed"));
        assert!(failed.is_permanent_failure());
    }

    /// Words decide where the status does not: giving up after temporary errors is a
    /// failure, a promise to keep trying without a status is a delay, and the copy of
    /// our message cannot speak for the notice.
    #[test]
    fn a_non_standard_notice_is_judged_by_its_own_words() {
        let notice = |words: &str, copy: &str| {
            format!(
                "From: MAILER-DAEMON@old.example\r\n\
Subject: mail delivery notice\r\n\
\r\n\
{words}\r\n\
\r\n\
--- Below this line is a copy of the message.\r\n\
\r\n\
Message-ID: <qd.4.jkl@desk.example>\r\n\
Subject: hello\r\n\
\r\n\
{copy}\r\n"
            )
        };
        let permanent = |words: &str, copy: &str| {
            parse_bounce(notice(words, copy).as_bytes())
                .expect("a bounce")
                .is_permanent_failure()
        };
        assert!(permanent(
            "Remote host said: 451 4.3.0 try later\r\n\
I'm not going to try again; this message has been in the queue too long.",
            ""
        ));
        assert!(!permanent(
            "Your message has not yet been delivered. We will keep trying.",
            ""
        ));
        assert!(permanent("Your message could not be delivered.", ""));
        assert!(permanent(
            "Your message could not be delivered.",
            "Do not worry, we will keep trying."
        ));
    }

    /// A non-standard bounce that attaches the original base64-encoded: its Message-ID
    /// is not in the raw text, only in the parsed attachment.
    #[test]
    fn a_non_standard_bounce_with_an_encoded_original_is_read() {
        let raw = "From: MAILER-DAEMON@old.example\r\n\
Subject: Undeliverable\r\n\
Content-Type: multipart/mixed; boundary=Z\r\n\
\r\n\
--Z\r\n\
Content-Type: text/plain\r\n\
\r\n\
550 5.1.1 user unknown\r\n\
--Z\r\n\
Content-Type: message/rfc822\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
RnJvbTogc3VwcG9ydEBkZXNrLmV4YW1wbGUNCk1lc3NhZ2UtSUQ6IDxxZC4zLmdoaUBkZXNrLmV4YW1wbGU+DQpTdWJqZWN0OiBbI1FELTldIHJlY2VpdmVkDQoNCnRoYW5rcw0K\r\n\
--Z--\r\n";
        let b = parse_bounce(raw.as_bytes()).expect("a bounce");
        assert_eq!(b.original_message_id, "qd.3.ghi@desk.example");
        assert!(!b.standard);
    }

    /// A read receipt comes from a null sender and quotes our Message-ID, but reports a
    /// delivery that happened: it is no bounce and fails nothing.
    #[test]
    fn a_read_receipt_is_not_a_bounce() {
        let raw = "Return-Path: <>\r\n\
From: Ann <ann@customer.example>\r\n\
Subject: Read: [#QD-7] your invoice\r\n\
Content-Type: multipart/report; report-type=disposition-notification; boundary=R\r\n\
\r\n\
--R\r\n\
Content-Type: text/plain\r\n\
\r\n\
Your message was displayed.\r\n\
--R\r\n\
Content-Type: message/disposition-notification\r\n\
\r\n\
Final-Recipient: rfc822; ann@customer.example\r\n\
Original-Message-ID: <qd.7.abc@desk.example>\r\n\
Disposition: manual-action/MDN-sent-manually; displayed\r\n\
--R\r\n\
Content-Type: text/rfc822-headers\r\n\
\r\n\
Message-ID: <qd.7.abc@desk.example>\r\n\
Subject: [#QD-7] your invoice\r\n\
--R--\r\n";
        assert_eq!(parse_bounce(raw.as_bytes()), None);
        let report = raw
            .replace("disposition-notification", "feedback-report")
            .replace(
                "Disposition: manual-action/MDN-sent-manually; displayed",
                "Feedback-Type: abuse",
            );
        assert_eq!(parse_bounce(report.as_bytes()), None);
    }

    /// An auto-reply from a null sender that quotes our message without a word of failure
    /// is kept as a notice (it reaches the ticket) but fails nothing.
    #[test]
    fn a_notice_without_failure_words_fails_nothing() {
        let raw = "Return-Path: <>\r\n\
From: Ann <ann@customer.example>\r\n\
Subject: Out of office\r\n\
\r\n\
I am away until Monday.\r\n\
\r\n\
> Message-ID: <qd.8.abc@desk.example>\r\n\
> Subject: [#QD-8] your invoice\r\n";
        let b = parse_bounce(raw.as_bytes()).expect("a notice");
        assert_eq!(b.original_message_id, "qd.8.abc@desk.example");
        assert_eq!(b.action.as_deref(), Some("unknown"));
        assert!(!b.is_permanent_failure());
    }

    #[test]
    fn ordinary_mail_is_not_a_bounce() {
        let raw = "From: ann@customer.example\r\nSubject: hi\r\nMessage-ID: <a@b>\r\n\r\nMessage-ID: <x@y>\r\n";
        assert_eq!(parse_bounce(raw.as_bytes()), None);
    }

    #[test]
    fn a_delay_warning_is_not_a_permanent_failure() {
        let raw = DSN
            .replace("Action: failed", "Action: delayed")
            .replace("5.1.1", "4.4.7");
        let b = parse_bounce(raw.as_bytes()).expect("a report");
        assert!(!b.is_permanent_failure());
    }
}
