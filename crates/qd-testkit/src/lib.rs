//! Real services for quietdesk tests, provisioned per test so tests run in parallel.
//!
//! [`PgDatabase`] is a private, uniquely named database on a shared PostgreSQL server
//! (`QUIETDESK_TEST_PG`, default [`DEFAULT_PG_URL`]); it is dropped with the value. An
//! unreachable server is an [`Error`] that says how to fix it, never a skipped test.
//! [`free_port`] finds a loopback port for harnesses that start their own servers.
//! This crate is a dev-dependency only: nothing in a release build may use it.

mod clamd;
mod dkim;
mod dns;
mod dovecot;
mod pg;
mod proxy;
mod smtp;

pub use clamd::Clamd;
pub use dkim::{base64, SigningDomain};
pub use dns::{DnsRecord, Dnsmasq};
pub use dovecot::{Dovecot, DovecotError, DovecotTls};
pub use pg::{PgDatabase, DEFAULT_PG_URL, PG_URL_ENV};
pub use proxy::StallProxy;
pub use smtp::{Captured, SinkMode, SmtpSink, SmtpSinkError};

use std::net::{Ipv4Addr, TcpListener};

/// What went wrong while provisioning a test service.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The base URL is not a `postgres://` URL with a database path.
    #[error("{env} is not a usable PostgreSQL URL ({url}): {reason}")]
    BadUrl {
        env: &'static str,
        url: String,
        reason: &'static str,
    },
    /// No connection to the server: the test environment is incomplete.
    #[error(
        "PostgreSQL is not reachable at {url}: {source}. Tests need a real server: start \
         PostgreSQL on 127.0.0.1:5432 (Debian: `pg_ctlcluster --skip-systemctl-redirect 15 main \
         start`, trust auth for user postgres and a database `test`, as .ci/run does) or set \
         {env} to the URL of a server whose user may CREATE DATABASE"
    )]
    Unreachable {
        env: &'static str,
        url: String,
        #[source]
        source: sea_orm::DbErr,
    },
    /// Connected, but an administrative statement failed.
    #[error("PostgreSQL at {url} refused to {what}: {source}")]
    Admin {
        what: &'static str,
        url: String,
        #[source]
        source: sea_orm::DbErr,
    },
    /// Connected, but the server refused to create the private database.
    #[error("cannot create test database {name} on {url}: {source} (the user needs CREATEDB)")]
    CreateDatabase {
        name: String,
        url: String,
        #[source]
        source: sea_orm::DbErr,
    },
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The listener is closed before returning, so another process may take the port in the
/// meantime; harnesses therefore watch for an early exit of the server they start, and
/// the Dovecot harness checks that the server that answers is its own. Within one test
/// process no port is handed out twice, so parallel tests never race each other for one.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    // Binding port 0 on loopback cannot fail on a working machine; if it does, nothing
    // that needs a port can run, so a test panic is the honest outcome.
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let listener =
            TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind 127.0.0.1:0 for a free port");
        let port = listener
            .local_addr()
            .expect("local address of a bound listener")
            .port();
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
}
