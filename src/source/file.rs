//! File source: JSON lines of Samsara webhook bodies (`.json`, `.jsonl`,
//! `.ndjson`), and X12 interchanges (`.x12`, `.edi`, one interchange per file).
//! Directories are read one level deep, in name order.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use async_trait::async_trait;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Source;
use crate::model::{Format, Origin, RawEvent};

pub struct FileSource {
    files: Vec<(PathBuf, Format)>,
}

fn format_of(path: &Path) -> Option<Format> {
    match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
        "json" | "jsonl" | "ndjson" => Some(Format::Samsara),
        "x12" | "edi" => Some(Format::Edi),
        _ => None,
    }
}

impl FileSource {
    /// Checks every path up front so a typo fails at start, not half-way.
    pub fn new(paths: &[PathBuf]) -> anyhow::Result<Self> {
        if paths.is_empty() {
            bail!("source.paths is empty: name at least one file or directory");
        }
        let mut files = Vec::new();
        for p in paths {
            let meta =
                std::fs::metadata(p).with_context(|| format!("source.paths: cannot read {}", p.display()))?;
            if meta.is_dir() {
                let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
                    .with_context(|| format!("source.paths: cannot list {}", p.display()))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|e| e.is_file())
                    .collect();
                entries.sort();
                files.extend(entries.into_iter().filter_map(|e| format_of(&e).map(|f| (e, f))));
            } else {
                let f = format_of(p).with_context(|| {
                    format!(
                        "source.paths: {} is neither JSON lines (.json/.jsonl/.ndjson) nor X12 (.x12/.edi)",
                        p.display()
                    )
                })?;
                files.push((p.clone(), f));
            }
        }
        if files.is_empty() {
            bail!("source.paths holds no .json/.jsonl/.ndjson/.x12/.edi files");
        }
        Ok(FileSource { files })
    }
}

fn event(path: &Path, format: Format, offset: i64, payload: Vec<u8>) -> RawEvent {
    let origin = Origin { topic: format!("file:{}", path.display()), partition: 0, offset };
    RawEvent::new(format, origin, None, payload)
}

#[async_trait]
impl Source for FileSource {
    async fn run(
        self: Box<Self>,
        tx: mpsc::Sender<RawEvent>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<u64> {
        let mut sent = 0u64;
        for (path, format) in &self.files {
            let bytes = tokio::fs::read(path).await.with_context(|| format!("reading {}", path.display()))?;
            let events: Vec<RawEvent> = match format {
                Format::Edi => vec![event(path, *format, 0, bytes)],
                // JSON Lines: one event per line.
                _ => bytes
                    .split(|b| *b == b'\n')
                    .enumerate()
                    .filter(|(_, line)| !line.iter().all(u8::is_ascii_whitespace))
                    .map(|(i, line)| event(path, *format, i as i64, line.to_vec()))
                    .collect(),
            };
            for e in events {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(sent),
                    r = tx.send(e) => if r.is_err() { return Ok(sent) },
                }
                sent += 1;
            }
        }
        Ok(sent)
    }
}
