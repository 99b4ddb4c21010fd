//! The `apex-ingest` command line: parses the arguments and dispatches to the
//! command's own module in `src/cli/`.

use std::process::ExitCode;

use clap::Parser;

use apex_ingest::cli::{Cli, dispatch};

/// mimalloc, not glibc's malloc: allocating and freeing records took a third
/// of a member's CPU under load (load/results/, the end-to-end file, "Where the
/// time goes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    dispatch(Cli::parse()).await
}
