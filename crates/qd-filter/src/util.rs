//! Small helpers shared by the check families: domains, addresses, IPs, hit lists.

use std::net::IpAddr;

/// Tags fired by one check family, before weights apply.
#[derive(Debug, Default)]
pub(crate) struct Hits {
    pub(crate) items: Vec<(&'static str, String)>,
}

impl Hits {
    pub(crate) fn add(&mut self, name: &'static str, detail: impl Into<String>) {
        if !self.items.iter().any(|(n, _)| *n == name) {
            self.items.push((name, detail.into()));
        }
    }
}

/// The domain of an address, lowercase, without a trailing dot.
pub(crate) fn domain_of(addr: &str) -> Option<&str> {
    let (_, domain) = addr.rsplit_once('@')?;
    let domain = domain.trim_end_matches('.');
    (!domain.is_empty()).then_some(domain)
}

/// Second-level labels under which registries hand out names (`example.co.uk`).
const SECOND_LEVELS: &[&str] = &[
    "co", "com", "net", "org", "gov", "ac", "edu", "ne", "or", "go", "gob", "mil", "nom", "ltd",
    "plc", "sch", "asn", "id",
];

/// An approximation of the registered domain (the public-suffix list would be exact):
/// the last two labels, or three when the second-to-last is a generic second level
/// under a two-letter country code.
pub(crate) fn registered_domain(host: &str) -> String {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let labels: Vec<&str> = host.split('.').collect();
    let n = labels.len();
    if n <= 2 {
        return host;
    }
    let tld = labels[n - 1];
    let sld = labels[n - 2];
    let take = if tld.len() == 2 && SECOND_LEVELS.contains(&sld) {
        3
    } else {
        2
    };
    labels[n.saturating_sub(take)..].join(".")
}

/// Is `host` this domain or below it?
pub(crate) fn host_in_domain(host: &str, domain: &str) -> bool {
    let host = host.trim_end_matches('.');
    let domain = domain.trim_end_matches('.');
    host.eq_ignore_ascii_case(domain)
        || (host.len() > domain.len()
            && host
                .get(host.len() - domain.len()..)
                .is_some_and(|t| t.eq_ignore_ascii_case(domain))
            && host.as_bytes().get(host.len() - domain.len() - 1) == Some(&b'.'))
}

/// Not routable on the public Internet (RFC 1918, loopback, link-local, CGNAT, ULA).
pub(crate) fn is_private_ip(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// A host name that is really an address (`1.2.3.4`, `[1.2.3.4]`).
pub(crate) fn is_ip_literal(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    let h = h.strip_prefix("IPv6:").unwrap_or(h);
    h.parse::<IpAddr>().is_ok()
}

/// Large free-mail and consumer ISP domains: mail claiming them is easy to forge, and
/// their own servers name themselves predictably.
pub(crate) const FREEMAIL: &[&str] = &[
    "hotmail.com",
    "msn.com",
    "outlook.com",
    "live.com",
    "yahoo.com",
    "yahoo.co.uk",
    "ymail.com",
    "aol.com",
    "gmail.com",
    "googlemail.com",
    "mail.com",
    "gmx.net",
    "gmx.de",
    "web.de",
    "excite.com",
    "lycos.com",
    "juno.com",
    "netscape.net",
    "earthlink.net",
    "compuserve.com",
    "yandex.ru",
    "mail.ru",
    "icloud.com",
    "me.com",
    "protonmail.com",
    // Providers of today, and the large ones where this desk's customers write from
    // (the acknowledgement templates are Dutch, French and English).
    "proton.me",
    "pm.me",
    "tutanota.com",
    "tuta.io",
    "zoho.com",
    "gmx.com",
    "yandex.com",
    "hotmail.co.uk",
    "hotmail.fr",
    "hotmail.nl",
    "hotmail.be",
    "live.nl",
    "live.fr",
    "live.be",
    "outlook.fr",
    "yahoo.fr",
    "yahoo.de",
    "laposte.net",
    "orange.fr",
    "wanadoo.fr",
    "free.fr",
    "sfr.fr",
    "libero.it",
    "qq.com",
    "163.com",
    "126.com",
    "naver.com",
];

pub(crate) fn is_freemail(domain: &str) -> bool {
    let rd = registered_domain(domain);
    FREEMAIL.contains(&rd.as_str())
}

/// A Message-ID field's value without its angle brackets (`<a@b> (comment)` → `a@b`);
/// the value itself when it has none.
pub(crate) fn message_id_inner(raw: &str) -> &str {
    let raw = raw.trim();
    raw.strip_prefix('<')
        .and_then(|r| r.split('>').next())
        .unwrap_or(raw)
}

/// Large providers whose own servers carry every message their users send, as (the
/// address domains, the domains their servers are named under). Only providers whose
/// relays always write their own Received field are listed: a message claiming one of
/// them that never passed through it was not sent by it.
pub(crate) const PROVIDERS: &[(&[&str], &[&str])] = &[
    (
        &["gmail.com", "googlemail.com"],
        &["google.com", "gmail.com", "googlemail.com"],
    ),
    (
        &[
            "yahoo.com",
            "yahoo.co.uk",
            "yahoo.fr",
            "yahoo.de",
            "ymail.com",
            "rocketmail.com",
        ],
        &[
            "yahoo.com",
            "yahoo.net",
            "yahoodns.net",
            "yahoo.co.uk",
            "yahoo.fr",
            "yahoo.de",
        ],
    ),
    // AOL's mail runs on Yahoo's servers since 2017.
    (
        &["aol.com", "aim.com"],
        &["aol.com", "aol.net", "aim.com", "yahoo.com", "yahoodns.net"],
    ),
    (
        &[
            "hotmail.com",
            "hotmail.co.uk",
            "msn.com",
            "outlook.com",
            "live.com",
        ],
        &[
            "hotmail.com",
            "msn.com",
            "outlook.com",
            "live.com",
            "phx.gbl",
            "microsoft.com",
        ],
    ),
    (
        &["gmx.net", "gmx.de", "gmx.com", "web.de"],
        &["gmx.net", "gmx.de", "gmx.com", "web.de"],
    ),
    (&["mail.ru"], &["mail.ru"]),
    (
        &["yandex.ru", "yandex.com"],
        &["yandex.net", "yandex.ru", "yandex.com"],
    ),
    (
        &["icloud.com", "me.com", "mac.com"],
        &["icloud.com", "me.com", "mac.com", "apple.com"],
    ),
];

/// The servers' domains of the provider an address domain belongs to.
pub(crate) fn provider_of_address(domain: &str) -> Option<&'static [&'static str]> {
    PROVIDERS
        .iter()
        .find(|(addresses, _)| addresses.iter().any(|a| domain.eq_ignore_ascii_case(a)))
        .map(|(_, servers)| *servers)
}

/// The servers' domains of the provider a host name belongs to.
pub(crate) fn provider_of_host(host: &str) -> Option<&'static [&'static str]> {
    PROVIDERS
        .iter()
        .find(|(_, servers)| servers.iter().any(|s| host_in_domain(host, s)))
        .map(|(_, servers)| *servers)
}
