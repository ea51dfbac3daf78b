//! The content hash is the import's duplicate guard.

use crate::fixture;

const MESSAGE: &str = "From: Alice <alice@example.org>\n\
To: support@quietdesk.test\n\
Subject: Printer\n\
 broken\n\
Date: Wed, 10 Jan 2024 10:00:00 +0000\n\
Message-ID: <dup@example.org>\n\
\n\
It is broken.\n\
Really.\n";

fn hash(raw: &[u8]) -> String {
    qd_mail::parse(raw).content_hash
}

#[test]
fn same_message_through_different_routes_has_one_hash() {
    let direct = hash(MESSAGE.as_bytes());

    let relayed = format!(
        "Return-Path: <alice@example.org>\nDelivered-To: support@quietdesk.test\n\
         Received: from mx.example.org by mx.quietdesk.test; Wed, 10 Jan 2024 10:00:01 +0000\n\
         X-Spam-Score: 0.1\n{MESSAGE}"
    );
    assert_eq!(direct, hash(relayed.as_bytes()));

    let crlf = MESSAGE.replace('\n', "\r\n");
    assert_eq!(direct, hash(crlf.as_bytes()));

    let envelope = format!("From alice@example.org Wed Jan 10 10:00:00 2024\n{MESSAGE}\n");
    assert_eq!(direct, hash(envelope.as_bytes()));

    let refolded = MESSAGE.replace("Subject: Printer\n broken", "Subject: Printer broken");
    assert_eq!(direct, hash(refolded.as_bytes()));

    // Header order is a transport detail too.
    let reordered = MESSAGE.replace(
        "To: support@quietdesk.test\nSubject: Printer\n broken\n",
        "Subject: Printer\n broken\nTo: support@quietdesk.test\n",
    );
    assert_eq!(direct, hash(reordered.as_bytes()));
}

#[test]
fn different_messages_have_different_hashes() {
    let direct = hash(MESSAGE.as_bytes());
    for (from, to) in [
        ("It is broken.", "It is fixed."),
        ("Subject: Printer", "Subject: Scanner"),
        ("<dup@example.org>", "<other@example.org>"),
        ("10:00:00", "10:00:01"),
        ("To: support@", "To: sales@"),
        ("From: Alice", "From: Alicia"),
    ] {
        let changed = MESSAGE.replace(from, to);
        assert_ne!(direct, hash(changed.as_bytes()), "{from} -> {to}");
    }
    let with_cc = MESSAGE.replace("Date:", "Cc: bob@example.org\nDate:");
    assert_ne!(direct, hash(with_cc.as_bytes()));
}

#[test]
fn hash_is_lowercase_hex_sha256_even_for_garbage() {
    for raw in [&b""[..], &fixture("garbage.bin")] {
        let h = hash(raw);
        assert_eq!(h.len(), 64);
        assert!(h
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    }
    assert_ne!(hash(b"one junk line"), hash(b"another junk line"));
}

/// A header block ended by a line of white space (mail-parser ends the headers there)
/// used to leave our hash without a body: two such messages with the same headers and
/// different bodies got one hash, and the second was dropped as a duplicate.
#[test]
fn a_white_space_separator_line_still_separates_the_body() {
    let one = b"From: cron@example.org\nSubject: nightly\n \nBody one\n";
    let two = b"From: cron@example.org\nSubject: nightly\n \nBody two\n";
    assert_ne!(hash(one), hash(two));
    let parsed = qd_mail::parse(one);
    assert_eq!(parsed.text.trim(), "Body one");
    assert!(
        !parsed.defects.contains(&qd_mail::Defect::EightBitHeaders),
        "{:?}",
        parsed.defects
    );
    // With a later blank line, body lines are not taken for headers.
    let latin = b"From: cron@example.org\nSubject: nightly\n\t\ncaf\xe9 line\n\nmore\n";
    assert!(!qd_mail::parse(latin)
        .defects
        .contains(&qd_mail::Defect::EightBitHeaders));
}
