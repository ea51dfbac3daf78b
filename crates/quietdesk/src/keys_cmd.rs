//! `quietdesk keys check|rotate`: the master key that seals every per-person data key.
//!
//! Rotation re-seals the data keys under a new master key in one transaction. Backups
//! taken before it still open only with the old key; retiring the old key once those
//! backups age out is what makes an erasure reach them (their copies of erased people's
//! data keys can no longer be opened by anyone).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use qd_store::{KeyReport, MasterKey, Store};
use serde::Serialize;

use crate::commands::{open_store, write_secret};
use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Open every data key with the configured master key, changing nothing.
    Check(CheckArgs),
    /// Re-seal every data key under a new master key (one transaction).
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Also open every stored raw mail (slow on a large store: it reads them all) and
    /// name the messages whose mail does not open; exits 1 when there are any.
    #[arg(long)]
    pub blobs: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// File with the new key (64 hex digits); created (mode 0600) with a random key when
    /// absent. Required when the current key comes from QUIETDESK_MASTER_KEY. Without it,
    /// the current key file is replaced and the old key kept beside it as
    /// `<file>.retired-<time>` — move that out of the data dir to where the old backups
    /// are, and delete it when they expire.
    #[arg(long)]
    pub new_key_file: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// Where the master key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    Env,
    File(PathBuf),
}

impl KeySource {
    pub fn of(settings: &Settings) -> KeySource {
        if settings.master_key_hex.is_some() {
            return KeySource::Env;
        }
        KeySource::File(
            settings
                .master_key_file
                .clone()
                .unwrap_or_else(|| settings.data_dir.join("master.key")),
        )
    }
}

/// The file a rotation writes the new key to before the database commits; its presence
/// at start-up means a rotation was interrupted (see [`finish_interrupted_rotation`]).
pub fn pending_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".new");
    PathBuf::from(name)
}

#[derive(Debug, Serialize)]
struct Report {
    live_keys: u64,
    destroyed_keys: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    new_key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retired_key_file: Option<PathBuf>,
}

pub async fn run(settings: &Settings, cmd: KeysCommand) -> Result<ExitCode> {
    match cmd {
        KeysCommand::Check(args) => {
            let store = open_store(settings).await?;
            let r = store
                .check_master_key()
                .await
                .context("the configured master key does not open every data key")?;
            let blobs = if args.blobs {
                // Reading every raw mail takes a while (47 s for a million messages).
                let bar = if !args.json && std::io::stderr().is_terminal() {
                    indicatif::ProgressBar::new(store.stats().await?.blobs)
                        .with_style(crate::commands::bar_style("raw mails"))
                } else {
                    indicatif::ProgressBar::hidden()
                };
                let report = store.check_blobs(&mut |n| bar.inc(n)).await;
                bar.finish_and_clear();
                Some(report?)
            } else {
                None
            };
            store.close().await?;
            match blobs {
                Some(b) => print_blobs(&report(r, None, None), &b, args.json),
                None => print(&report(r, None, None), args.json, "opens"),
            }
        }
        KeysCommand::Rotate(args) => rotate(settings, &args).await,
    }
}

async fn rotate(settings: &Settings, args: &RotateArgs) -> Result<ExitCode> {
    let source = KeySource::of(settings);
    let store = open_store(settings).await?;
    // Where the new key goes, and whether the current key file is replaced afterwards.
    let (new_path, replace) = match (&args.new_key_file, &source) {
        (Some(p), _) => (p.clone(), None),
        (None, KeySource::File(current)) => (pending_path(current), Some(current.clone())),
        (None, KeySource::Env) => bail!(
            "the master key comes from QUIETDESK_MASTER_KEY: give --new-key-file FILE, then \
             set QUIETDESK_MASTER_KEY (or privacy.master_key_file) to the new key"
        ),
    };
    if let KeySource::File(current) = &source {
        if same_file(current, &new_path) {
            bail!("--new-key-file is the current key file; give a new path");
        }
    }
    let new = load_or_create(&new_path)?;
    let (store, r) = store.rotate_master_key(new).await.with_context(|| {
        format!(
            "rotation failed and changed nothing; {} holds the unused new key",
            new_path.display()
        )
    })?;
    store.close().await?;
    let retired = match replace {
        Some(current) => Some(swap_in(&current, &new_path)?),
        None => None,
    };
    let shown = if retired.is_some() {
        None
    } else {
        Some(new_path)
    };
    print(&report(r, shown, retired), args.json, "re-sealed")
}

fn report(
    r: KeyReport,
    new_key_file: Option<PathBuf>,
    retired_key_file: Option<PathBuf>,
) -> Report {
    Report {
        live_keys: r.live,
        destroyed_keys: r.destroyed,
        new_key_file,
        retired_key_file,
    }
}

/// `keys check --blobs`: the keys, then every raw mail; exit 1 when any does not open.
fn print_blobs(keys: &Report, b: &qd_store::BlobReport, json: bool) -> Result<ExitCode> {
    let code = if b.unreadable_count == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if json {
        let mut v = serde_json::to_value(keys)?;
        v["blobs_opened"] = b.opened.into();
        v["blobs_unreadable"] = b.unreadable_count.into();
        v["unreadable"] = serde_json::to_value(&b.unreadable)?;
        out!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(code);
    }
    print(keys, false, "opens")?;
    out!(
        "{} stored mails open, {} do not",
        b.opened,
        b.unreadable_count
    );
    for u in &b.unreadable {
        out!(
            "  blob {} ({}), messages {:?}: {}",
            u.blob_id,
            u.scope,
            u.message_ids,
            u.reason
        );
    }
    if b.unreadable_count > b.unreadable.len() as u64 {
        out!(
            "  … and {} more",
            b.unreadable_count - b.unreadable.len() as u64
        );
    }
    Ok(code)
}

fn print(r: &Report, json: bool, verb: &str) -> Result<ExitCode> {
    if json {
        out!("{}", serde_json::to_string_pretty(r)?);
        return Ok(ExitCode::SUCCESS);
    }
    out!(
        "master key {verb} {} data keys ({} destroyed by erasure)",
        r.live_keys,
        r.destroyed_keys
    );
    if let Some(p) = &r.new_key_file {
        out!(
            "the new master key is in {}: point privacy.master_key_file or \
             QUIETDESK_MASTER_KEY at it now",
            p.display()
        );
    }
    if let Some(p) = &r.retired_key_file {
        out!(
            "the old master key is in {}: move it out of the data dir to where the backups \
             made before now are kept, and delete it when they expire",
            p.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn load_or_create(path: &Path) -> Result<MasterKey> {
    match std::fs::read_to_string(path) {
        Ok(text) => MasterKey::parse_hex(&text).with_context(|| format!("{}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = MasterKey::generate();
            write_secret(path, key.to_hex().as_bytes())
                .with_context(|| format!("writing the new key to {}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// After the database committed: the old key file becomes `<file>.retired-<time>` and
/// the pending new key takes its name (two renames in one directory).
fn swap_in(current: &Path, pending: &Path) -> Result<PathBuf> {
    let mut name = current.as_os_str().to_owned();
    name.push(format!(
        ".retired-{}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ")
    ));
    let retired = PathBuf::from(name);
    std::fs::rename(current, &retired)
        .with_context(|| format!("retiring {}", current.display()))?;
    std::fs::rename(pending, current)
        .with_context(|| format!("moving {} to {}", pending.display(), current.display()))?;
    Ok(retired)
}

/// Start-up check for a rotation that stopped between the database commit and the file
/// swap (or before the commit): whichever key opens the data keys is the current one.
/// Returns the key to use.
pub async fn finish_interrupted_rotation(
    store: &Store,
    current: &Path,
    current_key: MasterKey,
) -> Result<MasterKey> {
    let pending = pending_path(current);
    let Ok(text) = std::fs::read_to_string(&pending) else {
        return Ok(current_key);
    };
    let new_key = MasterKey::parse_hex(&text).with_context(|| format!("{}", pending.display()))?;
    if opens(store, &current_key).await {
        // The rotation never committed: the pending key was never used.
        std::fs::remove_file(&pending)
            .with_context(|| format!("removing unused {}", pending.display()))?;
        tracing::warn!(file = %pending.display(), "an interrupted key rotation changed nothing; removed its unused new key");
        return Ok(current_key);
    }
    if opens(store, &new_key).await {
        let retired = swap_in(current, &pending)?;
        tracing::warn!(retired = %retired.display(), "finished an interrupted key rotation");
        return Ok(new_key);
    }
    bail!(
        "neither {} nor {} opens the data keys: restore the right master key",
        current.display(),
        pending.display()
    )
}

/// Whether `key` opens every live data key of `store`.
async fn opens(store: &Store, key: &MasterKey) -> bool {
    store
        .clone()
        .with_master_key(key.clone())
        .check_master_key()
        .await
        .is_ok()
}
