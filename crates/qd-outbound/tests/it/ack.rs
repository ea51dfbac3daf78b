//! Acknowledgements end to end: planned after ingest, queued, sent over real SMTP.

use std::time::Duration;

use chrono::TimeDelta;
use qd_ingest::ack::{acknowledge, acknowledge_all, AckCandidate, AckOutcome, SkipReason};
use qd_mail::autoreply::NoAutoReply;
use qd_outbound::Worker;
use qd_store::{OutboxStatus, Store};
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

/// A stored batch is acknowledged in one go: the daily limit counts the batch's own
/// earlier acknowledgements, replies and auto-replies are skipped, and every candidate
/// gets its own outcome, in order.
async fn a_batch_is_acknowledged_together(b: Backend) {
    let first = customer_mail("dave@customer.example", "d0@x", "first", "");
    ingest_and_ack(&b.store, &first, false, 2, t0()).await;
    let mails = [
        customer_mail("dave@customer.example", "d1@x", "second", ""),
        customer_mail("dave@customer.example", "d2@x", "third", ""),
        customer_mail("erin@customer.example", "e1@x", "hello", ""),
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
    ];
    let mut stored = Vec::new();
    for raw in &mails {
        stored.push(ingest(&b.store, raw, t0()).await);
    }
    let headers: Vec<_> = mails
        .iter()
        .map(|r| qd_mail::autoreply::LoopHeaders::from_raw(r))
        .collect();
    let candidates: Vec<AckCandidate<'_>> = stored
        .iter()
        .zip(&headers)
        .map(|((parsed, stored), headers)| AckCandidate {
            headers,
            parsed,
            stored,
            verdict_is_spam: false,
        })
        .collect();
    let outcomes = acknowledge_all(&b.store, &candidates, &ack_settings(2), t0()).await;
    let outcomes: Vec<AckOutcome> = outcomes.into_iter().map(Result::unwrap).collect();
    assert_eq!(outcomes.len(), 5);
    // Dave had one acknowledgement before the batch: the second is his last today.
    assert!(
        matches!(outcomes[0], AckOutcome::Queued { .. }),
        "{outcomes:?}"
    );
    assert!(
        matches!(
            outcomes[1],
            AckOutcome::Skipped(SkipReason::DailyLimit { sent: 2 })
        ),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[2], AckOutcome::Queued { .. }),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[3], AckOutcome::Skipped(SkipReason::NotNewTicket)),
        "{outcomes:?}"
    );
    assert!(
        matches!(outcomes[4], AckOutcome::Skipped(SkipReason::Loop(_))),
        "{outcomes:?}"
    );
    // Exactly the queued ones are in the outbox, on their tickets, under the ids the
    // outcomes name.
    for (i, want) in [(0, 1), (1, 0), (2, 1), (4, 0)] {
        let ticket = stored[i].1.ticket_id;
        let entries = b.store.outbox_for_ticket(ticket).await.unwrap();
        assert_eq!(entries.len(), want, "candidate {i}");
        if let AckOutcome::Queued { outbox_id, .. } = &outcomes[i] {
            assert_eq!(entries[0].id, *outbox_id, "candidate {i}");
        }
    }
}
crate::both_backends!(a_batch_is_acknowledged_together);

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
