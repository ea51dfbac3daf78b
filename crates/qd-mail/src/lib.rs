//! Raw mail bytes to a [`ParsedMail`], never failing.
//!
//! [`parse`] turns whatever a mailbox, an mbox file or a directory of `.eml` files hands
//! us into a [`ParsedMail`]: normalised threading keys (Message-ID, In-Reply-To,
//! References), addresses, a UTC date, a decoded subject, a plain-text body for search and
//! snippets, the raw HTML, attachment fingerprints, and a [`ParsedMail::content_hash`]
//! that guards imports against duplicates. Anything wrong with the input becomes a
//! [`Defect`] on the result; nothing here returns an error or panics on input. The
//! [`mbox`] module splits mbox files as a stream; [`looks_like_mail`] and
//! [`strip_mbox_envelope`] help sources decide what to feed in. MIME parsing itself is
//! mail-parser's; this crate adds the charset fallbacks, the defects and the hash.

mod anonymise;
pub mod autoreply;
pub mod bounce;
mod charset;
mod envelope;
mod guard;
mod hash;
mod html;
pub mod mbox;
pub mod outgoing;
mod parse;
pub mod view;

pub use anonymise::anonymise_trace_ips;
pub use envelope::{looks_like_mail, strip_mbox_envelope};
pub use parse::{parse, parse_with_view};
pub use view::MessageView;

/// A mailbox address.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Address {
    /// Display name, decoded (RFC 2047) and whitespace-folded; `None` when absent or empty.
    pub name: Option<String>,
    /// The address, normalised by `qd_core::normalize_address`.
    pub addr: String,
}

/// What is known about an attachment without keeping its bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
pub struct AttachmentInfo {
    /// The file name from Content-Disposition `filename` or Content-Type `name`, decoded
    /// (RFC 2047/2231) but not sanitised: it may contain path separators.
    pub filename: Option<String>,
    /// `type/subtype`, lowercase.
    pub content_type: String,
    /// Size of the transfer-decoded bytes.
    pub size: u64,
    /// Lowercase hex sha256 of the transfer-decoded bytes (text attachments in their
    /// declared charset, not converted to UTF-8).
    pub sha256: String,
}

/// Something wrong with a message. Defects are data: the message is still parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Defect {
    /// The first line is not a header field (empty input, binary junk, a headerless file).
    NoHeaders,
    /// mail-parser found no message at all; the body is the whole input, decoded best-effort.
    Unparseable,
    MissingFrom,
    /// A From header is present but holds no usable address.
    InvalidFrom,
    MissingMessageId,
    /// A Message-ID header is present but holds no id.
    InvalidMessageId,
    MissingDate,
    InvalidDate,
    /// A text part names a charset nobody knows; decoded as lossy UTF-8.
    UnknownCharset,
    /// A text part had bytes invalid in its charset; they became U+FFFD.
    UndecodableText,
    /// Raw 8-bit bytes in the header block (RFC 5322 wants ASCII; SMTPUTF8 mail has UTF-8,
    /// older mailers windows-1252, which is how non-UTF-8 header lines are decoded).
    EightBitHeaders,
    /// A leading mbox `From ` line was removed before parsing.
    MboxEnvelopeStripped,
    /// The message ends early: a multipart's closing boundary is missing, or the input
    /// stops in the middle of the header block.
    Truncated,
    /// A text part labelled `us-ascii` or a Latin-1 charset held UTF-8 (a misconfigured
    /// sender); it was decoded as UTF-8.
    MislabelledCharset,
    /// A MIME part could not be decoded as declared (bad base64 or quoted-printable, a
    /// missing boundary, nesting too deep); its raw bytes were kept instead.
    MalformedMime,
}

impl Defect {
    /// The snake_case name, as serialised (for tags and log fields).
    pub fn as_str(self) -> &'static str {
        match self {
            Defect::NoHeaders => "no_headers",
            Defect::Unparseable => "unparseable",
            Defect::MissingFrom => "missing_from",
            Defect::InvalidFrom => "invalid_from",
            Defect::MissingMessageId => "missing_message_id",
            Defect::InvalidMessageId => "invalid_message_id",
            Defect::MissingDate => "missing_date",
            Defect::InvalidDate => "invalid_date",
            Defect::UnknownCharset => "unknown_charset",
            Defect::UndecodableText => "undecodable_text",
            Defect::EightBitHeaders => "eight_bit_headers",
            Defect::MboxEnvelopeStripped => "mbox_envelope_stripped",
            Defect::Truncated => "truncated",
            Defect::MislabelledCharset => "mislabelled_charset",
            Defect::MalformedMime => "malformed_mime",
        }
    }
}

impl std::fmt::Display for Defect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed message. Built by [`parse`] (and cut down by [`ParsedMail::without_bodies`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ParsedMail {
    /// Normalised Message-ID (no angle brackets, case kept).
    pub message_id: Option<String>,
    /// Normalised ids from In-Reply-To.
    pub in_reply_to: Vec<String>,
    /// Normalised ids from References, in header order.
    pub references: Vec<String>,
    /// The first address of the first From header.
    pub from: Option<Address>,
    /// The first address of the first Reply-To header.
    pub reply_to: Option<Address>,
    /// All addresses of all To headers.
    pub to: Vec<Address>,
    /// All addresses of all Cc headers.
    pub cc: Vec<Address>,
    /// The Date header in UTC; `None` when missing or invalid (see `defects`).
    pub date: Option<chrono::DateTime<chrono::Utc>>,
    /// Decoded (RFC 2047) and trimmed; `None` when missing or empty.
    pub subject: Option<String>,
    /// The best plain-text body: the text/plain body parts joined; where a body part
    /// exists only as HTML, a text rendering of it (tags, scripts and styles dropped,
    /// entities decoded). Good for search and snippets, not for display.
    pub text: String,
    /// The raw HTML body parts joined, unsanitised (sanitising is the web layer's job).
    pub html: Option<String>,
    /// Parts that are not body text: files, inline images, attached messages.
    pub attachments: Vec<AttachmentInfo>,
    /// What was wrong with the input, each defect at most once.
    pub defects: Vec<Defect>,
    /// Raw byte length after stripping an mbox envelope line.
    pub size: usize,
    /// The duplicate guard for imports: two copies of one message have the same hash,
    /// whatever route they took; different messages have different hashes.
    ///
    /// Lowercase hex sha256 over a canonical form: the decoded values of From, To, Cc,
    /// Date (as RFC 3339 UTC), Subject and Message-ID (normalised), each trimmed with
    /// whitespace folded to single spaces, then the raw body bytes after the header block
    /// with CRLF normalised to LF and trailing line breaks dropped. Trace and transport
    /// headers (Received, Delivered-To, Return-Path, X-*, DKIM signatures, ...) and the
    /// mbox envelope do not count. A header that is present but unparseable counts with
    /// its raw folded text. Not covered: a relay that re-encodes the body (8BITMIME
    /// downgrade to quoted-printable) produces a different hash.
    pub content_hash: String,
}

impl ParsedMail {
    /// A copy without the bodies (`text` empty, `html` `None`): what the steps after the
    /// store keep (they act on the envelope and headers), without a second copy of the
    /// text of every message in the batch.
    pub fn without_bodies(&self) -> ParsedMail {
        ParsedMail {
            message_id: self.message_id.clone(),
            in_reply_to: self.in_reply_to.clone(),
            references: self.references.clone(),
            from: self.from.clone(),
            reply_to: self.reply_to.clone(),
            to: self.to.clone(),
            cc: self.cc.clone(),
            date: self.date,
            subject: self.subject.clone(),
            text: String::new(),
            html: None,
            attachments: self.attachments.clone(),
            defects: self.defects.clone(),
            size: self.size,
            content_hash: self.content_hash.clone(),
        }
    }
}
