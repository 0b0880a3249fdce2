//! `exposure-loadtest`: parses the command line and hands it to the library (`cli::execute`).
//! Exit statuses: 0 success, 1 failure, 2 SLO breached, 64 bad usage.

use std::process::ExitCode;

use clap::Parser as _;
use exposure_loadtest::{Cli, ExitStatus, execute};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // Help and version go to stdout with status 0; mistakes to stderr with 64.
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(ExitStatus::Usage.code())
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match execute(cli).await {
        Ok(status) => ExitCode::from(status.code()),
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}
