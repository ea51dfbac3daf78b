//! The one schema history of quietdesk. Every migration uses sea-query's schema builder,
//! never backend SQL, so the same history runs on SQLite (the embedded default) and on
//! PostgreSQL (the scale path). `qd-store` runs it on connect; `quietdesk migrate` runs it
//! on demand.

pub use sea_orm_migration::prelude::*;

mod m20261125_000001_foundation;
mod m20261125_000002_outbound;
mod m20261125_000003_privacy;
mod m20261125_000004_filter;
mod m20261125_000005_delete_indexes;
mod m20261125_000006_filter_learning;
mod m20261203_000007_lookup_keys;
mod m20261205_000008_ingest_held;
mod m20261205_000009_ticket_anonymised;
pub mod m20261205_000010_blob_mentions;
mod m20261205_000011_forgotten_mail;
mod m20261205_000012_former_since_backfill;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_foundation::Migration),
            Box::new(m20261125_000002_outbound::Migration),
            Box::new(m20261125_000003_privacy::Migration),
            Box::new(m20261125_000004_filter::Migration),
            Box::new(m20261125_000005_delete_indexes::Migration),
            Box::new(m20261125_000006_filter_learning::Migration),
            Box::new(m20261203_000007_lookup_keys::Migration),
            Box::new(m20261205_000008_ingest_held::Migration),
            Box::new(m20261205_000009_ticket_anonymised::Migration),
            Box::new(m20261205_000010_blob_mentions::Migration),
            Box::new(m20261205_000011_forgotten_mail::Migration),
            Box::new(m20261205_000012_former_since_backfill::Migration),
        ]
    }
}
