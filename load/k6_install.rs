//! k6 for the load runs that drive an HTTP API with it: installed once by
//! `load/k6/install` (pinned, from the Go module proxy). Included by each such
//! load example with `#[path]`.

use std::process::Command;

use anyhow::Context;

/// The path of the k6 binary, installing it first if needed.
pub fn k6() -> anyhow::Result<String> {
    let repo = env!("CARGO_MANIFEST_DIR");
    let out = Command::new(format!("{repo}/load/k6/install")).output().context("running load/k6/install")?;
    anyhow::ensure!(out.status.success(), "load/k6/install failed: {}", String::from_utf8_lossy(&out.stderr));
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}
