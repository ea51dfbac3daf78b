//! Bounces: a DSN for a sent message fails its outbox entry and lands on its ticket.

use std::time::Duration;

use qd_outbound::{handle_bounce, BounceOutcome, Worker};
use qd_store::OutboxStatus;
use qd_testkit::SmtpSink;

use crate::delivery::enqueue_reply;
use crate::{customer_mail, ingest, smtp_settings, t0, Backend};

fn dsn(original_id: &str, rcpt: &str) -> Vec<u8> {
    format!(
        "Return-Path: <>\r\n\
From: Mail Delivery System <MAILER-DAEMON@mx.customer.example>\r\n\
To: support@desk.example\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
Message-ID: <dsn.{original_id}>\r\n\
Date: Wed, 25 Nov 2026 09:05:00 +0000\r\n\
Auto-Submitted: auto-replied\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status; boundary=\"BOUNDARY\"\r\n\
\r\n\
--BOUNDARY\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
Your message could not be delivered to one or more recipients.\r\n\
--BOUNDARY\r\n\
Content-Type: message/delivery-status\r\n\
\r\n\
Reporting-MTA: dns; mx.customer.example\r\n\
\r\n\
Final-Recipient: rfc822; {rcpt}\r\n\
Action: failed\r\n\
Status: 5.1.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 User unknown\r\n\
\r\n\
--BOUNDARY\r\n\
Content-Type: message/rfc822\r\n\
\r\n\
From: support@desk.example\r\n\
To: {rcpt}\r\n\
Subject: Re: your question [#QD-1]\r\n\
Message-ID: <{original_id}>\r\n\
\r\n\
Here is the answer.\r\n\
--BOUNDARY--\r\n"
    )
    .into_bytes()
}

async fn a_bounce_fails_the_entry_and_lands_on_its_ticket(b: Backend) {
    let sink = SmtpSink::start().unwrap();
    let raw = customer_mail(
        "erin@customer.example",
        "q1@customer.example",
        "A question",
        "",
    );
    let (_, stored) = ingest(&b.store, &raw, t0()).await;
    let (id, our_id) =
        enqueue_reply(&b.store, "erin@customer.example", Some(stored.ticket_id)).await;
    let worker = Worker::new(smtp_settings(&sink)).unwrap();
    assert_eq!(worker.drain_once(&b.store, t0()).await.unwrap().sent, 1);
    assert_eq!(sink.wait_for(1, Duration::from_secs(5)).len(), 1);

    let report = dsn(&our_id, "erin@customer.example");
    let outcome = handle_bounce(&b.store, &report, t0()).await.unwrap();
    let Some(BounceOutcome::Failed {
        outbox_id,
        ticket_id,
        message_db_id,
        bounce,
    }) = outcome
    else {
        panic!("expected a recorded bounce, got {outcome:?}");
    };
    assert_eq!(outbox_id, id);
    assert_eq!(ticket_id, Some(stored.ticket_id));
    assert_eq!(bounce.status.as_deref(), Some("5.1.1"));
    assert_eq!(bounce.recipient.as_deref(), Some("erin@customer.example"));

    let e = b.store.outbox_get(id).await.unwrap().unwrap();
    assert_eq!(e.status, OutboxStatus::Failed);
    let err = e.last_error.unwrap();
    assert!(
        err.contains("5.1.1") && err.contains("User unknown"),
        "{err}"
    );

    let messages = b.store.ticket_messages(stored.ticket_id).await.unwrap();
    // The question, our sent reply, the DSN.
    assert_eq!(messages.len(), 3, "{messages:?}");
    let dsn_row = messages
        .iter()
        .find(|m| Some(m.id) == message_db_id)
        .expect("the DSN on the ticket");
    assert_eq!(dsn_row.direction, "in");
    assert!(dsn_row.subject.contains("Undelivered"));
    assert!(b.store.raw_message(dsn_row.id).await.unwrap().is_some());

    // The same DSN again changes nothing and is not stored twice.
    let again = handle_bounce(&b.store, &report, t0()).await.unwrap();
    assert!(matches!(
        again,
        Some(BounceOutcome::Failed {
            message_db_id: None,
            ..
        })
    ));
    assert_eq!(
        b.store
            .ticket_messages(stored.ticket_id)
            .await
            .unwrap()
            .len(),
        3
    );

    // A bounce of mail we never sent, and ordinary mail, are left to ingest.
    let foreign = dsn("someone-else@elsewhere.example", "x@customer.example");
    assert!(matches!(
        handle_bounce(&b.store, &foreign, t0()).await.unwrap(),
        Some(BounceOutcome::Unmatched(_))
    ));
    assert_eq!(handle_bounce(&b.store, &raw, t0()).await.unwrap(), None);
}
crate::both_backends!(a_bounce_fails_the_entry_and_lands_on_its_ticket);

/// The live path: a DSN for a reply we sent arrives in the support mailbox and is
/// ingested over IMAP. It threads to the reply's ticket and fails the outbox entry, as
/// `handle_bounce` does for a DSN handed to it directly.
async fn a_bounce_arriving_by_imap_fails_its_entry(b: Backend) {
    bounce_by_imap(b, false).await;
}
crate::both_backends!(a_bounce_arriving_by_imap_fails_its_entry);

async fn a_bounce_fetched_again_after_a_crash_still_fails_its_entry(b: Backend) {
    bounce_by_imap(b, true).await;
}
crate::both_backends!(a_bounce_fetched_again_after_a_crash_still_fails_its_entry);

async fn bounce_by_imap(b: Backend, stored_before: bool) {
    use qd_ingest::imap::{ingest_once, IngestContext, MailboxConfig, Secret, Tls};
    let sink = SmtpSink::start().unwrap();
    let raw = customer_mail("fay@customer.example", "q2@customer.example", "Help", "");
    let (_, stored) = ingest(&b.store, &raw, t0()).await;
    let (id, our_id) =
        enqueue_reply(&b.store, "fay@customer.example", Some(stored.ticket_id)).await;
    let worker = Worker::new(smtp_settings(&sink)).unwrap();
    assert_eq!(worker.drain_once(&b.store, t0()).await.unwrap().sent, 1);

    let d = qd_testkit::Dovecot::start_plain().unwrap();
    d.deliver("user", "INBOX", &dsn(&our_id, "fay@customer.example"))
        .unwrap();
    let clock = std::sync::Arc::new(qd_core::SystemClock);
    let ctx = IngestContext {
        store: b.store.clone(),
        settings: qd_ingest::ImportSettings {
            max_message_bytes: 1 << 20,
            batch_size: 10,
            ticket_ref: crate::ticket_ref(),
            team: None,
            keep_full_ips: false,
        },
        clock: clock.clone(),
        hook: Some(std::sync::Arc::new(qd_ingest::steps::Steps::new(
            b.store.clone(),
            clock,
        ))),
    };
    let mut m = MailboxConfig::new(
        "support",
        "127.0.0.1",
        "user",
        Secret::Password(d.password("user").unwrap().to_string()),
    );
    m.port = Some(d.port());
    m.tls = Tls::None;
    if stored_before {
        // The DSN's commit happened, the step after it did not (a crash): it comes again
        // as a duplicate, and the bounce is still recorded.
        ingest(&b.store, &dsn(&our_id, "fay@customer.example"), t0()).await;
    }
    let s = ingest_once(&ctx, &[m]).await.unwrap();
    let expected = if stored_before { (0, 1) } else { (1, 0) };
    assert_eq!((s.stored, s.duplicates), expected, "{s:?}");
    assert_eq!((s.tickets, s.errors), (0, 0), "{s:?}");

    let e = b.store.outbox_get(id).await.unwrap().unwrap();
    assert_eq!(e.status, OutboxStatus::Failed);
    assert!(e.last_error.unwrap().contains("5.1.1"));
    if !stored_before {
        // (The copy stored first by the plain test helper did not go through the IMAP
        // pipeline, which threads a DSN to the sent copy; so only here.)
        let messages = b.store.ticket_messages(stored.ticket_id).await.unwrap();
        assert_eq!(messages.len(), 3, "question, reply, DSN: {messages:?}");
    }
}
