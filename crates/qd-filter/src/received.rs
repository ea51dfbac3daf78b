//! The Received chain (RFC 5321 §4.4): hop count, forged or bare-IP HELO,
//! dynamic/residential host names, private addresses in public hops, time going
//! backwards, a missing chain.

use qd_mail::view::ReceivedHop;
use qd_mail::MessageView;
use regex::Regex;

use crate::util::{
    domain_of, host_in_domain, is_freemail, is_ip_literal, is_private_ip, message_id_inner,
    provider_of_address, provider_of_host, registered_domain, Hits,
};

/// Compiled patterns, built once per filter.
pub(crate) struct ReceivedRules {
    /// Names ISPs give to residential and dynamically assigned addresses.
    dynamic: Regex,
    /// Two or more octets of an address embedded in a name (`1-2-3-4.isp.net`,
    /// `host123.4.5.pool`).
    embedded_ip: Regex,
    /// A time of day on a 12-hour clock (`8:02:13 AM`).
    twelve_hour: Regex,
}

impl ReceivedRules {
    pub(crate) fn new() -> Result<Self, regex::Error> {
        Ok(ReceivedRules {
            dynamic: Regex::new(
                r"(?i)(^|[.\-_0-9])(dsl|adsl|xdsl|dial|dialup|dialin|dyn|dynamic|dynip|pool|cable|ppp|pppoe|dhcp|modem|broadband|catv|client|cust|customer|res|resi|residential|home|user|users|ip-?\d|host-?\d|static-?\d|unknown|dsl-?\d|cpe|nat)([.\-_0-9]|$)",
            )?,
            embedded_ip: Regex::new(r"\d{1,3}[.\-_x]\d{1,3}[.\-_x]\d{1,3}")?,
            twelve_hour: Regex::new(r"(?i)\b\d{1,2}:\d{2}(?::\d{2})?\s*[ap]\.?m\b")?,
        })
    }

    pub(crate) fn is_dynamic(&self, name: &str) -> bool {
        self.dynamic.is_match(name) || self.embedded_ip.is_match(name)
    }
}

/// The hop's client logged in to send (RFC 3848 `ESMTPA`, `ESMTPSA`): a submission.
fn authenticated(hop: &ReceivedHop) -> bool {
    hop.with.as_deref().is_some_and(|w| {
        let w = w.to_ascii_uppercase();
        w.contains("ESMTPA") || w.contains("ESMTPSA")
    })
}

/// Public hops, oldest last (header order).
fn public_hops(view: &MessageView) -> Vec<&ReceivedHop> {
    view.headers_named("Received")
        .filter_map(|h| h.received.as_ref())
        .filter(|r| r.ip.is_some_and(|ip| !is_private_ip(&ip)))
        .collect()
}

pub(crate) fn check(view: &MessageView, rules: &ReceivedRules, hits: &mut Hits) {
    let received: Vec<_> = view.headers_named("Received").collect();
    if received.is_empty() {
        hits.add("RCVD_NONE", "no Received fields");
        return;
    }
    if received.len() > 15 {
        hits.add("RCVD_MANY_HOPS", format!("{} hops", received.len()));
    }
    let unparsed = received
        .iter()
        .filter(|h| h.received.as_ref().is_none_or(|r| r.by.is_none()))
        .count();
    if unparsed > 0 {
        hits.add(
            "RCVD_MALFORMED",
            format!("{unparsed} Received fields without a `by` host"),
        );
    }

    // RFC 5321 §4.4 stamps an RFC 5322 date-time after the last `;`: 24-hour clock only.
    if received.iter().any(|h| {
        h.raw
            .rsplit_once(';')
            .is_some_and(|(_, stamp)| rules.twelve_hour.is_match(stamp))
    }) {
        hits.add(
            "RCVD_DATE_12H",
            "a Received time stamp on a 12-hour clock (AM/PM), which no RFC 5322 date has",
        );
    }

    let public = public_hops(view);
    // The origin: the oldest hop recorded with a public address, i.e. where the message
    // entered the Internet.
    if let Some(origin) = public.last() {
        let helo = origin.helo.as_deref().unwrap_or_default();
        let rdns = origin.rdns.as_deref().unwrap_or_default();
        let rdns_known = !rdns.is_empty() && !rdns.eq_ignore_ascii_case("unknown");
        // A mail client that logs in to submit greets with whatever it has: its LAN
        // address in brackets (Thunderbird) or its computer name (Outlook). Only a host
        // handing mail to someone else's server must name itself properly.
        let judged = if authenticated(origin) { "" } else { helo };
        if !judged.is_empty() && is_ip_literal(judged) {
            hits.add("RCVD_HELO_BARE_IP", "origin HELO is an address");
        } else if !judged.is_empty()
            && !judged.contains('.')
            && !judged.eq_ignore_ascii_case("localhost")
        {
            hits.add("RCVD_HELO_NO_FQDN", "origin HELO is not a domain name");
        }
        // A residential host handing mail to its own provider's relay, or submitting
        // with authentication, is how people send mail; going straight to someone
        // else's server is how bots do.
        let submission = authenticated(origin)
            || (rdns_known
                && origin
                    .by
                    .as_deref()
                    .is_some_and(|by| registered_domain(by) == registered_domain(rdns)));
        if !rdns_known {
            hits.add("RCVD_NO_RDNS", "origin address has no reverse DNS");
        } else if rules.is_dynamic(rdns) && !submission {
            hits.add(
                "RCVD_DYNAMIC_RDNS",
                "origin reverse DNS looks residential, sent direct",
            );
        }
        if !helo.is_empty() && !is_ip_literal(helo) && helo.contains('.') && rdns_known {
            let helo_rd = registered_domain(helo);
            if helo_rd != registered_domain(rdns) {
                if is_freemail(&helo_rd) {
                    hits.add(
                        "RCVD_FORGED_HELO_FREEMAIL",
                        "origin claims a free-mail provider's name",
                    );
                } else {
                    hits.add("RCVD_HELO_MISMATCH", "origin HELO and reverse DNS differ");
                }
            }
        }
    }
    for hop in public.iter().rev().skip(1) {
        if hop.helo.as_deref().is_some_and(is_ip_literal) {
            hits.add("RCVD_RELAY_HELO_BARE_IP", "a relay greeted with an address");
            break;
        }
    }

    // Private addresses recorded *between* public hops: a public relay says it received
    // from a private address after the message had already crossed the Internet.
    let mut seen_public = false;
    for r in received.iter().rev().filter_map(|h| h.received.as_ref()) {
        match r.ip {
            Some(ip) if !is_private_ip(&ip) => seen_public = true,
            Some(ip)
                if seen_public
                    && !ip.is_loopback()
                    && r.by.as_deref().is_some_and(|b| !b.contains("localhost")) =>
            {
                hits.add(
                    "RCVD_PRIVATE_AFTER_PUBLIC",
                    "a private address after a public hop",
                );
            }
            _ => {}
        }
    }

    // Time: each hop is at or after the one below it. One hour of slack for clocks.
    let dates: Vec<_> = received
        .iter()
        .filter_map(|h| h.received.as_ref().and_then(|r| r.date))
        .collect();
    for pair in dates.windows(2) {
        if let [newer, older] = pair {
            if *older - *newer > chrono::TimeDelta::hours(2) {
                hits.add(
                    "RCVD_TIME_BACKWARDS",
                    "a hop is dated after the hop above it",
                );
                break;
            }
        }
    }
    if let (Some(first), Some(last)) = (dates.first(), dates.last()) {
        if *first - *last > chrono::TimeDelta::days(3) {
            hits.add("RCVD_SLOW_CHAIN", "days between the oldest and newest hop");
        }
    }

    message_id_maker(view, &public, hits);
    provider_hops(view, &public, hits);

    if let Some(w) = view.header("X-Authentication-Warning") {
        if w.raw.contains("claimed to be") {
            hits.add("RCVD_CLAIMED_TO_BE", "a relay noted a false HELO");
        }
    }
}

/// The Message-ID's two sides, without angle brackets: (`left`, `host`).
fn message_id_sides(view: &MessageView) -> Option<(&str, &str)> {
    let (left, host) = message_id_inner(&view.header("Message-ID")?.raw).rsplit_once('@')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!left.is_empty() && !host.is_empty()).then_some((left, host))
}

/// Shortest queue id taken as evidence: shorter ones match by chance.
const MIN_QUEUE_ID: usize = 5;

/// Who wrote the Message-ID. Mail programs name their own messages (RFC 5322 §3.6.4);
/// a relay that receives one without a Message-ID makes one up from its queue id and its
/// own name (`<20020523001604.0823311410E@mx.example.net>`, `id 0823311410E`). A relay
/// that did so after receiving the message from the network shows the sending program
/// gave none, which real mail programs do not do and bulk-sending scripts do. The first
/// server may add one for its own users (RFC 6409 §8.3), so that counts least, and not at
/// all after authenticated submission.
fn message_id_maker(view: &MessageView, public: &[&ReceivedHop], hits: &mut Hits) {
    let Some((left, host)) = message_id_sides(view) else {
        return;
    };
    let maker = public.iter().position(|hop| {
        hop.by
            .as_deref()
            .is_some_and(|by| by.eq_ignore_ascii_case(host))
            && hop
                .id
                .as_deref()
                .is_some_and(|id| id.len() >= MIN_QUEUE_ID && left.contains(id))
    });
    let Some(position) = maker else { return };
    let Some(hop) = public.get(position) else {
        return;
    };
    if authenticated(hop) && position + 1 == public.len() {
        // The sender's own server, after a login: allowed to name the message.
        return;
    }
    if position == 0 {
        hits.add(
            "MID_ADDED_AT_BORDER",
            "the message arrived without a Message-ID; the receiving server made one",
        );
    } else if position + 1 < public.len() {
        hits.add(
            "MID_ADDED_BY_RELAY",
            "a relay on the way made the Message-ID: the sender gave none",
        );
    } else {
        hits.add(
            "MID_ADDED_BY_FIRST_HOP",
            "the sender's first server made the Message-ID: the sending program gave none",
        );
    }
}

/// Mail from a large provider's address (or with its Message-ID) that never passed
/// through the provider's servers: their users' mail always does.
fn provider_hops(view: &MessageView, public: &[&ReceivedHop], hits: &mut Hits) {
    if public.is_empty() {
        return; // no chain to compare with
    }
    let carried_by = |servers: &[&str]| {
        view.headers_named("Received")
            .filter_map(|h| h.received.as_ref())
            .any(|hop| {
                [hop.by.as_deref(), hop.rdns.as_deref()]
                    .into_iter()
                    .flatten()
                    .any(|host| servers.iter().any(|s| host_in_domain(host, s)))
            })
    };
    let from_domain = view
        .header("From")
        .and_then(|h| h.addresses.iter().find(|a| !a.addr.is_empty()))
        .and_then(|a| domain_of(&a.addr).map(str::to_owned));
    let from_servers = from_domain.as_deref().and_then(provider_of_address);
    if let Some(servers) = from_servers {
        if !carried_by(servers) {
            hits.add(
                "FROM_FREEMAIL_NO_PROVIDER_HOP",
                "From is a large provider's address, but its servers never carried the message",
            );
        }
    }
    // A mail program names the Message-ID after the From domain: with the same provider
    // as From, it is the same evidence, counted once.
    if let Some(servers) = message_id_sides(view)
        .and_then(|(_, host)| provider_of_host(host))
        .filter(|s| from_servers != Some(*s))
    {
        if !carried_by(servers) {
            hits.add(
                "MID_FREEMAIL_NO_PROVIDER_HOP",
                "the Message-ID names a large provider, but its servers never carried the message",
            );
        }
    }
}
