//! The one way this crate calls mail-parser: bounded, so hostile mail cannot take the
//! process down.
//!
//! mail-parser gives every unencoded `message/*` part its own nested [`Message`], level
//! inside level, without a limit. Freeing (or walking) 200,000 such levels, a 6 MB
//! message, overflows the thread's stack, and a stack overflow aborts the process:
//! `catch_unwind` cannot stop it. Through IMAP that message would never be
//! checkpointed, so `serve` would die on it again after every restart. Mail that could
//! nest deeper than [`MAX_NESTED_MESSAGES`] is read for its top-level header block only;
//! the caller keeps the raw body and records the defect.

use mail_parser::{Message, MessageParser};

/// More `message/*` (or `multipart/digest`) content types than any real mail nests:
/// a digest of a busy list holds a few hundred messages side by side. 10,000 nested
/// levels were measured to fit in a 2 MiB thread stack.
pub(crate) const MAX_NESTED_MESSAGES: usize = 1000;

/// A mail-parser reading of `buf`. `body_skipped` is true when the input could nest
/// messages too deep and only the header block was parsed.
pub(crate) struct Parsed<'x> {
    pub message: Option<Message<'x>>,
    pub body_skipped: bool,
}

pub(crate) fn parse(buf: &[u8]) -> Parsed<'_> {
    let body_skipped = nesting_markers(buf) > MAX_NESTED_MESSAGES;
    let input = if body_skipped {
        buf.get(..crate::view::header_block_len(buf)).unwrap_or(buf)
    } else {
        buf
    };
    // mail-parser is third-party code fed hostile input: a panic becomes "no message".
    let message = std::panic::catch_unwind(|| MessageParser::default().parse(input))
        .ok()
        .flatten();
    Parsed {
        message,
        body_skipped,
    }
}

/// How many Content-Type fields could open a nested message: `message/…` and
/// `multipart/digest` (whose parts default to `message/rfc822`). Counting stops just past
/// the limit, so a huge message costs one partial scan.
fn nesting_markers(buf: &[u8]) -> usize {
    const NAME: &[u8] = b"content-type:";
    let mut count = 0;
    let mut start = 0;
    loop {
        let line = buf.get(start..).unwrap_or_default();
        if line.len() > NAME.len() && line[..NAME.len()].eq_ignore_ascii_case(NAME) {
            let value = &line[NAME.len()..];
            let skip = value
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
                .unwrap_or(value.len());
            let value = &value[skip..];
            let starts =
                |p: &[u8]| value.len() >= p.len() && value[..p.len()].eq_ignore_ascii_case(p);
            if starts(b"message/") || starts(b"multipart/digest") {
                count += 1;
                if count > MAX_NESTED_MESSAGES {
                    return count;
                }
            }
        }
        match memchr::memchr(b'\n', line) {
            Some(nl) => start += nl + 1,
            None => return count,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> Vec<u8> {
        let mut raw = b"From: a@example.org\r\nSubject: nest\r\n".to_vec();
        for _ in 0..levels {
            raw.extend_from_slice(b"Content-Type: message/rfc822\r\n\r\n");
        }
        raw.extend_from_slice(b"Subject: inner\r\n\r\nx\r\n");
        raw
    }

    #[test]
    fn markers_are_counted_case_blind_and_across_a_fold() {
        let raw = b"Content-Type: Message/RFC822\r\n\r\ncontent-type:\r\n multipart/DIGEST\r\n\r\nContent-Type: text/plain\r\n";
        assert_eq!(nesting_markers(raw), 2);
        assert_eq!(nesting_markers(&nested(5)), 5);
        assert_eq!(
            nesting_markers(&nested(5000)),
            MAX_NESTED_MESSAGES + 1,
            "counting stops past the limit"
        );
    }

    #[test]
    fn mail_nested_too_deep_is_read_for_its_headers_only() {
        let raw = nested(10);
        let shallow = parse(&raw);
        assert!(!shallow.body_skipped);
        let message = shallow.message.expect("parses");
        assert!(
            matches!(message.parts[0].body, mail_parser::PartType::Message(_)),
            "a shallow nesting is parsed whole"
        );

        // 200,000 levels aborted the process with a stack overflow before.
        let deep = nested(200_000);
        let parsed = parse(&deep);
        assert!(parsed.body_skipped);
        let message = parsed.message.expect("the header block still parses");
        assert_eq!(message.subject(), Some("nest"));
        assert!(!matches!(
            message.parts[0].body,
            mail_parser::PartType::Message(_)
        ));
    }

    #[test]
    fn the_header_block_ends_at_the_first_empty_line() {
        let header_block_end = crate::view::header_block_len;
        assert_eq!(header_block_end(b"A: b\r\n\r\nbody"), 8);
        assert_eq!(header_block_end(b"A: b\n\nbody"), 6);
        assert_eq!(header_block_end(b"A: b\nC: d"), 9);
    }
}
