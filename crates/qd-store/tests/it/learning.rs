//! The filter's learned model in the store: feedback adds its step to its tokens'
//! weights, relabelling takes the old step back exactly, deleting a message forgets the
//! tokens that name its sender and keeps the anonymous rest; quarantine list and release.

use std::collections::HashMap;

use chrono::{TimeZone, Utc};
use qd_core::{Label, TicketRefFormat};
use qd_store::{Actor, MessageVerdict, Store, TeachOutcome, Teaching};

use crate::batch::{msg, settings};
use crate::{both_backends, Backend};

fn weights(m: &qd_store::LearnedModel) -> HashMap<u64, f64> {
    m.tokens.iter().copied().collect()
}

fn close(a: Option<&f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

fn actor() -> Actor<'static> {
    Actor {
        name: "dana",
        reason: Some("feedback test"),
        now: Utc.with_ymd_and_hms(2024, 3, 3, 9, 0, 0).unwrap(),
    }
}

async fn teach(
    store: &Store,
    id: i64,
    label: Label,
    step: f64,
    tokens: &[u64],
    personal: &[u64],
) -> TeachOutcome {
    store
        .teach(
            &Teaching {
                message_db_id: id,
                label,
                step,
                tokens,
                personal,
            },
            &actor(),
        )
        .await
        .unwrap()
}

async fn feedback_is_exact_reversible_and_forgets_people(b: Backend) {
    let fmt = TicketRefFormat::new("[#QD-{n}]").unwrap();
    let store = b.store.clone();
    let mut spam = msg("s1@x", "spammer@bulk.example", "Offer", &[]);
    spam.verdict = Some(MessageVerdict {
        class: "spam".into(),
        score: 9.5,
        tags_json: r#"[{"name":"HELO_BARE_IP","score":2.0,"detail":"x"}]"#.into(),
        quarantined: true,
    });
    let mut batch = vec![spam, msg("h1@x", "alice@example.com", "Question", &[])];
    store
        .store_batch(&mut batch, None, &settings(&fmt))
        .await
        .unwrap();
    let ids = store.message_ids_after(0, 10).await.unwrap();
    let (s_id, h_id) = (ids[0], ids[1]);
    assert_eq!(store.learned_generation().await.unwrap(), 0);
    assert_eq!(store.learned_model().await.unwrap().tokens.len(), 0);

    // Lookup by id and by Message-ID; the quarantine lists the spam only.
    assert_eq!(
        store
            .find_message(&s_id.to_string())
            .await
            .unwrap()
            .unwrap()
            .id,
        s_id
    );
    assert_eq!(
        store.find_message("<h1@x>").await.unwrap().unwrap().id,
        h_id
    );
    assert!(store.find_message("<nobody@x>").await.unwrap().is_none());
    let q = store.quarantined(10).await.unwrap();
    assert_eq!(q.iter().map(|m| m.id).collect::<Vec<_>>(), vec![s_id]);

    // Hashes use all 64 bits, including the sign bit of the database column.
    let big = u64::MAX - 1;
    assert_eq!(
        teach(&store, s_id, Label::Spam, 0.05, &[1, 2, big], &[100]).await,
        TeachOutcome::Learned
    );
    assert_eq!(
        teach(&store, h_id, Label::Ham, -0.03, &[2, 4], &[200]).await,
        TeachOutcome::Learned
    );
    let m = store.learned_model().await.unwrap();
    assert_eq!((m.spam_messages, m.ham_messages), (1, 1));
    let w = weights(&m);
    assert!(close(w.get(&1), 0.05), "{w:?}");
    assert!(close(w.get(&2), 0.02), "{w:?}");
    assert!(close(w.get(&big), 0.05), "{w:?}");
    assert!(close(w.get(&4), -0.03), "{w:?}");
    assert!(close(w.get(&100), 0.05), "{w:?}");
    assert!(close(w.get(&200), -0.03), "{w:?}");
    let g1 = store.learned_generation().await.unwrap();
    assert!(g1 >= 2, "generation {g1}");
    let taught = store.taught(s_id).await.unwrap().unwrap();
    assert_eq!(taught.label, Label::Spam);
    assert!((taught.step - 0.05).abs() < 1e-12);

    // The same label again changes nothing; the other label takes the first one back.
    assert_eq!(
        teach(&store, s_id, Label::Spam, 0.05, &[1, 2, big], &[100]).await,
        TeachOutcome::Unchanged
    );
    assert_eq!(store.learned_generation().await.unwrap(), g1);
    assert_eq!(
        teach(&store, s_id, Label::Ham, -0.04, &[1, 2, big], &[100]).await,
        TeachOutcome::Relabelled
    );
    let m = store.learned_model().await.unwrap();
    assert_eq!((m.spam_messages, m.ham_messages), (0, 2));
    let w = weights(&m);
    assert!(close(w.get(&1), -0.04), "{w:?}");
    assert!(close(w.get(&2), -0.07), "{w:?}");
    assert!(close(w.get(&100), -0.04), "{w:?}");
    assert_eq!(store.taught(s_id).await.unwrap().unwrap().label, Label::Ham);

    // Release takes the message out of quarantine (once).
    let before = store.release_message(s_id, &actor()).await.unwrap();
    assert!(before.quarantined);
    assert!(store.quarantined(10).await.unwrap().is_empty());
    assert!(store.release_message(s_id, &actor()).await.is_err());

    // Deleting Alice's message forgets her address token (200), keeps the structure.
    let g2 = store.learned_generation().await.unwrap();
    store.delete_messages(&[h_id], actor().now).await.unwrap();
    let m = store.learned_model().await.unwrap();
    let w = weights(&m);
    assert_eq!(w.get(&200), None, "the sender's token outlived her message");
    assert!(close(w.get(&4), -0.03), "{w:?}");
    assert!(close(w.get(&2), -0.07), "{w:?}");
    assert_eq!(m.ham_messages, 2, "the anonymous statistics stay");
    assert!(store.learned_generation().await.unwrap() > g2);
    assert_eq!(store.taught(h_id).await.unwrap(), None);
    // Teaching a message that no longer exists is a clear error.
    assert!(store
        .teach(
            &Teaching {
                message_db_id: h_id,
                label: Label::Spam,
                step: 0.1,
                tokens: &[1],
                personal: &[]
            },
            &actor()
        )
        .await
        .is_err());
}
both_backends!(feedback_is_exact_reversible_and_forgets_people);
