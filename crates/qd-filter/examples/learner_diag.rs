//! Diagnostic: the learned model alone, in TREC online order, on a labelled directory
//! (`MANIFEST.tsv` with `file` and `label` columns): FPR and recall at a few
//! probability thresholds, and where the errors come from (by folder).
//!
//! `cargo run --release -p qd-filter --example learner_diag -- DIR`
//!
//! Environment: `NO_RULES=1` leaves the static rules out of the learner's features;
//! `STATIC=1` prints a histogram of static scores (`SCORES=1`: one line per message on
//! stderr: file, score, label, rules); `SHOW=1` lists the learner's errors at p ≥ 0.9.
#![allow(clippy::unwrap_used, clippy::expect_used)]
use qd_filter::{arrival, Filter, FilterSettings, JudgeContext, Label, Learner, MessageView};

fn main() {
    let dir = std::path::PathBuf::from(std::env::args().nth(1).expect("DIR"));
    let text = std::fs::read_to_string(dir.join("MANIFEST.tsv")).unwrap();
    let mut items = Vec::new();
    for (i, line) in text.lines().skip(1).enumerate() {
        let f: Vec<&str> = line.split('\t').collect();
        let raw = std::fs::read(dir.join(f[0])).unwrap();
        let v = MessageView::from_raw(&raw);
        let label = if f[1] == "spam" {
            Label::Spam
        } else {
            Label::Ham
        };
        items.push((
            arrival(&v).map(|t| t.timestamp()),
            i,
            label,
            v,
            f[0].to_string(),
        ));
    }
    items.sort_by_key(|(t, i, ..)| (t.unwrap_or(i64::MAX), *i));
    let filter = Filter::new(FilterSettings::default()).unwrap();
    let with_rules = std::env::var("NO_RULES").is_err();
    let mut learner = Learner::new();
    let mut judged = Vec::new();
    for (_, _, label, v, name) in &items {
        let verdict = filter.judge(v, &JudgeContext::pinned_to(v));
        let rules: Vec<&str> = if with_rules {
            verdict.rule_names().collect()
        } else {
            Vec::new()
        };
        let f = learner.features(v, &rules);
        judged.push((learner.probability(&f).unwrap_or(0.5), *label, name.clone()));
        learner.learn(&f, *label);
    }
    if std::env::var("STATIC").is_ok() {
        let mut hist = std::collections::BTreeMap::<i32, (u32, u32)>::new();
        for (_, _, label, v, name) in &items {
            let verdict = filter.judge(v, &JudgeContext::pinned_to(v));
            let s = verdict.score;
            if std::env::var("SCORES").is_ok() {
                let rules: Vec<&str> = verdict.rule_names().collect();
                eprintln!("{name}\t{s}\t{label}\t{}", rules.join(","));
            }
            let e = hist.entry((s.floor() as i32).clamp(-10, 12)).or_default();
            if *label == Label::Ham {
                e.0 += 1
            } else {
                e.1 += 1
            }
        }
        for (k, (h, sp)) in &hist {
            println!("static score {k:>3}: ham {h:>5} spam {sp:>5}");
        }
    }
    let ham = judged.iter().filter(|j| j.1 == Label::Ham).count();
    let spam = judged.len() - ham;
    for th in [0.5f32, 0.7, 0.8, 0.9, 0.95] {
        let fp = judged
            .iter()
            .filter(|j| j.1 == Label::Ham && j.0 >= th)
            .count();
        let tp = judged
            .iter()
            .filter(|j| j.1 == Label::Spam && j.0 >= th)
            .count();
        let mut by_folder = std::collections::BTreeMap::<String, u32>::new();
        for j in &judged {
            if (j.0 >= th) != (j.1 == Label::Spam) {
                let folder = j.2.rsplit_once('/').map_or("", |(d, _)| d).to_string();
                *by_folder.entry(folder).or_default() += 1;
            }
        }
        println!(
            "p >= {th}: fpr {:.4} recall {:.4}  errors {by_folder:?}",
            fp as f64 / ham as f64,
            tp as f64 / spam as f64
        );
    }
    let mut deciles = [0u32; 10];
    for (i, j) in judged.iter().enumerate() {
        if (j.0 >= 0.9) != (j.1 == Label::Spam) {
            deciles[i * 10 / judged.len()] += 1;
        }
    }
    println!("errors at p >= 0.9 by tenth of the stream: {deciles:?}");
    if std::env::var("SHOW").is_ok() {
        for j in &judged {
            if (j.0 >= 0.9) != (j.1 == Label::Spam) {
                println!("error p={:.3} {}", j.0, j.2);
            }
        }
    }
    println!("{} tokens", learner.len());
}
