//! Third parties' IP addresses in trace headers, truncated before the raw mail is stored.
//!
//! Received lines (and the `X-Originating-IP` family) name the sender's and every relay's
//! address. We keep the network (IPv4 /24, IPv6 /48, see [`qd_core::anonymise_ip`]) and
//! drop the host part, in the stored copy of the raw mail. The filter runs before this,
//! on the message as it arrived.

use std::borrow::Cow;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use qd_core::anonymise_ip;

/// Header fields whose IP addresses are truncated, besides every field whose name ends
/// in `-ip` or names an IP address (see [`is_trace_field`]).
const TRACE_FIELDS: &[&str] = &[
    "received",
    "x-forwarded-for",
    "x-originating-client",
    // The receiving side's own verdicts quote the client: `client-ip=`, `smtp.remote-ip=`,
    // `policy.iprev=`.
    "received-spf",
    "authentication-results",
    "arc-authentication-results",
];

/// Whether a field's IP addresses are truncated: the fields above, and every
/// `…-ip` or `…ipaddress` field (`X-Originating-IP`, `X-Sender-IP`,
/// `X-MS-Exchange-Organization-OriginalClientIPAddress`, …).
fn is_trace_field(name: &str) -> bool {
    let name = name.trim().to_ascii_lowercase();
    TRACE_FIELDS.contains(&name.as_str())
        || name.ends_with("-ip")
        || name.ends_with("ipaddress")
        || name.ends_with("ip-address")
}

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
        if content.iter().all(|b| matches!(b, b' ' | b'\t')) {
            // End of the header section (a line of white space ends it too, as it does
            // for the parser).
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
                .is_some_and(is_trace_field);
        }
        let replaced = if in_trace {
            match rewrite_line(line) {
                Some(new) => Some(rewrite_host_names(&new).unwrap_or(new)),
                None => rewrite_host_names(line),
            }
        } else {
            None
        };
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
        // part of the address. Sendmail writes a mapped IPv4 address as
        // `IPv6:::ffff:192.0.2.1`, so a token of three leading colons is read both ways.
        let (lead, text) = match text.strip_prefix(':') {
            Some(rest) if !rest.starts_with(':') => (":", rest),
            Some(rest) if parse_ip(rest.trim_end_matches(['.', ':'])).is_some() => (":", rest),
            _ => ("", text),
        };
        let trimmed = text.trim_end_matches(['.', ':']);
        let (ip, tail) = if glued {
            (None, "")
        } else if let Some(ip) = parse_ip(trimmed) {
            (Some(ip), &text[trimmed.len()..])
        } else if let Some((ip, addr_len)) = ipv4_with_port(trimmed) {
            (Some(ip), &text[addr_len..])
        } else {
            (None, "")
        };
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

/// Rewrites the IPv4 addresses spelled inside host names (`c-203-0-113-77.isp.example`,
/// `host77-113-0-203.range.example`, `1.2.3.4.dsl.example`), which name a customer's
/// connection as well as the address beside them does. Which end is the host part
/// depends on the provider's naming (forwards or reversed), so both ends become `0`:
/// `c-0-0-113-0.isp.example`. `None` when there is none.
fn rewrite_host_names(line: &[u8]) -> Option<Vec<u8>> {
    let is_name_char = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'.';
    // Byte ranges of `line` that become `0`, in order.
    let mut zeroed: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < line.len() {
        if !is_name_char(line[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < line.len() && is_name_char(line[i]) {
            i += 1;
        }
        let word = &line[start..i];
        let bare = std::str::from_utf8(word)
            .unwrap_or("")
            .trim_end_matches('.');
        // A whole address is the literal `rewrite_line` handles.
        if parse_ip(bare).is_some() {
            continue;
        }
        for (first, last) in octet_runs(word) {
            zeroed.push((start + first.0, start + first.1));
            zeroed.push((start + last.0, start + last.1));
        }
    }
    if zeroed.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(line.len());
    let mut at = 0;
    for (a, b) in zeroed {
        out.extend_from_slice(&line[at..a]);
        out.push(b'0');
        at = b;
    }
    out.extend_from_slice(&line[at..]);
    Some(out)
}

/// Within a host name, every run of four decimal octets (1–3 digits, at most 255) joined
/// by `-` or `.` and not glued to further digits: the byte ranges of its first and
/// last octet.
fn octet_runs(word: &[u8]) -> Vec<((usize, usize), (usize, usize))> {
    // Digit groups: (start, end, value), and the separator that follows each.
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let mut runs = Vec::new();
    let mut i = 0;
    while i < word.len() {
        if !word[i].is_ascii_digit() {
            // A letter (or a doubled separator) breaks the chain.
            let sep = matches!(word[i], b'-' | b'.')
                && i > 0
                && word[i - 1].is_ascii_digit()
                && word.get(i + 1).is_some_and(u8::is_ascii_digit);
            if !sep {
                groups.clear();
            }
            i += 1;
            continue;
        }
        let start = i;
        while i < word.len() && word[i].is_ascii_digit() {
            i += 1;
        }
        let digits = &word[start..i];
        let octet = digits.len() <= 3
            && std::str::from_utf8(digits)
                .ok()
                .and_then(|d| d.parse::<u16>().ok())
                .is_some_and(|v| v <= 255);
        if !octet {
            groups.clear();
            continue;
        }
        groups.push((start, i));
        if groups.len() == 4 {
            runs.push((groups[0], groups[3]));
            groups.clear();
        }
    }
    runs
}

/// An IPv4 address with its port (`192.0.2.1:51234`, as X-Forwarded-For may carry
/// it): the address and its length.
fn ipv4_with_port(text: &str) -> Option<(IpAddr, usize)> {
    let (addr, port) = text.split_once(':')?;
    if port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    match parse_ip(addr)? {
        v4 @ IpAddr::V4(_) => Some((v4, addr.len())),
        IpAddr::V6(_) => None,
    }
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
    fn mapped_addresses_ports_and_verdict_fields_are_truncated() {
        let raw = "Received: from relay (relay [IPv6:::ffff:203.0.113.77]) by mx\r\n\
                   X-Forwarded-For: 198.51.100.23:51234, 192.0.2.9\r\n\
                   Received-SPF: pass (mx: domain of a@example.org designates 203.0.113.78 as permitted sender) client-ip=203.0.113.78;\r\n\
                   Authentication-Results: mx.example.com; iprev=pass policy.iprev=203.0.113.79;\r\n\
                   \tspf=pass smtp.remote-ip=2001:db8:1:2::7\r\n\
                   X-MS-Exchange-Organization-OriginalClientIPAddress: 203.0.113.80\r\n\
                   X-Sender-IP: 203.0.113.81\r\n\
                   \r\n\
                   body\r\n";
        let out = anon(raw);
        for full in [
            "203.0.113.77",
            "198.51.100.23",
            "192.0.2.9",
            "203.0.113.78",
            "203.0.113.79",
            "2001:db8:1:2::7",
            "203.0.113.80",
            "203.0.113.81",
        ] {
            assert!(!out.contains(full), "{full} left in: {out}");
        }
        assert!(out.contains("[IPv6:::ffff:203.0.113.0]"), "{out}");
        assert!(out.contains("198.51.100.0:51234"), "the port stays: {out}");
        assert!(out.contains("client-ip=203.0.113.0;"), "{out}");
        assert!(out.contains("smtp.remote-ip=2001:db8:1::"), "{out}");
    }

    #[test]
    fn leaves_mail_without_addresses_borrowed() {
        let raw = b"Received: by mx.example.com; Mon, 1 Jan 2024 12:34:56 +0000\n\nbody 10.0.0.1\n";
        assert!(matches!(anonymise_trace_ips(raw), Cow::Borrowed(_)));
        // Host names with digits are not addresses.
        let raw = b"Received: from a1.b22.example.net by mx-2.example.com; 12:34:56\n\n";
        assert!(matches!(anonymise_trace_ips(raw), Cow::Borrowed(_)));
    }

    #[test]
    fn addresses_spelled_in_host_names_lose_both_ends() {
        let out = anon(
            "Received: from c-203-0-113-77.hsd1.ca.example.net (c-203-0-113-77.hsd1.ca.example.net\r\n \
             [203.0.113.77]) by mx.example.com; Mon, 1 Jan 2024 12:34:56 +0000\r\n\
             Received: from 1.2.3.4.dsl.example.net (host77-113-0-203.range.example) by mx\r\n\
             Received: from mail.example.org (Exim 4.94.2) by relay-1-2.example.org\r\n\
             Subject: c-203-0-113-77 stays\r\n\r\nbody c-203-0-113-77\r\n",
        );
        assert!(!out.contains("203-0-113-77.hsd1"), "{out}");
        assert!(
            out.contains("c-0-0-113-0.hsd1.ca.example.net (c-0-0-113-0.hsd1"),
            "{out}"
        );
        assert!(
            out.contains("[203.0.113.0]"),
            "the literal keeps its network: {out}"
        );
        assert!(out.contains("from 0.2.3.0.dsl.example.net"), "{out}");
        assert!(out.contains("(host0-113-0-0.range.example)"), "{out}");
        assert!(
            out.contains("Exim 4.94.2) by relay-1-2.example.org"),
            "{out}"
        );
        assert!(out.contains("12:34:56 +0000"), "{out}");
        assert!(out.contains("Subject: c-203-0-113-77 stays"), "{out}");
        assert!(out.contains("body c-203-0-113-77"), "{out}");
    }
}
