//! Sender authentication: SPF (RFC 7208), DKIM (RFC 6376), DMARC (RFC 7489) and ARC
//! (RFC 8617).
//!
//! Two sources, one set of tags. With DNS, [`Authenticator::authenticate`] runs
//! mail-auth's standard algorithms over the raw message through a bounded caching
//! resolver and yields an [`AuthOutcome`] that the caller hands to the judge in
//! [`crate::JudgeContext::auth`] (the rules still see only the outcome). Without DNS,
//! `Authentication-Results` (RFC 8601) and `Received-SPF` fields count only when one of
//! our trusted relays added them: above the first untrusted Received, and for
//! Authentication-Results with one of our authserv-ids.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mail_auth::common::resolver::ToFqdn;
use mail_auth::dmarc::verify::DmarcParameters;
use mail_auth::hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolverConfig, ResolverOpts,
};
use mail_auth::spf::verify::SpfParameters;
use mail_auth::SpfOutput;
use mail_auth::{
    AuthenticatedMessage, DkimResult, DmarcResult, MessageAuthenticator, Parameters, RecordSet,
    ResolverCache, SpfResult, Txt, MX,
};
use qd_mail::MessageView;
use serde::{Deserialize, Serialize};

use crate::settings::DnsSettings;
use crate::util::{host_in_domain, Hits};
use crate::FilterError;

/// One method's result, as RFC 8601 names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthResult {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
}

impl AuthResult {
    fn parse(word: &str) -> Option<AuthResult> {
        Some(match word.to_ascii_lowercase().as_str() {
            "pass" => AuthResult::Pass,
            "fail" | "hardfail" => AuthResult::Fail,
            "softfail" => AuthResult::SoftFail,
            "neutral" | "policy" => AuthResult::Neutral,
            "none" => AuthResult::None,
            "temperror" => AuthResult::TempError,
            "permerror" => AuthResult::PermError,
            _ => return None,
        })
    }
}

/// What authentication found for one message.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthOutcome {
    pub spf: Option<AuthResult>,
    /// Pass when any signature passed; otherwise the first signature's result.
    pub dkim: Option<AuthResult>,
    pub dmarc: Option<AuthResult>,
    pub arc: Option<AuthResult>,
    /// The DMARC policy of the From domain asked for reject or quarantine.
    pub dmarc_enforcing: bool,
}

impl AuthOutcome {
    /// Each result from `self`, or where `self` has none, from `other`.
    pub fn or(&self, other: &AuthOutcome) -> AuthOutcome {
        AuthOutcome {
            spf: self.spf.or(other.spf),
            dkim: self.dkim.or(other.dkim),
            dmarc: self.dmarc.or(other.dmarc),
            arc: self.arc.or(other.arc),
            // A policy our own lookup found stands, even when it gave no verdict.
            dmarc_enforcing: if self.dmarc.is_some() {
                self.dmarc_enforcing
            } else {
                self.dmarc_enforcing || other.dmarc_enforcing
            },
        }
    }
}

/// The SMTP connection a message arrived on, for SPF.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The client's address.
    pub ip: IpAddr,
    /// What the client said in HELO/EHLO.
    pub helo: String,
    /// MAIL FROM (empty for the null sender).
    pub mail_from: String,
    /// Our own host name (SPF's `%{r}` macro).
    pub host_domain: String,
}

/// A bounded resolver cache shared by the lookups of all messages. When full, expired
/// entries go first, then arbitrary ones (a cache, not a store: a miss costs a query).
pub struct BoundedCache<K, V> {
    capacity: usize,
    map: Mutex<HashMap<K, (V, Instant)>>,
}

impl<K: Hash + Eq, V: Clone> BoundedCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        BoundedCache {
            capacity: capacity.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    pub fn len(&self) -> usize {
        self.map.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K: Hash + Eq + Clone, V: Clone> ResolverCache<K, V> for BoundedCache<K, V> {
    fn get<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let map = self.map.lock().ok()?;
        let (value, until) = map.get(name)?;
        (*until > Instant::now()).then(|| value.clone())
    }

    fn remove<Q>(&self, name: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.lock().ok()?.remove(name).map(|(v, _)| v)
    }

    fn insert(&self, key: K, value: V, valid_until: Instant) {
        let Ok(mut map) = self.map.lock() else { return };
        if map.len() >= self.capacity {
            let now = Instant::now();
            map.retain(|_, (_, until)| *until > now);
            while map.len() >= self.capacity {
                let Some(victim) = map.keys().next().cloned() else {
                    break;
                };
                map.remove(&victim);
            }
        }
        map.insert(key, (value, valid_until));
    }
}

/// The resolver caches, one per record type.
pub struct DnsCaches {
    pub txt: BoundedCache<Box<str>, Txt>,
    pub mx: BoundedCache<Box<str>, RecordSet<MX>>,
    pub ipv4: BoundedCache<Box<str>, RecordSet<Ipv4Addr>>,
    pub ipv6: BoundedCache<Box<str>, RecordSet<Ipv6Addr>>,
    pub ptr: BoundedCache<IpAddr, RecordSet<Box<str>>>,
}

impl DnsCaches {
    pub fn new(capacity: usize) -> Self {
        DnsCaches {
            txt: BoundedCache::new(capacity),
            mx: BoundedCache::new(capacity),
            ipv4: BoundedCache::new(capacity),
            ipv6: BoundedCache::new(capacity),
            ptr: BoundedCache::new(capacity),
        }
    }

    /// Puts a TXT record in the cache (tests, and pinning records an operator knows).
    pub fn txt_add(&self, name: &str, value: impl Into<Txt>, ttl: Duration) {
        self.txt.insert(
            name.to_fqdn().into_owned().into_boxed_str(),
            value.into(),
            Instant::now() + ttl,
        );
    }

    /// Puts A records in the cache.
    pub fn ipv4_add(&self, name: &str, value: Vec<Ipv4Addr>, ttl: Duration) {
        self.ipv4.insert(
            name.to_fqdn().into_owned().into_boxed_str(),
            RecordSet {
                rrset: value.into(),
                dnssec_status: mail_auth::DnssecStatus::Indeterminate,
            },
            Instant::now() + ttl,
        );
    }
}

/// mail-auth's authenticator behind our caches.
pub struct Authenticator {
    inner: MessageAuthenticator,
    caches: DnsCaches,
}

impl Authenticator {
    /// Asks the configured name servers, or, when none are configured, the system's
    /// (`/etc/resolv.conf`).
    pub fn new(settings: &DnsSettings) -> Result<Self, FilterError> {
        let (config, mut opts) = if settings.servers.is_empty() {
            mail_auth::hickory_resolver::system_conf::read_system_conf()
                .map_err(|e| FilterError::Dns(format!("reading /etc/resolv.conf: {e}")))?
        } else {
            let servers = settings
                .servers
                .iter()
                .map(|s| name_server(s))
                .collect::<Result<Vec<_>, _>>()?;
            (
                ResolverConfig::from_name_servers(servers),
                ResolverOpts::default(),
            )
        };
        opts.timeout = Duration::from_millis(settings.timeout_ms);
        Self::with_config(config, opts, settings.cache_size)
    }

    /// A resolver that knows no name servers: only cached records resolve. For tests
    /// and for deployments that pin records.
    pub fn offline(cache_size: usize) -> Result<Self, FilterError> {
        let config = ResolverConfig::from_parts(None, vec![], vec![]);
        let mut opts = ResolverOpts::default();
        opts.timeout = Duration::from_millis(100);
        opts.attempts = 0;
        Self::with_config(config, opts, cache_size)
    }

    fn with_config(
        config: ResolverConfig,
        opts: ResolverOpts,
        cache_size: usize,
    ) -> Result<Self, FilterError> {
        Ok(Authenticator {
            inner: MessageAuthenticator::new(config, opts)
                .map_err(|e| FilterError::Dns(e.to_string()))?,
            caches: DnsCaches::new(cache_size),
        })
    }

    pub fn caches(&self) -> &DnsCaches {
        &self.caches
    }

    #[allow(clippy::type_complexity)] // mail-auth's own parameter type, spelled out once
    fn params<P>(
        &self,
        p: P,
    ) -> Parameters<
        '_,
        P,
        BoundedCache<Box<str>, Txt>,
        BoundedCache<Box<str>, RecordSet<MX>>,
        BoundedCache<Box<str>, RecordSet<Ipv4Addr>>,
        BoundedCache<Box<str>, RecordSet<Ipv6Addr>>,
        BoundedCache<IpAddr, RecordSet<Box<str>>>,
    > {
        Parameters::new(p)
            .with_txt_cache(&self.caches.txt)
            .with_mx_cache(&self.caches.mx)
            .with_ipv4_cache(&self.caches.ipv4)
            .with_ipv6_cache(&self.caches.ipv6)
            .with_ptr_cache(&self.caches.ptr)
    }

    /// Runs SPF (when the connection is known), DKIM, ARC and DMARC over the raw message.
    /// The bytes go to mail-auth's verifiers only; nothing of them is returned.
    pub async fn authenticate(&self, raw: &[u8], conn: Option<&Connection>) -> AuthOutcome {
        self.check(raw, conn, false).await
    }

    /// [`Authenticator::authenticate`] within `budget`. When the whole check does not
    /// finish in time (a name server that never answers, perhaps one a sender named in
    /// a signature of its own for just that purpose), DMARC is checked again within
    /// half a `budget` from the From domain's side alone: only signatures aligned with
    /// the From domain, SPF only when MAIL FROM aligns, no ARC. Those lookups all go to
    /// the From domain's name servers, so a forger cannot stall them to escape the
    /// domain's policy. `None` when that times out too.
    pub async fn authenticate_within(
        &self,
        raw: &[u8],
        conn: Option<&Connection>,
        budget: Duration,
    ) -> Option<AuthOutcome> {
        if let Ok(outcome) = tokio::time::timeout(budget, self.check(raw, conn, false)).await {
            return Some(outcome);
        }
        // Half the budget again: a From domain whose own servers stall costs 1.5 budgets.
        tokio::time::timeout(budget / 2, self.check(raw, conn, true))
            .await
            .ok()
    }

    async fn check(
        &self,
        raw: &[u8],
        conn: Option<&Connection>,
        aligned_only: bool,
    ) -> AuthOutcome {
        let (raw, _) = qd_mail::strip_mbox_envelope(raw);
        let raw = limit_signatures(raw);
        let Some(mut message) = AuthenticatedMessage::parse(&raw) else {
            return AuthOutcome::default();
        };
        let from_domain = message
            .from
            .first()
            .and_then(|f| f.rsplit_once('@'))
            .map(|(_, d)| d.trim_end_matches('>').to_ascii_lowercase())
            .unwrap_or_default();
        if aligned_only {
            message
                .dkim_headers
                .retain(|h| aligned(&h.header.d, &from_domain));
        }
        let dkim = self.inner.verify_dkim(self.params(&message)).await;
        let arc = if aligned_only {
            None
        } else {
            Some(self.inner.verify_arc(self.params(&message)).await)
        };
        let mut outcome = AuthOutcome {
            dkim: dkim_summary(dkim.iter().map(|d| d.result())),
            arc: match arc.as_ref().map(|a| a.result()) {
                None | Some(DkimResult::None) => None,
                Some(r) => Some(dkim_result(r)),
            },
            ..AuthOutcome::default()
        };
        let had_conn = conn.is_some();
        // From the From domain's side, SPF runs only for a MAIL FROM (or, for the null
        // sender, a HELO) that can align with it.
        let conn = conn.filter(|c| {
            let spf_domain = if c.mail_from.is_empty() {
                c.helo.as_str()
            } else {
                c.mail_from.rsplit_once('@').map_or("", |(_, d)| d)
            };
            !aligned_only || aligned(spf_domain, &from_domain)
        });
        // Without the connection (no trusted border hop), DMARC still runs on DKIM alone.
        let (spf, mail_from_domain) = match conn {
            Some(conn) => {
                let sender = if conn.mail_from.is_empty() {
                    format!("postmaster@{}", conn.helo)
                } else {
                    conn.mail_from.clone()
                };
                let spf = self
                    .inner
                    .verify_spf(self.params(SpfParameters::verify_mail_from(
                        conn.ip,
                        &conn.helo,
                        &conn.host_domain,
                        &sender,
                    )))
                    .await;
                outcome.spf = Some(match spf.result() {
                    SpfResult::Pass => AuthResult::Pass,
                    SpfResult::Fail => AuthResult::Fail,
                    SpfResult::SoftFail => AuthResult::SoftFail,
                    SpfResult::Neutral => AuthResult::Neutral,
                    SpfResult::TempError => AuthResult::TempError,
                    SpfResult::PermError => AuthResult::PermError,
                    SpfResult::None => AuthResult::None,
                });
                let domain = sender.rsplit_once('@').map_or("", |(_, d)| d).to_owned();
                (spf, domain)
            }
            None => (
                SpfOutput::new(String::new()).with_result(SpfResult::None),
                String::new(),
            ),
        };
        let dmarc = self
            .inner
            .verify_dmarc(self.params(DmarcParameters::new(
                &message,
                &dkim,
                &mail_from_domain,
                &spf,
            )))
            .await;
        // mail-auth names the From domain even when it found no record: the record
        // decides whether DMARC applies at all.
        outcome.dmarc = match dmarc.result() {
            _ if dmarc.dmarc_record().is_none() => None,
            DmarcResult::Pass => Some(AuthResult::Pass),
            // Without the connection SPF never ran, and it might have aligned: only a
            // pass says something then. (Checking from the From domain's side, SPF is
            // left out only when it cannot align.)
            _ if !had_conn => None,
            DmarcResult::TempError(_) => Some(AuthResult::TempError),
            DmarcResult::PermError(_) => Some(AuthResult::PermError),
            DmarcResult::Fail(_) => Some(AuthResult::Fail),
            DmarcResult::None => None,
        };
        outcome.dmarc_enforcing = matches!(
            dmarc.policy(),
            mail_auth::dmarc::Policy::Reject | mail_auth::dmarc::Policy::Quarantine
        );
        outcome
    }
}

/// DMARC's relaxed alignment: the same organisational domain (approximated without a
/// public-suffix list by [`crate::util::registered_domain`]), so sibling subdomains
/// align. Checking only such names keeps every lookup in the From domain's own tree.
fn aligned(a: &str, b: &str) -> bool {
    // An internationalised name compares in its ASCII form (`d=` is always written so;
    // a From domain may be in UTF-8).
    let ascii = |d: &str| {
        let d = d.trim().trim_end_matches('.');
        idna::domain_to_ascii(d).unwrap_or_else(|_| d.to_ascii_lowercase())
    };
    let (a, b) = (ascii(a), ascii(b));
    !a.is_empty()
        && !b.is_empty()
        && crate::util::registered_domain(&a) == crate::util::registered_domain(&b)
}

/// DKIM signatures tried per message (RFC 6376 section 6.1 lets a verifier limit
/// them): each costs a key lookup and a signature check, in turn.
pub const MAX_DKIM_SIGNATURES: usize = 8;
/// ARC sets beyond RFC 8617's limit of 50 make the chain fail anyway.
const MAX_ARC_SETS: usize = 50;

/// `raw` without the DKIM-Signature fields after the first [`MAX_DKIM_SIGNATURES`]
/// and the ARC-Message-Signature fields after the first 50 (a copy only when some go).
pub fn limit_signatures(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let block = qd_core::header_fields(raw);
    // The field name up to the colon, white space (folding included) ignored, as
    // mail-auth reads it: `DKIM-Signature :` is one too.
    let named = |field: &[u8], name: &[u8]| {
        let Some(colon) = field.iter().position(|&b| b == b':') else {
            return false;
        };
        let mut n = field[..colon].iter().filter(|b| !b.is_ascii_whitespace());
        name.iter()
            .all(|c| n.next().is_some_and(|b| b.eq_ignore_ascii_case(c)))
            && n.next().is_none()
    };
    let (mut dkim, mut arc) = (0usize, 0usize);
    let keep: Vec<bool> = block
        .fields
        .iter()
        .map(|f| {
            if named(f, b"DKIM-Signature") {
                dkim += 1;
                dkim <= MAX_DKIM_SIGNATURES
            } else if named(f, b"ARC-Message-Signature") {
                arc += 1;
                arc <= MAX_ARC_SETS
            } else {
                true
            }
        })
        .collect();
    if keep.iter().all(|k| *k) {
        return std::borrow::Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    for (f, k) in block.fields.iter().zip(keep) {
        if k {
            out.extend_from_slice(f);
        }
    }
    out.extend_from_slice(raw.get(block.body_start..).unwrap_or_default());
    std::borrow::Cow::Owned(out)
}

/// One configured name server: `IP` (port 53) or `IP:PORT`, asked over UDP and TCP.
fn name_server(spec: &str) -> Result<NameServerConfig, FilterError> {
    let spec = spec.trim();
    let addr = match spec.parse::<SocketAddr>() {
        Ok(a) => a,
        Err(_) => SocketAddr::new(
            spec.parse::<IpAddr>().map_err(|_| {
                FilterError::Dns(format!(
                    "name server {spec:?} is not an IP address or IP:PORT (host names would \
                     need a resolver to find the resolver)"
                ))
            })?,
            53,
        ),
    };
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    Ok(NameServerConfig::new(addr.ip(), true, vec![udp, tcp]))
}

/// The SMTP connection our border relay recorded: the lowest Received field our relays
/// wrote (see [`crate::upstream`]'s chain of trust), naming the outside client's address
/// and HELO, with the topmost Return-Path as MAIL FROM. `None` without trusted relays,
/// when the border hop recorded no address, when the client was one of our own relays
/// (mail that started inside), or without a Return-Path (MAIL FROM unknown: SPF would
/// check the wrong identity).
pub fn connection(view: &MessageView, trusted: &[String]) -> Option<Connection> {
    let end = crate::upstream::trusted_prefix(view, trusted);
    let border = view
        .headers()
        .iter()
        .take(end)
        .rfind(|h| h.name.eq_ignore_ascii_case("Received"))?
        .received
        .as_ref()?;
    let ours = |h: &str| trusted.iter().any(|t| host_in_domain(h, t));
    if border.rdns.as_deref().is_some_and(ours) {
        return None;
    }
    let ip = border.ip?;
    // A client on loopback or a private network is one of our own hosts handing the
    // mail on (an MX to the mailbox host), not the outside sender.
    if crate::util::is_private_ip(&ip) {
        return None;
    }
    // `<addr>`, `<>` for the null sender; a value that is neither tells nothing. Only a
    // Return-Path our side wrote (above the border hop) is MAIL FROM: one further down
    // came with the message and is the sender's to choose.
    let path = view
        .headers()
        .iter()
        .take(end)
        .find(|h| h.name.eq_ignore_ascii_case("Return-Path"))?
        .raw
        .trim();
    let mail_from = path.strip_prefix('<')?.strip_suffix('>')?.trim();
    if !mail_from.is_empty() && !mail_from.contains('@') {
        return None;
    }
    let mail_from = mail_from.to_string();
    Some(Connection {
        ip,
        helo: border.helo.clone().unwrap_or_else(|| ip.to_string()),
        mail_from,
        host_domain: border.by.clone().unwrap_or_default(),
    })
}

fn dkim_result(r: &DkimResult) -> AuthResult {
    match r {
        DkimResult::Pass => AuthResult::Pass,
        DkimResult::Neutral(_) => AuthResult::Neutral,
        DkimResult::Fail(_) => AuthResult::Fail,
        DkimResult::PermError(_) => AuthResult::PermError,
        DkimResult::TempError(_) => AuthResult::TempError,
        DkimResult::None => AuthResult::None,
    }
}

fn dkim_summary<'a>(results: impl Iterator<Item = &'a DkimResult>) -> Option<AuthResult> {
    let all: Vec<AuthResult> = results.map(dkim_result).collect();
    if all.contains(&AuthResult::Pass) {
        Some(AuthResult::Pass)
    } else {
        all.first().copied()
    }
}

/// The clauses of an Authentication-Results value (RFC 8601 section 2.2), split at each
/// `;` outside quoted strings and comments; comments are dropped. Values such as
/// `smtp.helo` and `smtp.mailfrom` come from the sender, and our relay quotes them when
/// they hold a `;`: splitting inside the quotes, or inside a comment, would let the
/// sender add clauses (`smtp.helo="x;dmarc=pass"`) to our own relay's results. `None`
/// when a quoted string or comment does not end: then no clause boundary can be trusted.
fn authres_clauses(value: &str) -> Option<Vec<String>> {
    let mut clauses = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    // Comments nest (RFC 5322 section 3.2.2).
    let mut comment_depth = 0u32;
    let mut chars = value.chars();
    while let Some(c) = chars.next() {
        if quoted {
            current.push(c);
            match c {
                '\\' => current.extend(chars.next()),
                '"' => quoted = false,
                _ => {}
            }
        } else if comment_depth > 0 {
            match c {
                '\\' => {
                    chars.next();
                }
                '(' => comment_depth += 1,
                ')' => comment_depth -= 1,
                _ => {}
            }
        } else {
            match c {
                '"' => {
                    quoted = true;
                    current.push(c);
                }
                '(' => {
                    comment_depth = 1;
                    // A comment separates tokens like white space does.
                    current.push(' ');
                }
                ';' => clauses.push(std::mem::take(&mut current)),
                _ => current.push(c),
            }
        }
    }
    if quoted || comment_depth > 0 {
        return None;
    }
    clauses.push(current);
    Some(clauses)
}

/// Results from trusted `Authentication-Results` and `Received-SPF` fields.
pub(crate) fn from_trusted_headers(
    view: &MessageView,
    trusted_end: usize,
    trusted: &[String],
) -> AuthOutcome {
    let mut out = AuthOutcome::default();
    for h in view.headers().iter().take(trusted_end) {
        if h.name.eq_ignore_ascii_case("Authentication-Results") {
            let Some(clauses) = authres_clauses(&h.raw) else {
                continue;
            };
            let mut clauses = clauses.into_iter();
            let authserv = clauses.next().unwrap_or_default();
            let authserv = authserv
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .trim_matches('"');
            if !trusted.iter().any(|t| host_in_domain(authserv, t)) {
                continue;
            }
            // SPF, DMARC and ARC give one result per message: the first in this field
            // stands, and a later clause cannot turn a failure into a pass. DKIM gives
            // one per signature, and one passing signature among failing ones is a pass.
            let mut seen = AuthOutcome::default();
            for clause in clauses {
                let Some((method, rest)) = clause.split_once('=') else {
                    continue;
                };
                let word: String = rest
                    .trim_start()
                    .chars()
                    .take_while(char::is_ascii_alphabetic)
                    .collect();
                let Some(result) = AuthResult::parse(&word) else {
                    continue;
                };
                // `method [ "/" version ]` (RFC 8601 section 2.2).
                let method = method.split('/').next().unwrap_or_default();
                let (slot, any_pass) = match method.trim().to_ascii_lowercase().as_str() {
                    "spf" => (&mut seen.spf, false),
                    "dkim" => (&mut seen.dkim, true),
                    "dmarc" => (&mut seen.dmarc, false),
                    "arc" => (&mut seen.arc, false),
                    _ => continue,
                };
                if slot.is_none() || (any_pass && result == AuthResult::Pass) {
                    *slot = Some(result);
                }
            }
            // Across our relays' fields, as before: the topmost result, unless a lower
            // field reports a pass (each field is our own relay's word).
            for (slot, result) in [
                (&mut out.spf, seen.spf),
                (&mut out.dkim, seen.dkim),
                (&mut out.dmarc, seen.dmarc),
                (&mut out.arc, seen.arc),
            ] {
                if slot.is_none() || result == Some(AuthResult::Pass) {
                    *slot = result.or(*slot);
                }
            }
        } else if h.name.eq_ignore_ascii_case("Received-SPF") && out.spf.is_none() {
            let word = h.raw.split_whitespace().next().unwrap_or_default();
            out.spf = AuthResult::parse(word);
        }
    }
    out
}

pub(crate) fn check(outcome: &AuthOutcome, hits: &mut Hits) {
    use AuthResult as R;
    match outcome.spf {
        Some(R::Pass) => hits.add("AUTH_SPF_PASS", "SPF pass"),
        Some(R::Fail) => hits.add("AUTH_SPF_FAIL", "SPF fail"),
        Some(R::SoftFail) => hits.add("AUTH_SPF_SOFTFAIL", "SPF softfail"),
        Some(R::PermError) => hits.add("AUTH_SPF_PERMERROR", "SPF record broken"),
        _ => {}
    }
    match outcome.dkim {
        Some(R::Pass) => hits.add("AUTH_DKIM_PASS", "a DKIM signature verified"),
        Some(R::Fail | R::PermError) => hits.add("AUTH_DKIM_FAIL", "DKIM signature invalid"),
        _ => {}
    }
    match outcome.dmarc {
        Some(R::Pass) => hits.add("AUTH_DMARC_PASS", "DMARC aligned pass"),
        Some(R::Fail) if outcome.dmarc_enforcing => hits.add(
            "AUTH_DMARC_FAIL_ENFORCED",
            "DMARC fail, domain asks to reject",
        ),
        Some(R::Fail) => hits.add("AUTH_DMARC_FAIL", "DMARC fail"),
        _ => {}
    }
    match outcome.arc {
        Some(R::Pass) => hits.add("AUTH_ARC_PASS", "ARC chain verified"),
        Some(R::Fail | R::PermError) => hits.add("AUTH_ARC_FAIL", "ARC chain broken"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::aligned;

    #[test]
    fn alignment_is_by_organisational_domain_in_ascii_form() {
        assert!(aligned("mail.example.com", "news.example.com"));
        assert!(aligned("Example.COM.", "example.com"));
        assert!(aligned("bücher.example", "xn--bcher-kva.example"));
        assert!(aligned("shop.example.co.uk", "example.co.uk"));
        assert!(!aligned("example.co.uk", "other.co.uk"));
        assert!(!aligned("example.com", "example.org"));
        assert!(!aligned("", "example.com"));
    }
}
