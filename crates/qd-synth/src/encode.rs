//! Wire encodings, written by hand: the generator must outrun an importer, and these few
//! loops are cheaper than a dependency's general-purpose API.

use chrono::{DateTime, Datelike, FixedOffset, Offset, Timelike, Utc, Weekday};

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 without line breaks.
pub fn base64(out: &mut String, data: &[u8]) {
    let mut chunks = data.chunks_exact(3);
    for c in &mut chunks {
        let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
        for shift in [18, 12, 6, 0] {
            out.push(char::from(B64[(n >> shift) as usize & 63]));
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let b1 = rest.get(1).copied().unwrap_or(0);
        let n = (u32::from(rest[0]) << 16) | (u32::from(b1) << 8);
        out.push(char::from(B64[(n >> 18) as usize & 63]));
        out.push(char::from(B64[(n >> 12) as usize & 63]));
        if rest.len() == 2 {
            out.push(char::from(B64[(n >> 6) as usize & 63]));
        } else {
            out.push('=');
        }
        out.push('=');
    }
}

/// Base64 body of a MIME part: 76-character lines (RFC 2045 §6.8), CRLF after each.
pub fn base64_body(out: &mut String, data: &[u8]) {
    // 57 input bytes make exactly one 76-character line.
    for chunk in data.chunks(57) {
        base64(out, chunk);
        out.push_str("\r\n");
    }
}

/// Quoted-printable body (RFC 2045 §6.7) of CRLF-separated text: hard line breaks stay,
/// long lines get soft breaks so no encoded line exceeds 76 characters.
pub fn quoted_printable(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for (n, line) in text.split("\r\n").enumerate() {
        if n > 0 {
            out.push_str("\r\n");
        }
        let bytes = line.as_bytes();
        // Most lines of a mostly-ASCII text need no encoding at all.
        if bytes.len() <= 76
            && bytes.iter().all(|&b| matches!(b, 32..=60 | 62..=126))
            && !line.ends_with(' ')
        {
            out.push_str(line);
            continue;
        }
        let mut col = 0;
        // Literal bytes are copied in runs; a run never starts or ends inside a UTF-8
        // sequence because every non-ASCII byte is escaped, and `get` checks anyway.
        let mut run = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let last = i + 1 == bytes.len();
            // Trailing white space would be stripped by transports (rule 3), so it is
            // encoded; '=' is the escape character itself.
            let literal = matches!(b, 33..=60 | 62..=126) || (matches!(b, b' ' | b'\t') && !last);
            let width = if literal { 1 } else { 3 };
            // Reserve one column for the '=' of a soft break unless this is the end.
            let limit = if last { 76 } else { 75 };
            if col + width > limit {
                out.push_str(line.get(run..i).unwrap_or_default());
                run = i;
                out.push_str("=\r\n");
                col = 0;
            }
            col += width;
            if !literal {
                out.push_str(line.get(run..i).unwrap_or_default());
                out.push('=');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 15)]));
                run = i + 1;
            }
        }
        out.push_str(line.get(run..).unwrap_or_default());
    }
}

/// RFC 2047 encoded words for a header phrase or unstructured text. ASCII text is written
/// as is; anything else becomes B or Q encoded words of at most 75 characters, separated
/// by folding white space.
pub fn encoded_words(out: &mut String, text: &str, q: bool) {
    if text.is_ascii() {
        out.push_str(text);
        return;
    }
    // 45 bytes of UTF-8 encode to 60 base64 characters; Q grows up to 3x, so it gets less.
    let budget = if q { 20 } else { 45 };
    let mut start = 0;
    let mut first = true;
    while start < text.len() {
        let mut end = start;
        for (i, c) in text[start..].char_indices() {
            if i + c.len_utf8() > budget {
                break;
            }
            end = start + i + c.len_utf8();
        }
        if !first {
            out.push_str("\r\n ");
        }
        first = false;
        let chunk = &text[start..end];
        if q {
            out.push_str("=?UTF-8?Q?");
            for &b in chunk.as_bytes() {
                match b {
                    b' ' => out.push('_'),
                    b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'!' | b'*' | b'+' | b'-' | b'/' => {
                        out.push(char::from(b))
                    }
                    _ => {
                        const HEX: &[u8; 16] = b"0123456789ABCDEF";
                        out.push('=');
                        out.push(char::from(HEX[usize::from(b >> 4)]));
                        out.push(char::from(HEX[usize::from(b & 15)]));
                    }
                }
            }
        } else {
            out.push_str("=?UTF-8?B?");
            base64(out, chunk.as_bytes());
        }
        out.push_str("?=");
        start = end;
    }
}

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

fn day_name(w: Weekday) -> &'static str {
    DAYS[w.num_days_from_monday() as usize]
}

fn local(ts: i64, offset_min: i32) -> DateTime<FixedOffset> {
    let offset = FixedOffset::east_opt(offset_min * 60).unwrap_or(Utc.fix());
    DateTime::<Utc>::from_timestamp(ts, 0)
        .unwrap_or_default()
        .with_timezone(&offset)
}

/// RFC 5322 §3.3 date-time, e.g. `Mon, 1 Jan 2024 09:30:12 +0100`.
pub fn rfc2822(out: &mut String, ts: i64, offset_min: i32) {
    // Hand-formatted: three dates per message made `write!` a visible share of the time.
    let t = local(ts, offset_min);
    out.push_str(day_name(t.weekday()));
    out.push_str(", ");
    let day = t.day();
    if day >= 10 {
        push_digit(out, day / 10);
    }
    push_digit(out, day % 10);
    out.push(' ');
    out.push_str(MONTHS[t.month0() as usize]);
    out.push(' ');
    let year = t.year().unsigned_abs();
    for d in [year / 1000, year / 100, year / 10, year] {
        push_digit(out, d % 10);
    }
    for (sep, v) in [(' ', t.hour()), (':', t.minute()), (':', t.second())] {
        out.push(sep);
        push_digit(out, v / 10);
        push_digit(out, v % 10);
    }
    out.push_str(if offset_min < 0 { " -" } else { " +" });
    let off = offset_min.unsigned_abs();
    for v in [off / 60, off % 60] {
        push_digit(out, v / 10);
        push_digit(out, v % 10);
    }
}

fn push_digit(out: &mut String, d: u32) {
    out.push(char::from(b'0' + (d % 10) as u8));
}

/// The ctime(3) date of an mbox separator line, in UTC: `Mon Jan  1 09:30:12 2024`.
pub fn asctime(out: &mut String, ts: i64) {
    use std::fmt::Write;
    let t = local(ts, 0);
    let _ = write!(
        out,
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        day_name(t.weekday()),
        MONTHS[t.month0() as usize],
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.year()
    );
}

/// Appends `text` with HTML's special characters escaped.
pub fn html_escape(out: &mut String, text: &str) {
    let mut run = 0;
    for (i, b) in text.bytes().enumerate() {
        let entity = match b {
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'&' => "&amp;",
            b'"' => "&quot;",
            _ => continue,
        };
        out.push_str(text.get(run..i).unwrap_or_default());
        out.push_str(entity);
        run = i + 1;
    }
    out.push_str(text.get(run..).unwrap_or_default());
}

/// Folds accented Latin letters to ASCII for the local part of an address.
pub fn ascii_fold(out: &mut String, text: &str) {
    for c in text.chars() {
        let s = match c {
            'a'..='z' | '0'..='9' => {
                out.push(c);
                continue;
            }
            'A'..='Z' => {
                out.push(c.to_ascii_lowercase());
                continue;
            }
            'à' | 'á' | 'â' | 'ã' | 'å' | 'ą' | 'Å' | 'Á' => "a",
            'ä' | 'æ' | 'Ä' => "ae",
            'ç' | 'ć' | 'č' | 'Ć' | 'Č' => "c",
            'è' | 'é' | 'ê' | 'ë' | 'ę' | 'É' => "e",
            'ì' | 'í' | 'î' | 'ï' => "i",
            'ł' | 'Ł' => "l",
            'ñ' | 'ń' => "n",
            'ò' | 'ó' | 'ô' | 'õ' | 'ø' | 'Ø' | 'Ó' => "o",
            'ö' | 'Ö' => "oe",
            'ś' | 'š' | 'Ś' | 'Š' => "s",
            'ß' => "ss",
            'ù' | 'ú' | 'û' => "u",
            'ü' | 'Ü' => "ue",
            'ý' | 'ÿ' => "y",
            'ź' | 'ż' | 'ž' | 'Ż' | 'Ž' => "z",
            _ => "",
        };
        out.push_str(s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, want) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut s = String::new();
            base64(&mut s, input.as_bytes());
            assert_eq!(s, want);
        }
    }

    #[test]
    fn quoted_printable_escapes_and_soft_breaks() {
        let mut s = String::new();
        quoted_printable(&mut s, "Grüße a=b \r\nend");
        assert_eq!(s, "Gr=C3=BC=C3=9Fe a=3Db=20\r\nend");
        let long = "é".repeat(40);
        let mut s = String::new();
        quoted_printable(&mut s, &long);
        assert!(s.split("\r\n").all(|l| l.len() <= 76), "{s}");
        assert!(s.contains("=\r\n"));
    }

    #[test]
    fn dates_follow_rfc5322_and_ctime() {
        let mut s = String::new();
        rfc2822(&mut s, 1_704_101_412, 60);
        assert_eq!(s, "Mon, 1 Jan 2024 10:30:12 +0100");
        let mut s = String::new();
        rfc2822(&mut s, 1_704_101_412, -330);
        assert_eq!(s, "Mon, 1 Jan 2024 04:00:12 -0530");
        let mut s = String::new();
        asctime(&mut s, 1_704_101_412);
        assert_eq!(s, "Mon Jan  1 09:30:12 2024");
    }

    #[test]
    fn encoded_words_stay_short() {
        let mut s = String::new();
        encoded_words(
            &mut s,
            "Störung: Website nicht erreichbar, bitte dringend prüfen",
            false,
        );
        for w in s.split("\r\n ") {
            assert!(
                w.len() <= 75 && w.starts_with("=?UTF-8?B?") && w.ends_with("?="),
                "{w}"
            );
        }
        let mut s = String::new();
        encoded_words(&mut s, "Zoë Müller", true);
        assert_eq!(s, "=?UTF-8?Q?Zo=C3=AB_M=C3=BCller?=");
    }
}
