//! FilterSettings as a config file spells it.

use qd_filter::{
    Filter, FilterError, FilterSettings, JudgeContext, MessageView, Script, UnreachablePolicy,
};

#[test]
fn empty_section_gives_the_documented_defaults() {
    let s: FilterSettings = toml::from_str("").unwrap();
    assert_eq!(s, FilterSettings::default());
    assert_eq!(s.thresholds.spam, 5.0);
    assert!(!s.dns.enabled);
    assert_eq!(s.clamd.unreachable, UnreachablePolicy::Quarantine);
    assert_eq!(s.expected_scripts, [Script::Latin]);
}

/// Which scripts are expected is the desk's choice: a Big5 message is far away for a
/// Latin-only desk, expected for one that also serves Chinese, unjudged with the rule off.
#[test]
fn expected_scripts_decide_what_is_far_away() {
    let raw = b"From: a@example.com\r\nTo: help@quietdesk.example\r\n\
        Subject: =?big5?B?pHWnQA==?=\r\nDate: Mon, 4 Mar 2024 10:00:00 +0000\r\n\
        Message-ID: <1@example.com>\r\n\r\nbody\r\n";
    let view = MessageView::from_raw(raw);
    let fires = |toml: &str| {
        let s: FilterSettings = toml::from_str(toml).unwrap();
        Filter::new(s)
            .unwrap()
            .judge(&view, &JudgeContext::pinned_to(&view))
            .tags
            .iter()
            .any(|t| t.name == "CHARSET_FARAWAY")
    };
    assert!(fires(""));
    assert!(!fires(r#"expected_scripts = ["latin", "cjk"]"#));
    assert!(!fires("expected_scripts = []"));
    let err = toml::from_str::<FilterSettings>(r#"expected_scripts = ["klingon"]"#)
        .unwrap_err()
        .to_string();
    assert!(err.contains("klingon") && err.contains("cyrillic"), "{err}");
}

#[test]
fn full_section_parses() {
    let s: FilterSettings = toml::from_str(
        r#"
        trusted_relays = ["mx.example.org"]
        our_domains = ["example.org"]
        signatures_dir = "/var/lib/quietdesk/signatures"
        [thresholds]
        ham = 1.0
        spam = 6.0
        reject = 20.0
        [weights]
        MIME_HTML_ONLY = 0.5
        [clamd]
        address = "/run/clamav/clamd.ctl"
        timeout_ms = 2000
        unreachable = "tag"
        [dns]
        enabled = true
        cache_size = 100
        "#,
    )
    .unwrap();
    assert_eq!(s.thresholds.spam, 6.0);
    assert_eq!(s.weights.get("MIME_HTML_ONLY"), Some(&0.5));
    assert_eq!(s.clamd.unreachable, UnreachablePolicy::Tag);
    assert_eq!(s.dns.cache_size, 100);
}

#[test]
fn unknown_keys_and_tags_are_refused() {
    assert!(toml::from_str::<FilterSettings>("trusted_relay = []").is_err());
    let mut s = FilterSettings::default();
    s.weights.insert("NO_SUCH_TAG".into(), 1.0);
    assert!(matches!(Filter::new(s), Err(FilterError::UnknownTag(_))));
    let mut s = FilterSettings::default();
    s.thresholds.spam = 50.0;
    assert!(matches!(
        Filter::new(s),
        Err(FilterError::Thresholds { .. })
    ));
}
