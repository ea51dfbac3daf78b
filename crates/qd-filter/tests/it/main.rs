//! Integration tests of qd-filter: one binary, one module per concern.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod auth;
mod cases;
mod corpus;
mod learn;
mod privacy;
mod settings;
mod support;
mod virus;
