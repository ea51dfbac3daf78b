//! The privacy promise as tests: the filter's input cannot reach message text.

use qd_filter::{JudgeContext, Label, Learner, MessageView};

use crate::support::{case_filter, with_attachment};

const MARKER: &str = "zq7-body-marker-4711";

fn message_with_marker() -> Vec<u8> {
    format!(
        "From: Alice <alice@example.com>\nTo: help@quietdesk.example\nSubject: hello\n\
         Date: Mon, 4 Mar 2024 10:00:00 +0000\nMessage-ID: <p1@example.com>\n\
         MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b\"\n\n\
         --b\nContent-Type: multipart/alternative; boundary=\"a\"\n\n\
         --a\nContent-Type: text/plain; charset=utf-8\n\nplain {MARKER} text\n\
         --a\nContent-Type: text/html; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n\
         <p>html {MARKER} text</p>\n--a--\n\
         --b\nContent-Type: text/plain; name=\"notes.txt\"\nContent-Disposition: attachment; filename=\"notes.txt\"\n\n\
         notes {MARKER}\n\
         --b\nContent-Type: message/rfc822\n\n\
         From: x@example.org\nSubject: inner\n\ninner {MARKER} body\n--b--\n"
    )
    .into_bytes()
}

#[test]
fn view_debug_and_serialisation_hold_no_body_text() {
    let view = MessageView::from_raw(&message_with_marker());
    // The view did see the parts: digests exist for every leaf.
    assert!(view.parts().len() >= 6, "{:?}", view.parts());
    assert!(view
        .parts()
        .iter()
        .filter(|p| p.content_type == "text")
        .all(|p| p.sha256.is_some()));
    let debug = format!("{view:?}");
    let json = serde_json::to_string(&view).unwrap();
    assert!(!debug.contains(MARKER), "Debug leaks body text");
    assert!(!json.contains(MARKER), "serialisation leaks body text");
    // Body text parts are never kept for the scanner; the attached notes.txt is (an
    // attached file goes to the signature scanner whatever its type), and the view's
    // Debug and JSON above still hold none of it.
    assert_eq!(view.attachments().len(), 1);
}

#[test]
fn verdict_and_learner_hold_no_body_text() {
    let raw = message_with_marker();
    let view = MessageView::from_raw(&raw);
    let mut learner = Learner::new();
    let features = learner.features(&view, &["HTML_ONLY"]);
    learner.learn(&features, Label::Spam);
    let tokens = learner.tokens(&view, &["HTML_ONLY"]);
    assert!(!tokens.iter().any(|t| t.contains(MARKER)));
    assert!(
        !tokens.iter().any(|t| t.contains("hello")),
        "the Subject's words are the message's own: {tokens:?}"
    );
    assert!(
        !tokens.iter().any(|t| t.contains("help@quietdesk.example")),
        "recipient addresses are never learned: {tokens:?}"
    );
    let verdict = case_filter().judge(&view, &JudgeContext::pinned_to(&view));
    assert!(!serde_json::to_string(&verdict).unwrap().contains(MARKER));
    assert!(!serde_json::to_string(&learner).unwrap().contains(MARKER));
}

/// A header block ended by a line of white space: mail-parser reads on and takes body
/// lines with a colon for header fields. The view stops at that line, so the text
/// reaches neither the rules nor the learner.
#[test]
fn body_lines_after_a_white_space_line_are_not_headers() {
    let raw = format!(
        "From: Alice <alice@example.com>\nSubject: hi\n \nMy password: {MARKER}\nMore: text\n"
    );
    let view = MessageView::from_raw(raw.as_bytes());
    assert!(view.header("Subject").is_some());
    assert!(view.header("My password").is_none(), "{:?}", view.headers());
    assert!(!format!("{view:?}").contains(MARKER));
    let tokens = Learner::new().tokens(&view, &[]);
    assert!(!tokens.iter().any(|t| t.contains(MARKER)), "{tokens:?}");
}

#[test]
fn attachment_bytes_do_not_show_in_debug() {
    let view = MessageView::from_raw(&with_attachment(
        "data.bin",
        "application/octet-stream",
        MARKER.as_bytes(),
    ));
    assert_eq!(view.attachments().len(), 1);
    assert!(!format!("{view:?}").contains(MARKER));
    assert!(!serde_json::to_string(&view).unwrap().contains(MARKER));
}

#[test]
fn qd_filter_does_not_depend_on_mail_parser() {
    let manifest =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml")).unwrap();
    let doc: toml::Table = manifest.parse().unwrap();
    for section in ["dependencies", "dev-dependencies", "build-dependencies"] {
        if let Some(deps) = doc.get(section).and_then(|d| d.as_table()) {
            assert!(
                !deps.contains_key("mail-parser"),
                "qd-filter must see mail only through qd_mail::MessageView ({section})"
            );
        }
    }
}

/// Only the signatures module may receive attachment bytes.
#[test]
fn only_the_signature_module_implements_the_scanner() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offenders = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let implements = text.contains("AttachmentScanner for");
            if implements && !path.starts_with(src.join("signatures")) {
                offenders.push(path.display().to_string());
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "AttachmentScanner implemented in {offenders:?}"
    );
}
