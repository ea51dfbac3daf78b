//! `quietdesk`: the one binary. Parses the command line and the configuration, wires the
//! library crates together, and maps their errors to exit codes and messages. Only this
//! crate reads the environment.

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
// store and index threads; mimalloc's per-thread heaps remove most of that.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
