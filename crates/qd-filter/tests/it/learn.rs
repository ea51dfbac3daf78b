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
    let f = |l: &Learner, v: &MessageView| l.features(v, &[]);
    assert_eq!(learner.probability(&f(&learner, &probe_spam)), None);
    for i in 0..20 {
        let spam = f(&learner, &MessageView::from_raw(&message(i, true)));
        learner.learn(&spam, Label::Spam);
        let ham = f(&learner, &MessageView::from_raw(&message(i, false)));
        learner.learn(&ham, Label::Ham);
    }
    let ps = learner.probability(&f(&learner, &probe_spam)).unwrap();
    let ph = learner.probability(&f(&learner, &probe_ham)).unwrap();
    assert!(ps > 0.9, "spam probability {ps}");
    assert!(ph < 0.1, "ham probability {ph}");

    let filter = Filter::new(FilterSettings::default()).unwrap();
    let ctx = JudgeContext::pinned_to(&probe_spam).with_learner(&learner);
    let v = filter.judge(&probe_spam, &ctx);
    assert!(v.tags.iter().any(|t| t.name == "LEARNED_SPAM"), "{v:?}");
    assert_eq!(v.class, Class::Spam);
}

#[test]
fn round_trips_through_json_and_unlearns_exactly() {
    let mut learner = Learner::new();
    let first = learner.features(&MessageView::from_raw(&message(1, true)), &[]);
    let second = learner.features(&MessageView::from_raw(&message(2, false)), &["HTML_ONLY"]);
    learner.learn(&first, Label::Spam);
    let after_first = learner.clone();
    let step = learner.learn(&second, Label::Ham);
    assert!(step < 0.0, "a ham step lowers the weights: {step}");
    let json = serde_json::to_string(&learner).unwrap();
    let back: Learner = serde_json::from_str(&json).unwrap();
    assert_eq!(back, learner);
    // Taking the second message back leaves the model as it was before it.
    learner.unlearn(&second, Label::Ham, step);
    assert_eq!(learner.ham_messages, 0);
    assert_eq!(learner.len(), after_first.len());
    let a = serde_json::to_value(&learner).unwrap();
    let b = serde_json::to_value(&after_first).unwrap();
    for (h, w) in b["weights"].as_object().unwrap() {
        let got = a["weights"][h].as_f64().unwrap();
        assert!(
            (got - w.as_f64().unwrap()).abs() < 1e-12,
            "{h}: {got} vs {w}"
        );
    }
}

#[test]
fn personal_tokens_are_the_sender_addresses_only() {
    let learner = Learner::new();
    let view = MessageView::from_raw(&message(7, false));
    let f = learner.features(&view, &["MISSING_DATE"]);
    // From carries one address; nothing else in the message names a person.
    assert_eq!(f.personal.len(), 1, "{:?}", learner.tokens(&view, &[]));
    assert!(f.structural.len() > 20);
    assert!(!f.structural.contains(&f.personal[0]));
    // The rules that fired are features too.
    assert!(learner
        .tokens(&view, &["MISSING_DATE"])
        .contains(&"rule:MISSING_DATE".to_string()));
}

#[test]
fn our_own_domains_are_never_learned() {
    let learner = Learner::new().with_excluded_domains(vec!["example.com".into()]);
    let tokens = learner.tokens(&MessageView::from_raw(&message(3, false)), &[]);
    assert!(
        !tokens.iter().any(|t| t.contains("example.com")),
        "{tokens:?}"
    );
    assert!(tokens.iter().any(|t| t.starts_with("xm:")));
}
