//! Indexes for deletion. Deleting a parent row makes the database look for rows that
//! still point at it (foreign keys) and erasure looks rows up by these columns; without an
//! index each lookup scans the whole child table, which made a retention run over a
//! million messages take hours instead of seconds.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const INDEXES: &[(&str, &str, &[&str])] = &[
    // retention pages through quarantined messages (without it: a scan of every message)
    (
        "ix_messages_quarantined",
        "messages",
        &["quarantined", "id"],
    ),
    // blobs -> messages.blob_id
    ("ix_messages_blob", "messages", &["blob_id"]),
    // tickets -> thread_refs.ticket_id
    ("ix_thread_refs_ticket", "thread_refs", &["ticket_id"]),
    // tickets -> ack_log.ticket_id (ON DELETE SET NULL)
    ("ix_ack_log_ticket", "ack_log", &["ticket_id"]),
    // erasure deletes a person's blobs by scope (the unique index leads with the digest)
    ("ix_blobs_scope", "blobs", &["scope"]),
    // messages -> outbox.sent_message_db_id (erasure deletes by it)
    ("ix_outbox_sent_message", "outbox", &["sent_message_db_id"]),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, cols) in INDEXES {
            let mut stmt = Index::create();
            stmt.name(*name).table(Alias::new(*table)).if_not_exists();
            for c in *cols {
                stmt.col(Alias::new(*c));
            }
            m.create_index(stmt.to_owned()).await?;
        }
        Ok(())
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        for (name, table, _) in INDEXES {
            m.drop_index(
                Index::drop()
                    .name(*name)
                    .table(Alias::new(*table))
                    .to_owned(),
            )
            .await?;
        }
        Ok(())
    }
}
