//! qd-outbound against real components: a private SMTP server (Debian python3-aiosmtpd
//! through `qd_testkit::SmtpSink`) and the store on SQLite and on a private PostgreSQL
//! database. Covers the acknowledgement path end to end (plan -> outbox -> SMTP),
//! the loop rules, the daily limit, retries, permanent refusals and bounces.
// Test code: a failed unwrap is a failed test with its location, which is what we want.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod ack;
mod bounce;
mod delivery;
mod settings;

use chrono::{DateTime, TimeZone, Utc};
use qd_core::TicketRefFormat;
use qd_ingest::ack::{AckConfig, AckSettings};
use qd_outbound::{SmtpSettings, TlsMode};
use qd_store::{BatchSettings, PreparedBlob, Store, StoredMessage};

pub const OUR_DOMAIN: &str = "desk.example";
pub const SUPPORT: &str = "support@desk.example";

pub struct Backend {
    pub store: Store,
    pub _dir: tempfile::TempDir,
    pub _pg: Option<qd_testkit::PgDatabase>,
}

pub async fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("qd.db").display());
    let store = Store::connect(&url).await.unwrap();
    Backend {
        store,
        _dir: dir,
        _pg: None,
    }
}

pub async fn postgres() -> Backend {
    let pg = qd_testkit::PgDatabase::create()
        .await
        .expect("PostgreSQL for the outbound tests");
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(pg.url()).await.unwrap();
    Backend {
        store,
        _dir: dir,
        _pg: Some(pg),
    }
}

/// Runs one async scenario on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name($crate::sqlite().await).await;
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name($crate::postgres().await).await;
            }
        }
    };
}

pub fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 9, 0, 0).unwrap()
}

pub fn ticket_ref() -> TicketRefFormat {
    TicketRefFormat::new("[#QD-{n}]").unwrap()
}

pub fn ack_settings(max_per_day: u32) -> AckSettings {
    let cfg = AckConfig {
        from_name: Some("Desk Support".to_string()),
        own_addresses: vec!["help@desk.example".to_string()],
        max_per_sender_per_day: max_per_day,
        ..AckConfig::new(SUPPORT)
    };
    AckSettings::from_config(&cfg, ticket_ref(), OUR_DOMAIN).unwrap()
}

pub fn smtp_settings(sink: &qd_testkit::SmtpSink) -> SmtpSettings {
    let mut s = SmtpSettings::new(sink.host(), sink.port(), SUPPORT, OUR_DOMAIN);
    s.tls = TlsMode::None;
    s.timeout_secs = 5;
    s
}

/// A customer message.
pub fn customer_mail(from: &str, message_id: &str, subject: &str, extra_headers: &str) -> Vec<u8> {
    format!(
        "From: Ann Customer <{from}>\r\n\
To: {SUPPORT}\r\n\
Subject: {subject}\r\n\
Message-ID: <{message_id}>\r\n\
Date: Wed, 25 Nov 2026 08:59:00 +0000\r\n\
{extra_headers}\
MIME-Version: 1.0\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
My printer is on fire.\r\n"
    )
    .into_bytes()
}

/// Stores one raw message through the ingest path; returns its parse and where it went.
pub async fn ingest(
    store: &Store,
    raw: &[u8],
    now: DateTime<Utc>,
) -> (qd_mail::ParsedMail, StoredMessage) {
    let parsed = qd_mail::parse(raw);
    let blob = PreparedBlob::prepare(raw).unwrap();
    let mut batch = vec![qd_ingest::new_message(
        parsed.clone(),
        blob,
        Some("test".into()),
        None,
        None,
        now,
    )];
    let tr = ticket_ref();
    let out = store
        .store_batch(
            &mut batch,
            None,
            &BatchSettings {
                ticket_ref: &tr,
                now,
            },
        )
        .await
        .unwrap();
    (
        parsed,
        out.stored
            .into_iter()
            .next()
            .expect("stored, not a duplicate"),
    )
}

/// The value of the first header `name` in `raw` (unfolded).
pub fn header(raw: &[u8], name: &str) -> Option<String> {
    let text = String::from_utf8_lossy(raw);
    let mut found: Option<String> = None;
    for line in text.split("\r\n") {
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some(f) = found.as_mut() {
                f.push(' ');
                f.push_str(line.trim());
                continue;
            }
        } else if found.is_some() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            if n.eq_ignore_ascii_case(name) {
                found = Some(v.trim().to_string());
            }
        }
    }
    found
}
