use chrono::{TimeZone, Utc};
use qd_core::{Direction, TicketRefFormat, TicketStatus};
use qd_store::{BatchSettings, Checkpoint, NewAttachment, NewMessage, PreparedBlob};

use crate::{both_backends, Backend};

pub fn msg(id: &str, from: &str, subject: &str, reply_to: &[&str]) -> NewMessage {
    let raw =
        format!("Message-ID: <{id}>\r\nFrom: {from}\r\nSubject: {subject}\r\n\r\nbody of {id}\r\n");
    NewMessage {
        direction: Direction::In,
        message_id: Some(id.to_string()),
        in_reply_to: reply_to.iter().map(|s| s.to_string()).collect(),
        references: reply_to.iter().map(|s| s.to_string()).collect(),
        from_addr: Some(from.to_string()),
        from_name: Some("Someone".into()),
        to: vec!["support@quietdesk.example".into()],
        cc: vec![],
        date: Some(Utc.with_ymd_and_hms(2024, 3, 1, 10, 0, 0).unwrap()),
        received_at: Utc.with_ymd_and_hms(2024, 3, 1, 10, 0, 5).unwrap(),
        subject: subject.to_string(),
        body_text: format!("body of {id}"),
        body_html: None,
        size: raw.len() as i64,
        content_hash: format!("hash-of-{id}"),
        attachments: vec![],
        defects: vec![],
        source: Some("test".into()),
        source_position: None,
        blob: Some(PreparedBlob::prepare(raw.as_bytes()).unwrap()),
        team: None,
        verdict: None,
        reports_failure: None,
    }
}

pub fn settings(fmt: &TicketRefFormat) -> BatchSettings<'_> {
    BatchSettings {
        ticket_ref: fmt,
        now: Utc.with_ymd_and_hms(2024, 3, 2, 0, 0, 0).unwrap(),
    }
}

/// Stores `batch` with the default settings.
async fn store_all(
    b: &Backend,
    batch: &mut [NewMessage],
    fmt: &TicketRefFormat,
) -> qd_store::BatchOutcome {
    b.store
        .store_batch(batch, None, &settings(fmt))
        .await
        .unwrap()
}

/// A staff member acting now, without a reason.
fn actor(name: &str) -> qd_store::Actor<'_> {
    qd_store::Actor {
        name,
        reason: None,
        now: Utc::now(),
    }
}

async fn threads_deduplicates_and_checkpoints(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let store = &b.store;
    let mut first = vec![
        msg("a1@x", "alice@example.com", "Server down", &[]),
        msg("b1@x", "bob@example.com", "Invoice", &[]),
        // Reply inside the same batch, threaded by In-Reply-To.
        msg("a2@x", "alice@example.com", "Re: Server down", &["a1@x"]),
    ];
    first[1].attachments.push(NewAttachment {
        filename: Some("invoice.pdf".into()),
        content_type: "application/pdf".into(),
        size: 10,
        digest: "d".repeat(64),
        quarantined: false,
    });
    let cp = Checkpoint {
        source: "import:/tmp/x".into(),
        uidvalidity: None,
        position: "3".into(),
        held: Vec::new(),
    };
    let out = store
        .store_batch(&mut first, Some(&cp), &settings(&fmt))
        .await
        .unwrap();
    assert_eq!(out.stored.len(), 3);
    assert_eq!(out.new_tickets, 2);
    assert!(out.duplicates.is_empty());
    assert_eq!(out.stored[0].ticket_id, out.stored[2].ticket_id);
    assert_ne!(out.stored[0].ticket_id, out.stored[1].ticket_id);
    let alice_ticket = out.stored[0].ticket_number;
    let bob_ticket = out.stored[1].ticket_number;
    assert_eq!(store.checkpoint("import:/tmp/x").await.unwrap(), Some(cp));
    assert!(first.iter().all(|m| m.blob.is_none()), "blobs are taken");

    // Second batch: a duplicate, a reply found only through the subject reference,
    // a reply found through References of a stored message, and a stranger.
    let mut second = vec![
        msg("a1@x", "alice@example.com", "Server down", &[]),
        msg(
            "b2@x",
            "bob@example.com",
            &format!("RE: Invoice {}", fmt.render(bob_ticket)),
            &[],
        ),
        msg(
            "a3@x",
            "alice@example.com",
            "Re: Re: Server down",
            &["nope@x", "a2@x"],
        ),
        msg("c1@x", "carol@example.com", "Hello", &["unknown@elsewhere"]),
    ];
    let out2 = store
        .store_batch(&mut second, None, &settings(&fmt))
        .await
        .unwrap();
    assert_eq!(out2.duplicates, vec![0]);
    assert_eq!(out2.stored.len(), 3);
    assert_eq!(out2.new_tickets, 1);
    assert_eq!(out2.stored[0].ticket_number, bob_ticket);
    assert_eq!(out2.stored[1].ticket_number, alice_ticket);
    assert!(out2.stored[2].new_ticket);

    let stats = store.stats().await.unwrap();
    assert_eq!(stats.messages, 6);
    assert_eq!(stats.tickets, 3);
    assert_eq!(stats.contacts, 3);
    assert_eq!(stats.blobs, 6);
    assert_eq!(stats.search_queue, 6);
    let raw = store
        .raw_message(out.stored[0].message_db_id)
        .await
        .unwrap()
        .unwrap();
    assert!(raw.starts_with(b"Message-ID: <a1@x>"));

    let t = store.ticket_by_number(alice_ticket).await.unwrap().unwrap();
    let msgs = store.ticket_messages(t.id).await.unwrap();
    let ids: Vec<_> = msgs.iter().filter_map(|m| m.message_id.clone()).collect();
    assert_eq!(ids, ["a1@x", "a2@x", "a3@x"]);

    let rows = store
        .index_rows(&[out.stored[1].message_db_id])
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].has_attachment);
    assert_eq!(rows[0].from, "Someone <bob@example.com>");
    assert_eq!(rows[0].ticket_status, "open");
}
both_backends!(threads_deduplicates_and_checkpoints);

async fn an_inbound_reply_reopens_a_closed_ticket(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let store = &b.store;
    let mut first = vec![msg("x1@x", "dave@example.com", "Backup", &[])];
    let out = store
        .store_batch(&mut first, None, &settings(&fmt))
        .await
        .unwrap();
    let ticket = out.stored[0].ticket_id;
    store
        .set_ticket_status(ticket, TicketStatus::Closed)
        .await
        .unwrap();
    let queued = store.stats().await.unwrap().search_queue;
    let mut reply = vec![msg("x2@x", "dave@example.com", "Re: Backup", &["x1@x"])];
    let out2 = store
        .store_batch(&mut reply, None, &settings(&fmt))
        .await
        .unwrap();
    assert_eq!(out2.stored[0].ticket_id, ticket);
    assert_eq!(out2.stored[0].ticket_status, TicketStatus::Open);
    assert_eq!(out2.requeued, 1, "the older message's index entry is stale");
    assert_eq!(store.stats().await.unwrap().search_queue, queued + 2);
}
both_backends!(an_inbound_reply_reopens_a_closed_ticket);

async fn replies_move_each_ticket_forward_in_one_batch(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let store = &b.store;
    let mut first = vec![
        msg("c1@x", "carol@example.com", "Invoice", &[]),
        msg("d1@x", "dan@example.com", "Outage", &[]),
        msg("e1@x", "eve@example.com", "Quiet", &[]),
    ];
    // When the first messages arrived: every ticket's activity starts here.
    let start = first[0].received_at;
    let out = store
        .store_batch(&mut first, None, &settings(&fmt))
        .await
        .unwrap();
    let numbers: Vec<i64> = out.stored.iter().map(|s| s.ticket_number).collect();
    store
        .set_ticket_status(out.stored[1].ticket_id, TicketStatus::Closed)
        .await
        .unwrap();
    // Two replies to Carol's ticket (the later one wins, whatever the order) and one to
    // Dan's closed ticket; Eve's ticket is not touched.
    let mut c2 = msg("c2@x", "carol@example.com", "Re: Invoice", &["c1@x"]);
    c2.received_at = start + chrono::Duration::hours(5);
    let mut c3 = msg("c3@x", "carol@example.com", "Re: Invoice", &["c1@x"]);
    c3.received_at = start + chrono::Duration::hours(2);
    let mut d2 = msg("d2@x", "dan@example.com", "Re: Outage", &["d1@x"]);
    d2.received_at = start + chrono::Duration::hours(1);
    let mut replies = vec![c2, d2, c3];
    store
        .store_batch(&mut replies, None, &settings(&fmt))
        .await
        .unwrap();

    let ticket = |n: i64| async move { store.ticket_by_number(n).await.unwrap().unwrap() };
    let (carol, dan, eve) = (
        ticket(numbers[0]).await,
        ticket(numbers[1]).await,
        ticket(numbers[2]).await,
    );
    assert_eq!(carol.last_activity_at, start + chrono::Duration::hours(5));
    assert_eq!(carol.status, "open");
    assert_eq!(dan.last_activity_at, start + chrono::Duration::hours(1));
    assert_eq!(dan.status, "open", "an inbound reply reopens");
    assert_eq!(eve.last_activity_at, start);
    assert_eq!(eve.status, "open");
}
both_backends!(replies_move_each_ticket_forward_in_one_batch);

async fn ticket_numbers_never_repeat(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let mut seen = std::collections::HashSet::new();
    for round in 0..3 {
        let mut batch: Vec<_> = (0..5)
            .map(|i| msg(&format!("n{round}-{i}@x"), "e@example.com", "new", &[]))
            .collect();
        let out = b
            .store
            .store_batch(&mut batch, None, &settings(&fmt))
            .await
            .unwrap();
        for s in out.stored {
            assert!(
                seen.insert(s.ticket_number),
                "number {} reused",
                s.ticket_number
            );
        }
    }
    assert_eq!(seen.len(), 15);
}
both_backends!(ticket_numbers_never_repeat);

async fn a_parent_arriving_after_its_reply_joins_the_reply_ticket(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let store = &b.store;
    // Across batches: the reply is stored first.
    let mut reply = vec![msg("p2@x", "erin@example.com", "Re: Mail", &["p1@x"])];
    let out = store
        .store_batch(&mut reply, None, &settings(&fmt))
        .await
        .unwrap();
    let mut parent = vec![msg("p1@x", "erin@example.com", "Mail", &[])];
    let out2 = store
        .store_batch(&mut parent, None, &settings(&fmt))
        .await
        .unwrap();
    assert_eq!(out2.stored[0].ticket_id, out.stored[0].ticket_id);
    assert_eq!(out2.new_tickets, 0);
    // Within one batch.
    let mut both = vec![
        msg(
            "q3@x",
            "frank@example.com",
            "Re: Re: DNS",
            &["q1@x", "q2@x"],
        ),
        msg("q1@x", "frank@example.com", "DNS", &[]),
    ];
    let out3 = store
        .store_batch(&mut both, None, &settings(&fmt))
        .await
        .unwrap();
    assert_eq!(out3.new_tickets, 1);
    assert_eq!(out3.stored[0].ticket_id, out3.stored[1].ticket_id);
}
both_backends!(a_parent_arriving_after_its_reply_joins_the_reply_ticket);

/// A ticket opened in a batch is new for its first message only: a follow-up stored in
/// the same batch joins it as a reply (acknowledgements key on this).
async fn only_the_opening_message_is_new(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let mut batch = vec![
        msg("o1@x", "olga@example.com", "Disk full", &[]),
        msg("o2@x", "olga@example.com", "Re: Disk full", &["o1@x"]),
        msg("p1@x", "paul@example.com", "Login", &[]),
    ];
    let out = store_all(&b, &mut batch, &fmt).await;
    assert_eq!(out.new_tickets, 2);
    assert_eq!(out.stored[0].ticket_id, out.stored[1].ticket_id);
    let new: Vec<bool> = out.stored.iter().map(|s| s.new_ticket).collect();
    assert_eq!(new, [true, false, true]);
}
both_backends!(only_the_opening_message_is_new);

fn ack_entry(ticket_id: i64, message_id: &str, to: &str) -> qd_store::NewOutboxEntry {
    qd_store::NewOutboxEntry {
        kind: qd_store::OutboxKind::Ack,
        ticket_id: Some(ticket_id),
        message_id: message_id.to_string(),
        in_reply_to: None,
        references: vec![],
        mail_from: String::new(),
        rcpt_to: vec![to.to_string()],
        subject: "We have your message".into(),
        language: Some("en".into()),
        raw: b"Subject: We have your message\r\n\r\nThanks.\r\n".to_vec(),
    }
}

/// Acknowledgements planned from a batch's outcome commit with the batch, under the
/// daily limit; when writing them fails, nothing of the batch is stored (not even the
/// checkpoint), so the batch is fetched again rather than stored unacknowledged.
async fn acknowledgements_commit_with_their_batch(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let cp = |position: &str| Checkpoint {
        source: "imap:test/INBOX".into(),
        uidvalidity: Some(7),
        position: position.into(),
        held: Vec::new(),
    };
    // One ack per new ticket, sender hash = the From address; at most one per sender.
    let plan = |outcome: &qd_store::BatchOutcome, msgs: &[NewMessage]| {
        outcome
            .stored
            .iter()
            .filter(|s| s.new_ticket)
            .map(|s| {
                let from = msgs[s.index].from_addr.clone().unwrap();
                let id = format!("ack-{}@desk.example", s.ticket_number);
                (ack_entry(s.ticket_id, &id, &from), from)
            })
            .collect()
    };
    let acks = qd_store::BatchAcks {
        plan: &plan,
        max_per_day: 1,
    };
    let mut batch = vec![
        msg("a1@x", "ann@customer.example", "first", &[]),
        msg("a2@x", "ann@customer.example", "second", &[]),
        msg("b1@x", "bob@customer.example", "hello", &[]),
    ];
    let (outcome, enqueued) = b
        .store
        .store_batch_with_acks(&mut batch, Some(&cp("3")), &settings(&fmt), Some(&acks))
        .await
        .unwrap();
    assert_eq!(outcome.stored.len(), 3);
    assert!(matches!(enqueued[0], qd_store::EnqueueOutcome::Queued(_)));
    assert!(matches!(
        enqueued[1],
        qd_store::EnqueueOutcome::LimitReached { sent: 1 }
    ));
    assert!(matches!(enqueued[2], qd_store::EnqueueOutcome::Queued(_)));
    for (s, want) in outcome.stored.iter().zip([1, 0, 1]) {
        let entries = b.store.outbox_for_ticket(s.ticket_id).await.unwrap();
        assert_eq!(entries.len(), want, "ticket {}", s.ticket_number);
    }

    // A plan whose rows cannot be written (two entries with one Message-ID, which the
    // outbox keeps unique) fails the whole batch.
    let clash = |outcome: &qd_store::BatchOutcome, _: &[NewMessage]| {
        outcome
            .stored
            .iter()
            .map(|s| {
                let from = format!("sender-{}@customer.example", s.index);
                (ack_entry(s.ticket_id, "same@desk.example", &from), from)
            })
            .collect()
    };
    let failing = qd_store::BatchAcks {
        plan: &clash,
        max_per_day: 5,
    };
    let before = b.store.stats().await.unwrap();
    let mut batch = vec![
        msg("c1@x", "carol@customer.example", "one", &[]),
        msg("d1@x", "dave@customer.example", "two", &[]),
    ];
    let failed = b
        .store
        .store_batch_with_acks(&mut batch, Some(&cp("5")), &settings(&fmt), Some(&failing))
        .await;
    assert!(failed.is_err(), "duplicate outbox Message-IDs must fail");
    let after = b.store.stats().await.unwrap();
    assert_eq!(after.messages, before.messages);
    assert_eq!(after.tickets, before.tickets);
    let kept = b
        .store
        .checkpoint("imap:test/INBOX")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        kept.position, "3",
        "the checkpoint stays before the failed batch"
    );
}
both_backends!(acknowledgements_commit_with_their_batch);

/// A whole thread imported in one batch: the new ticket spans it (retention counts from
/// the last activity), the earliest message dates its creation, and a quarantined
/// follower neither extends nor reopens anything.
async fn a_thread_in_one_batch_dates_its_new_ticket_by_its_last_message(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let store = &b.store;
    let opener = msg("t1@x", "gina@example.com", "Migration", &[]);
    let start = opener.received_at;
    let mut reply = msg("t2@x", "gina@example.com", "Re: Migration", &["t1@x"]);
    reply.received_at = start + chrono::Duration::days(300);
    let mut spam = msg("t3@x", "forger@example.net", "Re: Migration", &["t1@x"]);
    spam.received_at = start + chrono::Duration::days(600);
    spam.verdict = Some(qd_store::MessageVerdict {
        class: "spam".into(),
        score: 12.0,
        tags_json: "[]".into(),
        quarantined: true,
    });
    let mut batch = vec![opener, reply, spam];
    let out = store
        .store_batch(&mut batch, None, &settings(&fmt))
        .await
        .unwrap();
    assert_eq!(out.new_tickets, 1);
    let t = store
        .ticket_by_number(out.stored[0].ticket_number)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t.created_at, start);
    assert_eq!(t.last_activity_at, start + chrono::Duration::days(300));

    // Later: the ticket is closed; quarantined mail that references it leaves it closed
    // and as old as it was.
    store
        .set_ticket_status(t.id, TicketStatus::Closed)
        .await
        .unwrap();
    let subject = format!("Re: Migration [#QD-{}]", t.number);
    let mut later = msg("t4@x", "forger@example.net", &subject, &["t2@x"]);
    later.received_at = start + chrono::Duration::days(900);
    later.verdict = batch[2].verdict.clone();
    let out = store
        .store_batch(&mut [later], None, &settings(&fmt))
        .await
        .unwrap();
    assert_eq!(out.stored[0].ticket_id, t.id, "threaded, held back");
    let t2 = store.ticket_by_number(t.number).await.unwrap().unwrap();
    assert_eq!(t2.status, "closed");
    assert_eq!(t2.last_activity_at, t.last_activity_at);
}
both_backends!(a_thread_in_one_batch_dates_its_new_ticket_by_its_last_message);

/// Another copy of a stored message (same Message-ID, content changed on the way, e.g.
/// a list footer) joins the first copy's ticket instead of opening a second one.
async fn a_second_copy_of_a_message_joins_its_ticket(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let store = &b.store;
    let mut first = vec![msg("same@x", "hal@example.com", "Login fails", &[])];
    let out = store
        .store_batch(&mut first, None, &settings(&fmt))
        .await
        .unwrap();
    let mut copy = msg("same@x", "hal@example.com", "[users] Login fails", &[]);
    copy.content_hash = "hash-of-list-copy".into();
    let mut copy_in_batch = copy.clone();
    copy_in_batch.content_hash = "hash-of-second-list-copy".into();
    let mut other = msg("new@x", "hal@example.com", "Another question", &[]);
    other.content_hash = "hash-of-new".into();
    let mut batch = vec![copy, other, copy_in_batch];
    let out2 = store
        .store_batch(&mut batch, None, &settings(&fmt))
        .await
        .unwrap();
    assert_eq!(
        out2.stored.len(),
        3,
        "different content: stored, not dropped"
    );
    assert_eq!(
        out2.new_tickets, 1,
        "only the unrelated message opens a ticket"
    );
    assert_eq!(out2.stored[0].ticket_id, out.stored[0].ticket_id);
    assert_eq!(out2.stored[2].ticket_id, out.stored[0].ticket_id);
    assert_ne!(out2.stored[1].ticket_id, out.stored[0].ticket_id);
}
both_backends!(a_second_copy_of_a_message_joins_its_ticket);

/// NUL characters (`=00` in a quoted-printable body) cannot be stored in PostgreSQL
/// text; they used to fail the whole batch on every retry. They are dropped on both
/// backends and the batch goes through.
async fn nul_characters_do_not_block_a_batch(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let store = &b.store;
    let mut bad = msg("nul@x", "ivy@example.com", "a\0b", &[]);
    bad.body_text = "line one\0line two".into();
    bad.body_html = Some("<p>x\0</p>".into());
    bad.from_name = Some("Ivy\0".into());
    bad.to = vec!["support@quietdesk.example\0".into()];
    bad.attachments.push(NewAttachment {
        filename: Some("report\0.pdf".into()),
        content_type: "application/pdf".into(),
        size: 10,
        digest: "d".repeat(64),
        quarantined: false,
    });
    let mut batch = vec![bad, msg("ok@x", "joe@example.com", "Fine", &[])];
    let out = store
        .store_batch(&mut batch, None, &settings(&fmt))
        .await
        .unwrap();
    assert_eq!(out.stored.len(), 2);
    let text = store
        .message_texts(&[out.stored[0].message_db_id])
        .await
        .unwrap();
    assert_eq!(text[0].subject, "ab");
    assert_eq!(text[0].body, "line oneline two");
}
both_backends!(nul_characters_do_not_block_a_batch);

/// A sender address longer than any real one (RFC 5321 allows 254 characters) used to
/// exceed PostgreSQL's index row limit on `contacts.address` and fail its whole batch on
/// every retry. It is stored without a contact; the message itself is kept.
async fn an_absurdly_long_sender_address_does_not_block_a_batch(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    // Varied characters: PostgreSQL compresses a run of one letter below its limit.
    let local: String = (0u64..1500)
        .map(|i| format!("{:x}", i.wrapping_mul(2_654_435_761) % 4096))
        .collect();
    let long = format!("{local}@example.org");
    let mut batch = vec![
        msg("long@x", &long, "Hello", &[]),
        msg("fine@x", "kim@example.com", "Fine", &[]),
    ];
    let out = store_all(&b, &mut batch, &fmt).await;
    assert_eq!(out.stored.len(), 2);
    assert_eq!(
        b.store.stats().await.unwrap().contacts,
        1,
        "only kim is a contact"
    );
}
both_backends!(an_absurdly_long_sender_address_does_not_block_a_batch);

/// An acknowledgement quotes the customer's subject and Message-ID; a NUL in either
/// (an encoded-word of one) failed the whole batch on PostgreSQL, and the one-at-a-time
/// retry failed again, so the mail stayed held. The entry is written without it.
async fn an_acknowledgement_with_nul_characters_commits(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let plan = |outcome: &qd_store::BatchOutcome, _: &[NewMessage]| {
        outcome
            .stored
            .iter()
            .map(|s| {
                let mut e = ack_entry(s.ticket_id, "ack-nul@desk.example", "lou@example.com");
                e.subject = "Re: a\0b".into();
                e.in_reply_to = Some("x\0@example.com".into());
                (e, "lou@example.com".to_string())
            })
            .collect()
    };
    let acks = qd_store::BatchAcks {
        plan: &plan,
        max_per_day: 10,
    };
    let mut batch = vec![msg("nul-ack@x", "lou@example.com", "a\0b", &[])];
    let (out, enqueued) = b
        .store
        .store_batch_with_acks(&mut batch, None, &settings(&fmt), Some(&acks))
        .await
        .unwrap();
    assert_eq!(out.stored.len(), 1);
    assert_eq!(enqueued.len(), 1);
}
both_backends!(an_acknowledgement_with_nul_characters_commits);

/// A legal hold set after retention chose a ticket, but before it deletes it, wins:
/// `delete_tickets` checks holds inside its own transaction.
async fn a_hold_set_meanwhile_stops_the_deletion(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let mut batch = vec![
        msg("held@x", "a@example.com", "kept", &[]),
        msg("free@x", "b@example.com", "gone", &[]),
    ];
    let out = store_all(&b, &mut batch, &fmt).await;
    let (held, free) = (out.stored[0].ticket_id, out.stored[1].ticket_id);
    let number = out.stored[0].ticket_number;
    let actor = actor("dpo");
    b.store
        .set_ticket_retention(number, Some(true), None, &actor)
        .await
        .unwrap();
    let counts = b
        .store
        .delete_tickets(&[held, free], Utc::now())
        .await
        .unwrap();
    assert_eq!(counts.tickets, 1, "{counts:?}");
    assert!(b.store.ticket_by_number(number).await.unwrap().is_some());
    assert!(b
        .store
        .ticket_by_number(out.stored[1].ticket_number)
        .await
        .unwrap()
        .is_none());
    assert_eq!(b.store.ticket_messages(held).await.unwrap().len(), 1);
    assert!(b.store.ticket_messages(free).await.unwrap().is_empty());
}
both_backends!(a_hold_set_meanwhile_stops_the_deletion);

/// A ticket that saw activity after the retention run judged it (a reply stored while the
/// run went on) is not deleted with the others: the next run judges it again.
async fn activity_since_the_judgement_stops_the_deletion(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let mut batch = vec![
        msg("busy@x", "a@example.com", "kept", &[]),
        msg("quiet@x", "b@example.com", "gone", &[]),
    ];
    let out = store_all(&b, &mut batch, &fmt).await;
    let ticket = |i: usize| {
        let store = b.store.clone();
        let number = out.stored[i].ticket_number;
        async move { store.ticket_by_number(number).await.unwrap() }
    };
    let busy = ticket(0).await.unwrap();
    assert!(ticket(1).await.is_some());
    // The run judged the busy ticket by its activity of an hour before.
    let mut judged = b.store.retention_rows(0, 10).await.unwrap();
    assert_eq!(judged.len(), 2);
    for row in &mut judged {
        if row.ticket_id == busy.id {
            row.last_activity_at = busy.last_activity_at - chrono::TimeDelta::hours(1);
        }
    }
    let counts = b
        .store
        .delete_due_tickets(&judged, Utc::now())
        .await
        .unwrap();
    assert_eq!(counts.tickets, 1, "{counts:?}");
    assert!(ticket(0).await.is_some());
    assert!(ticket(1).await.is_none());
    assert_eq!(b.store.ticket_messages(busy.id).await.unwrap().len(), 1);
}
both_backends!(activity_since_the_judgement_stops_the_deletion);

/// Search hits are dressed with their texts whatever their number: `search --limit 70000`
/// asks for more ids than either backend takes as parameters of one statement (SQLite
/// 32,766, PostgreSQL 65,535).
async fn texts_for_any_number_of_hits(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let mut batch = vec![
        msg("t1@x", "ida@example.com", "First", &[]),
        msg("t2@x", "jon@example.com", "Second", &[]),
    ];
    b.store
        .store_batch(&mut batch, None, &settings(&fmt))
        .await
        .unwrap();
    let stored = b.store.message_ids_after(0, 10).await.unwrap();
    // The stored ids last, behind many that no message has.
    let mut ids: Vec<i64> = (1_000_000..1_070_000).collect();
    ids.push(stored[1]);
    ids.push(stored[0]);
    let texts = b.store.message_texts(&ids).await.unwrap();
    let subjects: Vec<&str> = texts.iter().map(|t| t.subject.as_str()).collect();
    assert_eq!(subjects, vec!["Second", "First"], "in the order asked");
    assert!(texts.iter().all(|t| t.ticket_number > 0));
}
both_backends!(texts_for_any_number_of_hits);

/// Mail the store deleted (a retention run, quarantine expiry) is not taken back when the
/// same bytes come again (a rescan of a folder that keeps its mail, an archive imported
/// twice): the batch reports it as forgotten and stores nothing. Its Message-ID is
/// remembered hashed, for the rescan's guard. Mail that merely resembles it is stored.
async fn deleted_mail_is_not_taken_back(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let mut batch = vec![
        msg("old@x", "a@example.com", "expired", &[]),
        msg("spam@x", "s@example.net", "quarantined", &[]),
    ];
    let out = store_all(&b, &mut batch, &fmt).await;
    let (ticket, spam) = (out.stored[0].ticket_id, out.stored[1].message_db_id);
    assert!(!b.store.forgot_message_id("old@x").await.unwrap());
    b.store.delete_tickets(&[ticket], Utc::now()).await.unwrap();
    b.store.delete_messages(&[spam], Utc::now()).await.unwrap();
    assert_eq!(b.store.stats().await.unwrap().messages, 0);
    assert!(b.store.forgot_message_id("old@x").await.unwrap());
    assert!(b.store.forgot_message_id("spam@x").await.unwrap());
    assert!(!b.store.forgot_message_id("other@x").await.unwrap());

    let mut again = vec![
        msg("old@x", "a@example.com", "expired", &[]),
        msg("spam@x", "s@example.net", "quarantined", &[]),
        msg("new@x", "a@example.com", "new", &[]),
    ];
    let out = store_all(&b, &mut again, &fmt).await;
    assert_eq!(out.forgotten, vec![0, 1]);
    assert!(out.duplicates.is_empty());
    assert_eq!(out.stored.len(), 1);
    assert_eq!(out.stored[0].index, 2);
    assert_eq!(b.store.stats().await.unwrap().messages, 1);
    assert_eq!(b.store.ticket_of_message_id("old@x").await.unwrap(), None);

    // Deleting the new one as well leaves one record per message, not two.
    let t = out.stored[0].ticket_id;
    b.store.delete_tickets(&[t], Utc::now()).await.unwrap();
    let mut third = vec![msg("new@x", "a@example.com", "new", &[])];
    let out = store_all(&b, &mut third, &fmt).await;
    assert_eq!(out.forgotten, vec![0]);
}
both_backends!(deleted_mail_is_not_taken_back);

/// Makes each of `who` a customer that was active and left long ago (former since 2010).
async fn former_long_ago(b: &Backend, who: &[&str]) {
    use qd_core::CustomerStatus;
    let actor = actor("billing");
    let long_ago = Utc.with_ymd_and_hms(2010, 1, 1, 0, 0, 0).unwrap();
    for who in who {
        let who = qd_store::SubjectRef::Email((*who).into());
        for status in [CustomerStatus::Active, CustomerStatus::Former] {
            b.store
                .set_customer_status(&who, status, long_ago, &actor)
                .await
                .unwrap();
        }
    }
}

/// `who` signs up again now.
async fn signs_up_again(b: &Backend, who: &str) {
    b.store
        .set_customer_status(
            &qd_store::SubjectRef::Email(who.into()),
            qd_core::CustomerStatus::Active,
            Utc::now(),
            &actor("billing"),
        )
        .await
        .unwrap();
}

/// A customer whose status changes while a retention run goes on (back from former to
/// active) keeps the tickets the run judged by the old status: the deletion reads the
/// facts again in its transaction. Before, only the last activity was checked.
async fn a_status_set_since_the_judgement_stops_the_deletion(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let mut batch = vec![
        msg("back@x", "a@example.com", "returning customer", &[]),
        msg("gone@x", "b@example.com", "former customer", &[]),
    ];
    let out = store_all(&b, &mut batch, &fmt).await;
    former_long_ago(&b, &["a@example.com", "b@example.com"]).await;
    let judged = b.store.retention_rows(0, 10).await.unwrap();
    assert!(
        judged
            .iter()
            .all(|r| r.customer_status.as_deref() == Some("former")),
        "{judged:?}"
    );
    // The run found both due; meanwhile A signs up again.
    signs_up_again(&b, "a@example.com").await;
    let counts = b
        .store
        .delete_due_tickets(&judged, Utc::now())
        .await
        .unwrap();
    assert_eq!(counts.tickets, 1, "{counts:?}");
    let (kept, gone) = (out.stored[0].ticket_number, out.stored[1].ticket_number);
    assert!(b.store.ticket_by_number(kept).await.unwrap().is_some());
    assert!(b.store.ticket_by_number(gone).await.unwrap().is_none());
}
both_backends!(a_status_set_since_the_judgement_stops_the_deletion);

/// A former customer whose record a retention run judged past its term, but who signs up
/// again before the deletion, keeps the record: the deletion reads the facts again in its
/// transaction. Before, the ids the run read were deleted whatever they had become.
async fn a_status_set_since_the_judgement_keeps_the_customer(b: Backend) {
    former_long_ago(&b, &["back@example.com", "gone@example.com"]).await;
    let judged = b.store.customers_with_status("former").await.unwrap();
    assert_eq!(judged.len(), 2);
    signs_up_again(&b, "back@example.com").await;
    let counts = b
        .store
        .delete_customers_without_tickets(&judged, Utc::now())
        .await
        .unwrap();
    assert_eq!(counts.customers, 1, "{counts:?}");
    let find = |who: &str| {
        let who = qd_store::SubjectRef::Email(who.into());
        let store = b.store.clone();
        async move { store.find_customer(&who).await.unwrap() }
    };
    assert!(find("back@example.com").await.is_some());
    assert!(find("gone@example.com").await.is_none());
}
both_backends!(a_status_set_since_the_judgement_keeps_the_customer);

/// Quarantined mail released (or put under a hold) while a retention run goes on is not
/// deleted with the rest: the deletion reads the facts again in its transaction. Before,
/// quarantine expiry deleted by id whatever the message had become meanwhile.
async fn a_release_since_the_judgement_stops_the_expiry(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let spam = |id: &str| {
        let mut m = msg(id, "s@example.net", id, &[]);
        m.verdict = Some(qd_store::MessageVerdict {
            class: "spam".into(),
            score: 9.0,
            tags_json: "[]".into(),
            quarantined: true,
        });
        m
    };
    let mut batch = vec![spam("released@x"), spam("expired@x")];
    let out = store_all(&b, &mut batch, &fmt).await;
    let judged = b.store.quarantine_rows(0, 10).await.unwrap();
    assert_eq!(judged.len(), 2, "{judged:?}");
    // Staff release the first while the run goes on.
    let actor = actor("agent");
    b.store
        .release_message(out.stored[0].message_db_id, &actor)
        .await
        .unwrap();
    let counts = b
        .store
        .delete_due_quarantined(&judged, Utc::now())
        .await
        .unwrap();
    assert_eq!(counts.messages, 1, "{counts:?}");
    assert!(b
        .store
        .ticket_of_message_id("released@x")
        .await
        .unwrap()
        .is_some());
    assert!(b
        .store
        .ticket_of_message_id("expired@x")
        .await
        .unwrap()
        .is_none());
}
both_backends!(a_release_since_the_judgement_stops_the_expiry);

/// An anonymised person's mail keeps its rows (statistics) but loses its Message-ID:
/// the Message-ID is remembered hashed, so a rescan that meets the mail again (with
/// rewritten headers, so another content hash) does not take it back as new.
async fn anonymised_mail_is_remembered_as_forgotten(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let mut batch = vec![msg("anon@x", "a@example.com", "anonymise me", &[])];
    b.store
        .store_batch(&mut batch, None, &settings(&fmt))
        .await
        .unwrap();
    let contact = b
        .store
        .find_contact("a@example.com")
        .await
        .unwrap()
        .unwrap();
    let actor = qd_store::Actor {
        name: "dpo",
        reason: Some("request"),
        now: Utc::now(),
    };
    b.store
        .anonymise_people(None, &[contact.id], &actor)
        .await
        .unwrap();
    assert_eq!(b.store.stats().await.unwrap().messages, 1, "the row stays");
    assert_eq!(b.store.ticket_of_message_id("anon@x").await.unwrap(), None);
    assert!(b.store.forgot_message_id("anon@x").await.unwrap());
}
both_backends!(anonymised_mail_is_remembered_as_forgotten);

/// A stored delivery report fails the outbox entry it names in the batch's transaction,
/// and so does the same report stored again (fetched a second time after a crash); a
/// report naming mail we never sent changes nothing.
async fn a_stored_report_fails_its_outbox_entry(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let entry = |mid: &str| qd_store::NewOutboxEntry {
        kind: qd_store::OutboxKind::Reply,
        ticket_id: None,
        message_id: mid.into(),
        in_reply_to: None,
        references: Vec::new(),
        mail_from: "support@quietdesk.example".into(),
        rcpt_to: vec!["ann@example.com".into()],
        subject: "Re: printer".into(),
        language: None,
        raw: b"Subject: Re: printer\r\n\r\nDone.\r\n".to_vec(),
    };
    let now = settings(&fmt).now;
    let ours = b
        .store
        .outbox_enqueue(&entry("qd.1@desk.example"), now)
        .await
        .unwrap();
    let other = b
        .store
        .outbox_enqueue(&entry("qd.2@desk.example"), now)
        .await
        .unwrap();
    let report = |id: &str, of: &str| {
        let mut m = msg(id, "mailer-daemon@mx.example.com", "Undelivered Mail", &[]);
        m.reports_failure = Some(qd_store::ReportedFailure {
            original_message_id: format!("<{of}>"),
            error: "bounced 5.1.1".into(),
        });
        m
    };
    let mut batch = vec![
        report("dsn-1@mx", "qd.1@desk.example"),
        report("dsn-2@mx", "never@sent"),
    ];
    store_all(&b, &mut batch, &fmt).await;
    let e = b.store.outbox_get(ours).await.unwrap().unwrap();
    assert_eq!(e.status, qd_store::OutboxStatus::Failed);
    assert_eq!(e.last_error.as_deref(), Some("bounced 5.1.1"));
    let o = b.store.outbox_get(other).await.unwrap().unwrap();
    assert_eq!(o.status, qd_store::OutboxStatus::Queued);

    // The same report once more, now naming the other entry too, as a duplicate.
    let mut again = vec![report("dsn-1@mx", "qd.2@desk.example")];
    let out = store_all(&b, &mut again, &fmt).await;
    assert_eq!(out.duplicates, vec![0]);
    let o = b.store.outbox_get(other).await.unwrap().unwrap();
    assert_eq!(o.status, qd_store::OutboxStatus::Failed);
}
both_backends!(a_stored_report_fails_its_outbox_entry);
