use chrono::{TimeZone, Utc};
use qd_mail::{Address, Defect};

use crate::{fixture, parse_fixture};

#[test]
fn without_bodies_keeps_everything_but_the_text() {
    let mail = parse_fixture("alternative.eml");
    let light = mail.without_bodies();
    assert_eq!(light.text, "");
    assert_eq!(light.html, None);
    // Everything else is the same: put the bodies back and compare whole.
    let restored = qd_mail::ParsedMail {
        text: mail.text.clone(),
        html: mail.html.clone(),
        ..light
    };
    assert_eq!(restored, mail);
}

#[test]
fn multipart_alternative_uses_the_plain_part() {
    let mail = parse_fixture("alternative.eml");
    assert_eq!(mail.subject.as_deref(), Some("Your order № 42"));
    assert_eq!(mail.text, "Your order № 42 has shipped. Thanks!");
    assert!(mail.html.as_deref().unwrap().contains("<b>shipped</b>"));
    assert_eq!(
        mail.from,
        Some(Address {
            name: Some("Support Bot".into()),
            addr: "bot@example.com".into()
        })
    );
    let to: Vec<_> = mail.to.iter().map(|a| a.addr.as_str()).collect();
    assert_eq!(to, ["alice@example.org", "bob@example.org"]);
    assert_eq!(mail.to[0].name.as_deref(), Some("Alice"));
    assert_eq!(mail.to[1].name, None);
    assert_eq!(mail.cc[0].name.as_deref(), Some("Zoë"));
    assert_eq!(
        mail.date,
        Some(Utc.with_ymd_and_hms(2024, 1, 7, 17, 0, 0).unwrap())
    );
    assert!(mail.attachments.is_empty());
    assert!(mail.defects.is_empty(), "{:?}", mail.defects);
}

#[test]
fn nested_mixed_with_pdf_attachment() {
    let mail = parse_fixture("mixed-pdf.eml");
    assert_eq!(mail.text, "Please find the contract attached.");
    assert_eq!(
        mail.html.as_deref(),
        Some("<p>Please find the <i>contract</i> attached.</p>")
    );
    assert_eq!(mail.attachments.len(), 1);
    let pdf = &mail.attachments[0];
    assert_eq!(pdf.filename.as_deref(), Some("contract.pdf"));
    assert_eq!(pdf.content_type, "application/pdf");
    assert_eq!(pdf.size, 327);
    assert_eq!(
        pdf.sha256,
        "026f5783e42f0eafc417b1dbc1750f13dd5b99642e64a3d1465c263884cee22b"
    );
    assert!(mail.defects.is_empty(), "{:?}", mail.defects);
}

#[test]
fn forwarded_message_is_one_attachment_with_its_raw_bytes() {
    let mail = parse_fixture("forward.eml");
    assert_eq!(mail.text, "See below.");
    assert_eq!(mail.attachments.len(), 1);
    let fwd = &mail.attachments[0];
    assert_eq!(fwd.content_type, "message/rfc822");
    // The line break before the boundary belongs to the delimiter (RFC 2046 §5.1.1).
    assert_eq!(fwd.size, 145);
    assert_eq!(
        fwd.sha256,
        "eef209b7c99ece9df34a5a25c301b193d88f08ce8bd6f601d13aa58fcbbc0816"
    );
}

#[test]
fn html_only_mail_gets_a_text_rendering() {
    let mail = parse_fixture("html-only.eml");
    assert_eq!(
        mail.text,
        "Fish & Chips\n\nCafé – \"open\" daily\n\nPrice: €5 <cheap>"
    );
    assert!(!mail.text.contains("secret"));
    assert!(!mail.text.contains("alert"));
    assert!(!mail.text.contains("Ignore me"));
    assert!(mail.html.as_deref().unwrap().contains("<script>"));
    assert!(mail.defects.is_empty(), "{:?}", mail.defects);
}

#[test]
fn missing_identity_headers_are_defects() {
    let mail = parse_fixture("missing-headers.eml");
    assert_eq!(mail.from, None);
    assert_eq!(mail.message_id, None);
    assert_eq!(mail.date, None);
    assert_eq!(mail.subject.as_deref(), Some("who am I"));
    assert_eq!(mail.text, "No sender, no id, no date.\n");
    assert_eq!(
        mail.defects,
        vec![
            Defect::MissingMessageId,
            Defect::MissingFrom,
            Defect::MissingDate
        ]
    );
}

#[test]
fn invalid_identity_headers_are_defects() {
    let raw = b"From: Nobody\nDate: yesterday-ish\nMessage-ID: <>\nSubject:   \n\nx\n";
    let mail = qd_mail::parse(raw);
    assert_eq!(mail.from, None);
    assert_eq!(mail.date, None);
    assert_eq!(mail.subject, None);
    for defect in [
        Defect::InvalidFrom,
        Defect::InvalidDate,
        Defect::InvalidMessageId,
    ] {
        assert!(
            mail.defects.contains(&defect),
            "{defect} in {:?}",
            mail.defects
        );
    }
}

#[test]
fn threading_headers_are_normalised() {
    let mail = parse_fixture("reply.eml");
    assert_eq!(mail.message_id.as_deref(), Some("reply-1@example.org"));
    assert_eq!(mail.in_reply_to, ["orig-1@quietdesk.test"]);
    assert_eq!(
        mail.references,
        ["root@quietdesk.test", "orig-1@quietdesk.test"]
    );
    assert_eq!(mail.subject.as_deref(), Some("Re: [#123] Printer broken"));
    let reply_to = mail.reply_to.unwrap();
    assert_eq!(reply_to.addr, "alice@home.example");
    assert_eq!(reply_to.name.as_deref(), Some("Alice Private"));
}

#[test]
fn mbox_envelope_is_stripped_and_recorded() {
    let raw = fixture("mbox-envelope.eml");
    let mail = qd_mail::parse(&raw);
    assert_eq!(mail.defects, vec![Defect::MboxEnvelopeStripped]);
    assert_eq!(mail.subject.as_deref(), Some("envelope"));
    let envelope_len = raw.iter().position(|&b| b == b'\n').unwrap() + 1;
    assert_eq!(mail.size, raw.len() - envelope_len);
    assert!(qd_mail::looks_like_mail(&raw));
}

#[test]
fn truncated_multipart_is_flagged_but_keeps_what_arrived() {
    let mail = parse_fixture("truncated.eml");
    assert!(
        mail.defects.contains(&Defect::Truncated),
        "{:?}",
        mail.defects
    );
    assert!(mail.text.starts_with("first part"), "{:?}", mail.text);
}

/// Many sibling multiparts: each one's closing line is found (a single pass, where a
/// backward search per part took quadratic time), and the one not closed is named.
#[test]
fn every_nested_multipart_must_be_closed() {
    let build = |close_root: bool, close_last: bool| {
        let mut raw = b"From: a@example.org\r\nMessage-ID: <m@example.org>\r\nContent-Type: multipart/mixed; boundary=R\r\n\r\n".to_vec();
        for n in 0..2000 {
            raw.extend_from_slice(
                format!("--R\r\nContent-Type: multipart/alternative; boundary=b{n}\r\n\r\n--b{n}\r\nContent-Type: text/plain\r\n\r\npart {n}\r\n")
                    .as_bytes(),
            );
            if n < 1999 || close_last {
                raw.extend_from_slice(format!("--b{n}-- \r\n").as_bytes());
            }
        }
        if close_root {
            raw.extend_from_slice(b"--R--\r\n");
        }
        raw
    };
    let truncated = |raw: &[u8]| qd_mail::parse(raw).defects.contains(&Defect::Truncated);
    assert!(!truncated(&build(true, true)));
    assert!(truncated(&build(false, true)), "the root is not closed");
    assert!(
        truncated(&build(true, false)),
        "the last part is not closed"
    );
}

#[test]
fn header_block_cut_mid_line_is_truncated() {
    let mail = qd_mail::parse(b"From: a@b.c\nSubject: cut her");
    assert!(
        mail.defects.contains(&Defect::Truncated),
        "{:?}",
        mail.defects
    );
}

#[test]
fn dates_convert_to_utc() {
    let raw = b"From: a@b.c\nMessage-ID: <d@b.c>\nDate: Mon, 31 Dec 2023 23:30:00 -0130\n\nx\n";
    let mail = qd_mail::parse(raw);
    assert_eq!(
        mail.date,
        Some(Utc.with_ymd_and_hms(2024, 1, 1, 1, 0, 0).unwrap())
    );
    let raw = b"From: a@b.c\nMessage-ID: <d@b.c>\nDate: Fri, 31 Feb 2023 10:00:00 +0000\n\nx\n";
    assert!(qd_mail::parse(raw).defects.contains(&Defect::InvalidDate));
}

#[test]
fn defects_serialise_as_snake_case() {
    let json =
        serde_json::to_string(&[Defect::EightBitHeaders, Defect::MboxEnvelopeStripped]).unwrap();
    assert_eq!(json, r#"["eight_bit_headers","mbox_envelope_stripped"]"#);
    assert_eq!(Defect::MissingMessageId.to_string(), "missing_message_id");
}

#[test]
fn text_of_an_unclosed_part_with_an_unknown_charset_is_salvaged() {
    // mail-parser drops this part's text entirely; staff must still find the message.
    let raw = b"From: c@example.org\r\nSubject: broken\r\nMessage-ID: <b@example.org>\r\nContent-Type: multipart/mixed; boundary=\"zz\"\r\n\r\n--zz\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n\r\nhalf a message\r\n";
    let p = qd_mail::parse(raw);
    assert!(
        p.defects.contains(&qd_mail::Defect::Truncated),
        "{:?}",
        p.defects
    );
    assert_eq!(p.text, "half a message");
    assert!(!p.text.contains("--zz"), "boundary lines are not text");
    assert!(
        !p.text.contains("Content-Type"),
        "part headers are not text"
    );
}

/// Everything a view shows, attachment bytes included (by digest), for comparing views.
pub(crate) fn view_fingerprint(view: &qd_mail::MessageView) -> String {
    struct Digests;
    impl qd_mail::view::AttachmentScanner for Digests {
        fn scan(&self, _part: &qd_mail::view::PartInfo, bytes: &[u8]) -> Vec<String> {
            use sha2::Digest;
            vec![format!("{:x}", sha2::Sha256::digest(bytes))]
        }
    }
    format!(
        "{:?}\n{}\n{:?}",
        view,
        serde_json::to_string(view).unwrap(),
        view.scan_with(&Digests)
    )
}

/// One parse for both gives what the two functions give alone, on every fixture.
#[test]
fn one_parse_serves_the_store_and_the_filter() {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let raw = std::fs::read(entry.unwrap().path()).unwrap();
        let (mail, view) = qd_mail::parse_with_view(&raw);
        assert_eq!(mail, qd_mail::parse(&raw));
        assert_eq!(
            view_fingerprint(&view),
            view_fingerprint(&qd_mail::MessageView::from_raw(&raw))
        );
        n += 1;
    }
    assert!(n >= 15, "{n} fixtures");
}
