use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// quietdesk — privacy-aware email ticketing.
#[derive(Debug, Parser)]
#[command(name = "quietdesk", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Configuration file (TOML; see config/quietdesk.toml). Defaults apply without one.
    #[arg(long, global = true, env = "QUIETDESK_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory: the SQLite file (with the raw mail) and the search index live under it.
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// Staff member recorded in the audit trail for reads and changes (default:
    /// privacy.cli_actor, else the operating-system user).
    #[arg(long, global = true)]
    pub actor: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the web server and the background workers until SIGINT/SIGTERM.
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Import mail from a Maildir, an mbox file, a message file or a directory of them.
    Import(ImportArgs),
    /// Search messages with the staff query language.
    Search(SearchArgs),
    /// Rebuild the search index from the store.
    Reindex,
    /// Ingest mail from IMAP mailboxes (the configured ones, or --mailbox URL).
    Ingest(crate::ingest_cmd::IngestArgs),
    /// Customers as data subjects: status, billing sync, rectification, hold, export, erasure.
    #[command(subcommand)]
    Customer(crate::privacy_cmd::CustomerCommand),
    /// Tickets: show one (audited), legal hold, retention class.
    #[command(subcommand)]
    Ticket(crate::privacy_cmd::TicketCommand),
    /// The spam and virus filter (headers and signatures only): check a file, evaluate.
    #[command(subcommand)]
    Filter(crate::filter_cmd::FilterCommand),
    /// Quarantined mail: list it, release it (as not spam, teaching the filter).
    #[command(subcommand)]
    Quarantine(crate::learn_cmd::QuarantineCommand),
    /// Retention: delete what the policy says is due.
    #[command(subcommand)]
    Retention(crate::privacy_cmd::RetentionCommand),
    /// The master key: check that it opens every data key, rotate it.
    #[command(subcommand)]
    Keys(crate::keys_cmd::KeysCommand),
    /// Counts of what the store holds.
    Stats(JsonFlag),
    /// Leave nothing deleted (erased, expired) in the database files: on PostgreSQL a
    /// rewrite that locks each table while it is copied (run it in a quiet hour); SQLite
    /// overwrites deleted data as it deletes, and only its write-ahead log is truncated.
    Compact(JsonFlag),
    /// Benchmarks and their data generator.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Maildir, mbox file, single message, or directory searched recursively.
    pub path: PathBuf,
    /// Read the source from its beginning, not from where the last import stopped (mail
    /// already stored counts as duplicates): to take messages refused earlier, e.g. after
    /// raising ingest.max_message_bytes.
    #[arg(long)]
    pub restart: bool,
    /// Print a JSON summary.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Words, "phrases", from:, to:, subject:, status:, ticket:, tag:, before:, after:,
    /// has:attachment, -excluded.
    pub query: String,
    /// Maximum number of hits.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    /// Print a JSON array of hits.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Write a deterministic synthetic mailbox (and a customers CSV beside it).
    Gen(GenArgs),
    /// Measure search latency over the current data dir (and PostgreSQL full-text search
    /// over the same messages, with --pg).
    Search(BenchSearchArgs),
    /// Measure a retention run and a customer erasure on the current data dir (which it
    /// changes: use a scratch copy). Makes contacts customers so that --due-percent of the
    /// messages are due, runs retention, then erases a customer with --erase-messages.
    Retention(BenchRetentionArgs),
}

#[derive(Debug, Args)]
pub struct BenchRetentionArgs {
    /// Share of the messages that becomes due (former customers since 2000).
    #[arg(long, default_value_t = 10.0)]
    pub due_percent: f64,
    /// Messages of the customer whose erasure is timed (0: skip).
    #[arg(long, default_value_t = 10_000)]
    pub erase_messages: u64,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum GenFormat {
    Maildir,
    Mbox,
}

#[derive(Debug, Args)]
pub struct GenArgs {
    #[arg(long)]
    pub messages: u64,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output: a Maildir directory, or an mbox file.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = GenFormat::Maildir)]
    pub format: GenFormat,
}

#[derive(Debug, Args)]
pub struct BenchSearchArgs {
    /// Runs of each query.
    #[arg(long, default_value_t = 200)]
    pub iterations: usize,
    /// Also load the messages into this PostgreSQL database and time the same queries
    /// with to_tsvector + GIN (the database is modified: a table `bench_fts` is created).
    #[arg(long)]
    pub pg: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}
