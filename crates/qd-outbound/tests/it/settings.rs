//! The TOML shapes of `[smtp]` and `[ack]`, with their defaults.

use qd_ingest::ack::AckConfig;
use qd_outbound::{SmtpSettings, TlsMode};

#[test]
fn smtp_settings_defaults() {
    let s: SmtpSettings = toml::from_str(
        r#"
host = "smtp.example.org"
from = "support@desk.example"
our_domain = "desk.example"
username = "desk"
"#,
    )
    .unwrap();
    assert_eq!(s.port, 587);
    assert_eq!(s.tls, TlsMode::StartTls);
    assert_eq!(s.password, None);
    assert_eq!(
        (s.max_attempts, s.backoff_base_secs, s.backoff_max_secs),
        (28, 60, 21600)
    );
    assert_eq!(
        (s.timeout_secs, s.batch, s.poll_secs, s.lease_secs),
        (30, 20, 5, 300)
    );
    assert!(!format!("{s:?}").contains("password: Some"));

    let t: SmtpSettings = toml::from_str(
        "host = \"h\"\nport = 465\ntls = \"tls\"\nfrom = \"a@b\"\nour_domain = \"b\"\n",
    )
    .unwrap();
    assert_eq!((t.port, t.tls), (465, TlsMode::Tls));
    // Secrets never come from the file; unknown keys are refused.
    assert!(toml::from_str::<SmtpSettings>(
        "host = \"h\"\nfrom = \"a@b\"\nour_domain = \"b\"\npassword = \"x\"\n"
    )
    .is_err());
}

#[test]
fn backoff_doubles_and_is_capped() {
    let mut s = SmtpSettings::new("h", 25, "a@b", "b");
    s.backoff_base_secs = 10;
    s.backoff_max_secs = 100;
    for (attempts, base) in [
        (1u32, 10f64),
        (2, 20.0),
        (3, 40.0),
        (4, 80.0),
        (5, 100.0),
        (20, 100.0),
    ] {
        let d = s.backoff(attempts).as_secs_f64();
        assert!(
            d >= base * 0.8 - 1e-9 && d <= base * 1.2 + 1e-9,
            "{attempts}: {d}"
        );
    }
}

#[test]
fn ack_config_defaults() {
    let c: AckConfig = toml::from_str("from = \"support@desk.example\"\n").unwrap();
    assert!(c.enabled && c.only_new_tickets && c.null_envelope_sender);
    assert_eq!(c.max_per_sender_per_day, 3);
    assert_eq!(c.default_language, "en");
    assert_eq!(c.templates_dir, None);
    assert!(c.own_addresses.is_empty());
    assert!(toml::from_str::<AckConfig>("from = \"a@b\"\nbogus = 1\n").is_err());
}
