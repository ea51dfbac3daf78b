//! `quietdesk bench`: the synthetic data generator and the search latency benchmark.
//! Benchmarks print what they measured; nothing here is a pass/fail test.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use qd_search::Query;
use qd_store::fts::{FtsQuery, PgFts};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::cli::{BenchCommand, BenchSearchArgs, GenArgs, GenFormat};
use crate::commands::{open_index, open_store};
use crate::config::Settings;

pub async fn run(settings: &Settings, cmd: BenchCommand) -> Result<ExitCode> {
    match cmd {
        BenchCommand::Gen(args) => gen(&args),
        BenchCommand::Search(args) => search(settings, &args).await,
        BenchCommand::Retention(args) => crate::bench_retention::run(settings, &args).await,
    }
}

fn gen(args: &GenArgs) -> Result<ExitCode> {
    let cfg = qd_synth::SynthConfig::new(args.seed, args.messages);
    let started = Instant::now();
    let n = match args.format {
        GenFormat::Maildir => qd_synth::write_maildir(&cfg, &args.out),
        GenFormat::Mbox => qd_synth::write_mbox(&cfg, &args.out),
    }
    .with_context(|| format!("writing {}", args.out.display()))?;
    let csv = args.out.with_extension("customers.csv");
    qd_synth::write_customers_csv(&cfg, &csv)
        .with_context(|| format!("writing {}", csv.display()))?;
    out!(
        "wrote {n} messages to {} and customers to {} in {:.1} s",
        args.out.display(),
        csv.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Latency figures of one query class, in milliseconds.
#[derive(Debug, Serialize)]
struct ClassFigures {
    class: &'static str,
    queries: usize,
    runs: usize,
    /// tantivy only (top 10 ids).
    index_p50_ms: f64,
    index_p99_ms: f64,
    /// What `quietdesk search` does: tantivy, then subjects and snippets from the store.
    with_snippets_p50_ms: f64,
    with_snippets_p99_ms: f64,
    pg_p50_ms: Option<f64>,
    pg_p99_ms: Option<f64>,
    /// PostgreSQL p99 / tantivy-with-snippets p99.
    pg_ratio_p99: Option<f64>,
}

struct Class {
    name: &'static str,
    ours: Vec<String>,
    pg: Vec<FtsQuery>,
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)].as_secs_f64() * 1000.0
}

/// Words that make sensible query terms: letters only, not too short.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| w.len() >= 4 && w.chars().all(|c| c.is_ascii_alphabetic()))
        .map(str::to_lowercase)
        .collect()
}

/// Builds query classes from real stored messages (so every query can match), seeded
/// for repeatability.
async fn build_classes(store: &qd_store::Store, per_class: usize) -> Result<Vec<Class>> {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let max_id = store.max_message_id().await?;
    let Some(max_id) = max_id else {
        bail!("the store holds no messages: import some first (quietdesk import …)");
    };
    let mut samples = Vec::new();
    let mut tries = 0;
    while samples.len() < per_class * 2 && tries < per_class * 50 {
        tries += 1;
        let id = rng.gen_range(1..=max_id);
        let rows = store.index_rows(&[id]).await?;
        if let Some(r) = rows.into_iter().next() {
            let w = words(&r.body);
            if w.len() >= 4 {
                samples.push((w, r.from));
            }
        }
    }
    if samples.is_empty() {
        bail!("no stored message has enough words to build queries from");
    }
    let mut one = Class {
        name: "one-term",
        ours: vec![],
        pg: vec![],
    };
    let mut two = Class {
        name: "two-term",
        ours: vec![],
        pg: vec![],
    };
    let mut phrase = Class {
        name: "phrase",
        ours: vec![],
        pg: vec![],
    };
    let mut field = Class {
        name: "field-filtered",
        ours: vec![],
        pg: vec![],
    };
    for _ in 0..per_class {
        let Some((w, from)) = samples.choose(&mut rng) else {
            break;
        };
        let a = &w[rng.gen_range(0..w.len())];
        one.ours.push(a.clone());
        one.pg.push(FtsQuery::Terms(vec![a.clone()]));
        let b = &w[rng.gen_range(0..w.len())];
        two.ours.push(format!("{a} {b}"));
        two.pg.push(FtsQuery::Terms(vec![a.clone(), b.clone()]));
        let i = rng.gen_range(0..w.len() - 1);
        phrase.ours.push(format!("\"{} {}\"", w[i], w[i + 1]));
        phrase
            .pg
            .push(FtsQuery::Phrase(vec![w[i].clone(), w[i + 1].clone()]));
        let addr = from
            .rsplit('<')
            .next()
            .unwrap_or(from)
            .trim_end_matches('>')
            .to_string();
        field.ours.push(format!("from:{addr} {a}"));
        field.pg.push(FtsQuery::FromAndTerm {
            from: addr,
            term: a.clone(),
        });
    }
    Ok(vec![one, two, phrase, field])
}

async fn search(settings: &Settings, args: &BenchSearchArgs) -> Result<ExitCode> {
    let store = open_store(settings).await?;
    let index = open_index(settings, &store).await?;
    let docs = index.num_docs()?;
    let classes = build_classes(&store, 50).await?;
    let pg = match &args.pg {
        Some(url) => {
            let started = Instant::now();
            let (pg, rows) = PgFts::load(url, &store).await?;
            eprintln!(
                "loaded {rows} messages into PostgreSQL in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            Some(pg)
        }
        None => None,
    };
    let mut figures = Vec::new();
    for class in &classes {
        let queries: Vec<Query> = class
            .ours
            .iter()
            .map(|q| Query::parse(q))
            .collect::<Result<_, _>>()?;
        let runs_per_query = (args.iterations / queries.len().max(1)).max(1);
        // Warm up once per query so the figures are steady-state, as on a busy desk.
        for q in &queries {
            index.search(q, 10)?;
        }
        let mut index_times = Vec::new();
        let mut full_times = Vec::new();
        for _ in 0..runs_per_query {
            for q in &queries {
                let t = Instant::now();
                index.search(q, 10)?;
                index_times.push(t.elapsed());
                let t = Instant::now();
                qd_search::sync::search(&store, &index, q, 10).await?;
                full_times.push(t.elapsed());
            }
        }
        index_times.sort();
        full_times.sort();
        let mut pg_times = Vec::new();
        if let Some(pg) = &pg {
            for q in &class.pg {
                pg.query(q).await?;
            }
            for _ in 0..runs_per_query.min(20) {
                for q in &class.pg {
                    let t = Instant::now();
                    pg.query(q).await?;
                    pg_times.push(t.elapsed());
                }
            }
            pg_times.sort();
        }
        let with_p99 = percentile(&full_times, 0.99);
        let pg_p99 = pg.as_ref().map(|_| percentile(&pg_times, 0.99));
        figures.push(ClassFigures {
            class: class.name,
            queries: queries.len(),
            runs: index_times.len(),
            index_p50_ms: percentile(&index_times, 0.50),
            index_p99_ms: percentile(&index_times, 0.99),
            with_snippets_p50_ms: percentile(&full_times, 0.50),
            with_snippets_p99_ms: with_p99,
            pg_p50_ms: pg.as_ref().map(|_| percentile(&pg_times, 0.50)),
            pg_p99_ms: pg_p99,
            pg_ratio_p99: pg_p99.map(|p| p / with_p99.max(1e-9)),
        });
    }
    if args.json {
        out!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "index_documents": docs,
                "classes": figures,
            }))?
        );
    } else {
        out!("search latency over {docs} indexed messages (top 10)");
        out!(
            "{:<15} {:>6} {:>10} {:>10} {:>12} {:>12} {:>10} {:>10} {:>8}",
            "class",
            "runs",
            "idx p50",
            "idx p99",
            "full p50",
            "full p99",
            "pg p50",
            "pg p99",
            "pg/ours"
        );
        for f in &figures {
            let opt = |v: Option<f64>| v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "-".into());
            out!(
                "{:<15} {:>6} {:>10.2} {:>10.2} {:>12.2} {:>12.2} {:>10} {:>10} {:>8}",
                f.class,
                f.runs,
                f.index_p50_ms,
                f.index_p99_ms,
                f.with_snippets_p50_ms,
                f.with_snippets_p99_ms,
                opt(f.pg_p50_ms),
                opt(f.pg_p99_ms),
                opt(f.pg_ratio_p99)
            );
        }
        out!("(milliseconds; full = tantivy + subject and snippet from the store)");
    }
    store.close().await?;
    Ok(ExitCode::SUCCESS)
}
