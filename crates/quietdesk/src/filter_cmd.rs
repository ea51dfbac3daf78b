//! `quietdesk filter check|eval`: the header-and-signature filter on a file or a labelled
//! directory.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use qd_filter::{Authenticator, EvalOptions, Filter, JudgeContext, MessageView};

use crate::config::Settings;

#[derive(Debug, Subcommand)]
pub enum FilterCommand {
    /// Judge one message file and explain the verdict (which rules fired).
    Check(CheckArgs),
    /// Measure accuracy on a directory with a MANIFEST.tsv (columns file, label).
    Eval(EvalArgs),
    /// Staff feedback: mark a stored message as spam or not spam (the filter learns it).
    Learn(crate::learn_cmd::LearnArgs),
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    pub file: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EvalArgs {
    pub dir: PathBuf,
    #[arg(long)]
    pub json: bool,
    /// TREC spam-track protocol: judge each message, then learn its true label.
    #[arg(long)]
    pub online: bool,
}

pub async fn run(settings: &Settings, cmd: FilterCommand) -> Result<ExitCode> {
    match cmd {
        FilterCommand::Learn(a) => return crate::learn_cmd::learn(settings, a).await,
        FilterCommand::Check(a) => {
            let raw =
                std::fs::read(&a.file).with_context(|| format!("reading {}", a.file.display()))?;
            let filter = Filter::new(settings.filter.clone())?;
            let view = MessageView::from_raw(&raw);
            // With `filter.dns.enabled`, SPF, DKIM, DMARC and ARC are checked live (an old
            // file's keys may be gone: its signatures then fail as they would today).
            let dns = &settings.filter.dns;
            let auth = if dns.enabled {
                let auth = Authenticator::new(dns).context("[filter.dns]")?;
                // The budget `serve` gives a message; past it, judged as without DNS.
                let budget = std::time::Duration::from_millis(dns.timeout_ms.saturating_mul(4));
                auth.authenticate_within(&raw, filter.connection(&view).as_ref(), budget)
                    .await
            } else {
                None
            };
            // Dates are judged against the message's own arrival, so an old file is not
            // "skewed" merely for being old.
            let mut ctx = JudgeContext::pinned_to(&view);
            if let Some(a) = &auth {
                ctx = ctx.with_auth(a);
            }
            let verdict = filter.judge(&view, &ctx);
            if a.json {
                out!("{}", serde_json::to_string_pretty(&verdict)?);
            } else {
                out!(
                    "{} (score {:.1})",
                    serde_json::to_value(verdict.class)?.as_str().unwrap_or("?"),
                    verdict.score
                );
                for t in &verdict.tags {
                    out!("  {:>6.1}  {}  {}", t.score, t.name, t.detail);
                }
            }
        }
        FilterCommand::Eval(a) => {
            let report = qd_filter::evaluate(
                &a.dir,
                &EvalOptions {
                    online: a.online,
                    settings: settings.filter.clone(),
                },
            )?;
            if a.json {
                out!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                out!(
                    "ham {} spam {} false_positives {} false_negatives {} fpr {:.4} recall {:.4} precision {:.4} msgs_per_sec {:.0}",
                    report.ham,
                    report.spam,
                    report.false_positives,
                    report.false_negatives,
                    report.fpr,
                    report.recall,
                    report.precision,
                    report.msgs_per_sec
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
