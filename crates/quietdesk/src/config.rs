//! Configuration: a raw serde mirror of the TOML file (every key documented, unknown keys
//! refused), merged from the built-in defaults, an optional file and
//! `QUIETDESK__SECTION__KEY` environment variables, then validated into [`Settings`].
//! config/quietdesk.toml is the documented default file; a test keeps it equal to
//! [`RawConfig::default`].

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use qd_core::TicketRefFormat;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub storage: RawStorage,
    pub database: RawDatabase,
    pub http: RawHttp,
    pub threading: RawThreading,
    pub ingest: RawIngest,
    pub search: RawSearch,
    pub privacy: RawPrivacy,
    pub retention: RawRetention,
    /// The header-and-signature filter (see qd_filter::FilterSettings).
    pub filter: qd_filter::FilterSettings,
    /// Acknowledgements of new tickets (none unless configured).
    #[serde(default)]
    pub ack: Option<qd_ingest::ack::AckConfig>,
    /// The SMTP relay the outbox worker sends through (none unless configured).
    #[serde(default)]
    pub smtp: Option<qd_outbound::SmtpSettings>,
    pub log: RawLog,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStorage {
    /// Directory for the SQLite file (which also holds the raw mail) and the search index.
    /// `--data-dir` overrides it.
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDatabase {
    /// Database URL. Empty: the embedded SQLite file `<data_dir>/quietdesk.db`.
    /// PostgreSQL: `postgres://user@host:5432/db`; put the password in the environment
    /// (`QUIETDESK__DATABASE__URL`) or in `url_file`, never in this file.
    pub url: String,
    /// File whose content is the database URL (for container secrets). Wins over `url`.
    pub url_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    /// Address the web server listens on.
    pub listen: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawThreading {
    /// How a ticket number appears in subjects; `{n}` is the number.
    pub ticket_ref: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngest {
    /// Messages larger than this many bytes are refused with a reason.
    pub max_message_bytes: u64,
    /// Messages stored per database transaction.
    pub batch_size: usize,
    /// Team that new tickets from imports are routed to (empty: none).
    pub team: String,
    /// Judge IMAP mail with the `[filter]` before it is stored.
    pub filter: bool,
    /// IMAP mailboxes to ingest from (`[[ingest.mailboxes]]`; none by default).
    #[serde(default)]
    pub mailboxes: Vec<qd_ingest::imap::MailboxConfig>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSearch {
    /// Memory budget of the index writer, in MiB.
    pub writer_heap_mb: usize,
    /// Indexing threads.
    pub writer_threads: usize,
    /// Commit the index after this many queued changes during bulk work.
    pub commit_every: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPrivacy {
    /// File holding the master key (64 hex digits) that seals every per-person blob key.
    /// Empty: `<data_dir>/master.key`, created on first start. `QUIETDESK_MASTER_KEY`
    /// (the key itself) wins over both.
    pub master_key_file: String,
    /// Keep third parties' IP addresses whole in stored Received headers (default: truncate
    /// IPv4 to /24 and IPv6 to /48).
    pub keep_full_ips: bool,
    /// Include internal staff notes in data-subject exports.
    pub export_include_notes: bool,
    /// Name recorded as the actor of CLI reads and changes when `--actor` is not given
    /// (empty: the operating-system user).
    pub cli_actor: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRetention {
    /// Customer correspondence is deleted this long after the customer became former.
    pub customer_after_former: qd_core::Span,
    /// Requests from non-customers are deleted this long after the ticket's last activity.
    pub non_customer_after_activity: qd_core::Span,
    /// Quarantined spam is deleted this long after receipt.
    pub quarantined_spam: qd_core::Span,
    /// Mail with a virus verdict is deleted this long after receipt.
    pub virus: qd_core::Span,
    /// Staff-access audit events are deleted this long after the access.
    pub staff_access_audit: qd_core::Span,
    /// Tickets marked as tax/VAT evidence are kept at least this long after last activity.
    pub tax_evidence: qd_core::Span,
    /// `serve` runs retention every this many hours (0: never; run it from cron instead).
    pub run_every_hours: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `quietdesk=debug,info`.
    /// `RUST_LOG` wins when set.
    pub level: String,
}

impl Default for RawConfig {
    /// The built-in defaults; config/quietdesk.toml documents exactly these.
    fn default() -> Self {
        RawConfig {
            storage: RawStorage {
                data_dir: PathBuf::from("./data"),
            },
            database: RawDatabase {
                url: String::new(),
                url_file: None,
            },
            http: RawHttp {
                listen: "127.0.0.1:8080".into(),
            },
            threading: RawThreading {
                ticket_ref: "[#QD-{n}]".into(),
            },
            ingest: RawIngest {
                max_message_bytes: 50 * 1024 * 1024,
                batch_size: 2000,
                team: String::new(),
                filter: true,
                mailboxes: Vec::new(),
            },
            search: RawSearch {
                writer_heap_mb: 128,
                writer_threads: 1,
                commit_every: 50_000,
            },
            privacy: RawPrivacy {
                master_key_file: String::new(),
                keep_full_ips: false,
                export_include_notes: false,
                cli_actor: String::new(),
            },
            retention: {
                let p = qd_core::RetentionPolicy::default();
                RawRetention {
                    customer_after_former: p.customer_after_former,
                    non_customer_after_activity: p.non_customer_after_activity,
                    quarantined_spam: p.quarantined_spam,
                    virus: p.virus,
                    staff_access_audit: p.staff_access_audit,
                    tax_evidence: p.tax_evidence,
                    run_every_hours: 24,
                }
            },
            filter: qd_filter::FilterSettings::default(),
            ack: None,
            smtp: None,
            log: RawLog {
                level: "info".into(),
            },
        }
    }
}

/// Validated settings, passed down explicitly.
#[derive(Debug, Clone)]
pub struct Settings {
    pub data_dir: PathBuf,
    pub database_url: String,
    pub index_dir: PathBuf,
    pub listen: std::net::SocketAddr,
    pub ticket_ref: TicketRefFormat,
    pub ingest: qd_ingest::ImportSettings,
    /// IMAP mailboxes; secrets named by environment variables are resolved by the
    /// command that uses them.
    pub mailboxes: Vec<qd_ingest::imap::MailboxConfig>,
    pub writer_heap_bytes: usize,
    pub writer_threads: usize,
    pub commit_every: usize,
    pub log_level: String,
    /// `None`: `<data_dir>/master.key`.
    pub master_key_file: Option<PathBuf>,
    /// The master key itself, from `QUIETDESK_MASTER_KEY` (set by `commands::run`).
    pub master_key_hex: Option<String>,
    pub export_include_notes: bool,
    pub cli_actor: String,
    /// Who the audit trail names for this process's reads and changes (set by
    /// `commands::run` from --actor, privacy.cli_actor or the OS user).
    pub actor: String,
    pub retention: qd_core::RetentionPolicy,
    pub retention_every: Option<std::time::Duration>,
    pub filter: qd_filter::FilterSettings,
    /// Judge ingested mail with `filter`.
    pub filter_ingest: bool,
    /// Acknowledgement settings (validated), when `[ack]` is configured.
    pub ack: Option<qd_ingest::ack::AckSettings>,
    /// The outbox worker's relay, when `[smtp]` is configured (password from
    /// `QUIETDESK_SMTP_PASSWORD`, set by `commands::run`).
    pub smtp: Option<qd_outbound::SmtpSettings>,
}

/// Merges defaults, the file (if any) and the environment.
pub fn load(file: Option<&Path>, env: &[(String, String)]) -> Result<RawConfig> {
    let mut fig = Figment::from(Serialized::defaults(RawConfig::default()));
    if let Some(f) = file {
        if !f.is_file() {
            bail!("config file {} does not exist", f.display());
        }
        fig = fig.merge(Toml::file(f));
    }
    // The environment is read once, in main, and passed in, so tests can pass their own.
    let pairs: Vec<(String, String)> = env
        .iter()
        .filter(|(k, _)| k.starts_with("QUIETDESK__"))
        .cloned()
        .collect();
    // A value is read as TOML when the key takes that type (`4.5`, `true`, `-3`,
    // `["latin", "cjk"]`), else as text: `QUIETDESK__HTTP__LISTEN=8080` stays a string
    // for a string key. Each is tried against the defaults and the file alone, so one
    // bad variable does not change how the others are read.
    let base = fig.clone();
    for (k, v) in pairs {
        let key = k["QUIETDESK__".len()..].to_lowercase().replace("__", ".");
        let typed = format!("{key} = {v}");
        // One line: a value never adds keys of its own.
        let fits = !v.contains(['\n', '\r'])
            && base
                .clone()
                .merge(Toml::string(&typed))
                .extract::<RawConfig>()
                .is_ok();
        if fits {
            fig = fig.merge(Toml::string(&typed));
        } else {
            fig = fig.merge(Serialized::default(&key, v));
        }
    }
    fig.extract().context("invalid configuration")
}

impl RawConfig {
    pub fn validate(self, data_dir_override: Option<&Path>) -> Result<Settings> {
        let data_dir = data_dir_override
            .map(Path::to_path_buf)
            .unwrap_or(self.storage.data_dir);
        let database_url = match &self.database.url_file {
            Some(f) => std::fs::read_to_string(f)
                .with_context(|| format!("reading database.url_file {}", f.display()))?
                .trim()
                .to_string(),
            None => self.database.url.clone(),
        };
        let database_url = if database_url.is_empty() {
            format!(
                "sqlite://{}?mode=rwc",
                data_dir.join("quietdesk.db").display()
            )
        } else {
            database_url
        };
        if !(database_url.starts_with("sqlite:") || database_url.starts_with("postgres")) {
            bail!("database.url must start with sqlite: or postgres:// (got another scheme)");
        }
        let listen = self
            .http
            .listen
            .parse()
            .with_context(|| format!("http.listen `{}` is not ip:port", self.http.listen))?;
        let ticket_ref = TicketRefFormat::new(&self.threading.ticket_ref)?;
        if self.ingest.batch_size == 0 || self.ingest.batch_size > 10_000 {
            bail!("ingest.batch_size must be between 1 and 10000");
        }
        if self.ingest.max_message_bytes < 1024 {
            bail!("ingest.max_message_bytes must be at least 1024");
        }
        if self.search.writer_heap_mb < 16 {
            bail!("search.writer_heap_mb must be at least 16 (tantivy's minimum)");
        }
        let team = (!self.ingest.team.trim().is_empty()).then(|| self.ingest.team.clone());
        let mut names = std::collections::HashSet::new();
        for m in &self.ingest.mailboxes {
            if !names.insert(m.name.as_str()) {
                bail!("ingest.mailboxes: the name {} is used twice", m.name);
            }
        }
        let ack = match &self.ack {
            Some(a) => {
                // Message-IDs of our mail use the relay's domain, else the From domain.
                let domain = match &self.smtp {
                    Some(s) => s.our_domain.clone(),
                    None => a.from.rsplit('@').next().unwrap_or("localhost").to_string(),
                };
                Some(
                    qd_ingest::ack::AckSettings::from_config(a, ticket_ref.clone(), &domain)
                        .context("[ack]")?,
                )
            }
            None => None,
        };
        Ok(Settings {
            filter_ingest: self.ingest.filter,
            ack,
            smtp: self.smtp,
            index_dir: data_dir.join("index"),
            data_dir,
            database_url,
            listen,
            ingest: qd_ingest::ImportSettings {
                max_message_bytes: self.ingest.max_message_bytes,
                batch_size: self.ingest.batch_size,
                ticket_ref: ticket_ref.clone(),
                team,
                keep_full_ips: self.privacy.keep_full_ips,
            },
            mailboxes: self.ingest.mailboxes,
            ticket_ref,
            writer_heap_bytes: self.search.writer_heap_mb * 1024 * 1024,
            writer_threads: self.search.writer_threads.max(1),
            commit_every: self.search.commit_every.max(1),
            log_level: self.log.level,
            master_key_file: (!self.privacy.master_key_file.trim().is_empty())
                .then(|| PathBuf::from(self.privacy.master_key_file.trim())),
            master_key_hex: None,
            export_include_notes: self.privacy.export_include_notes,
            actor: String::new(),
            cli_actor: self.privacy.cli_actor,
            retention: qd_core::RetentionPolicy {
                customer_after_former: self.retention.customer_after_former,
                non_customer_after_activity: self.retention.non_customer_after_activity,
                quarantined_spam: self.retention.quarantined_spam,
                virus: self.retention.virus,
                staff_access_audit: self.retention.staff_access_audit,
                tax_evidence: self.retention.tax_evidence,
            },
            filter: self.filter,
            retention_every: (self.retention.run_every_hours > 0)
                .then(|| std::time::Duration::from_secs(self.retention.run_every_hours * 3600)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_file() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/quietdesk.toml")
    }

    #[test]
    fn documented_default_file_matches_the_built_in_defaults() {
        let text = std::fs::read_to_string(repo_file()).unwrap();
        let parsed: RawConfig = toml::from_str(&text).expect("config/quietdesk.toml parses");
        assert_eq!(
            parsed,
            RawConfig::default(),
            "config/quietdesk.toml drifted from RawConfig::default()"
        );
        // Every key is documented by a comment line right above it.
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') || l.starts_with('[') {
                continue;
            }
            assert!(
                i > 0 && lines[i - 1].trim().starts_with('#'),
                "key without a comment: {l}"
            );
        }
    }

    #[test]
    fn environment_overrides_file_and_defaults() {
        let env = vec![
            (
                "QUIETDESK__INGEST__BATCH_SIZE".to_string(),
                "42".to_string(),
            ),
            (
                "QUIETDESK__HTTP__LISTEN".to_string(),
                "127.0.0.1:9".to_string(),
            ),
            ("OTHER".to_string(), "x".to_string()),
        ];
        let raw = load(Some(&repo_file()), &env).unwrap();
        assert_eq!(raw.ingest.batch_size, 42);
        // Negative numbers arrive as text from the environment; weights take them.
        let weights = vec![(
            "QUIETDESK__FILTER__WEIGHTS__LEARNED_HAM".to_string(),
            "-4.5".to_string(),
        )];
        let raw_w = load(Some(&repo_file()), &weights).unwrap();
        assert_eq!(raw_w.filter.weights.get("LEARNED_HAM"), Some(&-4.5));
        assert!(qd_filter::Filter::new(raw_w.filter.clone()).is_ok());
        let bad = vec![(
            "QUIETDESK__FILTER__WEIGHTS__LEARNED_HAM".to_string(),
            "minus four".to_string(),
        )];
        let err = load(Some(&repo_file()), &bad).unwrap_err();
        assert!(format!("{err:#}").contains("not a number"), "{err:#}");
        assert_eq!(raw.http.listen, "127.0.0.1:9");
        assert_eq!(raw.threading.ticket_ref, "[#QD-{n}]");

        // Fractions, booleans and lists take their key's type; text that looks like a
        // number stays text for a text key.
        let typed = vec![
            (
                "QUIETDESK__FILTER__THRESHOLDS__SPAM".to_string(),
                "4.5".to_string(),
            ),
            (
                "QUIETDESK__FILTER__DNS__ENABLED".to_string(),
                "true".to_string(),
            ),
            (
                "QUIETDESK__FILTER__EXPECTED_SCRIPTS".to_string(),
                r#"["latin", "cjk"]"#.to_string(),
            ),
            ("QUIETDESK__HTTP__LISTEN".to_string(), "8080".to_string()),
        ];
        let raw_t = load(Some(&repo_file()), &typed).unwrap();
        assert_eq!(raw_t.filter.thresholds.spam, 4.5);
        assert!(raw_t.filter.dns.enabled);
        assert_eq!(
            raw_t.filter.expected_scripts,
            [qd_filter::Script::Latin, qd_filter::Script::Cjk]
        );
        assert_eq!(raw_t.http.listen, "8080");
        let bad = vec![(
            "QUIETDESK__FILTER__THRESHOLDS__SPAM".to_string(),
            "high".to_string(),
        )];
        let err = load(Some(&repo_file()), &bad).unwrap_err();
        assert!(format!("{err:#}").contains("thresholds.spam"), "{err:#}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("q.toml");
        std::fs::write(&f, "[ingest]\nbatch_sise = 3\n").unwrap();
        let err = load(Some(&f), &[]).unwrap_err();
        assert!(format!("{err:#}").contains("batch_sise"), "{err:#}");

        let mut raw = RawConfig::default();
        raw.threading.ticket_ref = "no placeholder".into();
        assert!(raw.validate(None).is_err());
    }

    #[test]
    fn data_dir_override_places_everything_under_it() {
        let s = RawConfig::default()
            .validate(Some(Path::new("/tmp/qd-x")))
            .unwrap();
        assert_eq!(s.database_url, "sqlite:///tmp/qd-x/quietdesk.db?mode=rwc");
        assert_eq!(s.index_dir, Path::new("/tmp/qd-x/index"));
    }
}
