//! Delivery outcomes against a real SMTP server that is down, refuses, or defers.

use std::collections::HashSet;
use std::time::Duration;

use chrono::TimeDelta;
use qd_mail::outgoing::{build, new_message_id, Mailbox, Outgoing, OutgoingKind};
use qd_outbound::Worker;
use qd_store::{NewOutboxEntry, OutboxKind, OutboxStatus, Store};
use qd_testkit::{SinkMode, SmtpSink};

use crate::{smtp_settings, t0, Backend, OUR_DOMAIN, SUPPORT};

/// Enqueues a staff reply to `to` (no ticket) and returns its outbox id.
pub async fn enqueue_reply(store: &Store, to: &str, ticket_id: Option<i64>) -> (i64, String) {
    enqueue_reply_to(store, &[to], ticket_id).await
}

/// [`enqueue_reply`] to several recipients.
pub async fn enqueue_reply_to(store: &Store, to: &[&str], ticket_id: Option<i64>) -> (i64, String) {
    let msg = build(&Outgoing {
        kind: OutgoingKind::Reply,
        from: Mailbox::new(SUPPORT),
        to: to.iter().map(|a| Mailbox::new(*a)).collect(),
        subject: "Re: your question [#QD-1]".into(),
        body: "Here is the answer.\n".into(),
        language: Some("en".into()),
        in_reply_to: Some("q1@customer.example".into()),
        references: vec!["q1@customer.example".into()],
        message_id: new_message_id(OUR_DOMAIN, t0()),
        date: t0(),
        envelope_from: Some(SUPPORT.into()),
    })
    .unwrap();
    let entry = NewOutboxEntry {
        kind: OutboxKind::Reply,
        ticket_id,
        message_id: msg.message_id.clone(),
        in_reply_to: msg.in_reply_to.clone(),
        references: msg.references.clone(),
        mail_from: SUPPORT.into(),
        rcpt_to: msg.to.clone(),
        subject: msg.subject.clone(),
        language: msg.language.clone(),
        raw: msg.raw.clone(),
    };
    (
        store.outbox_enqueue(&entry, t0()).await.unwrap(),
        msg.message_id,
    )
}

/// Server down: the entry is deferred with backoff, not lost; once the server is up and
/// the retry is due, it is delivered.
async fn retries_with_backoff_until_the_server_is_up(b: Backend) {
    let mut sink = SmtpSink::stopped().unwrap();
    let (id, _) = enqueue_reply(&b.store, "dave@customer.example", None).await;
    let worker = Worker::new(smtp_settings(&sink)).unwrap();

    let s = worker.drain_once(&b.store, t0()).await.unwrap();
    assert_eq!((s.claimed, s.sent, s.retried, s.failed), (1, 0, 1, 0));
    let e = b.store.outbox_get(id).await.unwrap().unwrap();
    assert_eq!(e.status, OutboxStatus::Queued);
    assert_eq!(e.attempts, 1);
    assert!(e.last_error.is_some());
    // First retry after backoff_base (60 s) ± 20% jitter.
    let wait = e.next_attempt_at - t0();
    assert!(
        wait >= TimeDelta::seconds(48) && wait <= TimeDelta::seconds(72),
        "{wait:?}"
    );
    // Not due yet: nothing is claimed.
    let s = worker
        .drain_once(&b.store, t0() + TimeDelta::seconds(30))
        .await
        .unwrap();
    assert_eq!(s.claimed, 0);

    // Second failure doubles the delay.
    let t1 = t0() + TimeDelta::seconds(80);
    let s = worker.drain_once(&b.store, t1).await.unwrap();
    assert_eq!(s.retried, 1);
    let e = b.store.outbox_get(id).await.unwrap().unwrap();
    let wait = e.next_attempt_at - t1;
    assert!(
        wait >= TimeDelta::seconds(96) && wait <= TimeDelta::seconds(144),
        "{wait:?}"
    );

    sink.start_again(SinkMode::Accept).unwrap();
    let s = worker
        .drain_once(&b.store, t1 + TimeDelta::seconds(150))
        .await
        .unwrap();
    assert_eq!((s.sent, s.retried, s.failed), (1, 0, 0));
    let e = b.store.outbox_get(id).await.unwrap().unwrap();
    assert_eq!(e.status, OutboxStatus::Sent);
    assert_eq!(e.attempts, 3);
    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].mail_from, SUPPORT);
    assert_eq!(got[0].rcpt_to, vec!["dave@customer.example"]);
}
crate::both_backends!(retries_with_backoff_until_the_server_is_up);

/// A permanent 5xx fails the entry at once, with the server's answer kept.
async fn permanent_refusal_marks_failed(b: Backend) {
    let sink = SmtpSink::start_with(SinkMode::Refuse).unwrap();
    let (id, _) = enqueue_reply(&b.store, "gone@customer.example", None).await;
    let worker = Worker::new(smtp_settings(&sink)).unwrap();
    let s = worker.drain_once(&b.store, t0()).await.unwrap();
    assert_eq!((s.sent, s.retried, s.failed), (0, 0, 1));
    let e = b.store.outbox_get(id).await.unwrap().unwrap();
    assert_eq!(e.status, OutboxStatus::Failed);
    assert_eq!(e.attempts, 1);
    assert_eq!(e.failed_at, Some(t0()));
    let err = e.last_error.unwrap();
    assert!(err.contains("550"), "{err}");
    assert!(sink.messages().is_empty());
    // A failed entry is never claimed again.
    let s = worker
        .drain_once(&b.store, t0() + TimeDelta::days(1))
        .await
        .unwrap();
    assert_eq!(s.claimed, 0);
}
crate::both_backends!(permanent_refusal_marks_failed);

/// Temporary 4xx answers are retried, then given up after max_attempts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn temporary_refusals_give_up_after_max_attempts() {
    let b = crate::sqlite().await;
    let sink = SmtpSink::start_with(SinkMode::TempFail).unwrap();
    let (id, _) = enqueue_reply(&b.store, "slow@customer.example", None).await;
    let mut settings = smtp_settings(&sink);
    settings.max_attempts = 3;
    let worker = Worker::new(settings).unwrap();
    let mut now = t0();
    let mut retried = 0;
    for _ in 0..3 {
        let s = worker.drain_once(&b.store, now).await.unwrap();
        retried += s.retried;
        if s.failed == 1 {
            break;
        }
        now += TimeDelta::hours(7); // past backoff_max
    }
    assert_eq!(retried, 2);
    let e = b.store.outbox_get(id).await.unwrap().unwrap();
    assert_eq!(e.status, OutboxStatus::Failed);
    assert_eq!(e.attempts, 3);
    let err = e.last_error.unwrap();
    assert!(
        err.contains("gave up after 3 attempts") && err.contains("451"),
        "{err}"
    );
}

/// A staff reply to Gus's ticket, to Gus and `cc`. Returns its outbox id and the ticket.
async fn reply_to_gus_and(b: &Backend, cc: &str) -> (i64, i64) {
    let (_, asked) = crate::ingest(
        &b.store,
        &crate::customer_mail("gus@customer.example", "q-cc@customer.example", "Help", ""),
        t0(),
    )
    .await;
    let (id, _) = enqueue_reply_to(
        &b.store,
        &["gus@customer.example", cc],
        Some(asked.ticket_id),
    )
    .await;
    (id, asked.ticket_id)
}

/// The copies of our mail filed on a ticket.
async fn sent_copies(b: &Backend, ticket_id: i64) -> usize {
    let thread = b.store.ticket_messages(ticket_id).await.unwrap();
    thread.iter().filter(|m| m.direction == "out").count()
}

/// A staff reply to Gus and `cc` (see [`reply_to_gus_and`]), drained once at `t0` by a
/// worker on a fresh sink, which has taken it for Gus alone. Returns the sink, the
/// worker, the entry's id, the ticket and what the drain did.
async fn first_drain_to_gus_and(
    b: &Backend,
    cc: &str,
) -> (SmtpSink, Worker, i64, i64, qd_outbound::Summary) {
    let sink = SmtpSink::start().unwrap();
    let (id, ticket) = reply_to_gus_and(b, cc).await;
    let worker = Worker::new(smtp_settings(&sink)).unwrap();
    let s = worker.drain_once(&b.store, t0()).await.unwrap();
    let got = sink.messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].rcpt_to, vec!["gus@customer.example"]);
    (sink, worker, id, ticket, s)
}

/// A recipient the relay refuses for good (a mistyped Cc) does not cost the others the
/// reply: it goes to them, and the entry says who did not get it.
async fn a_refused_recipient_does_not_stop_the_others(b: Backend) {
    let (_sink, _, id, ticket, s) = first_drain_to_gus_and(&b, "refused-cc@customer.example").await;
    assert_eq!((s.sent, s.retried, s.failed), (1, 0, 0));
    let e = b.store.outbox_get(id).await.unwrap().unwrap();
    assert_eq!(e.status, OutboxStatus::Sent);
    let note = e.last_error.unwrap();
    assert!(
        note.contains("refused-cc@customer.example") && note.contains("550"),
        "{note}"
    );
    assert!(!note.contains("gus@"), "{note}");
    assert_eq!(sent_copies(&b, ticket).await, 1);
}
crate::both_backends!(a_refused_recipient_does_not_stop_the_others);

/// A recipient the relay defers (mailbox full) is tried again alone: the others have
/// the reply at once, its copy is filed on the ticket once, and the later delivery goes
/// to the deferred recipient only.
async fn a_deferred_recipient_is_tried_again_alone(b: Backend) {
    let (sink, worker, id, ticket, s) =
        first_drain_to_gus_and(&b, "deferred-cc@customer.example").await;
    assert_eq!((s.sent, s.retried, s.failed), (0, 1, 0));
    let e = b.store.outbox_get(id).await.unwrap().unwrap();
    assert_eq!(e.status, OutboxStatus::Queued);
    assert_eq!(e.rcpt_to, vec!["deferred-cc@customer.example"]);
    assert!(e.raw.is_some(), "kept for the retry");
    assert!(e.sent_message_db_id.is_some());
    let note = e.last_error.unwrap();
    assert!(
        note.contains("delivered to gus@customer.example") && note.contains("452"),
        "{note}"
    );
    assert_eq!(sent_copies(&b, ticket).await, 1, "filed when Gus got it");

    sink.take_deferred().unwrap();
    let s = worker
        .drain_once(&b.store, t0() + TimeDelta::days(1))
        .await
        .unwrap();
    assert_eq!((s.sent, s.retried, s.failed), (1, 0, 0));
    let got = sink.messages();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].rcpt_to, vec!["deferred-cc@customer.example"]);
    assert_eq!(got[1].raw, got[0].raw);
    let e = b.store.outbox_get(id).await.unwrap().unwrap();
    assert_eq!(e.status, OutboxStatus::Sent);
    assert_eq!(e.raw, None);
    assert_eq!(e.last_error, None);
    assert_eq!(sent_copies(&b, ticket).await, 1, "filed once");
}
crate::both_backends!(a_deferred_recipient_is_tried_again_alone);

/// A recipient still deferred at the last attempt is given up, but the entry is sent,
/// not failed: the others have the reply and its copy is on the ticket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recipient_deferred_to_the_last_attempt_leaves_the_entry_sent() {
    let b = crate::sqlite().await;
    let sink = SmtpSink::start().unwrap();
    let (id, ticket) = reply_to_gus_and(&b, "deferred-cc@customer.example").await;
    let mut settings = smtp_settings(&sink);
    settings.max_attempts = 2;
    let worker = Worker::new(settings).unwrap();
    worker.drain_once(&b.store, t0()).await.unwrap();
    let s = worker
        .drain_once(&b.store, t0() + TimeDelta::days(1))
        .await
        .unwrap();
    assert_eq!((s.sent, s.retried, s.failed), (1, 0, 0));
    assert_eq!(sink.messages().len(), 1, "only Gus got it");
    let e = b.store.outbox_get(id).await.unwrap().unwrap();
    assert_eq!(e.status, OutboxStatus::Sent);
    assert_eq!(e.raw, None);
    let note = e.last_error.unwrap();
    assert!(
        note.contains("gave up after 2 attempts") && note.contains("deferred-cc@customer.example"),
        "{note}"
    );
    assert_eq!(sent_copies(&b, ticket).await, 1);
}

/// Two workers claiming at the same time never get the same entry.
async fn concurrent_claims_do_not_overlap(b: Backend) {
    for i in 0..30 {
        enqueue_reply(&b.store, &format!("c{i}@customer.example"), None).await;
    }
    let lease = Duration::from_secs(300);
    let (a, c) = tokio::join!(
        b.store.outbox_claim_due(t0(), t0(), 20, lease),
        b.store.outbox_claim_due(t0(), t0(), 20, lease)
    );
    let (a, c) = (a.unwrap(), c.unwrap());
    assert_eq!(a.len() + c.len(), 30);
    let ids: HashSet<i64> = a.iter().chain(c.iter()).map(|e| e.id).collect();
    assert_eq!(ids.len(), 30, "an entry was claimed twice");
    assert!(a
        .iter()
        .chain(c.iter())
        .all(|e| e.status == OutboxStatus::Sending));
    // A claim whose lease ran out (the worker died) is claimed again.
    let t1 = t0() + TimeDelta::seconds(301);
    let again = b.store.outbox_claim_due(t1, t1, 100, lease).await.unwrap();
    assert_eq!(again.len(), 30);
    assert!(again.iter().all(|e| e.attempts == 2));
}
crate::both_backends!(concurrent_claims_do_not_overlap);

/// A worker whose lease ran out while it was sending no longer decides the entry: the
/// worker that claimed it again does. "Sent" is the exception, as it is true whoever
/// holds the entry, and the copy on the ticket is filed once.
async fn a_stale_claim_decides_nothing(b: Backend) {
    let sink = SmtpSink::start().unwrap();
    let (_, asked) = crate::ingest(
        &b.store,
        &crate::customer_mail("gus@customer.example", "q-gus@customer.example", "Help", ""),
        t0(),
    )
    .await;
    let (id, _) = enqueue_reply(&b.store, "gus@customer.example", Some(asked.ticket_id)).await;
    let lease = Duration::from_secs(60);
    let stale = b
        .store
        .outbox_claim_due(t0(), t0(), 10, lease)
        .await
        .unwrap();
    assert_eq!(stale[0].attempts, 1);
    let t1 = t0() + TimeDelta::seconds(61);
    let current = b.store.outbox_claim_due(t1, t1, 10, lease).await.unwrap();
    assert_eq!(current[0].attempts, 2, "the lease ran out: claimed again");

    // The first worker's outcomes come too late and change nothing.
    let later = t0() + TimeDelta::hours(1);
    assert!(!b
        .store
        .outbox_retry_later(id, 1, "451 try later", later)
        .await
        .unwrap());
    assert!(!b
        .store
        .outbox_mark_failed(id, 1, "550 no such user", later)
        .await
        .unwrap());
    let e = b.store.outbox_get(id).await.unwrap().unwrap();
    assert_eq!(e.status, OutboxStatus::Sending);
    assert_eq!(e.last_error, None);
    // The current holder's outcome counts.
    assert!(b
        .store
        .outbox_retry_later(id, 2, "451 try later", later)
        .await
        .unwrap());
    assert_eq!(
        b.store.outbox_get(id).await.unwrap().unwrap().status,
        OutboxStatus::Queued
    );

    // Sent by a worker, then "sent" again by one whose claim had run out: one copy.
    let worker = Worker::new(smtp_settings(&sink)).unwrap();
    assert_eq!(worker.drain_once(&b.store, later).await.unwrap().sent, 1);
    let raw = stale[0].raw.clone().unwrap();
    let mut copy = qd_ingest::new_message(
        qd_mail::parse(&raw),
        qd_store::PreparedBlob::prepare(&raw).unwrap(),
        Some("outbox".into()),
        None,
        None,
        later,
    );
    copy.direction = qd_core::Direction::Out;
    assert_eq!(
        b.store
            .outbox_mark_sent(id, later, Some(copy), None)
            .await
            .unwrap(),
        None
    );
    let thread = b.store.ticket_messages(asked.ticket_id).await.unwrap();
    assert_eq!(
        thread.iter().filter(|m| m.direction == "out").count(),
        1,
        "the sent reply is filed once"
    );
    // An entry erased meanwhile is no error for the worker that sent it.
    assert_eq!(
        b.store
            .outbox_mark_sent(id + 1000, later, None, None)
            .await
            .unwrap(),
        None
    );
}
crate::both_backends!(a_stale_claim_decides_nothing);

/// A clock that moves on by `step` each time it is read.
struct SteppingClock {
    now: std::sync::Mutex<chrono::DateTime<chrono::Utc>>,
    step: TimeDelta,
}

impl SteppingClock {
    /// From [`t0`], `step_secs` later at each read.
    fn new(step_secs: i64) -> SteppingClock {
        SteppingClock {
            now: std::sync::Mutex::new(t0()),
            step: TimeDelta::seconds(step_secs),
        }
    }
}

impl qd_core::Clock for SteppingClock {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        let mut now = self.now.lock().unwrap();
        let t = *now;
        *now = t + self.step;
        t
    }
}

/// A long drain reads the clock for each claim and outcome: an entry claimed late in
/// the drain gets a lease from when it was claimed (before, every claim of a drain was
/// stamped with its start, so a drain longer than the lease handed out claims another
/// worker could take at once), and its retry is scheduled from when it failed.
async fn a_long_drain_keeps_time(b: Backend) {
    let sink = SmtpSink::stopped().unwrap();
    let mut ids = Vec::new();
    for who in ["hal", "ida"] {
        ids.push(
            enqueue_reply(&b.store, &format!("{who}@customer.example"), None)
                .await
                .0,
        );
    }
    let mut settings = smtp_settings(&sink);
    settings.batch = 1;
    // Longer than the two clock reads between a claim and its send.
    settings.lease_secs = 1000;
    let worker = Worker::new(settings).unwrap();
    let clock = SteppingClock::new(400);
    let s = worker.drain(&b.store, &clock).await.unwrap();
    assert_eq!((s.claimed, s.retried, s.lost_claims), (2, 2, 0));
    let mut next: Vec<_> = Vec::new();
    for id in ids {
        let e = b.store.outbox_get(id).await.unwrap().unwrap();
        assert_eq!(e.status, OutboxStatus::Queued);
        next.push(e.next_attempt_at);
    }
    // Three clock reads apart (claim, the claim's check before sending, outcome):
    // 1,200 s, less the retry delay's ±12 s jitter twice.
    let apart = next[1] - next[0];
    assert!(apart >= TimeDelta::seconds(770), "{apart:?}");
}
crate::both_backends!(a_long_drain_keeps_time);

/// Gus and Alice each wrote (Message-IDs `<gus_id@…>`, `<alice_id@…>`); a staff reply
/// to Gus, with Alice in copy, waits in the outbox. Returns its id and Gus's ticket.
async fn reply_to_gus_with_alice_in_copy(
    b: &Backend,
    gus_id: &str,
    alice_id: &str,
) -> (i64, qd_store::StoredMessage) {
    let (_, asked) = crate::ingest(
        &b.store,
        &crate::customer_mail(
            "gus@customer.example",
            &format!("{gus_id}@customer.example"),
            "Help",
            "",
        ),
        t0(),
    )
    .await;
    crate::ingest(
        &b.store,
        &crate::customer_mail(
            "alice@customer.example",
            &format!("{alice_id}@customer.example"),
            "Hi",
            "",
        ),
        t0(),
    )
    .await;
    let (id, _) = enqueue_reply_to(
        &b.store,
        &["gus@customer.example", "alice@customer.example"],
        Some(asked.ticket_id),
    )
    .await;
    (id, asked)
}

/// The data protection officer, acting on a request at `t0`.
fn dpo() -> qd_store::Actor<'static> {
    qd_store::Actor {
        name: "dpo",
        reason: Some("request"),
        now: t0(),
    }
}

/// Alice asks for erasure.
async fn erase_alice(b: &Backend) -> qd_store::DeletionCounts {
    let alice = b
        .store
        .find_contact("alice@customer.example")
        .await
        .unwrap()
        .unwrap();
    b.store.erase_contact(&alice, &dpo()).await.unwrap()
}

/// Alice, in copy of a reply to Gus, is erased while the reply is being sent: the copy
/// filed on Gus's ticket must not bring her back (it would be made from the bytes the
/// worker claimed, before the erasure rewrote them).
async fn an_erasure_during_the_send_is_not_undone(b: Backend) {
    let sink = SmtpSink::start().unwrap();
    let (id, asked) = reply_to_gus_with_alice_in_copy(&b, "q2-gus", "q-alice").await;
    // The worker has claimed the entry (and holds its bytes) when the erasure commits.
    let claimed = b
        .store
        .outbox_claim_due(t0(), t0(), 10, Duration::from_secs(300))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let counts = erase_alice(&b).await;
    assert!(counts.redacted >= 1, "{counts:?}");
    // The send completes and is recorded with what the worker claimed.
    let raw = claimed[0].raw.clone().unwrap();
    assert!(String::from_utf8_lossy(&raw).contains("alice@customer.example"));
    let mut copy = qd_ingest::new_message(
        qd_mail::parse(&raw),
        qd_store::PreparedBlob::prepare(&raw).unwrap(),
        Some("outbox".into()),
        None,
        None,
        t0(),
    );
    copy.direction = qd_core::Direction::Out;
    assert_eq!(
        b.store
            .outbox_mark_sent(id, t0(), Some(copy), None)
            .await
            .unwrap(),
        None,
        "no copy made from the bytes before the erasure"
    );
    let e = b.store.outbox_get(id).await.unwrap().unwrap();
    assert_eq!(e.status, OutboxStatus::Sent);
    let kept = String::from_utf8(e.raw.unwrap()).unwrap();
    assert!(!kept.contains("alice@customer.example"), "{kept}");
    assert!(kept.contains("erased@erased.invalid"), "{kept}");
    let thread = b.store.ticket_messages(asked.ticket_id).await.unwrap();
    assert!(thread.iter().all(|m| m.direction != "out"));
    drop(sink);
}
crate::both_backends!(an_erasure_during_the_send_is_not_undone);

/// A delivery error that quotes the erased person keeps no trace of them.
async fn an_erasure_redacts_the_delivery_error(b: Backend) {
    let (id, _) = reply_to_gus_with_alice_in_copy(&b, "q3-gus", "q3-alice").await;
    let claimed = b
        .store
        .outbox_claim_due(t0(), t0(), 10, Duration::from_secs(300))
        .await
        .unwrap();
    let error = "550 5.1.1 <alice@customer.example>: Recipient address rejected";
    assert!(b
        .store
        .outbox_retry_later(id, claimed[0].attempts, error, t0())
        .await
        .unwrap());
    erase_alice(&b).await;
    let e = b.store.outbox_get(id).await.unwrap().unwrap();
    let last = e.last_error.unwrap();
    assert!(!last.contains("alice"), "{last}");
    assert!(last.contains("<erased@erased.invalid>"), "{last}");
}
crate::both_backends!(an_erasure_redacts_the_delivery_error);

/// A reply still waiting in the outbox when someone in copy is erased goes to the others
/// only: before, their address became `[erased]` in the envelope, the relay refused it,
/// and the whole entry failed for good. A reply to the erased person alone goes.
async fn an_erased_recipient_leaves_the_envelope_of_waiting_mail(b: Backend) {
    let sink = SmtpSink::start().unwrap();
    let (id, _) = reply_to_gus_with_alice_in_copy(&b, "q4-gus", "q4-alice").await;
    let (alone, _) = enqueue_reply_to(&b.store, &["alice@customer.example"], None).await;
    erase_alice(&b).await;
    assert!(b.store.outbox_get(alone).await.unwrap().is_none());
    let worker = Worker::new(smtp_settings(&sink)).unwrap();
    let s = worker
        .drain(&b.store, &qd_core::FixedClock(t0()))
        .await
        .unwrap();
    assert_eq!((s.sent, s.failed), (1, 0), "{s:?}");
    let sent = sink.messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].rcpt_to, vec!["gus@customer.example".to_string()]);
    let e = b.store.outbox_get(id).await.unwrap().unwrap();
    assert_eq!(e.status, OutboxStatus::Sent);
    assert_eq!(e.rcpt_to, vec!["gus@customer.example".to_string()]);
}
crate::both_backends!(an_erased_recipient_leaves_the_envelope_of_waiting_mail);

/// Anonymisation leaves no acknowledgement log behind: its rows key senders by a hash
/// of the address, so anyone who knows the address could find the anonymised tickets.
/// Seen from outside, the daily limit starts over.
async fn anonymisation_drops_the_acknowledgement_log(b: Backend) {
    let (_, asked) = crate::ingest(
        &b.store,
        &crate::customer_mail("dora@customer.example", "q5@customer.example", "Help", ""),
        t0(),
    )
    .await;
    let ack = |n: u32| NewOutboxEntry {
        kind: OutboxKind::Ack,
        ticket_id: Some(asked.ticket_id),
        message_id: format!("ack-{n}@{OUR_DOMAIN}"),
        in_reply_to: None,
        references: Vec::new(),
        mail_from: String::new(),
        rcpt_to: vec!["dora@customer.example".into()],
        subject: "We received your message".into(),
        language: None,
        raw: b"Subject: ack\r\n\r\nack\r\n".to_vec(),
    };
    let hash = qd_store::sender_hash("dora@customer.example");
    let first = b.store.enqueue_ack(&ack(1), &hash, 1, t0()).await.unwrap();
    assert!(matches!(first, qd_store::EnqueueOutcome::Queued(_)));
    let limited = b.store.enqueue_ack(&ack(2), &hash, 1, t0()).await.unwrap();
    assert!(matches!(
        limited,
        qd_store::EnqueueOutcome::LimitReached { .. }
    ));

    let dora = b
        .store
        .find_contact("dora@customer.example")
        .await
        .unwrap()
        .unwrap();
    b.store
        .anonymise_people(None, &[dora.id], &dpo())
        .await
        .unwrap();
    let again = b.store.enqueue_ack(&ack(3), &hash, 1, t0()).await.unwrap();
    assert!(
        matches!(again, qd_store::EnqueueOutcome::Queued(_)),
        "{again:?}"
    );
}
crate::both_backends!(anonymisation_drops_the_acknowledgement_log);

/// A claim that ran out (or is about to) while earlier entries of the batch were being
/// sent is not used: another worker may take the entry while it is being sent.
async fn a_claim_that_ran_out_is_not_sent(b: Backend) {
    let sink = SmtpSink::start().unwrap();
    let (id, _) = enqueue_reply(&b.store, "jon@customer.example", None).await;
    let mut settings = smtp_settings(&sink);
    settings.lease_secs = 60;
    let worker = Worker::new(settings).unwrap();
    // Each read of the clock is 100 s later: the claim has run out when it is checked.
    let clock = SteppingClock::new(100);
    let s = worker.drain(&b.store, &clock).await.unwrap();
    assert_eq!((s.claimed, s.sent, s.lost_claims), (1, 0, 1));
    assert!(sink.messages().is_empty(), "nothing was sent");
    // Handed back for the next drain, the unused attempt not counted.
    let e = b.store.outbox_get(id).await.unwrap().unwrap();
    assert_eq!(e.status, OutboxStatus::Queued);
    assert_eq!(e.attempts, 0);
    let s = worker
        .drain_once(&b.store, t0() + TimeDelta::hours(1))
        .await
        .unwrap();
    assert_eq!(s.sent, 1);
    assert_eq!(sink.wait_for(1, Duration::from_secs(5)).len(), 1);
}
crate::both_backends!(a_claim_that_ran_out_is_not_sent);

/// A short lease (a site that wants a dead worker's mail taken over quickly) still
/// leaves room to send: the margin kept beyond the delivery limit is a quarter of the
/// lease at most, not a fixed 30 s that no claim of under a minute would ever clear.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_lease_still_sends() {
    let b = crate::sqlite().await;
    let sink = SmtpSink::start().unwrap();
    enqueue_reply(&b.store, "kim@customer.example", None).await;
    let mut settings = smtp_settings(&sink);
    settings.lease_secs = 20;
    let worker = Worker::new(settings).unwrap();
    // A claim handed back is due again at once: with too wide a margin the drain spun.
    let s = tokio::time::timeout(Duration::from_secs(30), worker.drain_once(&b.store, t0()))
        .await
        .expect("the drain ends")
        .unwrap();
    assert_eq!((s.claimed, s.sent, s.lost_claims), (1, 1, 0));
    assert_eq!(sink.messages().len(), 1);
}

/// A relay on a free local port that greets and answers EHLO on every connection; the
/// first `stalls` connections then read without ever answering again, later ones take
/// mail. Returns its port and a count of the messages it took.
async fn scripted_relay(stalls: usize) -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let taken = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = taken.clone();
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((sock, _)) = listener.accept().await {
            n += 1;
            let stall = n <= stalls;
            let counter = counter.clone();
            tokio::spawn(async move {
                let (rd, mut wr) = sock.into_split();
                let mut rd = BufReader::new(rd);
                let mut line = String::new();
                wr.write_all(b"220 hi\r\n").await?;
                rd.read_line(&mut line).await?;
                wr.write_all(b"250 ok\r\n").await?;
                if stall {
                    // Reads whatever comes, answers nothing.
                    let mut sink = Vec::new();
                    rd.read_to_end(&mut sink).await?;
                    return Ok::<(), std::io::Error>(());
                }
                loop {
                    line.clear();
                    if rd.read_line(&mut line).await? == 0 {
                        return Ok(());
                    }
                    let verb = line.get(..4).unwrap_or("").to_ascii_uppercase();
                    match verb.as_str() {
                        "DATA" => {
                            wr.write_all(b"354 go on\r\n").await?;
                            loop {
                                line.clear();
                                if rd.read_line(&mut line).await? == 0 {
                                    return Ok(());
                                }
                                if line == ".\r\n" {
                                    break;
                                }
                            }
                            counter.fetch_add(1, Ordering::SeqCst);
                            wr.write_all(b"250 taken\r\n").await?;
                        }
                        "QUIT" => {
                            wr.write_all(b"221 bye\r\n").await?;
                            return Ok(());
                        }
                        _ => wr.write_all(b"250 ok\r\n").await?,
                    }
                }
            });
        }
    });
    (port, taken)
}

/// A relay that answered EHLO and then fell silent held the drain forever: lettre's
/// timeout only covers the TCP connect. The delivery is now bounded, and its entry is
/// retried later with the error kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_falls_silent_does_not_hold_the_drain() {
    let b = crate::sqlite().await;
    let (port, _) = scripted_relay(usize::MAX).await;
    let (id, _) = enqueue_reply(&b.store, "kim@customer.example", None).await;
    let mut settings = qd_outbound::SmtpSettings::new("127.0.0.1", port, SUPPORT, OUR_DOMAIN);
    settings.tls = qd_outbound::TlsMode::None;
    settings.timeout_secs = 1;
    let worker = Worker::new(settings).unwrap();
    let s = tokio::time::timeout(Duration::from_secs(10), worker.drain_once(&b.store, t0()))
        .await
        .expect("the drain ends although the relay never answers")
        .unwrap();
    assert_eq!((s.claimed, s.sent, s.retried, s.failed), (1, 0, 1, 0));
    let e = b.store.outbox_get(id).await.unwrap().unwrap();
    assert_eq!(e.status, OutboxStatus::Queued);
    assert_eq!(e.attempts, 1);
    assert!(e.next_attempt_at > t0());
    let err = e.last_error.unwrap();
    assert!(err.contains("timed out"), "{err}");
}

/// The connection of a send that ran out of time is not used again (a pooled one would
/// be: mid-transaction, waiting on the same silent relay): the retry opens a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retry_after_a_timeout_uses_a_new_connection() {
    let b = crate::sqlite().await;
    let (port, taken) = scripted_relay(1).await;
    let (id, _) = enqueue_reply(&b.store, "lee@customer.example", None).await;
    let mut settings = qd_outbound::SmtpSettings::new("127.0.0.1", port, SUPPORT, OUR_DOMAIN);
    settings.tls = qd_outbound::TlsMode::None;
    settings.timeout_secs = 1;
    let worker = Worker::new(settings).unwrap();
    let drain = |at| tokio::time::timeout(Duration::from_secs(10), worker.drain_once(&b.store, at));
    let s = drain(t0()).await.expect("bounded").unwrap();
    assert_eq!(s.retried, 1);
    let s = drain(t0() + TimeDelta::hours(1))
        .await
        .expect("bounded")
        .unwrap();
    assert_eq!((s.sent, s.retried), (1, 0));
    assert_eq!(taken.load(std::sync::atomic::Ordering::SeqCst), 1);
    let e = b.store.outbox_get(id).await.unwrap().unwrap();
    assert_eq!(e.status, OutboxStatus::Sent);
}

/// A shutdown during a drain waits for the send in progress, not for every due entry:
/// with a relay that never answers, three due entries and a 1 s delivery limit, the
/// worker stops after about one second, with one entry tried. Before, the drain sent
/// on through all three (and through N times the limit for N entries).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_waits_for_one_send_not_the_whole_drain() {
    let b = crate::sqlite().await;
    let (port, _) = scripted_relay(usize::MAX).await;
    let mut ids = Vec::new();
    for to in [
        "a@customer.example",
        "b@customer.example",
        "c@customer.example",
    ] {
        ids.push(enqueue_reply(&b.store, to, None).await.0);
    }
    let mut settings = qd_outbound::SmtpSettings::new("127.0.0.1", port, SUPPORT, OUR_DOMAIN);
    settings.tls = qd_outbound::TlsMode::None;
    settings.timeout_secs = 1;
    let worker = Worker::new(settings).unwrap();
    let started = std::time::Instant::now();
    let shutdown = tokio::time::sleep(Duration::from_millis(300));
    tokio::time::timeout(
        Duration::from_secs(10),
        worker.run(&b.store, &qd_core::FixedClock(t0()), shutdown),
    )
    .await
    .expect("the worker stops")
    .unwrap();
    let took = started.elapsed();
    assert!(took < Duration::from_millis(2500), "stopping took {took:?}");
    // The entry tried has its error; the others were handed back as they were: queued,
    // unclaimed, their attempt not counted.
    let mut tried = 0;
    for id in ids {
        let e = b.store.outbox_get(id).await.unwrap().unwrap();
        assert_eq!(e.status, OutboxStatus::Queued);
        if e.last_error.is_some() {
            tried += 1;
        } else {
            assert_eq!(e.attempts, 0, "{e:?}");
        }
    }
    assert_eq!(tried, 1);
}
