//! Integration tests of qd-synth: determinism, message structure, threading, the MIME
//! mix and the on-disk formats.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns; a panic is the failure report

mod disk;
mod messages;

use qd_synth::{generate, SynthConfig, SynthMessage};

/// Header fields of a raw message, unfolded, in order.
pub fn headers(raw: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8(raw.to_vec()).expect("messages are UTF-8");
    let end = text.find("\r\n\r\n").expect("a header/body separator");
    let mut out: Vec<(String, String)> = Vec::new();
    for line in text[..end].split("\r\n") {
        if line.starts_with([' ', '\t']) {
            let last = out.last_mut().expect("a continuation follows a field");
            last.1.push(' ');
            last.1.push_str(line.trim());
        } else {
            let (name, value) = line.split_once(':').expect("name: value");
            out.push((name.to_owned(), value.trim().to_owned()));
        }
    }
    out
}

pub fn header<'a>(h: &'a [(String, String)], name: &str) -> Option<&'a str> {
    h.iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

pub fn sample(seed: u64, n: u64) -> Vec<SynthMessage> {
    generate(&SynthConfig::new(seed, n)).collect()
}
