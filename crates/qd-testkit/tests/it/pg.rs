use qd_testkit::{free_port, PgDatabase, DEFAULT_PG_URL, PG_URL_ENV};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement};

fn base_url() -> String {
    std::env::var(PG_URL_ENV).unwrap_or_else(|_| DEFAULT_PG_URL.to_owned())
}

async fn existing(base: &DatabaseConnection, names: &[&str]) -> Vec<String> {
    let rows = base
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT datname FROM pg_database WHERE datname LIKE 'qd_test_%'",
        ))
        .await
        .unwrap();
    rows.iter()
        .map(|r| r.try_get_by_index::<String>(0).unwrap())
        .filter(|n| names.contains(&n.as_str()))
        .collect()
}

async fn current_database(url: &str) -> String {
    let conn = Database::connect(url).await.unwrap();
    let row = conn
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT current_database()",
        ))
        .await
        .unwrap()
        .unwrap();
    let name = row.try_get_by_index::<String>(0).unwrap();
    conn.close().await.unwrap();
    name
}

#[tokio::test]
async fn two_databases_are_private_and_dropped_with_their_values() {
    let a = PgDatabase::create().await.unwrap();
    let b = PgDatabase::create().await.unwrap();
    assert_ne!(a.name(), b.name());
    assert_eq!(current_database(a.url()).await, a.name());
    assert_eq!(current_database(b.url()).await, b.name());

    // A connection left open must not keep its database alive (WITH (FORCE)).
    let lingering = Database::connect(a.url()).await.unwrap();
    lingering
        .execute_unprepared("CREATE TABLE t (x int)")
        .await
        .unwrap();

    let base = Database::connect(base_url()).await.unwrap();
    let names = [a.name().to_owned(), b.name().to_owned()];
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(existing(&base, &names).await.len(), 2);

    drop(a);
    assert_eq!(existing(&base, &names).await, vec![names[1].to_owned()]);
    drop(b);
    assert!(existing(&base, &names).await.is_empty());
    base.close().await.unwrap();
}

#[test]
fn drop_works_outside_a_runtime() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let db = rt.block_on(PgDatabase::create()).unwrap();
    let name = db.name().to_owned();
    drop(db);
    let left = rt.block_on(async {
        let base = Database::connect(base_url()).await.unwrap();
        let left = existing(&base, &[name.as_str()]).await;
        base.close().await.unwrap();
        left
    });
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_works_inside_a_multi_thread_runtime() {
    let db = PgDatabase::create().await.unwrap();
    let name = db.name().to_owned();
    drop(db);
    let base = Database::connect(base_url()).await.unwrap();
    assert!(existing(&base, &[name.as_str()]).await.is_empty());
    base.close().await.unwrap();
}

#[tokio::test]
async fn an_unreachable_server_says_what_to_do() {
    let url = format!("postgres://postgres:hunter2@127.0.0.1:{}/test", free_port());
    let err = PgDatabase::create_on(&url).await.unwrap_err().to_string();
    assert!(err.contains("start PostgreSQL"), "{err}");
    assert!(err.contains(PG_URL_ENV), "{err}");
    assert!(!err.contains("hunter2"), "password leaked: {err}");
}

#[test]
fn free_ports_are_bindable() {
    let port = free_port();
    assert_ne!(port, 0);
    std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
}
