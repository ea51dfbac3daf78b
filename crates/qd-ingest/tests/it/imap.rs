//! The IMAP ingester against a real, private Dovecot (qd-testkit): push by IDLE, server
//! restarts, UIDVALIDITY resets, size limits, broken mail, TLS, authentication, and what
//! happens to ingested mail on the server.

use std::sync::Arc;
use std::time::{Duration, Instant};

use qd_core::SystemClock;
use qd_ingest::imap::{
    ingest_once, run, AfterIngest, Auth, IngestContext, IngestSummary, MailboxConfig, Secret, Tls,
};
use qd_store::Store;
use qd_testkit::{Dovecot, DovecotTls};
use tokio_util::sync::CancellationToken;

/// [`mailbox`] reached through `proxy` (in front of `d`).
fn through(proxy: &qd_testkit::StallProxy, d: &Dovecot, user: &str) -> MailboxConfig {
    let mut m = mailbox(d, user);
    m.port = Some(proxy.port());
    m
}

fn mailbox(d: &Dovecot, user: &str) -> MailboxConfig {
    let mut m = MailboxConfig::new(
        "test",
        "127.0.0.1",
        user,
        Secret::Password(d.password(user).unwrap().to_string()),
    );
    m.port = Some(d.port());
    m.tls = Tls::None;
    m.stall_timeout_secs = 10;
    m
}

async fn ctx(dir: &std::path::Path, batch_size: usize) -> IngestContext {
    IngestContext {
        store: super::store(dir).await,
        settings: super::settings(batch_size),
        clock: Arc::new(SystemClock),
        hook: None,
    }
}

/// Dovecot behind a [`qd_testkit::StallProxy`], `n` synthetic messages (from `seed`) in
/// the user's INBOX, and an ingest context on a fresh store.
struct Proxied {
    d: Dovecot,
    proxy: qd_testkit::StallProxy,
    msgs: Vec<qd_synth::SynthMessage>,
    ctx: IngestContext,
    _dir: tempfile::TempDir,
}

async fn proxied(seed: u64, n: u64) -> Proxied {
    let d = Dovecot::start_plain().unwrap();
    let proxy = qd_testkit::StallProxy::start(d.port()).unwrap();
    let msgs = synth(seed, n);
    deliver_all(&d, "user", &msgs);
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 100).await;
    Proxied {
        d,
        proxy,
        msgs,
        ctx,
        _dir: dir,
    }
}

/// Cancels a watcher started with `run` and waits for it to end cleanly.
async fn stop(
    shutdown: &CancellationToken,
    task: tokio::task::JoinHandle<Result<(), qd_ingest::imap::ImapError>>,
) {
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(15), task)
        .await
        .expect("the watcher stops on cancellation")
        .unwrap()
        .unwrap();
}

fn synth(seed: u64, n: u64) -> Vec<qd_synth::SynthMessage> {
    qd_synth::generate(&qd_synth::SynthConfig::new(seed, n)).collect()
}

fn deliver_all(d: &Dovecot, user: &str, msgs: &[qd_synth::SynthMessage]) {
    for m in msgs {
        d.deliver(user, "INBOX", &m.raw).unwrap();
    }
}

/// Writes the INBOX checkpoint of mailbox `test` directly, as an earlier run would have.
async fn set_checkpoint(ctx: &IngestContext, uidvalidity: u32, position: &str) {
    let cp = qd_store::Checkpoint {
        source: "imap:test/INBOX".into(),
        uidvalidity: Some(i64::from(uidvalidity)),
        position: position.into(),
        held: Vec::new(),
    };
    let bs = qd_store::BatchSettings {
        ticket_ref: &ctx.settings.ticket_ref,
        now: chrono::Utc::now(),
    };
    ctx.store
        .store_batch(&mut [], Some(&cp), &bs)
        .await
        .unwrap();
}

/// Every message is stored exactly once and moved out of the user's INBOX into the
/// processed folder.
async fn assert_stored_and_moved(d: &Dovecot, store: &Store, msgs: &[qd_synth::SynthMessage]) {
    assert_exactly_once(store, msgs).await;
    assert_eq!(d.count("user", "INBOX"), 0);
    assert_eq!(d.count("user", "quietdesk/processed"), msgs.len());
}

/// Every Message-ID is in the store, and the store holds exactly that many messages.
async fn assert_exactly_once(store: &Store, msgs: &[qd_synth::SynthMessage]) {
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.messages, msgs.len() as u64, "stored message count");
    for m in msgs {
        let id = m.message_id.trim_matches(|c| c == '<' || c == '>');
        assert!(
            store.ticket_of_message_id(id).await.unwrap().is_some(),
            "{id} missing from the store"
        );
    }
}

fn assert_consistent(s: &IngestSummary) {
    assert_eq!(
        s.fetched,
        s.stored + s.duplicates + s.forgotten + s.failed,
        "fetched = stored + duplicates + forgotten + failed: {s:?}"
    );
}

async fn wait_for_messages(store: &Store, n: u64, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let have = store.stats().await.unwrap().messages;
        if have >= n {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "only {have} of {n} messages stored after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn once_moves_ingested_mail_to_processed_and_takes_nothing_twice() {
    let d = Dovecot::start_plain().unwrap();
    let msgs = synth(1, 120);
    deliver_all(&d, "user", &msgs);
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 50).await;
    let m = mailbox(&d, "user");

    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!(s.errors, 0, "{:?}", s.folders);
    assert_eq!(
        (s.fetched, s.stored, s.duplicates, s.failed),
        (120, 120, 0, 0)
    );
    assert!(s.tickets > 0 && s.tickets <= 120);
    assert_consistent(&s);
    assert_exactly_once(&ctx.store, &msgs).await;
    assert_eq!(
        d.count("user", "INBOX"),
        0,
        "ingested mail leaves the inbox"
    );
    assert_eq!(
        d.count("user", "quietdesk/processed"),
        120,
        "moved to the processed folder, created on demand"
    );
    let cp = ctx
        .store
        .checkpoint("imap:test/INBOX")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cp.position, "120");
    assert_eq!(
        cp.uidvalidity,
        Some(i64::from(d.uidvalidity("user", "INBOX").unwrap()))
    );

    let again = ingest_once(&ctx, &[m]).await.unwrap();
    assert_eq!((again.fetched, again.stored), (0, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flag_keep_and_delete_actions_and_recovery_after_a_crash_before_the_move() {
    let d = Dovecot::start(&[("a", "pa"), ("b", "pb")], DovecotTls::Off).unwrap();
    let msgs = synth(2, 30);
    deliver_all(&d, "a", &msgs);
    deliver_all(&d, "b", &msgs[..10]);
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 7).await;

    // Flag: messages stay, carry the flag (\Flagged is Maildir letter F).
    let mut a = mailbox(&d, "a");
    a.name = "a".into();
    a.after = AfterIngest::Flag("\\Flagged".into());
    let s = ingest_once(&ctx, std::slice::from_ref(&a)).await.unwrap();
    assert_eq!(s.stored, 30);
    assert_eq!(d.count("a", "INBOX"), 30);
    assert_eq!(d.count_with_flag("a", "INBOX", 'F'), 30);

    // Keep, then a restart with Move: the recovery pass moves what the checkpoint
    // covers, exactly what a crash between commit and move leaves behind.
    let mut b = mailbox(&d, "b");
    b.name = "b".into();
    b.after = AfterIngest::Keep;
    let s = ingest_once(&ctx, std::slice::from_ref(&b)).await.unwrap();
    assert_eq!(
        (s.fetched, s.duplicates),
        (10, 10),
        "same mail as a's first ten"
    );
    assert_eq!(d.count("b", "INBOX"), 10);
    b.after = AfterIngest::Move("done/quietdesk".into());
    let s = ingest_once(&ctx, std::slice::from_ref(&b)).await.unwrap();
    assert_eq!(s.fetched, 0);
    assert_eq!(d.count("b", "INBOX"), 0);
    assert_eq!(d.count("b", "done/quietdesk"), 10);

    // Delete: expunged after the commit.
    deliver_all(&d, "b", &synth(3, 5));
    b.after = AfterIngest::Delete;
    let s = ingest_once(&ctx, std::slice::from_ref(&b)).await.unwrap();
    assert_eq!(s.stored, 5);
    assert_eq!(d.count("b", "INBOX"), 0);
    assert_eq!(ctx.store.stats().await.unwrap().messages, 35);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_delivery_is_stored_within_two_seconds() {
    let d = Dovecot::start_plain().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 100).await;
    let mut m = mailbox(&d, "user");
    m.poll_interval_secs = 3600; // IDLE must do it; polling would be too late
    let msgs = synth(4, 4);
    d.deliver("user", "INBOX", &msgs[0].raw).unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(ctx.clone(), vec![m], shutdown.clone()));
    wait_for_messages(&ctx.store, 1, Duration::from_secs(20)).await;
    for (i, msg) in msgs.iter().enumerate().skip(1) {
        // Let the watcher go back to IDLE.
        tokio::time::sleep(Duration::from_millis(300)).await;
        d.deliver("user", "INBOX", &msg.raw).unwrap();
        let took = wait_for_messages(&ctx.store, i as u64 + 1, Duration::from_secs(10)).await;
        assert!(took < Duration::from_secs(2), "delivery {i} took {took:?}");
    }
    stop(&shutdown, task).await;
    assert_exactly_once(&ctx.store, &msgs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_idle_is_polled() {
    let d = Dovecot::start_without_idle().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 100).await;
    let mut m = mailbox(&d, "user");
    m.poll_interval_secs = 1;
    let msgs = synth(41, 3);
    d.deliver("user", "INBOX", &msgs[0].raw).unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(ctx.clone(), vec![m], shutdown.clone()));
    wait_for_messages(&ctx.store, 1, Duration::from_secs(20)).await;
    for (i, msg) in msgs.iter().enumerate().skip(1) {
        d.deliver("user", "INBOX", &msg.raw).unwrap();
        // One poll interval plus a sync, with room for a slow machine.
        wait_for_messages(&ctx.store, i as u64 + 1, Duration::from_secs(10)).await;
    }
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the poller stops on cancellation")
        .unwrap()
        .unwrap();
    assert_exactly_once(&ctx.store, &msgs).await;
}

/// A connection that goes silent (a NAT dropped it; no FIN, no RST) is detected by the
/// stall timeout and replaced, and the mail that arrived meanwhile is fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_stalled_connection_is_detected_and_replaced() {
    let d = Dovecot::start_plain().unwrap();
    let proxy = qd_testkit::StallProxy::start(d.port()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 100).await;
    let mut m = through(&proxy, &d, "user");
    m.stall_timeout_secs = 2;
    m.poll_interval_secs = 3600;
    let msgs = synth(42, 2);
    d.deliver("user", "INBOX", &msgs[0].raw).unwrap();
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(ctx.clone(), vec![m], shutdown.clone()));
    wait_for_messages(&ctx.store, 1, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = proxy.accepted();
    proxy.stall_existing();
    d.deliver("user", "INBOX", &msgs[1].raw).unwrap();
    // Stall timeout (2 s) + reconnect backoff + sync; IDLE on the dead connection would
    // never report it.
    wait_for_messages(&ctx.store, 2, Duration::from_secs(30)).await;
    assert!(
        proxy.accepted() > before,
        "the watcher opened a new connection"
    );
    stop(&shutdown, task).await;
    assert_exactly_once(&ctx.store, &msgs).await;
}

/// A size FETCH that comes back short (the server leaves a message out, as Gmail does
/// with "Some messages could not be FETCHed") loses nothing: the folder's search names
/// the message, it is fetched anyway, and no later recovery moves it unstored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_size_answer_loses_nothing() {
    let Proxied {
        d,
        proxy,
        msgs,
        ctx,
        _dir,
    } = proxied(77, 3).await;
    proxy.drop_server_lines("UID 2 RFC822.SIZE");
    let m = through(&proxy, &d, "user");
    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!(s.errors, 0, "{:?}", s.folders);
    assert_consistent(&s);
    // A second run (straight to Dovecot) recovers what the first left undone.
    let again = ingest_once(&ctx, &[mailbox(&d, "user")]).await.unwrap();
    assert_eq!(again.errors, 0, "{:?}", again.folders);
    assert_stored_and_moved(&d, &ctx.store, &msgs).await;
}

/// The size limit holds for the bytes that arrive, not only for the size the server
/// announced: a message fetched without a size (left out of the size answer) and over
/// the limit is held on the server, not stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_applies_to_the_bytes_that_arrive() {
    let d = Dovecot::start_plain().unwrap();
    let proxy = qd_testkit::StallProxy::start(d.port()).unwrap();
    proxy.drop_server_lines("UID 2 RFC822.SIZE");
    let msgs = synth(78, 2);
    d.deliver("user", "INBOX", &msgs[0].raw).unwrap();
    d.deliver("user", "INBOX", &big_message(2, "unsized@example.org"))
        .unwrap();
    d.deliver("user", "INBOX", &msgs[1].raw).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 100).await;
    let mut m = through(&proxy, &d, "user");
    m.max_message_bytes = Some(1024 * 1024);
    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!((s.stored, s.failed, s.errors), (2, 1, 0), "{s:?}");
    assert!(s.failures[0].reason.contains("limit"), "{:?}", s.failures);
    assert_exactly_once(&ctx.store, &msgs).await;
    assert_eq!(
        d.count("user", "INBOX"),
        1,
        "the big one stays on the server"
    );
    assert_eq!(ctx.store.stats().await.unwrap().held_on_server, 1);
}

/// A UID SEARCH the server refuses (NO) ends the pass with an error instead of reading as
/// an empty answer, and the next pass stores everything once. async-imap's own search
/// read a NO (or a connection that ended) as "no such message"; after a short body FETCH
/// that answer decides which missing mail is still in the folder, so mail never stored
/// was taken as expunged and passed by the checkpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_search_is_an_error_not_an_empty_answer() {
    let d = Dovecot::start_plain().unwrap();
    let proxy = qd_testkit::StallProxy::start(d.port()).unwrap();
    proxy.drop_server_lines("UID 2 RFC822.SIZE");
    proxy.replace_in_server_lines("OK Search completed", "NO Search failed");
    let msgs = synth(79, 3);
    for msg in &msgs {
        d.deliver("user", "INBOX", &msg.raw).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 100).await;
    let s = ingest_once(&ctx, &[through(&proxy, &d, "user")])
        .await
        .unwrap();
    assert_eq!(s.errors, 1, "{s:?}");
    assert!(s.folders[0]
        .error
        .as_deref()
        .is_some_and(|e| e.contains("Search failed")));

    let s = ingest_once(&ctx, &[mailbox(&d, "user")]).await.unwrap();
    assert_eq!(s.errors, 0, "{s:?}");
    assert_stored_and_moved(&d, &ctx.store, &msgs).await;
}

/// One pass through `proxy` that stores `stored` messages and holds `held`, one of them
/// for a reason that contains `reason`: reported, left in INBOX, counted as held.
async fn pass_holding(
    ctx: &IngestContext,
    proxy: &qd_testkit::StallProxy,
    d: &Dovecot,
    stored: u64,
    held: u64,
    reason: &str,
) {
    let s = ingest_once(ctx, &[through(proxy, d, "user")])
        .await
        .unwrap();
    assert_eq!((s.stored, s.failed, s.errors), (stored, held, 0), "{s:?}");
    assert_consistent(&s);
    assert!(
        s.failures.iter().any(|f| f.reason.contains(reason)),
        "{:?}",
        s.failures
    );
    assert_eq!(d.count("user", "INBOX"), held as usize);
    assert_eq!(ctx.store.stats().await.unwrap().held_on_server, held);
}

/// One pass straight to Dovecot (its replies read) that stores the `held` messages and
/// releases them; then every one of `msgs` is stored once and moved.
async fn pass_taking_held(
    ctx: &IngestContext,
    d: &Dovecot,
    held: u64,
    msgs: &[qd_synth::SynthMessage],
) {
    let s = ingest_once(ctx, &[mailbox(d, "user")]).await.unwrap();
    assert_eq!((s.stored, s.errors), (held, 0), "{s:?}");
    assert_eq!(ctx.store.stats().await.unwrap().held_on_server, 0);
    assert_stored_and_moved(d, &ctx.store, msgs).await;
}

/// A reply async-imap cannot parse (here the server's line for message 2 is garbled on
/// the way) used to stop the folder for good: the library's reader keeps the bytes it
/// failed on, the pass ended with an error, and every later pass asked for the same
/// message again. Now the connection is replaced and the message is asked for alone,
/// then without INTERNALDATE, which here reads; everything is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_fetch_reply_is_asked_for_again() {
    let Proxied {
        d,
        proxy,
        msgs,
        ctx,
        _dir,
    } = proxied(93, 3).await;
    proxy.replace_in_server_lines("UID 2 INTERNALDATE \"", "UID 2 INTERNALDATE (\"");
    let s = ingest_once(&ctx, &[through(&proxy, &d, "user")])
        .await
        .unwrap();
    assert_eq!((s.stored, s.failed, s.errors), (3, 0, 0), "{s:?}");
    assert_consistent(&s);
    assert_stored_and_moved(&d, &ctx.store, &msgs).await;
    // The first connection, the one that replaced it when stuck, and the one after the
    // message alone failed with INTERNALDATE.
    assert_eq!(proxy.accepted(), 3);
}

/// A message whose reply cannot be read either way is held (left on the server, reported
/// as failed) and the rest of the folder goes on: the messages around it are stored, the
/// next pass takes new mail, and once the server answers readably the held one comes in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_message_is_held_and_the_folder_goes_on() {
    let Proxied {
        d,
        proxy,
        mut msgs,
        ctx,
        _dir,
    } = proxied(94, 3).await;
    proxy.replace_in_server_lines("UID 2 INTERNALDATE \"", "UID 2 INTERNALDATE (\"");
    proxy.replace_in_server_lines("UID 2 BODY[] {", "UID 2 INTERNALDATE (BODY[] {");
    pass_holding(&ctx, &proxy, &d, 2, 1, "could not be read").await;

    // New mail is not blocked behind it (the held one is tried again and stays held).
    let more = synth(95, 1);
    deliver_all(&d, "user", &more);
    let s = ingest_once(&ctx, &[through(&proxy, &d, "user")])
        .await
        .unwrap();
    assert_eq!((s.stored, s.errors), (1, 0), "{s:?}");
    assert_eq!(ctx.store.stats().await.unwrap().held_on_server, 1);
    assert_eq!(ctx.store.stats().await.unwrap().messages, 3);

    msgs.extend(more);
    pass_taking_held(&ctx, &d, 1, &msgs).await;
}

/// A server whose every FETCH reply is unreadable costs a bounded number of logins per
/// pass, not three per message: past the limit the rest is held for a later pass, and
/// every message comes in once the replies read again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_replies_cost_a_bounded_number_of_logins() {
    let Proxied {
        d,
        proxy,
        msgs,
        ctx,
        _dir,
    } = proxied(98, 12).await;
    proxy.replace_in_server_lines(" INTERNALDATE \"", " INTERNALDATE (\"");
    proxy.replace_in_server_lines(" BODY[] {", " INTERNALDATE (BODY[] {");
    pass_holding(&ctx, &proxy, &d, 0, 12, "not fetched yet").await;
    let logins = proxy.accepted();
    assert!(logins <= 14, "{logins} connections for one pass");
    pass_taking_held(&ctx, &d, 12, &msgs).await;
}

/// An answer with the message sizes that cannot be read does not stop the folder either:
/// the connection is replaced and the mail is fetched without sizes, the limit checked on
/// the bytes that arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_size_answer_is_done_without() {
    let Proxied {
        d,
        proxy,
        msgs,
        ctx,
        _dir,
    } = proxied(96, 3).await;
    proxy.replace_in_server_lines("UID 2 RFC822.SIZE ", "UID 2 RFC822.SIZE (");
    let s = ingest_once(&ctx, &[through(&proxy, &d, "user")])
        .await
        .unwrap();
    assert_eq!((s.stored, s.failed, s.errors), (3, 0, 0), "{s:?}");
    assert_consistent(&s);
    assert_stored_and_moved(&d, &ctx.store, &msgs).await;
}

/// A body FETCH that comes back without a message still in the folder (Gmail: "Some
/// messages could not be FETCHed", with a NO async-imap does not report): it is asked for
/// once more, then held and reported as failed, never passed by the checkpoint as stored;
/// a later connection that gets it stores it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_server_does_not_return_is_held_and_reported() {
    let Proxied {
        d,
        proxy,
        msgs,
        ctx,
        _dir,
    } = proxied(97, 3).await;
    // Without its UID the answer for message 2 is not taken for it.
    proxy.replace_in_server_lines("FETCH (UID 2 INTERNALDATE", "FETCH (INTERNALDATE");
    pass_holding(&ctx, &proxy, &d, 2, 1, "did not return").await;
    pass_taking_held(&ctx, &d, 1, &msgs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dovecot_restarted_mid_batch_loses_and_doubles_nothing() {
    let mut d = Dovecot::start_plain().unwrap();
    let msgs = synth(5, 3000);
    deliver_all(&d, "user", &msgs);
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 100).await;
    let m = mailbox(&d, "user");
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(ctx.clone(), vec![m], shutdown.clone()));
    // Restart while the ingest is under way (some, not all, stored).
    let start = Instant::now();
    loop {
        let n = ctx.store.stats().await.unwrap().messages;
        if n > 0 {
            assert!(
                n < 3000,
                "ingest finished before the restart; make it bigger"
            );
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(60), "nothing stored");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    d.restart().unwrap();
    let before = ctx.store.stats().await.unwrap().messages;
    wait_for_messages(&ctx.store, 3000, Duration::from_secs(120)).await;
    // Give a doubled fetch a chance to show before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    shutdown.cancel();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(
        before < 3000,
        "the restart happened mid-ingest ({before} stored)"
    );
    assert_stored_and_moved(&d, &ctx.store, &msgs).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uidvalidity_reset_rescans_without_duplicates() {
    let d = Dovecot::start_plain().unwrap();
    let msgs = synth(6, 60);
    deliver_all(&d, "user", &msgs[..50]);
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 20).await;
    let mut m = mailbox(&d, "user");
    m.after = AfterIngest::Keep;
    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!(s.stored, 50);

    let old = d.uidvalidity("user", "INBOX").unwrap();
    d.set_uidvalidity("user", "INBOX", old + 1000).unwrap();
    deliver_all(&d, "user", &msgs[50..]);
    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert!(s.folders[0].rescanned, "{:?}", s.folders);
    assert_eq!(s.fetched, 60, "everything is read again");
    assert_eq!((s.stored, s.duplicates), (10, 50));
    assert_consistent(&s);
    assert_exactly_once(&ctx.store, &msgs).await;
    let cp = ctx
        .store
        .checkpoint("imap:test/INBOX")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cp.uidvalidity, Some(i64::from(old + 1000)));
}

/// A rescan after a UIDVALIDITY change that was cut short resumes with its Message-ID
/// guard: mail the server handed back rewritten (so its content hash changed) is still
/// recognised. The guard's end is kept in the checkpoint (`75/rescan:100`); before, the
/// first committed batch wrote the new UIDVALIDITY and the guard was gone for the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rescan_keeps_its_message_id_guard() {
    let d = Dovecot::start_plain().unwrap();
    let msgs = synth(12, 50);
    deliver_all(&d, "user", &msgs);
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 10).await;
    let mut m = mailbox(&d, "user");
    m.after = AfterIngest::Keep;
    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!(s.stored, 50);

    // The server migrated the folder: new UIDVALIDITY, every message rewritten.
    d.doveadm(&["expunge", "-u", "user", "mailbox", "INBOX", "all"])
        .unwrap();
    for msg in &msgs {
        let text = String::from_utf8_lossy(&msg.raw).replacen("Subject: ", "Subject: [ext] ", 1);
        d.deliver("user", "INBOX", text.as_bytes()).unwrap();
    }
    let old = d.uidvalidity("user", "INBOX").unwrap();
    d.set_uidvalidity("user", "INBOX", old + 1000).unwrap();
    // A rescan that stored through UID 75 of 51..100 and was then cut off.
    set_checkpoint(&ctx, old + 1000, "75/rescan:100").await;

    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!(
        (s.fetched, s.stored, s.duplicates),
        (25, 0, 25),
        "the rest of the rescan recognises the rewritten mail: {s:?}"
    );
    assert_eq!(ctx.store.stats().await.unwrap().messages, 50);
    let cp = ctx
        .store
        .checkpoint("imap:test/INBOX")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(cp.position, "100", "the rescan is over");
}

/// A server whose next UID falls below the checkpoint under the same UIDVALIDITY (a
/// mailbox restored from a backup) has reused UIDs: the folder is read again, new mail
/// is stored and what was stored before counts as a duplicate. Before, the pass saw
/// "nothing new" for good, and recovery moved or deleted the new mail unread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reused_uids_under_the_same_uidvalidity_are_read_again() {
    let d = Dovecot::start_plain().unwrap();
    let msgs = synth(81, 3);
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 10).await;
    let m = mailbox(&d, "user");
    d.deliver("user", "INBOX", &msgs[0].raw).unwrap();
    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!(s.stored, 1, "{s:?}");

    // The mailbox comes back from an old backup: the stored message is there again, two
    // new ones arrive, all under UIDs at or below the checkpoint.
    let uv = d.uidvalidity("user", "INBOX").unwrap();
    set_checkpoint(&ctx, uv, "500").await;
    for msg in &msgs {
        d.deliver("user", "INBOX", &msg.raw).unwrap();
    }

    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!((s.stored, s.duplicates, s.errors), (2, 1, 0), "{s:?}");
    assert!(s.folders[0].rescanned, "{s:?}");
    assert_exactly_once(&ctx.store, &msgs).await;
    assert_eq!(d.count("user", "INBOX"), 0);
    // The first message twice: its first copy, and the one the backup brought back.
    assert_eq!(d.count("user", "quietdesk/processed"), 4);
}

/// Sets the arrival time (INTERNALDATE) of the mail in the user's INBOX `new/`: Maildir
/// keeps it as the file's modification time.
fn backdate_new_mail(d: &Dovecot, arrived: chrono::DateTime<chrono::Utc>) {
    let new_dir = d.folder_dir("user", "INBOX").join("new");
    for entry in std::fs::read_dir(&new_dir).unwrap() {
        let file = std::fs::File::options()
            .write(true)
            .open(entry.unwrap().path())
            .unwrap();
        file.set_modified(std::time::SystemTime::from(arrived))
            .unwrap();
    }
}

/// A hook that acknowledges what the live pipeline would: it counts the stored messages
/// it is offered to answer.
#[derive(Default)]
struct CountAcks(std::sync::atomic::AtomicUsize);

impl qd_ingest::imap::AfterStore for CountAcks {
    fn runs_before_store(&self) -> bool {
        false
    }

    fn ack_limit(&self) -> Option<u32> {
        Some(100)
    }

    fn plan_acks(
        &self,
        outcome: &qd_store::BatchOutcome,
        _messages: &[qd_store::NewMessage],
        arrived: &[qd_ingest::imap::Arrived],
    ) -> Vec<(qd_store::NewOutboxEntry, String)> {
        let answerable = outcome
            .stored
            .iter()
            .filter(|s| arrived.get(s.index).is_some_and(|a| !a.reread_old))
            .count();
        self.0
            .fetch_add(answerable, std::sync::atomic::Ordering::SeqCst);
        Vec::new()
    }

    fn after_store<'a>(
        &'a self,
        _batch: qd_ingest::imap::StoredBatch<'a>,
    ) -> futures::future::BoxFuture<'a, Result<(), qd_ingest::imap::HookError>> {
        Box::pin(async { Ok(()) })
    }
}

/// A rescan after a UIDVALIDITY change reads old mail again that the store never held
/// (the database was restored from a backup older than the mail; the server kept it): it
/// is stored but not acknowledged, since its sender was most likely answered long ago.
/// Mail that came in the last day is still answered: it may have arrived between the
/// last pass and the server's change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescan_does_not_acknowledge_old_mail_again() {
    let d = Dovecot::start_plain().unwrap();
    let msgs = synth(83, 2);
    d.deliver("user", "INBOX", &msgs[0].raw).unwrap();
    backdate_new_mail(&d, chrono::Utc::now() - chrono::TimeDelta::days(3));
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = ctx(dir.path(), 10).await;
    let acks = Arc::new(CountAcks::default());
    ctx.hook = Some(acks.clone());
    let mut m = mailbox(&d, "user");
    m.after = AfterIngest::Keep;
    // The restored database's checkpoint covers the old mail it does not hold.
    let uv = d.uidvalidity("user", "INBOX").unwrap();
    set_checkpoint(&ctx, uv, "1").await;
    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!(s.fetched, 0, "{s:?}");
    // A new message comes, then the server changes UIDVALIDITY.
    d.deliver("user", "INBOX", &msgs[1].raw).unwrap();
    d.set_uidvalidity("user", "INBOX", uv + 1000).unwrap();

    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert!(s.folders[0].rescanned, "{s:?}");
    assert_eq!(s.stored, 2, "{s:?}");
    let count = acks.0.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(count, 1, "only the mail of the last day is answered");
}

/// Mail the store deleted (retention here; erasure and quarantine expiry go the same way)
/// stays deleted when a rescan after a UIDVALIDITY change finds it still on a server that
/// keeps its mail: the rescan's Message-ID guard knows it as forgotten. Before, it was
/// stored again as new.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rescan_does_not_bring_deleted_mail_back() {
    let d = Dovecot::start_plain().unwrap();
    let msgs = synth(84, 3);
    deliver_all(&d, "user", &msgs);
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 10).await;
    let mut m = mailbox(&d, "user");
    m.after = AfterIngest::Keep;
    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!(s.stored, 3, "{s:?}");
    let id = |i: usize| {
        msgs[i]
            .message_id
            .trim_matches(|c| c == '<' || c == '>')
            .to_string()
    };
    let expired = ctx
        .store
        .ticket_of_message_id(&id(0))
        .await
        .unwrap()
        .unwrap();
    let counts = ctx
        .store
        .delete_tickets(&[expired], chrono::Utc::now())
        .await
        .unwrap();
    let remaining = ctx.store.stats().await.unwrap().messages;
    assert_eq!(remaining, 3 - counts.messages, "{counts:?}");
    let uv = d.uidvalidity("user", "INBOX").unwrap();
    d.set_uidvalidity("user", "INBOX", uv + 1000).unwrap();

    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert!(s.folders[0].rescanned, "{s:?}");
    assert_eq!(s.fetched, 3, "{s:?}");
    assert_eq!(s.stored, 0, "nothing comes back: {s:?}");
    assert_eq!(s.forgotten, counts.messages, "{s:?}");
    assert_consistent(&s);
    assert_eq!(ctx.store.stats().await.unwrap().messages, remaining);
    assert_eq!(ctx.store.ticket_of_message_id(&id(0)).await.unwrap(), None);
}

/// A hook whose acknowledgement plan breaks the outbox's unique index for messages whose
/// subject says "poison": a message the database refuses, as a value it cannot store
/// would make it.
struct PoisonAcks(std::sync::atomic::AtomicBool);

impl PoisonAcks {
    fn on() -> PoisonAcks {
        PoisonAcks(std::sync::atomic::AtomicBool::new(true))
    }

    /// The trouble passes: "poison" is stored like any other mail from now on.
    fn cure(&self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

impl qd_ingest::imap::AfterStore for PoisonAcks {
    fn runs_before_store(&self) -> bool {
        false
    }

    fn ack_limit(&self) -> Option<u32> {
        Some(100)
    }

    fn plan_acks(
        &self,
        outcome: &qd_store::BatchOutcome,
        messages: &[qd_store::NewMessage],
        _arrived: &[qd_ingest::imap::Arrived],
    ) -> Vec<(qd_store::NewOutboxEntry, String)> {
        let entry = |n: u8| qd_store::NewOutboxEntry {
            kind: qd_store::OutboxKind::Ack,
            ticket_id: None,
            message_id: "twice@quietdesk.example".into(),
            in_reply_to: None,
            references: vec![],
            mail_from: "support@quietdesk.example".into(),
            rcpt_to: vec!["x@example.org".into()],
            subject: format!("ack {n}"),
            language: None,
            raw: vec![n],
        };
        let poisoned = self.0.load(std::sync::atomic::Ordering::SeqCst)
            && outcome
                .stored
                .iter()
                .any(|s| messages[s.index].subject.contains("poison"));
        if poisoned {
            vec![(entry(1), "h1".into()), (entry(2), "h2".into())]
        } else {
            Vec::new()
        }
    }

    fn after_store<'a>(
        &'a self,
        _batch: qd_ingest::imap::StoredBatch<'a>,
    ) -> futures::future::BoxFuture<'a, Result<(), qd_ingest::imap::HookError>> {
        Box::pin(async { Ok(()) })
    }
}

/// One message the database refuses does not hold back its batch, nor the folder: the
/// batch is stored a message at a time, the refused one is held on the server (and left
/// there by every later pass), the rest are stored and moved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_the_store_refuses_blocks_nothing() {
    let d = Dovecot::start_plain().unwrap();
    let msgs = synth(13, 6);
    deliver_all(&d, "user", &msgs[..3]);
    let poison = "From: Pat <pat@example.org>\r\nTo: support@example.com\r\nSubject: poison\r\n\
                  Message-ID: <poison@example.org>\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n\r\nx\r\n";
    d.deliver("user", "INBOX", poison.as_bytes()).unwrap();
    deliver_all(&d, "user", &msgs[3..]);
    let dir = tempfile::tempdir().unwrap();
    let mut ctx = ctx(dir.path(), 100).await;
    ctx.hook = Some(Arc::new(PoisonAcks::on()));
    let m = mailbox(&d, "user");
    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!(s.errors, 0, "{:?}", s.folders);
    assert_eq!((s.fetched, s.stored, s.failed), (7, 6, 1), "{s:?}");
    assert_consistent(&s);
    assert!(
        s.failures[0].position.ends_with("uid 4"),
        "{:?}",
        s.failures
    );
    assert_exactly_once(&ctx.store, &msgs).await;
    assert_eq!(d.count("user", "INBOX"), 1, "the refused message stays");
    assert_eq!(d.count("user", "quietdesk/processed"), 6);

    // The next connection tries it again (the trouble might have passed); refused
    // again, it stays, and nothing else is touched.
    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!(
        (s.fetched, s.stored, s.failed, s.errors),
        (1, 0, 1, 0),
        "{s:?}"
    );
    assert_eq!(d.count("user", "INBOX"), 1, "and not moved by recovery");
    assert_eq!(ctx.store.stats().await.unwrap().held_on_server, 1);
}

/// On a connection that stays up, held mail is tried again every `held_retry_secs`: a
/// message the database refused is stored once the trouble has passed, with no
/// reconnect.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_mail_is_retried_on_a_connection_that_stays_up() {
    let Proxied {
        d,
        proxy,
        msgs: _,
        mut ctx,
        _dir,
    } = proxied(14, 2).await;
    let poison = "From: Pat <pat@example.org>\r\nTo: support@example.com\r\nSubject: poison\r\n\
                  Message-ID: <poison2@example.org>\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\n\r\nx\r\n";
    d.deliver("user", "INBOX", poison.as_bytes()).unwrap();
    let hook = Arc::new(PoisonAcks::on());
    ctx.hook = Some(hook.clone());
    let mut m = through(&proxy, &d, "user");
    m.stall_timeout_secs = 2; // IDLE is renewed at least this often
    m.held_retry_secs = 1;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(ctx.clone(), vec![m], shutdown.clone()));
    wait_for_messages(&ctx.store, 2, Duration::from_secs(20)).await;
    let start = Instant::now();
    while ctx.store.stats().await.unwrap().held_on_server == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "poison never held"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    hook.cure();
    wait_for_messages(&ctx.store, 3, Duration::from_secs(20)).await;
    stop(&shutdown, task).await;
    assert_eq!(proxy.accepted(), 1, "one connection throughout");
    assert_eq!(ctx.store.stats().await.unwrap().held_on_server, 0);
    assert!(ctx
        .store
        .ticket_of_message_id("poison2@example.org")
        .await
        .unwrap()
        .is_some());
    assert_eq!(d.count("user", "INBOX"), 0, "and moved like the rest");
}

/// A server that takes the login and the sync but never starts IDLE is reconnected to
/// with growing delays, not once a second: the backoff starts over only after a whole
/// IDLE cycle went well. Here Dovecot's `+ idling` never reaches us, so each IDLE times
/// out after the 1 s stall timeout. With delays of 0.5-1, 1-2, 2-4 and 4-8 s after each
/// failure, at most 4 connections open within 10 s; a backoff reset by every successful
/// sync (0.5-1 s each time) opens 5 or more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_idles_is_not_hammered() {
    let Proxied {
        d,
        proxy,
        msgs,
        ctx,
        _dir,
    } = proxied(15, 2).await;
    proxy.drop_server_lines("+ idling");
    let mut m = through(&proxy, &d, "user");
    m.stall_timeout_secs = 1;
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(run(ctx.clone(), vec![m], shutdown.clone()));
    tokio::time::sleep(Duration::from_secs(10)).await;
    stop(&shutdown, task).await;
    let connections = proxy.accepted();
    assert!(
        (2..=4).contains(&connections),
        "{connections} connections in 10 s"
    );
    // Each connection's sync still worked: the mail is in.
    assert_exactly_once(&ctx.store, &msgs).await;
}

/// Mail refused for its size is taken once the limit is raised: the next connection
/// tries held mail again, stores what now fits, moves it, and releases it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raising_the_size_limit_takes_the_refused_mail() {
    let d = Dovecot::start_plain().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ctx, mut m) = one_too_large_between_two(&d, dir.path(), "grown@example.org").await;
    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!((s.stored, s.failed), (2, 1), "{s:?}");
    assert_eq!(d.count("user", "INBOX"), 1);

    m.max_message_bytes = Some(4 * 1024 * 1024);
    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!(
        (s.fetched, s.stored, s.failed, s.errors),
        (1, 1, 0, 0),
        "{s:?}"
    );
    assert!(ctx
        .store
        .ticket_of_message_id("grown@example.org")
        .await
        .unwrap()
        .is_some());
    assert_eq!(d.count("user", "INBOX"), 0, "moved like the rest");
    assert_eq!(d.count("user", "quietdesk/processed"), 3);
    assert_eq!(ctx.store.stats().await.unwrap().held_on_server, 0);
}

/// Held mail a user deleted on the server is let go: the next connection finds it gone,
/// stops holding it, and neither fetches nor fails anything for it again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn held_mail_deleted_on_the_server_is_let_go() {
    let d = Dovecot::start_plain().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ctx, m) = one_too_large_between_two(&d, dir.path(), "gone@example.org").await;
    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!((s.stored, s.failed), (2, 1), "{s:?}");
    assert_eq!(ctx.store.stats().await.unwrap().held_on_server, 1);

    d.doveadm(&["expunge", "-u", "user", "mailbox", "INBOX", "all"])
        .unwrap();
    assert_eq!(d.count("user", "INBOX"), 0);
    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!(
        (s.fetched, s.stored, s.failed, s.errors),
        (0, 0, 0, 0),
        "{s:?}"
    );
    assert_eq!(ctx.store.stats().await.unwrap().held_on_server, 0);
    assert!(ctx
        .store
        .ticket_of_message_id("gone@example.org")
        .await
        .unwrap()
        .is_none());
    assert_eq!(d.count("user", "quietdesk/processed"), 2);
}

/// On a server without UID EXPUNGE (UIDPLUS), deleting ingested mail never expunges a
/// message that was not stored: here a refused one a user's client marked \Deleted.
/// The stored ones stay marked, and no later run moves or copies them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_uidplus_nothing_unstored_is_expunged() {
    let d = Dovecot::start_with(
        &[("user", "pass")],
        DovecotTls::Off,
        "imap_capability = IMAP4rev1 LITERAL+ SASL-IR ID ENABLE IDLE NAMESPACE\n",
    )
    .unwrap();
    let msgs = synth(9, 2);
    deliver_all(&d, "user", &msgs);
    d.deliver("user", "INBOX", &big_message(2, "refused@example.org"))
        .unwrap();
    // A user's client marks the refused message (UID 3) deleted, and later unmarks it.
    let deleted_flag = |op: &str| {
        d.doveadm(&[
            "flags",
            op,
            "-u",
            "user",
            "\\Deleted",
            "mailbox",
            "INBOX",
            "uid",
            "3",
        ])
        .unwrap();
    };
    deleted_flag("add");
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 100).await;
    let mut m = mailbox(&d, "user");
    m.after = AfterIngest::Delete;
    m.max_message_bytes = Some(1024 * 1024);
    for _ in 0..2 {
        let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
        assert_eq!(s.errors, 0, "{:?}", s.folders);
    }
    assert_exactly_once(&ctx.store, &msgs).await;
    assert_eq!(d.count("user", "INBOX"), 3, "nothing expunged");
    assert_eq!(
        d.count_with_flag("user", "INBOX", 'T'),
        3,
        "all marked deleted"
    );
    // The user takes the refused message back: the next run's recovery expunges the
    // stored ones, and only those.
    deleted_flag("remove");
    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!(s.errors, 0, "{:?}", s.folders);
    assert_eq!(d.count("user", "INBOX"), 1, "the stored ones expunged");
    assert_eq!(d.count_with_flag("user", "INBOX", 'T'), 0);
    assert_exactly_once(&ctx.store, &msgs).await;
}

/// A message of about `mib` MiB: a text body, so it is stored as it is.
fn big_message(mib: usize, id: &str) -> Vec<u8> {
    let mut raw = format!(
        "From: Big Sender <big@example.org>\r\nTo: support@example.com\r\nSubject: large log file\r\n\
         Message-ID: <{id}>\r\nDate: Mon, 01 Jan 2024 10:00:00 +0000\r\nContent-Type: text/plain\r\n\r\n"
    )
    .into_bytes();
    let line =
        b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 log\r\n";
    while raw.len() < mib * 1024 * 1024 {
        raw.extend_from_slice(line);
    }
    raw
}

/// Live mail is received when the server received it (its INTERNALDATE), whatever its
/// Date says: retention and quarantine age it from there. Before, a forwarded old mail,
/// a wrong clock or spam dated last year started its retention clock at its Date.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_mail_ages_from_when_the_server_received_it() {
    let d = Dovecot::start_plain().unwrap();
    let raw = b"From: Old Clock <old@example.org>\r\nTo: support@example.com\r\n\
        Subject: still broken\r\nMessage-ID: <old-clock@example.org>\r\n\
        Date: Mon, 01 Jan 2024 10:00:00 +0000\r\n\r\nhello\r\n";
    d.deliver("user", "INBOX", raw).unwrap();
    let arrived = chrono::Utc::now() - chrono::TimeDelta::days(3);
    backdate_new_mail(&d, arrived);
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 100).await;
    let s = ingest_once(&ctx, &[mailbox(&d, "user")]).await.unwrap();
    assert_eq!(s.stored, 1, "{s:?}");
    let stored = ctx
        .store
        .find_message("old-clock@example.org")
        .await
        .unwrap()
        .unwrap();
    let off = (stored.received_at - arrived).num_seconds().abs();
    assert!(
        off <= 1,
        "received {} for an arrival at {arrived}",
        stored.received_at
    );
}

/// A big message over a slow link is not taken for a stall: its body may take the stall
/// timeout plus its size at 128 KiB/s. Here 1 MiB arrives at 400 KiB/s (2.5 s) under a
/// 1 s stall timeout; waiting only the stall timeout for it, every attempt failed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_big_message_over_a_slow_link_is_no_stall() {
    let d = Dovecot::start_plain().unwrap();
    let proxy = qd_testkit::StallProxy::start(d.port()).unwrap();
    proxy.throttle_server(400 * 1024);
    d.deliver("user", "INBOX", &big_message(1, "slow@example.org"))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 10).await;
    let mut m = through(&proxy, &d, "user");
    m.stall_timeout_secs = 1;
    m.max_message_bytes = Some(4 * 1024 * 1024);
    let started = Instant::now();
    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!((s.stored, s.failed, s.errors), (1, 0, 0), "{s:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "the link was not slow: {:?}",
        started.elapsed()
    );
    assert!(ctx
        .store
        .ticket_of_message_id("slow@example.org")
        .await
        .unwrap()
        .is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_30_mb_message_is_refused_over_the_limit_and_stored_under_it() {
    let d = Dovecot::start(&[("small", "p1"), ("large", "p2")], DovecotTls::Off).unwrap();
    let big = big_message(30, "big@example.org");
    let msgs = synth(7, 4);
    for user in ["small", "large"] {
        d.deliver(user, "INBOX", &msgs[0].raw).unwrap();
        d.deliver(user, "INBOX", &big).unwrap();
        d.deliver(user, "INBOX", &msgs[1].raw).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 100).await;

    let mut small = mailbox(&d, "small");
    small.name = "small".into();
    small.max_message_bytes = Some(10 * 1024 * 1024);
    let s = ingest_once(&ctx, std::slice::from_ref(&small))
        .await
        .unwrap();
    assert_eq!((s.fetched, s.stored, s.failed), (3, 2, 1), "{s:?}");
    assert_consistent(&s);
    let reason = &s.failures[0].reason;
    assert!(reason.contains("exceeds the limit"), "{reason}");
    assert!(
        s.failures[0].position.ends_with("uid 2"),
        "{:?}",
        s.failures[0]
    );
    assert_eq!(
        d.count("small", "INBOX"),
        1,
        "the refused message stays for staff"
    );
    // Not retried, not moved by a later pass.
    let s = ingest_once(&ctx, std::slice::from_ref(&small))
        .await
        .unwrap();
    assert_eq!(s.fetched, 0);
    assert_eq!(d.count("small", "INBOX"), 1);

    let mut large = mailbox(&d, "large");
    large.name = "large".into();
    large.max_message_bytes = Some(50 * 1024 * 1024);
    let s = ingest_once(&ctx, std::slice::from_ref(&large))
        .await
        .unwrap();
    assert_eq!(
        (s.fetched, s.stored, s.duplicates, s.failed),
        (3, 1, 2, 0),
        "{s:?}"
    );
    let ticket = ctx
        .store
        .ticket_of_message_id("big@example.org")
        .await
        .unwrap();
    assert!(ticket.is_some(), "the 30 MB message is stored");
}

/// Two small messages around a 2 MiB one (UID 2, Message-ID `big_id`), and a mailbox
/// whose limit is 1 MiB.
async fn one_too_large_between_two(
    d: &Dovecot,
    dir: &std::path::Path,
    big_id: &str,
) -> (IngestContext, MailboxConfig) {
    let msgs = synth(11, 2);
    d.deliver("user", "INBOX", &msgs[0].raw).unwrap();
    d.deliver("user", "INBOX", &big_message(2, big_id)).unwrap();
    d.deliver("user", "INBOX", &msgs[1].raw).unwrap();
    let mut m = mailbox(d, "user");
    m.max_message_bytes = Some(1024 * 1024);
    (ctx(dir, 10).await, m)
}

/// The pass that re-applies the after-ingest action after a crash acts only on mail the
/// store took: a refused message stays even when its IMAP keyword is missing (the run
/// stopped before setting it, or the server keeps no keywords). Before, recovery moved
/// or deleted everything at or below the checkpoint without that keyword.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recovery_never_deletes_mail_that_was_not_stored() {
    let d = Dovecot::start_plain().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (ctx, mut m) = one_too_large_between_two(&d, dir.path(), "held@example.org").await;
    m.after = AfterIngest::Keep;
    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!((s.fetched, s.stored, s.failed), (3, 2, 1), "{s:?}");
    assert_eq!(d.count("user", "INBOX"), 3);
    let uv = i64::from(d.uidvalidity("user", "INBOX").unwrap());
    let held = ctx.store.held_uids("imap:test/INBOX", uv).await.unwrap();
    assert_eq!(
        held,
        [2].into_iter().collect(),
        "the refused UID is recorded"
    );
    assert_eq!(ctx.store.stats().await.unwrap().held_on_server, 1);

    // The keyword is gone, as after a run that stopped before it could set it.
    d.doveadm(&[
        "flags",
        "remove",
        "-u",
        "user",
        "$QuietdeskRefused",
        "mailbox",
        "INBOX",
        "all",
    ])
    .unwrap();
    m.after = AfterIngest::Delete;
    let s = ingest_once(&ctx, std::slice::from_ref(&m)).await.unwrap();
    assert_eq!((s.fetched, s.errors), (0, 0), "{s:?}");
    assert_eq!(
        d.count("user", "INBOX"),
        1,
        "the two stored messages are deleted, the refused one stays"
    );
    assert!(ctx
        .store
        .ticket_of_message_id("held@example.org")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_mail_is_stored_with_defects_and_blocks_nothing() {
    let d = Dovecot::start_plain().unwrap();
    let msgs = synth(8, 6);
    deliver_all(&d, "user", &msgs[..3]);
    // No header block, NULs and invalid UTF-8, a broken MIME structure.
    d.deliver(
        "user",
        "INBOX",
        b"\x00\x01garbage \xff\xfe without any headers\r\n\r\n\x00",
    )
    .unwrap();
    d.deliver(
        "user",
        "INBOX",
        b"From: x@example.org\r\nSubject: =?bogus?Q?broken?=\r\nContent-Type: multipart/mixed; boundary=\"nope\"\r\nDate: not a date\r\n\r\n--nope\r\nContent-Type: text/plain; charset=x-unknown\r\n\r\nunterminated",
    )
    .unwrap();
    deliver_all(&d, "user", &msgs[3..]);
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 100).await;
    let s = ingest_once(&ctx, &[mailbox(&d, "user")]).await.unwrap();
    assert_eq!((s.fetched, s.stored, s.failed), (8, 8, 0), "{s:?}");
    assert!(
        s.defective >= 2,
        "both broken messages carry defects: {s:?}"
    );
    assert_eq!(d.count("user", "INBOX"), 0);
    assert_eq!(ctx.store.stats().await.unwrap().messages, 8);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_implicit_and_starttls_with_a_test_ca_and_plain_auth() {
    let d = Dovecot::start(&[("user", "secret-pw")], DovecotTls::On).unwrap();
    deliver_all(&d, "user", &synth(9, 5));
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 100).await;

    let mut implicit = mailbox(&d, "user");
    implicit.name = "imaps".into();
    implicit.host = "localhost".into();
    implicit.port = d.imaps_port();
    implicit.tls = Tls::Implicit;
    implicit.ca_file = Some(d.ca_file());
    implicit.after = AfterIngest::Keep;
    let s = ingest_once(&ctx, std::slice::from_ref(&implicit))
        .await
        .unwrap();
    assert_eq!((s.errors, s.stored), (0, 5), "{:?}", s.folders);

    let mut starttls = implicit.clone();
    starttls.name = "starttls".into();
    starttls.port = Some(d.port());
    starttls.tls = Tls::StartTls;
    starttls.auth = Auth::Plain;
    let s = ingest_once(&ctx, std::slice::from_ref(&starttls))
        .await
        .unwrap();
    assert_eq!(
        (s.errors, s.fetched, s.duplicates),
        (0, 5, 5),
        "{:?}",
        s.folders
    );

    // Without the test CA the certificate is not trusted.
    let mut untrusted = implicit.clone();
    untrusted.name = "untrusted".into();
    untrusted.ca_file = None;
    let s = ingest_once(&ctx, &[untrusted]).await.unwrap();
    let err = s.folders[0].error.clone().unwrap_or_default();
    assert!(err.contains("TLS failed"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_a_clear_error() {
    let d = Dovecot::start_plain().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 100).await;
    for auth in [Auth::Login, Auth::Plain] {
        let mut m = mailbox(&d, "user");
        m.secret = Secret::Password("wrong".into());
        m.auth = auth;
        let s = ingest_once(&ctx, &[m]).await.unwrap();
        assert_eq!(s.errors, 1);
        let err = s.folders[0].error.clone().unwrap();
        assert!(err.contains("authentication failed for user user"), "{err}");
    }
}

/// XOAUTH2 (Microsoft 365, Google) against a Dovecot that checks bearer tokens with an
/// OAuth2 introspection endpoint: the token comes from a file or from a command's output,
/// and an expired token is a clear authentication error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xoauth2_with_a_token_from_a_file_or_a_command() {
    let token = "ya29.test-token-0123456789";
    let d = Dovecot::start_with_xoauth2(token).unwrap();
    deliver_all(&d, "user", &synth(43, 3));
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx(dir.path(), 100).await;
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();

    let mut from_file = mailbox(&d, "user");
    from_file.name = "oauth-file".into();
    from_file.auth = Auth::XOauth2;
    from_file.secret = Secret::File(token_file.clone());
    from_file.after = AfterIngest::Keep;
    let s = ingest_once(&ctx, std::slice::from_ref(&from_file))
        .await
        .unwrap();
    assert_eq!((s.errors, s.stored), (0, 3), "{:?}", s.folders);

    let mut from_command = from_file.clone();
    from_command.name = "oauth-command".into();
    from_command.secret =
        Secret::Command(vec!["cat".into(), token_file.to_str().unwrap().to_string()]);
    let s = ingest_once(&ctx, &[from_command]).await.unwrap();
    assert_eq!(
        (s.errors, s.fetched, s.duplicates),
        (0, 3, 3),
        "{:?}",
        s.folders
    );

    let mut expired = from_file.clone();
    expired.name = "oauth-expired".into();
    expired.secret = Secret::Password("ya29.expired".into());
    let s = ingest_once(&ctx, &[expired]).await.unwrap();
    assert_eq!(s.errors, 1);
    let err = s.folders[0].error.clone().unwrap();
    assert!(err.contains("authentication failed for user user"), "{err}");
}
