//! Deterministic synthetic support mailboxes: the fixtures of quietdesk's tests and the
//! input of its import and search benchmarks (`quietdesk bench gen`).
//!
//! [`generate`] streams [`SynthMessage`]s of a hosting company's support inbox: customers
//! and strangers open threads of one to six messages, replies quote and reference earlier
//! messages of their thread, bodies draw on a Zipf-distributed vocabulary, and the MIME mix
//! (plain, quoted-printable UTF-8, text+HTML, small attachments) is that of real mail. The
//! same [`SynthConfig`] always yields the same bytes. [`customers`] lists the people who
//! write; [`write_maildir`], [`write_mbox`] and [`write_customers_csv`] put it all on disk.
//! Memory stays constant in the number of messages, and generation runs at well over
//! 100,000 messages per second in a release build.

mod attach;
mod encode;
mod gen;
mod people;
mod vocab;

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

use chrono::{DateTime, Utc};

pub use gen::{Messages, SUPPORT};

/// What to generate. Equal configurations generate byte-identical mailboxes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthConfig {
    pub seed: u64,
    pub messages: u64,
    /// People who are customers; 0 counts as 1.
    pub customers: u32,
    /// Date of the first message; later ones follow one second to four minutes apart.
    pub start: DateTime<Utc>,
}

impl SynthConfig {
    /// `messages` messages from `messages / 20` customers (at least one), from
    /// 2024-01-01T00:00:00Z on.
    pub fn new(seed: u64, messages: u64) -> SynthConfig {
        SynthConfig {
            seed,
            messages,
            customers: u32::try_from(messages / 20).unwrap_or(u32::MAX).max(1),
            start: DateTime::from_timestamp(1_704_067_200, 0).unwrap_or_default(),
        }
    }
}

/// One generated message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthMessage {
    /// The complete message, CRLF line endings.
    pub raw: Vec<u8>,
    /// As in the Message-ID header, angle brackets included.
    pub message_id: String,
    /// 0-based, in the order threads were opened.
    pub thread: u64,
    /// A follow-up: `Re: ` subject, In-Reply-To and References to earlier messages of
    /// the same thread.
    pub is_reply: bool,
    /// multipart/mixed with a base64 attachment.
    pub has_attachment: bool,
}

/// One customer address. A person with two addresses has two entries sharing name and
/// status, as in the customer CSV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthCustomer {
    pub name: String,
    pub email: String,
    /// "prospect", "active" or "former".
    pub status: &'static str,
}

/// All customer addresses of `cfg`, the people behind most of the generated mail.
pub fn customers(cfg: &SynthConfig) -> Vec<SynthCustomer> {
    let n = cfg.customers.max(1);
    let key = people::customer_key(cfg.seed);
    let mut out = Vec::with_capacity(n as usize * 3 / 2);
    for i in 0..n {
        let p = people::customer_at(&key, i, n);
        for email in p.emails {
            out.push(SynthCustomer {
                name: p.name.clone(),
                email,
                status: p.status,
            });
        }
    }
    out
}

/// The messages of `cfg`, in arrival order (strictly increasing Date).
pub fn generate(cfg: &SynthConfig) -> Messages {
    Messages::new(cfg)
}

/// Writes a Maildir: `dir/{cur,new,tmp}` and one file per message in `new/`. Returns the
/// number of messages written. Names are unique per message and stable per seed, so a
/// second run into the same directory overwrites rather than duplicates.
pub fn write_maildir(cfg: &SynthConfig, dir: &Path) -> io::Result<u64> {
    for sub in ["cur", "new", "tmp"] {
        fs::create_dir_all(dir.join(sub))?;
    }
    let new = dir.join("new");
    let mut messages = generate(cfg);
    let mut count = 0u64;
    let mut name = String::with_capacity(64);
    while let Some((m, env)) = messages.next_with_envelope() {
        name.clear();
        // time.unique.host, the Maildir convention; never a ':' (the info separator).
        let _ = write!(name, "{}.S{:x}N{count}.synth.quietdesk", env.ts, cfg.seed);
        fs::write(new.join(&name), &m.raw)?;
        count += 1;
    }
    Ok(count)
}

/// Writes an mboxrd file: each message after a `From sender date` line, in LF line
/// endings as Unix mbox files have them, every line matching `^>*From ` given one more
/// `>`, and a blank line after each message. Returns the number of messages written.
pub fn write_mbox(cfg: &SynthConfig, path: &Path) -> io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut messages = generate(cfg);
    let mut count = 0u64;
    let mut sep = String::with_capacity(96);
    while let Some((m, env)) = messages.next_with_envelope() {
        sep.clear();
        gen::separator(&mut sep, &env);
        out.write_all(sep.as_bytes())?;
        // The separator's blank line stands in for the final line break.
        let raw = m.raw.strip_suffix(b"\r\n").unwrap_or(&m.raw);
        for line in raw.split(|&b| b == b'\n') {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let first_other = line.iter().position(|&b| b != b'>');
            if first_other.is_some_and(|i| line[i..].starts_with(b"From ")) {
                out.write_all(b">")?;
            }
            out.write_all(line)?;
            out.write_all(b"\n")?;
        }
        out.write_all(b"\n")?;
        count += 1;
    }
    out.flush()?;
    Ok(count)
}

/// Writes the customer list as CSV with the header `email,name,status`.
pub fn write_customers_csv(cfg: &SynthConfig, path: &Path) -> io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    out.write_all(b"email,name,status\n")?;
    for c in customers(cfg) {
        write_csv_field(&mut out, &c.email)?;
        out.write_all(b",")?;
        write_csv_field(&mut out, &c.name)?;
        out.write_all(b",")?;
        write_csv_field(&mut out, c.status)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// RFC 4180 quoting, only where needed.
fn write_csv_field(out: &mut impl Write, field: &str) -> io::Result<()> {
    if field.contains([',', '"', '\n', '\r']) {
        write!(out, "\"{}\"", field.replace('"', "\"\""))
    } else {
        out.write_all(field.as_bytes())
    }
}
