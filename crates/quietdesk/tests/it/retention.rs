//! Retention and data-subject rights, end to end through the real binary: markers that
//! must be gone from every byte under the data dir (and from a PostgreSQL dump), other
//! people's data intact, time travel with `--now`, a crash in the middle of a run, the
//! export checked field by field.

use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::{both_backends, path_str, Qd};

/// Writes one message file per (from, marker, date) into a fresh folder.
fn write_mail(dir: &Path, mails: &[(&str, &str, &str, usize)]) -> PathBuf {
    let src = dir.join(format!("mail-{}", mails.len()));
    std::fs::create_dir_all(&src).unwrap();
    for (k, (from, marker, date, n)) in mails.iter().enumerate() {
        for i in 0..*n {
            std::fs::write(
                src.join(format!("{k}-{i}.eml")),
                format!(
                    "From: Person {k} <{from}>\r\nTo: support@quietdesk.example\r\n\
                     Subject: question {marker} number {i}\r\nMessage-ID: <m{k}-{i}@example.org>\r\n\
                     Date: {date}\r\n\
                     Received: from client.example.org (client.example.org [203.0.113.1{k}7])\r\n\
                     \tby mx.quietdesk.example; {date}\r\nMIME-Version: 1.0\r\n\
                     Content-Type: multipart/mixed; boundary=\"b\"\r\n\r\n--b\r\n\
                     Content-Type: text/plain; charset=utf-8\r\n\r\n\
                     Hello, the word {marker} appears in my message {i}.\r\n--b\r\n\
                     Content-Type: application/octet-stream; name=\"{marker}.bin\"\r\n\
                     Content-Disposition: attachment; filename=\"{marker}.bin\"\r\n\
                     Content-Transfer-Encoding: base64\r\n\r\nAAECAwQF\r\n--b--\r\n"
                ),
            )
            .unwrap();
        }
    }
    src
}

/// A fresh folder `name` holding these message files.
fn mail_files(qd: &Qd, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let src = qd.dir.path().join(name);
    std::fs::create_dir_all(&src).unwrap();
    for (file, raw) in files {
        std::fs::write(src.join(file), raw).unwrap();
    }
    src
}

/// Bob's message `kpwbobmarker` with `cc` in copy (`<cc-N@example.org>`).
fn bob_with_in_copy(cc: &str, n: u32, body: &str) -> String {
    format!(
        "From: Bob <bob@example.org>\r\nTo: support@quietdesk.example\r\n\
         Cc: {cc}\r\nSubject: kpwbobmarker\r\n\
         Message-ID: <cc-{n}@example.org>\r\nDate: Mon, 1 Jan 2024 12:00:00 +0000\r\n\r\n\
         {body}\r\n"
    )
}

/// The store (to close) and the messages of the ticket that holds `message_id`.
async fn thread_of(
    qd: &Qd,
    message_id: &str,
) -> (qd_store::Store, Vec<qd_store::entity::messages::Model>) {
    let store = crate::imap::open_sealed_store(qd).await;
    let ticket = store
        .ticket_of_message_id(message_id)
        .await
        .unwrap()
        .unwrap();
    let messages = store.ticket_messages(ticket).await.unwrap();
    (store, messages)
}

/// `customer erase WHO --reason REASON --json`.
fn erase_json(qd: &Qd, who: &str, reason: &str) -> Value {
    qd.json(&["customer", "erase", who, "--reason", reason, "--json"])
}

/// A retention run's report in which no class has anything due.
fn assert_nothing_due(run: &Value) {
    assert!(
        run["classes"]
            .as_object()
            .unwrap()
            .values()
            .all(|c| c["due"] == 0),
        "{run}"
    );
}

/// `customer set-status WHO --status STATUS [--since DATE] --json`.
fn set_status(qd: &Qd, who: &str, status: &str, since: Option<&str>) -> Value {
    let mut args = vec!["customer", "set-status", who, "--status", status];
    if let Some(since) = since {
        args.extend(["--since", since]);
    }
    args.push("--json");
    qd.json(&args)
}

/// Every file under `dir` whose bytes contain `needle` (case-insensitive ASCII).
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let needle = needle.to_ascii_lowercase().into_bytes();
    let mut hits = Vec::new();
    for entry in walk(dir) {
        let mut bytes = Vec::new();
        if std::fs::File::open(&entry)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .is_err()
        {
            continue;
        }
        bytes.make_ascii_lowercase();
        if bytes.windows(needle.len()).any(|w| w == needle.as_slice()) {
            hits.push(entry);
        }
    }
    hits
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A text dump of the PostgreSQL database (data only), when the test runs on it.
fn pg_dump(qd: &Qd) -> Option<String> {
    let pg = qd._pg.as_ref()?;
    let out = std::process::Command::new("pg_dump")
        .args(["--data-only", "--no-owner", pg.url()])
        .output()
        .expect("pg_dump (Debian postgresql-client) must be installed");
    assert!(
        out.status.success(),
        "pg_dump: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).to_ascii_lowercase())
}

/// `psql URL -Atc SQL` on the test's PostgreSQL database: its output lines.
fn psql(qd: &Qd, sql: &str) -> Vec<String> {
    let pg = qd._pg.as_ref().expect("a PostgreSQL test");
    let out = std::process::Command::new("psql")
        .args([pg.url(), "-v", "ON_ERROR_STOP=1", "-Atc", sql])
        .output()
        .expect("psql (Debian postgresql-client) must be installed");
    assert!(
        out.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// The relations of the PostgreSQL database (tables, their TOAST tables, indexes) with a
/// page whose bytes hold `needle`: what forensic tools would find in the files, dead row
/// versions and free space included, where `pg_dump` sees only live rows.
fn pg_pages_containing(qd: &Qd, needle: &[u8]) -> Vec<String> {
    psql(qd, "CREATE EXTENSION IF NOT EXISTS pageinspect");
    psql(
        qd,
        &format!(
            "WITH public_tables AS ( \
               SELECT oid, reltoastrelid FROM pg_class \
               WHERE relnamespace = 'public'::regnamespace AND relkind = 'r'), \
             rels AS ( \
               SELECT oid FROM public_tables \
               UNION SELECT reltoastrelid FROM public_tables WHERE reltoastrelid <> 0 \
               UNION SELECT i.indexrelid FROM pg_index i \
                 WHERE i.indrelid IN (SELECT oid FROM public_tables) \
                    OR i.indrelid IN (SELECT reltoastrelid FROM public_tables)) \
             SELECT r.oid::regclass::text FROM rels r \
             WHERE EXISTS (SELECT 1 FROM generate_series(0, \
                   (pg_relation_size(r.oid) / current_setting('block_size')::int)::int - 1) b \
               WHERE position(decode('{}', 'hex') IN get_raw_page(r.oid::regclass::text, b)) > 0) \
             ORDER BY 1",
            hex::encode(needle)
        ),
    )
}

fn assert_gone(qd: &Qd, marker: &str) {
    let files = files_containing(&qd.data_dir(), marker);
    assert!(files.is_empty(), "`{marker}` still in {files:?}");
    if let Some(dump) = pg_dump(qd) {
        assert!(
            !dump.contains(&marker.to_ascii_lowercase()),
            "`{marker}` still in PostgreSQL"
        );
    }
    assert!(
        qd.search(marker, 10).is_empty(),
        "`{marker}` still searchable"
    );
}

fn assert_present(qd: &Qd, marker: &str, hits: usize) {
    assert_eq!(
        qd.search(marker, 50).len(),
        hits,
        "`{marker}` should be searchable"
    );
}

async fn erasure_is_complete(qd: Qd) {
    let src = write_mail(
        qd.dir.path(),
        &[
            (
                "alice@example.org",
                "zqxalicemarker",
                "Mon, 1 Jan 2024 10:00:00 +0000",
                4,
            ),
            (
                "bob@example.org",
                "kpwbobmarker",
                "Mon, 1 Jan 2024 11:00:00 +0000",
                3,
            ),
        ],
    );
    // Bob answers all, with Alice in Cc: his message stays, Alice's address must not.
    std::fs::write(
        src.join("9-cc.eml"),
        "From: Bob <bob@example.org>\r\nTo: support@quietdesk.example\r\n\
         Cc: Alice <alice@example.org>\r\nSubject: kpwbobmarker for both of us\r\n\
         Message-ID: <cc-1@example.org>\r\nDate: Mon, 1 Jan 2024 12:00:00 +0000\r\n\r\n\
         We both see kpwbobmarker.\r\n",
    )
    .unwrap();
    let imported = qd.json(&["import", path_str(&src), "--json"]);
    assert_eq!(imported["imported"], 8);
    assert_eq!(qd.search("to:alice@example.org", 10).len(), 1);
    set_status(&qd, "alice@example.org", "active", Some("2020-01-01"));
    assert_present(&qd, "zqxalicemarker", 4);
    // The scan can see the marker before erasure (so its silence afterwards means something).
    if qd._pg.is_none() {
        assert!(!files_containing(&qd.data_dir(), "zqxalicemarker").is_empty());
    } else {
        assert!(pg_dump(&qd).unwrap().contains("zqxalicemarker"));
    }
    let before = qd.json(&["stats", "--json"]);
    // Alice's data key as PostgreSQL stores it (sealed under the master key).
    let alices_key = qd._pg.as_ref().map(|_| {
        let rows = psql(
            &qd,
            "SELECT encode(k.wrapped_key, 'hex') FROM blob_keys k \
             JOIN contacts c ON k.scope = 'contact-' || c.id \
             WHERE c.address = 'alice@example.org'",
        );
        assert_eq!(rows.len(), 1, "{rows:?}");
        let key = hex::decode(&rows[0]).unwrap();
        assert_eq!(pg_pages_containing(&qd, &key), vec!["blob_keys"]);
        assert!(!pg_pages_containing(&qd, b"zqxalicemarker").is_empty());
        key
    });

    let erased = erase_json(&qd, "alice@example.org", "request 17");
    assert_eq!(erased["counts"]["tickets"], 4, "{erased}");
    assert_eq!(erased["counts"]["messages"], 4);
    assert_eq!(erased["counts"]["customers"], 1);
    assert!(erased["counts"]["keys_destroyed"].as_u64().unwrap() >= 1);

    assert_eq!(erased["counts"]["redacted"], 1, "Bob's reply-all");
    // Bob's raw mail stays his, without Alice's mailbox in its header.
    let store = crate::imap::open_sealed_store(&qd).await;
    let ticket = store
        .ticket_of_message_id("cc-1@example.org")
        .await
        .unwrap()
        .unwrap();
    let bobs = store.ticket_messages(ticket).await.unwrap();
    let raw = store.raw_message(bobs[0].id).await.unwrap().unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert!(
        raw.contains("Cc: erased@erased.invalid\r\n") && !raw.contains("Alice"),
        "{raw}"
    );
    assert!(raw.contains("We both see kpwbobmarker."), "{raw}");
    store.close().await.unwrap();
    assert_gone(&qd, "zqxalicemarker");
    assert_gone(&qd, "alice@example.org");
    assert!(qd.search("to:alice@example.org", 10).is_empty());
    assert_present(&qd, "kpwbobmarker", 4);
    if let Some(key) = &alices_key {
        // The erasure's key destruction reached PostgreSQL's files, not only its rows: the
        // old row version holding the wrapped key was rewritten away.
        assert_eq!(pg_pages_containing(&qd, key), Vec::<String>::new());
    }
    // `compact` rewrites the database: nothing of Alice is left in any page.
    let compacted = qd.json(&["compact", "--json"]);
    assert!(
        compacted["bytes_after"].as_i64().unwrap() > 0,
        "{compacted}"
    );
    if qd._pg.is_some() {
        for needle in ["zqxalicemarker", "alice@example.org"] {
            assert_eq!(
                pg_pages_containing(&qd, needle.as_bytes()),
                Vec::<String>::new(),
                "{needle}"
            );
        }
    }
    assert_gone(&qd, "zqxalicemarker");
    assert_present(&qd, "kpwbobmarker", 4);
    let after = qd.json(&["stats", "--json"]);
    assert_eq!(after["messages"], before["messages"].as_u64().unwrap() - 4);
    assert_eq!(after["blobs"], before["blobs"].as_u64().unwrap() - 4);
    assert_eq!(after["customers"], 0);
    // Erasing again finds nobody.
    let again = qd.run(&[
        "customer",
        "erase",
        "alice@example.org",
        "--reason",
        "again",
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("no customer or contact"));
    // The same archive imported again does not bring Alice back: her mail is known as
    // deleted, Bob's (his reply-all redacted) as stored.
    let reimported = qd.json(&["import", path_str(&src), "--json"]);
    assert_eq!(reimported["imported"], 0, "{reimported}");
    assert_eq!(reimported["forgotten"], 4, "{reimported}");
    assert_eq!(reimported["duplicates"], 4, "{reimported}");
    assert_gone(&qd, "zqxalicemarker");
    assert_gone(&qd, "alice@example.org");
}
both_backends!(erasure_is_complete);

/// Other people's mail that names the erased person only outside To and Cc (Reply-To,
/// Bcc, Delivered-To, Received `for`) loses them too: the store recorded those mentions
/// with each blob, so the erasure finds the mail without opening every blob.
async fn erasure_reaches_mail_that_names_them_outside_to_and_cc(qd: Qd) {
    let src = write_mail(
        qd.dir.path(),
        &[(
            "alice@example.org",
            "zqxalicemarker",
            "Mon, 1 Jan 2024 10:00:00 +0000",
            1,
        )],
    );
    std::fs::write(
        src.join("9-reply-to.eml"),
        "Received: from mx.example.org by mx.quietdesk.example\r\n\
         \tfor <Alice@Example.org>; Mon, 1 Jan 2024 12:00:00 +0000\r\n\
         From: Bob <bob@example.org>\r\nTo: support@quietdesk.example\r\n\
         Reply-To: Alice Example <alice@example.org>\r\nBcc: alice@example.org\r\n\
         Subject: kpwbobmarker on her behalf\r\n\
         Message-ID: <rt-1@example.org>\r\nDate: Mon, 1 Jan 2024 12:00:00 +0000\r\n\r\n\
         Please answer my colleague.\r\n",
    )
    .unwrap();
    std::fs::write(
        src.join("9-delivered.eml"),
        "Delivered-To: alice@example.org\r\n\
         From: Carol <carol@example.org>\r\nTo: support@quietdesk.example\r\n\
         Subject: kpwcarolmarker forwarded\r\n\
         Message-ID: <dt-1@example.org>\r\nDate: Mon, 1 Jan 2024 13:00:00 +0000\r\n\r\n\
         Forwarded by a colleague.\r\n",
    )
    .unwrap();
    let imported = qd.json(&["import", path_str(&src), "--json"]);
    assert_eq!(imported["imported"], 3);
    set_status(&qd, "alice@example.org", "active", None);
    let store = crate::imap::open_sealed_store(&qd).await;
    let raw_of = |id: &'static str| {
        let store = &store;
        async move {
            let ticket = store.ticket_of_message_id(id).await.unwrap().unwrap();
            let messages = store.ticket_messages(ticket).await.unwrap();
            let raw = store.raw_message(messages[0].id).await.unwrap().unwrap();
            String::from_utf8(raw).unwrap()
        }
    };
    // The check below can fail: before the erasure both name her.
    assert!(raw_of("rt-1@example.org")
        .await
        .contains("alice@example.org"));
    assert!(raw_of("dt-1@example.org")
        .await
        .contains("alice@example.org"));

    let erased = erase_json(&qd, "alice@example.org", "request 18");
    assert_eq!(erased["counts"]["messages"], 1, "{erased}");
    assert_eq!(
        erased["counts"]["redacted"], 2,
        "Bob's and Carol's mail: {erased}"
    );
    let bobs = raw_of("rt-1@example.org").await;
    assert!(!bobs.to_ascii_lowercase().contains("alice"), "{bobs}");
    assert!(
        bobs.contains("Reply-To: erased@erased.invalid\r\n"),
        "{bobs}"
    );
    assert!(bobs.contains("\tfor <erased@erased.invalid>;"), "{bobs}");
    assert!(bobs.contains("Please answer my colleague."), "{bobs}");
    let carols = raw_of("dt-1@example.org").await;
    assert!(
        carols.starts_with("Delivered-To: erased@erased.invalid\r\n"),
        "{carols}"
    );
    store.close().await.unwrap();
    assert_present(&qd, "kpwbobmarker", 1);
    assert_present(&qd, "kpwcarolmarker", 1);
}
both_backends!(erasure_reaches_mail_that_names_them_outside_to_and_cc);

/// Someone who never wrote, only in Cc of others' mail: their erasure only rewrites
/// other people's messages, and the replaced index documents that named them leave the
/// segment files too (no deleted document left behind).
async fn erasing_a_recipient_leaves_no_old_document_in_the_index(qd: Qd) {
    let src = mail_files(
        &qd,
        "cc-only",
        &[
            (
                "1.eml",
                bob_with_in_copy(
                    "Carol Qvxcarol <carol@example.org>",
                    2,
                    "Carol reads along.",
                )
                .as_str(),
            ),
            // A message that stays as it is, in the same segment: a segment whose documents are
            // all deleted is dropped whole, which would hide what this test looks for.
            (
                "2.eml",
                "From: Dan <dan@example.org>\r\nTo: support@quietdesk.example\r\n\
                 Subject: kpwdanmarker\r\nMessage-ID: <other-2@example.org>\r\n\
                 Date: Mon, 1 Jan 2024 13:00:00 +0000\r\n\r\nUnrelated.\r\n",
            ),
        ],
    );
    qd.json(&["import", path_str(&src), "--json"]);
    set_status(&qd, "carol@example.org", "active", None);
    assert_eq!(qd.search("to:carol@example.org", 10).len(), 1);
    let erased = erase_json(&qd, "carol@example.org", "request 19");
    assert_eq!(erased["counts"]["messages"], 0, "{erased}");
    assert_eq!(erased["counts"]["redacted"], 1, "{erased}");
    assert!(qd.search("to:carol@example.org", 10).is_empty());
    assert!(qd.search("qvxcarol", 10).is_empty());
    // The segment files are compressed (a byte scan cannot see their terms): the index
    // says whether a replaced document is still in them.
    let stats = qd.json(&["stats", "--json"]);
    assert_eq!(stats["index_deleted_documents"], 0, "{stats}");
    assert_present(&qd, "kpwbobmarker", 1);
}
both_backends!(erasing_a_recipient_leaves_no_old_document_in_the_index);

/// An address the person had before a rectification is erased from other people's
/// mail too.
async fn erasure_covers_addresses_from_before_a_rectification(qd: Qd) {
    let src = mail_files(
        &qd,
        "rectified",
        &[(
            "1.eml",
            bob_with_in_copy("Dora <dora@old.example>", 3, "Dora reads along.").as_str(),
        )],
    );
    qd.json(&["import", path_str(&src), "--json"]);
    set_status(&qd, "dora@old.example", "active", None);
    assert!(qd
        .run(&[
            "customer",
            "rectify",
            "dora@old.example",
            "--field",
            "email",
            "--value",
            "dora@new.example",
        ])
        .status
        .success());
    let erased = erase_json(&qd, "dora@new.example", "request 20");
    assert_eq!(erased["counts"]["redacted"], 1, "{erased}");
    assert!(qd.search("to:dora@old.example", 10).is_empty());
    assert_present(&qd, "kpwbobmarker", 1);
}
both_backends!(erasure_covers_addresses_from_before_a_rectification);

/// Someone we know only as a recipient (never wrote, no customer) can be erased by
/// address: the mail that names them is rewritten, and an address nothing names is
/// refused as unknown.
async fn an_address_only_named_by_others_can_be_erased(qd: Qd) {
    let src = mail_files(
        &qd,
        "named",
        &[(
            "1.eml",
            bob_with_in_copy("Erin <erin@example.org>", 4, "Erin reads along.").as_str(),
        )],
    );
    qd.json(&["import", path_str(&src), "--json"]);
    assert_eq!(qd.search("to:erin@example.org", 10).len(), 1);
    let erased = erase_json(&qd, "erin@example.org", "request 21");
    assert_eq!(erased["subject"], "address", "{erased}");
    assert_eq!(erased["counts"]["redacted"], 1, "{erased}");
    assert!(qd.search("to:erin@example.org", 10).is_empty());
    assert_present(&qd, "kpwbobmarker", 1);
    for who in ["erin@example.org", "nobody@example.org"] {
        let out = qd.run(&["customer", "erase", who, "--reason", "again"]);
        assert!(!out.status.success(), "{who}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("no customer or contact"), "{err}");
    }
}
both_backends!(an_address_only_named_by_others_can_be_erased);

/// A delivery report (bounce) on someone else's ticket quotes an erased person's address
/// in its body: the report holds nobody's own text, so the address goes from its text,
/// its index document and its raw mail. Before, erasure rewrote header blocks only, and
/// the report kept the address, searchable.
async fn a_bounce_loses_the_erased_address_in_its_body(qd: Qd) {
    let dsn = "From: Mail Delivery System <MAILER-DAEMON@mx.example.net>\r\n\
               To: support@quietdesk.example\r\nSubject: Undelivered Mail Returned to Sender\r\n\
               Message-ID: <dsn-1@mx.example.net>\r\nReferences: <cc-6@example.org>\r\n\
               Date: Mon, 1 Jan 2024 12:05:00 +0000\r\nMIME-Version: 1.0\r\n\
               Content-Type: multipart/report; report-type=delivery-status; boundary=\"r\"\r\n\r\n\
               --r\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
               <Erin@example.org>: host mx.example.org said: 550 xqdsnmarker unknown user\r\n\
               --r\r\nContent-Type: message/delivery-status\r\n\r\n\
               Reporting-MTA: dns; mx.example.net\r\n\r\n\
               Final-Recipient: rfc822; erin@example.org\r\nAction: failed\r\nStatus: 5.1.1\r\n\
               --r\r\nContent-Type: text/rfc822-headers\r\n\r\n\
               From: Bob <bob@example.org>\r\nCc: erin@example.org\r\nSubject: kpwbobmarker\r\n\
               --r--\r\n";
    let src = mail_files(
        &qd,
        "bounced",
        &[
            (
                "1.eml",
                bob_with_in_copy("erin@example.org", 6, "Bob writes.").as_str(),
            ),
            ("2.eml", dsn),
        ],
    );
    let imported = qd.json(&["import", path_str(&src), "--json"]);
    assert_eq!(
        imported["tickets"], 1,
        "the report joins Bob's ticket: {imported}"
    );
    assert_eq!(qd.search("xqdsnmarker", 10).len(), 1);
    assert!(!qd.search("\"erin@example.org\"", 10).is_empty());

    let erased = erase_json(&qd, "erin@example.org", "request 22");
    assert_eq!(
        erased["counts"]["redacted"], 2,
        "Bob's mail and the report: {erased}"
    );
    assert_gone(&qd, "erin@example.org");
    assert_present(&qd, "xqdsnmarker", 1);
    let (store, messages) = thread_of(&qd, "dsn-1@mx.example.net").await;
    let report = messages
        .iter()
        .find(|m| m.message_id.as_deref() == Some("dsn-1@mx.example.net"))
        .unwrap();
    assert!(
        report.body_text.contains("<erased@erased.invalid>: host"),
        "{}",
        report.body_text
    );
    let raw = store.raw_message(report.id).await.unwrap().unwrap();
    let raw = String::from_utf8(raw).unwrap();
    assert!(
        !raw.to_ascii_lowercase().contains("erin@example.org"),
        "{raw}"
    );
    assert!(
        raw.contains("Final-Recipient: rfc822; erased@erased.invalid"),
        "{raw}"
    );
    store.close().await.unwrap();
}
both_backends!(a_bounce_loses_the_erased_address_in_its_body);

/// A subject on someone else's ticket that names the erased person ("refund for
/// gina@…") loses the address: in the message, in the ticket's title, in the raw mail and
/// in the index. Before, only To, Cc and the raw header block were rewritten, and the
/// ticket list and a search still showed it.
async fn a_subject_naming_the_erased_person_loses_the_address(qd: Qd) {
    let src = mail_files(
        &qd,
        "subjects",
        &[
            (
                "1.eml",
                "From: Bob <bob@example.org>\r\nTo: support@quietdesk.example\r\n\
                 Subject: kpwbobmarker refund for gina@example.org\r\n\
                 Message-ID: <subj-1@example.org>\r\nDate: Mon, 1 Jan 2024 12:00:00 +0000\r\n\r\n\
                 Bob asks.\r\n",
            ),
            (
                "2.eml",
                "From: Gina <gina@example.org>\r\nTo: support@quietdesk.example\r\n\
                 Subject: my own question\r\n\
                 Message-ID: <subj-2@example.org>\r\nDate: Mon, 1 Jan 2024 13:00:00 +0000\r\n\r\n\
                 Gina asks.\r\n",
            ),
        ],
    );
    let imported = qd.json(&["import", path_str(&src), "--json"]);
    assert_eq!(imported["tickets"], 2, "{imported}");
    assert!(!qd.search("\"gina@example.org\"", 10).is_empty());

    let erased = erase_json(&qd, "gina@example.org", "request 23");
    assert_eq!(
        erased["counts"]["redacted"], 2,
        "message and ticket: {erased}"
    );
    assert_gone(&qd, "gina@example.org");
    assert_present(&qd, "kpwbobmarker", 1);
    let (store, messages) = thread_of(&qd, "subj-1@example.org").await;
    assert!(
        messages[0]
            .subject
            .contains("refund for erased@erased.invalid"),
        "{}",
        messages[0].subject
    );
    store.close().await.unwrap();
}
both_backends!(a_subject_naming_the_erased_person_loses_the_address);

/// Someone who wrote only on the erased person's ticket (a colleague answering in the
/// thread) keeps no contact row: their mail went with the ticket, and the row held
/// their address and name for nothing, out of retention's reach.
async fn an_erasure_leaves_no_empty_contacts_behind(qd: Qd) {
    let src = mail_files(
        &qd,
        "thread",
        &[
            (
                "1.eml",
                "From: Hana <hana@example.org>\r\nTo: support@quietdesk.example\r\n\
                 Subject: printer\r\n\
                 Message-ID: <thread-1@example.org>\r\nDate: Mon, 1 Jan 2024 12:00:00 +0000\r\n\r\n\
                 Hana asks.\r\n",
            ),
            (
                "2.eml",
                "From: Dirk Qvtmarker <dirk@example.net>\r\nTo: support@quietdesk.example\r\n\
                 Subject: Re: printer\r\nIn-Reply-To: <thread-1@example.org>\r\n\
                 Message-ID: <thread-2@example.net>\r\nDate: Mon, 1 Jan 2024 13:00:00 +0000\r\n\r\n\
                 Dirk adds.\r\n",
            ),
        ],
    );
    let imported = qd.json(&["import", path_str(&src), "--json"]);
    assert_eq!(imported["tickets"], 1, "{imported}");
    let before = qd.json(&["stats", "--json"]);
    assert_eq!(before["contacts"], 2, "{before}");

    let erased = erase_json(&qd, "hana@example.org", "request 24");
    assert_eq!(erased["counts"]["contacts"], 2, "{erased}");
    let after = qd.json(&["stats", "--json"]);
    assert_eq!(after["contacts"], 0, "{after}");
    assert_gone(&qd, "dirk@example.net");
    assert_gone(&qd, "Qvtmarker");
}
both_backends!(an_erasure_leaves_no_empty_contacts_behind);

/// A customer's email rectified to an address that already wrote to us takes that
/// mail over: it is kept as the customer's, not deleted as a non-customer's request.
async fn rectifying_an_email_files_its_mail_under_the_customer(qd: Qd) {
    let src = write_mail(
        qd.dir.path(),
        &[(
            "fay@new.example",
            "faymarker",
            "Wed, 1 Apr 2020 09:00:00 +0000",
            1,
        )],
    );
    qd.json(&["import", path_str(&src), "--json"]);
    set_status(&qd, "fay@old.example", "active", Some("2019-01-01"));
    assert!(qd
        .run(&[
            "customer",
            "rectify",
            "fay@old.example",
            "--field",
            "email",
            "--value",
            "fay@new.example",
        ])
        .status
        .success());
    qd.json(&["retention", "run", "--now", "2026-01-01", "--json"]);
    assert_present(&qd, "faymarker", 1);
}
both_backends!(rectifying_an_email_files_its_mail_under_the_customer);

/// A prospect's record goes with their requests, a year after they became a prospect;
/// a prospect with requests still kept stays.
async fn a_prospect_goes_with_their_requests(qd: Qd) {
    let src = write_mail(
        qd.dir.path(),
        &[
            (
                "pia@example.org",
                "piamarker",
                "Wed, 1 Apr 2020 09:00:00 +0000",
                1,
            ),
            (
                "quin@example.org",
                "quinmarker",
                "Fri, 1 Aug 2025 09:00:00 +0000",
                1,
            ),
        ],
    );
    qd.json(&["import", path_str(&src), "--json"]);
    for who in ["pia@example.org", "quin@example.org"] {
        set_status(&qd, who, "prospect", Some("2020-01-01"));
    }
    let run = qd.json(&["retention", "run", "--now", "2026-01-01", "--json"]);
    assert_eq!(run["customers_deleted"], 1, "{run}");
    assert_gone(&qd, "piamarker");
    assert_present(&qd, "quinmarker", 1);
    assert_eq!(qd.json(&["stats", "--json"])["customers"], 1);
}
both_backends!(a_prospect_goes_with_their_requests);

/// A non-customer's request in which an active customer's contact wrote (a colleague in
/// the thread) is kept as that customer's correspondence: before, it went after 12
/// months with the customer's mail in it. A request without such a participant still
/// goes.
async fn a_customer_in_the_thread_keeps_a_request(qd: Qd) {
    let src = mail_files(
        &qd,
        "participants",
        &[
            (
                "1.eml",
                "From: Pia <pia@example.org>\r\nTo: support@quietdesk.example\r\n\
                 Subject: outage\r\nMessage-ID: <part-1@example.org>\r\n\
                 Date: Wed, 1 Apr 2020 09:00:00 +0000\r\n\r\nPia asks piathreadmarker.\r\n",
            ),
            (
                "2.eml",
                "From: Carl <carl@example.com>\r\nTo: support@quietdesk.example\r\n\
                 Subject: Re: outage\r\nIn-Reply-To: <part-1@example.org>\r\n\
                 Message-ID: <part-2@example.com>\r\n\
                 Date: Thu, 2 Apr 2020 09:00:00 +0000\r\n\r\nCarl adds carlthreadmarker.\r\n",
            ),
            (
                "3.eml",
                "From: Quin <quin@example.org>\r\nTo: support@quietdesk.example\r\n\
                 Subject: question\r\nMessage-ID: <part-3@example.org>\r\n\
                 Date: Wed, 1 Apr 2020 10:00:00 +0000\r\n\r\nQuin asks quinalonemarker.\r\n",
            ),
        ],
    );
    let imported = qd.json(&["import", path_str(&src), "--json"]);
    assert_eq!(imported["tickets"], 2, "{imported}");
    set_status(&qd, "carl@example.com", "active", Some("2019-01-01"));
    let run = qd.json(&["retention", "run", "--now", "2026-01-01", "--json"]);
    assert_present(&qd, "piathreadmarker", 1);
    assert_present(&qd, "carlthreadmarker", 1);
    assert_gone(&qd, "quinalonemarker");
    assert_eq!(qd.json(&["stats", "--json"])["tickets"], 1, "{run}");
    // Carl's company leaves in mid-2021: the thread stays for the former customer's
    // term (7 years), then goes.
    set_status(&qd, "carl@example.com", "former", Some("2021-06-01"));
    qd.json(&["retention", "run", "--now", "2026-01-01", "--json"]);
    assert_present(&qd, "piathreadmarker", 1);
    qd.json(&["retention", "run", "--now", "2028-06-02", "--json"]);
    assert_gone(&qd, "piathreadmarker");
}
both_backends!(a_customer_in_the_thread_keeps_a_request);

async fn retention_follows_customer_status(qd: Qd) {
    let src = write_mail(
        qd.dir.path(),
        &[
            // Former customer since 2015: due 2022.
            (
                "carol@example.org",
                "formermarkerc",
                "Tue, 3 Mar 2014 09:00:00 +0000",
                2,
            ),
            // Never a customer, last wrote 2020: due 2021.
            (
                "dave@example.org",
                "prospectmarkerd",
                "Wed, 1 Apr 2020 09:00:00 +0000",
                2,
            ),
            // Active customer since 2010: kept.
            (
                "erin@example.org",
                "activemarkere",
                "Thu, 1 Apr 2010 09:00:00 +0000",
                2,
            ),
            // Former since 2024: due 2031.
            (
                "frank@example.org",
                "recentmarkerf",
                "Fri, 1 Mar 2019 09:00:00 +0000",
                1,
            ),
        ],
    );
    qd.json(&["import", path_str(&src), "--json"]);
    set_status(&qd, "carol@example.org", "former", Some("2015-01-01"));
    set_status(&qd, "erin@example.org", "active", Some("2010-01-01"));
    set_status(&qd, "frank@example.org", "former", Some("2024-06-30"));

    let dry = qd.json(&[
        "retention",
        "run",
        "--dry-run",
        "--now",
        "2026-01-01",
        "--json",
    ]);
    assert_eq!(dry["tickets_evaluated"], 7);
    assert_eq!(dry["classes"]["customer_correspondence"]["due"], 2, "{dry}");
    assert_eq!(dry["classes"]["non_customer"]["due"], 2, "{dry}");
    let customers = dry["customers"].as_array().unwrap();
    let next = |status: &str| -> Vec<Value> {
        customers
            .iter()
            .filter(|c| c["status"] == status)
            .map(|c| c["next_due"].clone())
            .collect()
    };
    assert_eq!(next("active"), vec![Value::Null]);
    let former: Vec<String> = next("former")
        .iter()
        .map(|v| v.as_str().unwrap()[..10].to_string())
        .collect();
    assert!(former.contains(&"2022-01-01".to_string()), "{former:?}");
    assert!(former.contains(&"2031-06-30".to_string()), "{former:?}");
    // A dry run deletes nothing.
    assert_present(&qd, "formermarkerc", 2);

    let run = qd.json(&["retention", "run", "--now", "2026-01-01", "--json"]);
    assert_eq!(
        run["classes"]["customer_correspondence"]["deleted"]["messages"], 2,
        "{run}"
    );
    assert_eq!(run["classes"]["non_customer"]["deleted"]["messages"], 2);
    assert_gone(&qd, "formermarkerc");
    assert_gone(&qd, "prospectmarkerd");
    assert_gone(&qd, "dave@example.org");
    assert_present(&qd, "activemarkere", 2);
    assert_present(&qd, "recentmarkerf", 1);
    // Idempotent: a second run finds nothing due.
    let again = qd.json(&["retention", "run", "--now", "2026-01-01", "--json"]);
    assert_nothing_due(&again);
    // Travel further: frank's correspondence becomes due in mid-2031.
    let later = qd.json(&["retention", "run", "--now", "2031-07-01", "--json"]);
    assert_eq!(
        later["classes"]["customer_correspondence"]["deleted"]["messages"], 1,
        "{later}"
    );
    assert_gone(&qd, "recentmarkerf");
    assert_present(&qd, "activemarkere", 2);
}
both_backends!(retention_follows_customer_status);

/// A customer who left and came back as a prospect (billing's new trial) keeps the former
/// customer's term for the mail from before: seven years from leaving, not a year of
/// silence. Before, a prospect was a non-customer whatever it had been.
async fn a_customer_back_on_trial_keeps_the_former_term(qd: Qd) {
    let src = write_mail(
        qd.dir.path(),
        &[(
            "gina@example.org",
            "trialmarkerg",
            "Fri, 1 Mar 2019 09:00:00 +0000",
            1,
        )],
    );
    qd.json(&["import", path_str(&src), "--json"]);
    // Hugo left the same day and has no mail with us: his record stays as a former
    // customer's would.
    for who in ["gina@example.org", "hugo@example.org"] {
        set_status(&qd, who, "active", Some("2010-01-01"));
        set_status(&qd, who, "prospect", Some("2024-01-31"));
    }
    let run = qd.json(&["retention", "run", "--now", "2026-01-01", "--json"]);
    assert_nothing_due(&run);
    assert_present(&qd, "trialmarkerg", 1);
    assert_eq!(run["customers_deleted"], 0, "{run}");
    assert_eq!(qd.json(&["stats", "--json"])["customers"], 2);
    let later = qd.json(&["retention", "run", "--now", "2031-02-01", "--json"]);
    assert_eq!(
        later["classes"]["customer_correspondence"]["deleted"]["messages"], 1,
        "{later}"
    );
    assert_gone(&qd, "trialmarkerg");
}
both_backends!(a_customer_back_on_trial_keeps_the_former_term);

/// A customer's legal hold covers its mail on other people's tickets: Carol (held)
/// answered in Dave's old request, so the ticket stays past Dave's year. Before, only
/// the ticket's own customer's hold counted, and Carol's message went with Dave's.
async fn a_hold_covers_the_customers_mail_on_others_tickets(qd: Qd) {
    let src = mail_files(
        &qd,
        "thread",
        &[
            (
                "1.eml",
                "From: Dave <dave@example.org>\r\nTo: support@quietdesk.example\r\n\
                 Subject: davemarker printer\r\nMessage-ID: <dave-1@example.org>\r\n\
                 Date: Wed, 1 Apr 2020 09:00:00 +0000\r\n\r\nhello\r\n",
            ),
            (
                "2.eml",
                "From: Carol <carol@example.org>\r\nTo: support@quietdesk.example\r\n\
                 Subject: Re: davemarker printer\r\nMessage-ID: <carol-1@example.org>\r\n\
                 In-Reply-To: <dave-1@example.org>\r\n\
                 Date: Thu, 2 Apr 2020 09:00:00 +0000\r\n\r\ncarolmarker here\r\n",
            ),
        ],
    );
    let imported = qd.json(&["import", path_str(&src), "--json"]);
    assert_eq!(imported["tickets"], 1, "{imported}");
    set_status(&qd, "carol@example.org", "former", Some("2015-01-01"));
    assert!(qd
        .run(&["customer", "hold", "carol@example.org"])
        .status
        .success());
    let run = qd.json(&["retention", "run", "--now", "2026-01-01", "--json"]);
    assert_nothing_due(&run);
    assert_present(&qd, "carolmarker", 1);
    assert_present(&qd, "davemarker", 2);
    // Lifted, the request goes after its year of silence, Carol's answer with it.
    assert!(qd
        .run(&["customer", "hold", "carol@example.org", "--off"])
        .status
        .success());
    qd.json(&["retention", "run", "--now", "2026-01-01", "--json"]);
    assert_gone(&qd, "carolmarker");
    assert_gone(&qd, "davemarker");
}
both_backends!(a_hold_covers_the_customers_mail_on_others_tickets);

/// The hold covers quarantined mail too: Carol's message, quarantined as spam by mistake
/// on Dave's ticket, stays past the quarantine term while her customer is held. Before,
/// only the ticket's own customer's hold counted.
async fn a_hold_covers_the_customers_quarantined_mail_on_others_tickets(qd: Qd) {
    let src = mail_files(
        &qd,
        "thread",
        &[(
            "1.eml",
            "From: Dave <dave@example.org>\r\nTo: support@quietdesk.example\r\n\
             Subject: printer\r\nMessage-ID: <dave-1@example.org>\r\n\
             Date: Mon, 15 Dec 2025 09:00:00 +0000\r\n\r\nhello\r\n",
        )],
    );
    qd.json(&["import", path_str(&src), "--json"]);
    set_status(&qd, "carol@example.org", "active", Some("2015-01-01"));
    assert!(qd
        .run(&["customer", "hold", "carol@example.org"])
        .status
        .success());
    let raw = b"From: Carol <carol@example.org>\r\nTo: support@quietdesk.example\r\n\
        Subject: Re: printer\r\nMessage-ID: <carol-q@example.org>\r\n\
        In-Reply-To: <dave-1@example.org>\r\nDate: Sun, 1 Jun 2025 09:00:00 +0000\r\n\r\n\
        here is the log\r\n";
    let store = crate::imap::open_sealed_store(&qd).await;
    let now = chrono::Utc::now();
    let mut msg = qd_ingest::new_message(
        qd_mail::parse(raw),
        qd_store::PreparedBlob::prepare(raw).unwrap(),
        Some("imap:test/INBOX".into()),
        None,
        None,
        now,
    );
    msg.verdict = Some(qd_store::MessageVerdict {
        class: "spam".into(),
        score: 6.0,
        tags_json: "[]".into(),
        quarantined: true,
    });
    crate::store_directly(&store, msg, now).await;
    let dave_ticket = store
        .ticket_of_message_id("dave-1@example.org")
        .await
        .unwrap();
    assert_eq!(
        store
            .ticket_of_message_id("carol-q@example.org")
            .await
            .unwrap(),
        dave_ticket
    );

    let run = qd.json(&["retention", "run", "--now", "2026-01-01", "--json"]);
    assert_nothing_due(&run);
    assert!(store
        .find_message("carol-q@example.org")
        .await
        .unwrap()
        .is_some());
    store.close().await.unwrap();
}
both_backends!(a_hold_covers_the_customers_quarantined_mail_on_others_tickets);

#[test]
fn legal_hold_and_tax_class_suspend_deletion() {
    let qd = Qd::sqlite();
    let src = write_mail(
        qd.dir.path(),
        &[
            (
                "gina@example.org",
                "heldmarkerg",
                "Wed, 1 Apr 2020 09:00:00 +0000",
                1,
            ),
            (
                "hank@example.org",
                "taxmarkerh",
                "Wed, 1 Apr 2020 09:00:00 +0000",
                1,
            ),
        ],
    );
    qd.json(&["import", path_str(&src), "--json"]);
    let gina = qd.search("heldmarkerg", 1)[0]["ticket"]
        .as_i64()
        .unwrap()
        .to_string();
    let hank = qd.search("taxmarkerh", 1)[0]["ticket"]
        .as_i64()
        .unwrap()
        .to_string();
    assert!(qd.run(&["ticket", "hold", &gina]).status.success());
    assert!(qd
        .run(&["ticket", "class", &hank, "tax_evidence"])
        .status
        .success());
    // Erasure on request yields to both (GDPR Art. 17(3)): refused, with the reason and
    // the way out, and nothing is deleted.
    for (who, why) in [
        ("gina@example.org", "legal hold"),
        ("hank@example.org", "tax evidence"),
    ] {
        for extra in [&[][..], &["--anonymise"][..]] {
            let mut args = vec!["customer", "erase", who, "--reason", "request"];
            args.extend_from_slice(extra);
            let out = qd.run(&args);
            assert!(!out.status.success(), "{who} {extra:?}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("erasure refused") && err.contains(why),
                "{err}"
            );
        }
    }
    // A customer's hold covers the contacts filed under them, whoever the erasure names:
    // after a rectification, Kim's old address is a contact of the held customer.
    assert!(qd
        .run(&[
            "customer",
            "set-status",
            "kim@example.org",
            "--status",
            "active"
        ])
        .status
        .success());
    let kim = qd.dir.path().join("kim");
    std::fs::create_dir_all(&kim).unwrap();
    std::fs::write(
        kim.join("1.eml"),
        "From: Kim <kim@example.org>\r\nTo: support@quietdesk.example\r\n\
         Subject: keptmarkerk\r\nMessage-ID: <kim-1@example.org>\r\n\
         Date: Wed, 1 Apr 2020 09:00:00 +0000\r\n\r\nhello\r\n",
    )
    .unwrap();
    qd.json(&["import", path_str(&kim), "--json"]);
    assert!(qd
        .run(&["customer", "hold", "kim@example.org"])
        .status
        .success());
    assert!(qd
        .run(&[
            "customer",
            "rectify",
            "kim@example.org",
            "--field",
            "email",
            "--value",
            "office@example.org",
        ])
        .status
        .success());
    let out = qd.run(&[
        "customer",
        "erase",
        "kim@example.org",
        "--reason",
        "request",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("legal hold"), "{err}");
    assert_present(&qd, "keptmarkerk", 1);
    // Other people's held mail that names the person is evidence too: not rewritten,
    // the erasure is refused until the hold is lifted.
    let named = mail_files(
        &qd,
        "named-held",
        &[(
            "1.eml",
            "From: Bob <bob@example.org>\r\nTo: support@quietdesk.example\r\n\
             Cc: Lee <lee@example.org>\r\nSubject: heldccmarker\r\n\
             Message-ID: <held-cc@example.org>\r\nDate: Wed, 1 Apr 2020 09:00:00 +0000\r\n\r\nx\r\n",
        )],
    );
    qd.json(&["import", path_str(&named), "--json"]);
    let bobs = qd.search("heldccmarker", 1)[0]["ticket"]
        .as_i64()
        .unwrap()
        .to_string();
    assert!(qd.run(&["ticket", "hold", &bobs]).status.success());
    let out = qd.run(&[
        "customer",
        "erase",
        "lee@example.org",
        "--reason",
        "request",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("legal hold"), "{err}");
    assert_eq!(qd.search("to:lee@example.org", 10).len(), 1);
    assert!(qd.run(&["ticket", "hold", &bobs, "--off"]).status.success());
    assert_eq!(
        erase_json(&qd, "lee@example.org", "request")["counts"]["redacted"],
        1
    );
    assert!(qd.search("to:lee@example.org", 10).is_empty());
    assert_present(&qd, "heldmarkerg", 1);
    assert_present(&qd, "taxmarkerh", 1);
    qd.json(&["retention", "run", "--now", "2026-01-01", "--json"]);
    assert_present(&qd, "heldmarkerg", 1);
    assert_present(&qd, "taxmarkerh", 1);
    // Tax evidence goes ten years after the last activity.
    qd.json(&["retention", "run", "--now", "2030-04-02", "--json"]);
    assert_gone(&qd, "taxmarkerh");
    assert_present(&qd, "heldmarkerg", 1);
    assert!(qd.run(&["ticket", "hold", &gina, "--off"]).status.success());
    qd.json(&["retention", "run", "--now", "2030-04-02", "--json"]);
    assert_gone(&qd, "heldmarkerg");
}

#[test]
fn a_run_killed_midway_is_finished_by_the_next() {
    let qd = Qd::sqlite();
    let src = write_mail(
        qd.dir.path(),
        &[
            (
                "ivan@example.org",
                "crashmarkeri",
                "Wed, 1 Apr 2020 09:00:00 +0000",
                1500,
            ),
            (
                "judy@example.org",
                "survivorj",
                "Wed, 1 Apr 2020 09:00:00 +0000",
                5,
            ),
        ],
    );
    qd.json(&["import", path_str(&src), "--json"]);
    set_status(&qd, "judy@example.org", "active", None);
    let mut killed = false;
    for delay_ms in [150u64, 300, 600] {
        let mut child = qd
            .command(&["retention", "run", "--now", "2026-01-01", "--json"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            child.wait().unwrap();
            killed = true;
            break;
        }
        child.wait().unwrap();
    }
    let stats = qd.json(&["stats", "--json"]);
    if killed {
        // Some batches may be done, not necessarily all.
        assert!(stats["messages"].as_u64().unwrap() >= 5, "{stats}");
    }
    let rerun = qd.json(&["retention", "run", "--now", "2026-01-01", "--json"]);
    let stats = qd.json(&["stats", "--json"]);
    assert_eq!(
        stats["messages"], 5,
        "after the rerun only judy's mail is left: {stats} {rerun}"
    );
    assert_eq!(stats["search_queue"], 0);
    assert_gone(&qd, "crashmarkeri");
    assert_present(&qd, "survivorj", 5);
}

#[test]
fn export_holds_everything_about_the_person() {
    let qd = Qd::sqlite();
    let src = write_mail(
        qd.dir.path(),
        &[
            (
                "kim@example.org",
                "exportmarkerk",
                "Mon, 1 Jan 2024 10:00:00 +0000",
                2,
            ),
            (
                "lee@example.org",
                "othermarkerl",
                "Mon, 1 Jan 2024 10:00:00 +0000",
                1,
            ),
        ],
    );
    qd.json(&["import", path_str(&src), "--json"]);
    set_status(&qd, "kim@example.org", "active", Some("2023-05-01"));
    let ok = qd.run(&[
        "customer",
        "rectify",
        "kim@example.org",
        "--field",
        "name",
        "--value",
        "Kim Corrected",
        "--reason",
        "typo",
    ]);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let ticket = qd.search("exportmarkerk", 1)[0]["ticket"]
        .as_i64()
        .unwrap()
        .to_string();
    assert!(qd
        .run(&["--actor", "agent-anna", "ticket", "show", &ticket])
        .status
        .success());

    let out = qd.dir.path().join("kim.zip");
    let summary = qd.json(&[
        "customer",
        "export",
        "kim@example.org",
        "--out",
        path_str(&out),
        "--json",
    ]);
    assert_eq!(summary["tickets"], 2);
    assert_eq!(summary["messages"], 2);
    assert_eq!(summary["eml_files"], 2);
    assert_eq!(summary["withheld_notes"], 0);

    let mut zip = zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
    let mut data = String::new();
    zip.by_name("data.json")
        .unwrap()
        .read_to_string(&mut data)
        .unwrap();
    let data: Value = serde_json::from_str(&data).unwrap();
    let p = &data["profile"];
    assert_eq!(p["kind"], "customer");
    assert_eq!(p["email"], "kim@example.org");
    assert_eq!(p["name"], "Kim Corrected");
    assert_eq!(p["status"], "active");
    assert!(p["active_since"]
        .as_str()
        .unwrap()
        .starts_with("2023-05-01"));
    assert_eq!(data["contacts"][0]["address"], "kim@example.org");
    // The history keeps the previous name, who changed it and why.
    let name_change = data["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["field"] == "name")
        .expect("name change in the history");
    assert_eq!(name_change["old_value"], "Person 0");
    assert_eq!(name_change["new_value"], "Kim Corrected");
    assert_eq!(name_change["reason"], "typo");
    let tickets = data["tickets"].as_array().unwrap();
    assert_eq!(tickets.len(), 2);
    let m = &tickets[0]["messages"][0];
    assert_eq!(m["from"], "kim@example.org");
    assert!(m["text"].as_str().unwrap().contains("exportmarkerk"));
    assert_eq!(m["attachments"][0]["filename"], "exportmarkerk.bin");
    assert_eq!(m["attachments"][0]["size"], 6);
    // The staff access is listed with who and which ticket.
    let acc = data["staff_accesses"].as_array().unwrap();
    assert!(
        acc.iter().any(|a| a["staff"] == "agent-anna"
            && a["action"] == "view"
            && a["ticket"].as_i64() == ticket.parse::<i64>().ok()),
        "{acc:?}"
    );
    // Nothing of the other person.
    assert!(!data.to_string().contains("othermarkerl"));
    // The .eml files are the raw mail, opened with the person's key; IPs are truncated.
    let eml_name = m["eml"].as_str().unwrap().to_string();
    let mut eml = String::new();
    zip.by_name(&eml_name)
        .unwrap()
        .read_to_string(&mut eml)
        .unwrap();
    assert!(eml.contains("Subject: question exportmarkerk"));
    assert!(
        eml.contains("[203.0.113.0]"),
        "third-party IP truncated: {eml}"
    );
    let mut html = String::new();
    zip.by_name("summary.html")
        .unwrap()
        .read_to_string(&mut html)
        .unwrap();
    assert!(
        html.contains("Kim Corrected")
            && html.contains("agent-anna")
            && html.contains("exportmarkerk")
    );
    assert!(!html.contains("<script"));
}

/// A third party's mail threaded onto the person's ticket (the ticket's reference in its
/// subject) is that party's, not the person's: the export leaves it out, text and raw
/// mail, and counts it (GDPR Art. 15(4)). The person's own mail, our reply to them and
/// mail that copied them stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_withholds_other_peoples_mail_on_the_ticket() {
    let qd = Qd::sqlite();
    let first = mail_files(
        &qd,
        "first",
        &[(
            "1.eml",
            "From: Ann <ann@example.org>\r\nTo: support@quietdesk.example\r\n\
             Subject: printer xqannmarker\r\nMessage-ID: <ann-1@example.org>\r\n\
             Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nMy printer xqannmarker jams.\r\n",
        )],
    );
    qd.json(&["import", path_str(&first), "--json"]);
    let ticket = qd.search("xqannmarker", 1)[0]["ticket"].as_i64().unwrap();

    // Bob writes with Ann's ticket reference (threaded onto it); Carol writes on it too,
    // with Ann in copy.
    let bob = format!(
        "From: Bob <bob@example.org>\r\nTo: support@quietdesk.example\r\n\
         Subject: [#QD-{ticket}] xqbobmarker\r\nMessage-ID: <bob-1@example.org>\r\n\
         Date: Mon, 1 Jan 2024 11:00:00 +0000\r\n\r\nMy own xqbobmarker trouble.\r\n"
    );
    let carol = format!(
        "From: Carol <carol@example.org>\r\nTo: support@quietdesk.example\r\n\
         Cc: Ann <ann@example.org>\r\nBcc: Zed <zed@example.org>\r\n\
         Subject: [#QD-{ticket}] xqcopymarker\r\n\
         Message-ID: <carol-1@example.org>\r\nDate: Mon, 1 Jan 2024 12:00:00 +0000\r\n\r\n\
         Ann, see xqcopymarker.\r\n"
    );
    let second = mail_files(&qd, "second", &[("1.eml", &bob), ("2.eml", &carol)]);
    let imported = qd.json(&["import", path_str(&second), "--json"]);
    assert_eq!(imported["tickets"], 0, "both thread onto Ann's: {imported}");
    // Erin opens her own ticket with Ann in copy, and writes once more without her.
    let erin = |n: u32, cc: &str, marker: &str| {
        format!(
            "From: Erin <erin@example.org>\r\nTo: support@quietdesk.example\r\n\
             {cc}Subject: erin {n}\r\nMessage-ID: <erin-{n}@example.org>\r\n\
             Date: Mon, 1 Jan 2024 14:00:0{n} +0000\r\n\r\nThe {marker} question.\r\n"
        )
    };
    let third = mail_files(
        &qd,
        "third",
        &[
            (
                "1.eml",
                &erin(1, "Cc: ANN@example.org\r\n", "xqerincopymarker"),
            ),
            ("2.eml", &erin(2, "", "xqerinonlymarker")),
        ],
    );
    let imported = qd.json(&["import", path_str(&third), "--json"]);
    assert_eq!(imported["imported"], 2, "{imported}");

    // Our reply to Ann, filed on her ticket as sent mail.
    let reply = format!(
        "From: Support <support@quietdesk.example>\r\nTo: Ann <ann@example.org>\r\n\
         Subject: Re: [#QD-{ticket}] printer\r\nMessage-ID: <reply-1@quietdesk.example>\r\n\
         In-Reply-To: <ann-1@example.org>\r\nDate: Mon, 1 Jan 2024 13:00:00 +0000\r\n\r\n\
         Try xqreplymarker.\r\n"
    );
    let store = crate::imap::open_sealed_store(&qd).await;
    let raw = reply.as_bytes();
    let now = chrono::Utc::now();
    let mut msg = qd_ingest::new_message(
        qd_mail::parse(raw),
        qd_store::PreparedBlob::prepare(raw).unwrap(),
        Some("outbox".into()),
        None,
        None,
        now,
    );
    msg.direction = qd_core::Direction::Out;
    crate::store_directly(&store, msg, now).await;
    let on_ticket = store
        .ticket_of_message_id("ann-1@example.org")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(store.ticket_messages(on_ticket).await.unwrap().len(), 4);
    // Two mails in the outbox, on no ticket yet: an acknowledgement waiting to go to Ann
    // alone, and a reply to Ann and Dave that bounced for Dave.
    let entry = |n: u32, rcpt: &[&str], marker: &str| {
        qd_store::NewOutboxEntry {
        kind: qd_store::OutboxKind::Ack,
        ticket_id: Some(on_ticket),
        message_id: format!("out-{n}@quietdesk.example"),
        in_reply_to: None,
        references: vec![],
        mail_from: "support@quietdesk.example".into(),
        rcpt_to: rcpt.iter().map(|r| r.to_string()).collect(),
        subject: format!("outgoing {marker}"),
        language: None,
        raw: format!(
            "From: support@quietdesk.example\r\nTo: {}\r\nSubject: outgoing {marker}\r\n\r\n{marker}\r\n",
            rcpt.join(", ")
        )
        .into_bytes(),
    }
    };
    store
        .outbox_enqueue(&entry(1, &["ann@example.org"], "xqackmarker"), now)
        .await
        .unwrap();
    let both = store
        .outbox_enqueue(
            &entry(2, &["Ann@Example.org", "dave@example.org"], "xqbothmarker"),
            now,
        )
        .await
        .unwrap();
    store
        .outbox_record_bounce(both, "550 <dave@example.org> unknown", None, now)
        .await
        .unwrap();
    store.close().await.unwrap();

    let out = qd.dir.path().join("ann.zip");
    let summary = qd.json(&[
        "customer",
        "export",
        "ann@example.org",
        "--out",
        path_str(&out),
        "--json",
    ]);
    assert_eq!(summary["tickets"], 1, "{summary}");
    assert_eq!(summary["messages"], 4, "{summary}");
    assert_eq!(summary["eml_files"], 5, "{summary}");
    assert_eq!(summary["outgoing"], 2, "{summary}");
    assert_eq!(summary["withheld_messages"], 1, "{summary}");
    assert_eq!(summary["withheld_notes"], 0, "{summary}");

    let mut zip = zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
    let mut everything = String::new();
    for i in 0..zip.len() {
        let mut f = zip.by_index(i).unwrap();
        let mut text = String::new();
        f.read_to_string(&mut text).unwrap();
        everything.push_str(&text);
    }
    // Nothing of Bob's own message, neither its text nor its raw mail.
    assert!(!everything.contains("xqbobmarker"), "{everything}");
    assert!(!everything.contains("bob@example.org"), "{everything}");
    assert!(!everything.contains("bob-1@example.org"));
    // Nor Carol's blind copy to Zed (Ann got her mail without it).
    assert!(!everything.contains("zed@example.org"), "{everything}");
    // Nor of Dave, a co-recipient of our bounced reply.
    assert!(!everything.contains("dave@example.org"), "{everything}");
    let emls: Vec<String> = zip
        .file_names()
        .filter(|n| n.ends_with(".eml"))
        .map(String::from)
        .collect();
    assert_eq!(emls.len(), 5, "{emls:?}");
    // Erin's mail that copied Ann is Ann's to have; her other mail is not.
    assert!(!everything.contains("xqerinonlymarker"), "{everything}");
    let mut data = String::new();
    zip.by_name("data.json")
        .unwrap()
        .read_to_string(&mut data)
        .unwrap();
    let data: Value = serde_json::from_str(&data).unwrap();
    assert_eq!(data["withheld_messages"], 1);
    let msgs = data["tickets"][0]["messages"].as_array().unwrap();
    let ids: Vec<&str> = msgs
        .iter()
        .map(|m| m["message_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "ann-1@example.org",
            "carol-1@example.org",
            "reply-1@quietdesk.example"
        ]
    );
    assert_eq!(msgs[2]["direction"], "out");
    // Ann's own mail, the mail she was copied on and our reply to her: text and raw.
    for (m, marker) in msgs
        .iter()
        .zip(["xqannmarker", "xqcopymarker", "xqreplymarker"])
    {
        assert!(m["text"].as_str().unwrap().contains(marker), "{m}");
        let mut eml = String::new();
        zip.by_name(m["eml"].as_str().unwrap())
            .unwrap()
            .read_to_string(&mut eml)
            .unwrap();
        assert!(eml.contains(marker), "{eml}");
    }
    let mut html = String::new();
    zip.by_name("summary.html")
        .unwrap()
        .read_to_string(&mut html)
        .unwrap();
    assert!(
        html.contains("1 message by other people on your tickets was withheld"),
        "{html}"
    );
    // The outbox: the waiting acknowledgement whole, the bounced reply as far as it is
    // Ann's (her address, its subject and status; not Dave's address, error or raw mail).
    let outgoing = data["outgoing"].as_array().unwrap();
    assert_eq!(outgoing.len(), 2, "{outgoing:?}");
    assert_eq!(outgoing[0]["status"], "queued", "{outgoing:?}");
    assert_eq!(outgoing[0]["ticket"], ticket);
    let mut eml = String::new();
    zip.by_name(outgoing[0]["eml"].as_str().unwrap())
        .unwrap()
        .read_to_string(&mut eml)
        .unwrap();
    assert!(eml.contains("xqackmarker"), "{eml}");
    assert_eq!(outgoing[1]["status"], "failed", "{outgoing:?}");
    assert_eq!(outgoing[1]["to"], serde_json::json!(["Ann@Example.org"]));
    assert_eq!(outgoing[1]["subject"], "outgoing xqbothmarker");
    assert!(outgoing[1]["eml"].is_null() && outgoing[1]["last_error"].is_null());
    assert!(
        html.contains("xqackmarker") && html.contains("xqbothmarker"),
        "{html}"
    );
    let other = data["other_messages"].as_array().unwrap();
    assert_eq!(other.len(), 1, "{other:?}");
    assert_eq!(other[0]["message_id"], "erin-1@example.org");
    assert_eq!(other[0]["ticket"], 0, "the number of Erin's ticket is hers");
    assert!(html.contains("xqerincopymarker"), "{html}");
}

#[test]
fn billing_sync_creates_links_and_records_history() {
    let qd = Qd::sqlite();
    let src = write_mail(
        qd.dir.path(),
        &[(
            "max@example.org",
            "syncmarkerm",
            "Mon, 1 Jan 2024 10:00:00 +0000",
            1,
        )],
    );
    qd.json(&["import", path_str(&src), "--json"]);
    let csv = qd.dir.path().join("billing.csv");
    std::fs::write(
        &csv,
        "email,name,status,since,language\nmax@example.org,Max M,active,2021-02-03,nl\nnew@example.org,,former,2019-01-01,fr\n",
    )
    .unwrap();
    let out = qd.json(&["customer", "sync", path_str(&csv), "--json"]);
    assert_eq!(out["rows"], 2);
    assert_eq!(out["created"], 2);
    let again = qd.json(&["customer", "sync", path_str(&csv), "--json"]);
    assert_eq!(
        again["unchanged"], 2,
        "a second sync changes nothing: {again}"
    );
    // A bad file changes nothing and names the line.
    std::fs::write(
        &csv,
        "email,status,since\nmax@example.org,former,2025-01-01\nbroken,active,2020-01-01\n",
    )
    .unwrap();
    let bad = qd.run(&["customer", "sync", path_str(&csv)]);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("line 3"));
    let stats = qd.json(&["stats", "--json"]);
    assert_eq!(stats["customers"], 2);
    // max's existing ticket now counts as customer correspondence: kept while active.
    let dry = qd.json(&[
        "retention",
        "run",
        "--dry-run",
        "--now",
        "2030-01-01",
        "--json",
    ]);
    assert_eq!(dry["classes"].as_object().unwrap().len(), 0, "{dry}");
}

async fn anonymised_erasure_keeps_counts_not_people(qd: Qd) {
    let src = write_mail(
        qd.dir.path(),
        &[
            (
                "dora@example.org",
                "vvdoramarker",
                "Mon, 1 Jan 2024 10:00:00 +0000",
                3,
            ),
            (
                "emil@example.org",
                "wwemilmarker",
                "Mon, 1 Jan 2024 11:00:00 +0000",
                2,
            ),
        ],
    );
    qd.json(&["import", path_str(&src), "--json"]);
    set_status(&qd, "dora@example.org", "former", Some("2024-06-01"));
    let before = qd.json(&["stats", "--json"]);
    let dora_ticket = qd.search("vvdoramarker", 1)[0]["ticket"]
        .as_i64()
        .unwrap()
        .to_string();
    let erased = qd.json(&[
        "customer",
        "erase",
        "dora@example.org",
        "--anonymise",
        "--reason",
        "request 18",
        "--json",
    ]);
    assert_eq!(erased["counts"]["messages"], 3, "{erased}");
    assert!(erased["counts"]["keys_destroyed"].as_u64().unwrap() >= 1);

    // The person is gone from every byte, the statistics are not.
    assert_gone(&qd, "vvdoramarker");
    assert_gone(&qd, "dora@example.org");
    // Her display name, too (a word search would match Emil's "Person 1 ... number 0").
    assert!(files_containing(&qd.data_dir(), "Person 0").is_empty());
    assert_present(&qd, "wwemilmarker", 2);
    let after = qd.json(&["stats", "--json"]);
    assert_eq!(after["tickets"], before["tickets"]);
    assert_eq!(after["messages"], before["messages"]);
    assert_eq!(after["blobs"], before["blobs"].as_u64().unwrap() - 3);
    // The ticket stays, with its dates and status, and nothing personal.
    let shown = qd.json(&["ticket", "show", &dora_ticket, "--json"]);
    assert_eq!(shown["subject"], "[erased]", "{shown}");
    assert_eq!(shown["messages"].as_array().unwrap().len(), 1, "{shown}");
    assert_eq!(shown["messages"][0]["from"], Value::Null, "{shown}");
    assert_eq!(shown["messages"][0]["text"], "", "{shown}");
    // A second erasure of the address finds nobody to erase.
    let again = qd.run(&["customer", "erase", "dora@example.org", "--reason", "again"]);
    assert!(!again.status.success());

    // Dora writes again, quoting her old ticket's number: the anonymised ticket takes
    // no new mail (that would tie its history to her again); a new ticket opens.
    let later = qd.dir.path().join("later");
    std::fs::create_dir_all(&later).unwrap();
    std::fs::write(
        later.join("1.eml"),
        format!(
            "From: Dora <dora@example.org>\r\nTo: support@quietdesk.example\r\n\
             Subject: Re: [#QD-{dora_ticket}] still broken\r\nMessage-ID: <later-1@example.org>\r\n\
             Date: Mon, 1 Jul 2024 10:00:00 +0000\r\n\r\nIt is still broken.\r\n"
        ),
    )
    .unwrap();
    let imported = qd.json(&["import", path_str(&later), "--json"]);
    assert_eq!(imported["imported"], 1, "{imported}");
    assert_eq!(imported["tickets"], 1, "a new ticket: {imported}");
    let shown = qd.json(&["ticket", "show", &dora_ticket, "--json"]);
    assert_eq!(shown["messages"].as_array().unwrap().len(), 1, "{shown}");
}
both_backends!(anonymised_erasure_keeps_counts_not_people);

/// Crypto-shredding reaches backups through key rotation: a backup taken before an
/// erasure still holds the erased person's sealed key, readable with the master key of
/// the time; once the key is rotated and the old one retired, the backup's keys open with
/// nothing we hold.
#[test]
fn key_rotation_retires_what_old_backups_hold() {
    let qd = Qd::sqlite();
    let src = write_mail(
        qd.dir.path(),
        &[
            (
                "fay@example.org",
                "yyfaymarker",
                "Mon, 1 Jan 2024 10:00:00 +0000",
                2,
            ),
            (
                "gus@example.org",
                "uugusmarker",
                "Mon, 1 Jan 2024 11:00:00 +0000",
                2,
            ),
        ],
    );
    qd.json(&["import", path_str(&src), "--json"]);
    let checked = qd.json(&["keys", "check", "--json"]);
    assert_eq!(checked["live_keys"], 2, "{checked}");

    // The backup: a copy of the data dir without its key file, as operators should keep it.
    let backup = qd.dir.path().join("backup");
    copy_dir(&qd.data_dir(), &backup);
    std::fs::remove_file(backup.join("master.key")).unwrap();
    let old_key = std::fs::read_to_string(qd.data_dir().join("master.key")).unwrap();

    erase_json(&qd, "fay@example.org", "r");
    let rotated = qd.json(&["keys", "rotate", "--json"]);
    assert_eq!(rotated["live_keys"], 1, "{rotated}");
    assert_eq!(rotated["destroyed_keys"], 1, "{rotated}");
    let retired = PathBuf::from(rotated["retired_key_file"].as_str().unwrap());
    assert_eq!(std::fs::read_to_string(&retired).unwrap(), old_key);
    let new_key = std::fs::read_to_string(qd.data_dir().join("master.key")).unwrap();
    assert_ne!(new_key, old_key);
    // The live installation works on with the new key: its one key, and every raw mail
    // kept (gus's two; fay's went with her), opens.
    assert_eq!(qd.json(&["keys", "check", "--json"])["live_keys"], 1);
    let blobs = qd.json(&["keys", "check", "--blobs", "--json"]);
    assert_eq!(blobs["live_keys"], 1, "{blobs}");
    assert_eq!(blobs["blobs_opened"], 2, "{blobs}");
    assert_eq!(blobs["blobs_unreadable"], 0, "{blobs}");
    assert_present(&qd, "uugusmarker", 2);
    let zip = qd.dir.path().join("gus.zip");
    let exported = qd.json(&[
        "customer",
        "export",
        "gus@example.org",
        "--out",
        path_str(&zip),
        "--json",
    ]);
    assert_eq!(
        exported["eml_files"], 2,
        "raw mail opens with the new key: {exported}"
    );

    // The backup opens with the retired key (so the last check means something)...
    let restore = |key: &str| {
        let mut cmd = qd.command(&["keys", "check", "--json"]);
        cmd.env("QUIETDESK_MASTER_KEY", key.trim());
        // `command` put --data-dir first; a second one wins with clap's last-wins rule.
        cmd.arg("--data-dir").arg(&backup);
        cmd.output().unwrap()
    };
    let with_old = restore(&old_key);
    assert!(
        with_old.status.success(),
        "{}",
        String::from_utf8_lossy(&with_old.stderr)
    );
    // ...and with the retired key deleted, nothing we keep opens the erased person's key.
    std::fs::remove_file(&retired).unwrap();
    let with_new = restore(&new_key);
    assert!(!with_new.status.success());
    assert!(String::from_utf8_lossy(&with_new.stderr).contains("does not open"));

    // With the key in QUIETDESK_MASTER_KEY, rotation needs a place for the new key.
    let mut cmd = qd.command(&["keys", "rotate"]);
    cmd.env("QUIETDESK_MASTER_KEY", new_key.trim());
    let out = cmd.output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--new-key-file"));
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in walk(from) {
        let rel = entry.strip_prefix(from).unwrap();
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(&entry, &dest).unwrap();
    }
}

/// Runs SQL on the embedded SQLite file (Python's sqlite3, as a second client would).
fn sqlite_exec(qd: &Qd, sql: &str) {
    let db = qd.data_dir().join("quietdesk.db");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()",
        ])
        .arg(&db)
        .arg(sql)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A retention run whose deletion fails after the search index let go of the messages
/// (a lock timeout, a serialization failure; here a trigger) leaves them searchable:
/// they are still stored, so they are queued for the index again.
#[test]
fn a_failed_deletion_leaves_its_messages_searchable() {
    let qd = Qd::sqlite();
    let src = write_mail(
        qd.dir.path(),
        &[
            (
                "kate@example.org",
                "stillheremarker",
                "Wed, 1 Apr 2020 09:00:00 +0000",
                3,
            ),
            // A customer's mail stays, so the index is not empty (an empty index is
            // rebuilt from the store when opened, which would hide the loss).
            (
                "liam@example.org",
                "customermarker",
                "Wed, 1 Apr 2020 09:00:00 +0000",
                2,
            ),
        ],
    );
    qd.json(&["import", path_str(&src), "--json"]);
    set_status(&qd, "liam@example.org", "active", None);
    assert_present(&qd, "stillheremarker", 3);
    sqlite_exec(
        &qd,
        "CREATE TRIGGER qd_test_block BEFORE DELETE ON messages \
         BEGIN SELECT RAISE(ABORT, 'blocked by the test'); END;",
    );
    let out = qd.run(&["retention", "run", "--now", "2026-01-01", "--json"]);
    assert!(!out.status.success(), "the deletion was blocked");
    sqlite_exec(&qd, "DROP TRIGGER qd_test_block;");
    assert_eq!(qd.json(&["stats", "--json"])["messages"], 5);
    assert_present(&qd, "stillheremarker", 3);
    // The next run deletes them, from the index too.
    qd.json(&["retention", "run", "--now", "2026-01-01", "--json"]);
    assert_gone(&qd, "stillheremarker");
    assert_present(&qd, "customermarker", 2);
}
