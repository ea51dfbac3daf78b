//! Whatever the bytes, `parse` returns a value.

use proptest::prelude::*;
use qd_mail::Defect;

use crate::fixture;

#[test]
fn empty_input() {
    let mail = qd_mail::parse(b"");
    assert_eq!(mail.size, 0);
    assert_eq!(mail.text, "");
    assert!(
        mail.defects.contains(&Defect::NoHeaders),
        "{:?}",
        mail.defects
    );
    assert!(mail.defects.contains(&Defect::MissingFrom));
}

/// 200,000 nested `message/rfc822` parts (6 MB) overflowed the stack and aborted the
/// whole process (a stack overflow is not a panic). Such mail is now read for its
/// headers, keeps its body as text, and says what was wrong.
#[test]
fn messages_nested_without_end_do_not_abort() {
    let mut raw =
        b"From: Nest <nest@example.org>\r\nSubject: nest\r\nMessage-ID: <deep@example.org>\r\n"
            .to_vec();
    for _ in 0..200_000 {
        raw.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
    }
    raw.extend_from_slice(b"Subject: inner\r\n\r\nthe innermost text\r\n");
    let (mail, view) = qd_mail::parse_with_view(&raw);
    assert_eq!(mail.subject.as_deref(), Some("nest"));
    assert_eq!(mail.message_id.as_deref(), Some("deep@example.org"));
    assert!(
        mail.defects.contains(&Defect::MalformedMime),
        "{:?}",
        mail.defects
    );
    assert!(
        mail.text.ends_with("the innermost text\r\n"),
        "the body is kept as text"
    );
    assert!(view.truncated_tree());
    assert!(qd_mail::MessageView::from_raw(&raw).truncated_tree());
    assert!(qd_mail::bounce::parse_bounce(&raw).is_none());
}

#[test]
fn random_binary() {
    let raw = fixture("garbage.bin");
    let mail = qd_mail::parse(&raw);
    assert_eq!(mail.size, 2048);
    assert!(
        mail.defects.contains(&Defect::NoHeaders),
        "{:?}",
        mail.defects
    );
    assert!(!qd_mail::looks_like_mail(&raw));
}

#[test]
fn only_an_envelope_line() {
    let mail = qd_mail::parse(b"From nobody Mon Jan  1 00:00:00 2024");
    assert!(mail.defects.contains(&Defect::MboxEnvelopeStripped));
    assert!(mail.defects.contains(&Defect::NoHeaders));
}

const SEEDS: [&str; 6] = [
    "alternative.eml",
    "mixed-pdf.eml",
    "iso-2022-jp.eml",
    "forward.eml",
    "eight-bit-latin1-headers.eml",
    "truncated.eml",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn never_panics_on_arbitrary_bytes(raw in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let mail = qd_mail::parse(&raw);
        prop_assert_eq!(mail.content_hash.len(), 64);
        let _ = qd_mail::looks_like_mail(&raw);
        for msg in qd_mail::mbox::MboxReader::new(&raw[..]) {
            let _ = qd_mail::parse(&msg.unwrap().raw);
        }
    }

    #[test]
    fn never_panics_on_mutated_messages(
        seed in 0..SEEDS.len(),
        edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 1..24),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut raw = fixture(SEEDS[seed]);
        for (at, op, byte) in edits {
            let i = at.index(raw.len() + 1);
            match op {
                0 if i < raw.len() => raw[i] = byte,
                1 => raw.insert(i, byte),
                2 if i < raw.len() => { raw.remove(i); }
                // Structural bytes are where parsers break.
                _ => {
                    let special = [b'\n', b'\r', b'-', b'=', b':', b'<', b'>', b'"', b';', b'&'];
                    raw.insert(i, special[usize::from(byte) % special.len()]);
                }
            }
        }
        let keep = cut.index(raw.len() + 1);
        let _ = qd_mail::parse(&raw[..keep]);
        let mail = qd_mail::parse(&raw);
        // An edit can turn `From:` into an mbox envelope line, which is not counted.
        prop_assert_eq!(mail.size, qd_mail::strip_mbox_envelope(&raw).0.len());
        // One parse for the store and the filter gives what two give.
        let (shared, view) = qd_mail::parse_with_view(&raw);
        prop_assert_eq!(&shared, &mail);
        prop_assert_eq!(
            crate::structure::view_fingerprint(&view),
            crate::structure::view_fingerprint(&qd_mail::MessageView::from_raw(&raw))
        );
    }
}
