//! `exposure-client`: parses the command line and hands it to the library
//! (`commands::execute`). Exit statuses: 0 done, 1 refused by the server or failed, 64 bad usage
//! or a bad file.

use std::process::ExitCode;

use clap::Parser as _;
use exposure_client::credential::TOKEN_ENV;
use exposure_client::{Cli, ExitStatus, execute};

#[tokio::main(flavor = "current_thread")]
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
    let env_token = std::env::var(TOKEN_ENV).ok();
    let status = execute(
        &cli,
        env_token,
        &mut std::io::stdout(),
        &mut std::io::stderr(),
    )
    .await;
    ExitCode::from(status.code())
}
