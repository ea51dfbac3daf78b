//! Third parties' IP addresses in trace headers, truncated before the raw mail is stored.
//!
//! Received lines (and the `X-Originating-IP` family) name the sender's and every relay's
//! address. We keep the network (IPv4 /24, IPv6 /48, see [`qd_core::anonymise_ip`]) and
//! drop the host part, in the stored copy of the raw mail. The filter runs before this,
//! on the message as it arrived.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use qd_core::anonymise_ip;

/// Header fields whose IP addresses are truncated.
const TRACE_FIELDS: &[&str] = &[
    "received",
    "x-originating-ip",
    "x-sender-ip",
    "x-forwarded-for",
    "x-real-ip",
    "x-client-ip",
    "x-remote-ip",
    "x-originating-client",
];

/// Returns the raw mail with the IP addresses in its trace header fields truncated; the
/// body and other fields are untouched. Borrowed when nothing changed.
pub fn anonymise_trace_ips(raw: &[u8]) -> Cow<'_, [u8]> {
    let mut out: Option<Vec<u8>> = None;
    let mut pos = 0;
    let mut in_trace = false;
    while pos < raw.len() {
        let end = memchr::memchr(b'\n', &raw[pos..]).map_or(raw.len(), |i| pos + i + 1);
        let line = &raw[pos..end];
        let content = line.strip_suffix(b"\n").unwrap_or(line);
        let content = content.strip_suffix(b"\r").unwrap_or(content);
        if content.is_empty() {
            // End of the header section.
            if let Some(o) = out.as_mut() {
                o.extend_from_slice(&raw[pos..]);
            }
            break;
        }
        let continuation = matches!(line.first(), Some(b' ' | b'\t'));
        if !continuation {
            in_trace = line
                .iter()
                .position(|&b| b == b':')
                .map(|i| &line[..i])
                .and_then(|name| std::str::from_utf8(name).ok())
                .is_some_and(|n| {
                    TRACE_FIELDS
                        .iter()
                        .any(|t| n.trim().eq_ignore_ascii_case(t))
                });
        }
        let replaced = if in_trace { rewrite_line(line) } else { None };
        match (replaced, out.as_mut()) {
            (Some(new), Some(o)) => o.extend_from_slice(&new),
            (Some(new), None) => {
                let mut o = Vec::with_capacity(raw.len());
                o.extend_from_slice(&raw[..pos]);
                o.extend_from_slice(&new);
                out = Some(o);
            }
            (None, Some(o)) => o.extend_from_slice(line),
            (None, None) => {}
        }
        pos = end;
    }
    match out {
        Some(o) => Cow::Owned(o),
        None => Cow::Borrowed(raw),
    }
}

fn is_ip_char(b: u8) -> bool {
    b.is_ascii_hexdigit() || b == b'.' || b == b':'
}

/// Rewrites every IP literal in one header line; `None` when there is none.
fn rewrite_line(line: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(line.len());
    let mut changed = false;
    let mut i = 0;
    while i < line.len() {
        if !is_ip_char(line[i])
            || (i > 0 && (line[i - 1].is_ascii_alphanumeric() || line[i - 1] == b'-'))
                && !is_ip_char(line[i - 1])
        {
            out.push(line[i]);
            i += 1;
            continue;
        }
        let start = i;
        while i < line.len() && is_ip_char(line[i]) {
            i += 1;
        }
        let token = &line[start..i];
        // A token glued to letters (a host name like `a1.b2.example`) is not an address.
        let glued = i < line.len() && (line[i].is_ascii_alphabetic() || line[i] == b'-');
        let text = std::str::from_utf8(token).unwrap_or("");
        // `IPv6:2001:db8::1` (RFC 5321 address literal): the colon after the tag is not
        // part of the address.
        let (lead, text) = match text.strip_prefix(':') {
            Some(rest) if !rest.starts_with(':') => (":", rest),
            _ => ("", text),
        };
        let trimmed = text.trim_end_matches(['.', ':']);
        let tail = &text[trimmed.len()..];
        let ip = if glued { None } else { parse_ip(trimmed) };
        match ip {
            Some(ip) => {
                let anon = anonymise_ip(ip);
                if anon != ip {
                    changed = true;
                }
                out.extend_from_slice(lead.as_bytes());
                out.extend_from_slice(anon.to_string().as_bytes());
                out.extend_from_slice(tail.as_bytes());
            }
            None => out.extend_from_slice(token),
        }
    }
    changed.then_some(out)
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    if text.contains(':') {
        // At least two colons, so "12:34" clock times stay; Ipv6Addr rejects "12:34:56".
        if text.matches(':').count() < 2 {
            return None;
        }
        return text.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    if text.matches('.').count() != 3 || !text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    text.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn anon(s: &str) -> String {
        String::from_utf8(anonymise_trace_ips(s.as_bytes()).into_owned()).unwrap()
    }

    #[test]
    fn truncates_trace_addresses_only() {
        let raw = "Received: from mail.example.net (mail.example.net [203.0.113.77])\r\n\
                   \tby mx.example.com (Postfix) with ESMTP id 1; Mon, 1 Jan 2024 12:34:56 +0000\r\n\
                   Received: from [IPv6:2001:db8:1234:5678::9] by relay.example.org\r\n\
                   X-Originating-IP: [198.51.100.23]\r\n\
                   Subject: server 192.0.2.55 is down\r\n\
                   \r\n\
                   Please check 192.0.2.55 and 203.0.113.77.\r\n";
        let out = anon(raw);
        assert!(out.contains("[203.0.113.0])"), "{out}");
        assert!(out.contains("12:34:56 +0000"), "times stay: {out}");
        assert!(out.contains("[IPv6:2001:db8:1234::]"), "{out}");
        assert!(out.contains("X-Originating-IP: [198.51.100.0]"), "{out}");
        // Not a trace field, and the body: untouched.
        assert!(out.contains("Subject: server 192.0.2.55 is down"));
        assert!(out.contains("check 192.0.2.55 and 203.0.113.77."));
        assert!(!out.contains("203.0.113.77]"));
    }

    #[test]
    fn leaves_mail_without_addresses_borrowed() {
        let raw = b"Received: by mx.example.com; Mon, 1 Jan 2024 12:34:56 +0000\n\nbody 10.0.0.1\n";
        assert!(matches!(anonymise_trace_ips(raw), Cow::Borrowed(_)));
        // Host names made of digits and dots are not addresses.
        let raw = b"Received: from 1.2.3.4.dsl.example.net by mx\n\n";
        assert!(matches!(anonymise_trace_ips(raw), Cow::Borrowed(_)));
    }
}
