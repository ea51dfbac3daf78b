//! The SpamAssassin public corpus (read from a path, never shipped): import all of it,
//! then check counts, threading and search against facts read from the files.
//!
//! The corpus is looked up at `QUIETDESK_CORPUS` or `../shared/corpus/spamassassin`
//! beside the repository. When it is absent the test says so and returns, unless
//! `QUIETDESK_REQUIRE_CORPUS=1` (CI sets it), where absence fails the test.

use std::collections::HashMap;
use std::path::PathBuf;

use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::{path_str, Qd};

fn corpus_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("QUIETDESK_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/spamassassin")
        });
    if dir.join("MANIFEST.tsv").is_file() {
        return Some(dir);
    }
    let msg = format!(
        "SpamAssassin corpus not found at {} (set QUIETDESK_CORPUS to the folder holding MANIFEST.tsv)",
        dir.display()
    );
    if std::env::var("QUIETDESK_REQUIRE_CORPUS").as_deref() == Ok("1") {
        panic!("{msg}");
    }
    eprintln!("SKIPPING corpus test: {msg}");
    None
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| w.len() >= 4 && w.chars().all(|c| c.is_ascii_alphabetic()))
        .map(str::to_lowercase)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_spamassassin_corpus_imports_threads_and_searches() {
    let Some(corpus) = corpus_dir() else { return };
    let qd = Qd::sqlite();
    let unpacked = qd.dir.path().join("corpus");
    std::fs::create_dir_all(&unpacked).unwrap();
    for archive in ["ham.tar.gz", "spam.tar.gz"] {
        let st = std::process::Command::new("tar")
            .arg("-xzf")
            .arg(corpus.join(archive))
            .arg("-C")
            .arg(&unpacked)
            .status()
            .unwrap();
        assert!(st.success(), "unpacking {archive}");
    }
    let manifest = std::fs::read_to_string(corpus.join("MANIFEST.tsv")).unwrap();
    let files: Vec<&str> = manifest
        .lines()
        .skip(1)
        .filter_map(|l| l.split('\t').next())
        .collect();
    assert!(files.len() > 6000);

    let s = qd.json(&["import", path_str(&unpacked), "--json"]);
    assert_eq!(s["failed"], 0, "{s}");
    assert_eq!(s["skipped"], 0, "{s}");
    let imported = s["imported"].as_u64().unwrap();
    let duplicates = s["duplicates"].as_u64().unwrap();
    assert_eq!(imported + duplicates, files.len() as u64);
    assert_eq!(qd.json(&["stats", "--json"])["index_documents"], imported);

    // Facts from the files themselves.
    let mut parsed = Vec::new();
    for f in &files {
        let raw = std::fs::read(unpacked.join(f)).unwrap();
        parsed.push(qd_mail::parse(&raw));
    }
    let known: HashMap<&str, usize> = parsed
        .iter()
        .enumerate()
        .filter_map(|(i, p)| p.message_id.as_deref().map(|id| (id, i)))
        .collect();

    // Threading: a reply whose In-Reply-To names a corpus message imported before it
    // shares that message's ticket, always. A parent imported after its reply joins the
    // reply's ticket unless its own headers already put it in another ticket (tickets are
    // never merged behind staff's back), so for those only most must thread.
    let url = format!(
        "sqlite://{}?mode=rwc",
        qd.data_dir().join("quietdesk.db").display()
    );
    let store = qd_store::Store::connect(&url).await.unwrap();
    let mut order: Vec<usize> = (0..files.len()).collect();
    order.sort_by_key(|&i| files[i]);
    let mut rank = vec![0; files.len()];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r;
    }
    let mut pairs = 0;
    let mut late: HashMap<String, (Option<i64>, Vec<i64>)> = HashMap::new();
    for (i, p) in parsed.iter().enumerate() {
        let (Some(id), Some(parent)) = (p.message_id.as_deref(), p.in_reply_to.first()) else {
            continue;
        };
        if !known.contains_key(parent.as_str()) || parent == id {
            continue;
        }
        let mine = store.ticket_of_message_id(id).await.unwrap();
        let theirs = store.ticket_of_message_id(parent).await.unwrap();
        assert!(mine.is_some() && theirs.is_some());
        if rank[known[parent.as_str()]] < rank[i] {
            assert_eq!(
                mine, theirs,
                "{id} not threaded with {parent}, imported before it"
            );
            pairs += 1;
        } else {
            // The parent came later. Unless its own headers thread it to a message
            // imported before it, it must have joined this reply's ticket.
            let pi = known[parent.as_str()];
            let own_thread = parsed[pi]
                .in_reply_to
                .iter()
                .chain(parsed[pi].references.iter())
                .any(|r| known.get(r.as_str()).is_some_and(|&j| rank[j] < rank[pi]));
            if !own_thread {
                late.entry(parent.clone()).or_insert((theirs, Vec::new()));
            }
        }
    }
    // Every earlier message that names a late parent in In-Reply-To or References.
    for (i, p) in parsed.iter().enumerate() {
        let Some(id) = p.message_id.as_deref() else {
            continue;
        };
        for r in p.in_reply_to.iter().chain(p.references.iter()) {
            let Some(entry) = late.get_mut(r.as_str()) else {
                continue;
            };
            if rank[i] < rank[known[r.as_str()]] {
                entry
                    .1
                    .extend(store.ticket_of_message_id(id).await.unwrap());
            }
        }
    }
    // A parent referenced by replies in several tickets can join only one of them.
    assert!(
        late.len() > 10,
        "too few late parents ({}) to check adoption",
        late.len()
    );
    for (parent, (ticket, reply_tickets)) in &late {
        assert!(
            ticket.is_some_and(|t| reply_tickets.contains(&t)),
            "late parent {parent} did not join any of its replies' tickets"
        );
    }
    assert!(
        pairs > 100,
        "only {pairs} reply pairs found: threading was barely exercised"
    );
    let tickets = qd.json(&["stats", "--json"])["tickets"].as_u64().unwrap();
    assert!(
        tickets < imported - pairs as u64 / 2,
        "replies did not merge into tickets"
    );
    store.close().await.unwrap();

    // Search: subject phrases and senders of sampled messages find those messages.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(2002);
    let mut sample: Vec<&qd_mail::ParsedMail> = parsed
        .iter()
        .filter(|p| p.message_id.is_some() && p.from.is_some())
        .filter(|p| words(p.subject.as_deref().unwrap_or("")).len() >= 2)
        .collect();
    sample.shuffle(&mut rng);
    for p in sample.iter().take(25) {
        let id = p.message_id.clone().unwrap();
        let w = words(p.subject.as_deref().unwrap());
        let from = &p.from.as_ref().unwrap().addr;
        let q = format!("subject:{} subject:{} from:{from}", w[0], w[1]);
        let hits = qd.search(&q, 200);
        assert!(
            hits.iter().any(|h| h["message_id"] == id.as_str()),
            "query {q} misses {id}"
        );
    }
}
