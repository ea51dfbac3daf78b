//! Integration tests of qd-testkit against the real PostgreSQL server of the machine.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns; a panic is the failure report

mod pg;
