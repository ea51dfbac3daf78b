//! The mbox envelope line and the "is this a mail at all" sniff.

/// Drops a leading mbox envelope line (`From sender date`, LF or CRLF) and says whether
/// one was there.
///
/// Only the exact prefix `From ` counts: `From:` is the header, and the obsolete header
/// syntax `From : x` (RFC 5322 §4.5) is told apart by its colon.
pub fn strip_mbox_envelope(raw: &[u8]) -> (&[u8], bool) {
    if !is_envelope_line(raw) {
        return (raw, false);
    }
    match memchr::memchr(b'\n', raw) {
        Some(nl) => (raw.get(nl + 1..).unwrap_or_default(), true),
        // An envelope line and nothing else: the message is empty.
        None => (raw.get(raw.len()..).unwrap_or_default(), true),
    }
}

pub(crate) fn is_envelope_line(line: &[u8]) -> bool {
    let Some(rest) = line.strip_prefix(b"From ") else {
        return false;
    };
    // `From : alice@example.com` is an (obsolete-syntax) header, not an envelope.
    rest.iter()
        .find(|b| !matches!(b, b' ' | b'\t'))
        .is_none_or(|&b| b != b':')
}

/// Cheap sniff for directory imports: is the first line after an optional mbox envelope a
/// header field (`Name: value`)?
///
/// It reads one line and never parses, so a text file that starts with `Note: ...` passes;
/// that is fine, `parse` turns such a file into a message with defects rather than failing.
pub fn looks_like_mail(raw: &[u8]) -> bool {
    let (raw, _) = strip_mbox_envelope(raw);
    let line = match memchr::memchr(b'\n', raw) {
        Some(nl) => raw.get(..nl).unwrap_or_default(),
        None => raw,
    };
    is_header_line(line)
}

/// `field-name ":"` per RFC 5322 §3.6.8 (printable ASCII except colon), allowing the
/// obsolete whitespace before the colon (§4.5).
pub(crate) fn is_header_line(line: &[u8]) -> bool {
    let Some(colon) = memchr::memchr(b':', line) else {
        return false;
    };
    let name = line.get(..colon).unwrap_or_default();
    let name = match name.iter().rposition(|b| !matches!(b, b' ' | b'\t')) {
        Some(last) => name.get(..=last).unwrap_or_default(),
        None => return false,
    };
    name.iter().all(|&b| (33..=126).contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_lf_and_crlf_envelopes() {
        let (rest, stripped) =
            strip_mbox_envelope(b"From a@b Sat Jan  3 01:05:34 1996\nSubject: x\n");
        assert!(stripped);
        assert_eq!(rest, b"Subject: x\n");
        let (rest, stripped) =
            strip_mbox_envelope(b"From a@b Sat Jan  3 01:05:34 1996\r\nTo: y\r\n");
        assert!(stripped);
        assert_eq!(rest, b"To: y\r\n");
    }

    #[test]
    fn from_header_is_not_an_envelope() {
        assert_eq!(
            strip_mbox_envelope(b"From: a@b\n"),
            (&b"From: a@b\n"[..], false)
        );
        assert_eq!(
            strip_mbox_envelope(b"From : a@b\n"),
            (&b"From : a@b\n"[..], false)
        );
        assert_eq!(strip_mbox_envelope(b""), (&b""[..], false));
    }

    #[test]
    fn envelope_without_newline_leaves_nothing() {
        assert_eq!(strip_mbox_envelope(b"From a@b"), (&b""[..], true));
    }

    #[test]
    fn sniff_accepts_headers_and_rejects_other_files() {
        assert!(looks_like_mail(b"Return-Path: <a@b>\r\nFrom: a@b\r\n"));
        assert!(looks_like_mail(
            b"From a@b Mon Jan 1 00:00:00 2024\nX-Foo: bar\n"
        ));
        assert!(looks_like_mail(b"Subject : obsolete spacing\n"));
        assert!(!looks_like_mail(b""));
        assert!(!looks_like_mail(b"\nSubject: after a blank line\n"));
        assert!(!looks_like_mail(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"));
        assert!(!looks_like_mail(b"hello world: not a header name\n"));
        assert!(!looks_like_mail(b"\x89PNG\r\n\x1a\n"));
        assert!(!looks_like_mail(b": no name\n"));
    }
}
