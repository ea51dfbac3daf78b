//! One watched mailbox as configured (`[[ingest.mailboxes]]`), and `imap://` URLs.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ImapError;

/// The folder ingested mail is moved to unless configured otherwise.
pub const DEFAULT_PROCESSED_FOLDER: &str = "quietdesk/processed";

/// How the connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tls {
    /// TLS from the first byte (IMAPS, port 993).
    Implicit,
    /// Plain connection upgraded with STARTTLS before authenticating (port 143).
    StartTls,
    /// No TLS at all: refused unless the host is a loopback address (tests, a local
    /// bridge such as a stunnel or Proton Bridge).
    None,
}

/// How we authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Auth {
    /// The IMAP LOGIN command.
    Login,
    /// AUTHENTICATE PLAIN (RFC 4616).
    Plain,
    /// AUTHENTICATE XOAUTH2 with an OAuth access token (Microsoft 365, Google).
    #[serde(rename = "xoauth2")]
    XOauth2,
}

/// Where the password or token comes from. Read at every connect, so rotated secrets
/// (a refreshed OAuth token, a re-mounted secret file) are picked up without a restart.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Secret {
    /// The value itself. Only the binary puts one here (from `password_env` or the
    /// `QUIETDESK_IMAP_PASSWORD` of `--mailbox`); never write one into a config file.
    Password(String),
    /// Name of an environment variable; the binary resolves it into `Password` before
    /// the ingester sees the config (libraries do not read the environment).
    Env(String),
    /// A file whose content (trimmed) is the password or token.
    File(PathBuf),
    /// A command (program and arguments, no shell) whose standard output (trimmed) is a
    /// fresh OAuth access token.
    Command(Vec<String>),
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Secret::Password(_) => f.write_str("Password(<redacted>)"),
            Secret::Env(v) => write!(f, "Env({v})"),
            Secret::File(p) => write!(f, "File({})", p.display()),
            Secret::Command(c) => write!(f, "Command({:?})", c.first()),
        }
    }
}

impl Secret {
    /// The current value: read from the file or produced by the command now.
    pub fn resolve(&self) -> Result<String, ImapError> {
        match self {
            Secret::Password(p) => Ok(p.clone()),
            Secret::Env(var) => Err(ImapError::Config(format!(
                "secret from environment variable {var} was not resolved by the caller"
            ))),
            Secret::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim().to_string())
                .map_err(|e| {
                    ImapError::Config(format!("reading secret file {}: {e}", path.display()))
                }),
            Secret::Command(argv) => {
                let (program, args) = argv
                    .split_first()
                    .ok_or_else(|| ImapError::Config("secret command is empty".to_string()))?;
                let out = std::process::Command::new(program)
                    .args(args)
                    .stdin(std::process::Stdio::null())
                    .output()
                    .map_err(|e| {
                        ImapError::Config(format!("running token command {program}: {e}"))
                    })?;
                if !out.status.success() {
                    return Err(ImapError::Config(format!(
                        "token command {program} exited with {}",
                        out.status
                    )));
                }
                Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
            }
        }
    }
}

/// What happens to a message on the server once it is stored (never before the commit).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AfterIngest {
    /// Move to this folder (created when absent; `/` is the hierarchy separator and is
    /// translated to the server's).
    Move(String),
    /// Set this flag or keyword (e.g. `\\Seen` or `$Quietdesk`).
    Flag(String),
    /// Expunge the message.
    Delete,
    /// Leave it untouched; the checkpoint alone keeps it from being taken twice.
    Keep,
}

impl Default for AfterIngest {
    fn default() -> Self {
        AfterIngest::Move(DEFAULT_PROCESSED_FOLDER.to_string())
    }
}

fn default_folders() -> Vec<String> {
    vec!["INBOX".to_string()]
}
fn default_idle_renew() -> u64 {
    25 * 60
}
fn default_poll() -> u64 {
    60
}
fn default_stall() -> u64 {
    120
}
fn default_held_retry() -> u64 {
    900
}
fn default_auth() -> Auth {
    Auth::Login
}
fn default_tls() -> Tls {
    Tls::Implicit
}

/// One mailbox to ingest from (`[[ingest.mailboxes]]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MailboxConfig {
    /// Short unique name; part of the checkpoint key `imap:<name>/<folder>`, so renaming
    /// a mailbox makes it start over (guarded by the store's duplicate check).
    pub name: String,
    pub host: String,
    /// Default: 993 with implicit TLS, else 143.
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default = "default_tls")]
    pub tls: Tls,
    /// Extra CA certificates (PEM) trusted beside the built-in web PKI roots (a private
    /// CA, or the test CA).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    pub user: String,
    pub secret: Secret,
    #[serde(default = "default_auth")]
    pub auth: Auth,
    /// Folders to watch; each gets its own connection in continuous mode (IDLE watches
    /// one selected folder).
    #[serde(default = "default_folders")]
    pub folders: Vec<String>,
    /// Team that new tickets from this mailbox are routed to.
    #[serde(default)]
    pub team: Option<String>,
    /// What to do with a message on the server after it is stored.
    #[serde(default)]
    pub after: AfterIngest,
    /// Messages larger than this are refused (default: `ingest.max_message_bytes`).
    #[serde(default)]
    pub max_message_bytes: Option<u64>,
    /// Messages per transaction (default: `ingest.batch_size`).
    #[serde(default)]
    pub batch_size: Option<usize>,
    /// IDLE is ended and re-issued after this many seconds (RFC 2177: servers may drop
    /// an IDLE after 30 minutes). Must be below 29 minutes.
    #[serde(default = "default_idle_renew")]
    pub idle_renew_secs: u64,
    /// Seconds between checks on servers without IDLE.
    #[serde(default = "default_poll")]
    pub poll_interval_secs: u64,
    /// A command or a fetch that makes no progress for this many seconds is taken as a
    /// dead connection, which is dropped and replaced.
    #[serde(default = "default_stall")]
    pub stall_timeout_secs: u64,
    /// On a connection that stays up, held mail (not stored for a passing trouble) is
    /// tried again, and left-over after-ingest actions are applied, this often.
    #[serde(default = "default_held_retry")]
    pub held_retry_secs: u64,
    /// The name in the checkpoint key when it is not `name`: a mailbox given as a URL is
    /// named in logs and errors without its user's address (`s…@mail.example.com`), and
    /// keeps the checkpoint key it always had (`imap:<user>@<host>/<folder>`).
    #[serde(skip)]
    pub key_name: Option<String>,
}

impl MailboxConfig {
    /// A config with the defaults above; the caller sets the rest.
    pub fn new(name: &str, host: &str, user: &str, secret: Secret) -> MailboxConfig {
        MailboxConfig {
            name: name.to_string(),
            host: host.to_string(),
            port: None,
            tls: default_tls(),
            ca_file: None,
            user: user.to_string(),
            secret,
            auth: default_auth(),
            folders: default_folders(),
            team: None,
            after: AfterIngest::default(),
            max_message_bytes: None,
            batch_size: None,
            idle_renew_secs: default_idle_renew(),
            poll_interval_secs: default_poll(),
            stall_timeout_secs: default_stall(),
            held_retry_secs: default_held_retry(),
            key_name: None,
        }
    }

    pub fn port(&self) -> u16 {
        self.port.unwrap_or(match self.tls {
            Tls::Implicit => 993,
            _ => 143,
        })
    }

    pub fn idle_renew(&self) -> Duration {
        Duration::from_secs(self.idle_renew_secs)
    }

    pub fn poll_interval(&self) -> Duration {
        Duration::from_secs(self.poll_interval_secs)
    }

    pub fn stall_timeout(&self) -> Duration {
        Duration::from_secs(self.stall_timeout_secs)
    }

    pub fn held_retry(&self) -> Duration {
        Duration::from_secs(self.held_retry_secs)
    }

    /// The checkpoint key of one folder.
    pub fn source_key(&self, folder: &str) -> String {
        let name = self.key_name.as_deref().unwrap_or(&self.name);
        format!("imap:{name}/{folder}")
    }

    /// Checks what serde cannot: ranges and the plain-text rule.
    pub fn validate(&self) -> Result<(), ImapError> {
        let bad = |m: String| Err(ImapError::Config(format!("mailbox {}: {m}", self.name)));
        if self.name.trim().is_empty() {
            return Err(ImapError::Config("a mailbox needs a name".into()));
        }
        if self.host.trim().is_empty() {
            return bad("host is empty".into());
        }
        if self.folders.is_empty() {
            return bad("folders is empty".into());
        }
        if self.idle_renew_secs == 0 || self.idle_renew_secs >= 29 * 60 {
            return bad("idle_renew_secs must be between 1 and 1739 (below 29 minutes)".into());
        }
        if self.poll_interval_secs == 0 || self.stall_timeout_secs == 0 || self.held_retry_secs == 0
        {
            return bad(
                "poll_interval_secs, stall_timeout_secs and held_retry_secs must be positive"
                    .into(),
            );
        }
        if self.batch_size == Some(0) {
            return bad("batch_size must be positive".into());
        }
        if let AfterIngest::Move(f) | AfterIngest::Flag(f) = &self.after {
            if f.trim().is_empty() {
                return bad("the after-ingest folder or flag is empty".into());
            }
        }
        if let AfterIngest::Move(f) = &self.after {
            // INBOX is case-blind (RFC 3501 5.1), and the server's delimiter is not known
            // yet: `a/b` and `a.b` may be one folder.
            let key = |name: &str| {
                let name = name.trim().replace('.', "/");
                if name.eq_ignore_ascii_case("inbox") {
                    "INBOX".to_string()
                } else {
                    name
                }
            };
            if self.folders.iter().any(|w| key(w) == key(f)) {
                return bad(format!(
                    "moves ingested mail into {f}, which it also watches"
                ));
            }
        }
        if self.tls == Tls::None && !is_loopback(&self.host) {
            return bad(format!(
                "tls = \"none\" is only allowed for a loopback host, not {}",
                self.host
            ));
        }
        if matches!(self.secret, Secret::Env(_)) {
            // The binary resolves it; reaching here means it did not.
            return bad("the secret's environment variable was not resolved".into());
        }
        Ok(())
    }
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Parses `imap://user@host:port/FOLDER` or `imaps://…` (STARTTLS for `imap://`, except
/// towards loopback where it is plain; implicit TLS for `imaps://`). The user may be
/// percent-encoded (`support%40example.com`); the folder defaults to INBOX. The password
/// is the caller's (the binary reads `QUIETDESK_IMAP_PASSWORD`).
pub fn parse_mailbox_url(url: &str, password: &str) -> Result<MailboxConfig, ImapError> {
    let bad = |m: &str| {
        ImapError::Config(format!(
            "mailbox URL: {m} (want imap[s]://user@host[:port]/FOLDER)"
        ))
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    let implicit = match scheme.to_ascii_lowercase().as_str() {
        "imap" => false,
        "imaps" => true,
        _ => return Err(bad("scheme must be imap or imaps")),
    };
    let (authority, path) = match rest.split_once('/') {
        Some((a, p)) => (a, p),
        None => (rest, ""),
    };
    let (user, hostport) = authority.rsplit_once('@').ok_or_else(|| bad("no user@"))?;
    let user = percent_decode(user);
    if user.is_empty() {
        return Err(bad("empty user"));
    }
    if user.contains(':') {
        return Err(bad(
            "put the password in QUIETDESK_IMAP_PASSWORD, not in the URL",
        ));
    }
    let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
        let (h, after) = h.split_once(']').ok_or_else(|| bad("unclosed ["))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p.parse::<u16>().map_err(|_| bad("bad port"))?),
            None => None,
        };
        (h.to_string(), port)
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (
                h.to_string(),
                Some(p.parse::<u16>().map_err(|_| bad("bad port"))?),
            ),
            None => (hostport.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(bad("empty host"));
    }
    let folder = percent_decode(path.trim_end_matches('/'));
    let folder = if folder.is_empty() {
        "INBOX".to_string()
    } else {
        folder
    };
    // The user is mostly an address (the support mailbox's): logs show its first
    // character only.
    let first = user.chars().next().map(String::from).unwrap_or_default();
    let mut cfg = MailboxConfig::new(
        &format!("{first}\u{2026}@{host}"),
        &host,
        &user,
        Secret::Password(password.to_string()),
    );
    cfg.key_name = Some(format!("{user}@{host}"));
    cfg.port = port;
    cfg.tls = if implicit {
        Tls::Implicit
    } else if is_loopback(&host) {
        Tls::None
    } else {
        Tls::StartTls
    };
    cfg.folders = vec![folder];
    Ok(cfg)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok());
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.extend_from_slice(bytes.get(i..i + 1).unwrap_or_default());
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn urls_parse_into_configs() {
        let c = parse_mailbox_url(
            "imaps://support%40example.com@mail.example.com/Support/EU",
            "pw",
        )
        .unwrap();
        assert_eq!(c.user, "support@example.com");
        assert_eq!(c.host, "mail.example.com");
        assert_eq!(c.port(), 993);
        assert_eq!(c.tls, Tls::Implicit);
        assert_eq!(c.folders, ["Support/EU"]);
        assert_eq!(c.secret.resolve().unwrap(), "pw");
        // Logs and errors name it without the address; the checkpoint key is unchanged.
        assert_eq!(c.name, "s\u{2026}@mail.example.com");
        assert_eq!(
            c.source_key("Support/EU"),
            "imap:support@example.com@mail.example.com/Support/EU"
        );

        let c = parse_mailbox_url("imap://u@127.0.0.1:1143", "pw").unwrap();
        assert_eq!((c.port(), c.tls), (1143, Tls::None));
        assert_eq!(c.folders, ["INBOX"]);
        let c = parse_mailbox_url("imap://u@mail.example.com/INBOX", "pw").unwrap();
        assert_eq!((c.port(), c.tls), (143, Tls::StartTls));
        let c = parse_mailbox_url("imap://u@[::1]:10143/X", "pw").unwrap();
        assert_eq!(
            (c.host.as_str(), c.port(), c.tls),
            ("::1", 10143, Tls::None)
        );

        for bad in [
            "http://u@h/",
            "imap://h/INBOX",
            "imap://u:pw@h/",
            "imap://u@h:x/",
        ] {
            assert!(parse_mailbox_url(bad, "pw").is_err(), "{bad}");
        }
    }

    #[test]
    fn plain_text_is_refused_off_loopback_and_idle_renewal_is_bounded() {
        let mut c = MailboxConfig::new("m", "mail.example.com", "u", Secret::Password("p".into()));
        assert!(c.validate().is_ok());
        c.tls = Tls::None;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("loopback"), "{e}");
        c.host = "localhost".into();
        assert!(c.validate().is_ok());
        c.idle_renew_secs = 29 * 60;
        assert!(c.validate().is_err());
        c.idle_renew_secs = 60;
        c.after = AfterIngest::Move("INBOX".into());
        assert!(c.validate().is_err(), "moving into a watched folder loops");
        c.after = AfterIngest::Move("Inbox".into());
        assert!(c.validate().is_err(), "INBOX is case-blind");
        c.folders = vec!["Support/Done".into()];
        c.after = AfterIngest::Move("Support.Done".into());
        assert!(c.validate().is_err(), "one folder under either delimiter");
        c.after = AfterIngest::Move("support/done".into());
        assert!(c.validate().is_ok(), "other folders are case-sensitive");
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::Password("hunter2".into());
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
