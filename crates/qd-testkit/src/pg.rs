use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use sea_orm::{
    ConnectOptions, ConnectionTrait, Database, DatabaseConnection, DbBackend, Statement,
};

use crate::Error;

/// The environment variable that names the shared test server.
pub const PG_URL_ENV: &str = "QUIETDESK_TEST_PG";

/// The server every machine of ours runs: Debian's cluster with trust auth on loopback.
pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// Database names carry this prefix so that leftovers of a crashed run are recognisable
/// (`SELECT datname FROM pg_database WHERE datname LIKE 'qd_test_%'`).
const PREFIX: &str = "qd_test_";

/// Short enough that a missing server fails a test in seconds, long enough for a busy
/// 2-core CI machine.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A private database on the shared PostgreSQL server, dropped with this value.
///
/// The drop uses `DROP DATABASE … WITH (FORCE)`, so connections a test forgot to close
/// do not keep the database alive.
#[derive(Debug)]
pub struct PgDatabase {
    name: String,
    url: String,
    base_url: String,
}

impl PgDatabase {
    /// Creates a database on the server named by `QUIETDESK_TEST_PG` (or
    /// [`DEFAULT_PG_URL`]).
    pub async fn create() -> Result<PgDatabase, Error> {
        let base = std::env::var(PG_URL_ENV).unwrap_or_else(|_| DEFAULT_PG_URL.to_owned());
        Self::create_on(&base).await
    }

    /// Creates a database on the server at `base_url`, whose user may `CREATE DATABASE`.
    /// The database part of `base_url` is the one used for administration.
    pub async fn create_on(base_url: &str) -> Result<PgDatabase, Error> {
        let name = unique_name();
        let url = with_database(base_url, &name)?;
        let shown = redact(base_url);
        let admin = connect_admin(base_url).await?;
        // The name is ours and made of [a-z0-9_], so quoting it is enough; CREATE
        // DATABASE takes no bind parameters.
        let created = admin
            .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
            .await;
        let _ = admin.close().await;
        created.map_err(|source| Error::CreateDatabase {
            name: name.clone(),
            url: shown,
            source,
        })?;
        Ok(PgDatabase {
            name,
            url,
            base_url: base_url.to_owned(),
        })
    }

    /// The connection URL of the private database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The database's name (`qd_test_…`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Terminates every connection to the private database, as a server restart or a
    /// failover does to its clients: their open transactions roll back and their next
    /// statement fails. Returns how many connections were cut.
    pub async fn cut_connections(&self) -> Result<u64, Error> {
        let admin = connect_admin(&self.base_url).await?;
        let cut = admin
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                [self.name.clone().into()],
            ))
            .await;
        let _ = admin.close().await;
        let rows = cut.map_err(|source| Error::Admin {
            what: "terminate connections",
            url: redact(&self.base_url),
            source,
        })?;
        Ok(rows.len() as u64)
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        let base = std::mem::take(&mut self.base_url);
        // A Drop cannot await, and blocking on the caller's runtime from inside it
        // panics; a thread with its own runtime works both inside and outside tokio.
        let outcome = std::thread::Builder::new()
            .name("qd-testkit-drop-db".into())
            .spawn(move || drop_database(&base, &name).map_err(|e| format!("{name}: {e}")))
            .map_err(|e| e.to_string())
            .and_then(|handle| {
                handle
                    .join()
                    .map_err(|_| "the drop thread panicked".to_owned())
            })
            .and_then(|r| r);
        if let Err(e) = outcome {
            // Panicking in Drop would abort a test that is already unwinding; a leftover
            // database is harmless and carries the qd_test_ prefix.
            eprintln!("qd-testkit: could not drop test database {e}");
        }
    }
}

fn drop_database(base: &str, name: &str) -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        let admin = connect(base).await.map_err(|e| e.to_string())?;
        let r = admin
            .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
            .await;
        let _ = admin.close().await;
        r.map(|_| ()).map_err(|e| e.to_string())
    })
}

/// A connection to the administration database at `base_url`; a failure says the test
/// environment lacks its server.
async fn connect_admin(base_url: &str) -> Result<DatabaseConnection, Error> {
    connect(base_url)
        .await
        .map_err(|source| Error::Unreachable {
            env: PG_URL_ENV,
            url: redact(base_url),
            source,
        })
}

async fn connect(url: &str) -> Result<DatabaseConnection, sea_orm::DbErr> {
    let mut opts = ConnectOptions::new(url);
    opts.max_connections(1)
        .min_connections(0)
        .connect_timeout(CONNECT_TIMEOUT)
        .acquire_timeout(CONNECT_TIMEOUT)
        .sqlx_logging(false);
    Database::connect(opts).await
}

/// pid keeps parallel test binaries apart, the counter keeps one binary's tests apart,
/// and the random part keeps a reused pid (containers, a rerun) from meeting a
/// leftover of a crashed run.
fn unique_name() -> String {
    use std::hash::{BuildHasher, Hasher};
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    // RandomState is seeded from the OS per instance: randomness without a dependency.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(n);
    let random = h.finish() & 0xffff_ffff;
    format!("{PREFIX}{}_{n}_{random:08x}", std::process::id())
}

/// Replaces the database of a `postgres://` URL, keeping user, host and query.
fn with_database(base: &str, name: &str) -> Result<String, Error> {
    let bad = |reason| Error::BadUrl {
        env: PG_URL_ENV,
        url: redact(base),
        reason,
    };
    let rest = base
        .strip_prefix("postgres://")
        .or_else(|| base.strip_prefix("postgresql://"))
        .ok_or_else(|| bad("it must start with postgres://"))?;
    let scheme_len = base.len() - rest.len();
    let slash = rest.find('/').ok_or_else(|| {
        bad("it must name a database, e.g. postgres://postgres@127.0.0.1:5432/test")
    })?;
    let query = rest[slash..].find('?').map_or("", |q| &rest[slash + q..]);
    Ok(format!("{}/{name}{query}", &base[..scheme_len + slash]))
}

/// Hides a password in a URL that ends up in an error message.
fn redact(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let authority_end = url[scheme_end..]
        .find('/')
        .map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    match (authority.rfind('@'), authority.find(':')) {
        (Some(at), Some(colon)) if colon < at => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &authority[..colon],
            &url[scheme_end + at..]
        ),
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_is_replaced_and_query_kept() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "qd_test_1").unwrap(),
            "postgres://postgres@127.0.0.1:5432/qd_test_1"
        );
        assert_eq!(
            with_database("postgresql://u:p@h/db?sslmode=disable", "x").unwrap(),
            "postgresql://u:p@h/x?sslmode=disable"
        );
        assert!(with_database("postgres://h:5432", "x").is_err());
        assert!(with_database("mysql://h/db", "x").is_err());
    }

    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h:5432/db"), "postgres://u@h:5432/db");
        assert_eq!(redact("postgres://h:5432/db"), "postgres://h:5432/db");
    }

    #[test]
    fn names_are_unique_and_safe_identifiers() {
        let a = unique_name();
        let b = unique_name();
        assert_ne!(a, b);
        for n in [a, b] {
            assert!(n.starts_with(PREFIX) && n.len() < 63, "{n}");
            assert!(n
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'));
        }
    }
}
