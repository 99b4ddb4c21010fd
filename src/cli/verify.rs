//! `apex-ingest verify`: every record id in every configured store.

use crate::app;
use crate::config::Config;

pub async fn verify(
    config: Option<&std::path::Path>,
    window: Option<(chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>)>,
) -> anyhow::Result<()> {
    let config = Config::load(config)?;
    let stores = app::open_stores(&config).await?;
    let diff = crate::verify::reconcile(&stores, window, &crate::verify::Expectations::of(&config)).await?;
    println!("checked {} record ids", diff.checked);
    if diff.states_checked > 0 {
        println!(
            "checked {} vehicle states (graph.state_kinds: the graph against each newest ping)",
            diff.states_checked
        );
    }
    for store in &diff.skipped {
        println!("  {store:<12} not checked: in-process, empty in a new process by design");
    }
    for (store, missing) in &diff.missing {
        println!("  {store:<12} missing {}", missing.len());
        for id in missing.iter().take(20) {
            println!("    {id}");
        }
        if missing.len() > 20 {
            println!("    ... and {} more", missing.len() - 20);
        }
    }
    anyhow::ensure!(diff.is_clean(), "stores differ");
    println!("no differences");
    Ok(())
}
