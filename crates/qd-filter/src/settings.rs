//! [`FilterSettings`]: the `[filter]` section of the configuration, as the file spells it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Settings of the spam and virus filter. Every key is optional; the defaults are the
/// documented behaviour.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FilterSettings {
    /// Score bands; see [`Thresholds`].
    pub thresholds: Thresholds,
    /// Per-tag weight overrides (`TAG_NAME = score`); tags not named keep the defaults
    /// in `verdict::DEFAULT_WEIGHTS`. A weight of 0 disables a tag's effect. Numbers
    /// written as text and lower-case names are accepted (environment overrides arrive
    /// as `learned_ham = "-6"`).
    #[serde(deserialize_with = "weights_from_numbers_or_text")]
    pub weights: BTreeMap<String, f32>,
    /// Host names (or `by` names / authserv-ids) of our own relays. Headers above the
    /// first Received field written by a host not in this list count as added by us:
    /// only those Authentication-Results, Received-SPF and upstream spam verdicts are
    /// believed. Empty: no header verdict is believed.
    pub trusted_relays: Vec<String>,
    /// Our own domains: display names or look-alike domains that claim them are spoofing.
    pub our_domains: Vec<String>,
    /// Directory of ClamAV-format signatures (`*.hdb`, `*.hsb`, `*.ndb`); none by default.
    pub signatures_dir: Option<PathBuf>,
    /// The optional clamd scanner.
    pub clamd: ClamdSettings,
    /// DNS for SPF, DKIM, DMARC and ARC.
    pub dns: DnsSettings,
    /// The writing systems this desk's correspondents use. Text parts or encoded header
    /// words in a charset that serves only another script get `CHARSET_FARAWAY`
    /// (Unicode and ASCII say nothing). Default `["latin"]`; empty turns the rule off.
    pub expected_scripts: Vec<Script>,
}

impl Default for FilterSettings {
    fn default() -> Self {
        FilterSettings {
            thresholds: Thresholds::default(),
            weights: BTreeMap::new(),
            trusted_relays: Vec::new(),
            our_domains: Vec::new(),
            signatures_dir: None,
            clamd: ClamdSettings::default(),
            dns: DnsSettings::default(),
            expected_scripts: vec![Script::Latin],
        }
    }
}

/// A writing system, as far as a legacy charset names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Script {
    Latin,
    Cyrillic,
    Greek,
    Arabic,
    Hebrew,
    Thai,
    /// Chinese, Japanese and Korean charsets.
    Cjk,
}

impl Script {
    pub fn name(self) -> &'static str {
        match self {
            Script::Latin => "latin",
            Script::Cyrillic => "cyrillic",
            Script::Greek => "greek",
            Script::Arabic => "arabic",
            Script::Hebrew => "hebrew",
            Script::Thai => "thai",
            Script::Cjk => "cjk",
        }
    }
}

/// A weight as the configuration spells it: a number, or a number in a string. Tag
/// names are upper case whatever the source (environment keys arrive lower-cased).
#[derive(Deserialize)]
#[serde(untagged)]
enum Weight {
    Number(f32),
    Text(String),
}

fn weights_from_numbers_or_text<'de, D>(d: D) -> Result<BTreeMap<String, f32>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    BTreeMap::<String, Weight>::deserialize(d)?
        .into_iter()
        .map(|(tag, w)| (tag.to_ascii_uppercase(), w))
        .map(|(tag, w)| match w {
            Weight::Number(n) => Ok((tag, n)),
            Weight::Text(t) => match t.trim().parse::<f32>() {
                Ok(n) => Ok((tag, n)),
                Err(_) => Err(serde::de::Error::custom(format!(
                    "weight of {tag}: `{t}` is not a number"
                ))),
            },
        })
        .collect()
}

/// Score bands. A score below `ham` is ham; from `spam` on it is spam; in between it is
/// ham but marked uncertain (staff may want to look); from `reject` on the verdict says
/// the message may be refused at SMTP time.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Thresholds {
    pub ham: f32,
    pub spam: f32,
    pub reject: f32,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            ham: 2.0,
            spam: 5.0,
            reject: 15.0,
        }
    }
}

/// clamd over TCP (`127.0.0.1:3310`) or a Unix socket (`/run/clamav/clamd.ctl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClamdSettings {
    /// `host:port` or an absolute socket path; unset: clamd is not used.
    pub address: Option<String>,
    /// Time for one attachment's whole exchange with clamd (connect, send, reply), in
    /// milliseconds.
    pub timeout_ms: u64,
    /// What a message with attachments gets when clamd cannot be asked, or refuses an
    /// attachment as larger than its StreamMaxLength.
    pub unreachable: UnreachablePolicy,
}

impl Default for ClamdSettings {
    fn default() -> Self {
        ClamdSettings {
            address: None,
            timeout_ms: 5_000,
            unreachable: UnreachablePolicy::Quarantine,
        }
    }
}

/// Never pass silently: `tag` still records that the scan did not happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnreachablePolicy {
    /// Class spam (quarantined) with tag `CLAMD_UNREACHABLE` (or `CLAMD_SIZE_LIMIT`).
    Quarantine,
    /// Tag `CLAMD_UNREACHABLE` (or `CLAMD_SIZE_LIMIT`) with its weight; the score decides.
    Tag,
}

/// DNS for the authentication checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DnsSettings {
    /// Off: only trusted Authentication-Results / Received-SPF headers are used.
    pub enabled: bool,
    /// Name servers to ask, `IP` or `IP:PORT` (UDP, then TCP for long answers); empty:
    /// the system's (`/etc/resolv.conf`).
    pub servers: Vec<String>,
    /// Entries per record type (TXT, A, AAAA, MX, PTR) in the resolver cache.
    pub cache_size: usize,
    /// Per-query timeout, in milliseconds.
    pub timeout_ms: u64,
}

impl Default for DnsSettings {
    fn default() -> Self {
        DnsSettings {
            enabled: false,
            servers: Vec::new(),
            cache_size: 4096,
            timeout_ms: 3_000,
        }
    }
}
