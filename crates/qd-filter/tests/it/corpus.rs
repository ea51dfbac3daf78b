//! The filter on the SpamAssassin public corpus (../shared/corpus/spamassassin, or
//! `QUIETDESK_CORPUS`): unpacked into a temp dir with `tar`, judged by the static rules
//! and online (TREC protocol), and held to the figures reached when the rules were
//! written, with a small margin. Without the corpus the test says so and passes, unless
//! `QUIETDESK_REQUIRE_CORPUS=1`.

use std::path::PathBuf;
use std::process::Command;

use qd_filter::{evaluate, EvalOptions};

/// Reached last (static: fpr 0.0029, recall 0.6900; online: fpr 0.0046, recall 0.9531).
/// The static figures are far BELOW the targets (1% / 85%): the honest
/// header-only rules do not get there. The online run meets its targets (FPR <= 0.5%,
/// recall >= 95%), and is held to them (the run is deterministic: 19 of the 20 false
/// positives and 89 of the 94 misses allowed). Raise these when the filter improves;
/// never lower them to make a change pass.
const STATIC_MAX_FPR: f64 = 0.004;
const STATIC_MIN_RECALL: f64 = 0.68;
const ONLINE_MAX_FPR: f64 = 0.005;
const ONLINE_MIN_RECALL: f64 = 0.95;

fn corpus_dir() -> PathBuf {
    std::env::var_os("QUIETDESK_CORPUS").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/spamassassin"),
        PathBuf::from,
    )
}

fn unpack() -> Option<tempfile::TempDir> {
    let src = corpus_dir();
    let required = std::env::var("QUIETDESK_REQUIRE_CORPUS").is_ok_and(|v| v == "1");
    if !src.join("MANIFEST.tsv").exists() {
        assert!(
            !required,
            "QUIETDESK_REQUIRE_CORPUS=1 but no corpus at {} (set QUIETDESK_CORPUS)",
            src.display()
        );
        eprintln!(
            "NOTE: corpus test skipped: no corpus at {} (set QUIETDESK_CORPUS)",
            src.display()
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    for archive in ["ham.tar.gz", "spam.tar.gz"] {
        let status = Command::new("tar")
            .arg("-xzf")
            .arg(src.join(archive))
            .arg("-C")
            .arg(dir.path())
            .status()
            .expect("run tar");
        assert!(status.success(), "tar -xzf {archive} failed");
    }
    std::fs::copy(src.join("MANIFEST.tsv"), dir.path().join("MANIFEST.tsv")).unwrap();
    Some(dir)
}

#[test]
fn corpus_static_and_online_figures_hold() {
    let Some(dir) = unpack() else { return };
    let r = evaluate(dir.path(), &EvalOptions::default()).unwrap();
    eprintln!(
        "static: ham={} spam={} fp={} fn={} fpr={:.4} recall={:.4} precision={:.4}",
        r.ham, r.spam, r.false_positives, r.false_negatives, r.fpr, r.recall, r.precision
    );
    assert_eq!(r.ham + r.spam, 6046);
    assert!(r.fpr <= STATIC_MAX_FPR, "static fpr {}", r.fpr);
    assert!(r.recall >= STATIC_MIN_RECALL, "static recall {}", r.recall);

    let opts = EvalOptions {
        online: true,
        ..EvalOptions::default()
    };
    let r = evaluate(dir.path(), &opts).unwrap();
    eprintln!(
        "online: ham={} spam={} fp={} fn={} fpr={:.4} recall={:.4} precision={:.4}",
        r.ham, r.spam, r.false_positives, r.false_negatives, r.fpr, r.recall, r.precision
    );
    assert!(r.fpr <= ONLINE_MAX_FPR, "online fpr {}", r.fpr);
    assert!(r.recall >= ONLINE_MIN_RECALL, "online recall {}", r.recall);
}
