//! No message body, subject or full address reaches a log line at the default level.

use crate::{path_str, Qd};

#[test]
fn import_and_search_log_no_personal_data_at_info() {
    let qd = Qd::sqlite();
    let src = qd.dir.path().join("inbox");
    std::fs::create_dir_all(&src).unwrap();
    for i in 0..3 {
        std::fs::write(
            src.join(format!("{i}")),
            format!(
                "From: Privatperson <geheim.adresse{i}@example.org>\r\nTo: support@quietdesk.example\r\nSubject: vertraulich-betreff-{i}\r\nMessage-ID: <p{i}@example.org>\r\n\r\nvertraulicher-inhalt-{i}\r\n"
            ),
        )
        .unwrap();
    }
    for args in [
        vec!["import", path_str(&src), "--json"],
        vec!["search", "vertraulicher", "--json"],
        vec!["stats"],
    ] {
        let out = qd
            .command(&args)
            .env("QUIETDESK__LOG__LEVEL", "info")
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        let log = String::from_utf8_lossy(&out.stderr);
        for secret in ["vertraulich", "geheim.adresse", "Privatperson"] {
            assert!(!log.contains(secret), "{args:?} logged `{secret}`: {log}");
        }
    }
}
