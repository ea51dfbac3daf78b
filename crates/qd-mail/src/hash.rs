//! The content hash: the duplicate guard of imports.

use sha2::{Digest, Sha256};

/// The header values that identify a message, already decoded by `parse`.
#[derive(Default)]
pub(crate) struct Identity {
    pub from: String,
    pub to: String,
    pub cc: String,
    pub date: String,
    pub subject: String,
    pub message_id: String,
}

/// sha256 over `from:…\nto:…\ncc:…\ndate:…\nsubject:…\nmessage-id:…\n\n` followed by the
/// body. Values are folded to single spaces (so they cannot contain the `\n` separators);
/// the body has CRLF turned into LF and its trailing line breaks removed, because mbox
/// writers and IMAP servers disagree about the final newline.
pub(crate) fn content_hash(identity: &Identity, body: &[u8]) -> String {
    let mut hasher = Sha256::new();
    for (name, value) in [
        ("from", &identity.from),
        ("to", &identity.to),
        ("cc", &identity.cc),
        ("date", &identity.date),
        ("subject", &identity.subject),
        ("message-id", &identity.message_id),
    ] {
        hasher.update(name.as_bytes());
        hasher.update(b":");
        hash_folded(&mut hasher, value);
        hasher.update(b"\n");
    }
    hasher.update(b"\n");

    let end = body
        .iter()
        .rposition(|&b| b != b'\n' && b != b'\r')
        .map_or(0, |i| i + 1);
    let body = body.get(..end).unwrap_or_default();
    let mut rest = body;
    for cr in memchr::memmem::find_iter(body, b"\r\n") {
        let done = body.len() - rest.len();
        hasher.update(body.get(done..cr).unwrap_or_default());
        rest = body.get(cr + 1..).unwrap_or_default();
    }
    hasher.update(rest);
    hex::encode(hasher.finalize())
}

fn hash_folded(hasher: &mut Sha256, value: &str) {
    let mut first = true;
    for word in value.split_whitespace() {
        if !first {
            hasher.update(b" ");
        }
        hasher.update(word.as_bytes());
        first = false;
    }
}

/// Trims and folds runs of whitespace (including folded header lines) to one space.
pub(crate) fn fold_whitespace(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for word in value.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(subject: &str) -> Identity {
        Identity {
            subject: subject.into(),
            ..Identity::default()
        }
    }

    #[test]
    fn line_endings_and_trailing_newlines_do_not_matter() {
        let lf = content_hash(&id("s"), b"a\nb\n");
        assert_eq!(lf, content_hash(&id("s"), b"a\r\nb\r\n"));
        assert_eq!(lf, content_hash(&id("s"), b"a\nb"));
        assert_eq!(lf, content_hash(&id("s"), b"a\r\nb\n\n\r\n"));
        assert_ne!(lf, content_hash(&id("s"), b"a\n\nb\n"));
    }

    #[test]
    fn values_are_folded_but_still_count() {
        let a = content_hash(&id("  hello \r\n\t world "), b"x");
        assert_eq!(a, content_hash(&id("hello world"), b"x"));
        assert_ne!(a, content_hash(&id("hello  world!"), b"x"));
        assert_eq!(a.len(), 64);
    }

    #[test]
    fn a_lone_cr_is_kept() {
        assert_ne!(content_hash(&id(""), b"a\rb"), content_hash(&id(""), b"ab"));
    }
}
