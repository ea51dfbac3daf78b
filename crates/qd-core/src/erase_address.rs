//! Erasing one person's address from the header block of someone else's raw mail.
//!
//! When a person is erased, the mail other people sent stays (it is theirs), but the
//! erased person must not stay readable in it as a recipient. In the address fields
//! (To, Cc, Reply-To, Delivered-To, ...) the whole mailbox naming them — display name
//! and address — is replaced by [`ERASED_MAILBOX`]; elsewhere in the header block
//! (Received `for <…>`, an mbox `From ` line, ...) each occurrence of the address is.
//! Everything else stays byte for byte, folding included. The body is not touched:
//! quoted text is free text, not a recipient list.

/// What an erased mailbox becomes: a syntactically valid address in a reserved domain
/// (RFC 2606), so the mail still parses.
pub const ERASED_MAILBOX: &str = "erased@erased.invalid";

/// Fields whose value is a list of mailboxes.
const ADDRESS_FIELDS: &[&str] = &[
    "from",
    "sender",
    "reply-to",
    "to",
    "cc",
    "bcc",
    "resent-from",
    "resent-sender",
    "resent-to",
    "resent-cc",
    "resent-bcc",
    "return-path",
    "delivered-to",
    "x-original-to",
    "envelope-to",
    "x-envelope-to",
    "disposition-notification-to",
    "return-receipt-to",
    "errors-to",
    "mail-followup-to",
    "mail-reply-to",
];

/// `raw` with `address` erased from its header block, or `None` when the header block
/// does not name it. `address` is compared without regard to ASCII case.
pub fn erase_address_in_headers(raw: &[u8], address: &str) -> Option<Vec<u8>> {
    let address = address.trim().as_bytes();
    if address.is_empty() || !address.contains(&b'@') {
        return None;
    }
    let block = crate::header_fields(raw);
    let head = raw.get(..block.body_start)?;
    if find_address(head, address, 0).is_none() && !encoded_words_name(head, address) {
        return None;
    }
    let mut out = Vec::with_capacity(raw.len());
    for field in block.fields {
        let rewritten = match field_value(field) {
            Some((name_len, value)) if is_address_field(field[..name_len].trim_ascii()) => {
                let mut f = field[..name_len + 1].to_vec();
                f.extend_from_slice(&erase_mailboxes(value, address));
                f
            }
            _ => field.to_vec(),
        };
        let rewritten = replace_address(&rewritten, address);
        out.extend_from_slice(&erase_in_encoded_words(&rewritten, address));
    }
    out.extend_from_slice(raw.get(block.body_start..).unwrap_or_default());
    Some(out)
}

/// Fields that hold message ids (`<local@host>`), not addresses.
const ID_FIELDS: &[&str] = &[
    "message-id",
    "in-reply-to",
    "references",
    "resent-message-id",
    "content-id",
];

/// Fields the store keeps as columns of their own (the sender, `to_addrs`, `cc_addrs`).
const COLUMN_FIELDS: &[&str] = &["from", "to", "cc"];

/// Every address the header block of `raw` names, outside message ids, except those the
/// store keeps as columns: the mailbox addresses of To and Cc and the first of From.
/// That is Reply-To, Bcc, Delivered-To, Received `for <…>`, an mbox `From ` line, an
/// address in a Subject or in a display name, and so on. Each is lowercase, given once,
/// in order of appearance, and stands alone in the sense of
/// [`erase_address_in_headers`]: erasing any of them changes `raw`.
///
/// The store records this list with each message, so that an erasure finds the other
/// people's mail that names the erased person without opening every stored raw mail.
pub fn mentioned_addresses(raw: &[u8]) -> Vec<String> {
    let block = crate::header_fields(raw);
    let mut in_columns: Vec<String> = Vec::new();
    let mut mentioned: Vec<String> = Vec::new();
    for field in block.fields {
        let name = field_value(field).map(|(n, _)| field[..n].trim_ascii());
        let is = |list: &[&str]| {
            name.is_some_and(|n| list.iter().any(|f| f.as_bytes().eq_ignore_ascii_case(n)))
        };
        if is(ID_FIELDS) {
            continue;
        }
        if is(COLUMN_FIELDS) {
            // Only the mailboxes' own addresses are columns (From: the first one); a
            // display name's or a comment's address is not.
            let from = is(&["from"]);
            if let Some((_, value)) = field_value(field) {
                for (k, item) in split_list(value).into_iter().enumerate() {
                    if from && k > 0 {
                        break;
                    }
                    let item = item.strip_suffix(b",").unwrap_or(item);
                    if let Some(a) = mailbox_address(item) {
                        let a = String::from_utf8_lossy(&a).to_ascii_lowercase();
                        if !in_columns.contains(&a) {
                            in_columns.push(a);
                        }
                    }
                }
            }
        }
        // The field with its encoded words blanked out, then each word decoded (most
        // fields have none: no copy then).
        let words = encoded_words(field);
        let mut plain = std::borrow::Cow::Borrowed(field);
        for w in &words {
            plain.to_mut()[w.range.clone()].fill(b' ');
        }
        let decoded = words
            .into_iter()
            .map(|w| std::borrow::Cow::Owned(w.decoded));
        for text in std::iter::once(plain).chain(decoded) {
            for a in standalone_addresses(&text) {
                if !mentioned.contains(&a) {
                    mentioned.push(a);
                }
            }
        }
    }
    // An erasure's own placeholder names nobody.
    mentioned.retain(|a| !in_columns.contains(a) && a != ERASED_MAILBOX);
    mentioned
}

/// `text` with each standing-alone occurrence of `address` replaced by
/// [`ERASED_MAILBOX`] (a delivery error such as `550 <carl@example.org> unknown`), or
/// `None` when it has none.
pub fn erase_address_in_text(text: &str, address: &str) -> Option<String> {
    let address = address.trim().as_bytes();
    if address.is_empty() {
        return None;
    }
    find_address(text.as_bytes(), address, 0)?;
    String::from_utf8(replace_address(text.as_bytes(), address)).ok()
}

/// `raw` with each standing-alone occurrence of `address` replaced by
/// [`ERASED_MAILBOX`] anywhere, body included, or `None` when it has none: for mail
/// that holds nobody's own text, such as a delivery report quoting the undelivered
/// mail's recipients. Text in an encoded part (base64, quoted-printable) is not reached.
pub fn erase_address_everywhere(raw: &[u8], address: &str) -> Option<Vec<u8>> {
    let address = address.trim().as_bytes();
    if address.is_empty() {
        return None;
    }
    find_address(raw, address, 0)?;
    Some(replace_address(raw, address))
}

/// Whether `text` holds `address` standing alone (as [`erase_address_in_headers`]
/// would find it), ASCII case aside.
pub fn names_address(text: &str, address: &str) -> bool {
    let address = address.trim().as_bytes();
    !address.is_empty() && find_address(text.as_bytes(), address, 0).is_some()
}

fn local_char(b: &u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(b)
}

fn domain_char(b: &u8) -> bool {
    b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_'
}

/// The addresses in `text`, lowercase: around each `@`, the longest run of local-part
/// bytes before it and of domain labels after it, so that [`find_address`] finds each
/// one standing alone (a trailing dot ends a sentence, not the domain).
fn standalone_addresses(text: &[u8]) -> Vec<String> {
    let mut out = Vec::new();
    for (at, _) in text.iter().enumerate().filter(|(_, &b)| b == b'@') {
        let mut start = at;
        while start > 0 && local_char(&text[start - 1]) {
            start -= 1;
        }
        let mut end = at + 1;
        loop {
            match text.get(end) {
                Some(b) if domain_char(b) => end += 1,
                Some(b'.') if text.get(end + 1).is_some_and(domain_char) && end > at + 1 => {
                    end += 1
                }
                _ => break,
            }
        }
        if start == at || end == at + 1 {
            continue;
        }
        if let Ok(a) = std::str::from_utf8(&text[start..end]) {
            out.push(a.to_ascii_lowercase());
        }
    }
    out
}

/// An RFC 2047 encoded word (`=?charset?Q?text?=` or `?B?`) in a header field, or a run
/// of adjacent ones in the same charset, which decode as one text.
struct EncodedWord<'a> {
    /// Where the whole word (or run) stands in the field.
    range: std::ops::Range<usize>,
    charset: &'a [u8],
    /// `b'B'` or `b'Q'`, upper case.
    encoding: u8,
    /// The decoded bytes, in `charset`.
    decoded: Vec<u8>,
}

/// The encoded words of `text` that decode. Words in charsets that do not write ASCII
/// as ASCII (UTF-16, UTF-32, UTF-7) are left out: an address cannot be found in their bytes.
fn encoded_words(text: &[u8]) -> Vec<EncodedWord<'_>> {
    let mut out: Vec<EncodedWord<'_>> = Vec::new();
    let mut pos = 0;
    while let Some(start) = memfind(text, b"=?", pos) {
        pos = start + 2;
        let Some(q1) = memfind(text, b"?", pos) else {
            break;
        };
        let charset = &text[pos..q1];
        let (Some(&encoding), Some(b'?')) = (text.get(q1 + 1), text.get(q1 + 2)) else {
            continue;
        };
        let Some(end) = memfind(text, b"?=", q1 + 3) else {
            break;
        };
        let payload = &text[q1 + 3..end];
        if charset.is_empty()
            || charset
                .iter()
                .any(|b| b.is_ascii_whitespace() || *b == b'=')
            || payload.iter().any(u8::is_ascii_whitespace)
        {
            continue;
        }
        // RFC 2231 adds `*language` to the charset.
        let name = charset.split(|&b| b == b'*').next().unwrap_or_default();
        let wide = [
            b"utf-16".as_slice(),
            b"utf-32",
            b"utf-7",
            b"ucs-2",
            b"ucs-4",
        ]
        .iter()
        .any(|w| name.len() >= w.len() && name[..w.len()].eq_ignore_ascii_case(w));
        let encoding = encoding.to_ascii_uppercase();
        let decoded = match encoding {
            b'B' => {
                use base64::Engine;
                base64::engine::general_purpose::STANDARD
                    .decode(payload)
                    .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(payload))
                    .ok()
            }
            b'Q' => Some(q_decode(payload)),
            _ => None,
        };
        if let (Some(decoded), false) = (decoded, wide) {
            // RFC 2047 6.2: white space between adjacent encoded words is dropped, so a
            // long value split over several words (even mid-address) reads as one.
            match out.last_mut() {
                Some(prev)
                    if prev.charset.eq_ignore_ascii_case(charset)
                        && text[prev.range.end..start]
                            .iter()
                            .all(u8::is_ascii_whitespace) =>
                {
                    prev.range.end = end + 2;
                    prev.decoded.extend_from_slice(&decoded);
                }
                _ => out.push(EncodedWord {
                    range: start..end + 2,
                    charset,
                    encoding,
                    decoded,
                }),
            }
            pos = end + 2;
        }
    }
    out
}

fn memfind(text: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    text.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| from + p)
}

/// RFC 2047 Q: `_` is a space, `=XX` a byte; a malformed escape stays as written.
fn q_decode(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len());
    let mut i = 0;
    while i < payload.len() {
        match payload[i] {
            b'_' => out.push(b' '),
            b'=' => {
                let hex = payload
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(b) = hex {
                    out.push(b);
                    i += 3;
                    continue;
                }
                out.push(b'=');
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// RFC 2047 Q for a word anywhere in a header (the `phrase` rules, the strictest).
fn q_encode(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() * 3);
    for &b in bytes {
        match b {
            b' ' => out.push(b'_'),
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'!' | b'*' | b'+' | b'-' | b'/' => {
                out.push(b)
            }
            _ => out.extend_from_slice(format!("={b:02X}").as_bytes()),
        }
    }
    out
}

/// Whether an encoded word in `text` names `address` once decoded.
fn encoded_words_name(text: &[u8], address: &[u8]) -> bool {
    encoded_words(text)
        .iter()
        .any(|w| find_address(&w.decoded, address, 0).is_some())
}

/// `text` with each encoded word that names `address` encoded again (same charset and
/// encoding) with the address replaced: `=?utf-8?q?Anfrage_carl@example.org?=` becomes
/// `=?utf-8?Q?Anfrage_erased=40erased=2Einvalid?=`. The charsets kept are those that write
/// ASCII as ASCII, so the replacement is exact in their bytes.
fn erase_in_encoded_words(text: &[u8], address: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut pos = 0;
    for w in encoded_words(text) {
        if find_address(&w.decoded, address, 0).is_none() {
            continue;
        }
        let replaced = replace_address(&w.decoded, address);
        out.extend_from_slice(&text[pos..w.range.start]);
        out.extend_from_slice(b"=?");
        out.extend_from_slice(w.charset);
        out.push(b'?');
        out.push(w.encoding);
        out.push(b'?');
        if w.encoding == b'B' {
            use base64::Engine;
            out.extend_from_slice(
                base64::engine::general_purpose::STANDARD
                    .encode(&replaced)
                    .as_bytes(),
            );
        } else {
            out.extend_from_slice(&q_encode(&replaced));
        }
        out.extend_from_slice(b"?=");
        pos = w.range.end;
    }
    out.extend_from_slice(&text[pos..]);
    out
}

/// The length of the field name and the value after the colon.
fn field_value(field: &[u8]) -> Option<(usize, &[u8])> {
    let colon = field.iter().position(|&b| b == b':')?;
    // `To : x` is a field too (RFC 5322's obsolete syntax, which mail-parser reads).
    let name = field[..colon].trim_ascii();
    if name.is_empty() || name.iter().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    Some((colon, &field[colon + 1..]))
}

fn is_address_field(name: &[u8]) -> bool {
    ADDRESS_FIELDS
        .iter()
        .any(|f| f.as_bytes().eq_ignore_ascii_case(name))
}

/// The mailbox list with every mailbox whose address is `address` replaced (leading
/// white space and folding kept). Splits at commas outside quotes, comments and angle
/// brackets.
fn erase_mailboxes(value: &[u8], address: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(value.len());
    for item in split_list(value) {
        let (body, comma) = match item.last() {
            Some(b',') => (&item[..item.len() - 1], true),
            _ => (item, false),
        };
        if names(body, address) {
            let lead = body.iter().take_while(|b| b.is_ascii_whitespace()).count();
            let trail = body
                .iter()
                .rev()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
            // A group's name (`Team: ...`) stays, and so does its closing `;`.
            let lead = lead.max(group_prefix(body));
            out.extend_from_slice(&body[..lead]);
            let semicolon = body[..body.len() - trail].ends_with(b";");
            out.extend_from_slice(ERASED_MAILBOX.as_bytes());
            if semicolon {
                out.push(b';');
            }
            out.extend_from_slice(&body[body.len() - trail..]);
        } else {
            out.extend_from_slice(body);
        }
        if comma {
            out.push(b',');
        }
    }
    out
}

/// The length of a group's opening (`Name:` and the white space after it) at the
/// start of a list item, or 0.
fn group_prefix(item: &[u8]) -> usize {
    for (i, b, ctx) in contexts(item) {
        match (ctx, b) {
            (Ctx::Comment, _) | (Ctx::Bare, b'<' | b'@') => return 0,
            (Ctx::Bare, b':') => {
                let ws = item[i + 1..]
                    .iter()
                    .take_while(|b| b.is_ascii_whitespace())
                    .count();
                return i + 1 + ws;
            }
            _ => {}
        }
    }
    0
}

/// Items of a list, each with its trailing comma.
fn split_list(value: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let (mut angle, mut start) = (false, 0);
    for (i, b, ctx) in contexts(value) {
        match (ctx, b) {
            (Ctx::Bare, b'<') => angle = true,
            (Ctx::Bare, b'>') => angle = false,
            (Ctx::Bare, b',') if !angle => {
                out.push(&value[start..=i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if start < value.len() {
        out.push(&value[start..]);
    }
    out
}

/// Where a byte of a structured field value stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ctx {
    Bare,
    /// In a quoted string, its quotes included.
    Quoted,
    /// In a comment (nestable), its parentheses included.
    Comment,
}

/// Each byte of a structured field value with where it stands (RFC 5322 3.2: a
/// backslash escapes the next byte inside quotes and comments only).
fn contexts(text: &[u8]) -> impl Iterator<Item = (usize, u8, Ctx)> + '_ {
    let (mut quoted, mut escaped, mut depth) = (false, false, 0u32);
    text.iter().enumerate().map(move |(i, &b)| {
        let ctx = if escaped {
            escaped = false;
            if depth > 0 {
                Ctx::Comment
            } else {
                Ctx::Quoted
            }
        } else if depth > 0 {
            match b {
                b'\\' => escaped = true,
                b'(' => depth += 1,
                b')' => depth -= 1,
                _ => {}
            }
            Ctx::Comment
        } else if quoted {
            match b {
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
            Ctx::Quoted
        } else {
            match b {
                b'"' => {
                    quoted = true;
                    Ctx::Quoted
                }
                b'(' => {
                    depth = 1;
                    Ctx::Comment
                }
                _ => Ctx::Bare,
            }
        };
        (i, b, ctx)
    })
}

/// Whether a mailbox as written (`Name <addr>`, `addr`, `Group: addr`, with comments)
/// has exactly `address` as its address, ASCII case aside: `bob@example.org` is not
/// `ob@example.org`.
pub fn mailbox_is(mailbox: &str, address: &str) -> bool {
    names(mailbox.as_bytes(), address.trim().as_bytes())
}

/// [`mailbox_is`] on bytes.
fn names(mailbox: &[u8], address: &[u8]) -> bool {
    mailbox_address(mailbox).is_some_and(|a| a.eq_ignore_ascii_case(address))
}

/// The address of a mailbox as written (`Name <addr>`, `addr`, `Group: addr;`, with
/// comments), trimmed; `None` when nothing is left.
fn mailbox_address(mailbox: &[u8]) -> Option<Vec<u8>> {
    // Comments may hold `<`, `>` or `:` of their own.
    let stripped = without_comments(mailbox);
    let mailbox: &[u8] = &stripped;
    let addr = match (
        mailbox.iter().rposition(|&b| b == b'<'),
        mailbox.iter().rposition(|&b| b == b'>'),
    ) {
        (Some(open), Some(close)) if open < close => &mailbox[open + 1..close],
        _ => {
            // A bare address, perhaps after a group name or before a comment.
            let m = mailbox
                .iter()
                .rposition(|&b| b == b':')
                .map_or(mailbox, |c| &mailbox[c + 1..]);
            m.iter().position(|&b| b == b'(').map_or(m, |p| &m[..p])
        }
    };
    let addr = addr.trim_ascii();
    let addr = addr.strip_suffix(b";").unwrap_or(addr).trim_ascii();
    (!addr.is_empty()).then(|| addr.to_vec())
}

/// `text` without its comments (parenthesised, nestable, outside quoted strings).
fn without_comments(text: &[u8]) -> Vec<u8> {
    contexts(text)
        .filter(|(_, _, ctx)| *ctx != Ctx::Comment)
        .map(|(_, b, _)| b)
        .collect()
}

/// Every occurrence of `address` that stands alone (not part of a longer address)
/// replaced.
fn replace_address(text: &[u8], address: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut pos = 0;
    while let Some(at) = find_address(text, address, pos) {
        out.extend_from_slice(&text[pos..at]);
        out.extend_from_slice(ERASED_MAILBOX.as_bytes());
        pos = at + address.len();
    }
    out.extend_from_slice(&text[pos..]);
    out
}

/// The next occurrence of `address` from `from`, case-blind, bounded on both sides by
/// bytes that cannot continue an address.
fn find_address(text: &[u8], address: &[u8], from: usize) -> Option<usize> {
    let n = address.len();
    let mut i = from;
    while i + n <= text.len() {
        if text[i..i + n].eq_ignore_ascii_case(address) {
            let before = i.checked_sub(1).and_then(|j| text.get(j));
            let after = text.get(i + n);
            // A trailing dot ends a sentence, not a domain, unless a label follows.
            let continues_domain = match after {
                Some(b'.') => text.get(i + n + 1).is_some_and(domain_char),
                Some(b) => domain_char(b),
                None => false,
            };
            if !before.is_some_and(local_char) && !continues_domain {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_loses_the_address_in_its_body_too_and_only_standing_alone() {
        let raw = b"From: MAILER-DAEMON@mx.example\r\n\r\n<Erin@Example.org>: 550 unknown\r\n\
                    Cc: erin@example.org, xerin@example.org\r\n";
        let out = erase_address_everywhere(raw, "erin@example.org").unwrap();
        let out = String::from_utf8(out).unwrap();
        assert_eq!(
            out,
            "From: MAILER-DAEMON@mx.example\r\n\r\n<erased@erased.invalid>: 550 unknown\r\n\
             Cc: erased@erased.invalid, xerin@example.org\r\n"
        );
        assert_eq!(
            erase_address_everywhere(b"To: xerin@example.org\r\n", "erin@example.org"),
            None
        );
    }

    fn erase(raw: &str, address: &str) -> Option<String> {
        erase_address_in_headers(raw.as_bytes(), address).map(|v| String::from_utf8(v).unwrap())
    }

    const MAIL: &str = "Return-Path: <ann@example.com>\r\n\
Received: from mx.example.com by mx.desk.example\r\n\tfor <Carl@Example.org>; Mon, 4 Mar 2024 10:00:00 +0000\r\n\
From: Ann <ann@example.com>\r\n\
To: \"Desk, Support\" <help@desk.example>,\r\n Carl Cc <carl@example.org>, bob@example.org\r\n\
Cc: =?utf-8?q?Carl_M=C3=BCller?= <carl@example.org> (home)\r\n\
Subject: mail for carl@example.org.\r\n\
\r\n\
Carl <carl@example.org> wrote: hello\r\n";

    #[test]
    fn the_mailbox_goes_whole_and_the_rest_stays() {
        let out = erase(MAIL, "carl@example.org").unwrap();
        assert!(
            out.contains(
                "To: \"Desk, Support\" <help@desk.example>,\r\n erased@erased.invalid, bob@example.org\r\n"
            ),
            "{out}"
        );
        assert!(out.contains("Cc: erased@erased.invalid\r\n"), "{out}");
        assert!(out.contains("\tfor <erased@erased.invalid>;"), "{out}");
        assert!(
            out.contains("Subject: mail for erased@erased.invalid.\r\n"),
            "{out}"
        );
        assert!(
            !out.contains("Carl Cc") && !out.contains("M=C3=BCller"),
            "{out}"
        );
        // The body is the sender's text: untouched.
        assert!(out.ends_with("\r\n\r\nCarl <carl@example.org> wrote: hello\r\n"));
        // Nothing else moved.
        assert!(out.starts_with("Return-Path: <ann@example.com>\r\n"));
        assert!(out.contains("From: Ann <ann@example.com>\r\n"));
    }

    #[test]
    fn a_longer_address_is_someone_else() {
        let raw = "To: bcarl@example.org, carl@example.org.uk, <xcarl@example.org>\r\n\r\nhi\r\n";
        assert_eq!(erase(raw, "carl@example.org"), None);
        let raw = "To: undisclosed: carl@example.org;\r\n\r\n";
        assert_eq!(
            erase(raw, "carl@example.org").unwrap(),
            "To: undisclosed: erased@erased.invalid;\r\n\r\n"
        );
    }

    #[test]
    fn quoted_commas_and_comments_do_not_split_a_mailbox() {
        let raw = "Cc: \"Carl, the (one)\" <carl@example.org>, (x, y) dan@example.org\n\nbody\n";
        assert_eq!(
            erase(raw, "carl@example.org").unwrap(),
            "Cc: erased@erased.invalid, (x, y) dan@example.org\n\nbody\n"
        );
    }

    #[test]
    fn comments_and_spaced_names_do_not_hide_a_mailbox() {
        let raw = "To : Carl <carl@example.org> (a < b: c)\r\nCc: carl@example.org (Carl M\u{fc}ller: home)\r\n\r\n";
        assert_eq!(
            erase(raw, "carl@example.org").unwrap(),
            "To : erased@erased.invalid\r\nCc: erased@erased.invalid\r\n\r\n"
        );
    }

    #[test]
    fn mentions_are_the_addresses_outside_from_to_and_cc() {
        let raw = "From carl@example.org Mon Mar  4 10:00:00 2024\r\n\
Return-Path: <Bounce+x@Lists.Example.net>\r\n\
Received: from mx.example.com by mx.desk.example\r\n\tfor <dan@example.org>; Mon, 4 Mar 2024\r\n\
Message-ID: <id.1@example.com>\r\n\
References: <id.0@example.com>\r\n\
From: Ann <ann@example.com>\r\n\
To: help@desk.example, Carl <carl@example.org>\r\n\
Cc: bob@example.org\r\n\
Reply-To: Eve <eve@example.org>, dan@example.org\r\n\
Subject: for frank@example.org.\r\n\
\r\n\
body names gina@example.org\r\n";
        let mentioned = mentioned_addresses(raw.as_bytes());
        assert_eq!(
            mentioned,
            [
                "bounce+x@lists.example.net",
                "dan@example.org",
                "eve@example.org",
                "frank@example.org"
            ]
        );
        // Each is found by the erasure, which is what the list is for.
        for a in &mentioned {
            assert!(erase(raw, a).is_some(), "{a}");
            assert!(names_address(raw, a), "{a}");
        }
        assert!(!names_address(raw, "arl@example.org"));
    }

    #[test]
    fn only_the_mailboxes_the_columns_hold_are_left_out() {
        // A display name's address is no column, and only From's first mailbox is.
        let raw = "From: ann@example.com, Bea <bea@example.com>\r\n\
                   Cc: \"carl@example.org\" <carl.m@corp.example>, dan@example.org\r\n\
                   Reply-To: carl@example.org\r\n\r\n";
        assert_eq!(
            mentioned_addresses(raw.as_bytes()),
            ["bea@example.com", "carl@example.org"]
        );
    }

    #[test]
    fn encoded_words_lose_the_address_too() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let word = b64.encode("Frage von Carl@Example.org \u{fc}ber".as_bytes());
        let raw = format!(
            "Subject: =?utf-8?q?Anfrage_carl@example.org?= and =?UTF-8?B?{word}?=\r\n\
             X-Note: =?iso-8859-1?q?xcarl@example.org_f=FCr?=\r\n\r\nbody carl@example.org\r\n"
        );
        assert_eq!(
            mentioned_addresses(raw.as_bytes()),
            ["carl@example.org", "xcarl@example.org"]
        );
        let out = erase(&raw, "carl@example.org").unwrap();
        assert!(
            // Q as RFC 2047 wants it in a phrase: `@` and `.` escaped.
            out.starts_with(
                "Subject: =?utf-8?Q?Anfrage_erased=40erased=2Einvalid?= and =?UTF-8?B?"
            ),
            "{out}"
        );
        let b = out.split("?B?").nth(1).unwrap().split("?=").next().unwrap();
        let decoded = String::from_utf8(b64.decode(b).unwrap()).unwrap();
        assert_eq!(decoded, "Frage von erased@erased.invalid \u{fc}ber");
        // Someone else's longer address, and the body, stay as they were.
        assert!(
            out.contains("X-Note: =?iso-8859-1?q?xcarl@example.org_f=FCr?=\r\n"),
            "{out}"
        );
        assert!(out.ends_with("\r\n\r\nbody carl@example.org\r\n"));
        assert_eq!(
            erase(&out, "carl@example.org"),
            None,
            "nothing left to erase"
        );
        // A word that names only someone else gives nothing to do.
        assert_eq!(
            erase(
                "Subject: =?utf-8?q?xcarl@example.org?=\r\n\r\n",
                "carl@example.org"
            ),
            None
        );
    }

    #[test]
    fn an_address_split_over_two_encoded_words_is_found() {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let (one, two) = (
            b64.encode("Frage von car"),
            b64.encode("l@example.org \u{fc}ber"),
        );
        let raw = format!("Subject: =?UTF-8?B?{one}?=\r\n =?utf-8?B?{two}?= end\r\n\r\nbody\r\n");
        assert_eq!(mentioned_addresses(raw.as_bytes()), ["carl@example.org"]);
        let out = erase(&raw, "carl@example.org").unwrap();
        assert!(
            out.starts_with("Subject: =?UTF-8?B?") && out.ends_with("?= end\r\n\r\nbody\r\n"),
            "{out}"
        );
        let b = out.split("?B?").nth(1).unwrap().split("?=").next().unwrap();
        assert_eq!(
            String::from_utf8(b64.decode(b).unwrap()).unwrap(),
            "Frage von erased@erased.invalid \u{fc}ber"
        );
    }

    #[test]
    fn broken_encoded_words_are_text() {
        for raw in [
            "Subject: =?utf-8?q?carl@example.org\r\n\r\n",
            "Subject: =?utf-8?x?carl@example.org?=\r\n\r\n",
            "Subject: =?utf-8?b?***?=\r\n\r\n",
            "Subject: =??q?a?= =?utf-16?q?carl@example.org?=\r\n\r\n",
            "Subject: =?\r\n\r\n",
        ] {
            // No panic, and only what a plain scan finds counts.
            let _ = erase(raw, "carl@example.org");
            let _ = mentioned_addresses(raw.as_bytes());
        }
        assert_eq!(q_decode(b"a=4"), b"a=4");
        assert_eq!(q_decode(b"a_=3D=zz"), b"a ==zz");
    }

    #[test]
    fn text_loses_the_address() {
        assert_eq!(
            erase_address_in_text("550 5.1.1 <Carl@Example.org>: unknown", "carl@example.org")
                .as_deref(),
            Some("550 5.1.1 <erased@erased.invalid>: unknown")
        );
        assert_eq!(
            erase_address_in_text("550 xcarl@example.org", "carl@example.org"),
            None
        );
    }

    #[test]
    fn nothing_named_gives_none() {
        assert_eq!(erase(MAIL, "dan@example.org"), None);
        assert_eq!(erase("no headers at all", "carl@example.org"), None);
        assert_eq!(erase(MAIL, "not-an-address"), None);
    }
}
