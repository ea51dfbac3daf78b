//! sea-orm entities, one module per table. Enum-like columns are stored as text and
//! converted with the `qd_core` enums at the edges, so both backends see plain strings.

pub mod ack_log;
pub mod attachments;
pub mod audit_events;
pub mod blob_keys;
pub mod blob_mentions;
pub mod blobs;
pub mod changes;
pub mod contacts;
pub mod counters;
pub mod customers;
pub mod filter_feedback;
pub mod filter_model;
pub mod filter_tokens;
pub mod forgotten_mail;
pub mod ingest_checkpoints;
pub mod ingest_held;
pub mod messages;
pub mod outbox;
pub mod search_queue;
pub mod thread_refs;
pub mod ticket_tags;
pub mod tickets;
