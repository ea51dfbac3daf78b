//! The import pipeline against a real SQLite store: counts, resume after an interrupted
//! run, and the checkpoint.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod imap;

use std::time::Duration;

use qd_core::{SystemClock, TicketRefFormat};
use qd_ingest::{import_path, source_key, ImportSettings, NoProgress};
use qd_store::Store;

fn settings(batch_size: usize) -> ImportSettings {
    ImportSettings {
        max_message_bytes: 1 << 20,
        batch_size,
        ticket_ref: TicketRefFormat::new("[#QD-{n}]").unwrap(),
        team: None,
        keep_full_ips: false,
    }
}

async fn store(dir: &std::path::Path) -> Store {
    let url = format!("sqlite://{}?mode=rwc", dir.join("q.db").display());
    Store::connect(&url).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_import_resumes_without_loss_or_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let cfg = qd_synth::SynthConfig::new(5, 400);
    qd_synth::write_maildir(&cfg, &maildir).unwrap();
    let store = store(dir.path()).await;

    // Interrupt the first run as soon as something is committed: the future is dropped
    // mid-flight, as a killed process would stop.
    let s2 = store.clone();
    let md = maildir.clone();
    let run = tokio::spawn(async move {
        import_path(&s2, &md, &settings(10), &SystemClock, &NoProgress).await
    });
    loop {
        if store.stats().await.unwrap().messages > 0 {
            break;
        }
        assert!(
            !run.is_finished(),
            "import finished before it could be interrupted"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    run.abort();
    let _ = run.await;
    let partial = store.stats().await.unwrap().messages;
    assert!(
        partial < 400,
        "interrupted too late to test anything ({partial})"
    );
    let cp = store
        .checkpoint(&source_key(&maildir))
        .await
        .unwrap()
        .unwrap();
    assert!(cp.position.starts_with("path:new/"), "{cp:?}");

    let second = import_path(&store, &maildir, &settings(10), &SystemClock, &NoProgress)
        .await
        .unwrap();
    assert!(second.resumed_after.is_some());
    assert_eq!(
        second.duplicates, 0,
        "the checkpoint skips what was committed"
    );
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.messages, 400);
    assert_eq!(partial + second.imported, 400);
    assert_eq!(stats.blobs, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_mail_in_two_folders_is_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = qd_synth::SynthConfig::new(6, 50);
    qd_synth::write_maildir(&cfg, &dir.path().join("a")).unwrap();
    qd_synth::write_mbox(&cfg, &dir.path().join("b.mbox")).unwrap();
    let store = store(dir.path()).await;
    let a = import_path(
        &store,
        &dir.path().join("a"),
        &settings(7),
        &SystemClock,
        &NoProgress,
    )
    .await
    .unwrap();
    let b = import_path(
        &store,
        &dir.path().join("b.mbox"),
        &settings(7),
        &SystemClock,
        &NoProgress,
    )
    .await
    .unwrap();
    assert_eq!((a.imported, a.duplicates), (50, 0));
    assert_eq!((b.imported, b.duplicates), (0, 50));
    assert_eq!(b.kind, "mbox");
}

/// A directory import meets an mbox of several messages (it reads each file as one
/// message): the file is refused with a reason that says what to do, instead of being
/// stored as one message with the others hidden in its body. A file saved with a
/// byte-order mark is mail like any other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_import_names_an_mbox_and_reads_a_file_with_a_bom() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("exported");
    std::fs::create_dir_all(&src).unwrap();
    qd_synth::write_mbox(&qd_synth::SynthConfig::new(8, 3), &src.join("Inbox")).unwrap();
    std::fs::write(
        src.join("saved.eml"),
        "\u{feff}From: Ann <ann@example.org>\r\nSubject: saved from a Windows editor\r\nMessage-ID: <bom@example.org>\r\n\r\nhello\r\n",
    )
    .unwrap();
    let store = store(dir.path()).await;
    let s = import_path(&store, &src, &settings(10), &SystemClock, &NoProgress)
        .await
        .unwrap();
    assert_eq!((s.imported, s.failed, s.skipped), (1, 1, 0), "{s:?}");
    assert!(
        s.failures[0].reason.contains("import it on its own"),
        "{:?}",
        s.failures
    );
    assert!(store
        .ticket_of_message_id("bom@example.org")
        .await
        .unwrap()
        .is_some());
}

/// Importing a Maildir again after a finished import takes the mail that arrived since,
/// wherever its name sorts: here a new message a mail client has already moved from
/// `new/` to `cur/` (which sorts before every `new/` name the last run ended on).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_maildir_import_sees_mail_moved_to_cur() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    let cfg = qd_synth::SynthConfig::new(9, 20);
    qd_synth::write_maildir(&cfg, &maildir).unwrap();
    let store = store(dir.path()).await;
    let first = import_path(&store, &maildir, &settings(7), &SystemClock, &NoProgress)
        .await
        .unwrap();
    assert_eq!(first.imported, 20);

    std::fs::write(
        maildir.join("new/9999999999.late.host"),
        "From: late@example.org\r\nTo: support@example.com\r\nSubject: late\r\n\
         Message-ID: <late-cur@example.org>\r\n\r\narrived after the import\r\n",
    )
    .unwrap();
    std::fs::rename(
        maildir.join("new/9999999999.late.host"),
        maildir.join("cur/9999999999.late.host:2,S"),
    )
    .unwrap();
    let second = import_path(&store, &maildir, &settings(7), &SystemClock, &NoProgress)
        .await
        .unwrap();
    assert_eq!((second.imported, second.duplicates), (1, 20), "{second:?}");
    assert!(store
        .ticket_of_message_id("late-cur@example.org")
        .await
        .unwrap()
        .is_some());
}

/// A file in a Maildir is mail by definition: one the header sniff would not recognise
/// (a blank first line) is kept raw with a defect, not skipped as "not mail".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_maildir_file_that_does_not_look_like_mail_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let maildir = dir.path().join("Maildir");
    for sub in ["cur", "new", "tmp"] {
        std::fs::create_dir_all(maildir.join(sub)).unwrap();
    }
    std::fs::write(
        maildir.join("cur/1.odd.host:2,S"),
        "\nFrom: odd@example.org\nSubject: odd\n\nhello\n",
    )
    .unwrap();
    let store = store(dir.path()).await;
    let s = import_path(&store, &maildir, &settings(7), &SystemClock, &NoProgress)
        .await
        .unwrap();
    assert_eq!(
        (s.kind.as_str(), s.imported, s.skipped),
        ("maildir", 1, 0),
        "{s:?}"
    );
    assert_eq!(s.defective, 1, "{s:?}");
}

/// One mbox message, `n`, with a body of `body_bytes`.
fn mbox_message(n: usize, body_bytes: usize) -> String {
    format!(
        "From sender{n}@example.org Mon Jan  1 10:00:0{} 2024\nFrom: sender{n}@example.org\n\
         Subject: message {n}\nMessage-ID: <mbox-{n}@example.org>\n\n{}\n\n",
        n % 10,
        "y".repeat(body_bytes)
    )
}

/// An mbox that a mail client compacted (or another export saved over) since the last
/// import: the stored offset no longer starts a message, so the file is read from its
/// start, and the new message is not lost behind the old offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rewritten_mbox_is_read_from_its_start() {
    let dir = tempfile::tempdir().unwrap();
    let mbox = dir.path().join("archive.mbox");
    let store = store(dir.path()).await;
    std::fs::write(
        &mbox,
        [
            mbox_message(1, 2000),
            mbox_message(2, 10),
            mbox_message(3, 10),
        ]
        .concat(),
    )
    .unwrap();
    let first = import_path(&store, &mbox, &settings(7), &SystemClock, &NoProgress)
        .await
        .unwrap();
    assert_eq!(first.imported, 3);
    // Unchanged: nothing to read, and nothing read again.
    let again = import_path(&store, &mbox, &settings(7), &SystemClock, &NoProgress)
        .await
        .unwrap();
    assert_eq!((again.imported, again.duplicates), (0, 0), "{again:?}");

    // Appended to: the next import starts where the last ended.
    let appended = [
        mbox_message(1, 2000),
        mbox_message(2, 10),
        mbox_message(3, 10),
        mbox_message(4, 10),
    ]
    .concat();
    std::fs::write(&mbox, &appended).unwrap();
    let second = import_path(&store, &mbox, &settings(7), &SystemClock, &NoProgress)
        .await
        .unwrap();
    assert_eq!((second.imported, second.duplicates), (1, 0), "{second:?}");
    assert!(second.resumed_after.is_some());

    // Compacted: message 1 gone, message 5 new.
    std::fs::write(
        &mbox,
        [
            mbox_message(2, 10),
            mbox_message(3, 10),
            mbox_message(4, 10),
            mbox_message(5, 10),
        ]
        .concat(),
    )
    .unwrap();
    let third = import_path(&store, &mbox, &settings(7), &SystemClock, &NoProgress)
        .await
        .unwrap();
    assert_eq!((third.imported, third.duplicates), (1, 3), "{third:?}");
    assert_eq!(third.resumed_after, None);
    assert!(store
        .ticket_of_message_id("mbox-5@example.org")
        .await
        .unwrap()
        .is_some());
}
