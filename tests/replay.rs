//! The workflow code of this commit against histories of real runs: a change
//! that would break workflows already running (a command added, removed or
//! reordered) fails here, before it reaches a worker. The histories
//! (`tests/fixtures/histories/*.json`) were recorded from the suite's own runs
//! on the Temporal dev server by `scripts/record-histories`: the batch
//! workflow, a child of each kind of steps, a polling run begun by
//! continue-as-new, query workflows (two parts at once, a cached answer) and
//! the dwell analysis (completed, and cancelled midway). Replay needs no server.
//!
//! A deliberate change to a workflow goes behind `ctx.patched(id)`: the last
//! test shows one change failing replay without it and passing with it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use apex_ingest::orchestrate::temporal::BatchIngestWorkflow;
use apex_ingest::orchestrate::temporal::codec::data_converter;
use apex_ingest::orchestrate::temporal::workflows::IngestEventsWorkflow;
use apex_ingest::poll::workflow::PollingWorkflow;
use apex_ingest::query::workflow::{ComplexQueryWorkflow, QueryWorkflow};
use temporalio_client::WorkflowHistory;
use temporalio_common::protos::temporal::api::history::v1::History;
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_sdk::workflow_replayer::{
    WorkflowReplayError, WorkflowReplayFailure, WorkflowReplayer, WorkflowReplayerOptions,
};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/histories")
}

/// Every recorded history: its file name, workflow type and events.
fn recorded() -> Vec<(String, String, History)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(fixtures()).expect("tests/fixtures/histories (scripts/record-histories)") {
        let path = entry.unwrap().path();
        let history: History = serde_json::from_slice(&std::fs::read(&path).unwrap())
            .unwrap_or_else(|e| panic!("{} is not a history: {e}", path.display()));
        let workflow_type = match history.events.first().and_then(|e| e.attributes.as_ref()) {
            Some(Attributes::WorkflowExecutionStartedEventAttributes(a)) => {
                a.workflow_type.as_ref().map(|t| t.name.clone()).unwrap_or_default()
            }
            _ => panic!("{} does not begin with WorkflowExecutionStarted", path.display()),
        };
        out.push((path.file_name().unwrap().to_string_lossy().into_owned(), workflow_type, history));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// What the workers replay with: every workflow they register, and the codec
/// that compressed the recorded payloads.
fn replayer(with: impl FnOnce(&mut WorkflowReplayerOptions)) -> WorkflowReplayer {
    let mut options = WorkflowReplayerOptions::new().data_converter(data_converter(true)).build();
    with(&mut options);
    WorkflowReplayer::new(options).unwrap()
}

fn the_project_s_workflows(options: &mut WorkflowReplayerOptions) {
    options.register_workflow::<BatchIngestWorkflow>().unwrap();
    options.register_workflow::<IngestEventsWorkflow>().unwrap();
    options.register_workflow::<PollingWorkflow>().unwrap();
    options.register_workflow::<QueryWorkflow>().unwrap();
    options.register_workflow::<ComplexQueryWorkflow>().unwrap();
}

#[tokio::test]
async fn every_recorded_history_replays_against_this_commit_s_workflows() {
    let recorded = recorded();
    let types: BTreeSet<&str> = recorded.iter().map(|(_, t, _)| t.as_str()).collect();
    let expected = [
        "BatchIngestWorkflow",
        "ComplexQueryWorkflow",
        "IngestEventsWorkflow",
        "PollingWorkflow",
        "QueryWorkflow",
    ];
    assert_eq!(types, BTreeSet::from(expected), "a workflow type has no recorded history");
    for (name, _, history) in &recorded {
        assert!(history.events.len() >= 5, "{name} holds {} events: not a real run", history.events.len());
    }
    let replayer = replayer(the_project_s_workflows);
    let results = replayer
        .replay_workflows(recorded.iter().map(|(_, _, h)| WorkflowHistory::from(h.clone())))
        .await
        .expect("the replay worker runs");
    let failures: Vec<String> = recorded
        .iter()
        .zip(&results)
        .filter_map(|((name, _, _), r)| r.replay_failure.as_ref().map(|f| format!("{name}: {f}")))
        .collect();
    assert!(failures.is_empty(), "workflow code no longer replays its histories:\n{}", failures.join("\n"));
}

/// Changed workflows of the child's type, as a later commit might write them.
mod changed {
    use apex_ingest::orchestrate::temporal::activities::{IngestActivities, Processed};
    use apex_ingest::orchestrate::temporal::workflows::ChildInput;
    use temporalio_macros::{workflow, workflow_methods};
    use temporalio_sdk::{ActivityOptions, WorkflowContext, WorkflowResult};

    fn options() -> ActivityOptions {
        ActivityOptions::with_start_to_close_timeout(std::time::Duration::from_secs(60)).build()
    }

    /// Parses first, then processes: an activity the recorded run never scheduled.
    #[workflow]
    #[derive(Default)]
    pub struct ParseFirst;

    #[workflow_methods]
    impl ParseFirst {
        #[run(name = "IngestEventsWorkflow")]
        pub async fn run(ctx: &mut WorkflowContext<Self>, input: ChildInput) -> WorkflowResult<Processed> {
            ctx.execute_activity(IngestActivities::parse, input.events.clone(), options()).await?;
            Ok(ctx.execute_activity(IngestActivities::process, input.events, options()).await?)
        }
    }

    /// The same change behind a patch: a history recorded before it replays the old way.
    #[workflow]
    #[derive(Default)]
    pub struct ParseFirstPatched;

    #[workflow_methods]
    impl ParseFirstPatched {
        #[run(name = "IngestEventsWorkflow")]
        pub async fn run(ctx: &mut WorkflowContext<Self>, input: ChildInput) -> WorkflowResult<Processed> {
            if ctx.patched("parse-before-process") {
                ctx.execute_activity(IngestActivities::parse, input.events.clone(), options()).await?;
            }
            Ok(ctx.execute_activity(IngestActivities::process, input.events, options()).await?)
        }
    }
}

#[tokio::test]
async fn a_changed_child_fails_replay_and_the_same_change_behind_patched_replays() {
    // The child whose steps are one `process` activity.
    let history = recorded()
        .into_iter()
        .find(|(name, _, _)| name == "child-combined.json")
        .expect("tests/fixtures/histories/child-combined.json (scripts/record-histories)")
        .2;
    let unchanged = replayer(|o| {
        o.register_workflow::<IngestEventsWorkflow>().unwrap();
    });
    unchanged.replay_workflow(history.clone().into()).await.expect("the recorded child replays as it is");

    let changed = replayer(|o| {
        o.register_workflow::<changed::ParseFirst>().unwrap();
    });
    let failure = changed.replay_workflow(history.clone().into()).await.unwrap_err();
    assert!(
        matches!(failure, WorkflowReplayError::Replay(WorkflowReplayFailure::Nondeterminism { .. })),
        "the change is caught as nondeterminism: {failure}"
    );

    let patched = replayer(|o| {
        o.register_workflow::<changed::ParseFirstPatched>().unwrap();
    });
    patched.replay_workflow(history.into()).await.expect("behind patched(), the old history replays");
}
