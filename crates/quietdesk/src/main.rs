//! `quietdesk`: the one binary. Parses the command line and the configuration, wires the
//! library crates together, and maps their errors to exit codes and messages. Only this
//! crate reads the environment.

/// `println!` for command output. A reader that goes away (`quietdesk search … | head`)
/// ends the program quietly, as it ends other Unix tools, instead of a panic; any other
/// write error is reported and exits 1.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::write_stdout(format_args!($($arg)*))
    };
}

mod bench;
mod bench_retention;
mod cli;
mod commands;
mod config;
mod filter_cmd;
mod ingest_cmd;
mod keys_cmd;
mod learn_cmd;
mod privacy_cmd;

use std::process::ExitCode;

use clap::Parser;

// glibc's malloc spent ~15% of an import in locking and consolidation across the parse,
// store and index threads; mimalloc's per-thread heaps remove most of that. Built without
// transparent huge pages (`no_thp`): with them every page mimalloc took back from the OS
// came back as a zeroed 2 MiB page, and an import's peak RSS was 100-150 MB higher at the
// same speed (200k messages: 700-720 MB against 830-860 MB).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub(crate) fn write_stdout(line: std::fmt::Arguments<'_>) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    let written = stdout
        .write_fmt(line)
        .and_then(|()| stdout.write_all(b"\n"))
        .and_then(|()| stdout.flush());
    match written {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
        Err(e) => {
            eprintln!("error: writing to standard output: {e}");
            std::process::exit(1);
        }
    }
}

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let env: Vec<(String, String)> = std::env::vars().collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("quietdesk")
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(commands::run(cli, env)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", report(&e));
            ExitCode::from(1)
        }
    }
}

/// The error and its causes, outermost first. A cause whose text the message already
/// holds is left out: sea-orm and sqlx print their source inside their own message and
/// also return it as the source, so `{:#}` said the same thing three times.
fn report(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::report;

    #[derive(Debug, thiserror::Error)]
    #[error("query failed: {0}")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("connection reset")]
    struct Inner;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        let e = anyhow::Error::new(Outer(Inner)).context("import of /tmp/mail stopped");
        assert_eq!(
            format!("{e:#}"),
            "import of /tmp/mail stopped: query failed: connection reset: connection reset"
        );
        assert_eq!(
            report(&e),
            "import of /tmp/mail stopped: query failed: connection reset"
        );
    }

    #[test]
    fn a_cause_with_new_words_is_kept() {
        let e = anyhow::Error::new(Inner).context("reading the mailbox");
        assert_eq!(report(&e), "reading the mailbox: connection reset");
    }
}
