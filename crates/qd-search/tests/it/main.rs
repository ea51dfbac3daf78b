//! Integration tests of qd-search: one binary, one module per area.
#![allow(clippy::unwrap_used)]

mod erasure;
mod fixtures;
mod index_files;
mod search;
mod snippet;
