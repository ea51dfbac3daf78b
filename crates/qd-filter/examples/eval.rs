//! `cargo run --release -p qd-filter --example eval -- DIR [--online] [--json]`
//!
//! Prints the evaluation figures for a directory holding MANIFEST.tsv.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut dir = None;
    let mut online = false;
    let mut json = false;
    let mut tags = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--online" => online = true,
            "--json" => json = true,
            "--tags" => tags = true,
            _ => dir = Some(PathBuf::from(arg)),
        }
    }
    let Some(dir) = dir else {
        eprintln!("usage: eval DIR [--online] [--json] [--tags]");
        return ExitCode::from(2);
    };
    let opts = qd_filter::EvalOptions {
        online,
        ..Default::default()
    };
    match qd_filter::evaluate(&dir, &opts) {
        Ok(mut r) => {
            if json {
                if !tags {
                    r.tags.clear();
                }
                match serde_json::to_string_pretty(&r) {
                    Ok(s) => println!("{s}"),
                    Err(e) => eprintln!("{e}"),
                }
            } else {
                println!(
                    "mode={} ham={} spam={} false_positives={} false_negatives={} fpr={:.4} recall={:.4} precision={:.4} msgs_per_sec={:.0} seconds={:.2}",
                    r.mode, r.ham, r.spam, r.false_positives, r.false_negatives, r.fpr, r.recall, r.precision, r.msgs_per_sec, r.seconds
                );
                if tags {
                    for (name, c) in &r.tags {
                        let hr = f64::from(c.ham) / f64::from(r.ham.max(1));
                        let sr = f64::from(c.spam) / f64::from(r.spam.max(1));
                        println!(
                            "{name:40} ham {:5} ({:6.2}%)  spam {:5} ({:6.2}%)",
                            c.ham,
                            hr * 100.0,
                            c.spam,
                            sr * 100.0
                        );
                    }
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("eval failed: {e}");
            ExitCode::FAILURE
        }
    }
}
