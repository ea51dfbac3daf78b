//! FilterSettings as a config file spells it.

use qd_filter::{Filter, FilterError, FilterSettings, UnreachablePolicy};

#[test]
fn empty_section_gives_the_documented_defaults() {
    let s: FilterSettings = toml::from_str("").unwrap();
    assert_eq!(s, FilterSettings::default());
    assert_eq!(s.thresholds.spam, 5.0);
    assert!(!s.dns.enabled);
    assert_eq!(s.clamd.unreachable, UnreachablePolicy::Quarantine);
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
