//! `customer`, `ticket` and `retention`: the data-subject and retention commands.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Subcommand};
use qd_core::CustomerStatus;
use qd_retention::{export::ExportOptions, RunOptions, Subject};
use qd_store::{Actor, CustomerRecord, SubjectRef};

use crate::commands::{open_index, open_store};
use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum CustomerCommand {
    /// Set a customer's status; an unknown address (or a mere contact) becomes a customer.
    SetStatus(SetStatusArgs),
    /// Apply a CSV export from billing: columns email,status,since[,name,language].
    Sync(SyncArgs),
    /// Correct a field, keeping the previous value in the history.
    Rectify(RectifyArgs),
    /// Put a legal hold on a customer (suspends retention) or lift it.
    Hold(HoldArgs),
    /// Write everything we hold about a person to a zip (HTML, JSON, .eml files).
    Export(ExportArgs),
    /// Erase everything about a person (or, with --anonymise, replace it by tokens).
    Erase(EraseArgs),
}

#[derive(Debug, Args)]
pub struct SetStatusArgs {
    /// Email address or customer id.
    pub who: String,
    #[arg(long)]
    pub status: CustomerStatus,
    /// Date the status took effect (YYYY-MM-DD; default today).
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SyncArgs {
    pub file: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RectifyArgs {
    /// Email address or customer id; `contact:ID` for a contact.
    pub who: String,
    /// Field: name, email, language (customer); display_name, address (contact).
    #[arg(long)]
    pub field: String,
    /// New value (omit with --clear).
    #[arg(long)]
    pub value: Option<String>,
    #[arg(long)]
    pub clear: bool,
    /// Why (recorded in the history).
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct HoldArgs {
    pub who: String,
    /// Lift the hold instead of setting it.
    #[arg(long)]
    pub off: bool,
    #[arg(long)]
    pub reason: Option<String>,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    pub who: String,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EraseArgs {
    pub who: String,
    /// Why (e.g. the request reference); recorded in the erasure event.
    #[arg(long)]
    pub reason: String,
    /// Keep ticket statistics with personal data replaced by tokens.
    #[arg(long)]
    pub anonymise: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TicketCommand {
    /// Show a ticket and its messages (recorded in the access audit).
    Show(TicketShowArgs),
    /// Put a legal hold on a ticket or lift it.
    Hold(TicketHoldArgs),
    /// Set the retention class (`tax_evidence`) or clear it (`default`).
    Class(TicketClassArgs),
}

#[derive(Debug, Args)]
pub struct TicketShowArgs {
    pub number: i64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TicketHoldArgs {
    pub number: i64,
    #[arg(long)]
    pub off: bool,
}

#[derive(Debug, Args)]
pub struct TicketClassArgs {
    pub number: i64,
    /// tax_evidence, or default.
    pub class: String,
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Evaluate the policy and delete what is due.
    Run(RetentionRunArgs),
}

#[derive(Debug, Args)]
pub struct RetentionRunArgs {
    /// List what would go, and each customer's next due date; delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Evaluate as of this date (YYYY-MM-DD) instead of today.
    #[arg(long)]
    pub now: Option<String>,
    #[arg(long)]
    pub json: bool,
    /// How many due items to list.
    #[arg(long, default_value_t = 50)]
    pub list: usize,
}

fn parse_day(text: &str) -> Result<DateTime<Utc>> {
    let d = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d")
        .with_context(|| format!("`{text}` is not a date (YYYY-MM-DD)"))?;
    Ok(d.and_hms_opt(0, 0, 0).context("midnight exists")?.and_utc())
}

/// The configured staff member, acting now.
pub(crate) fn actor<'a>(settings: &'a Settings, reason: Option<&'a str>) -> Actor<'a> {
    Actor {
        name: &settings.actor,
        reason,
        now: Utc::now(),
    }
}

pub async fn customer(
    settings: &Settings,
    cmd: CustomerCommand,
    _env: &[(String, String)],
) -> Result<ExitCode> {
    let store = open_store(settings).await?;
    match cmd {
        CustomerCommand::SetStatus(a) => {
            let since = match &a.since {
                Some(s) => parse_day(s)?,
                None => Utc::now(),
            };
            let who = SubjectRef::parse(&a.who);
            let out = store
                .set_customer_status(&who, a.status, since, &actor(settings, None))
                .await?;
            if a.json {
                out!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                out!(
                    "customer {}: {} since {}{}",
                    out.customer_id,
                    a.status,
                    since.format("%Y-%m-%d"),
                    if out.created { " (new customer)" } else { "" }
                );
            }
        }
        CustomerCommand::Sync(a) => {
            let rows = read_csv(&a.file)?;
            let out = store
                .sync_customers(&rows, &actor(settings, Some("billing sync")))
                .await?;
            let created = out.iter().filter(|o| o.created).count();
            let changed = out.iter().filter(|o| o.changed && !o.created).count();
            if a.json {
                out!(
                    "{}",
                    serde_json::json!({"rows": out.len(), "created": created, "changed": changed,
                        "unchanged": out.len() - created - changed})
                );
            } else {
                out!(
                    "{} rows: {created} new customers, {changed} changed, {} unchanged",
                    out.len(),
                    out.len() - created - changed
                );
            }
        }
        CustomerCommand::Rectify(a) => {
            let value = if a.clear {
                None
            } else {
                Some(a.value.clone().context("give --value or --clear")?)
            };
            let (entity, id) = if let Some(c) = a.who.strip_prefix("contact:") {
                (
                    "contact",
                    c.trim()
                        .parse::<i64>()
                        .context("contact:ID needs a number")?,
                )
            } else {
                let who = SubjectRef::parse(&a.who);
                let c = store
                    .find_customer(&who)
                    .await?
                    .with_context(|| format!("no customer {}", a.who))?;
                ("customer", c.id)
            };
            let changed = store
                .rectify(
                    entity,
                    id,
                    &a.field,
                    value.as_deref(),
                    &actor(settings, a.reason.as_deref()),
                )
                .await?;
            out!(
                "{}",
                if changed {
                    "changed (previous value kept in the history)"
                } else {
                    "unchanged: the value was already that"
                }
            );
        }
        CustomerCommand::Hold(a) => {
            let who = SubjectRef::parse(&a.who);
            let c = store
                .find_customer(&who)
                .await?
                .with_context(|| format!("no customer {}", a.who))?;
            store
                .set_customer_hold(c.id, !a.off, &actor(settings, a.reason.as_deref()))
                .await?;
            out!(
                "customer {}: legal hold {}",
                c.id,
                if a.off { "lifted" } else { "set" }
            );
        }
        CustomerCommand::Export(a) => {
            let subject = qd_retention::resolve(&store, &a.who).await?;
            let (_, summary) = qd_retention::export::export(
                &store,
                &subject,
                &a.out,
                ExportOptions {
                    include_notes: settings.export_include_notes,
                },
                &actor(settings, None),
            )
            .await?;
            if a.json {
                out!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                out!(
                    "wrote {}: {} tickets, {} messages ({} .eml), {} changes, {} staff accesses, {} notes and {} messages by other people withheld",
                    a.out.display(),
                    summary.tickets,
                    summary.messages,
                    summary.eml_files,
                    summary.changes,
                    summary.staff_accesses,
                    summary.withheld_notes,
                    summary.withheld_messages
                );
            }
        }
        CustomerCommand::Erase(a) => {
            let subject = qd_retention::resolve_for_erasure(&store, &a.who).await?;
            let counts = qd_retention::erase(
                &store,
                &subject,
                a.anonymise,
                &actor(settings, Some(&a.reason)),
            )
            .await?;
            // The index drops the documents now (and merges them away), not at next start.
            open_index(settings, &store).await?;
            store.checkpoint_wal().await?;
            let kind = match subject {
                Subject::Customer(_) => "customer",
                Subject::Contact(_) => "contact",
                Subject::Address(_) => "address",
            };
            if a.json {
                out!(
                    "{}",
                    serde_json::json!({"subject": kind, "anonymised": a.anonymise, "counts": counts})
                );
            } else {
                out!(
                    "{} {}: {} tickets, {} messages, {} blobs, {} keys destroyed, {} contacts, \
                     {} of other people's messages rewritten",
                    if a.anonymise { "anonymised" } else { "erased" },
                    kind,
                    counts.tickets,
                    counts.messages,
                    counts.blobs,
                    counts.keys_destroyed,
                    counts.contacts,
                    counts.redacted
                );
            }
        }
    }
    store.close().await?;
    Ok(ExitCode::SUCCESS)
}

/// Reads a billing CSV: a header line naming at least `email`, `status` and `since`.
fn read_csv(path: &std::path::Path) -> Result<Vec<CustomerRecord>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .context("the CSV file is empty")?
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let col = |name: &str| header.iter().position(|h| h == name);
    let (Some(ie), Some(is), Some(id)) = (col("email"), col("status"), col("since")) else {
        bail!(
            "the CSV header must name email, status and since (got {})",
            header.join(",")
        );
    };
    let (iname, ilang) = (col("name"), col("language"));
    let mut out = Vec::new();
    for (n, line) in lines.enumerate() {
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        let get = |i: usize| f.get(i).copied().unwrap_or("");
        let row = n + 2;
        let email = get(ie);
        if !email.contains('@') {
            bail!("line {row}: `{email}` is not an email address");
        }
        let status: CustomerStatus = get(is)
            .parse()
            .with_context(|| format!("line {row}: bad status"))?;
        let since = parse_day(get(id)).with_context(|| format!("line {row}"))?;
        let opt = |i: Option<usize>| i.map(get).filter(|v| !v.is_empty()).map(str::to_string);
        out.push(CustomerRecord {
            email: email.to_string(),
            name: opt(iname),
            status,
            since,
            language: opt(ilang),
        });
    }
    Ok(out)
}

pub async fn ticket(
    settings: &Settings,
    cmd: TicketCommand,
    _env: &[(String, String)],
) -> Result<ExitCode> {
    let store = open_store(settings).await?;
    match cmd {
        TicketCommand::Show(a) => {
            let Some(t) = store.ticket_by_number(a.number).await? else {
                eprintln!("error: no ticket {}", a.number);
                return Ok(ExitCode::from(1));
            };
            let msgs = store.ticket_messages(t.id).await?;
            store
                .audit(
                    &settings.actor,
                    "view",
                    "ticket",
                    Some(t.id),
                    None,
                    Utc::now(),
                )
                .await?;
            if a.json {
                let m: Vec<serde_json::Value> = msgs
                    .iter()
                    .map(|m| {
                        serde_json::json!({"id": m.id, "direction": m.direction, "from": m.from_addr,
                            "date": m.date, "received_at": m.received_at, "subject": m.subject,
                            "text": m.body_text, "quarantined": m.quarantined,
                            "verdict": m.verdict_class})
                    })
                    .collect();
                out!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({
                        "number": t.number, "subject": t.subject, "status": t.status,
                        "team": t.team, "legal_hold": t.legal_hold,
                        "retention_class": t.retention_class, "messages": m}))?
                );
            } else {
                out!(
                    "{} {} [{}]",
                    settings.ticket_ref.render(t.number),
                    t.subject,
                    t.status
                );
                for m in &msgs {
                    out!(
                        "\n--- {} {} {}\n{}",
                        m.received_at.format("%Y-%m-%d %H:%M"),
                        m.direction,
                        m.from_addr.as_deref().unwrap_or(""),
                        m.body_text
                    );
                }
            }
        }
        TicketCommand::Hold(a) => {
            store
                .set_ticket_retention(a.number, Some(!a.off), None, &actor(settings, None))
                .await?;
            out!(
                "ticket {}: legal hold {}",
                a.number,
                if a.off { "lifted" } else { "set" }
            );
        }
        TicketCommand::Class(a) => {
            let class = match a.class.as_str() {
                "tax_evidence" => Some("tax_evidence".to_string()),
                "default" => None,
                other => bail!("unknown retention class `{other}` (tax_evidence or default)"),
            };
            store
                .set_ticket_retention(a.number, None, Some(class), &actor(settings, None))
                .await?;
            out!("ticket {}: retention class {}", a.number, a.class);
        }
    }
    store.close().await?;
    Ok(ExitCode::SUCCESS)
}

pub async fn retention(settings: &Settings, cmd: RetentionCommand) -> Result<ExitCode> {
    let RetentionCommand::Run(a) = cmd;
    let now = match &a.now {
        Some(d) => parse_day(d)?,
        None => Utc::now(),
    };
    let store = open_store(settings).await?;
    let opts = RunOptions {
        now,
        dry_run: a.dry_run,
        list_limit: a.list,
    };
    let report = if a.dry_run {
        qd_retention::run(&store, &settings.retention, &opts).await?
    } else {
        // The index drops the due documents while the store deletes the rows.
        crate::commands::retention_run(settings, &store, &opts).await?
    };
    if a.json {
        out!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        out!(
            "{} as of {}: {} tickets and {} quarantined messages evaluated, {} held",
            if a.dry_run {
                "dry run"
            } else {
                "retention run"
            },
            now.format("%Y-%m-%d"),
            report.tickets_evaluated,
            report.quarantined_evaluated,
            report.held
        );
        for (class, r) in &report.classes {
            out!(
                "  {class}: {} due, deleted {} tickets, {} messages, {} blobs",
                r.due,
                r.deleted.tickets,
                r.deleted.messages,
                r.deleted.blobs
            );
        }
        for i in &report.items {
            out!(
                "  {} {} ({}, due {})",
                i.kind,
                i.id,
                i.class,
                i.due.format("%Y-%m-%d")
            );
        }
        if a.dry_run {
            for c in &report.customers {
                out!(
                    "  customer {} ({}): {} tickets, next due {}",
                    c.customer_id,
                    c.status,
                    c.tickets,
                    c.next_due
                        .map(|d| d.format("%Y-%m-%d").to_string())
                        .unwrap_or_else(|| "never (while active or held)".into())
                );
            }
        }
    }
    store.close().await?;
    Ok(ExitCode::SUCCESS)
}
