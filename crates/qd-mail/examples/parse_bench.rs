//! Parse cost per message over a directory of mail files (recursively), measured three
//! ways: `parse` alone, `parse` then `MessageView::from_raw` (two parses, as the live
//! pipeline did), and `parse_with_view` (one parse for both).
//!
//! `cargo run --release -p qd-mail --example parse_bench -- DIR [ROUNDS]`
//! (e.g. the shared corpus unpacked into /tmp/corpus). One thread; files are read into
//! memory first, so only parsing is timed.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::path::{Path, PathBuf};
use std::time::Instant;

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("readable directory") {
        let p = e.unwrap().path();
        if p.is_dir() {
            files(&p, out);
        } else if p.file_name().is_some_and(|n| n != "MANIFEST.tsv") {
            out.push(p);
        }
    }
}

fn main() {
    let dir = PathBuf::from(std::env::args().nth(1).expect("DIR"));
    let rounds: usize = std::env::args()
        .nth(2)
        .map_or(3, |r| r.parse().expect("ROUNDS is a number"));
    let mut paths = Vec::new();
    files(&dir, &mut paths);
    let mails: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let bytes: usize = mails.iter().map(Vec::len).sum();
    println!(
        "{} messages, {:.1} MiB, best of {rounds} rounds",
        mails.len(),
        bytes as f64 / 1048576.0
    );
    let n = mails.len() as f64;
    let time = |f: &dyn Fn(&[u8]) -> usize| {
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                let mut sink = 0usize;
                for m in &mails {
                    sink = sink.wrapping_add(f(m));
                }
                std::hint::black_box(sink);
                t.elapsed().as_secs_f64()
            })
            .fold(f64::MAX, f64::min)
    };
    let alone = time(&|m| qd_mail::parse(m).size);
    let two = time(&|m| qd_mail::parse(m).size + qd_mail::MessageView::from_raw(m).size());
    let one = time(&|m| {
        let (p, v) = qd_mail::parse_with_view(m);
        p.size + v.size()
    });
    for (name, s) in [
        ("parse", alone),
        ("parse + MessageView::from_raw", two),
        ("parse_with_view", one),
    ] {
        println!("{name:32} {:7.1} µs/msg  {:8.0} msg/s", s / n * 1e6, n / s);
    }
}
