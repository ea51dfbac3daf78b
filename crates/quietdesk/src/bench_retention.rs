//! `quietdesk bench retention`: a retention run with a given share of the data due, and
//! the erasure of one customer with many messages, timed on the current data dir.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::{bail, Result};
use chrono::{TimeZone, Utc};
use qd_core::CustomerStatus;
use qd_store::{Actor, BatchSettings, CustomerRecord};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use crate::cli::BenchRetentionArgs;
use crate::commands::{open_index, open_store};
use crate::config::Settings;

#[derive(Debug, Serialize)]
struct Figures {
    messages_before: u64,
    tickets_before: u64,
    due_messages_target: u64,
    /// Retention run (store work: evaluate + delete + WAL checkpoint), seconds.
    retention_store_s: f64,
    /// Waiting for the index after the store finished: deleting the due documents and
    /// merging them out of the segments runs beside the store work, then the queue is
    /// applied. Seconds.
    retention_index_s: f64,
    retention_total_s: f64,
    messages_deleted: u64,
    tickets_deleted: u64,
    erase_messages: u64,
    /// Erasure in the store (rows, blobs, keys), seconds.
    erase_store_s: Option<f64>,
    erase_index_s: Option<f64>,
    erase_total_s: Option<f64>,
}

pub async fn run(settings: &Settings, args: &BenchRetentionArgs) -> Result<ExitCode> {
    if !(0.0..=100.0).contains(&args.due_percent) {
        bail!("--due-percent must be between 0 and 100");
    }
    let store = open_store(settings).await?;
    open_index(settings, &store).await?;
    let stats = store.stats().await?;
    if stats.messages == 0 {
        bail!("the data dir holds no messages: import some first (quietdesk bench gen, import)");
    }
    // 1. Statuses: contacts in random order become former customers (since 2000) until
    // their messages reach the target share; everyone else becomes an active customer.
    let mut contacts = store.contact_message_counts().await?;
    contacts.shuffle(&mut ChaCha8Rng::seed_from_u64(args.seed));
    let target = (stats.messages as f64 * args.due_percent / 100.0).round() as u64;
    let long_ago = Utc
        .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .unwrap_or_default();
    let mut due = 0u64;
    let rows: Vec<CustomerRecord> = contacts
        .iter()
        .map(|(_, address, n)| {
            let status = if due < target {
                due += n;
                CustomerStatus::Former
            } else {
                CustomerStatus::Active
            };
            CustomerRecord {
                email: address.clone(),
                name: None,
                status,
                since: long_ago,
                language: None,
            }
        })
        .collect();
    let actor = Actor {
        name: "bench",
        reason: None,
        now: Utc::now(),
    };
    let t = Instant::now();
    store.sync_customers(&rows, &actor).await?;
    eprintln!(
        "set {} customers ({} messages due) in {:.1} s",
        rows.len(),
        due,
        t.elapsed().as_secs_f64()
    );

    // 2. The retention run, as `quietdesk retention run` does it, on a clock 400 days
    // ahead: every former customer's mail is then past the 12-month floor too (synthetic
    // mail runs up to the import day), so the due share is the one asked for.
    // The index part runs beside the store's (see `commands::retention_run`); the
    // figures split the wall clock into the store deletes and the wait for the index.
    let t = Instant::now();
    let report = crate::commands::retention_run(
        settings,
        &store,
        &qd_retention::RunOptions {
            now: Utc::now() + chrono::TimeDelta::days(400),
            dry_run: false,
            list_limit: 0,
        },
    )
    .await?;
    let retention_total = t.elapsed().as_secs_f64();
    let retention_store_s = report.seconds;
    let retention_index_s = (retention_total - retention_store_s).max(0.0);
    let (mut msgs, mut tickets) = (0, 0);
    for c in report.classes.values() {
        msgs += c.deleted.messages;
        tickets += c.deleted.tickets;
    }

    // 3. One customer with many messages, erased.
    let (mut erase_store_s, mut erase_index_s) = (None, None);
    if args.erase_messages > 0 {
        let address = "bench-erasure@customer.example";
        let mut batch = Vec::new();
        let now = Utc::now();
        for i in 0..args.erase_messages {
            let raw = format!(
                "From: Bench Customer <{address}>\r\nTo: support@quietdesk.example\r\n\
                 Subject: bench erasure message {i}\r\nMessage-ID: <bench-erase-{i}@customer.example>\r\n\
                 Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbench erasure body {i} with some words\r\n"
            );
            let parsed = qd_mail::parse(raw.as_bytes());
            let blob = qd_ingest::prepare_blob(raw.as_bytes(), false)?;
            batch.push(qd_ingest::new_message(parsed, blob, None, None, None, now));
            if batch.len() == 2000 || i + 1 == args.erase_messages {
                store
                    .store_batch(
                        &mut batch,
                        None,
                        &BatchSettings {
                            ticket_ref: &settings.ticket_ref,
                            now,
                        },
                    )
                    .await?;
                batch.clear();
            }
        }
        store
            .set_customer_status(
                &qd_store::SubjectRef::Email(address.into()),
                CustomerStatus::Active,
                now,
                &actor,
            )
            .await?;
        open_index(settings, &store).await?;
        let subject = qd_retention::resolve(&store, address).await?;
        let t = Instant::now();
        let counts = qd_retention::erase(&store, &subject, false, &actor).await?;
        erase_store_s = Some(t.elapsed().as_secs_f64());
        let t = Instant::now();
        open_index(settings, &store).await?;
        store.checkpoint_wal().await?;
        erase_index_s = Some(t.elapsed().as_secs_f64());
        if counts.messages != args.erase_messages {
            bail!(
                "erasure removed {} messages, expected {}",
                counts.messages,
                args.erase_messages
            );
        }
    }
    let f = Figures {
        messages_before: stats.messages,
        tickets_before: stats.tickets,
        due_messages_target: target,
        retention_store_s,
        retention_index_s,
        retention_total_s: retention_store_s + retention_index_s,
        messages_deleted: msgs,
        tickets_deleted: tickets,
        erase_messages: args.erase_messages,
        erase_store_s,
        erase_index_s,
        erase_total_s: erase_store_s.zip(erase_index_s).map(|(a, b)| a + b),
    };
    if args.json {
        out!("{}", serde_json::to_string_pretty(&f)?);
    } else {
        out!(
            "retention over {} messages: {} deleted ({} tickets) in {:.2} s (store {:.2} s, then {:.2} s more for the index)",
            f.messages_before, f.messages_deleted, f.tickets_deleted, f.retention_total_s,
            f.retention_store_s, f.retention_index_s
        );
        if let (Some(s), Some(i)) = (f.erase_store_s, f.erase_index_s) {
            out!(
                "erasure of a customer with {} messages: {:.2} s (store {:.2} s + index {:.2} s)",
                f.erase_messages,
                s + i,
                s,
                i
            );
        }
    }
    store.close().await?;
    Ok(ExitCode::SUCCESS)
}
