//! Import a synthetic support mailbox, then check threading, dedupe, resume and the
//! query language against what the generator says it wrote.

use std::collections::{HashMap, HashSet};

use qd_synth::{SynthConfig, SynthMessage};
use serde_json::Value;

use crate::{both_backends, path_str, Qd};

const N: u64 = 300;

struct Mailbox {
    _dir: tempfile::TempDir,
    maildir: std::path::PathBuf,
    mbox: std::path::PathBuf,
    messages: Vec<SynthMessage>,
}

fn mailbox() -> Mailbox {
    let dir = tempfile::tempdir().unwrap();
    let cfg = SynthConfig::new(11, N);
    let maildir = dir.path().join("Maildir");
    let mbox = dir.path().join("all.mbox");
    assert_eq!(qd_synth::write_maildir(&cfg, &maildir).unwrap(), N);
    assert_eq!(qd_synth::write_mbox(&cfg, &mbox).unwrap(), N);
    Mailbox {
        messages: qd_synth::generate(&cfg).collect(),
        _dir: dir,
        maildir,
        mbox,
    }
}

fn ids(hits: &[Value]) -> HashSet<String> {
    hits.iter()
        .filter_map(|h| h["message_id"].as_str().map(str::to_string))
        .collect()
}

fn bare(id: &str) -> String {
    id.trim_matches(|c| c == '<' || c == '>').to_string()
}

async fn imports_threads_deduplicates_and_searches(qd: Qd) {
    let mb = mailbox();
    let summary = qd.json(&["import", path_str(&mb.maildir), "--json"]);
    assert_eq!(summary["imported"], N);
    assert_eq!(summary["failed"], 0);
    assert_eq!(summary["duplicates"], 0);
    assert_eq!(summary["indexed"], N);
    // The reported rate is end to end: the store's share is part of the whole.
    let (total, stored) = (
        summary["seconds"].as_f64().unwrap(),
        summary["stored_seconds"].as_f64().unwrap(),
    );
    assert!(
        stored > 0.0 && stored <= total,
        "stored {stored} s of {total} s"
    );
    let threads: HashSet<u64> = mb.messages.iter().map(|m| m.thread).collect();
    assert_eq!(
        summary["tickets"],
        threads.len() as u64,
        "one ticket per generated thread"
    );

    let stats = qd.json(&["stats", "--json"]);
    assert_eq!(stats["messages"], N);
    assert_eq!(stats["index_documents"], N);
    assert_eq!(stats["blobs"], N);
    assert_eq!(stats["search_queue"], 0);

    // Every message of a thread lands in one ticket, and ticket: finds exactly them.
    let mut per_thread: HashMap<u64, Vec<String>> = HashMap::new();
    for m in &mb.messages {
        per_thread
            .entry(m.thread)
            .or_default()
            .push(bare(&m.message_id));
    }
    let (_, longest) = per_thread
        .iter()
        .max_by_key(|(t, v)| (v.len(), std::cmp::Reverse(**t)))
        .unwrap();
    assert!(
        longest.len() >= 2,
        "the generator makes multi-message threads"
    );
    let parsed: Vec<qd_mail::ParsedMail> =
        mb.messages.iter().map(|m| qd_mail::parse(&m.raw)).collect();
    let first = parsed
        .iter()
        .find(|p| p.message_id.as_deref() == Some(longest[0].as_str()))
        .unwrap();
    let subject = first.subject.clone().unwrap();
    let from = first.from.clone().unwrap().addr;
    let hits = qd.search(&format!("subject:\"{subject}\" from:{from}"), 50);
    let hit = hits
        .iter()
        .find(|h| h["message_id"] == longest[0].as_str())
        .unwrap_or_else(|| panic!("subject+from search misses {}: {hits:?}", longest[0]));
    let ticket = hit["ticket"].as_i64().unwrap();
    let in_ticket = qd.search(&format!("ticket:{ticket}"), 100);
    assert_eq!(
        ids(&in_ticket),
        longest.iter().cloned().collect::<HashSet<_>>()
    );

    // Field filters agree with what was generated.
    let with_attachment = mb.messages.iter().filter(|m| m.has_attachment).count();
    assert!(with_attachment > 0);
    assert_eq!(qd.search("has:attachment", 1000).len(), with_attachment);
    assert_eq!(qd.search("status:open", 1000).len(), N as usize);
    assert!(qd.search("status:closed", 1000).is_empty());
    assert!(qd.search("before:2024-01-01", 1000).is_empty());
    assert_eq!(qd.search("after:2024-01-01", 1000).len(), N as usize);

    // Hits carry snippets with the match highlighted.
    let word = first
        .text
        .split(|c: char| !c.is_ascii_alphabetic())
        .find(|w| w.len() >= 6)
        .unwrap()
        .to_lowercase();
    let hits = qd.search(&format!("{word} ticket:{ticket}"), 10);
    assert!(!hits.is_empty());
    assert!(
        hits.iter().any(|h| h["snippet"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains(&format!("<b>{word}</b>"))),
        "no highlighted `{word}` in {hits:?}"
    );

    // A bad query is the user's to fix: exit code 2 and a message naming the problem.
    let out = qd.run(&["search", "form:alice"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("form"));

    // Running the import of the finished Maildir again reads it again (its checkpoint
    // went with the finished run) and recognises every message: nothing new.
    let again = qd.json(&["import", path_str(&mb.maildir), "--json"]);
    assert_eq!(again["imported"], 0);
    assert_eq!(again["duplicates"], N);
    assert!(again["resumed_after"].is_null());

    // The same messages from an mbox are recognised as duplicates by content.
    let dup = qd.json(&["import", path_str(&mb.mbox), "--json"]);
    assert_eq!(dup["imported"], 0);
    assert_eq!(dup["duplicates"], N);
    assert_eq!(qd.json(&["stats", "--json"])["messages"], N);
}
both_backends!(imports_threads_deduplicates_and_searches);

async fn index_follows_the_store_after_a_crash(qd: Qd) {
    let mb = mailbox();
    qd.json(&["import", path_str(&mb.maildir), "--json"]);

    // Index lost entirely: the next command rebuilds it from the store.
    std::fs::remove_dir_all(qd.data_dir().join("index")).unwrap();
    assert_eq!(qd.json(&["stats", "--json"])["index_documents"], N);

    // A rebuild killed before its one commit: the index exists (tantivy wrote its
    // `meta.json` on creation) and holds nothing. The next command rebuilds it again.
    std::fs::remove_dir_all(qd.data_dir().join("index")).unwrap();
    drop(qd_search::SearchIndex::open_or_create(&qd.data_dir().join("index")).unwrap());
    assert!(qd.data_dir().join("index/meta.json").exists());
    assert_eq!(qd.json(&["stats", "--json"])["index_documents"], N);

    // A message stored while no indexer ran (a crash between store and index) is in
    // the queue; the next start applies it.
    let url = match qd.env.iter().find(|(k, _)| k == "QUIETDESK__DATABASE__URL") {
        Some((_, url)) => url.clone(),
        None => format!(
            "sqlite://{}?mode=rwc",
            qd.data_dir().join("quietdesk.db").display()
        ),
    };
    let store = qd_store::Store::connect(&url).await.unwrap();
    let raw = b"From: late@example.org\r\nTo: support@quietdesk.example\r\nSubject: zanzibarquux outage\r\nMessage-ID: <late-1@example.org>\r\nDate: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nThe zanzibarquux cluster is down.\r\n";
    let parsed = qd_mail::parse(raw);
    let blob = qd_store::PreparedBlob::prepare(raw).unwrap();
    let now = chrono::Utc::now();
    let msg = qd_ingest::new_message(parsed, blob, None, None, None, now);
    crate::store_directly(&store, msg, now).await;
    store.close().await.unwrap();
    let hits = qd.search("zanzibarquux", 10);
    assert_eq!(
        ids(&hits),
        HashSet::from(["late-1@example.org".to_string()])
    );
    assert_eq!(qd.json(&["stats", "--json"])["search_queue"], 0);

    // reindex rebuilds the same index from scratch.
    let out = qd.run(&["reindex"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("reindexed {}", N + 1)));
    assert_eq!(qd.json(&["stats", "--json"])["index_documents"], N + 1);
}
both_backends!(index_follows_the_store_after_a_crash);
