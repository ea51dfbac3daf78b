//! `parse`: mail-parser plus the fallbacks, defects and hash this project needs.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use mail_parser::decoders::{base64::base64_decode, quoted_printable::quoted_printable_decode};
use mail_parser::{
    Encoding, Header, HeaderName, HeaderValue, Message, MessagePart, MimeHeaders, PartType,
};
use qd_core::{normalize_address, normalize_message_id};
use sha2::{Digest, Sha256};

use crate::charset::{self, Label};
use crate::envelope::{is_header_line, strip_mbox_envelope};
use crate::hash::{content_hash, fold_whitespace, Identity};
use crate::{Address, AttachmentInfo, Defect, MessageView, ParsedMail};

/// Parses raw message bytes (an optional leading mbox `From ` line is stripped).
///
/// Never fails and never panics: whatever is wrong with the input is listed in
/// [`ParsedMail::defects`], and the fields hold whatever could be recovered.
pub fn parse(raw: &[u8]) -> ParsedMail {
    parse_inner(raw, false).0
}

/// [`parse`] and [`MessageView::from_raw`] of the same bytes, from one mail-parser pass
/// where both would read the same bytes (headers that need re-encoding first are parsed
/// twice, so each result is exactly what its own function gives). The pipeline needs
/// both: the store takes the parsed mail, the filter the view without text.
pub fn parse_with_view(raw: &[u8]) -> (ParsedMail, MessageView) {
    let (mail, view) = parse_inner(raw, true);
    (mail, view.unwrap_or_else(|| MessageView::from_raw(raw)))
}

fn parse_inner(input: &[u8], want_view: bool) -> (ParsedMail, Option<MessageView>) {
    let (raw, stripped) = strip_mbox_envelope(input);
    let mut defects = Defects::default();
    if stripped {
        defects.push(Defect::MboxEnvelopeStripped);
    }

    let layout = Layout::of(raw);
    if !layout.has_headers {
        defects.push(Defect::NoHeaders);
    }
    if layout.has_headers && !layout.terminated && !raw.ends_with(b"\n") {
        defects.push(Defect::Truncated);
    }

    let header_block = raw.get(..layout.header_end).unwrap_or_default();
    let transcoded;
    let buf = if header_block.iter().any(|b| !b.is_ascii()) {
        defects.push(Defect::EightBitHeaders);
        if std::str::from_utf8(header_block).is_ok() {
            raw
        } else {
            transcoded = transcode_header_block(raw, layout.header_end);
            transcoded.as_slice()
        }
    } else {
        raw
    };

    let body = raw.get(layout.body_start..).unwrap_or_default();
    // The contract is "never panics" and mail-parser is third-party code fed hostile
    // input. The proptests are the first line of defence; this is the backstop, so one
    // bad message in an import becomes an `Unparseable` defect rather than a dead worker.
    // Mail that could nest messages too deep is read for its headers only (`guard`).
    let parsed = crate::guard::parse(buf);
    let (message, body_skipped) = (parsed.message, parsed.body_skipped);
    // The view reads the bytes as they came; it shares this parse only if it read them.
    let view = (want_view && std::ptr::eq(buf, raw)).then(|| {
        let mut view = MessageView::build(input, message.as_ref());
        view.truncated_tree |= body_skipped;
        view
    });
    if body_skipped {
        defects.push(Defect::MalformedMime);
    }
    let mut mail = match message {
        Some(message) if !message.parts.is_empty() => {
            from_message(&message, buf, body, raw.len(), defects)
        }
        _ => unparseable(raw, body, defects),
    };
    if body_skipped {
        // The text staff see and search: the body as it came, decoded best-effort.
        mail.text = charset::decode_unlabelled(body).into_owned();
    }
    (mail, view)
}

/// Where the header block ends, by our own reading (mail-parser's offsets are not used
/// for the hash, so the hash does not depend on its recovery heuristics).
struct Layout {
    has_headers: bool,
    /// A blank line ends the header block.
    terminated: bool,
    /// Length of the header block including the line break of its last line.
    header_end: usize,
    /// Start of the body, after the blank line.
    body_start: usize,
}

impl Layout {
    fn of(raw: &[u8]) -> Layout {
        let first_line =
            memchr::memchr(b'\n', raw).map_or(raw, |nl| raw.get(..nl).unwrap_or_default());
        if !is_header_line(first_line) {
            return Layout {
                has_headers: false,
                terminated: false,
                header_end: 0,
                body_start: 0,
            };
        }
        for nl in memchr::memchr_iter(b'\n', raw) {
            let next = raw.get(nl + 1..).unwrap_or_default();
            let Some(blank) = qd_core::blank_line_len(next) else {
                continue;
            };
            return Layout {
                has_headers: true,
                terminated: true,
                header_end: nl + 1,
                body_start: nl + 1 + blank,
            };
        }
        Layout {
            has_headers: true,
            terminated: false,
            header_end: raw.len(),
            body_start: raw.len(),
        }
    }
}

/// Header lines that are not UTF-8 are re-encoded from windows-1252, so mail-parser (which
/// decodes raw header bytes as lossy UTF-8) sees text instead of U+FFFD.
fn transcode_header_block(raw: &[u8], header_end: usize) -> Vec<u8> {
    let (headers, rest) = raw.split_at(header_end.min(raw.len()));
    let mut out = Vec::with_capacity(raw.len() + headers.len() / 4);
    for line in headers.split_inclusive(|&b| b == b'\n') {
        if std::str::from_utf8(line).is_ok() {
            out.extend_from_slice(line);
        } else {
            let (text, _, _) = encoding_rs::WINDOWS_1252.decode(line);
            out.extend_from_slice(text.as_bytes());
        }
    }
    out.extend_from_slice(rest);
    out
}

fn unparseable(raw: &[u8], body: &[u8], mut defects: Defects) -> ParsedMail {
    defects.push(Defect::Unparseable);
    defects.push(Defect::MissingFrom);
    defects.push(Defect::MissingMessageId);
    defects.push(Defect::MissingDate);
    ParsedMail {
        message_id: None,
        in_reply_to: Vec::new(),
        references: Vec::new(),
        from: None,
        reply_to: None,
        to: Vec::new(),
        cc: Vec::new(),
        date: None,
        subject: None,
        text: charset::decode_unlabelled(raw).into_owned(),
        html: None,
        attachments: Vec::new(),
        defects: defects.0,
        size: raw.len(),
        content_hash: content_hash(&Identity::default(), body),
    }
}

/// The first occurrence of each header we read (To and Cc: every occurrence).
#[derive(Default)]
struct Fields<'m, 'x> {
    message_id: Option<&'m Header<'x>>,
    in_reply_to: Option<&'m Header<'x>>,
    references: Vec<&'m Header<'x>>,
    from: Option<&'m Header<'x>>,
    reply_to: Option<&'m Header<'x>>,
    to: Vec<&'m Header<'x>>,
    cc: Vec<&'m Header<'x>>,
    date: Option<&'m Header<'x>>,
    subject: Option<&'m Header<'x>>,
}

impl<'m, 'x> Fields<'m, 'x> {
    fn of(headers: &'m [Header<'x>]) -> Self {
        let mut fields = Fields::default();
        for header in headers {
            let slot = match header.name {
                HeaderName::MessageId => &mut fields.message_id,
                HeaderName::InReplyTo => &mut fields.in_reply_to,
                HeaderName::From => &mut fields.from,
                HeaderName::ReplyTo => &mut fields.reply_to,
                HeaderName::Date => &mut fields.date,
                HeaderName::Subject => &mut fields.subject,
                HeaderName::References => {
                    fields.references.push(header);
                    continue;
                }
                HeaderName::To => {
                    fields.to.push(header);
                    continue;
                }
                HeaderName::Cc => {
                    fields.cc.push(header);
                    continue;
                }
                _ => continue,
            };
            slot.get_or_insert(header);
        }
        fields
    }
}

fn from_message(
    message: &Message<'_>,
    buf: &[u8],
    body: &[u8],
    size: usize,
    mut defects: Defects,
) -> ParsedMail {
    let root_headers = message
        .parts
        .first()
        .map_or(&[][..], |p| p.headers.as_slice());
    let fields = Fields::of(root_headers);
    let mut identity = Identity::default();

    let message_id = match fields.message_id {
        None => {
            defects.push(Defect::MissingMessageId);
            None
        }
        Some(header) => {
            let id = ids(&header.value).into_iter().next();
            match &id {
                Some(id) => identity.message_id.clone_from(id),
                None => {
                    defects.push(Defect::InvalidMessageId);
                    identity.message_id = raw_text(buf, header);
                }
            }
            id
        }
    };
    let in_reply_to = fields
        .in_reply_to
        .map(|h| ids(&h.value))
        .unwrap_or_default();
    let references = fields
        .references
        .iter()
        .flat_map(|h| ids(&h.value))
        .collect();

    let from = match fields.from {
        None => {
            defects.push(Defect::MissingFrom);
            None
        }
        Some(header) => {
            let from = addresses(&header.value).into_iter().next();
            match &from {
                Some(from) => identity.from = display(std::slice::from_ref(from)),
                None => {
                    defects.push(Defect::InvalidFrom);
                    identity.from = raw_text(buf, header);
                }
            }
            from
        }
    };
    let reply_to = fields
        .reply_to
        .and_then(|h| addresses(&h.value).into_iter().next());
    let to: Vec<Address> = fields.to.iter().flat_map(|h| addresses(&h.value)).collect();
    let cc: Vec<Address> = fields.cc.iter().flat_map(|h| addresses(&h.value)).collect();
    identity.to = display(&to);
    identity.cc = display(&cc);

    let date = match fields.date {
        None => {
            defects.push(Defect::MissingDate);
            None
        }
        Some(header) => {
            let date = match &header.value {
                HeaderValue::DateTime(dt) => to_utc(dt),
                _ => None,
            };
            match date {
                Some(date) => identity.date = date.to_rfc3339(),
                None => {
                    defects.push(Defect::InvalidDate);
                    identity.date = raw_text(buf, header);
                }
            }
            date
        }
    };

    let subject = fields
        .subject
        .and_then(|h| h.value.as_text())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    if let Some(subject) = &subject {
        identity.subject = fold_whitespace(subject);
    }

    let mut text = body_text(message, buf, &mut defects);
    let html = body_html(message, buf, &mut defects);
    let attachments = attachments(message, buf);
    structure_defects(message, buf, &mut defects);
    let broken =
        defects.0.contains(&Defect::Truncated) || defects.0.contains(&Defect::MalformedMime);
    if text.trim().is_empty() && html.is_none() && broken {
        // mail-parser drops the text of a part it could not close; staff still need to
        // find the message by what it says.
        let start = message.parts.first().map_or(0, |p| p.offset_body as usize);
        text = salvage_text(buf.get(start..).unwrap_or_default());
    }
    let parser_saw_no_body = message
        .parts
        .first()
        .is_some_and(|p| p.offset_body as usize >= buf.len());
    if text.trim().is_empty() && html.is_none() && parser_saw_no_body {
        // A header block ended by a line of white space: mail-parser reads the body as
        // more (broken) header lines; by our reading it is the body.
        text = charset::decode_unlabelled(body).into_owned();
    }

    ParsedMail {
        message_id,
        in_reply_to,
        references,
        from,
        reply_to,
        to,
        cc,
        date,
        subject,
        text,
        html,
        attachments,
        defects: defects.0,
        size,
        content_hash: content_hash(&identity, body),
    }
}

fn ids(value: &HeaderValue<'_>) -> Vec<String> {
    match value {
        HeaderValue::Text(id) => normalize_message_id(id).into_iter().collect(),
        HeaderValue::TextList(ids) => ids
            .iter()
            .filter_map(|id| normalize_message_id(id))
            .collect(),
        _ => Vec::new(),
    }
}

fn addresses(value: &HeaderValue<'_>) -> Vec<Address> {
    let HeaderValue::Address(list) = value else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|a| {
            let addr = normalize_address(a.address.as_deref()?);
            if addr.is_empty() {
                return None;
            }
            let name = a
                .name
                .as_deref()
                .map(fold_whitespace)
                .filter(|n| !n.is_empty());
            Some(Address { name, addr })
        })
        .collect()
}

fn display(addresses: &[Address]) -> String {
    let mut out = String::new();
    for a in addresses {
        if !out.is_empty() {
            out.push_str(", ");
        }
        if let Some(name) = &a.name {
            out.push_str(name);
            out.push(' ');
        }
        out.push('<');
        out.push_str(&a.addr);
        out.push('>');
    }
    out
}

fn raw_text(buf: &[u8], header: &Header<'_>) -> String {
    let bytes = buf
        .get(header.offset_start as usize..header.offset_end as usize)
        .unwrap_or_default();
    fold_whitespace(&String::from_utf8_lossy(bytes))
}

fn to_utc(dt: &mail_parser::DateTime) -> Option<DateTime<Utc>> {
    if !dt.is_valid() {
        return None;
    }
    let local = NaiveDate::from_ymd_opt(dt.year.into(), dt.month.into(), dt.day.into())?
        // A leap second (`:60`) is real but chrono wants it as a nanosecond overflow.
        .and_hms_opt(dt.hour.into(), dt.minute.into(), dt.second.min(59).into())?;
    let offset = i64::from(dt.tz_hour) * 3600 + i64::from(dt.tz_minute) * 60;
    let offset = if dt.tz_before_gmt { -offset } else { offset };
    local
        .checked_sub_signed(TimeDelta::try_seconds(offset)?)
        .map(|naive| naive.and_utc())
}

/// The plain-text body: text parts as they are, HTML-only body parts rendered as text.
fn body_text(message: &Message<'_>, buf: &[u8], defects: &mut Defects) -> String {
    let mut text = String::new();
    for part in message
        .text_body
        .iter()
        .filter_map(|&id| message.parts.get(id as usize))
    {
        let piece = match &part.body {
            PartType::Text(t) => decode_text(buf, part, t, defects),
            PartType::Html(h) => Cow::Owned(crate::html::html_to_text(&decode_text(
                buf, part, h, defects,
            ))),
            _ => continue,
        };
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&piece);
    }
    text
}

fn body_html(message: &Message<'_>, buf: &[u8], defects: &mut Defects) -> Option<String> {
    let mut html: Option<String> = None;
    for part in message
        .html_body
        .iter()
        .filter_map(|&id| message.parts.get(id as usize))
    {
        if let PartType::Html(h) = &part.body {
            let piece = decode_text(buf, part, h, defects);
            match &mut html {
                Some(html) => {
                    html.push('\n');
                    html.push_str(&piece);
                }
                None => html = Some(piece.into_owned()),
            }
        }
    }
    html
}

/// Second-guesses mail-parser's charset decoding where it silently fell back to lossy
/// UTF-8 (see `charset`). Only parts that contain U+FFFD are looked at again, so the
/// common case costs one scan and no copy.
fn decode_text<'a>(
    buf: &[u8],
    part: &MessagePart<'_>,
    text: &'a str,
    defects: &mut Defects,
) -> Cow<'a, str> {
    let label = part.content_type().and_then(|ct| ct.attribute("charset"));
    match charset::classify(label) {
        Label::Unknown => {
            defects.push(Defect::UnknownCharset);
            // A label nobody knows (`unknown-8bit`, `x-user-defined`, a typo) says no
            // more than a missing one: the same best guess beats replacement characters,
            // which no search finds.
            if text.contains(char::REPLACEMENT_CHARACTER) {
                let bytes = transfer_decoded(buf, part);
                if std::str::from_utf8(&bytes).is_err() {
                    return Cow::Owned(charset::decode_unlabelled(&bytes).into_owned());
                }
            }
        }
        Label::Known => {
            if text.contains(char::REPLACEMENT_CHARACTER) {
                defects.push(Defect::UndecodableText);
            }
            // UTF-8 labelled us-ascii or Latin-1 reads as "cafÃ©". Bytes that are valid
            // UTF-8 with multi-byte sequences are practically never real Latin-1 text.
            if !text.is_ascii() && label.is_some_and(charset::often_mislabelled_utf8) {
                if let Cow::Owned(utf8) = reread_as_utf8(buf, part) {
                    defects.push(Defect::MislabelledCharset);
                    return Cow::Owned(utf8);
                }
            }
        }
        Label::Utf8 => {
            if text.contains(char::REPLACEMENT_CHARACTER)
                && std::str::from_utf8(&transfer_decoded(buf, part)).is_err()
            {
                defects.push(Defect::UndecodableText);
            }
        }
        Label::Missing => {
            if text.contains(char::REPLACEMENT_CHARACTER) {
                let bytes = transfer_decoded(buf, part);
                if std::str::from_utf8(&bytes).is_err() {
                    return Cow::Owned(charset::decode_unlabelled(&bytes).into_owned());
                }
            }
        }
    }
    Cow::Borrowed(text)
}

/// The part's bytes as UTF-8, when they are valid UTF-8 and not plain ASCII
/// (`Cow::Owned`); `Cow::Borrowed("")` otherwise.
fn reread_as_utf8(buf: &[u8], part: &MessagePart<'_>) -> Cow<'static, str> {
    let bytes = transfer_decoded(buf, part);
    match std::str::from_utf8(&bytes) {
        Ok(text) if !text.is_ascii() => Cow::Owned(text.to_owned()),
        _ => Cow::Borrowed(""),
    }
}

/// A part's body after Content-Transfer-Encoding, before any charset decoding, read
/// again from the raw bytes because mail-parser keeps text parts only as decoded strings.
fn transfer_decoded<'b>(buf: &'b [u8], part: &MessagePart<'_>) -> Cow<'b, [u8]> {
    let Some(raw) = buf.get(part.offset_body as usize..part.offset_end as usize) else {
        return Cow::Borrowed(&[]);
    };
    let decoded = match part.encoding {
        Encoding::Base64 => base64_decode(raw),
        Encoding::QuotedPrintable => quoted_printable_decode(raw),
        Encoding::None => None,
    };
    decoded.map_or(Cow::Borrowed(raw), Cow::Owned)
}

fn attachments(message: &Message<'_>, buf: &[u8]) -> Vec<AttachmentInfo> {
    let mut out = Vec::with_capacity(message.attachments.len());
    for part in message
        .attachments
        .iter()
        .filter_map(|&id| message.parts.get(id as usize))
    {
        let bytes = match &part.body {
            PartType::Binary(b) | PartType::InlineBinary(b) => Cow::Borrowed(b.as_ref()),
            PartType::Text(_) | PartType::Html(_) | PartType::Message(_) => {
                transfer_decoded(buf, part)
            }
            PartType::Multipart(_) => continue,
        };
        out.push(AttachmentInfo {
            filename: part
                .attachment_name()
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned),
            content_type: content_type(part),
            size: bytes.len() as u64,
            sha256: hex::encode(Sha256::digest(&bytes)),
        });
    }
    out
}

fn content_type(part: &MessagePart<'_>) -> String {
    let default_subtype = match &part.body {
        PartType::Text(_) => "plain",
        PartType::Html(_) => "html",
        PartType::Message(_) => "rfc822",
        _ => "octet-stream",
    };
    let Some(ct) = part.content_type() else {
        return match &part.body {
            PartType::Text(_) | PartType::Html(_) => format!("text/{default_subtype}"),
            PartType::Message(_) => "message/rfc822".to_owned(),
            _ => "application/octet-stream".to_owned(),
        };
    };
    let mut out = ct.ctype().trim().to_ascii_lowercase();
    out.push('/');
    match ct.subtype().map(str::trim).filter(|s| !s.is_empty()) {
        Some(sub) => out.push_str(&sub.to_ascii_lowercase()),
        None => out.push_str(default_subtype),
    }
    out
}

fn structure_defects(message: &Message<'_>, buf: &[u8], defects: &mut Defects) {
    // Where each closing delimiter line last occurs, from one pass over the input (a
    // backward search per multipart cost time quadratic in the number of parts: a 5 MB
    // message of 75,000 small multiparts took minutes).
    let mut closes: Option<std::collections::HashMap<&[u8], usize>> = None;
    for part in &message.parts {
        // mail-parser flags a message without a body this way too; that is not a defect.
        let bodiless = part.offset_body as usize >= buf.len() && part.contents().is_empty();
        if part.is_encoding_problem && !bodiless {
            defects.push(Defect::MalformedMime);
        }
        if let PartType::Multipart(_) = part.body {
            let Some(boundary) = part.content_type().and_then(|ct| ct.attribute("boundary")) else {
                continue;
            };
            let closes = closes.get_or_insert_with(|| closing_delimiters(buf));
            let closed = closes
                .get(boundary.as_bytes())
                .is_some_and(|&at| at >= part.offset_body as usize);
            if !closed {
                defects.push(Defect::Truncated);
            }
        }
    }
}

/// Every line of the form `--boundary--` (RFC 2046 5.1.1; trailing white space
/// allowed), by boundary, with the offset of its last occurrence.
fn closing_delimiters(buf: &[u8]) -> std::collections::HashMap<&[u8], usize> {
    let mut out = std::collections::HashMap::new();
    let mut start = 0;
    while start < buf.len() {
        let end = memchr::memchr(b'\n', &buf[start..]).map_or(buf.len(), |nl| start + nl);
        let line = buf[start..end].trim_ascii_end();
        if line.len() >= 4 && line.starts_with(b"--") && line.ends_with(b"--") {
            out.insert(&line[2..line.len() - 2], start);
        }
        start = end + 1;
    }
    out
}

/// Best-effort text of a body whose MIME structure is broken: boundary lines and the
/// part headers after them are dropped, the rest decoded as UTF-8 or windows-1252.
fn salvage_text(body: &[u8]) -> String {
    let decoded = match std::str::from_utf8(body) {
        Ok(s) => Cow::Borrowed(s),
        Err(_) => encoding_rs::WINDOWS_1252.decode(body).0,
    };
    let mut out = String::new();
    let mut in_part_headers = false;
    for line in decoded.lines() {
        if line.starts_with("--") && !line.contains(' ') {
            in_part_headers = true;
            continue;
        }
        if in_part_headers {
            if line.trim().is_empty() {
                in_part_headers = false;
            }
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out.trim().to_string()
}

/// Defects in order of discovery, each once.
#[derive(Default)]
struct Defects(Vec<Defect>);

impl Defects {
    fn push(&mut self, defect: Defect) {
        if !self.0.contains(&defect) {
            self.0.push(defect);
        }
    }
}
