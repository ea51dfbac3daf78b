//! Header anomalies (RFC 5322, RFC 2047): Message-ID shape, Date missing, absurd or
//! skewed, From/Reply-To/Return-Path mismatch, display-name spoofing, punycode and
//! homoglyph domains, missing or undisclosed To, many recipients, bulk-mailer
//! fingerprints, Subject encoding anomalies.

use chrono::{DateTime, TimeDelta, Utc};
use qd_mail::MessageView;
use regex::Regex;

use crate::util::{
    domain_of, host_in_domain, is_freemail, message_id_inner, registered_domain, Hits,
};

/// X-Mailer values of mass-mailing programs (lowercase substrings). Ordinary mail
/// clients are not listed: a bulk mailer is evidence, a mail client is not.
const BULK_MAILERS: &[&str] = &[
    "advanced mass sender",
    "aureate group mail",
    "group mail",
    "groupmail",
    "mailking",
    "mail king",
    "massmail",
    "mass mail",
    "mass mailer",
    "bulk mailer",
    "bulkmailer",
    "stealth mailer",
    "send-safe",
    "dark mailer",
    "darkmailer",
    "extractor pro",
    "email blaster",
    "e-mail blaster",
    "sendblaster",
    "atlas mailer",
    "mach5 mailer",
    "worldmerge",
    "mailloop",
    "floodgate",
    "emailer platinum",
    "express mailer",
    "super mailer",
    "supermailer",
    "ecmmailer",
    "fastmailer",
];

pub(crate) struct HeaderRules {
    /// RFC 5322 §3.3 date-time, allowing the obsolete forms mailers still produce.
    date: Regex,
}

impl HeaderRules {
    pub(crate) fn new() -> Result<Self, regex::Error> {
        Ok(HeaderRules {
            date: Regex::new(
                r"^(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun),\s*)?\d{1,2}\s+(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)\s+\d{2,4}\s+\d{1,2}:\d{2}(?::\d{2})?\s+(?:[+-]\d{4}|UT|GMT|EST|EDT|CST|CDT|MST|MDT|PST|PDT|Z)(?:\s*\(.*\))?$",
            )?,
        })
    }
}

pub(crate) fn check(
    view: &MessageView,
    rules: &HeaderRules,
    our_domains: &[String],
    now: DateTime<Utc>,
    hits: &mut Hits,
) {
    message_id(view, hits);
    date(view, rules, now, hits);
    senders(view, our_domains, hits);
    recipients(view, hits);
    mailer(view, hits);
    mailer_marks(view, hits);
    outlook_mid_time(view, hits);
    subject(view, hits);
    if view.header("In-Reply-To").is_some() || view.header("References").is_some() {
        hits.add(
            "HDR_REPLY",
            "part of a conversation (In-Reply-To/References)",
        );
    }
    if view
        .header("X-Priority")
        .is_some_and(|p| p.raw.trim().starts_with('1'))
    {
        hits.add("HDR_PRIORITY_HIGH", "X-Priority: 1 (highest)");
    }
    if view.eight_bit_headers() {
        hits.add("HDR_8BIT", "raw 8-bit bytes in the header block");
    }
    if view.no_headers() {
        hits.add("HDR_NONE", "the message does not start with header fields");
    }
}

fn message_id(view: &MessageView, hits: &mut Hits) {
    let Some(mid) = view.header("Message-ID") else {
        hits.add("MID_MISSING", "no Message-ID");
        return;
    };
    let raw = mid.raw.trim();
    let inner = message_id_inner(raw);
    if !raw.starts_with('<') || !raw.contains('>') {
        hits.add("MID_NO_BRACKETS", "Message-ID without angle brackets");
    }
    let Some((left, right)) = inner.rsplit_once('@') else {
        hits.add("MID_NO_AT", "Message-ID without @");
        return;
    };
    if left.is_empty() || right.is_empty() {
        hits.add("MID_EMPTY_PART", "Message-ID with an empty side");
        return;
    }
    let right = right.trim_start_matches('[').trim_end_matches(']');
    let labels: Vec<&str> = right.split('.').collect();
    let all_numeric = labels
        .iter()
        .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_digit()));
    if all_numeric && right.parse::<std::net::IpAddr>().is_err() {
        hits.add(
            "MID_HOST_NUMERIC",
            "Message-ID host is a fragment of an address",
        );
    } else if !right.contains('.') && !right.eq_ignore_ascii_case("localhost") {
        hits.add("MID_HOST_NO_DOT", "Message-ID host is not a domain");
    }
    if inner.contains(char::is_whitespace) {
        hits.add("MID_SPACE", "Message-ID contains white space");
    }
}

fn date(view: &MessageView, rules: &HeaderRules, now: DateTime<Utc>, hits: &mut Hits) {
    let Some(date) = view.header("Date") else {
        hits.add("DATE_MISSING", "no Date");
        return;
    };
    if !rules.date.is_match(date.raw.trim()) {
        hits.add("DATE_MALFORMED", "Date is not RFC 5322 date-time");
    }
    if zone_minutes(&date.raw).is_some_and(|z| !plausible_zone(z)) {
        hits.add(
            "DATE_TZ_ABSURD",
            "Date zone is an offset no place on Earth uses",
        );
    }
    let Some(sent) = date.date else {
        hits.add("DATE_INVALID", "Date does not parse");
        return;
    };
    // The newest trace stamp is when the message reached us; without one, `now`.
    let arrived = view
        .headers_named("Received")
        .find_map(|h| h.received.as_ref().and_then(|r| r.date))
        .unwrap_or(now);
    if sent - arrived > TimeDelta::hours(24) {
        hits.add("DATE_FUTURE", "Date is more than a day after arrival");
    } else if sent - arrived > TimeDelta::hours(3) {
        hits.add("DATE_AHEAD", "Date is hours after arrival");
    }
    if arrived - sent > TimeDelta::days(365 * 2) {
        hits.add("DATE_ABSURD_PAST", "Date is years before arrival");
    } else if arrived - sent > TimeDelta::days(4) {
        hits.add("DATE_PAST", "Date is days before arrival");
    }
    if sent.timestamp() < 631_152_000 {
        hits.add("DATE_BEFORE_1990", "Date is before 1990");
    }
}

/// The zone of a Date value (`+hhmm` or `-hhmm`, the last such token: a comment like
/// `(EDT)` may follow it) as signed minutes east of UTC.
fn zone_minutes(raw: &str) -> Option<i32> {
    raw.split_whitespace().rev().find_map(|token| {
        let sign = match token.as_bytes().first()? {
            b'+' => 1,
            b'-' => -1,
            _ => return None,
        };
        let digits = token.get(1..)?;
        if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let hours: i32 = digits.get(..2)?.parse().ok()?;
        let minutes: i32 = digits.get(2..)?.parse().ok()?;
        Some(sign * (hours * 60 + minutes))
    })
}

/// Civil time zones run from UTC−12:00 to UTC+14:00, in whole hours or at :30 or :45.
/// Anything else is written by software that computes zones wrongly, not by a clock.
fn plausible_zone(minutes: i32) -> bool {
    (-12 * 60..=14 * 60).contains(&minutes) && matches!(minutes.abs() % 60, 0 | 30 | 45)
}

fn first_address(view: &MessageView, name: &str) -> Option<qd_mail::Address> {
    view.header(name)
        .and_then(|h| h.addresses.iter().find(|a| !a.addr.is_empty()).cloned())
}

fn senders(view: &MessageView, our_domains: &[String], hits: &mut Hits) {
    let from_field = view.header("From");
    let Some(from) = first_address(view, "From") else {
        if from_field.is_some() {
            hits.add("FROM_NO_ADDRESS", "From holds no usable address");
        } else {
            hits.add("FROM_MISSING", "no From");
        }
        return;
    };
    if view.headers_named("From").count() > 1 {
        hits.add("FROM_MULTIPLE", "more than one From field");
    }
    // DMARC has no answer for a From of several domains (RFC 7489 6.6.1): mail-auth
    // skips it, so a forged `From: ceo@bank.example, x@attacker.example` would escape
    // the bank's reject policy without this.
    let mut from_domains: Vec<String> = view
        .headers_named("From")
        .flat_map(|h| h.addresses.iter())
        .filter_map(|a| domain_of(&a.addr).map(str::to_ascii_lowercase))
        .collect();
    from_domains.sort();
    from_domains.dedup();
    if from_domains.len() > 1 {
        hits.add(
            "FROM_MULTIPLE_DOMAINS",
            format!(
                "From names {} domains, which DMARC cannot check",
                from_domains.len()
            ),
        );
    }
    let Some(from_domain) = domain_of(&from.addr).map(str::to_ascii_lowercase) else {
        hits.add("FROM_NO_DOMAIN", "From address without a domain");
        return;
    };
    if !from_domain.contains('.') {
        hits.add("FROM_DOMAIN_NO_DOT", "From domain is not qualified");
    }
    let local = from.addr.split('@').next().unwrap_or_default();
    let digits = local.bytes().filter(u8::is_ascii_digit).count();
    if digits >= 4 && digits * 2 >= local.len() {
        hits.add("FROM_LOCAL_DIGITS", "From local part is mostly digits");
    }

    // Domains that pretend to be something they are not.
    for (field, domain) in [("From", Some(from_domain.clone()))].into_iter().chain(
        ["Reply-To", "Sender"].into_iter().map(|f| {
            (
                f,
                first_address(view, f).and_then(|a| domain_of(&a.addr).map(str::to_owned)),
            )
        }),
    ) {
        let Some(domain) = domain else { continue };
        if domain.split('.').any(|l| l.starts_with("xn--")) {
            hits.add("DOMAIN_PUNYCODE", format!("{field} domain is punycode"));
        }
        if !domain.is_ascii() {
            hits.add("DOMAIN_NON_ASCII", format!("{field} domain is not ASCII"));
        }
        for ours in our_domains {
            if !host_in_domain(&domain, ours) && looks_like(&domain, ours) {
                hits.add(
                    "DOMAIN_LOOKALIKE_OURS",
                    format!("{field} domain resembles one of ours"),
                );
            }
        }
    }

    if let Some(name) = from.name.as_deref() {
        let lname = name.to_ascii_lowercase();
        // A display name that is itself an address, but another one.
        if let Some(shown) = lname
            .split(|c: char| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\'' | '(' | ')'))
            .find(|w| w.contains('@') && w.contains('.'))
        {
            if shown != from.addr.to_ascii_lowercase() {
                hits.add(
                    "FROM_NAME_OTHER_ADDRESS",
                    "display name shows a different address",
                );
            }
        }
        for ours in our_domains {
            if lname.contains(&ours.to_ascii_lowercase()) && !host_in_domain(&from_domain, ours) {
                hits.add(
                    "FROM_NAME_SPOOFS_OURS",
                    "display name names our domain, address is elsewhere",
                );
            }
        }
    } else if from_field.is_some_and(|f| f.raw.trim_start().starts_with('<')) {
        hits.add("FROM_ANGLE_NO_NAME", "From is a bare <address>");
    } else {
        hits.add("FROM_NO_NAME", "From without a display name");
    }

    if let Some(reply) = first_address(view, "Reply-To") {
        if let Some(rd) = domain_of(&reply.addr) {
            if registered_domain(rd) != registered_domain(&from_domain) {
                if is_freemail(rd) {
                    hits.add(
                        "REPLYTO_FREEMAIL_DIFFERS",
                        "replies go to a free-mail address of another domain",
                    );
                } else {
                    hits.add(
                        "REPLYTO_DOMAIN_DIFFERS",
                        "Reply-To domain differs from From",
                    );
                }
            } else if is_freemail(rd) && !reply.addr.eq_ignore_ascii_case(&from.addr) {
                // One provider, two mailboxes: the sender is not who answers.
                hits.add(
                    "REPLYTO_FREEMAIL_DIFFERS",
                    "replies go to another free-mail mailbox",
                );
            }
        }
    }
    if let Some(rp) = view.header("Return-Path") {
        let rp = rp.raw.trim().trim_start_matches('<').trim_end_matches('>');
        if rp.is_empty() {
            // Null reverse path: a bounce or auto-reply, fine.
        } else if let Some(rd) = domain_of(rp) {
            if registered_domain(rd) != registered_domain(&from_domain) && is_freemail(&from_domain)
            {
                hits.add(
                    "FROM_FREEMAIL_RETURN_PATH_ELSEWHERE",
                    "free-mail From but another envelope sender",
                );
            }
        }
    }
}

/// Same registered name under another TLD, or one edit away (`examp1e.com`).
fn looks_like(domain: &str, ours: &str) -> bool {
    let d = registered_domain(domain);
    let o = registered_domain(ours);
    if d == o {
        return false;
    }
    let d_name = d.split('.').next().unwrap_or_default();
    let o_name = o.split('.').next().unwrap_or_default();
    d_name == o_name || (o_name.len() >= 5 && edit_distance(d_name, o_name) == 1)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn recipients(view: &MessageView, hits: &mut Hits) {
    let to: Vec<_> = view
        .headers_named("To")
        .flat_map(|h| h.addresses.iter())
        .filter(|a| !a.addr.is_empty())
        .collect();
    let cc = view
        .headers_named("Cc")
        .flat_map(|h| h.addresses.iter())
        .filter(|a| !a.addr.is_empty())
        .count();
    let to_field = view.header("To");
    match to_field {
        None => {
            if view.header("Cc").is_none() {
                hits.add("TO_MISSING", "no To or Cc");
            }
        }
        Some(f) => {
            let raw = f.raw.to_ascii_lowercase();
            if raw.contains("undisclosed")
                || raw.trim_end().ends_with(":;")
                || raw.trim().is_empty()
            {
                hits.add("TO_UNDISCLOSED", "recipients withheld");
            } else if to.is_empty() {
                hits.add("TO_NO_ADDRESS", "To holds no usable address");
            }
        }
    }
    // RFC 5322 §3.6.3: a Cc field holds at least one address (only Bcc may be empty).
    if view
        .headers_named("Cc")
        .any(|h| h.raw.trim().is_empty() && h.addresses.is_empty())
    {
        hits.add("CC_EMPTY", "an empty Cc field");
    }
    if to.len() + cc > 15 {
        hits.add("TO_MANY", format!("{} recipients", to.len() + cc));
    }
    // Sent "from" the very address it is sent to: bulk senders fill both from one row.
    if let ([only], Some(from)) = (to.as_slice(), first_address(view, "From")) {
        if cc == 0 && !from.addr.is_empty() && only.addr.eq_ignore_ascii_case(&from.addr) {
            hits.add("FROM_EQUALS_TO", "From is the recipient's own address");
        }
    }
    if to.len() > 1 {
        // Ratware sorts harvested lists: many recipients sharing one local part prefix or
        // one domain that is not the sender's.
        let lower = |a: &str| domain_of(a).map(str::to_ascii_lowercase);
        let same_domain = to
            .windows(2)
            .all(|w| lower(&w[0].addr) == lower(&w[1].addr));
        // Mail among colleagues (From and To at one organisation) is not a harvested list.
        let senders = first_address(view, "From")
            .and_then(|f| lower(&f.addr))
            .map(|d| registered_domain(&d));
        let senders_own = senders.is_some()
            && to
                .first()
                .and_then(|a| lower(&a.addr))
                .map(|d| registered_domain(&d))
                == senders;
        if same_domain && !senders_own && to.len() >= 5 {
            hits.add("TO_HARVESTED_LIST", "several To addresses at one domain");
        } else if to.len() >= 4
            && to
                .iter()
                .filter_map(|a| domain_of(&a.addr).map(str::to_ascii_lowercase))
                .collect::<std::collections::HashSet<_>>()
                .len()
                >= 3
            && shared_prefix(to.iter().map(|a| a.addr.as_str())) >= 3
        {
            // A dictionary walk across providers (`cpuma@…, cpumatt@…, cpun@…`).
            hits.add(
                "TO_HARVESTED_LIST",
                "several To addresses at other domains whose local parts start alike",
            );
        }
    }
}

/// Length in characters of the start all these addresses' local parts share.
fn shared_prefix<'a>(addrs: impl Iterator<Item = &'a str>) -> usize {
    let locals: Vec<Vec<char>> = addrs
        .map(|a| {
            let local = a.split('@').next().unwrap_or_default();
            local.to_lowercase().chars().collect()
        })
        .collect();
    let Some((first, rest)) = locals.split_first() else {
        return 0;
    };
    rest.iter()
        .map(|l| first.iter().zip(l).take_while(|(a, b)| a == b).count())
        .fold(first.len(), usize::min)
}

fn mailer(view: &MessageView, hits: &mut Hits) {
    let mailer = view
        .header("X-Mailer")
        .or_else(|| view.header("User-Agent"))
        .map(|h| h.raw.to_ascii_lowercase());
    let Some(mailer) = mailer else { return };
    if BULK_MAILERS.iter().any(|b| mailer.contains(b)) {
        hits.add("MAILER_BULK", "a known mass-mailing program");
    }
    // Windows Outlook Express writes exactly `Microsoft Outlook Express 6.00.2800.1106`;
    // ratware appends to the copied version (`5.00.2919.6900 DM`).
    if let Some(rest) = mailer.trim().strip_prefix("microsoft outlook express ") {
        let mut words = rest.split_whitespace();
        let version = words.next().unwrap_or_default();
        let windows_version = version.split('.').count() == 4
            && version
                .split('.')
                .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if windows_version && words.next().is_some() {
            hits.add(
                "MAILER_OE_MALFORMED",
                "Outlook Express version with words it never writes after it",
            );
        }
    }
    // Outlook Express always writes X-MimeOLE and a Message-ID of its own shape
    // (`<000801c2...$...@host>`); ratware copies the X-Mailer line only.
    if mailer.contains("outlook express") {
        let mid_ok = view
            .header("Message-ID")
            .is_some_and(|m| m.raw.trim_start_matches('<').starts_with("00"));
        if view.header("X-MimeOLE").is_none() || !mid_ok {
            hits.add(
                "MAILER_FORGED_OE",
                "Outlook Express without its other marks",
            );
        }
    }
    if mailer.contains("microsoft outlook") && !mailer.contains("express") {
        let has_mimeole = view.header("X-MimeOLE").is_some();
        let has_thread = view.header("Thread-Index").is_some();
        if !has_mimeole && !has_thread && view.header("Importance").is_none() {
            hits.add("MAILER_FORGED_OUTLOOK", "Outlook without its other marks");
        }
    }
    if mailer.trim().is_empty() || mailer.bytes().all(|b| b.is_ascii_digit() || b == b' ') {
        hits.add("MAILER_JUNK", "X-Mailer is empty or a number");
    }
}

/// Marks of a Microsoft mail program that ratware copies without the program: an
/// Outlook-shaped Message-ID or a priority field, with no mailer that writes them.
fn mailer_marks(view: &MessageView, hits: &mut Hits) {
    let mailer = view
        .header("X-Mailer")
        .or_else(|| view.header("User-Agent"))
        .map(|h| h.raw.to_ascii_lowercase());
    let microsoft = mailer
        .as_deref()
        .is_some_and(|m| m.contains("outlook") || m.contains("microsoft"))
        || view.header("X-MimeOLE").is_some();
    if !microsoft
        && view
            .header("Message-ID")
            .is_some_and(|m| outlook_shaped(&m.raw))
    {
        hits.add(
            "MID_OUTLOOK_FORGED",
            "Outlook-shaped Message-ID from no Microsoft mailer",
        );
    }
    if mailer.is_none()
        && (view.header("X-Priority").is_some() || view.header("X-MSMail-Priority").is_some())
    {
        hits.add(
            "PRIORITY_NO_MAILER",
            "a priority field but no X-Mailer or User-Agent",
        );
    }
}

/// `<12 hex>$<8 hex>$<8 hex>@host>`: the Message-ID Outlook and Outlook Express write.
fn outlook_shaped(raw: &str) -> bool {
    let inner = raw.trim().trim_start_matches('<');
    let Some((left, _)) = inner.split_once('@') else {
        return false;
    };
    let parts: Vec<&str> = left.split('$').collect();
    let hex = |p: &str, lo: usize, hi: usize| {
        (lo..=hi).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_hexdigit())
    };
    matches!(parts.as_slice(), [a, b, c] if hex(a, 8, 12) && hex(b, 8, 8) && hex(c, 8, 8))
}

/// How far (in FILETIME high-word ticks of 2^32 × 100 ns, about 7 minutes each) the time
/// in an Outlook Message-ID may lie from the Date or a Received stamp: 250 ticks, about
/// 30 hours, as in SpamAssassin's `check_outlook_message_id`.
const OUTLOOK_MID_FUDGE: i64 = 250;

/// Outlook and Outlook Express write Message-IDs `<ccccTTTTTTTT$tttttttt$hhhhhhhh@host>`
/// whose `TTTTTTTT` is the high word of the sending time as a Windows FILETIME. Ratware
/// copies the shape with random digits; its time then matches neither the Date nor any
/// Received stamp. Judged only when a date is there to compare with.
fn outlook_mid_time(view: &MessageView, hits: &mut Hits) {
    let Some(token) = view
        .header("Message-ID")
        .and_then(|m| outlook_time_token(&m.raw))
    else {
        return;
    };
    let mut times = view
        .header("Date")
        .and_then(|d| d.date)
        .into_iter()
        .chain(
            view.headers_named("Received")
                .filter_map(|h| h.received.as_ref().and_then(|r| r.date)),
        )
        .peekable();
    if times.peek().is_none() {
        return;
    }
    if times.all(|t| (token - filetime_high_word(t.timestamp())).abs() >= OUTLOOK_MID_FUDGE) {
        hits.add(
            "MID_OUTLOOK_TIME",
            "the time inside the Outlook-shaped Message-ID matches no date of the message",
        );
    }
}

/// The FILETIME high word of an Outlook Message-ID: hex digits 5–12 of an
/// [`outlook_shaped`] ID whose first part has all 12 digits.
fn outlook_time_token(raw: &str) -> Option<i64> {
    if !outlook_shaped(raw) {
        return None;
    }
    let first = raw.trim().trim_start_matches('<').split('$').next()?;
    if first.len() != 12 {
        return None;
    }
    i64::from_str_radix(first.get(4..)?, 16).ok()
}

/// The high 32 bits of the FILETIME (100 ns since 1601-01-01) of a Unix time.
fn filetime_high_word(unix_seconds: i64) -> i64 {
    const SECONDS_1601_TO_1970: i64 = 11_644_473_600;
    (unix_seconds.saturating_add(SECONDS_1601_TO_1970)).saturating_mul(10_000_000) >> 32
}

fn subject(view: &MessageView, hits: &mut Hits) {
    let Some(subject) = view.header("Subject") else {
        hits.add("SUBJ_MISSING", "no Subject");
        return;
    };
    if subject.eight_bit {
        hits.add("SUBJ_8BIT", "raw 8-bit Subject (RFC 2047 not used)");
    }
    if subject.encoded_charsets.len() > 1 {
        hits.add("SUBJ_MIXED_CHARSETS", "Subject mixes charsets");
    }
    if subject.encoded_words > 6 {
        hits.add(
            "SUBJ_MANY_ENCODED_WORDS",
            "Subject split into many encoded-words",
        );
    }
    // An encoded-word that decodes to plain ASCII hides the text from simple filters.
    if subject.encoded_words > 0 && subject.decoded.as_deref().is_some_and(str::is_ascii) {
        hits.add(
            "SUBJ_NEEDLESSLY_ENCODED",
            "Subject encoded although it is ASCII",
        );
    }
    if subject.raw.trim().is_empty() {
        hits.add("SUBJ_EMPTY", "empty Subject");
    }
}
