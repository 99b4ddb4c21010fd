//! `apex-ingest top`: a live terminal view of members, workers and edges, read
//! from their `/metrics` every interval. Nothing is kept but the scrape before,
//! so rates cover exactly the last interval.

pub mod panel;
pub mod scrape;
pub mod screen;

use std::time::Duration;

use anyhow::Context;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use tokio::sync::mpsc;

use panel::Panel;
use scrape::Snapshot;

/// A component to watch: the name shown and its `/metrics` URL.
pub struct Target {
    pub name: String,
    pub url: String,
}

enum Key {
    Quit,
    Redraw,
}

/// Reads the keyboard on a thread of its own (crossterm's reads block):
/// `q`, Esc and Ctrl-C quit; a resize redraws.
fn read_keys(keys: mpsc::Sender<Key>) {
    loop {
        let key = match event::poll(Duration::from_millis(200)) {
            Ok(false) if keys.is_closed() => return,
            Ok(false) => continue,
            Ok(true) => match event::read() {
                Ok(Event::Key(k)) if k.kind == KeyEventKind::Press => match k.code {
                    KeyCode::Char('q') | KeyCode::Esc => Key::Quit,
                    KeyCode::Char('c') if k.modifiers.contains(KeyModifiers::CONTROL) => Key::Quit,
                    _ => continue,
                },
                Ok(Event::Resize(..)) => Key::Redraw,
                Ok(_) => continue,
                Err(_) => Key::Quit,
            },
            Err(_) => Key::Quit,
        };
        let quit = matches!(key, Key::Quit);
        if keys.blocking_send(key).is_err() || quit {
            return;
        }
    }
}

/// Scrapes every target at once; each panel's rates come from its scrape before.
async fn scrape(
    client: &reqwest::Client,
    targets: &[Target],
    before: &mut [Option<Snapshot>],
    every: Duration,
) -> Vec<Panel> {
    let timeout = every.min(Duration::from_secs(2));
    let scrapes =
        futures::future::join_all(targets.iter().map(|t| scrape::fetch(client, &t.url, timeout))).await;
    targets
        .iter()
        .zip(scrapes)
        .zip(before.iter_mut())
        .map(|((target, scraped), before)| {
            let figures = match scraped {
                Ok(now) => {
                    let figures = panel::figures(&now, before.as_ref());
                    *before = Some(now);
                    Ok(figures)
                }
                Err(e) => {
                    *before = None;
                    Err(format!("{e:#}"))
                }
            };
            Panel { name: target.name.clone(), url: target.url.clone(), figures }
        })
        .collect()
}

/// Runs the view until `q`: scrapes every `every`, redraws after each scrape and resize.
pub async fn run(targets: Vec<Target>, every: Duration) -> anyhow::Result<()> {
    anyhow::ensure!(!targets.is_empty(), "nothing to watch: name a /metrics URL or a --config");
    let client = reqwest::Client::new();
    let mut before: Vec<Option<Snapshot>> = targets.iter().map(|_| None).collect();
    let mut terminal = ratatui::try_init().context("top needs a terminal (it draws on the screen)")?;
    let (keys_tx, mut keys) = mpsc::channel(8);
    std::thread::spawn(move || read_keys(keys_tx));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut panels = Vec::new();
    let result = loop {
        tokio::select! {
            _ = tick.tick() => panels = scrape(&client, &targets, &mut before, every).await,
            key = keys.recv() => match key {
                Some(Key::Redraw) => {}
                Some(Key::Quit) | None => break Ok(()),
            },
        }
        let clock = chrono::Local::now().format("%H:%M:%S").to_string();
        if let Err(e) = terminal.draw(|f| screen::draw(f, &panels, every, &clock)) {
            break Err(anyhow::Error::from(e).context("drawing the screen"));
        }
    };
    ratatui::restore();
    result
}
