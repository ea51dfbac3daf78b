//! Which connection errors say "the database is not there yet" (worth waiting for) and
//! which say "this will never work" (report and stop).

use qd_store::Store;

#[tokio::test]
async fn nothing_listening_is_unavailable() {
    // A port that was free a moment ago: nothing accepts there.
    let port = qd_testkit::free_port();
    let url = format!("postgres://postgres@127.0.0.1:{port}/test");
    let err = Store::connect(&url).await.unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    // The message gives the driver's cause (a refused connection, reported at once, not
    // after the pool's 30 s of retries) and says what to check.
    let text = err.to_string();
    assert!(text.contains("cannot reach the database at"), "{text}");
    assert!(text.to_lowercase().contains("refused"), "{text}");
    assert!(text.contains("is the server running"), "{text}");
}

#[tokio::test]
async fn a_missing_database_or_file_is_not() {
    let pg = qd_testkit::PgDatabase::create().await.unwrap();
    let missing = pg.url().replace(pg.name(), "qd_no_such_database");
    let err = Store::connect(&missing).await.unwrap_err();
    assert!(!err.is_unavailable(), "{err}");

    let err = Store::connect("sqlite:///nonexistent-dir/qd.db?mode=rwc")
        .await
        .unwrap_err();
    assert!(!err.is_unavailable(), "{err}");
}
