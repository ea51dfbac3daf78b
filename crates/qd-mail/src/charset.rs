//! Charset decisions that mail-parser leaves to us.
//!
//! mail-parser 0.11 already maps `iso-8859-1`, `latin1` and `us-ascii` to windows-1252 (as
//! the WHATWG Encoding Standard does), but for a text part whose label is missing, UTF-8 or
//! unknown it falls back to lossy UTF-8 without telling anyone. This module classifies the
//! label so `parse` can redo the decoding (missing label) or record a defect.

use std::borrow::Cow;

use mail_parser::decoders::charsets::map::charset_decoder;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Label {
    /// No charset parameter: valid UTF-8 is UTF-8, anything else is windows-1252.
    Missing,
    Utf8,
    /// A label mail-parser has a decoder for; its output is final.
    Known,
    Unknown,
}

pub(crate) fn classify(label: Option<&str>) -> Label {
    let Some(label) = label.map(str::trim).filter(|l| !l.is_empty()) else {
        return Label::Missing;
    };
    if charset_decoder(label.as_bytes()).is_some() {
        Label::Known
    } else if is_utf8_label(label) {
        Label::Utf8
    } else {
        Label::Unknown
    }
}

// charset_decoder deliberately has no entry for these: mail-parser decodes UTF-8 itself.
fn is_utf8_label(label: &str) -> bool {
    [
        "utf-8",
        "utf8",
        "unicode-1-1-utf-8",
        "unicode11utf8",
        "unicode20utf8",
        "x-unicode20utf8",
    ]
    .iter()
    .any(|l| l.eq_ignore_ascii_case(label))
}

/// Labels whose text mail-parser decodes as windows-1252 and that misconfigured senders
/// put on UTF-8 text: `us-ascii` (8-bit bytes break that label anyway) and Latin-1.
pub(crate) fn often_mislabelled_utf8(label: &str) -> bool {
    [
        "us-ascii",
        "ascii",
        "ansi_x3.4-1968",
        "iso-8859-1",
        "iso8859-1",
        "latin1",
        "latin-1",
        "windows-1252",
        "cp1252",
    ]
    .iter()
    .any(|l| l.eq_ignore_ascii_case(label.trim()))
}

/// Decodes bytes that carry no charset label: UTF-8 if they are valid UTF-8, otherwise
/// windows-1252, which maps every byte and is what unlabelled 8-bit mail usually is.
pub(crate) fn decode_unlabelled(bytes: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => {
            encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(bytes)
                .0
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_classified() {
        assert_eq!(classify(None), Label::Missing);
        assert_eq!(classify(Some(" ")), Label::Missing);
        assert_eq!(classify(Some("UTF-8")), Label::Utf8);
        assert_eq!(classify(Some("iso-8859-1")), Label::Known);
        assert_eq!(classify(Some("ISO-2022-JP")), Label::Known);
        assert_eq!(classify(Some("x-klingon")), Label::Unknown);
    }

    #[test]
    fn unlabelled_bytes_fall_back_to_windows_1252() {
        assert_eq!(decode_unlabelled("caf\u{e9}".as_bytes()), "café");
        assert_eq!(
            decode_unlabelled(b"\x93hi\x94 \x80"),
            "\u{201c}hi\u{201d} €"
        );
    }
}
