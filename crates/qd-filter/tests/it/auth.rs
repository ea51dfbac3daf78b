//! SPF, DKIM and DMARC through mail-auth with synthetic fixtures: a key generated at test
//! time, the message signed with mail-auth's DKIM signer, and the DNS records placed in
//! the resolver cache of an offline authenticator (no name servers, no network), or
//! served by a private dnsmasq on a loopback port.

use std::time::Duration;

use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter;
use mail_auth::common::parse::TxtRecordParser;
use mail_auth::common::verify::DomainKey;
use mail_auth::dkim::DkimSigner;
use mail_auth::dmarc::Dmarc;
use mail_auth::spf::Spf;
use qd_filter::{
    AuthResult, Authenticator, Class, Connection, DnsSettings, JudgeContext, MessageView,
};
use qd_testkit::SigningDomain;

use crate::support::{base64, case_filter};

const MESSAGE: &str = "From: Alice <alice@example.com>\r\nTo: help@quietdesk.example\r\n\
Subject: order 42\r\nDate: Mon, 4 Mar 2024 10:00:00 +0000\r\nMessage-ID: <d1@example.com>\r\n\
\r\nWhere is my order?\r\n";

const TTL: Duration = Duration::from_secs(3600);

/// An offline authenticator that knows example.com's DKIM key, SPF and DMARC records,
/// and the message signed with that key.
fn fixture() -> (Authenticator, String) {
    let pkcs8 = Ed25519Key::generate_pkcs8().unwrap();
    let key = Ed25519Key::from_pkcs8_der(&pkcs8).unwrap();
    let public = base64(&key.public_key()).replace('\n', "");
    let signature = DkimSigner::from_key(key)
        .domain("example.com")
        .selector("s1")
        .headers(["From", "To", "Subject", "Date", "Message-ID"])
        .sign(MESSAGE.as_bytes())
        .unwrap();
    let signed = format!("{}{MESSAGE}", signature.to_header());

    let auth = Authenticator::offline(64).unwrap();
    let txt = format!("v=DKIM1; k=ed25519; p={public}");
    auth.caches().txt_add(
        "s1._domainkey.example.com",
        DomainKey::parse(txt.as_bytes()).unwrap(),
        TTL,
    );
    auth.caches().txt_add(
        "example.com",
        Spf::parse(b"v=spf1 ip4:192.0.2.10 -all").unwrap(),
        TTL,
    );
    auth.caches().txt_add(
        "_dmarc.example.com",
        // psd=n ends the RFC 9989 tree walk here (no query for `_dmarc.com`).
        Dmarc::parse(b"v=DMARC1; p=reject; psd=n").unwrap(),
        TTL,
    );
    (auth, signed)
}

fn conn(ip: &str) -> Connection {
    Connection {
        ip: ip.parse().unwrap(),
        helo: "mail.example.com".into(),
        mail_from: "alice@example.com".into(),
        host_domain: "mx.quietdesk.example".into(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn signed_message_from_an_authorised_host_passes() {
    let (auth, signed) = fixture();
    let outcome =
        runtime().block_on(auth.authenticate(signed.as_bytes(), Some(&conn("192.0.2.10"))));
    assert_eq!(outcome.dkim, Some(AuthResult::Pass), "{outcome:?}");
    assert_eq!(outcome.spf, Some(AuthResult::Pass), "{outcome:?}");
    assert_eq!(outcome.dmarc, Some(AuthResult::Pass), "{outcome:?}");

    let view = MessageView::from_raw(signed.as_bytes());
    let ctx = JudgeContext::pinned_to(&view).with_auth(&outcome);
    let v = case_filter().judge(&view, &ctx);
    for tag in ["AUTH_DKIM_PASS", "AUTH_SPF_PASS", "AUTH_DMARC_PASS"] {
        assert!(v.tags.iter().any(|t| t.name == tag), "{tag}: {v:?}");
    }
}

#[test]
fn altered_message_from_a_stranger_fails_and_dmarc_enforces() {
    let (auth, signed) = fixture();
    let altered = signed.replace("order 42", "order 43");
    let outcome =
        runtime().block_on(auth.authenticate(altered.as_bytes(), Some(&conn("198.51.100.1"))));
    assert_eq!(outcome.dkim, Some(AuthResult::Fail), "{outcome:?}");
    assert_eq!(outcome.spf, Some(AuthResult::Fail), "{outcome:?}");
    assert_eq!(outcome.dmarc, Some(AuthResult::Fail), "{outcome:?}");
    assert!(outcome.dmarc_enforcing);

    let view = MessageView::from_raw(altered.as_bytes());
    let v = case_filter().judge(&view, &JudgeContext::pinned_to(&view).with_auth(&outcome));
    assert!(
        v.tags.iter().any(|t| t.name == "AUTH_DMARC_FAIL_ENFORCED"),
        "{v:?}"
    );
    assert_eq!(v.class, Class::Spam, "{v:?}");
}

#[test]
fn cache_is_bounded() {
    let auth = Authenticator::offline(2).unwrap();
    for i in 0..5 {
        auth.caches().txt_add(
            &format!("d{i}.example.com"),
            Spf::parse(b"v=spf1 -all").unwrap(),
            TTL,
        );
    }
    assert!(auth.caches().txt.len() <= 2);
}

/// The records [`fixture`] pins in the cache, served by a real DNS server instead.
fn served_fixture() -> (qd_testkit::Dnsmasq, String) {
    let domain = SigningDomain::new("example.com", "s1").unwrap();
    let dns = qd_testkit::Dnsmasq::start(&domain.records("192.0.2.10", "reject").unwrap()).unwrap();
    (dns, domain.sign(MESSAGE).unwrap())
}

fn dns_settings(server: String) -> DnsSettings {
    DnsSettings {
        enabled: true,
        servers: vec![server],
        ..DnsSettings::default()
    }
}

/// The border relay's Received field and the Return-Path its delivery agent wrote, above
/// the signed message.
fn delivered(signed: &str, client_ip: &str) -> String {
    format!(
        "Return-Path: <alice@example.com>\r\nReceived: from mail.example.com \
         (mail.example.com [{client_ip}]) by mx.quietdesk.example with ESMTPS id 1; \
         Mon, 4 Mar 2024 10:00:02 +0000\r\n{signed}"
    )
}

#[test]
fn records_come_from_the_configured_name_server() {
    let (dns, signed) = served_fixture();
    let auth = Authenticator::new(&dns_settings(dns.address())).unwrap();
    let outcome =
        runtime().block_on(auth.authenticate(signed.as_bytes(), Some(&conn("192.0.2.10"))));
    assert_eq!(outcome.dkim, Some(AuthResult::Pass), "{outcome:?}");
    assert_eq!(outcome.spf, Some(AuthResult::Pass), "{outcome:?}");
    assert_eq!(outcome.dmarc, Some(AuthResult::Pass), "{outcome:?}");
    // The records found are cached: the key and the SPF record still answer with the
    // server gone. (Names that do not exist are asked again: DMARC's walk up the tree
    // to find the organisational domain meets such names, so DMARC needs the server.)
    drop(dns);
    let again = runtime().block_on(auth.authenticate(signed.as_bytes(), Some(&conn("192.0.2.10"))));
    assert_eq!(again.dkim, Some(AuthResult::Pass), "{again:?}");
    assert_eq!(again.spf, Some(AuthResult::Pass), "{again:?}");
}

#[test]
fn without_the_connection_dmarc_rests_on_dkim() {
    let (dns, signed) = served_fixture();
    let auth = Authenticator::new(&dns_settings(dns.address())).unwrap();
    let outcome = runtime().block_on(auth.authenticate(signed.as_bytes(), None));
    assert_eq!(outcome.spf, None, "{outcome:?}");
    assert_eq!(outcome.dkim, Some(AuthResult::Pass), "{outcome:?}");
    assert_eq!(outcome.dmarc, Some(AuthResult::Pass), "{outcome:?}");
}

#[test]
fn a_signature_without_its_key_in_dns_does_not_pass() {
    let (dns, signed) = served_fixture();
    let auth = Authenticator::new(&dns_settings(dns.address())).unwrap();
    let other_selector = signed.replace("s=s1;", "s=s2;");
    assert_ne!(other_selector, signed, "the fixture names selector s1");
    let outcome = runtime()
        .block_on(auth.authenticate(other_selector.as_bytes(), Some(&conn("198.51.100.1"))));
    assert_ne!(outcome.dkim, Some(AuthResult::Pass), "{outcome:?}");
    assert_eq!(outcome.spf, Some(AuthResult::Fail), "{outcome:?}");
    // The domain publishes DMARC, and nothing aligned passed.
    assert_eq!(outcome.dmarc, Some(AuthResult::Fail), "{outcome:?}");
    assert!(outcome.dmarc_enforcing);
    // Without the connection SPF never ran (it might have passed): DMARC says nothing.
    let outcome = runtime().block_on(auth.authenticate(other_selector.as_bytes(), None));
    assert_eq!(outcome.spf, None, "{outcome:?}");
    assert_eq!(outcome.dmarc, None, "{outcome:?}");
}

#[test]
fn a_domain_without_a_dmarc_record_is_not_a_dmarc_failure() {
    let domain = SigningDomain::new("example.com", "s1").unwrap();
    let records: Vec<_> = domain
        .records("192.0.2.10", "reject")
        .unwrap()
        .into_iter()
        .filter(
            |r| !matches!(r, qd_testkit::DnsRecord::Txt { name, .. } if name.starts_with("_dmarc")),
        )
        .collect();
    let dns = qd_testkit::Dnsmasq::start(&records).unwrap();
    let auth = Authenticator::new(&dns_settings(dns.address())).unwrap();
    // Unsigned, from a host SPF does not name: SPF fails, and still no DMARC verdict.
    let outcome =
        runtime().block_on(auth.authenticate(MESSAGE.as_bytes(), Some(&conn("198.51.100.1"))));
    assert_eq!(outcome.spf, Some(AuthResult::Fail), "{outcome:?}");
    assert_eq!(outcome.dmarc, None, "{outcome:?}");
}

#[test]
fn an_unreachable_name_server_is_a_temporary_error_not_a_verdict() {
    let (_, signed) = fixture();
    // A port nothing listens on: queries time out.
    let settings = DnsSettings {
        timeout_ms: 200,
        ..dns_settings(format!("127.0.0.1:{}", qd_testkit::free_port()))
    };
    let auth = Authenticator::new(&settings).unwrap();
    let outcome =
        runtime().block_on(auth.authenticate(signed.as_bytes(), Some(&conn("192.0.2.10"))));
    assert_eq!(outcome.dkim, Some(AuthResult::TempError), "{outcome:?}");
    assert_eq!(outcome.spf, Some(AuthResult::TempError), "{outcome:?}");
    let view = MessageView::from_raw(signed.as_bytes());
    let v = case_filter().judge(&view, &JudgeContext::pinned_to(&view).with_auth(&outcome));
    assert!(
        !v.tags.iter().any(|t| t.name.starts_with("AUTH_")),
        "a DNS outage must not count for or against the sender: {v:?}"
    );
}

#[test]
fn a_name_server_setting_that_is_no_address_is_refused() {
    let err = Authenticator::new(&dns_settings("dns.example.net".into()))
        .err()
        .expect("a host name is refused");
    assert!(err.to_string().contains("dns.example.net"), "{err}");
}

#[test]
fn the_connection_is_the_border_hop_our_relay_recorded() {
    let (_, signed) = fixture();
    let mut settings = case_filter().settings().clone();
    settings.trusted_relays = vec!["quietdesk.example".into()];
    let filter = qd_filter::Filter::new(settings).unwrap();

    let view = MessageView::headers_only(delivered(&signed, "192.0.2.10").as_bytes());
    let c = filter.connection(&view).expect("a border hop");
    assert_eq!(c.ip.to_string(), "192.0.2.10");
    assert_eq!(c.helo, "mail.example.com");
    assert_eq!(c.mail_from, "alice@example.com");
    assert_eq!(c.host_domain, "mx.quietdesk.example");

    // A hop by a host that is not ours tells nothing: anyone can write it.
    let forged = delivered(&signed, "192.0.2.10").replace("mx.quietdesk.example", "mx.other");
    assert!(filter
        .connection(&MessageView::headers_only(forged.as_bytes()))
        .is_none());
    // A Return-Path below the border came with the message: not MAIL FROM.
    let below = delivered(&signed, "192.0.2.10")
        .replacen("Return-Path: <alice@example.com>\r\n", "", 1)
        .replacen(
            "\r\nFrom:",
            "\r\nReturn-Path: <alice@example.com>\r\nFrom:",
            1,
        );
    assert!(below.contains("Return-Path"));
    assert!(filter
        .connection(&MessageView::headers_only(below.as_bytes()))
        .is_none());
    // A client on loopback is our own host handing the mail on, not the sender.
    let inside = delivered(&signed, "127.0.0.1");
    assert!(filter
        .connection(&MessageView::headers_only(inside.as_bytes()))
        .is_none());
    // Without a Return-Path, MAIL FROM is unknown.
    let no_rp =
        delivered(&signed, "192.0.2.10").replace("Return-Path: <alice@example.com>\r\n", "");
    assert!(filter
        .connection(&MessageView::headers_only(no_rp.as_bytes()))
        .is_none());
}

#[test]
fn only_the_first_signatures_are_tried() {
    let (_, signed) = fixture();
    let mut hostile = String::new();
    // mail-auth also reads a name with white space before the colon.
    hostile.push_str("DKIM-Signature : v=1; d=spaced.example; s=s; h=From; bh=AAAA; b=AAAA\r\n");
    for l in 0..500 {
        hostile.push_str(&format!(
            "DKIM-Signature: v=1; a=rsa-sha256; d=x{l}.example; s=s; l={l};\r\n\th=From; bh=AAAA; b=AAAA\r\n"
        ));
    }
    hostile.push_str(&signed);
    let kept = qd_filter::auth::limit_signatures(hostile.as_bytes());
    let text = String::from_utf8_lossy(&kept);
    let max = qd_filter::auth::MAX_DKIM_SIGNATURES;
    assert_eq!(text.matches("DKIM-Signature").count(), max);
    assert!(
        text.starts_with("DKIM-Signature : "),
        "the spaced one counts"
    );
    // The folded lines of a dropped field go with it; the rest is whole.
    assert_eq!(text.matches("\th=From").count(), max - 1);
    assert!(text.ends_with(MESSAGE.split_once("\r\n\r\n").unwrap().1));
    assert!(text.contains("Subject: order 42\r\n"));
    // Mail within the limit is not copied.
    assert!(matches!(
        qd_filter::auth::limit_signatures(signed.as_bytes()),
        std::borrow::Cow::Borrowed(_)
    ));
}

/// A forger adds a signature whose key lookup never returns, hoping the check gives up
/// before the From domain's DMARC policy is applied. The full check runs out of time;
/// the From domain's side of it (aligned signatures, SPF, DMARC) does not.
#[test]
fn a_name_server_that_never_answers_does_not_hide_a_forgery() {
    // A socket nobody answers on, and a name server that forwards `slow.example` to it.
    let black_hole = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = black_hole.local_addr().unwrap().port();
    let domain = SigningDomain::new("example.com", "s1").unwrap();
    let mut records = domain.records("192.0.2.10", "reject").unwrap();
    records.push(qd_testkit::DnsRecord::Forward {
        domain: "slow.example".into(),
        port,
    });
    let dns = qd_testkit::Dnsmasq::start(&records).unwrap();
    let settings = DnsSettings {
        timeout_ms: 300,
        ..dns_settings(dns.address())
    };
    let auth = Authenticator::new(&settings).unwrap();
    // Not signed by example.com; sent from a host its SPF does not name. The stalling
    // signature has the right body hash, so its key is looked up.
    let stall = "DKIM-Signature: v=1; a=rsa-sha256; d=slow.example; s=s; c=relaxed/relaxed;\r\n\t\
                 h=From; bh=ASfT4hR1yMA+ixFbTW9mLAtMSC06o4WxOXf4Gxhl0tU=; b=AAAA\r\n";
    let forged = format!("{stall}{MESSAGE}");
    let budget = Duration::from_millis(500);
    let rt = runtime();
    // The whole check cannot finish within the budget...
    let full = rt.block_on(async {
        tokio::time::timeout(
            budget,
            auth.authenticate(forged.as_bytes(), Some(&conn("198.51.100.1"))),
        )
        .await
    });
    assert!(
        full.is_err(),
        "the stalling lookup should outlast {budget:?}: {full:?}"
    );
    // ...and the From domain's policy still applies.
    let outcome = rt
        .block_on(auth.authenticate_within(forged.as_bytes(), Some(&conn("198.51.100.1")), budget))
        .expect("the From domain's side finishes");
    assert_eq!(outcome.dmarc, Some(AuthResult::Fail), "{outcome:?}");
    assert!(outcome.dmarc_enforcing);
    assert_eq!(outcome.spf, Some(AuthResult::Fail), "{outcome:?}");
    // Without the connection, the retry too leaves DMARC undecided (SPF might have
    // aligned) instead of failing it.
    let outcome = rt
        .block_on(auth.authenticate_within(forged.as_bytes(), None, budget))
        .expect("the From domain's side finishes");
    assert_eq!(outcome.dmarc, None, "{outcome:?}");
    drop(black_hole);
}

/// A forwarder's ARC set verifies against its key in DNS; changing a sealed header
/// afterwards breaks the chain.
#[test]
fn an_arc_chain_verifies_and_breaks_when_altered() {
    let forwarder = SigningDomain::new("lists.example.net", "arc").unwrap();
    let dns =
        qd_testkit::Dnsmasq::start(&forwarder.records("192.0.2.99", "none").unwrap()).unwrap();
    let auth = Authenticator::new(&dns_settings(dns.address())).unwrap();
    let rt = runtime();
    let sealed = rt.block_on(forwarder.arc_seal(MESSAGE)).unwrap();
    assert!(sealed.starts_with("ARC-"), "{sealed}");
    let outcome = rt.block_on(auth.authenticate(sealed.as_bytes(), None));
    assert_eq!(outcome.arc, Some(AuthResult::Pass), "{outcome:?}");
    let view = MessageView::from_raw(sealed.as_bytes());
    let v = case_filter().judge(&view, &JudgeContext::pinned_to(&view).with_auth(&outcome));
    assert!(v.tags.iter().any(|t| t.name == "AUTH_ARC_PASS"), "{v:?}");

    let altered = sealed.replace("order 42", "order 43");
    let outcome = rt.block_on(auth.authenticate(altered.as_bytes(), None));
    assert_eq!(outcome.arc, Some(AuthResult::Fail), "{outcome:?}");
}
