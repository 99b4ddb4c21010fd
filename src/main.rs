//! The `apex-ingest` command line: parses the arguments and dispatches to the
//! command's own module in `src/cli/`.

use std::process::ExitCode;

use clap::Parser;

use apex_ingest::cli::{Cli, dispatch};

#[tokio::main]
async fn main() -> ExitCode {
    dispatch(Cli::parse()).await
}
