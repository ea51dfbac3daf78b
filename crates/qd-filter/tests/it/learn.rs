//! The learner: learns from views, scores, and survives a round trip through JSON.

use qd_filter::{Class, Filter, FilterSettings, JudgeContext, Label, Learner, MessageView};

fn message(i: usize, spam: bool) -> Vec<u8> {
    let (from, mailer, mid) = if spam {
        (
            format!("deals{i}@offers.example.net"),
            "BlastMaster 9",
            format!("<{i}.{i}@offers.example.net>"),
        )
    } else {
        (
            format!("person{i}@example.com"),
            "Thunderbird 115",
            format!("<thread-{i}@example.com>"),
        )
    };
    format!(
        "Received: from mail.example.com (mail.example.com [192.0.2.10])\n\
         \tby mx.quietdesk.example (Postfix) with ESMTPS id {i};\n\
         \tMon, 4 Mar 2024 10:00:05 +0000\n\
         From: <{from}>\nTo: help@quietdesk.example\nSubject: s\n\
         Date: Mon, 4 Mar 2024 10:00:00 +0000\nMessage-ID: {mid}\nX-Mailer: {mailer}\n\n\
         body {i}\n"
    )
    .into_bytes()
}

#[test]
fn abstains_until_trained_then_separates() {
    let mut learner = Learner::new();
    let probe_spam = MessageView::from_raw(&message(100, true));
    let probe_ham = MessageView::from_raw(&message(101, false));
    assert_eq!(learner.probability(&probe_spam), None);
    for i in 0..20 {
        learner.learn(&MessageView::from_raw(&message(i, true)), Label::Spam);
        learner.learn(&MessageView::from_raw(&message(i, false)), Label::Ham);
    }
    let ps = learner.probability(&probe_spam).unwrap();
    let ph = learner.probability(&probe_ham).unwrap();
    assert!(ps > 0.9, "spam probability {ps}");
    assert!(ph < 0.1, "ham probability {ph}");

    let filter = Filter::new(FilterSettings::default()).unwrap();
    let ctx = JudgeContext::pinned_to(&probe_spam).with_learner(&learner);
    let v = filter.judge(&probe_spam, &ctx);
    assert!(v.tags.iter().any(|t| t.name == "LEARNED_SPAM"), "{v:?}");
    assert_eq!(v.class, Class::Spam);
}

#[test]
fn round_trips_through_json_and_unlearns() {
    let mut learner = Learner::new();
    let view = MessageView::from_raw(&message(1, true));
    learner.learn(&view, Label::Spam);
    let json = serde_json::to_string(&learner).unwrap();
    let back: Learner = serde_json::from_str(&json).unwrap();
    assert_eq!(back, learner);
    learner.unlearn(&view, Label::Spam);
    assert_eq!(learner.spam_messages, 0);
    assert_eq!(
        serde_json::to_value(&learner).unwrap()["tokens"]
            .as_object()
            .unwrap()
            .values()
            .filter(|v| v[0] != 0 || v[1] != 0)
            .count(),
        0
    );
}

#[test]
fn our_own_domains_are_never_learned() {
    let learner = Learner::new().with_excluded_domains(vec!["example.com".into()]);
    let tokens = learner.tokens(&MessageView::from_raw(&message(3, false)));
    assert!(
        !tokens.iter().any(|t| t.contains("example.com")),
        "{tokens:?}"
    );
    assert!(tokens.iter().any(|t| t.starts_with("xm:")));
}
