//! `apex-ingest top` in a real terminal: tmux (80×24) runs it against a member
//! consuming while events are produced, and beside an address where nothing
//! listens. The screen is read with capture-pane (text, and with -e its colours),
//! `q` is sent with send-keys, and the pane must end with top's exit status 0.

use std::process::Command;
use std::time::{Duration, Instant};

use apex_ingest::model::Format;

use crate::members::*;
use crate::support::kafka_brokers;
use crate::world::*;

/// A tmux server of the test's own (its socket name), killed when dropped.
struct Tmux(String);

impl Tmux {
    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").arg("-L").arg(&self.0).args(args).output().expect(
            "tmux runs (scripts/services installs it with the other Debian packages: scripts/services up)",
        );
        assert!(out.status.success(), "tmux {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "top"])
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux").arg("-L").arg(&self.0).arg("kill-server").status();
    }
}

/// The number before `/s` that follows `label` on the screen (`in 150/s` → 150).
fn rate(screen: &str, label: &str) -> Option<f64> {
    let rest = &screen[screen.find(label)? + label.len()..];
    let figure = &rest[..rest.find("/s")?];
    let scale = if figure.ends_with('k') { 1e3 } else { 1.0 };
    figure.trim_end_matches('k').parse::<f64>().ok().map(|v| v * scale)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn top_shows_a_live_member_in_80_columns_and_quits_on_q() {
    let _serial = SERIAL.lock().await;
    let brokers = kafka_brokers();
    let names = create_topics(&brokers, 3, 1).await;
    let dir = tempfile::tempdir().unwrap();
    let mut member = Member::start(&brokers, &names, dir.path(), "max_events = 100\nmax_wait = \"1s\"");
    wait_ready(&member).await;
    // Events keep coming while top watches, poison among them (dead letters by reason).
    let producing = {
        let (brokers, topic) = (brokers.clone(), names.samsara.clone());
        tokio::spawn(async move {
            for seed in 0.. {
                produce_to(&brokers, &topic, Format::Samsara, 200, 0.05, seed).await;
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
    };

    let tmux = Tmux(format!("apex-top-{}", std::process::id()));
    // An idle shell first, so remain-on-exit is set before top starts and
    // what it leaves on the screen stays readable.
    tmux.run(&["new-session", "-d", "-s", "top", "-x", "80", "-y", "24", "sleep 600"]);
    tmux.run(&["set-option", "-t", "top", "remain-on-exit", "on"]);
    let member_url = format!("member={}/metrics", member.metrics);
    let exit_file = dir.path().join("top.exit");
    let command = format!(
        "{} top {member_url} worker=127.0.0.1:1 --every 1s; echo $? > {}",
        env!("CARGO_BIN_EXE_apex-ingest"),
        exit_file.display()
    );
    tmux.run(&["respawn-pane", "-k", "-t", "top", &command]);

    let started = Instant::now();
    let screen = loop {
        let screen = tmux.screen();
        let flowing = rate(&screen, "│in ").is_some_and(|r| r > 0.0) && screen.contains("dead letters");
        if flowing && screen.contains("unreachable") {
            break screen;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "top never showed the member's flow:\n{screen}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!("{screen}");
    assert!(screen.lines().all(|l| l.chars().count() <= 80), "wider than the pane:\n{screen}");
    for expected in [
        "apex-ingest top  2 components  every 1s",
        &format!(" member {}/metrics ", member.metrics),
        "lag ",
        "paused 0/4",
        "store           p50      p99   written   retries  breaker",
        "relational",
        "graph",
        "closed",
        "dead letters",
        " worker http://127.0.0.1:1/metrics ",
        "unreachable: cannot connect",
    ] {
        assert!(screen.contains(expected), "{expected:?} not on the screen:\n{screen}");
    }
    // The unreachable component is red: the last foreground colour set before
    // its text (tmux writes red as SGR 31 or 38;5;1) is not reset before it.
    let coloured = tmux.run(&["capture-pane", "-p", "-e", "-t", "top"]);
    let before = &coloured[..coloured.find("unreachable").unwrap()];
    let red = ["\u{1b}[31m", "\u{1b}[38;5;1m"].iter().filter_map(|sgr| before.rfind(sgr)).max();
    let reset = before.rfind("\u{1b}[39m");
    assert!(red.is_some() && red > reset, "not red:\n{coloured:?}");
    let row = |needle: &str| screen.lines().position(|l| l.contains(needle)).unwrap();
    assert!(row(" worker ") < row(" member "), "trouble first:\n{screen}");

    tmux.run(&["send-keys", "-t", "top", "q"]);
    // The shell records top's exit status itself: tmux reports a pane dead
    // when its terminal closes but has been seen to leave the status unset.
    let started = Instant::now();
    let status = loop {
        if let Ok(status) = std::fs::read_to_string(&exit_file) {
            break status;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "q did not quit:\n{}", tmux.screen());
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status.trim(), "0", "top ended badly:\n{}", tmux.screen());
    producing.abort();
    assert!(member.terminate().await.success(), "{}", member.logs());
}
