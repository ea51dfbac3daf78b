//! Master-key rotation: every data key moves to the new master key in one transaction;
//! sealed mail stays readable with the new key and nothing opens with the old one.

use qd_core::TicketRefFormat;
use qd_store::{KeyReport, MasterKey, Store};

use crate::batch::{msg, settings};
use crate::{both_backends, Backend};

async fn rotation_moves_every_key_to_the_new_master_key(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let old = MasterKey::generate();
    let store = b.store.clone().with_master_key(old.clone());
    let mut batch = vec![
        msg("k1@x", "alice@example.com", "Sealed one", &[]),
        msg("k2@x", "bob@example.com", "Sealed two", &[]),
    ];
    store
        .store_batch(&mut batch, None, &settings(&fmt))
        .await
        .unwrap();
    let ids: Vec<i64> = store.message_ids_after(0, 10).await.unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(
        store.check_master_key().await.unwrap(),
        KeyReport {
            live: 2,
            destroyed: 0
        }
    );

    // A wrong key is refused by the check and by a rotation, which then changes nothing.
    let stranger = b.store.clone().with_master_key(MasterKey::generate());
    assert!(stranger.check_master_key().await.is_err());
    assert!(stranger
        .rotate_master_key(MasterKey::generate())
        .await
        .is_err());
    assert_eq!(store.check_master_key().await.unwrap().live, 2);

    let new = MasterKey::generate();
    let (rotated, report) = store.rotate_master_key(new.clone()).await.unwrap();
    assert_eq!(
        report,
        KeyReport {
            live: 2,
            destroyed: 0
        }
    );
    let raw = rotated.raw_message(ids[0]).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&raw).contains("body of k1@x"));

    // A fresh process with the new key reads the mail; one with the old key reads nothing.
    let fresh_new: Store = b.store.clone().with_master_key(new);
    assert_eq!(fresh_new.check_master_key().await.unwrap().live, 2);
    assert!(fresh_new.raw_message(ids[1]).await.unwrap().is_some());
    let fresh_old: Store = b.store.clone().with_master_key(old);
    assert!(fresh_old.check_master_key().await.is_err());
    assert!(fresh_old.raw_message(ids[1]).await.is_err());

    // New mail written after the rotation is sealed under the new key as well.
    let mut later = vec![msg("k3@x", "carol@example.com", "After rotation", &[])];
    rotated
        .store_batch(&mut later, None, &settings(&fmt))
        .await
        .unwrap();
    assert_eq!(fresh_new.check_master_key().await.unwrap().live, 3);
}
both_backends!(rotation_moves_every_key_to_the_new_master_key);

/// A batch that fails after it created its sender's key leaves nothing behind that a
/// retry could trust: the retry creates (and commits) the key again, and its sealed mail
/// opens, in this process and in a fresh one. (The key used to be cached before its
/// transaction committed; the retry then sealed mail with a key no row held.)
async fn a_failed_batch_leaves_no_key_behind_for_its_retry(b: Backend) {
    use qd_store::{BatchAcks, NewOutboxEntry, OutboxKind};
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    // Dana is a known contact (whose id no rollback can hand out again, on either
    // backend) without a key yet: her earlier mail came before the site had a master key.
    let mut earlier = vec![msg("f0@x", "dana@example.com", "Long ago", &[])];
    b.store
        .store_batch(&mut earlier, None, &settings(&fmt))
        .await
        .unwrap();
    let master = MasterKey::generate();
    let store = b.store.clone().with_master_key(master.clone());

    // Two acknowledgements with one Message-ID: the outbox's unique index refuses the
    // second, after the message, its blob and its new key were written.
    let entry = |n: u8| NewOutboxEntry {
        kind: OutboxKind::Ack,
        ticket_id: None,
        message_id: "same@quietdesk.example".into(),
        in_reply_to: None,
        references: vec![],
        mail_from: "support@quietdesk.example".into(),
        rcpt_to: vec!["dana@example.com".into()],
        subject: format!("ack {n}"),
        language: None,
        raw: vec![n],
    };
    let plan = move |_: &qd_store::BatchOutcome, _: &[qd_store::NewMessage]| {
        vec![(entry(1), "h1".to_string()), (entry(2), "h2".to_string())]
    };
    let acks = BatchAcks {
        plan: &plan,
        max_per_day: 10,
    };
    let mut batch = vec![msg("f1@x", "dana@example.com", "First try", &[])];
    store
        .store_batch_with_acks(&mut batch, None, &settings(&fmt), Some(&acks))
        .await
        .expect_err("the duplicate outbox Message-ID fails the batch");
    assert_eq!(store.message_ids_after(0, 10).await.unwrap().len(), 1);
    assert_eq!(store.check_master_key().await.unwrap().live, 0);

    // The retry, in the same process.
    let mut again = vec![msg("f1@x", "dana@example.com", "First try", &[])];
    store
        .store_batch(&mut again, None, &settings(&fmt))
        .await
        .unwrap();
    let ids = store.message_ids_after(0, 10).await.unwrap();
    assert_eq!(ids.len(), 2);
    assert_eq!(store.check_master_key().await.unwrap().live, 1);
    let raw = store.raw_message(ids[1]).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&raw).contains("body of f1@x"));
    let fresh = b.store.clone().with_master_key(master);
    assert!(fresh.raw_message(ids[1]).await.unwrap().is_some());
}
both_backends!(a_failed_batch_leaves_no_key_behind_for_its_retry);

/// `check_blobs` opens every stored raw mail and names those that do not open, with their
/// messages: here one whose key row is gone, as the key-cache bug left them.
async fn the_blob_check_names_mail_that_no_key_opens(b: Backend) {
    use sea_orm::ConnectionTrait;
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let master = MasterKey::generate();
    let store = b.store.clone().with_master_key(master.clone());
    let mut batch = vec![
        msg("c1@x", "erin@example.com", "Kept", &[]),
        msg("c2@x", "frank@example.com", "Lost", &[]),
    ];
    store
        .store_batch(&mut batch, None, &settings(&fmt))
        .await
        .unwrap();
    let mut progress = 0;
    let report = store.check_blobs(&mut |n| progress += n).await.unwrap();
    assert_eq!((report.opened, report.unreadable_count), (2, 0));
    assert_eq!(
        progress, 2,
        "the progress callback counts every blob checked"
    );

    let ids = store.message_ids_after(0, 10).await.unwrap();
    let url = match &b._pg {
        Some(pg) => pg.url().to_string(),
        None => format!("sqlite://{}", b._dir.path().join("qd.db").display()),
    };
    let raw = sea_orm::Database::connect(&url).await.unwrap();
    raw.execute_unprepared(
        "DELETE FROM blob_keys WHERE scope IN (SELECT b.scope FROM blobs b \
         JOIN messages m ON m.blob_id = b.id WHERE m.message_id = 'c2@x')",
    )
    .await
    .unwrap();
    raw.close().await.unwrap();

    // A fresh process: nothing cached.
    let fresh = b.store.clone().with_master_key(master);
    let mut progress = 0;
    let report = fresh.check_blobs(&mut |n| progress += n).await.unwrap();
    assert_eq!((report.opened, report.unreadable_count), (1, 1));
    assert_eq!(progress, 2, "unreadable blobs count as checked too");
    let bad = &report.unreadable[0];
    assert!(bad.scope.starts_with("contact-"), "{bad:?}");
    // The second message of the batch (c2@x) is the one whose key went.
    assert_eq!(bad.message_ids, vec![ids[1]]);
    assert!(fresh.raw_message(bad.message_ids[0]).await.is_err());
}
both_backends!(the_blob_check_names_mail_that_no_key_opens);

/// Reading older mail for its mentions (`record_mentions`) with a master key that does
/// not open it stops with an error and leaves the mail unread, for the right key to read
/// later. Passing over it would let an erasure believe nothing else names the person.
async fn a_wrong_master_key_does_not_pass_for_no_mentions(b: Backend) {
    use sea_orm::{ConnectionTrait, Statement};
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let master = MasterKey::generate();
    let store = b.store.clone().with_master_key(master.clone());
    let mut batch = vec![
        msg("w1@x", "gina@example.com", "One", &[]),
        msg("w2@x", "hank@example.com", "Two", &[]),
    ];
    store
        .store_batch(&mut batch, None, &settings(&fmt))
        .await
        .unwrap();
    assert_eq!(store.record_mentions().await.unwrap(), 0, "nothing older");

    // As if both blobs had been stored before the mentions table existed.
    let url = match &b._pg {
        Some(pg) => pg.url().to_string(),
        None => format!("sqlite://{}", b._dir.path().join("qd.db").display()),
    };
    let raw = sea_orm::Database::connect(&url).await.unwrap();
    raw.execute_unprepared(
        "UPDATE counters SET value = (SELECT MAX(id) + 1 FROM blobs) \
         WHERE name = 'blob_mentions_unread_below'",
    )
    .await
    .unwrap();
    let unread_below = || async {
        let row = raw
            .query_one_raw(Statement::from_string(
                raw.get_database_backend(),
                "SELECT value FROM counters WHERE name = 'blob_mentions_unread_below'",
            ))
            .await
            .unwrap()
            .unwrap();
        row.try_get_by_index::<i64>(0).unwrap()
    };
    let before = unread_below().await;
    assert!(before > 0);

    let stranger = b.store.clone().with_master_key(MasterKey::generate());
    assert!(stranger.record_mentions().await.is_err());
    assert_eq!(unread_below().await, before, "nothing counts as read");
    let keyless = b.store.clone();
    assert!(keyless.record_mentions().await.is_err(), "no key at all");
    assert_eq!(unread_below().await, before);

    let fresh = b.store.clone().with_master_key(master);
    assert_eq!(fresh.record_mentions().await.unwrap(), 2);
    assert_eq!(unread_below().await, 0);
    raw.close().await.unwrap();
}
both_backends!(a_wrong_master_key_does_not_pass_for_no_mentions);
