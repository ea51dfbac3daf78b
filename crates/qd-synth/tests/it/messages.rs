use std::collections::{HashMap, HashSet};

use chrono::DateTime;
use mail_parser::{MessageParser, MimeHeaders};
use qd_synth::{customers, generate, SynthConfig};

use crate::{header, headers, sample};

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let a = sample(42, 800);
    let b = sample(42, 800);
    assert_eq!(a, b);
    let c = sample(43, 800);
    assert_ne!(a[0].raw, c[0].raw);
    assert!(a.iter().zip(&c).all(|(x, y)| x.raw != y.raw));
    let cfg = SynthConfig::new(42, 800);
    assert_eq!(customers(&cfg), customers(&cfg));
    assert_ne!(customers(&cfg), customers(&SynthConfig::new(43, 800)));
}

#[test]
fn exactly_n_messages() {
    for n in [0, 1, 2, 7, 1000] {
        let it = generate(&SynthConfig::new(9, n));
        assert_eq!(it.len() as u64, n);
        assert_eq!(it.count() as u64, n);
    }
}

#[test]
fn default_customer_count_is_a_twentieth_and_at_least_one() {
    assert_eq!(SynthConfig::new(1, 10).customers, 1);
    assert_eq!(SynthConfig::new(1, 1000).customers, 50);
    let cfg = SynthConfig {
        customers: 0,
        ..SynthConfig::new(1, 10)
    };
    assert!(!customers(&cfg).is_empty());
    assert_eq!(generate(&cfg).count(), 10);
}

#[test]
fn every_message_has_the_standard_headers() {
    let msgs = sample(7, 3000);
    let mut ids = HashSet::new();
    let mut last_date = i64::MIN;
    for m in &msgs {
        let raw = &m.raw;
        // CRLF everywhere, no line longer than RFC 5322 allows.
        for (i, &b) in raw.iter().enumerate() {
            if b == b'\n' {
                assert_eq!(raw[i - 1], b'\r', "bare LF in {}", m.message_id);
            }
        }
        assert!(raw.ends_with(b"\r\n"));
        assert!(raw.split(|&b| b == b'\n').all(|l| l.len() <= 998));

        let h = headers(raw);
        for name in [
            "From",
            "To",
            "Date",
            "Message-ID",
            "Subject",
            "MIME-Version",
            "Content-Type",
            "Received",
        ] {
            assert!(
                header(&h, name).is_some(),
                "{name} missing in {}",
                m.message_id
            );
        }
        assert!(header(&h, "To")
            .unwrap()
            .contains("support@quietdesk.example"));
        assert_eq!(header(&h, "MIME-Version"), Some("1.0"));
        let id = header(&h, "Message-ID").unwrap();
        assert_eq!(id, m.message_id);
        assert!(
            id.starts_with('<') && id.ends_with("@mail.example>"),
            "{id}"
        );
        assert!(ids.insert(id.to_owned()), "duplicate {id}");

        let date = DateTime::parse_from_rfc2822(header(&h, "Date").unwrap())
            .unwrap()
            .timestamp();
        assert!(date > last_date, "Date must increase");
        last_date = date;

        let received: Vec<&str> = h
            .iter()
            .filter(|(n, _)| n == "Received")
            .map(|(_, v)| v.as_str())
            .collect();
        assert!((1..=2).contains(&received.len()));
        for r in received {
            assert!(
                [
                    "[192.0.2.",
                    "[198.51.100.",
                    "[203.0.113.",
                    "[IPv6:2001:db8:"
                ]
                .iter()
                .any(|p| r.contains(p)),
                "not a documentation address: {r}"
            );
        }
    }
    assert!(last_date > SynthConfig::new(7, 1).start.timestamp());
}

#[test]
fn replies_reference_earlier_messages_of_their_thread() {
    let msgs = sample(11, 4000);
    let mut seen: HashMap<u64, Vec<String>> = HashMap::new();
    let mut next_thread = 0;
    let mut last_index: HashMap<u64, usize> = HashMap::new();
    let mut interleaved = 0;
    for (i, m) in msgs.iter().enumerate() {
        let h = headers(&m.raw);
        let subject = header(&h, "Subject").unwrap();
        let earlier = seen.entry(m.thread).or_default();
        if m.is_reply {
            let irt = header(&h, "In-Reply-To").expect("a reply has In-Reply-To");
            assert!(
                earlier.iter().any(|id| id == irt),
                "In-Reply-To {irt} not earlier in thread {}",
                m.thread
            );
            let refs = header(&h, "References").expect("a reply has References");
            for r in refs.split_whitespace() {
                assert!(earlier.iter().any(|id| id == r), "{r}");
            }
            assert!(subject.starts_with("Re: "), "{subject}");
            if last_index[&m.thread] + 1 != i {
                interleaved += 1;
            }
        } else {
            // Threads are numbered in the order they are opened.
            assert_eq!(m.thread, next_thread);
            next_thread += 1;
            assert!(earlier.is_empty());
            assert!(header(&h, "In-Reply-To").is_none() && header(&h, "References").is_none());
            assert!(!subject.starts_with("Re: "));
        }
        earlier.push(m.message_id.clone());
        last_index.insert(m.thread, i);
    }
    assert!(seen.values().all(|ids| (1..=6).contains(&ids.len())));
    assert!(seen.values().any(|ids| ids.len() == 6) && seen.values().any(|ids| ids.len() == 1));
    let replies = msgs.iter().filter(|m| m.is_reply).count();
    assert!(
        interleaved * 10 > replies * 8,
        "threads should interleave: {interleaved} of {replies}"
    );
}

#[test]
fn mime_mix_is_like_real_mail() {
    let msgs = sample(5, 5000);
    let (mut plain, mut alternative, mut mixed, mut qp, mut encoded_name) = (0, 0, 0, 0, 0);
    let (mut accented_body, mut accented_name) = (0, 0);
    let mut files = HashSet::new();
    let parser = MessageParser::default();
    for m in &msgs {
        let h = headers(&m.raw);
        let ct = header(&h, "Content-Type").unwrap();
        match ct.split(';').next().unwrap() {
            "text/plain" => plain += 1,
            "multipart/alternative" => alternative += 1,
            "multipart/mixed" => mixed += 1,
            other => panic!("unexpected {other}"),
        }
        assert_eq!(m.has_attachment, ct.starts_with("multipart/mixed"));
        let text = String::from_utf8_lossy(&m.raw);
        if text.contains("Content-Transfer-Encoding: quoted-printable") {
            qp += 1;
        }
        if header(&h, "From").unwrap().starts_with("=?UTF-8?") {
            encoded_name += 1;
        }

        let parsed = parser.parse(&m.raw).expect("parses");
        let subject = parsed.subject().unwrap();
        assert!(!subject.contains("=?"), "undecoded subject {subject}");
        let from = parsed.from().and_then(|a| a.first()).unwrap();
        assert!(from.address().unwrap().contains('@'));
        if let Some(name) = from.name() {
            assert!(!name.contains("=?"), "{name}");
            accented_name += usize::from(!name.is_ascii());
        }
        let body = parsed.body_text(0).expect("a text body");
        accented_body += usize::from(!body.is_ascii());
        assert!(body.lines().count() >= 3, "{body}");
        assert!(!body.contains("=C3"), "undecoded quoted-printable");
        if ct.starts_with("multipart/alternative") {
            assert!(parsed.body_html(0).unwrap().contains("<br>"));
        }
        if m.has_attachment {
            assert_eq!(parsed.attachment_count(), 1);
            let a = parsed.attachment(0).unwrap();
            let name = a.attachment_name().unwrap().to_owned();
            let magic: &[u8] = match name.as_str() {
                "log.txt" => b"20",
                "screenshot.png" => b"\x89PNG",
                "invoice.pdf" => b"%PDF",
                other => panic!("unexpected attachment {other}"),
            };
            assert!(a.contents().starts_with(magic), "{name}");
            assert!((100..2000).contains(&a.contents().len()));
            files.insert(name);
        }
    }
    let pct = |n: usize| n * 100 / msgs.len();
    assert!((64..=76).contains(&pct(plain)), "plain {plain}");
    assert!(
        (15..=25).contains(&pct(alternative)),
        "alternative {alternative}"
    );
    assert!((7..=13).contains(&pct(mixed)), "mixed {mixed}");
    assert!(pct(qp) >= 10, "quoted-printable {qp}");
    assert!(pct(encoded_name) >= 5, "RFC 2047 names {encoded_name}");
    assert_eq!(
        accented_name, encoded_name,
        "every encoded name decodes to non-ASCII"
    );
    assert!(
        accented_body >= qp,
        "decoded bodies keep their accents: {accented_body} < {qp}"
    );
    assert_eq!(files.len(), 3, "{files:?}");
}

#[test]
fn senders_are_mostly_customers_and_some_strangers() {
    let cfg = SynthConfig::new(3, 3000);
    let known: HashSet<String> = customers(&cfg).into_iter().map(|c| c.email).collect();
    let (mut customer, mut stranger) = (0, 0);
    let parser = MessageParser::default();
    for m in generate(&cfg) {
        let parsed = parser.parse(&m.raw).unwrap();
        let addr = parsed
            .from()
            .and_then(|a| a.first())
            .and_then(|a| a.address())
            .unwrap();
        if known.contains(addr) {
            customer += 1;
        } else {
            stranger += 1;
        }
    }
    assert!(
        stranger * 100 > 3000 * 5 && stranger * 100 < 3000 * 25,
        "{customer} {stranger}"
    );
}

#[test]
fn customers_have_one_or_two_addresses_and_all_statuses() {
    let cfg = SynthConfig::new(8, 20_000);
    let list = customers(&cfg);
    let n = cfg.customers as usize;
    assert!(list.len() > n && list.len() < 2 * n, "{}", list.len());
    let emails: HashSet<&str> = list.iter().map(|c| c.email.as_str()).collect();
    assert_eq!(emails.len(), list.len(), "addresses must be unique");
    let mut per_status: HashMap<&str, usize> = HashMap::new();
    for c in &list {
        *per_status.entry(c.status).or_default() += 1;
        assert!(c.email.is_ascii());
    }
    assert_eq!(per_status.len(), 3, "{per_status:?}");
    assert!(per_status["active"] > per_status["prospect"] && per_status["prospect"] > 0);
    assert!(
        list.iter().any(|c| !c.name.is_ascii()),
        "some names need RFC 2047"
    );
}
