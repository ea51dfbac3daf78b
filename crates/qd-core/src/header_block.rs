//! The header block of raw mail, cut into fields without parsing them: for the code
//! that rewrites a few fields and must keep every other byte as it was.

/// The header fields of a message and where its body starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderBlock<'a> {
    /// Each field with its continuation lines and line ends, in order.
    pub fields: Vec<&'a [u8]>,
    /// The offset of the empty line that ends the header block (the body follows
    /// it), or the length of `raw` when there is none.
    pub body_start: usize,
}

/// The length (line break included) of the line `rest` starts with, when that line is
/// empty or holds only white space: the end of a header block, as mail-parser reads it
/// too (RFC 5322 wants an empty line; some senders put spaces on it).
pub fn blank_line_len(rest: &[u8]) -> Option<usize> {
    let end = rest.iter().position(|&b| b == b'\n')?;
    rest[..end]
        .iter()
        .all(|b| matches!(b, b' ' | b'\t' | b'\r'))
        .then_some(end + 1)
}

/// The offset of the blank line that ends the header block of `raw` (see
/// [`blank_line_len`]), or the length of `raw` when there is none.
pub fn header_block_end(raw: &[u8]) -> usize {
    let mut pos = 0;
    while pos < raw.len() {
        if blank_line_len(&raw[pos..]).is_some() {
            return pos;
        }
        pos = line_end(raw, pos);
    }
    raw.len()
}

/// The end (after its line break) of the line that starts at `pos`.
fn line_end(raw: &[u8], pos: usize) -> usize {
    raw[pos..]
        .iter()
        .position(|&b| b == b'\n')
        .map_or(raw.len(), |p| pos + p + 1)
}

/// Cuts the header block of `raw` into fields. CRLF and bare LF both end a line; a
/// line that starts with a space or a tab continues the field before it, unless it is
/// blank (which ends the block).
pub fn header_fields(raw: &[u8]) -> HeaderBlock<'_> {
    let body_start = header_block_end(raw);
    let head = &raw[..body_start];
    let mut fields = Vec::new();
    let mut field_start = 0;
    let mut pos = 0;
    while pos < head.len() {
        let end = line_end(head, pos);
        let next_continues = head.get(end).is_some_and(|&b| b == b' ' || b == b'\t');
        if !next_continues {
            fields.push(&head[field_start..end]);
            field_start = end;
        }
        pos = end;
    }
    HeaderBlock { fields, body_start }
}

/// `raw` without the header fields named `names` (case-insensitive), every other byte
/// as it was.
pub fn without_fields(raw: &[u8], names: &[&str]) -> Vec<u8> {
    let block = header_fields(raw);
    let mut out = Vec::with_capacity(raw.len());
    for field in &block.fields {
        let name = field
            .iter()
            .position(|&b| b == b':')
            .map(|colon| field[..colon].trim_ascii());
        if name.is_some_and(|n| names.iter().any(|w| n.eq_ignore_ascii_case(w.as_bytes()))) {
            continue;
        }
        out.extend_from_slice(field);
    }
    out.extend_from_slice(&raw[block.body_start..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_fields_go_and_the_rest_stays_byte_for_byte() {
        let raw = b"From: a@x\r\nBcc: hidden@y,\r\n\tother@z\r\nTo: b@x\r\nresent-bcc : r@y\r\n\r\nBcc: in the body\r\n";
        assert_eq!(
            without_fields(raw, &["bcc", "Resent-Bcc"]),
            b"From: a@x\r\nTo: b@x\r\n\r\nBcc: in the body\r\n"
        );
        let plain = b"From: a@x\n\nbody";
        assert_eq!(without_fields(plain, &["bcc"]), plain);
    }

    #[test]
    fn fields_keep_their_folding_and_the_body_its_blank_line() {
        let raw = b"A: 1\r\nB: 2\r\n\tmore\r\nC: 3\n\nbody\n";
        let block = header_fields(raw);
        assert_eq!(
            block.fields,
            vec![&b"A: 1\r\n"[..], b"B: 2\r\n\tmore\r\n", b"C: 3\n"]
        );
        assert_eq!(&raw[block.body_start..], b"\nbody\n");
    }

    #[test]
    fn a_line_of_white_space_ends_the_block() {
        let raw = b"A: 1\r\n \t\r\nB: not a field\r\n";
        let block = header_fields(raw);
        assert_eq!(block.fields, vec![&b"A: 1\r\n"[..]]);
        assert_eq!(&raw[block.body_start..], b" \t\r\nB: not a field\r\n");
        assert_eq!(blank_line_len(b" \t\r\nrest"), Some(4));
        assert_eq!(blank_line_len(b"  "), None, "no line break, no line");
    }

    #[test]
    fn without_a_blank_line_everything_is_header() {
        let raw = b"A: 1\r\nB: 2";
        let block = header_fields(raw);
        assert_eq!(block.fields, vec![&b"A: 1\r\n"[..], b"B: 2"]);
        assert_eq!(block.body_start, raw.len());
        assert_eq!(header_fields(b"").fields.len(), 0);
    }
}
