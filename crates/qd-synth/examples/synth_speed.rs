//! Prints generation speed, or with `--dump N` the first N messages of seed 1.
//! `cargo run --release -p qd-synth --example synth_speed -- 200000`

use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--dump") {
        let n = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(5);
        for m in qd_synth::generate(&qd_synth::SynthConfig::new(1, n)) {
            println!(
                "===== thread {} reply {} attachment {}",
                m.thread, m.is_reply, m.has_attachment
            );
            print!("{}", String::from_utf8_lossy(&m.raw));
        }
        return;
    }
    let n = args.first().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let start = Instant::now();
    let mut bytes = 0usize;
    for m in qd_synth::generate(&qd_synth::SynthConfig::new(1, n)) {
        bytes += m.raw.len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} messages, {:.1} MB in {secs:.2} s: {:.0} messages/s, {:.0} bytes/message",
        bytes as f64 / 1e6,
        n as f64 / secs,
        bytes as f64 / n as f64
    );
}
