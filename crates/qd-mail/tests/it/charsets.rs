use qd_mail::Defect;

use crate::parse_fixture;

#[test]
fn iso_2022_jp_subject_and_body() {
    let mail = parse_fixture("iso-2022-jp.eml");
    assert_eq!(mail.subject.as_deref(), Some("こんにちは世界"));
    assert_eq!(
        mail.text,
        "日本語のテキストです。\nよろしくお願いします。\n"
    );
    assert!(mail.defects.is_empty(), "{:?}", mail.defects);
}

#[test]
fn iso_8859_1_label_decodes_as_windows_1252() {
    let mail = parse_fixture("windows-1252-as-latin1.eml");
    assert_eq!(mail.text, "He said \u{201c}pay €100\u{201d} – café.\r\n");
    assert!(mail.defects.is_empty(), "{:?}", mail.defects);
}

/// A misconfigured sender labels UTF-8 text us-ascii or iso-8859-1: it is read as
/// UTF-8 (not "cafÃ©"), and the message says so. Real Latin-1 stays Latin-1.
#[test]
fn utf8_labelled_ascii_or_latin1_is_read_as_utf8() {
    for label in ["us-ascii", "ISO-8859-1"] {
        let raw = format!(
            "From: a@example.org\r\nContent-Type: text/plain; charset={label}\r\n\r\ncaf\u{e9} cr\u{e8}me\r\n"
        );
        let mail = qd_mail::parse(raw.as_bytes());
        assert_eq!(mail.text, "café crème\r\n", "{label}");
        assert!(
            mail.defects.contains(&Defect::MislabelledCharset),
            "{label}: {:?}",
            mail.defects
        );
    }
    let latin1 =
        b"From: a@example.org\r\nContent-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\xe9\r\n";
    let mail = qd_mail::parse(latin1);
    assert_eq!(mail.text, "café\r\n");
    assert!(!mail.defects.contains(&Defect::MislabelledCharset));
}

#[test]
fn unlabelled_utf8_stays_utf8() {
    let mail = parse_fixture("no-charset-utf8.eml");
    assert_eq!(mail.text, "Grüße, naïve café ✓\n");
    assert!(mail.defects.is_empty(), "{:?}", mail.defects);
}

#[test]
fn unlabelled_8bit_falls_back_to_windows_1252() {
    let mail = parse_fixture("no-charset-8bit.eml");
    assert_eq!(mail.text, "Café crème \u{201c}brûlée\u{201d} € 4\n");
    assert!(mail.defects.is_empty(), "{:?}", mail.defects);
}

#[test]
fn raw_utf8_headers_decode_and_are_flagged() {
    let mail = parse_fixture("eight-bit-utf8-headers.eml");
    assert_eq!(mail.subject.as_deref(), Some("Grüße aus Köln"));
    let from = mail.from.unwrap();
    assert_eq!(from.name.as_deref(), Some("Jürgen Müller"));
    assert_eq!(from.addr, "juergen@example.de");
    assert_eq!(mail.defects, vec![Defect::EightBitHeaders]);
}

#[test]
fn raw_latin1_headers_decode_as_windows_1252() {
    let mail = parse_fixture("eight-bit-latin1-headers.eml");
    assert_eq!(mail.subject.as_deref(), Some("Problème de facturation"));
    assert_eq!(mail.from.unwrap().name.as_deref(), Some("René Dupont"));
    assert_eq!(mail.text, "Merci déjà.\n");
    assert_eq!(mail.defects, vec![Defect::EightBitHeaders]);
}

#[test]
fn unknown_charset_decodes_like_a_missing_one_and_is_flagged() {
    // 8-bit bytes under an unknown label: not UTF-8, so windows-1252 (as without a
    // label), which keeps every byte as a character instead of replacing it.
    let mail = parse_fixture("unknown-charset.eml");
    assert_eq!(mail.text, "nuqneH \u{f1}\u{f2} Qapla'\n");
    assert_eq!(mail.defects, vec![Defect::UnknownCharset]);
    // Valid UTF-8 under an unknown label stays UTF-8.
    let raw = "From: a@b.c\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <u@b.c>\n\
               Content-Type: text/plain; charset=unknown-8bit\n\ncaf\u{e9}\n";
    let mail = qd_mail::parse(raw.as_bytes());
    assert_eq!(mail.text, "caf\u{e9}\n");
}

#[test]
fn invalid_utf8_in_a_utf8_part_is_flagged() {
    let raw = b"From: a@b.c\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <x@b.c>\n\
                Content-Type: text/plain; charset=utf-8\n\nbad \xff byte\n";
    let mail = qd_mail::parse(raw);
    assert_eq!(mail.text, "bad \u{fffd} byte\n");
    assert_eq!(mail.defects, vec![Defect::UndecodableText]);
}

#[test]
fn unlabelled_8bit_in_base64_and_html_falls_back_too() {
    // The fallback has to undo the transfer encoding itself: "caf\xe9" in base64.
    let raw = b"From: a@b.c\nDate: Mon, 1 Jan 2024 00:00:00 +0000\nMessage-ID: <x@b.c>\n\
                Content-Type: text/html\nContent-Transfer-Encoding: base64\n\nPGI+Y2Fm6TwvYj4=\n";
    let mail = qd_mail::parse(raw);
    assert_eq!(mail.html.as_deref(), Some("<b>café</b>"));
    assert_eq!(mail.text, "café");
}
