//! Access and portability export: everything we hold about one person, in a zip.
//!
//! - `summary.html`: a readable overview (profile, change history, tickets, who of our
//!   staff looked at them, how many internal notes and other people's messages were
//!   withheld);
//! - `data.json`: the same data, machine-readable, with every message's text;
//! - `messages/<ticket>-<id>.eml`: each message as we received or sent it;
//! - `outgoing/<id>.eml`: mail to them in the outbox that is on no ticket yet (waiting,
//!   failed), when it went to them alone; listed in `data.json` either way;
//! - staff notes (`direction = note`) are withheld unless the caller includes them;
//! - other people's mail on the person's tickets (a colleague, a third party writing
//!   with the ticket's reference) is withheld and counted (GDPR Art. 15(4)): a message
//!   is theirs when one of their contacts sent it or it names one of their addresses in
//!   To or Cc (our replies to them, mail they were copied on);
//! - on other people's tickets, the person's own mail and mail sent to them or copied
//!   them is theirs (`other_messages`, without the ticket's number).

use std::collections::HashMap;
use std::io::Write;
use std::path::Path;

use chrono::{DateTime, Utc};
use qd_store::entity::{attachments, messages};
use qd_store::{Actor, Change, Store};
use serde::Serialize;
use zip::write::SimpleFileOptions;

use crate::{Result, Subject};

#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    pub include_notes: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Profile {
    pub kind: &'static str,
    pub id: i64,
    pub email: String,
    pub name: Option<String>,
    pub status: Option<String>,
    pub status_since: Option<DateTime<Utc>>,
    pub active_since: Option<DateTime<Utc>>,
    pub former_since: Option<DateTime<Utc>>,
    pub language: Option<String>,
    pub legal_hold: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ContactOut {
    pub id: i64,
    pub address: String,
    pub display_name: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AttachmentOut {
    pub filename: Option<String>,
    pub content_type: String,
    pub size: i64,
    pub sha256: String,
    pub quarantined: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct MessageOut {
    pub id: i64,
    pub ticket: i64,
    pub direction: String,
    pub message_id: Option<String>,
    pub date: Option<DateTime<Utc>>,
    pub received_at: DateTime<Utc>,
    pub from: Option<String>,
    pub from_name: Option<String>,
    pub to: Vec<String>,
    pub cc: Vec<String>,
    pub subject: String,
    pub text: String,
    pub attachments: Vec<AttachmentOut>,
    /// Path of the raw message inside the archive (absent when the raw mail is gone).
    pub eml: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TicketOut {
    pub number: i64,
    pub subject: String,
    pub status: String,
    pub team: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_activity_at: DateTime<Utc>,
    pub messages: Vec<MessageOut>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AccessOut {
    pub at: DateTime<Utc>,
    pub staff: String,
    pub action: String,
    pub ticket: Option<i64>,
}

/// Mail we are sending or tried to send to the person that has no copy on a ticket yet
/// (waiting, failed, or sent without a ticket).
#[derive(Debug, Clone, Serialize)]
pub struct OutgoingOut {
    pub id: i64,
    pub kind: String,
    pub status: String,
    /// Their ticket it belongs to, if any.
    pub ticket: Option<i64>,
    /// Their own addresses among the recipients (others' are withheld).
    pub to: Vec<String>,
    pub subject: String,
    pub created_at: DateTime<Utc>,
    pub sent_at: Option<DateTime<Utc>>,
    pub failed_at: Option<DateTime<Utc>>,
    /// The delivery error, when the mail went to them alone (an error may quote
    /// another recipient).
    pub last_error: Option<String>,
    /// Path of the message inside the archive, when it went to them alone and its bytes
    /// are still held.
    pub eml: Option<String>,
}

/// `data.json`.
#[derive(Debug, Clone, Serialize)]
pub struct ExportData {
    pub generated_at: DateTime<Utc>,
    pub profile: Profile,
    pub contacts: Vec<ContactOut>,
    pub changes: Vec<Change>,
    pub tickets: Vec<TicketOut>,
    /// Messages the person sent, or that were sent to them or copied them, on tickets
    /// that are not theirs.
    pub other_messages: Vec<MessageOut>,
    pub staff_accesses: Vec<AccessOut>,
    /// Mail to them in the outbox that is on no ticket yet.
    pub outgoing: Vec<OutgoingOut>,
    pub withheld_notes: u64,
    /// Messages on the person's tickets by and to other people only.
    pub withheld_messages: u64,
}

/// What the export contained (for the CLI's summary).
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    pub tickets: usize,
    pub messages: usize,
    pub eml_files: usize,
    pub changes: usize,
    pub staff_accesses: usize,
    pub outgoing: usize,
    pub withheld_notes: u64,
    pub withheld_messages: u64,
}

fn list(text: &str) -> Vec<String> {
    serde_json::from_str(text).unwrap_or_default()
}

/// Whether a message on the person's tickets is theirs to have: one of their contacts
/// sent it, or its To or Cc names one of their addresses (our reply to them, mail they
/// were copied on: they received it). Anything else is another person's mail.
fn is_theirs(m: &messages::Model, contact_ids: &[i64], addresses: &[String]) -> bool {
    let names = |mailbox: &str| addresses.iter().any(|a| qd_core::mailbox_is(mailbox, a));
    sent_by(m, contact_ids, addresses)
        || list(&m.to_addrs)
            .iter()
            .chain(list(&m.cc_addrs).iter())
            .any(|r| names(r))
}

/// Whether one of the person's contacts, or one of their addresses, sent the message.
fn sent_by(m: &messages::Model, contact_ids: &[i64], addresses: &[String]) -> bool {
    m.contact_id.is_some_and(|id| contact_ids.contains(&id))
        || m.from_addr
            .as_deref()
            .is_some_and(|f| addresses.iter().any(|a| qd_core::mailbox_is(f, a)))
}

/// Gathers everything about `subject`, writes the archive to `out` and records the export
/// in the audit trail.
pub async fn export(
    store: &Store,
    subject: &Subject,
    out: &Path,
    opts: ExportOptions,
    actor: &Actor<'_>,
) -> Result<(ExportData, ExportSummary)> {
    let (profile, contacts, customer_id) = match subject {
        Subject::Customer(c) => (
            Profile {
                kind: "customer",
                id: c.id,
                email: c.email.clone(),
                name: c.name.clone(),
                status: Some(c.status.clone()),
                status_since: Some(c.status_since),
                active_since: c.active_since,
                former_since: c.former_since,
                language: c.language.clone(),
                legal_hold: c.legal_hold,
                created_at: c.created_at,
            },
            store.contacts_of(c).await?,
            Some(c.id),
        ),
        Subject::Contact(c) => (
            Profile {
                kind: "contact",
                id: c.id,
                email: c.address.clone(),
                name: c.display_name.clone(),
                status: None,
                status_since: None,
                active_since: None,
                former_since: None,
                language: None,
                legal_hold: false,
                created_at: c.created_at,
            },
            vec![c.clone()],
            None,
        ),
        Subject::Address(a) => return Err(crate::Error::UnknownSubject(a.clone())),
    };
    let contact_ids: Vec<i64> = contacts.iter().map(|c| c.id).collect();
    let mut addresses: Vec<String> = contacts.iter().map(|c| c.address.clone()).collect();
    if let Subject::Customer(c) = subject {
        addresses.push(c.email.clone());
    }
    let changes = store
        .changes_of(customer_id.unwrap_or(-1), &contact_ids)
        .await?;
    let tickets = store.tickets_of(customer_id, &contact_ids).await?;
    let ticket_ids: Vec<i64> = tickets.iter().map(|t| t.id).collect();
    let number_of: HashMap<i64, i64> = tickets.iter().map(|t| (t.id, t.number)).collect();

    let mut withheld = 0u64;
    let mut withheld_messages = 0u64;
    let mut all_msgs: Vec<messages::Model> = Vec::new();
    let mut per_ticket: HashMap<i64, Vec<messages::Model>> = HashMap::new();
    for t in &tickets {
        for m in store.ticket_messages(t.id).await? {
            if m.direction == "note" && !opts.include_notes {
                withheld += 1;
                continue;
            }
            if m.direction != "note" && !is_theirs(&m, &contact_ids, &addresses) {
                withheld_messages += 1;
                continue;
            }
            per_ticket.entry(t.id).or_default().push(m.clone());
            all_msgs.push(m);
        }
    }
    let mut elsewhere = store
        .messages_by_contacts_elsewhere(&contact_ids, &ticket_ids)
        .await?;
    // Mail on other people's tickets that was sent to them or copied them: they
    // received it. (Bcc is not recorded on a message, so nobody else's secret shows.)
    for m in store
        .messages_naming_elsewhere(&addresses, &ticket_ids)
        .await?
    {
        if !elsewhere.iter().any(|e| e.id == m.id) && is_theirs(&m, &contact_ids, &addresses) {
            elsewhere.push(m);
        }
    }
    elsewhere.sort_by_key(|m| m.id);
    all_msgs.extend(elsewhere.iter().cloned());
    let ids: Vec<i64> = all_msgs.iter().map(|m| m.id).collect();
    let mut atts: HashMap<i64, Vec<attachments::Model>> = HashMap::new();
    for a in store.attachments_of(&ids).await? {
        atts.entry(a.message_id).or_default().push(a);
    }

    let file = std::fs::File::create(out)?;
    let mut zip = zip::ZipWriter::new(file);
    let options = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    let mut eml_files = 0usize;
    let mut message_out = |m: &messages::Model,
                           ticket: i64,
                           zip: &mut zip::ZipWriter<std::fs::File>,
                           raw: Option<Vec<u8>>|
     -> Result<MessageOut> {
        // Blind copies are the sender's secret: only mail the person sent keeps them
        // (a copy from a sender's own archive may carry them).
        let raw = match raw {
            Some(bytes) if !sent_by(m, &contact_ids, &addresses) => {
                Some(qd_core::without_fields(&bytes, &["bcc", "resent-bcc"]))
            }
            other => other,
        };
        let eml = match raw {
            Some(bytes) => {
                let name = format!("messages/{ticket}-{}.eml", m.id);
                zip.start_file(name.as_str(), options)?;
                zip.write_all(&bytes)?;
                eml_files += 1;
                Some(name)
            }
            None => None,
        };
        Ok(MessageOut {
            id: m.id,
            ticket,
            direction: m.direction.clone(),
            message_id: m.message_id.clone(),
            date: m.date,
            received_at: m.received_at,
            from: m.from_addr.clone(),
            from_name: m.from_name.clone(),
            to: list(&m.to_addrs),
            cc: list(&m.cc_addrs),
            subject: m.subject.clone(),
            text: m.body_text.clone(),
            attachments: atts
                .get(&m.id)
                .map(|v| {
                    v.iter()
                        .map(|a| AttachmentOut {
                            filename: a.filename.clone(),
                            content_type: a.content_type.clone(),
                            size: a.size,
                            sha256: a.digest.clone(),
                            quarantined: a.quarantined,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            eml,
        })
    };

    let mut tickets_out = Vec::with_capacity(tickets.len());
    for t in &tickets {
        let mut msgs = Vec::new();
        for m in per_ticket.get(&t.id).map(Vec::as_slice).unwrap_or(&[]) {
            let raw = store.raw_message(m.id).await?;
            msgs.push(message_out(m, t.number, &mut zip, raw)?);
        }
        tickets_out.push(TicketOut {
            number: t.number,
            subject: t.subject.clone(),
            status: t.status.clone(),
            team: t.team.clone(),
            created_at: t.created_at,
            last_activity_at: t.last_activity_at,
            messages: msgs,
        });
    }
    let mut other = Vec::new();
    for m in &elsewhere {
        let raw = store.raw_message(m.id).await?;
        // The number of a ticket that is not theirs is not theirs either.
        other.push(message_out(m, 0, &mut zip, raw)?);
    }
    let accesses = store
        .ticket_accesses(&ticket_ids)
        .await?
        .into_iter()
        .map(|e| AccessOut {
            at: e.at,
            staff: e.actor,
            action: e.action,
            ticket: e.object_id.and_then(|id| number_of.get(&id).copied()),
        })
        .collect();
    let mut outgoing = Vec::new();
    for e in store.outbox_unrecorded_to(&addresses).await? {
        let theirs: Vec<String> = e
            .rcpt_to
            .iter()
            .filter(|r| addresses.iter().any(|a| qd_core::mailbox_is(r, a)))
            .cloned()
            .collect();
        let only_theirs = theirs.len() == e.rcpt_to.len();
        let eml = match (&e.raw, only_theirs) {
            (Some(bytes), true) => {
                let name = format!("outgoing/{}.eml", e.id);
                zip.start_file(name.as_str(), options)?;
                zip.write_all(bytes)?;
                eml_files += 1;
                Some(name)
            }
            _ => None,
        };
        outgoing.push(OutgoingOut {
            id: e.id,
            kind: e.kind.as_str().to_string(),
            status: e.status.as_str().to_string(),
            ticket: e.ticket_id.and_then(|id| number_of.get(&id).copied()),
            to: theirs,
            subject: e.subject,
            created_at: e.created_at,
            sent_at: e.sent_at,
            failed_at: e.failed_at,
            last_error: e.last_error.filter(|_| only_theirs),
            eml,
        });
    }
    let data = ExportData {
        generated_at: actor.now,
        profile,
        contacts: contacts
            .iter()
            .map(|c| ContactOut {
                id: c.id,
                address: c.address.clone(),
                display_name: c.display_name.clone(),
                created_at: c.created_at,
                last_seen_at: c.last_seen_at,
            })
            .collect(),
        changes,
        tickets: tickets_out,
        other_messages: other,
        staff_accesses: accesses,
        outgoing,
        withheld_notes: withheld,
        withheld_messages,
    };
    zip.start_file("data.json", options)?;
    zip.write_all(&serde_json::to_vec_pretty(&data)?)?;
    zip.start_file("summary.html", options)?;
    zip.write_all(summary_html(&data).as_bytes())?;
    zip.finish()?;

    let summary = ExportSummary {
        tickets: data.tickets.len(),
        messages: data.tickets.iter().map(|t| t.messages.len()).sum::<usize>()
            + data.other_messages.len(),
        eml_files,
        changes: data.changes.len(),
        staff_accesses: data.staff_accesses.len(),
        outgoing: data.outgoing.len(),
        withheld_notes: withheld,
        withheld_messages,
    };
    store
        .audit(
            actor.name,
            "export",
            data.profile.kind,
            Some(data.profile.id),
            Some(serde_json::to_string(&summary)?),
            actor.now,
        )
        .await?;
    Ok((data, summary))
}

fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// "1 message", "2 messages".
fn count(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn opt(s: &Option<String>) -> String {
    s.as_deref().map(esc).unwrap_or_else(|| "—".into())
}

fn date(d: &Option<DateTime<Utc>>) -> String {
    d.map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "—".into())
}

/// A self-contained page (no scripts, no remote content) a person can open offline.
pub fn summary_html(d: &ExportData) -> String {
    use std::fmt::Write as _;
    let mut h = String::new();
    let p = &d.profile;
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>Your data at our support desk</title>\
         <style>body{{font:15px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:.2rem .5rem;text-align:left;vertical-align:top}}\
         pre{{white-space:pre-wrap;background:#f6f6f6;padding:.5rem}}</style>\
         <h1>Your data at our support desk</h1><p>Generated {}. The file <code>data.json</code> holds the same data in a machine-readable form; \
         the folder <code>messages</code> holds each message as an email file.</p>",
        d.generated_at.format("%Y-%m-%d %H:%M UTC")
    );
    let _ = write!(
        h,
        "<h2>Profile</h2><table><tr><th>Email</th><td>{}</td></tr><tr><th>Name</th><td>{}</td></tr>\
         <tr><th>Status</th><td>{}</td></tr><tr><th>Customer since</th><td>{}</td></tr><tr><th>Former since</th><td>{}</td></tr>\
         <tr><th>Language</th><td>{}</td></tr><tr><th>Legal hold</th><td>{}</td></tr></table>",
        esc(&p.email),
        opt(&p.name),
        opt(&p.status),
        date(&p.active_since),
        date(&p.former_since),
        opt(&p.language),
        if p.legal_hold { "yes" } else { "no" }
    );
    h.push_str("<h2>Addresses we know</h2><ul>");
    for c in &d.contacts {
        let _ = write!(h, "<li>{} ({})</li>", esc(&c.address), opt(&c.display_name));
    }
    h.push_str("</ul><h2>Changes to your data</h2>");
    if d.changes.is_empty() {
        h.push_str("<p>None.</p>");
    } else {
        h.push_str("<table><tr><th>When</th><th>What</th><th>Before</th><th>After</th><th>By</th><th>Why</th></tr>");
        for c in &d.changes {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{} {}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                c.at.format("%Y-%m-%d %H:%M"),
                esc(&c.entity_type),
                esc(&c.field),
                opt(&c.old_value),
                opt(&c.new_value),
                esc(&c.actor),
                opt(&c.reason)
            );
        }
        h.push_str("</table>");
    }
    let _ = write!(h, "<h2>Tickets ({})</h2>", d.tickets.len());
    for t in &d.tickets {
        let _ = write!(
            h,
            "<h3>Ticket {} — {}</h3><p>Status {}, opened {}, last activity {}.</p>",
            t.number,
            esc(&t.subject),
            esc(&t.status),
            t.created_at.format("%Y-%m-%d"),
            t.last_activity_at.format("%Y-%m-%d")
        );
        for m in &t.messages {
            let _ = write!(
                h,
                "<h4>{} — {} — {}</h4><pre>{}</pre>",
                m.received_at.format("%Y-%m-%d %H:%M"),
                esc(&m.direction),
                esc(&m.subject),
                esc(&m.text)
            );
        }
    }
    if d.withheld_messages > 0 {
        let _ = write!(
            h,
            "<p>{} by other people on your tickets {} withheld from this export.</p>",
            count(d.withheld_messages, "message", "messages"),
            if d.withheld_messages == 1 {
                "was"
            } else {
                "were"
            }
        );
    }
    if !d.other_messages.is_empty() {
        let _ = write!(
            h,
            "<h2>Messages from or to you on other tickets ({})</h2>",
            d.other_messages.len()
        );
        for m in &d.other_messages {
            let _ = write!(
                h,
                "<h4>{} — {}</h4><pre>{}</pre>",
                m.received_at.format("%Y-%m-%d %H:%M"),
                esc(&m.subject),
                esc(&m.text)
            );
        }
    }
    if !d.outgoing.is_empty() {
        let _ = write!(
            h,
            "<h2>Mail to you not yet on a ticket ({})</h2><p>Mail we are sending or could not deliver.</p>\
             <table><tr><th>Created</th><th>Kind</th><th>Status</th><th>Subject</th><th>Error</th></tr>",
            d.outgoing.len()
        );
        for o in &d.outgoing {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                o.created_at.format("%Y-%m-%d %H:%M"),
                esc(&o.kind),
                esc(&o.status),
                esc(&o.subject),
                opt(&o.last_error)
            );
        }
        h.push_str("</table>");
    }
    let _ = write!(h, "<h2>Who of our staff looked at your tickets</h2>");
    if d.withheld_notes > 0 {
        let _ = write!(
            h,
            "<p>{} {} withheld from this export.</p>",
            count(
                d.withheld_notes,
                "internal staff note",
                "internal staff notes"
            ),
            if d.withheld_notes == 1 { "was" } else { "were" }
        );
    }
    if d.staff_accesses.is_empty() {
        h.push_str("<p>No recorded accesses.</p>");
    } else {
        h.push_str(
            "<table><tr><th>When</th><th>Staff member</th><th>Action</th><th>Ticket</th></tr>",
        );
        for a in &d.staff_accesses {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                a.at.format("%Y-%m-%d %H:%M"),
                esc(&a.staff),
                esc(&a.action),
                a.ticket.map(|n| n.to_string()).unwrap_or_default()
            );
        }
        h.push_str("</table>");
    }
    h.push_str("</html>\n");
    h
}
