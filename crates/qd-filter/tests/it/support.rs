//! Helpers shared by the test modules: base64, a tiny zip writer, a default filter.

use qd_filter::{Filter, FilterSettings};

/// Base64 in MIME lines of 76 characters.
pub fn base64(data: &[u8]) -> String {
    let one_line = qd_testkit::base64(data);
    let lines: Vec<&str> = one_line
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    lines.join("\n")
}

/// A zip of stored (uncompressed) entries; CRCs are zero since nothing here reads them.
pub fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in entries {
        let offset = out.len() as u32;
        let header = |sig: &[u8], central: bool| {
            let mut h = sig.to_vec();
            if central {
                h.extend_from_slice(&20u16.to_le_bytes()); // made by
            }
            h.extend_from_slice(&20u16.to_le_bytes()); // version needed
            h.extend_from_slice(&0u16.to_le_bytes()); // flags
            h.extend_from_slice(&0u16.to_le_bytes()); // stored
            h.extend_from_slice(&0u32.to_le_bytes()); // time, date
            h.extend_from_slice(&0u32.to_le_bytes()); // crc
            h.extend_from_slice(&(data.len() as u32).to_le_bytes());
            h.extend_from_slice(&(data.len() as u32).to_le_bytes());
            h.extend_from_slice(&(name.len() as u16).to_le_bytes());
            h.extend_from_slice(&0u16.to_le_bytes()); // extra
            if central {
                h.extend_from_slice(&0u16.to_le_bytes()); // comment
                h.extend_from_slice(&0u16.to_le_bytes()); // disk
                h.extend_from_slice(&0u16.to_le_bytes()); // internal attrs
                h.extend_from_slice(&0u32.to_le_bytes()); // external attrs
                h.extend_from_slice(&offset.to_le_bytes());
            }
            h.extend_from_slice(name.as_bytes());
            h
        };
        out.extend(header(b"PK\x03\x04", false));
        out.extend_from_slice(data);
        central.extend(header(b"PK\x01\x02", true));
    }
    let cd_offset = out.len() as u32;
    let cd_len = central.len() as u32;
    out.extend(central);
    out.extend_from_slice(b"PK\x05\x06");
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
    out.extend_from_slice(&cd_len.to_le_bytes());
    out.extend_from_slice(&cd_offset.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out
}

/// The settings the case files assume.
pub fn case_settings() -> FilterSettings {
    FilterSettings {
        our_domains: vec!["quietdesk.example".into()],
        trusted_relays: vec!["mx.quietdesk.example".into()],
        ..FilterSettings::default()
    }
}

pub fn case_filter() -> Filter {
    Filter::new(case_settings()).unwrap()
}

/// A message with one attachment.
pub fn with_attachment(name: &str, content_type: &str, data: &[u8]) -> Vec<u8> {
    with_part(
        &format!(
            "Content-Type: {content_type}; name=\"{name}\"\nContent-Transfer-Encoding: base64\n\
             Content-Disposition: attachment; filename=\"{name}\"\n"
        ),
        &base64(data),
    )
}

/// A message with a text part and one more part: its header lines (each ending in a
/// newline) and its body as written.
pub fn with_part(part_headers: &str, body: &str) -> Vec<u8> {
    format!(
        "Received: from mail.example.com (mail.example.com [192.0.2.10])\n\
         \tby mx.quietdesk.example (Postfix) with ESMTPS id 1;\n\
         \tMon, 4 Mar 2024 10:00:05 +0000\n\
         From: Alice <alice@example.com>\nTo: help@quietdesk.example\nSubject: file\n\
         Date: Mon, 4 Mar 2024 10:00:00 +0000\nMessage-ID: <att@example.com>\n\
         MIME-Version: 1.0\nContent-Type: multipart/mixed; boundary=\"b1\"\n\n\
         --b1\nContent-Type: text/plain\n\nsee attached\n--b1\n{part_headers}\n{body}\n--b1--\n"
    )
    .into_bytes()
}
