//! Rough throughput check for `qd_mail::parse`, not a benchmark and not a test.
//!
//! `cargo run --release -p qd-mail --example parse_speed [FILE.eml|FILE.mbox ...]`
//! Without arguments it parses the test fixtures plus a few synthetic, realistically
//! sized messages. The import pipeline needs ≥10,000 messages/s/core.

use std::error::Error;
use std::hint::black_box;
use std::path::PathBuf;
use std::time::Instant;

fn main() -> Result<(), Box<dyn Error>> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let inputs = if args.is_empty() {
        default_inputs()?
    } else {
        load(&args)?
    };
    if inputs.is_empty() {
        return Err("no messages".into());
    }
    let total: usize = inputs.iter().map(Vec::len).sum();
    let rounds = (50_000 / inputs.len()).max(1);
    let start = Instant::now();
    for _ in 0..rounds {
        for raw in &inputs {
            black_box(qd_mail::parse(black_box(raw)));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let messages = (rounds * inputs.len()) as f64;
    println!(
        "{} messages ({} distinct, avg {} bytes): {:.0} msg/s, {:.0} MB/s",
        messages,
        inputs.len(),
        total / inputs.len(),
        messages / secs,
        (rounds * total) as f64 / secs / 1e6
    );

    // Which inputs cost the most, to know where to look.
    let mut each: Vec<(f64, usize)> = inputs
        .iter()
        .map(|raw| {
            let start = Instant::now();
            for _ in 0..200 {
                black_box(qd_mail::parse(black_box(raw)));
            }
            (200.0 / start.elapsed().as_secs_f64(), raw.len())
        })
        .collect();
    each.sort_by(|a, b| a.0.total_cmp(&b.0));
    for (rate, len) in each.iter().take(4) {
        println!("  slowest: {rate:.0} msg/s for a {len}-byte message");
    }
    Ok(())
}

fn load(paths: &[PathBuf]) -> Result<Vec<Vec<u8>>, Box<dyn Error>> {
    let mut out = Vec::new();
    for path in paths {
        let data = std::fs::read(path)?;
        if path.extension().is_some_and(|e| e == "mbox") {
            for message in qd_mail::mbox::MboxReader::new(&data[..]) {
                out.push(message?.raw);
            }
        } else {
            out.push(data);
        }
    }
    Ok(out)
}

fn default_inputs() -> Result<Vec<Vec<u8>>, Box<dyn Error>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    paths.sort();
    let mut inputs = load(&paths)?;

    let paragraph = "The printer on the third floor still jams when printing double-sided; \
                     we tried the steps from your last mail without success. ";
    let text: String = paragraph.repeat(60);
    let html: String = format!(
        "<html><head><style>p{{margin:0}}</style></head><body>{}</body></html>",
        format!("<div class=\"row\"><p>{paragraph}&nbsp;&ndash;</p></div>").repeat(120)
    );
    let headers = "Received: from mx.example.org by mx.quietdesk.test; Wed, 10 Jan 2024 10:00:01 +0000\n\
                   From: Alice <alice@example.org>\nTo: support@quietdesk.test\n\
                   Subject: Re: [#123] Printer broken\nDate: Wed, 10 Jan 2024 10:00:00 +0000\n\
                   Message-ID: <speed@example.org>\nIn-Reply-To: <orig@quietdesk.test>\nMIME-Version: 1.0\n";
    inputs.push(
        format!(
            "{headers}Content-Type: multipart/alternative; boundary=b\n\n--b\n\
             Content-Type: text/plain; charset=utf-8\n\n{text}\n--b\n\
             Content-Type: text/html; charset=utf-8\n\n{html}\n--b--\n"
        )
        .into_bytes(),
    );
    inputs
        .push(format!("{headers}Content-Type: text/html; charset=utf-8\n\n{html}\n").into_bytes());
    let attachment: String =
        "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAx\n".repeat(1500);
    inputs.push(
        format!(
            "{headers}Content-Type: multipart/mixed; boundary=m\n\n--m\n\
             Content-Type: text/plain\n\n{paragraph}\n--m\nContent-Type: application/pdf\n\
             Content-Disposition: attachment; filename=a.pdf\nContent-Transfer-Encoding: base64\n\n\
             {attachment}--m--\n"
        )
        .into_bytes(),
    );
    Ok(inputs)
}
