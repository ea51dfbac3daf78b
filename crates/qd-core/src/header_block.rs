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

/// Cuts the header block of `raw` into fields. CRLF and bare LF both end a line; a
/// line that starts with a space or a tab continues the field before it.
pub fn header_fields(raw: &[u8]) -> HeaderBlock<'_> {
    let mut fields = Vec::new();
    let mut field_start = 0;
    let mut pos = 0;
    while pos < raw.len() {
        let line_end = raw[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(raw.len(), |p| pos + p + 1);
        let line = &raw[pos..line_end];
        if line == b"\n" || line == b"\r\n" {
            break;
        }
        let next_continues = raw.get(line_end).is_some_and(|&b| b == b' ' || b == b'\t');
        if !next_continues {
            fields.push(&raw[field_start..line_end]);
            field_start = line_end;
        }
        pos = line_end;
    }
    HeaderBlock {
        fields,
        body_start: pos.min(raw.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn without_a_blank_line_everything_is_header() {
        let raw = b"A: 1\r\nB: 2";
        let block = header_fields(raw);
        assert_eq!(block.fields, vec![&b"A: 1\r\n"[..], b"B: 2"]);
        assert_eq!(block.body_start, raw.len());
        assert_eq!(header_fields(b"").fields.len(), 0);
    }
}
