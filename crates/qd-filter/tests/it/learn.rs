//! The learner: learns from views, scores, and survives a round trip through JSON.

use qd_filter::{
    Class, Features, Filter, FilterSettings, JudgeContext, Label, Learner, MessageView,
    LEARNING_RATE,
};

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

/// A message's features the way the filter judges it: the rules that fired, and their
/// score as the prior.
fn as_judged(filter: &Filter, learner: &Learner, view: &MessageView) -> Features {
    let verdict = filter.judge(view, &JudgeContext::pinned_to(view));
    let rules: Vec<&str> = verdict.rule_names().collect();
    let prior = qd_filter::learning_prior(verdict.rule_score(), 5.0);
    learner.features(view, &rules).with_prior(prior)
}

fn teach(filter: &Filter, learner: &mut Learner, raw: &[u8], label: Label) -> f64 {
    let f = as_judged(filter, learner, &MessageView::from_raw(raw));
    learner.learn(&f, label)
}

#[test]
fn abstains_until_trained_then_separates() {
    let filter = Filter::new(FilterSettings::default()).unwrap();
    let mut learner = Learner::new();
    let probe_spam = MessageView::from_raw(&message(100, true));
    let probe_ham = MessageView::from_raw(&message(101, false));
    let f = |l: &Learner, v: &MessageView| as_judged(&filter, l, v);
    assert_eq!(learner.probability(&f(&learner, &probe_spam)), None);
    assert_eq!(learner.evidence(&f(&learner, &probe_spam)), None);
    for i in 0..20 {
        teach(&filter, &mut learner, &message(i, true), Label::Spam);
        teach(&filter, &mut learner, &message(i, false), Label::Ham);
    }
    let ps = learner.probability(&f(&learner, &probe_spam)).unwrap();
    let ph = learner.probability(&f(&learner, &probe_ham)).unwrap();
    assert!(ps > 0.9, "spam probability {ps}");
    assert!(ph < 0.1, "ham probability {ph}");

    // The rules alone call the probe ham; what was learned makes it spam.
    let alone = filter.judge(&probe_spam, &JudgeContext::pinned_to(&probe_spam));
    assert_eq!(alone.class, Class::Ham, "{alone:?}");
    let ctx = JudgeContext::pinned_to(&probe_spam).with_learner(&learner);
    let v = filter.judge(&probe_spam, &ctx);
    assert!(v.tags.iter().any(|t| t.name == "LEARNED_SPAM"), "{v:?}");
    assert_eq!(v.class, Class::Spam);
    assert_eq!(v.rule_score(), alone.score, "the rules' share is unchanged");
    let learned_spam = v.score - v.rule_score();
    // The rules already call the ham probe ham: the model's correction to them is small.
    let ctx = JudgeContext::pinned_to(&probe_ham).with_learner(&learner);
    let v = filter.judge(&probe_ham, &ctx);
    assert_eq!(v.class, Class::Ham, "{v:?}");
    let learned_ham = v.score - v.rule_score();
    assert!(
        learned_ham < learned_spam - 4.0,
        "{learned_ham} vs {learned_spam}"
    );
}

/// The model learns its correction to the rules: a message the rules already call
/// spam by far teaches almost nothing as spam, and a great deal as ham.
#[test]
fn learns_the_correction_to_the_rules() {
    let learner = Learner::new();
    let view = MessageView::from_raw(&message(1, true));
    let f = learner.features(&view, &[]);
    let alone = learner.step(&f, Label::Spam);
    let sure = learner.step(&f.clone().with_prior(8.0), Label::Spam);
    let wrong = learner.step(&f.clone().with_prior(8.0), Label::Ham);
    assert!(
        (alone - LEARNING_RATE / 2.0).abs() < 1e-9,
        "p = 0.5 without a prior: {alone}"
    );
    assert!(sure > 0.0 && sure < alone / 100.0, "{sure} vs {alone}");
    // p = σ(8) ≈ 0.9997 learned as ham: nearly a whole step the other way.
    assert!(wrong < -0.99 * LEARNING_RATE, "{wrong}");
}

/// The learned tag is the model's evidence less the margin, within the configured limits.
#[test]
fn the_learned_tag_is_the_evidence_less_the_margin() {
    let view = MessageView::from_raw(&message(1, true));
    let filter = Filter::new(FilterSettings::default()).unwrap();
    let rules = filter.judge(&view, &JudgeContext::pinned_to(&view));
    let tokens = Learner::new()
        .features(&view, &[])
        .all()
        .collect::<Vec<_>>();
    let judge = |weight: f64, settings: FilterSettings| {
        // Ten messages learned and one token carrying all the weight.
        let learner = Learner::from_weights(5, 5, [(tokens[0], weight)]);
        let filter = Filter::new(settings).unwrap();
        let ctx = JudgeContext::pinned_to(&view).with_learner(&learner);
        let v = filter.judge(&view, &ctx);
        let t = v
            .tags
            .iter()
            .find(|t| t.name.starts_with("LEARNED_"))
            .cloned()
            .unwrap();
        (t.name, t.score, v.score - rules.score)
    };
    let (name, score, added) = judge(0.0, FilterSettings::default());
    assert_eq!(name, "LEARNED_HAM");
    assert!(
        (f64::from(score) + qd_filter::LEARNED_MARGIN).abs() < 1e-6,
        "{score}"
    );
    assert!((added - score).abs() < 1e-6);
    let (name, score, _) = judge(4.0, FilterSettings::default());
    assert_eq!(name, "LEARNED_SPAM");
    assert!((f64::from(score) - (4.0 - qd_filter::LEARNED_MARGIN)).abs() < 1e-6);
    // The limits hold; 0 switches a direction off.
    let (_, score, _) = judge(50.0, FilterSettings::default());
    assert_eq!(score, 10.0);
    let mut capped = FilterSettings::default();
    capped.weights.insert("LEARNED_SPAM".into(), 0.0);
    capped.weights.insert("LEARNED_HAM".into(), -3.0);
    assert_eq!(judge(50.0, capped.clone()).1, 0.0);
    assert_eq!(judge(-50.0, capped).1, -3.0);
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

#[test]
fn our_own_hops_are_not_learned() {
    // Two hops on our side (the MX behind a fetch), the border hop where our MX took the
    // message from the sender's relay, and the sender's own submission hop.
    let raw = b"Received: from localhost (localhost [127.0.0.1])\r\n\
        \tby store.inside.example (Postfix) with LMTP id 1A2B3C4D5E;\r\n\
        \tMon, 4 Mar 2024 10:00:07 +0000\r\n\
        Received: from mx.inside.example (mx.inside.example [10.1.2.3])\r\n\
        \tby store.inside.example (Postfix) with ESMTP id 2A2B3C4D5E;\r\n\
        \tMon, 4 Mar 2024 10:00:06 +0000\r\n\
        Received: from relay.sender.example (relay.sender.example [192.0.2.80])\r\n\
        \tby mx.inside.example (Postfix) with ESMTPS id 3A2B3C4D5E;\r\n\
        \tMon, 4 Mar 2024 10:00:05 +0000\r\n\
        Received: from pc.sender.example (pc.sender.example [198.51.100.80])\r\n\
        \tby relay.sender.example (Exim 4.96) with esmtpa id 1rhA2D-0005Ef-1B;\r\n\
        \tMon, 4 Mar 2024 10:00:02 +0000\r\n\
        From: Ivy <ivy@sender.example>\r\n\
        To: help@quietdesk.example\r\n\
        Subject: hello\r\n\
        Date: Mon, 4 Mar 2024 10:00:00 +0000\r\n\
        Message-ID: <ivy.1@sender.example>\r\n\r\nbody\r\n";
    let tokens = Learner::new().tokens(&MessageView::from_raw(raw), &[]);
    let has = |t: &str| tokens.iter().any(|x| x == t);
    // What the receiving side wrote about itself says nothing about the sender.
    assert!(
        !has("rby:inside.example") && !has("rfrom:inside.example"),
        "{tokens:?}"
    );
    assert!(!has("rwith:lmtp") && !has("rwith:esmtps"), "{tokens:?}");
    assert!(!has("rip:127.0.0.0") && !tokens.iter().any(|t| t.starts_with("rip:10.")));
    // The border hop still names the sender's relay; the sender's own hops count whole.
    assert!(has("rfrom:sender.example"), "{tokens:?}");
    assert!(
        has("rby:sender.example") && has("rwith:esmtpa"),
        "{tokens:?}"
    );
    assert!(has("hops:2"), "{tokens:?}");
}
