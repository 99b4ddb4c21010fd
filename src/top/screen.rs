//! Draws the panels: one bordered box per component, the troubled ones first,
//! each figure yellow or red when it is a sign of trouble. Every line fits 80
//! columns; what does not fit a narrower terminal is cut at the right.

use std::time::Duration;

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph};

use super::panel::{Figures, Health, Panel, Rate, StoreRow};

fn style(health: Health) -> Style {
    match health {
        Health::Ok => Style::default(),
        Health::Warn => Style::default().fg(Color::Yellow),
        Health::Bad => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
    }
}

/// 950, 12.3k, 4.56M: counts in at most 6 characters.
fn count(n: f64) -> String {
    // An empty sum is -0.0; shown as 0.
    let n = n + 0.0;
    match n.abs() {
        a if a >= 1e6 => format!("{:.2}M", n / 1e6),
        a if a >= 1e4 => format!("{:.1}k", n / 1e3),
        _ => format!("{n:.0}"),
    }
}

fn per_second(rate: Rate) -> String {
    rate.map_or_else(|| "…/s".to_owned(), |r| format!("{}/s", count(r)))
}

fn seconds(s: Option<f64>) -> String {
    match s {
        None => "-".to_owned(),
        Some(s) if s < 0.01 => format!("{:.1}ms", s * 1e3),
        Some(s) if s < 1.0 => format!("{:.0}ms", s * 1e3),
        Some(s) => format!("{s:.2}s"),
    }
}

fn breaker(state: f64) -> &'static str {
    match state {
        s if s >= 2.0 => "OPEN",
        s if s >= 1.0 => "half-open",
        _ => "closed",
    }
}

fn throughput(f: &Figures) -> Line<'static> {
    let mut spans = vec![
        Span::raw(format!("in {} ({})", per_second(f.events_in_per_s), count(f.events_in))),
        Span::raw(format!("  written {} ({})", per_second(f.written_per_s), count(f.written))),
        Span::raw(format!("  in flight {}", count(f.in_flight))),
    ];
    if let Some(stalled) = f.stalled_batches {
        let health = if stalled > 0.0 { Health::Bad } else { Health::Ok };
        spans.push(Span::styled(format!("  stalled {}", count(stalled)), style(health)));
    }
    Line::from(spans)
}

fn lag(f: &Figures) -> Line<'static> {
    let change: f64 = f.partitions.iter().map(|p| p.change).sum();
    let paused = f.paused();
    let mut spans = vec![
        Span::styled(format!("lag {} ({:+})", count(f.lag()), change), style(f.lag_health())),
        Span::styled(
            format!("  paused {paused}/{}", count(f.assigned)),
            style(if paused > 0 { Health::Warn } else { Health::Ok }),
        ),
        Span::raw(" "),
    ];
    for p in f.partitions.iter().filter(|p| p.lag > 0.0 || p.paused) {
        let health = if p.paused { Health::Warn } else { Health::Ok };
        spans.push(Span::styled(format!(" {} {}", p.name, count(p.lag)), style(health)));
    }
    Line::from(spans)
}

const STORE_HEADER: &str = "store           p50      p99   written   retries  breaker";

fn store(row: &StoreRow) -> Line<'static> {
    let text = format!(
        "{:<12}{:>8} {:>8} {:>9} {:>9}  {}",
        row.store,
        seconds(row.p50),
        seconds(row.p99),
        per_second(row.written_per_s),
        count(row.retries),
        breaker(row.breaker)
    );
    Line::styled(text, style(row.health()))
}

fn reasons(label: &str, list: &[super::panel::Reason], when_new: Health) -> Line<'static> {
    let mut spans = vec![Span::raw(format!("{label} {}:", count(list.iter().map(|r| r.total).sum())))];
    for r in list {
        let (text, health) = if r.new > 0.0 {
            (format!(" {} {} (+{})", r.reason, count(r.total), count(r.new)), when_new)
        } else {
            (format!(" {} {}", r.reason, count(r.total)), Health::Ok)
        };
        spans.push(Span::styled(text, style(health)));
    }
    Line::from(spans)
}

/// The lines of one reachable component; parts it does not have are left out.
fn lines(f: &Figures) -> Vec<Line<'static>> {
    let mut out = vec![throughput(f)];
    if f.assigned > 0.0 || !f.partitions.is_empty() {
        out.push(lag(f));
    }
    if !f.stores.is_empty() {
        out.push(Line::styled(STORE_HEADER, Style::default().add_modifier(Modifier::DIM)));
        out.extend(f.stores.iter().map(store));
    }
    if !f.dead_letters.is_empty() {
        out.push(reasons("dead letters", &f.dead_letters, f.dead_letter_health()));
    }
    if let Some((accepted, rate)) = f.edge_accepted {
        out.push(Line::raw(format!("webhooks accepted {} ({})", per_second(rate), count(accepted))));
        if !f.edge_rejected.is_empty() {
            out.push(reasons("rejected", &f.edge_rejected, Health::Warn));
        }
    }
    out
}

/// The whole screen: a title line, then the panels, worst health first.
pub fn draw(frame: &mut Frame, panels: &[Panel], every: Duration, clock: &str) {
    let mut order: Vec<&Panel> = panels.iter().collect();
    order.sort_by(|a, b| b.health().cmp(&a.health()).then_with(|| a.name.cmp(&b.name)));
    let boxes: Vec<(Vec<Line>, &Panel)> = order
        .into_iter()
        .map(|p| match &p.figures {
            Ok(f) => (lines(f), p),
            Err(why) => (vec![Line::styled(format!("unreachable: {why}"), style(Health::Bad))], p),
        })
        .collect();
    let heights = boxes.iter().map(|(l, _)| Constraint::Length(l.len() as u16 + 2));
    let rows = Layout::vertical(
        std::iter::once(Constraint::Length(1)).chain(heights).chain(std::iter::once(Constraint::Min(0))),
    )
    .split(frame.area());
    let title = format!(
        "apex-ingest top  {} component{}  every {}s  {clock}  q quits",
        panels.len(),
        if panels.len() == 1 { "" } else { "s" },
        every.as_secs_f64()
    );
    frame.render_widget(Paragraph::new(title).style(Style::default().add_modifier(Modifier::BOLD)), rows[0]);
    for ((lines, panel), area) in boxes.into_iter().zip(rows.iter().skip(1)) {
        let block = Block::bordered()
            .title(format!(" {} {} ", panel.name, panel.url))
            .border_style(style(panel.health()));
        frame.render_widget(Paragraph::new(lines).block(block), *area);
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::metrics::{BreakerState, Metrics};
    use crate::top::panel::figures;
    use crate::top::scrape::Snapshot;

    fn screen(panels: &[Panel], width: u16) -> (String, ratatui::buffer::Buffer) {
        let mut terminal = Terminal::new(TestBackend::new(width, 24)).unwrap();
        terminal.draw(|f| draw(f, panels, Duration::from_secs(2), "19:40:00")).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let text = (0..buffer.area.height)
            .map(|y| (0..buffer.area.width).map(|x| buffer[(x, y)].symbol()).collect::<String>())
            .collect::<Vec<_>>()
            .join("\n");
        (text, buffer)
    }

    /// A member with an open breaker, a paused partition and new dead letters,
    /// beside one that does not answer: both drawn in 80 columns, the trouble red.
    #[test]
    fn draws_a_member_and_an_unreachable_one_in_80_columns() {
        let m = Metrics::new();
        let t0 = Instant::now();
        m.saga.store_registered("relational");
        m.saga.store_registered("graph");
        let before = Snapshot::parse(&m.render(), t0).unwrap();
        (0..300).for_each(|_| m.source.event_in("samsara"));
        m.saga.store_written("relational", 300, Duration::from_millis(3));
        m.saga.store_written("graph", 280, Duration::from_millis(120));
        m.saga.breaker_state("graph", BreakerState::Open);
        m.saga.dead_lettered("invalid_json");
        m.source.kafka_assigned(2);
        m.source.kafka_partition("events.samsara", 0, None, None, Some(1200));
        m.source.kafka_paused("events.samsara", 0, true);
        let now = Snapshot::parse(&m.render(), t0 + Duration::from_secs(2)).unwrap();
        let quiet = Snapshot::parse(&Metrics::new().render(), t0).unwrap();
        let panel =
            |name: &str, figures| Panel { name: name.into(), url: format!("http://{name}/metrics"), figures };
        let panels = [
            panel("edge", Ok(figures(&quiet, None))),
            panel("worker", Err("cannot connect".into())),
            panel("member", Ok(figures(&now, Some(&before)))),
        ];
        let (text, buffer) = screen(&panels, 80);
        for expected in [
            "in 150/s (300)",
            "written 140/s (280)",
            "lag 1200 (+0)  paused 1/2  events.samsara/0 1200",
            "relational     3.0ms    4.0ms     150/s         0  closed",
            "in …/s (0)  written …/s (0)",
            "dead letters 1: invalid_json 1 (+1)",
            "unreachable: cannot connect",
        ] {
            assert!(text.contains(expected), "{expected:?} not on the screen:\n{text}");
        }
        // (column, row) of a text on the screen; the borders are multi-byte characters.
        let at = |needle: &str| {
            let (row, line) = text.lines().enumerate().find(|(_, l)| l.contains(needle)).unwrap();
            (line[..line.find(needle).unwrap()].chars().count() as u16, row as u16)
        };
        assert!(
            at(" member ").1 < at(" worker ").1 && at(" worker ").1 < at(" edge ").1,
            "trouble first:\n{text}"
        );
        assert_eq!(at("OPEN").1, at("graph ").1, "{text}");
        assert_eq!(buffer[at("OPEN")].fg, Color::Red);
        let relational = at("relational").1;
        assert_eq!(buffer[(3, relational)].fg, Color::Reset, "a healthy store is not coloured");
    }
}
