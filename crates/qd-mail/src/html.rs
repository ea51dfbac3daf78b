//! A text rendering of HTML good enough for search and snippets.
//!
//! Not a browser: one pass over the bytes, tags dropped, `<script>`, `<style>`, `<title>`
//! and `<template>` dropped with their content, comments dropped, block elements become
//! line breaks, whitespace collapses, entities decode. mail-parser has `html_to_text` too,
//! but it glues words across block tags (`<div>a</div><div>b</div>` -> "ab"), which breaks
//! search.

/// Elements whose content is never shown as text.
const HIDDEN: [&[u8]; 4] = [b"script", b"style", b"title", b"template"];

pub(crate) fn html_to_text(html: &str) -> String {
    let bytes = html.as_bytes();
    let mut sink = Sink::with_capacity(html.len() / 2);
    let mut pos = 0;
    let mut run_start = 0;
    while let Some(offset) = memchr::memchr2(b'<', b'&', bytes.get(pos..).unwrap_or_default()) {
        let at = pos + offset;
        let next = if bytes.get(at) == Some(&b'<') {
            tag(html, at, &mut sink, run_start)
        } else {
            entity(html, at, &mut sink, run_start)
        };
        match next {
            Some(after) => {
                pos = after;
                run_start = after;
            }
            // Not markup after all (`a < b`, `AT&T`): keep it in the text run.
            None => pos = at + 1,
        }
    }
    sink.text(html.get(run_start..).unwrap_or_default());
    sink.out
}

/// Handles markup starting at `at` (a `<`). Returns where the text resumes, or `None` when
/// the `<` is literal text.
fn tag(html: &str, at: usize, sink: &mut Sink, run_start: usize) -> Option<usize> {
    let bytes = html.as_bytes();
    let rest = bytes.get(at + 1..).unwrap_or_default();
    let end_of_input = bytes.len();
    match rest.first() {
        Some(b'!') if rest.starts_with(b"!--") => {
            sink.text(html.get(run_start..at).unwrap_or_default());
            // Outlook hides whole `<xml>` islands in conditional comments; all of it goes.
            let body = at + 4;
            Some(
                memchr::memmem::find(bytes.get(body..).unwrap_or_default(), b"-->")
                    .map_or(end_of_input, |i| body + i + 3),
            )
        }
        Some(b'!' | b'?') => {
            sink.text(html.get(run_start..at).unwrap_or_default());
            Some(memchr::memchr(b'>', rest).map_or(end_of_input, |i| at + 1 + i + 1))
        }
        Some(b'/') | Some(b'a'..=b'z' | b'A'..=b'Z') => {
            sink.text(html.get(run_start..at).unwrap_or_default());
            let closing = rest.first() == Some(&b'/');
            let name_start = if closing { 1 } else { 0 };
            let name_len = rest
                .get(name_start..)
                .unwrap_or_default()
                .iter()
                .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'-'))
                .count();
            let name = rest
                .get(name_start..name_start + name_len)
                .unwrap_or_default();
            let after = tag_end(bytes, at + 1 + name_start + name_len);
            if !closing && HIDDEN.iter().any(|h| h.eq_ignore_ascii_case(name)) {
                return Some(skip_element(bytes, after, name));
            }
            layout(name, sink);
            Some(after)
        }
        _ => None,
    }
}

/// Position just past the `>` closing a tag, honouring quoted attribute values.
fn tag_end(bytes: &[u8], mut pos: usize) -> usize {
    let mut quote = None;
    while let Some(&b) = bytes.get(pos) {
        pos += 1;
        match (quote, b) {
            (None, b'"' | b'\'') => quote = Some(b),
            (Some(q), _) if q == b => quote = None,
            (None, b'>') => return pos,
            _ => {}
        }
    }
    pos
}

/// Skips to just past `</name ...>`; an unclosed hidden element hides the rest.
fn skip_element(bytes: &[u8], from: usize, name: &[u8]) -> usize {
    let hay = bytes.get(from..).unwrap_or_default();
    for i in memchr::memmem::find_iter(hay, b"</") {
        let candidate = hay.get(i + 2..i + 2 + name.len()).unwrap_or_default();
        if candidate.eq_ignore_ascii_case(name) {
            return tag_end(bytes, from + i + 2 + name.len());
        }
    }
    bytes.len()
}

fn layout(name: &[u8], sink: &mut Sink) {
    let is = |n: &str| name.eq_ignore_ascii_case(n.as_bytes());
    if [
        "p",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "table",
        "blockquote",
        "pre",
        "ul",
        "ol",
    ]
    .iter()
    .any(|n| is(n))
    {
        sink.newlines(2);
    } else if [
        "br", "div", "li", "tr", "hr", "dl", "dt", "dd", "section", "article", "header", "footer",
        "address", "form", "center",
    ]
    .iter()
    .any(|n| is(n))
    {
        sink.newlines(1);
    } else if is("td") || is("th") {
        sink.space = true;
    }
}

/// Handles an entity starting at `at` (a `&`). Returns where the text resumes, or `None`
/// when the `&` is literal text.
fn entity(html: &str, at: usize, sink: &mut Sink, run_start: usize) -> Option<usize> {
    let rest = html.as_bytes().get(at + 1..).unwrap_or_default();
    let (decoded, len) = if let Some(num) = rest.strip_prefix(b"#") {
        numeric_entity(num).map(|(c, l)| (Decoded::Char(c), l + 1))?
    } else {
        named_entity(rest)?
    };
    sink.text(html.get(run_start..at).unwrap_or_default());
    match decoded {
        Decoded::Char(c) => sink.char(c),
        Decoded::Str(s) => sink.text(s),
    }
    Some(at + 1 + len)
}

enum Decoded {
    Char(char),
    Str(&'static str),
}

/// `#123;` or `#x1F600;` (after the `&`); the `;` is optional as in browsers.
fn numeric_entity(num: &[u8]) -> Option<(char, usize)> {
    let (radix, digits_at) = match num.first() {
        Some(b'x' | b'X') => (16, 1),
        _ => (10, 0),
    };
    let digits = num
        .get(digits_at..)
        .unwrap_or_default()
        .iter()
        .take(8)
        .take_while(|b| b.is_ascii_hexdigit() && (radix == 16 || b.is_ascii_digit()))
        .count();
    if digits == 0 {
        return None;
    }
    let text = std::str::from_utf8(num.get(digits_at..digits_at + digits)?).ok()?;
    let code = u32::from_str_radix(text, radix).ok()?;
    let mut len = digits_at + digits;
    if num.get(len) == Some(&b';') {
        len += 1;
    }
    // HTML maps the C1 range to windows-1252, and old mail really does say `&#146;`.
    let c = match code {
        0x80..=0x9F => {
            let byte = [u8::try_from(code).unwrap_or(b'?')];
            encoding_rs::WINDOWS_1252
                .decode_without_bom_handling(&byte)
                .0
                .chars()
                .next()
                .unwrap_or(char::REPLACEMENT_CHARACTER)
        }
        0 => char::REPLACEMENT_CHARACTER,
        _ => char::from_u32(code).unwrap_or(char::REPLACEMENT_CHARACTER),
    };
    Some((c, len))
}

/// Named entities common in mail. Unknown names stay literal: a snippet showing `&foo;` is
/// better than one missing text.
fn named_entity(rest: &[u8]) -> Option<(Decoded, usize)> {
    let name_len = rest
        .iter()
        .take(10)
        .take_while(|b| b.is_ascii_alphanumeric())
        .count();
    let name = rest.get(..name_len)?;
    let has_semicolon = rest.get(name_len) == Some(&b';');
    let decoded = match name {
        b"amp" => Decoded::Char('&'),
        b"lt" => Decoded::Char('<'),
        b"gt" => Decoded::Char('>'),
        b"quot" => Decoded::Char('"'),
        b"nbsp" => Decoded::Char(' '),
        // Browsers accept these five without `;`; everything else needs one.
        _ if !has_semicolon => return None,
        b"apos" => Decoded::Char('\''),
        b"ensp" | b"emsp" | b"thinsp" => Decoded::Char(' '),
        b"shy" | b"zwnj" | b"zwj" | b"lrm" | b"rlm" => Decoded::Str(""),
        b"copy" => Decoded::Char('©'),
        b"reg" => Decoded::Char('®'),
        b"trade" => Decoded::Char('™'),
        b"hellip" => Decoded::Char('…'),
        b"mdash" => Decoded::Char('—'),
        b"ndash" => Decoded::Char('–'),
        b"lsquo" => Decoded::Char('‘'),
        b"rsquo" => Decoded::Char('’'),
        b"sbquo" => Decoded::Char('‚'),
        b"ldquo" => Decoded::Char('“'),
        b"rdquo" => Decoded::Char('”'),
        b"bdquo" => Decoded::Char('„'),
        b"laquo" => Decoded::Char('«'),
        b"raquo" => Decoded::Char('»'),
        b"euro" => Decoded::Char('€'),
        b"pound" => Decoded::Char('£'),
        b"yen" => Decoded::Char('¥'),
        b"cent" => Decoded::Char('¢'),
        b"sect" => Decoded::Char('§'),
        b"para" => Decoded::Char('¶'),
        b"deg" => Decoded::Char('°'),
        b"middot" => Decoded::Char('·'),
        b"bull" => Decoded::Char('•'),
        b"times" => Decoded::Char('×'),
        b"divide" => Decoded::Char('÷'),
        b"plusmn" => Decoded::Char('±'),
        b"iexcl" => Decoded::Char('¡'),
        b"iquest" => Decoded::Char('¿'),
        b"auml" => Decoded::Char('ä'),
        b"ouml" => Decoded::Char('ö'),
        b"uuml" => Decoded::Char('ü'),
        b"Auml" => Decoded::Char('Ä'),
        b"Ouml" => Decoded::Char('Ö'),
        b"Uuml" => Decoded::Char('Ü'),
        b"szlig" => Decoded::Char('ß'),
        b"aacute" => Decoded::Char('á'),
        b"eacute" => Decoded::Char('é'),
        b"iacute" => Decoded::Char('í'),
        b"oacute" => Decoded::Char('ó'),
        b"uacute" => Decoded::Char('ú'),
        b"Aacute" => Decoded::Char('Á'),
        b"Eacute" => Decoded::Char('É'),
        b"agrave" => Decoded::Char('à'),
        b"egrave" => Decoded::Char('è'),
        b"ugrave" => Decoded::Char('ù'),
        b"acirc" => Decoded::Char('â'),
        b"ecirc" => Decoded::Char('ê'),
        b"ocirc" => Decoded::Char('ô'),
        b"ccedil" => Decoded::Char('ç'),
        b"Ccedil" => Decoded::Char('Ç'),
        b"ntilde" => Decoded::Char('ñ'),
        b"Ntilde" => Decoded::Char('Ñ'),
        b"aring" => Decoded::Char('å'),
        b"Aring" => Decoded::Char('Å'),
        b"oslash" => Decoded::Char('ø'),
        b"Oslash" => Decoded::Char('Ø'),
        b"aelig" => Decoded::Char('æ'),
        b"AElig" => Decoded::Char('Æ'),
        _ => return None,
    };
    Some((decoded, name_len + usize::from(has_semicolon)))
}

/// Collects text, collapsing whitespace and merging line breaks requested by block tags.
struct Sink {
    out: String,
    space: bool,
    newlines: u8,
}

impl Sink {
    fn with_capacity(capacity: usize) -> Self {
        Sink {
            out: String::with_capacity(capacity),
            space: false,
            newlines: 0,
        }
    }

    fn text(&mut self, text: &str) {
        let bytes = text.as_bytes();
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if b.is_ascii_whitespace() {
                self.space = true;
                i += 1;
            } else if b.is_ascii() {
                // Copy a run of visible ASCII at once; that is most of any mail.
                let run = bytes
                    .get(i..)
                    .unwrap_or_default()
                    .iter()
                    .take_while(|b| b.is_ascii() && !b.is_ascii_whitespace())
                    .count();
                self.flush();
                self.out.push_str(text.get(i..i + run).unwrap_or_default());
                i += run;
            } else {
                let Some(c) = text.get(i..).and_then(|t| t.chars().next()) else {
                    return;
                };
                self.char(c);
                i += c.len_utf8();
            }
        }
    }

    fn char(&mut self, c: char) {
        if c.is_whitespace() {
            self.space = true;
        } else if !matches!(c, '\u{200b}'..='\u{200d}' | '\u{feff}' | '\u{ad}') {
            // Zero-width characters are dropped: newsletters pad their preheaders with them.
            self.flush();
            self.out.push(c);
        }
    }

    fn newlines(&mut self, n: u8) {
        self.newlines = self.newlines.max(n);
    }

    fn flush(&mut self) {
        if !self.out.is_empty() {
            if self.newlines > 0 {
                for _ in 0..self.newlines {
                    self.out.push('\n');
                }
            } else if self.space {
                self.out.push(' ');
            }
        }
        self.space = false;
        self.newlines = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::html_to_text;

    #[test]
    fn blocks_become_lines_and_words_stay_apart() {
        assert_eq!(html_to_text("<div>a</div><div>b</div>"), "a\nb");
        assert_eq!(
            html_to_text("<p>one</p><p>two<br>three</p>"),
            "one\n\ntwo\nthree"
        );
        assert_eq!(
            html_to_text("<table><tr><td>x</td><td>y</td></tr></table>"),
            "x y"
        );
    }

    #[test]
    fn hidden_elements_and_comments_are_dropped() {
        let html = "<html><head><title>T</title><style>p{color:red}</style></head>\
                    <body><!-- note --><script type=\"x\">alert('<p>')</script>Hi\
                    <SCRIPT>x</SCRIPT> there<!--[if mso]><xml>o</xml><![endif]--></body></html>";
        assert_eq!(html_to_text(html), "Hi there");
    }

    #[test]
    fn entities_decode() {
        assert_eq!(
            html_to_text(
                "Tom &amp; Jerry &lt;3 &eacute;t&eacute; &#8364;5 &#x263A; &#146;s&nbsp;x"
            ),
            "Tom & Jerry <3 été €5 ☺ ’s x"
        );
        assert_eq!(html_to_text("AT&T &bogus; a < b"), "AT&T &bogus; a < b");
        assert_eq!(
            html_to_text("&#0; &#xD800; &#99999999"),
            "\u{fffd} \u{fffd} \u{fffd}"
        );
    }

    #[test]
    fn quoted_gt_in_attributes_does_not_end_the_tag() {
        assert_eq!(
            html_to_text("<a title=\"a > b\" href='x>y'>link</a>"),
            "link"
        );
    }

    #[test]
    fn broken_markup_does_not_panic() {
        for html in [
            "<",
            "&",
            "&#",
            "&#x",
            "<!--",
            "<script>",
            "<a href=\"",
            "</",
            "<!",
            "é<é&é",
        ] {
            let _ = html_to_text(html);
        }
        assert_eq!(html_to_text("<script>never closed"), "");
    }
}
