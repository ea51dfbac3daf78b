//! Staff feedback end to end, against a private Dovecot and the real binary: mail the
//! rules call spam is quarantined and listed without its text; releasing it as not spam
//! and marking mail as spam or not spam teach the filter; the next ingest judges new
//! mail with what it learned.

use qd_testkit::Dovecot;
use serde_json::Value;

use crate::imap::ingest_once as ingest;
use crate::Qd;

/// Mail from a bulk sender: no display name, an Outlook-shaped Message-ID from no
/// Microsoft mailer, a priority field without a mailer, a bare-IP HELO.
fn bulk(i: usize) -> Vec<u8> {
    let date = chrono::Utc::now().to_rfc2822();
    format!(
        "Received: from [203.0.113.{i}] (unknown [203.0.113.{i}])\r\n\
         \tby mx.quietdesk.example with SMTP id B{i}; {date}\r\n\
         From: deals{i}@offers.example.net\r\nTo: support@quietdesk.example\r\n\
         Subject: Limited offer number {i}\r\n\
         Message-ID: <{i:04}6523de7$0000106a$0000646f@offers.example.net>\r\nDate: {date}\r\n\
         X-Priority: 3\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n<p>buy {i}</p>\r\n"
    )
    .into_bytes()
}

/// A customer's question from a well-run mail server.
fn question(i: usize) -> Vec<u8> {
    let date = chrono::Utc::now().to_rfc2822();
    format!(
        "Received: from mail.customer.example (mail.customer.example [198.51.100.20])\r\n\
         \tby mx.quietdesk.example with ESMTPS id C{i}; {date}\r\n\
         From: Customer {i} <person{i}@customer.example>\r\nTo: support@quietdesk.example\r\n\
         Subject: Question {i}\r\nMessage-ID: <q{i}.{i}@customer.example>\r\nDate: {date}\r\n\
         User-Agent: Thunderbird 115\r\nMIME-Version: 1.0\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\r\nHow do I do thing {i}?\r\n"
    )
    .into_bytes()
}

fn tags_of(m: &qd_store::entity::messages::Model) -> Vec<String> {
    let tags: Vec<Value> = serde_json::from_str(m.verdict_tags.as_deref().unwrap_or("[]")).unwrap();
    tags.iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staff_feedback_teaches_the_filter() {
    let d = Dovecot::start_plain().unwrap();
    for i in 1..=6 {
        d.deliver("user", "INBOX", &bulk(i)).unwrap();
        d.deliver("user", "INBOX", &question(i)).unwrap();
    }
    let qd = Qd::sqlite();
    let v = ingest(&qd, &d);
    assert_eq!(v["stored"], 12, "{v}");

    // The rules quarantine the bulk mail; the listing names the rules, not the text.
    let out = qd.run(&["quarantine", "list", "--json"]);
    assert!(out.status.success());
    let listed: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed.len(), 6, "{listed:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        !stdout.contains("Limited offer"),
        "the listing shows a subject"
    );
    assert!(!stdout.contains("deals1@"), "the listing shows an address");
    assert!(listed.iter().all(|m| m["tags"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t == "MID_OUTLOOK_FORGED")));

    // Release one as not spam: out of quarantine, and learned as ham.
    let first_id = listed[0]["message"].as_i64().unwrap();
    let first = first_id.to_string();
    let r = qd.json(&["quarantine", "release", &first, "--not-spam", "--json"]);
    assert_eq!(r["released"], true, "{r}");
    assert_eq!(r["learned"], "learned");
    assert_eq!(qd.json(&["stats", "--json"])["quarantined_messages"], 5);
    let again = qd.run(&["quarantine", "release", &first]);
    assert!(!again.status.success(), "released twice");
    assert!(String::from_utf8_lossy(&again.stderr).contains("not quarantined"));

    // Staff changed their mind: the same message is spam after all (relabelled), and
    // the rest are taught by Message-ID.
    let r = qd.json(&["filter", "learn", &first, "--spam", "--json"]);
    assert_eq!(r["outcome"], "relabelled", "{r}");
    for i in 1..=6 {
        let mid = format!("<{i:04}6523de7$0000106a$0000646f@offers.example.net>");
        let r = qd.json(&["filter", "learn", &mid, "--spam", "--json"]);
        let expected = if r["message"].as_i64() == Some(first_id) {
            "unchanged"
        } else {
            "learned"
        };
        assert_eq!(r["outcome"], expected, "{r}");
        let r = qd.json(&[
            "filter",
            "learn",
            &format!("<q{i}.{i}@customer.example>"),
            "--ham",
            "--json",
        ]);
        assert_eq!(r["outcome"], "learned", "{r}");
    }
    let r = qd.json(&[
        "filter",
        "learn",
        "<q1.1@customer.example>",
        "--ham",
        "--json",
    ]);
    assert_eq!(r["outcome"], "unchanged");
    assert_eq!(r["spam_messages"], 6, "{r}");
    assert_eq!(r["ham_messages"], 6, "{r}");
    let missing = qd.run(&["filter", "learn", "<nobody@nowhere.example>", "--spam"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no message"));

    // New mail is judged with what was learned. The model learns its correction to the
    // rules: bulk mail they already quarantine stays quarantined, the question stays
    // ham, and both verdicts show what the model added.
    d.deliver("user", "INBOX", &bulk(7)).unwrap();
    d.deliver("user", "INBOX", &question(7)).unwrap();
    assert_eq!(ingest(&qd, &d)["stored"], 2);
    let store = crate::imap::open_store(&qd).await;
    let spam = store
        .find_message("<00076523de7$0000106a$0000646f@offers.example.net>")
        .await
        .unwrap()
        .unwrap();
    assert!(
        tags_of(&spam).iter().any(|t| t.starts_with("LEARNED_")),
        "{:?}",
        tags_of(&spam)
    );
    assert!(spam.quarantined);
    let ham = store
        .find_message("<q7.7@customer.example>")
        .await
        .unwrap()
        .unwrap();
    assert!(
        tags_of(&ham).contains(&"LEARNED_HAM".to_string()),
        "{:?}",
        tags_of(&ham)
    );
    assert!(!ham.quarantined);
    assert_eq!(ham.verdict_class.as_deref(), Some("ham"));

    // Where the rules are wrong, staff feedback overrules them: a customer's newsletter
    // the rules quarantine, released as not spam three times, passes the fourth time.
    for i in 1..=3 {
        d.deliver("user", "INBOX", &newsletter(i)).unwrap();
    }
    assert_eq!(ingest(&qd, &d)["stored"], 3);
    for i in 1..=3 {
        let m = store
            .find_message(&format!("<news{i}.{i}@lists.hoster-news.example>"))
            .await
            .unwrap()
            .unwrap();
        assert!(m.quarantined, "newsletter {i}: {:?}", tags_of(&m));
        let r = qd.json(&[
            "quarantine",
            "release",
            &m.id.to_string(),
            "--not-spam",
            "--json",
        ]);
        assert_eq!(r["learned"], "learned", "{r}");
    }
    d.deliver("user", "INBOX", &newsletter(4)).unwrap();
    assert_eq!(ingest(&qd, &d)["stored"], 1);
    let next = store
        .find_message("<news4.4@lists.hoster-news.example>")
        .await
        .unwrap()
        .unwrap();
    assert!(
        !next.quarantined && tags_of(&next).contains(&"LEARNED_HAM".to_string()),
        "{:?} {:?}",
        next.verdict_score,
        tags_of(&next)
    );
    store.close().await.unwrap();
}

/// A newsletter a customer subscribed to, from a list server the rules dislike: HTML
/// only, no display name, a bare-IP HELO.
fn newsletter(i: usize) -> Vec<u8> {
    let date = chrono::Utc::now().to_rfc2822();
    format!(
        "Received: from [198.51.100.7] (unknown [198.51.100.7])\r\n\
         \tby mx.quietdesk.example with SMTP id N{i}; {date}\r\n\
         From: news@lists.hoster-news.example\r\nTo: support@quietdesk.example\r\n\
         Subject: Hoster news, issue {i}\r\n\
         Message-ID: <news{i}.{i}@lists.hoster-news.example>\r\nDate: {date}\r\n\
         X-Mailer: NewsletterKit 2\r\nMIME-Version: 1.0\r\nContent-Type: text/html\r\n\r\n\
         <p>news {i}</p>\r\n"
    )
    .into_bytes()
}
