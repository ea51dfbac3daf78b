//! Acknowledgements end to end: planned after ingest, queued, sent over real SMTP.

use std::sync::Arc;
use std::time::Duration;

use chrono::TimeDelta;
use qd_core::FixedClock;
use qd_ingest::ack::{acknowledge, AckOutcome, SkipReason};
use qd_ingest::imap::{AfterStore, Arrived};
use qd_ingest::steps::Steps;
use qd_mail::autoreply::NoAutoReply;
use qd_outbound::Worker;
use qd_store::{
    BatchAcks, BatchOutcome, BatchSettings, EnqueueOutcome, NewMessage, OutboxStatus, PreparedBlob,
    Store,
};
use qd_testkit::SmtpSink;

use crate::{ack_settings, customer_mail, header, ingest, smtp_settings, t0, Backend};

async fn ingest_and_ack(
    store: &Store,
    raw: &[u8],
    spam: bool,
    max_per_day: u32,
    now: chrono::DateTime<chrono::Utc>,
) -> (qd_store::StoredMessage, AckOutcome) {
    let (parsed, stored) = ingest(store, raw, now).await;
    let outcome = acknowledge(
        store,
        &qd_mail::autoreply::LoopHeaders::from_raw(raw),
        &parsed,
        &stored,
        spam,
        &ack_settings(max_per_day),
        now,
    )
    .await
    .unwrap();
    (stored, outcome)
}

async fn ack_is_sent_with_ticket_ref_and_threading(b: Backend) {
    let sink = SmtpSink::start().unwrap();
    let raw = customer_mail(
        "ann@customer.example",
        "m1@customer.example",
        "Printer on fire",
        "",
    );
    let (stored, outcome) = ingest_and_ack(&b.store, &raw, false, 3, t0()).await;
    let AckOutcome::Queued {
        outbox_id,
        language,
    } = outcome
    else {
        panic!("expected an acknowledgement, got {outcome:?}");
    };
    assert_eq!(language, "en");

    let worker = Worker::new(smtp_settings(&sink)).unwrap();
    let summary = worker.drain_once(&b.store, t0()).await.unwrap();
    assert_eq!((summary.sent, summary.failed, summary.retried), (1, 0, 0));

    let got = sink.wait_for(1, Duration::from_secs(5));
    assert_eq!(got.len(), 1);
    let mail = &got[0];
    // RFC 3834 §3.3: the null reverse-path, so a bounce of the acknowledgement dies.
    assert_eq!(mail.mail_from, "");
    assert_eq!(mail.rcpt_to, vec!["ann@customer.example"]);
    let subject = header(&mail.raw, "Subject").unwrap();
    let tref = format!("[#QD-{}]", stored.ticket_number);
    assert!(subject.contains(&tref), "subject {subject}");
    assert!(subject.contains("Printer on fire"), "subject {subject}");
    assert_eq!(
        header(&mail.raw, "Auto-Submitted").as_deref(),
        Some("auto-replied")
    );
    assert_eq!(
        header(&mail.raw, "X-Auto-Response-Suppress").as_deref(),
        Some("All")
    );
    assert_eq!(
        header(&mail.raw, "In-Reply-To").as_deref(),
        Some("<m1@customer.example>")
    );
    assert_eq!(
        header(&mail.raw, "References").as_deref(),
        Some("<m1@customer.example>")
    );
    assert_eq!(header(&mail.raw, "Content-Language").as_deref(), Some("en"));
    let our_id = header(&mail.raw, "Message-ID").unwrap();
    assert!(our_id.ends_with("@desk.example>"), "{our_id}");
    let body = String::from_utf8_lossy(&mail.raw);
    assert!(
        body.contains(&tref) && body.contains("Hello Ann Customer"),
        "{body}"
    );

    // The outbox entry is sent and the acknowledgement is on the ticket.
    let entry = b.store.outbox_get(outbox_id).await.unwrap().unwrap();
    assert_eq!(entry.status, OutboxStatus::Sent);
    assert_eq!(entry.attempts, 1);
    assert!(entry.raw.is_none(), "the raw copy moves to the ticket");
    let messages = b.store.ticket_messages(stored.ticket_id).await.unwrap();
    assert_eq!(messages.len(), 2);
    let out = messages
        .iter()
        .find(|m| m.direction == "out")
        .expect("the sent ack");
    assert_eq!(Some(out.id), entry.sent_message_db_id);
    assert_eq!(
        out.message_id.as_deref(),
        Some(our_id.trim_matches(|c| c == '<' || c == '>'))
    );

    // A reply to the acknowledgement without a ticket reference threads by In-Reply-To.
    let reply = customer_mail(
        "ann@customer.example",
        "m2@customer.example",
        "Re: thanks",
        &format!("In-Reply-To: {our_id}\r\n"),
    );
    let (stored2, outcome2) = ingest_and_ack(&b.store, &reply, false, 3, t0()).await;
    assert_eq!(stored2.ticket_id, stored.ticket_id);
    assert_eq!(outcome2, AckOutcome::Skipped(SkipReason::NotNewTicket));
}
crate::both_backends!(ack_is_sent_with_ticket_ref_and_threading);

/// Every loop case: no acknowledgement is queued, with the reason named.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loop_cases_get_no_ack() {
    let b = crate::sqlite().await;
    let cases: Vec<(&str, &str, bool, &str)> = vec![
        (
            "ann@customer.example",
            "Auto-Submitted: auto-replied\r\n",
            false,
            "auto_submitted",
        ),
        (
            "ann@customer.example",
            "Auto-Submitted: auto-generated\r\n",
            false,
            "auto_submitted",
        ),
        (
            "ann@customer.example",
            "Precedence: bulk\r\n",
            false,
            "precedence",
        ),
        (
            "ann@customer.example",
            "Precedence: list\r\n",
            false,
            "precedence",
        ),
        (
            "ann@customer.example",
            "Precedence: junk\r\n",
            false,
            "precedence",
        ),
        (
            "ann@customer.example",
            "List-Id: <users.lists.example>\r\n",
            false,
            "mailing_list",
        ),
        ("MAILER-DAEMON@mx.example", "", false, "machine_sender"),
        ("postmaster@customer.example", "", false, "machine_sender"),
        ("no-reply@shop.example", "", false, "machine_sender"),
        ("noreply@shop.example", "", false, "machine_sender"),
        (
            "ann@customer.example",
            "Return-Path: <>\r\n",
            false,
            "null_return_path",
        ),
        (
            "ann@customer.example",
            "X-Auto-Response-Suppress: All\r\n",
            false,
            "response_suppressed",
        ),
        ("help@desk.example", "", false, "own_address"),
        ("ann@customer.example", "", true, "spam"),
    ];
    for (i, (from, extra, spam, reason)) in cases.iter().enumerate() {
        let raw = customer_mail(
            from,
            &format!("loop{i}@x.example"),
            &format!("case {i}"),
            extra,
        );
        let (stored, outcome) = ingest_and_ack(&b.store, &raw, *spam, 100, t0()).await;
        match &outcome {
            AckOutcome::Skipped(SkipReason::Loop(r)) => assert_eq!(r.as_str(), *reason, "case {i}"),
            other => panic!("case {i} ({extra}{from}): expected no ack, got {other:?}"),
        }
        assert!(b
            .store
            .outbox_for_ticket(stored.ticket_id)
            .await
            .unwrap()
            .is_empty());
    }
    // A control message from the same run is answered, so the cases above fail for
    // their headers, not for the setup.
    let raw = customer_mail(
        "ann@customer.example",
        "ok@x.example",
        "fine",
        "Auto-Submitted: no\r\n",
    );
    let (_, outcome) = ingest_and_ack(&b.store, &raw, false, 100, t0()).await;
    assert!(matches!(outcome, AckOutcome::Queued { .. }), "{outcome:?}");
    let _ = NoAutoReply::Spam; // the reason type the lead logs
}

async fn at_most_n_acks_per_sender_per_day(b: Backend) {
    let mut queued = 0;
    for i in 0..3 {
        let raw = customer_mail(
            "bob@customer.example",
            &format!("b{i}@x"),
            &format!("issue {i}"),
            "",
        );
        let (_, outcome) = ingest_and_ack(&b.store, &raw, false, 2, t0()).await;
        match outcome {
            AckOutcome::Queued { .. } => queued += 1,
            AckOutcome::Skipped(SkipReason::DailyLimit { sent }) => {
                assert_eq!((i, sent), (2, 2));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(queued, 2);
    // Another sender is not affected; the same address in other case is the same sender.
    let raw = customer_mail("carol@customer.example", "c0@x", "other", "");
    assert!(matches!(
        ingest_and_ack(&b.store, &raw, false, 2, t0()).await.1,
        AckOutcome::Queued { .. }
    ));
    let raw = customer_mail("BOB@Customer.Example", "b9@x", "again", "");
    assert!(matches!(
        ingest_and_ack(&b.store, &raw, false, 2, t0()).await.1,
        AckOutcome::Skipped(SkipReason::DailyLimit { sent: 2 })
    ));
    // A day later the sender is answered again.
    let later = t0() + TimeDelta::hours(25);
    let raw = customer_mail("bob@customer.example", "b10@x", "next day", "");
    assert!(matches!(
        ingest_and_ack(&b.store, &raw, false, 2, later).await.1,
        AckOutcome::Queued { .. }
    ));
}
crate::both_backends!(at_most_n_acks_per_sender_per_day);

/// Stores `mails` as one live batch whose acknowledgements `Steps` plans in its
/// transaction (at most 2 per sender a day), after `mark` has changed what the pipeline
/// knows of them.
async fn store_acknowledged(
    store: &Store,
    mails: &[Vec<u8>],
    mark: impl FnOnce(&mut [Arrived]),
) -> (BatchOutcome, Vec<EnqueueOutcome>) {
    let parsed: Vec<qd_mail::ParsedMail> = mails.iter().map(|r| qd_mail::parse(r)).collect();
    let mut arrived: Vec<Arrived> = mails
        .iter()
        .zip(&parsed)
        .map(|(raw, p)| Arrived::of(raw, p))
        .collect();
    mark(&mut arrived);
    let mut batch: Vec<NewMessage> = mails
        .iter()
        .zip(parsed)
        .map(|(raw, p)| {
            let blob = PreparedBlob::prepare(raw).unwrap();
            qd_ingest::new_message(p, blob, Some("test".into()), None, None, t0())
        })
        .collect();
    let steps = Steps::new(store.clone(), Arc::new(FixedClock(t0()))).with_ack(ack_settings(2));
    let plan = |o: &BatchOutcome, m: &[NewMessage]| steps.plan_acks(o, m, &arrived);
    let acks = BatchAcks {
        plan: &plan,
        max_per_day: steps.ack_limit().unwrap(),
    };
    let tr = crate::ticket_ref();
    let settings = BatchSettings {
        ticket_ref: &tr,
        now: t0(),
    };
    store
        .store_batch_with_acks(&mut batch, None, &settings, Some(&acks))
        .await
        .unwrap()
}

/// The live pipeline's acknowledgements: `Steps` plans them inside the batch's own
/// transaction. The daily limit counts the batch's earlier ones, replies and
/// auto-replies get none, and the outcomes come back in order.
async fn a_batch_is_acknowledged_in_its_transaction(b: Backend) {
    // Dave had one acknowledgement today; Erin's ticket exists.
    let first = customer_mail("dave@customer.example", "d0@x", "first", "");
    ingest_and_ack(&b.store, &first, false, 2, t0()).await;
    ingest(
        &b.store,
        &customer_mail("erin@customer.example", "e1@x", "hello", ""),
        t0(),
    )
    .await;
    let mails = [
        customer_mail("dave@customer.example", "d1@x", "second", ""),
        customer_mail("dave@customer.example", "d2@x", "third", ""),
        customer_mail(
            "erin@customer.example",
            "e2@x",
            "Re: hello",
            "In-Reply-To: <e1@x>\r\n",
        ),
        customer_mail(
            "frank@customer.example",
            "f1@x",
            "Out of office",
            "Auto-Submitted: auto-replied\r\n",
        ),
        customer_mail("gina@customer.example", "g1@x", "question", ""),
    ];
    let (outcome, enqueued) = store_acknowledged(&b.store, &mails, |_| {}).await;
    assert_eq!(outcome.stored.len(), 5);
    // Planned: Dave's two and Gina's; the reply and the auto-reply are not.
    assert_eq!(enqueued.len(), 3, "{enqueued:?}");
    assert!(
        matches!(enqueued[0], EnqueueOutcome::Queued(_)),
        "{enqueued:?}"
    );
    assert!(
        matches!(enqueued[1], EnqueueOutcome::LimitReached { sent: 2 }),
        "{enqueued:?}"
    );
    assert!(
        matches!(enqueued[2], EnqueueOutcome::Queued(_)),
        "{enqueued:?}"
    );
    // Exactly the queued ones are in the outbox, on their tickets.
    for (s, want) in outcome.stored.iter().zip([1, 0, 0, 0, 1]) {
        let entries = b.store.outbox_for_ticket(s.ticket_id).await.unwrap();
        assert_eq!(entries.len(), want, "message {}", s.index);
    }
    let queued_ids: Vec<i64> = enqueued
        .iter()
        .filter_map(|e| match e {
            EnqueueOutcome::Queued(id) => Some(*id),
            EnqueueOutcome::LimitReached { .. } => None,
        })
        .collect();
    let dave = b
        .store
        .outbox_for_ticket(outcome.stored[0].ticket_id)
        .await
        .unwrap();
    let gina = b
        .store
        .outbox_for_ticket(outcome.stored[4].ticket_id)
        .await
        .unwrap();
    assert_eq!(queued_ids, [dave[0].id, gina[0].id]);
}
crate::both_backends!(a_batch_is_acknowledged_in_its_transaction);

/// Old mail a rescan read again (`Arrived::reread_old`) is never acknowledged; mail
/// beside it is.
async fn mail_read_again_is_not_acknowledged_again(b: Backend) {
    let mails = [
        customer_mail("hank@customer.example", "h1@x", "old question", ""),
        customer_mail("ivy@customer.example", "i1@x", "new question", ""),
    ];
    let (outcome, enqueued) =
        store_acknowledged(&b.store, &mails, |arrived| arrived[0].reread_old = true).await;
    assert_eq!(outcome.stored.len(), 2);
    assert_eq!(enqueued.len(), 1, "{enqueued:?}");
    for (s, want) in outcome.stored.iter().zip([0, 1]) {
        let entries = b.store.outbox_for_ticket(s.ticket_id).await.unwrap();
        assert_eq!(entries.len(), want, "message {}", s.index);
    }
}
crate::both_backends!(mail_read_again_is_not_acknowledged_again);

/// The template language follows Content-Language / Accept-Language, falling back to
/// English.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_per_language_with_fallback() {
    let b = crate::sqlite().await;
    let sink = SmtpSink::start().unwrap();
    let cases = [
        (
            "Content-Language: nl-BE\r\n",
            "nl",
            "Bedankt voor uw bericht",
        ),
        (
            "Accept-Language: fr-FR, en;q=0.5\r\n",
            "fr",
            "Merci de nous avoir contact",
        ),
        (
            "Content-Language: de\r\n",
            "en",
            "Thank you for contacting us",
        ),
        ("", "en", "Thank you for contacting us"),
    ];
    for (i, (extra, lang, _)) in cases.iter().enumerate() {
        let raw = customer_mail(
            &format!("lang{i}@customer.example"),
            &format!("l{i}@x"),
            "Vraag",
            extra,
        );
        let (_, outcome) = ingest_and_ack(&b.store, &raw, false, 3, t0()).await;
        match outcome {
            AckOutcome::Queued { language, .. } => assert_eq!(&language, lang, "case {i}"),
            other => panic!("{other:?}"),
        }
    }
    let worker = Worker::new(smtp_settings(&sink)).unwrap();
    assert_eq!(worker.drain_once(&b.store, t0()).await.unwrap().sent, 4);
    let got = sink.wait_for(4, Duration::from_secs(5));
    assert_eq!(got.len(), 4);
    for (i, (_, lang, phrase)) in cases.iter().enumerate() {
        let rcpt = format!("lang{i}@customer.example");
        let mail = got
            .iter()
            .find(|m| m.rcpt_to == vec![rcpt.clone()])
            .unwrap();
        let parsed = qd_mail::parse(&mail.raw);
        assert!(parsed.text.contains(phrase), "case {i}: {}", parsed.text);
        assert_eq!(
            header(&mail.raw, "Content-Language").as_deref(),
            Some(*lang)
        );
    }
}
