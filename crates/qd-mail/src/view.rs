//! [`MessageView`]: what the spam and virus filter may know about a message.
//!
//! The privacy promise is that mail is judged "by code and standard algorithms, without
//! inspecting its content". This module makes that a property of the types: a view holds
//! the header fields, the MIME tree (types, charsets, encodings, names, sizes, nesting)
//! and a digest of every part, and has **no accessor to body text**. Text parts are
//! hashed and dropped while the view is built. Bytes of non-text attachments are kept in
//! [`Attachments`], whose only way out is [`Attachments::scan_with`] handing them to an
//! [`AttachmentScanner`] that returns signature names, never content. Rust cannot seal a
//! trait against implementors in other crates, so this last step is a convention held by
//! a test in qd-filter (only its `signatures` module implements the trait).

use std::fmt;
use std::net::IpAddr;

use chrono::{DateTime, Utc};
use mail_parser::decoders::{base64::base64_decode, quoted_printable::quoted_printable_decode};
use mail_parser::{Encoding, HeaderValue, Message, MimeHeaders, PartType};
use md5::Md5;
use sha2::{Digest, Sha256};

use crate::envelope::strip_mbox_envelope;
use crate::Address;

/// Nesting deeper than this is not walked (and is reported by [`MessageView::truncated_tree`]).
const MAX_DEPTH: u32 = 32;
/// More archive entries than this are not listed.
const MAX_ARCHIVE_ENTRIES: usize = 1024;

/// One header field of the top-level message, in message order.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HeaderField {
    /// The field name as written (case kept).
    pub name: String,
    /// The raw value after the colon, unfolded (CR/LF removed), trimmed, lossy UTF-8.
    pub raw: String,
    /// The RFC 2047 decoded value for unstructured text fields (Subject, Comments, ...).
    pub decoded: Option<String>,
    /// Parsed addresses for address fields (From, To, Cc, Reply-To, Sender, ...).
    pub addresses: Vec<Address>,
    /// The parsed date for Date and Resent-Date.
    pub date: Option<DateTime<Utc>>,
    /// The raw value held bytes outside ASCII (not RFC 5322; SMTPUTF8 or a broken mailer).
    pub eight_bit: bool,
    /// How many RFC 2047 encoded-words the raw value holds.
    pub encoded_words: u32,
    /// The charsets named by those encoded-words, lowercase, in order of first use.
    pub encoded_charsets: Vec<String>,
    /// For Received fields, what mail-parser could read of the trace.
    pub received: Option<ReceivedHop>,
}

/// A Received trace field, as far as it parsed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ReceivedHop {
    /// The name the sending host gave (HELO/EHLO), or its address when it gave one.
    pub helo: Option<String>,
    /// The reverse DNS name the receiving host recorded for the sender.
    pub rdns: Option<String>,
    /// The sender's IP address as recorded by the receiving host.
    pub ip: Option<IpAddr>,
    /// The receiving host.
    pub by: Option<String>,
    /// The protocol (`SMTP`, `ESMTPS`, `LOCAL`, ...).
    pub with: Option<String>,
    /// The receiving host's queue id for the message (`id 4C7C016F16`).
    pub id: Option<String>,
    /// The time stamp after the `;`.
    pub date: Option<DateTime<Utc>>,
}

/// One MIME part, in depth-first order (the root first).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PartInfo {
    /// Top-level media type, lowercase (`text`, `multipart`, `application`, ...).
    pub content_type: String,
    /// Subtype, lowercase (`plain`, `mixed`, `octet-stream`, ...).
    pub subtype: String,
    /// The Content-Type header was absent (the RFC 2045 default applied).
    pub type_defaulted: bool,
    pub charset: Option<String>,
    /// Content-Transfer-Encoding, lowercase, as declared.
    pub transfer_encoding: Option<String>,
    /// Content-Disposition type, lowercase (`inline`, `attachment`).
    pub disposition: Option<String>,
    /// File name from Content-Disposition `filename` or Content-Type `name`.
    pub file_name: Option<String>,
    /// The `size` parameter of Content-Disposition, when given.
    pub declared_size: Option<u64>,
    /// Length of the transfer-decoded bytes (0 for multiparts).
    pub decoded_size: u64,
    /// 0 for the root part.
    pub depth: u32,
    /// Lowercase hex MD5 of the transfer-decoded bytes (`None` for containers).
    pub md5: Option<String>,
    /// Lowercase hex SHA-256 of the transfer-decoded bytes (`None` for containers).
    pub sha256: Option<String>,
    /// The part could not be decoded as declared.
    pub encoding_problem: bool,
    /// The bytes of this part are kept for the signature scanner.
    pub scannable: bool,
    /// For zip archives: the entry names from the central directory (never decompressed).
    pub archive_entries: Vec<String>,
    /// A zip archive whose listing is not whole: more entries than are listed, or a
    /// directory that could not be read (damaged, or not a zip after all).
    pub archive_incomplete: bool,
}

impl PartInfo {
    /// `type/subtype`.
    pub fn mime_type(&self) -> String {
        format!("{}/{}", self.content_type, self.subtype)
    }

    pub fn is_multipart(&self) -> bool {
        self.content_type == "multipart"
    }
}

/// A signature scanner: gets attachment bytes, returns the names of the signatures that
/// matched. Implemented by qd-filter's `signatures` module only (see the module docs).
pub trait AttachmentScanner {
    /// Names of the signatures found in one attachment.
    fn scan(&self, part: &PartInfo, bytes: &[u8]) -> Vec<String>;
}

/// A signature match in one attachment.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ScanHit {
    /// Index into [`MessageView::parts`].
    pub part: usize,
    /// The signature name.
    pub name: String,
}

/// Bytes of the non-text attachments, reachable only through a scanner.
#[derive(Clone, Default)]
pub struct Attachments {
    /// (index into parts, transfer-decoded bytes).
    items: Vec<(usize, Vec<u8>)>,
}

impl Attachments {
    /// Runs `scanner` over every kept attachment and returns what matched.
    pub fn scan_with(&self, parts: &[PartInfo], scanner: &dyn AttachmentScanner) -> Vec<ScanHit> {
        let mut hits = Vec::new();
        for (index, bytes) in &self.items {
            let Some(part) = parts.get(*index) else {
                continue;
            };
            for name in scanner.scan(part, bytes) {
                hits.push(ScanHit { part: *index, name });
            }
        }
        hits
    }

    /// How many attachments are kept for scanning.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

impl fmt::Debug for Attachments {
    /// Sizes only: the bytes never reach a log line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.items.iter().map(|(i, b)| (i, b.len())))
            .finish()
    }
}

/// What the filter may see of a message: headers, MIME structure, digests — no text.
///
/// ```compile_fail
/// let view = qd_mail::MessageView::from_raw(b"Subject: x\n\nsecret body\n");
/// let _ = view.body(); // there is no accessor to the body text
/// ```
///
/// ```compile_fail
/// let view = qd_mail::MessageView::from_raw(b"Subject: x\n\nsecret body\n");
/// let _ = view.attachments.items; // attachment bytes are private
/// ```
#[derive(Debug, Clone, serde::Serialize)]
pub struct MessageView {
    headers: Vec<HeaderField>,
    parts: Vec<PartInfo>,
    #[serde(skip)]
    attachments: Attachments,
    /// A leading mbox `From ` line was removed.
    mbox_envelope: bool,
    /// The first line was not a header field.
    no_headers: bool,
    /// Raw bytes outside ASCII in the header block.
    eight_bit_headers: bool,
    /// The MIME tree was nested deeper than this module walks.
    pub(crate) truncated_tree: bool,
    /// Raw size after the mbox line.
    size: usize,
    /// Size of the header block.
    header_size: usize,
}

impl MessageView {
    /// Builds a view from raw message bytes (an optional leading mbox `From ` line is
    /// stripped). Never fails: what cannot be parsed is simply absent.
    pub fn from_raw(raw: &[u8]) -> MessageView {
        let (stripped, _) = strip_mbox_envelope(raw);
        // Mail nested too deep is viewed by its headers alone (see `guard`).
        let parsed = crate::guard::parse(stripped);
        let mut view = MessageView::build(raw, parsed.message.as_ref());
        view.truncated_tree |= parsed.body_skipped;
        view
    }

    /// A view of the header block alone (no parts walked, no attachments): what the
    /// checks that read only header fields need, at a fraction of a full view's cost.
    pub fn headers_only(raw: &[u8]) -> MessageView {
        let (stripped, _) = strip_mbox_envelope(raw);
        let block = stripped
            .get(..header_block_len(stripped))
            .unwrap_or_default();
        let parsed = crate::guard::parse(block);
        MessageView::build(block, parsed.message.as_ref())
    }

    /// The view of `raw` (as given, mbox line and all) from mail-parser's reading of it
    /// after the mbox line, so one parse can serve the view and [`crate::parse`] alike
    /// (see [`crate::parse_with_view`]).
    pub(crate) fn build(raw: &[u8], message: Option<&Message<'_>>) -> MessageView {
        let (raw, mbox_envelope) = strip_mbox_envelope(raw);
        let header_size = header_block_len(raw);
        let header_block = raw.get(..header_size).unwrap_or_default();
        let no_headers = !raw
            .split(|&b| b == b'\n')
            .next()
            .is_some_and(crate::envelope::is_header_line);
        let mut view = MessageView {
            headers: Vec::new(),
            parts: Vec::new(),
            attachments: Attachments::default(),
            mbox_envelope,
            no_headers,
            eight_bit_headers: header_block.iter().any(|b| !b.is_ascii()),
            truncated_tree: false,
            size: raw.len(),
            header_size,
        };
        if let Some(message) = message {
            view.headers = top_headers(message, raw, header_size);
            view.walk(message, 0, 0);
        }
        view
    }

    /// All header fields of the top-level message, in order.
    pub fn headers(&self) -> &[HeaderField] {
        &self.headers
    }

    /// The first header field with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&HeaderField> {
        self.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
    }

    /// Every header field with this name (case-insensitive), in order.
    pub fn headers_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a HeaderField> {
        self.headers
            .iter()
            .filter(move |h| h.name.eq_ignore_ascii_case(name))
    }

    /// The MIME parts, depth-first, root first.
    pub fn parts(&self) -> &[PartInfo] {
        &self.parts
    }

    /// The kept attachment bytes, for a signature scanner.
    pub fn attachments(&self) -> &Attachments {
        &self.attachments
    }

    /// Runs a signature scanner over the kept attachments.
    pub fn scan_with(&self, scanner: &dyn AttachmentScanner) -> Vec<ScanHit> {
        self.attachments.scan_with(&self.parts, scanner)
    }

    pub fn had_mbox_envelope(&self) -> bool {
        self.mbox_envelope
    }

    pub fn no_headers(&self) -> bool {
        self.no_headers
    }

    pub fn eight_bit_headers(&self) -> bool {
        self.eight_bit_headers
    }

    pub fn truncated_tree(&self) -> bool {
        self.truncated_tree
    }

    /// Raw size in bytes (after the mbox line).
    pub fn size(&self) -> usize {
        self.size
    }

    pub fn header_size(&self) -> usize {
        self.header_size
    }

    fn walk(&mut self, message: &Message<'_>, part_id: usize, depth: u32) {
        if depth > MAX_DEPTH {
            self.truncated_tree = true;
            return;
        }
        let Some(part) = message.parts.get(part_id) else {
            return;
        };
        let raw = message.raw_message();
        let ct = part.content_type();
        let (content_type, subtype, type_defaulted) = match ct {
            Some(ct) => (
                ct.ctype().to_ascii_lowercase(),
                ct.subtype()
                    .map(str::to_ascii_lowercase)
                    .unwrap_or_default(),
                false,
            ),
            None => match &part.body {
                PartType::Message(_) => ("message".into(), "rfc822".into(), true),
                PartType::Multipart(_) => ("multipart".into(), "mixed".into(), true),
                _ => ("text".into(), "plain".into(), true),
            },
        };
        let disposition = part.content_disposition();
        let mut info = PartInfo {
            content_type,
            subtype,
            type_defaulted,
            charset: ct
                .and_then(|c| c.attribute("charset"))
                .map(|c| c.trim().to_ascii_lowercase()),
            transfer_encoding: part
                .content_transfer_encoding()
                .map(|e| e.trim().to_ascii_lowercase()),
            disposition: disposition.map(|d| d.ctype().to_ascii_lowercase()),
            file_name: part.attachment_name().map(str::to_owned),
            declared_size: disposition
                .and_then(|d| d.attribute("size"))
                .and_then(|s| s.trim().parse().ok()),
            decoded_size: 0,
            depth,
            md5: None,
            sha256: None,
            encoding_problem: part.is_encoding_problem,
            scannable: false,
            archive_entries: Vec::new(),
            archive_incomplete: false,
        };
        let index = self.parts.len();
        match &part.body {
            PartType::Multipart(children) => {
                self.parts.push(info);
                for child in children {
                    self.walk(message, *child as usize, depth + 1);
                }
            }
            PartType::Message(inner) => {
                self.parts.push(info);
                self.walk(inner, 0, depth + 1);
            }
            PartType::Text(_) | PartType::Html(_) => {
                // Body text: digest the transfer-decoded bytes, keep nothing else. An
                // attached file is an attachment whatever its type (`invoice.js` sent as
                // text/plain), and so is a part mail-parser turned into text because its
                // encoding is broken: those go to the signature scanner like any other.
                let body = raw
                    .get(part.offset_body as usize..part.offset_end as usize)
                    .unwrap_or_default();
                let decoded = transfer_decode(part.encoding, body);
                digest_into(&mut info, &decoded);
                let attached = info.file_name.is_some()
                    || info.disposition.as_deref() == Some("attachment")
                    || (info.encoding_problem && info.content_type != "text");
                if attached {
                    // A broken base64 body is decoded leniently, as mail clients do, so
                    // the scanner sees the file a recipient would open.
                    let bytes = if info.encoding_problem && declared_base64(&info) {
                        lenient_base64(body)
                    } else {
                        decoded.into_owned()
                    };
                    self.keep_attachment(&mut info, index, bytes);
                }
                self.parts.push(info);
            }
            PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                // A broken base64 body: what a lenient client would decode.
                let repaired;
                let bytes: &[u8] = if info.encoding_problem && declared_base64(&info) {
                    let body = raw
                        .get(part.offset_body as usize..part.offset_end as usize)
                        .unwrap_or_default();
                    repaired = lenient_base64(body);
                    &repaired
                } else {
                    bytes
                };
                digest_into(&mut info, bytes);
                // Every binary part is a file to scan (`font/ttf`, `x-foo/bar` as well as
                // application/*); text only when it is attached, as in the text branch.
                let keep = info.content_type != "text"
                    || info.file_name.is_some()
                    || info.disposition.as_deref() == Some("attachment");
                if keep {
                    self.keep_attachment(&mut info, index, bytes.to_vec());
                }
                self.parts.push(info);
            }
        }
    }
}

impl MessageView {
    /// Keeps an attachment's bytes for the scanner and lists it when it is a zip. Every
    /// part kind comes through here, so the listing always follows the bytes the
    /// scanner sees: a zip that mail-parser took for text (declared text/*, or broken
    /// base64) is listed as well as scanned.
    fn keep_attachment(&mut self, info: &mut PartInfo, index: usize, bytes: Vec<u8>) {
        if is_zip(info, &bytes) {
            let listing = zip_listing(&bytes);
            info.archive_entries = listing.names;
            info.archive_incomplete = !listing.complete;
        }
        info.scannable = true;
        self.attachments.items.push((index, bytes));
    }
}

fn digest_into(info: &mut PartInfo, bytes: &[u8]) {
    info.decoded_size = bytes.len() as u64;
    info.md5 = Some(hex::encode(Md5::digest(bytes)));
    info.sha256 = Some(hex::encode(Sha256::digest(bytes)));
}

/// The part says it is base64 (mail-parser reports a part it could not decode as not
/// encoded at all).
fn declared_base64(info: &PartInfo) -> bool {
    info.transfer_encoding.as_deref() == Some("base64")
}

/// Base64 with every byte outside the alphabet dropped (RFC 2045 6.8 tells decoders to
/// ignore them); the raw bytes when even that does not decode.
fn lenient_base64(body: &[u8]) -> Vec<u8> {
    let cleaned: Vec<u8> = body
        .iter()
        .copied()
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
        .collect();
    base64_decode(&cleaned).unwrap_or_else(|| body.to_vec())
}

fn transfer_decode(encoding: Encoding, body: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    match encoding {
        Encoding::Base64 => base64_decode(body).map_or(body.into(), Into::into),
        Encoding::QuotedPrintable => quoted_printable_decode(body).map_or(body.into(), Into::into),
        Encoding::None => body.into(),
    }
}

/// Length of the header block including the blank line (or the whole input).
pub(crate) fn header_block_len(raw: &[u8]) -> usize {
    let end = qd_core::header_block_end(raw);
    end + raw
        .get(end..)
        .and_then(qd_core::blank_line_len)
        .unwrap_or(0)
}

/// The root's header fields that lie inside the header block (`header_size` bytes, up
/// to the first empty or white-space line). mail-parser reads on past a line of white
/// space and takes body lines with a colon for fields: those are message text and never
/// reach the filter.
fn top_headers(message: &Message<'_>, raw: &[u8], header_size: usize) -> Vec<HeaderField> {
    let Some(root) = message.parts.first() else {
        return Vec::new();
    };
    root.headers
        .iter()
        .filter(|h| (h.offset_field as usize) < header_size)
        .map(|h| {
            let name_bytes = raw
                .get(h.offset_field as usize..h.offset_start as usize)
                .unwrap_or_default();
            let name_bytes = name_bytes.split(|&b| b == b':').next().unwrap_or_default();
            let name = String::from_utf8_lossy(name_bytes).trim().to_owned();
            let end = (h.offset_end as usize).min(header_size);
            let raw_value = raw.get(h.offset_start as usize..end).unwrap_or_default();
            let eight_bit = raw_value.iter().any(|b| !b.is_ascii());
            let unfolded: Vec<u8> = raw_value
                .iter()
                .copied()
                .filter(|&b| b != b'\r' && b != b'\n')
                .collect();
            let raw_str = String::from_utf8_lossy(&unfolded).trim().to_owned();
            let (encoded_words, encoded_charsets) = encoded_words(&raw_str);
            let mut field = HeaderField {
                name,
                raw: raw_str,
                decoded: None,
                addresses: Vec::new(),
                date: None,
                eight_bit,
                encoded_words,
                encoded_charsets,
                received: None,
            };
            match &h.value {
                HeaderValue::Text(t) => field.decoded = Some(t.to_string()),
                HeaderValue::TextList(list) => field.decoded = Some(list.join(", ")),
                HeaderValue::DateTime(dt) => {
                    field.date = dt
                        .is_valid()
                        .then(|| DateTime::from_timestamp(dt.to_timestamp(), 0))
                        .flatten();
                }
                HeaderValue::Address(addr) => {
                    field.addresses = addr
                        .iter()
                        .map(|a| Address {
                            name: a
                                .name
                                .as_deref()
                                .map(|n| n.split_whitespace().collect::<Vec<_>>().join(" "))
                                .filter(|n| !n.is_empty()),
                            addr: a
                                .address
                                .as_deref()
                                .map(qd_core::normalize_address)
                                .unwrap_or_default(),
                        })
                        .collect();
                }
                HeaderValue::Received(r) => {
                    let host = |h: &mail_parser::Host<'_>| match h {
                        mail_parser::Host::Name(n) => n.to_string(),
                        mail_parser::Host::IpAddr(ip) => ip.to_string(),
                    };
                    field.received = Some(ReceivedHop {
                        helo: r.from.as_ref().or(r.helo.as_ref()).map(host),
                        rdns: r
                            .from_iprev
                            .as_deref()
                            // sendmail writes `ident@host`; the ident is the client's claim.
                            .map(|n| n.rsplit('@').next().unwrap_or(n).to_owned())
                            .filter(|n| !n.is_empty()),
                        ip: r.from_ip,
                        by: r.by.as_ref().map(host),
                        with: r.with.as_ref().map(|p| p.to_string()),
                        id: r.id.as_deref().map(str::to_owned).filter(|i| !i.is_empty()),
                        date: r
                            .date
                            .as_ref()
                            .filter(|d| d.is_valid())
                            .and_then(|d| DateTime::from_timestamp(d.to_timestamp(), 0)),
                    });
                }
                _ => {}
            }
            field
        })
        .collect()
}

/// Counts `=?charset?X?...?=` words and names their charsets.
fn encoded_words(value: &str) -> (u32, Vec<String>) {
    let mut count = 0;
    let mut charsets: Vec<String> = Vec::new();
    let mut rest = value;
    while let Some(start) = rest.find("=?") {
        let after = rest.get(start + 2..).unwrap_or_default();
        let Some(q1) = after.find('?') else { break };
        let charset = after.get(..q1).unwrap_or_default();
        let tail = after.get(q1 + 1..).unwrap_or_default();
        let well_formed = tail.len() > 2
            && matches!(tail.as_bytes().first(), Some(b'b' | b'B' | b'q' | b'Q'))
            && tail.as_bytes().get(1) == Some(&b'?');
        if !well_formed || charset.is_empty() || charset.len() > 40 {
            rest = after;
            continue;
        }
        let Some(end) = tail.get(2..).and_then(|t| t.find("?=")) else {
            break;
        };
        count += 1;
        // RFC 2231 language suffix: `utf-8*en`.
        let charset = charset
            .split('*')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !charsets.contains(&charset) {
            charsets.push(charset);
        }
        rest = tail.get(2 + end + 2..).unwrap_or_default();
    }
    (count, charsets)
}

/// A zip by its magic bytes, its declared type or its name. `application/gzip` and
/// other `*zip*` types that are not zips do not count: their listing would read as
/// unreadable.
fn is_zip(info: &PartInfo, bytes: &[u8]) -> bool {
    bytes.starts_with(b"PK\x03\x04")
        || matches!(
            info.subtype.as_str(),
            "zip" | "x-zip" | "x-zip-compressed" | "zip-compressed"
        )
        || info
            .file_name
            .as_deref()
            .is_some_and(|n| n.to_ascii_lowercase().ends_with(".zip"))
}

fn u16_at(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at + 2)?;
    Some(u16::from_le_bytes([s[0], s[1]]) as usize)
}

fn u32_at(b: &[u8], at: usize) -> Option<usize> {
    let s = b.get(at..at + 4)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

fn u64_at(b: &[u8], at: usize) -> Option<usize> {
    let s: [u8; 8] = b.get(at..at + 8)?.try_into().ok()?;
    usize::try_from(u64::from_le_bytes(s)).ok()
}

/// What a zip's central directory names.
struct ZipListing {
    names: Vec<String>,
    /// Every entry the directory declares is named.
    complete: bool,
}

/// Entry names from a zip's central directory (APPNOTE 4.3.12, 4.3.16), zip64 included
/// (4.3.14, 4.3.15). Nothing is decompressed; a damaged directory yields what could be
/// read, marked incomplete, as is a listing cut at [`MAX_ARCHIVE_ENTRIES`]: an
/// executable could hide in the part not listed.
fn zip_listing(bytes: &[u8]) -> ZipListing {
    let unreadable = ZipListing {
        names: Vec::new(),
        complete: false,
    };
    // The end-of-central-directory record is 22 bytes plus a comment of up to 64 KiB.
    let min = bytes.len().saturating_sub(22 + 65_535);
    let Some(eocd) = (min..bytes.len().saturating_sub(21))
        .rev()
        .find(|&i| bytes.get(i..i + 4) == Some(b"PK\x05\x06"))
    else {
        return unreadable;
    };
    let (Some(mut count), Some(mut size), Some(mut pos)) = (
        u16_at(bytes, eocd + 10),
        u32_at(bytes, eocd + 12),
        u32_at(bytes, eocd + 16),
    ) else {
        return unreadable;
    };
    // Where the directory's records end: the EOCD record, or the zip64 one before it.
    let mut dir_end = eocd;
    // A zip64 archive puts all-ones in these fields and the real values in a zip64
    // end record, found through the locator right before the EOCD record.
    if count == 0xFFFF || size == 0xFFFF_FFFF || pos == 0xFFFF_FFFF {
        let locator = eocd.checked_sub(20);
        let Some(record) = locator
            .filter(|&l| bytes.get(l..l + 4) == Some(b"PK\x06\x07"))
            .and_then(|l| {
                // The record normally sits right before the locator (its recorded
                // offset is wrong when data was prepended).
                let recorded = u64_at(bytes, l + 8)?;
                [Some(recorded), l.checked_sub(56)]
                    .into_iter()
                    .flatten()
                    .find(|&r| bytes.get(r..r.saturating_add(4)) == Some(b"PK\x06\x06"))
            })
        else {
            return unreadable;
        };
        let (Some(c), Some(sz), Some(p)) = (
            u64_at(bytes, record + 32),
            u64_at(bytes, record + 40),
            u64_at(bytes, record + 48),
        ) else {
            return unreadable;
        };
        (count, size, pos, dir_end) = (c, sz, p, record);
    }
    // Data prepended to the archive (a self-extractor stub, or one junk byte to dodge
    // scanners) shifts every offset; the directory then sits right before the end
    // records, where unzip and 7-Zip find it too.
    if bytes.get(pos..pos.saturating_add(4)) != Some(b"PK\x01\x02") {
        if let Some(actual) = dir_end.checked_sub(size) {
            pos = actual;
        }
    }
    let mut names = Vec::new();
    for _ in 0..count.min(MAX_ARCHIVE_ENTRIES) {
        if bytes.get(pos..pos.saturating_add(4)) != Some(b"PK\x01\x02") {
            break;
        }
        let (Some(name_len), Some(extra_len), Some(comment_len)) = (
            u16_at(bytes, pos + 28),
            u16_at(bytes, pos + 30),
            u16_at(bytes, pos + 32),
        ) else {
            break;
        };
        let Some(name) = bytes.get(pos + 46..pos + 46 + name_len) else {
            break;
        };
        names.push(String::from_utf8_lossy(name).into_owned());
        pos += 46 + name_len + extra_len + comment_len;
    }
    let complete = names.len() == count;
    ZipListing { names, complete }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn encoded_words_are_counted_with_their_charsets() {
        let (n, cs) = encoded_words("=?UTF-8?B?SGk=?= =?iso-8859-1?Q?caf=E9?= =?utf-8?q?x?=");
        assert_eq!(n, 3);
        assert_eq!(cs, vec!["utf-8".to_string(), "iso-8859-1".to_string()]);
        assert_eq!(encoded_words("plain =? text").0, 0);
    }

    #[test]
    fn text_is_digested_and_dropped_attachments_are_kept() {
        let raw = b"From: a@example.com\nSubject: hi\nMIME-Version: 1.0\n\
Content-Type: multipart/mixed; boundary=XX\n\n--XX\nContent-Type: text/plain\n\n\
unique-body-marker\n--XX\nContent-Type: application/octet-stream; name=\"a.bin\"\n\
Content-Transfer-Encoding: base64\n\nAAECAw==\n--XX--\n";
        let view = MessageView::from_raw(raw);
        assert_eq!(view.parts().len(), 3);
        assert_eq!(view.parts()[1].mime_type(), "text/plain");
        assert!(view.parts()[1].sha256.is_some());
        assert_eq!(view.parts()[2].decoded_size, 4);
        assert_eq!(view.attachments().len(), 1);
        assert!(!format!("{view:?}").contains("unique-body-marker"));
    }
}
