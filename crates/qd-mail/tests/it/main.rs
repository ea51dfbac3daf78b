//! Integration tests for qd-mail: one binary, one module per theme.
#![allow(
    clippy::unwrap_used,
    reason = "helpers outside #[test] fns: a failed unwrap is a failed test"
)]

mod charsets;
mod dedupe;
mod mbox;
mod robustness;
mod structure;

use std::path::PathBuf;

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse_fixture(name: &str) -> qd_mail::ParsedMail {
    qd_mail::parse(&fixture(name))
}
