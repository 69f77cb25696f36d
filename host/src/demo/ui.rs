//! Drawing the demo with ratatui: where each panel goes for the terminal's size ([`plan`], pure),
//! and what each panel says.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Sparkline, Wrap};

use super::app::{App, Chapter, Entity, Health, World};
use crate::actions::ledger::{ActionStatus, Verification};
use crate::monitor::tickets::TicketStatus;

/// Below this width the panels stack in one column.
pub const MIN_WIDE: u16 = 60;
/// Rows the chapter panel keeps at least when other panels compete for room.
pub const STORY_ROWS: u16 = 9;

/// Where the panels go. A panel that does not fit is left out (`None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The title line.
    pub header: Rect,
    /// The cluster's entities, one line each.
    pub cluster: Option<Rect>,
    /// The workload sparkline.
    pub workload: Option<Rect>,
    /// The ticket list.
    pub tickets: Option<Rect>,
    /// One line in place of the three panels above, when they do not fit.
    pub strip: Option<Rect>,
    /// The chapter: what is happening and what to press.
    pub story: Rect,
    /// The audit stream.
    pub audit: Option<Rect>,
    /// The keys.
    pub keys: Rect,
}

/// Lays the screen out for `area`, with `cluster_lines` lines of cluster entities. The chapter
/// panel always stays; the cluster, workload and ticket panels fold into a one-line strip on a
/// narrow or short screen, and the audit stream gets what the chapter panel can spare.
pub fn plan(area: Rect, cluster_lines: u16) -> Plan {
    let [header, body, keys] =
        Layout::vertical([Constraint::Length(1), Constraint::Fill(1), Constraint::Length(1)]).areas(area);
    let top_rows = (cluster_lines + 2).max(8);
    if area.width >= MIN_WIDE && body.height >= top_rows + STORY_ROWS {
        let [top, rest] = Layout::vertical([Constraint::Length(top_rows), Constraint::Fill(1)]).areas(body);
        return finish(header, keys, Some(top), None, rest);
    }
    if body.height >= 3 {
        let [strip, rest] = Layout::vertical([Constraint::Length(1), Constraint::Fill(1)]).areas(body);
        return finish(header, keys, None, Some(strip), rest);
    }
    finish(header, keys, None, None, body)
}

fn finish(header: Rect, keys: Rect, top: Option<Rect>, strip: Option<Rect>, rest: Rect) -> Plan {
    // The audit stream takes what the chapter panel can spare, at most a third of the rest.
    let spare = rest.height.saturating_sub(STORY_ROWS);
    let audit_rows = if spare >= 3 { spare.min((rest.height / 3).max(4)) } else { 0 };
    let (story, audit) = if audit_rows > 0 {
        let [story, audit] = Layout::vertical([Constraint::Fill(1), Constraint::Length(audit_rows)]).areas(rest);
        (story, Some(audit))
    } else {
        (rest, None)
    };
    let (cluster, workload, tickets) = match top {
        Some(top) => {
            let cluster_width = (top.width * 9 / 20).clamp(40, 60);
            let [cluster, right] =
                Layout::horizontal([Constraint::Length(cluster_width), Constraint::Fill(1)]).areas(top);
            let [workload, tickets] = Layout::vertical([Constraint::Length(4), Constraint::Fill(1)]).areas(right);
            (Some(cluster), Some(workload), Some(tickets))
        }
        None => (None, None, None),
    };
    Plan { header, cluster, workload, tickets, strip, story, audit, keys }
}

/// Lines the cluster panel needs: one per entity with figures, one per kind of entities without.
pub fn cluster_lines(entities: &[Entity]) -> u16 {
    let with = entities.iter().filter(|e| !e.figures.is_empty()).count();
    let mut kinds: Vec<&str> = entities.iter().filter(|e| e.figures.is_empty()).map(|e| e.kind.as_str()).collect();
    kinds.dedup();
    (with + kinds.len()).max(1) as u16
}

fn health_style(health: Health) -> Style {
    match health {
        Health::Healthy => Style::new().fg(Color::Green),
        Health::Degraded => Style::new().fg(Color::Yellow),
        Health::Down => Style::new().fg(Color::Red).add_modifier(Modifier::BOLD),
        Health::Unknown => Style::new().fg(Color::DarkGray),
    }
}

fn dot(health: Health) -> Span<'static> {
    let symbol = match health {
        Health::Healthy => "●",
        Health::Degraded => "◐",
        Health::Down => "✖",
        Health::Unknown => "○",
    };
    Span::styled(symbol, health_style(health))
}

/// A figure as `name value[unit]`, whole numbers without decimals.
pub fn figure_text(name: &str, value: f64, unit: &str) -> String {
    let number =
        if value.fract() == 0.0 || value.abs() >= 100.0 { format!("{value:.0}") } else { format!("{value:.1}") };
    format!("{name} {number}{unit}")
}

/// Requests per second, short: `950`, `12.3k`, `4.1M`.
pub fn rate_text(value: u64) -> String {
    match value {
        0..1_000 => value.to_string(),
        1_000..1_000_000 => format!("{:.1}k", value as f64 / 1_000.0),
        _ => format!("{:.1}M", value as f64 / 1_000_000.0),
    }
}

/// Cuts `text` to `width` characters, marking the cut.
pub fn cut(text: &str, width: usize) -> String {
    crate::cli::fit(text, width)
}

/// The cluster panel's lines for `width` columns.
pub fn cluster_text(entities: &[Entity], width: usize) -> Vec<Line<'static>> {
    let mut lines = Vec::new();
    for e in entities.iter().filter(|e| !e.figures.is_empty()) {
        let head = format!(" {} {}", e.kind, e.id);
        let mut used = 1 + head.chars().count();
        let mut spans = vec![dot(e.health), Span::styled(head, health_style(e.health))];
        for (name, value, unit) in &e.figures {
            let text = format!(" {}", figure_text(name, *value, unit));
            if used + text.chars().count() > width {
                break;
            }
            used += text.chars().count();
            spans.push(Span::raw(text));
        }
        lines.push(Line::from(spans));
    }
    let mut kinds: Vec<&str> = entities.iter().filter(|e| e.figures.is_empty()).map(|e| e.kind.as_str()).collect();
    kinds.dedup();
    for kind in kinds {
        let mut spans = vec![Span::raw(format!(" {kind}"))];
        for e in entities.iter().filter(|e| e.figures.is_empty() && e.kind == kind) {
            spans.push(Span::raw(" "));
            spans.push(dot(e.health));
            let note =
                if e.note.is_empty() || e.note.chars().count() > 8 { String::new() } else { format!("({})", e.note) };
            spans.push(Span::styled(format!("{}{note}", e.id), health_style(e.health)));
        }
        lines.push(Line::from(spans));
    }
    lines
}

/// The strip that stands for the cluster, workload and ticket panels on a small screen.
pub fn strip_text(world: &World) -> Line<'static> {
    let mut spans = Vec::new();
    let mut kinds: Vec<&str> = world.entities.iter().map(|e| e.kind.as_str()).collect();
    kinds.dedup();
    for kind in kinds {
        spans.push(Span::raw(format!("{kind} ")));
        for e in world.entities.iter().filter(|e| e.kind == kind) {
            spans.push(dot(e.health));
        }
        spans.push(Span::raw("  "));
    }
    spans.push(Span::raw(format!(
        "{} ops/s  {} active ticket(s)",
        rate_text(world.ops.last().copied().unwrap_or(0)),
        world.active_tickets().count()
    )));
    Line::from(spans)
}

fn clock(ms: u64) -> String {
    let secs = ms / 1000;
    format!("{:02}:{:02}:{:02}", secs / 3600 % 24, secs / 60 % 60, secs % 60)
}

fn secs_between(from: u64, to: u64) -> String {
    format!("{:.1} s", to.saturating_sub(from) as f64 / 1000.0)
}

/// The header line.
pub fn header_text(app: &App, world: &World) -> Line<'static> {
    let chapter = app.chapter;
    let progress: String =
        Chapter::ALL.iter().map(|c| if c.number() <= chapter.number() { '▮' } else { '▯' }).collect();
    let sim = world.sim_secs;
    Line::from(vec![
        Span::styled(" Operator demo ", Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)),
        Span::raw(format!(" {}/9 {} ", chapter.number(), chapter.title())),
        Span::styled(progress, Style::new().fg(Color::Cyan)),
        Span::raw(format!(
            "  sim {}× {:02}:{:02}:{:02}  mode {}{}",
            world.speed,
            sim / 3600,
            sim / 60 % 60,
            sim % 60,
            world.mode,
            if world.kill_switch { " KILL SWITCH" } else { "" }
        )),
    ])
}

/// The keys line: what each key does now.
pub fn keys_text(app: &App, world: &World) -> Line<'static> {
    if let Some((notice, _)) = &app.notice {
        return Line::from(Span::styled(format!(" {notice}"), Style::new().fg(Color::Yellow)));
    }
    let awaiting = app.action(world).is_some_and(|a| a.awaits_approval());
    let next = if app.reached(app.chapter, world) { "space next · " } else { "" };
    let text = match app.chapter {
        Chapter::Healthy => " space fault menu · 1-9 0 - = inject S1-S12 · q quit".to_owned(),
        Chapter::Inject if app.countdown.is_some() => " esc call off · q quit".to_owned(),
        Chapter::Inject => " ↑↓ choose · enter inject · 1-9 0 - = pick S1-S12 · esc back · q quit".to_owned(),
        _ if awaiting => format!(" a APPROVE · r reject · {next}c clear fault · q quit"),
        Chapter::Recovery if app.reached(Chapter::Recovery, world) => " space new round · q quit".to_owned(),
        _ => format!(" {next}c clear the fault by hand · q quit"),
    };
    let style = if awaiting { Style::new().fg(Color::Black).bg(Color::Yellow) } else { Style::new() };
    Line::from(Span::styled(text, style))
}

/// The chapter panel's lines.
pub fn story_text(app: &App, world: &World, now_ms: u64) -> Vec<Line<'static>> {
    let bold = Style::new().add_modifier(Modifier::BOLD);
    let good = Style::new().fg(Color::Green);
    let wait = Style::new().fg(Color::Yellow);
    let mut out: Vec<Line<'static>> = Vec::new();
    let run = app.run.as_ref();
    let injected = run.and_then(|r| r.injected_at_ms);
    let ticket = app.ticket(world);
    let action = app.action(world);
    let diagnosis = ticket.and_then(|t| t.diagnoses.last()).map(|d| d.get("diagnosis").unwrap_or(d).clone());
    match app.chapter {
        Chapter::Healthy => {
            let mut kinds: Vec<(String, usize)> = Vec::new();
            for e in &world.entities {
                match kinds.iter_mut().find(|(k, _)| *k == e.kind) {
                    Some((_, n)) => *n += 1,
                    None => kinds.push((e.kind.clone(), 1)),
                }
            }
            let made_of: Vec<String> = kinds.iter().map(|(k, n)| format!("{n} × {k}")).collect();
            out.push(Line::from(format!(
                "A simulated cluster ({}) serves {} requests per second. The operator observes it every second \
                 through its subject plugin, a sandboxed WebAssembly component, and checks its invariants.",
                made_of.join(", "),
                rate_text(world.ops.last().copied().unwrap_or(0)),
            )));
            let active = world.active_tickets().count();
            out.push(if active == 0 {
                Line::styled("No active ticket: all invariants hold.", good)
            } else {
                Line::styled(format!("{active} active ticket(s) left from before."), wait)
            });
            out.push(Line::from("Press space for the fault menu, or a scenario's key to inject it."));
        }
        Chapter::Inject => {
            if let Some(c) = app.countdown {
                let s = &app.scenarios[c.scenario];
                let left = c.ends_ms.saturating_sub(now_ms).div_ceil(1000);
                out.push(Line::styled(format!("Injecting {} {} in {left}…", s.id, s.title), bold));
                out.push(Line::from(s.description.clone()));
            } else if let Some(s) = app.scenario() {
                out.push(Line::styled(format!("Injecting {} {}…", s.id, s.title), bold));
            } else {
                let half = app.scenarios.len().div_ceil(2);
                for row in 0..half {
                    let mut spans = Vec::new();
                    for i in [row, row + half] {
                        let Some(s) = app.scenarios.get(i) else { continue };
                        let text = format!("{} {:<4}{:<30}", s.key, s.id, cut(&s.title, 30));
                        let style = if i == app.selected {
                            Style::new().add_modifier(Modifier::REVERSED)
                        } else {
                            Style::new()
                        };
                        spans.push(Span::styled(text, style));
                        spans.push(Span::raw(" "));
                    }
                    out.push(Line::from(spans));
                }
                if let Some(s) = app.scenarios.get(app.selected) {
                    out.push(Line::from(format!("{}: {}", s.id, s.description)));
                }
            }
        }
        Chapter::Detection => {
            let (Some(s), Some(at)) = (app.scenario(), injected) else { return out };
            out.push(Line::from(format!(
                "{} {} injected at {} ({} ago).",
                s.id,
                s.title,
                clock(at),
                secs_between(at, now_ms)
            )));
            match ticket {
                Some(t) => {
                    out.push(Line::styled(
                        format!(
                            "✓ {} opened {} after the injection: {} on {} ({})",
                            t.id,
                            secs_between(
                                at,
                                run.and_then(|r| r.reached_at.get(&Chapter::Detection).copied()).unwrap_or(now_ms)
                            ),
                            t.invariant,
                            t.entity,
                            t.severity
                        ),
                        good,
                    ));
                    out.push(Line::from(t.message.clone()));
                }
                None => out.push(Line::styled(
                    "The monitor observes and checks every second; a violation must persist for its invariant's \
                     grace period (divided by the simulation's speed here) before a ticket opens…",
                    wait,
                )),
            }
        }
        Chapter::Diagnosis => match (&ticket, &diagnosis) {
            (Some(t), Some(d)) => {
                let by = t.diagnoses.last().and_then(|r| r.get("diagnoser")).and_then(|v| v.as_str()).unwrap_or("?");
                let confidence = d.get("confidence").and_then(|c| c.as_f64()).unwrap_or(0.0);
                out.push(Line::styled(
                    format!("{} — diagnosed by {by} ({:.0} % confident)", text(d, "summary"), confidence * 100.0),
                    bold,
                ));
                out.push(Line::from(format!("Root cause: {}", text(d, "root_cause"))));
                for alt in d.get("alternatives").and_then(|a| a.as_array()).into_iter().flatten() {
                    out.push(Line::from(format!("Weighed: {} — {}", text(alt, "hypothesis"), text(alt, "conclusion"))));
                }
                for e in d.get("evidence").and_then(|a| a.as_array()).into_iter().flatten().take(3) {
                    out.push(Line::from(format!("Evidence: {}", e.as_str().unwrap_or_default())));
                }
            }
            (Some(t), None) => out.push(Line::styled(format!("Diagnosing {}…", t.id), wait)),
            _ => {}
        },
        Chapter::Proposal | Chapter::Approval => {
            if app.nothing_proposed(world) {
                out.push(Line::styled("No action proposed.", bold));
                if let Some(d) = &diagnosis {
                    let why =
                        d.get("wait_reason").and_then(|w| w.as_str()).unwrap_or("the recommendations were refused");
                    out.push(Line::from(format!("The diagnosis says: {why}")));
                }
                out.push(Line::from("Press c to fix it by hand (clear the fault), as the engineer on call would."));
            } else if let Some(a) = action {
                let rec = diagnosis
                    .as_ref()
                    .and_then(|d| d.get("recommendations"))
                    .and_then(|r| r.as_array())
                    .and_then(|r| r.iter().find(|r| r.get("action").and_then(|n| n.as_str()) == Some(a.name.as_str())))
                    .cloned()
                    .unwrap_or_default();
                out.push(Line::styled(
                    format!(
                        "{} {} {} (risk {}), proposed by {}",
                        a.id,
                        a.name,
                        a.params_text(),
                        a.risk.as_str(),
                        a.proposed_by
                    ),
                    bold,
                ));
                out.push(Line::from(format!("Why: {}", text(&rec, "reason"))));
                out.push(Line::from(format!("Expected: {}", text(&rec, "expected_outcome"))));
                out.push(Line::from(format!("Risks: {}", text(&rec, "risks"))));
                if a.awaits_approval() {
                    out.push(Line::styled(
                        format!(
                            "{} awaits a human: every action needs approval in this demo. Press a to approve, r to reject.",
                            a.id
                        ),
                        wait,
                    ));
                } else if let Some(d) = &a.decision {
                    out.push(Line::from(format!(
                        "{} by {}: {}",
                        if d.approved { "Approved" } else { "Rejected" },
                        d.by,
                        d.reason
                    )));
                }
            } else {
                out.push(Line::styled("Turning the recommendation into a proposal…", wait));
            }
        }
        Chapter::Execution | Chapter::Verification => {
            let Some(a) = action else { return out };
            out.push(Line::styled(format!("{} {} {}: {}", a.id, a.name, a.params_text(), a.status.as_str()), bold));
            match a.status {
                ActionStatus::Ready | ActionStatus::Executing => out.push(Line::styled(
                    "The executor runs it once the safety gates allow (execute mode, kill switch off, a fresh \
                     observation, blast-radius limits)…",
                    wait,
                )),
                ActionStatus::RetryWait => out.push(Line::styled(
                    format!("A transient failure; retrying: {}", a.last_error.clone().unwrap_or_default()),
                    wait,
                )),
                ActionStatus::Completed => {
                    out.push(Line::styled(format!("✓ Executed: {}", a.outcome.clone().unwrap_or_default()), good))
                }
                other => out.push(Line::styled(
                    format!("{}: {}", other.as_str(), a.last_error.clone().unwrap_or_default()),
                    Style::new().fg(Color::Red),
                )),
            }
            // The request the action made, as the gate recorded it once answered.
            let requests = world.audit.iter().rev().filter(|l| l.kind == "capability" && l.text.contains(" → "));
            for line in requests.filter(|l| !l.text.contains(" GET ")).take(1) {
                out.push(Line::from(format!("Through the capability gate: {}", line.text)));
            }
            match a.verification.as_ref().filter(|_| app.chapter == Chapter::Verification) {
                Some(Verification::Pending(until)) => out.push(Line::styled(
                    format!("Verifying: the plugin re-checks fresh observations until {}…", clock(*until)),
                    wait,
                )),
                Some(Verification::Verified(message)) => out.push(Line::styled(format!("✓ Verified: {message}"), good)),
                Some(Verification::NotEffective(message)) => {
                    out.push(Line::styled(format!("✗ Not effective: {message}"), Style::new().fg(Color::Red)))
                }
                None => {}
            }
        }
        Chapter::Recovery => {
            match ticket {
                Some(t) if t.status == TicketStatus::Resolved => out.push(Line::styled(
                    format!("✓ {} resolved: {}", t.id, t.resolution.clone().unwrap_or_default()),
                    good,
                )),
                Some(t) => out.push(Line::styled(
                    format!(
                        "{} is {}: it resolves once the violation has stayed absent from complete observations for \
                         the settling time…",
                        t.id,
                        t.status.as_str()
                    ),
                    wait,
                )),
                None => out.push(Line::styled("No ticket was opened for this fault.", wait)),
            }
            if let (Some(run), Some(at)) = (run, injected) {
                let steps: Vec<String> = Chapter::ALL[2..]
                    .iter()
                    .filter_map(|c| run.reached_at.get(c).map(|t| format!("{} +{}", c.title(), secs_between(at, *t))))
                    .collect();
                out.push(Line::from(format!("Since the injection: {}", steps.join(" · "))));
                if run.cleared_by_hand {
                    out.push(Line::from("The fault was cleared by hand."));
                }
            }
            if app.reached(Chapter::Recovery, world) {
                out.push(Line::from("Press space for a new round (the simulator's faults are cleared first)."));
            }
        }
    }
    out
}

fn text(value: &serde_json::Value, key: &str) -> String {
    value.get(key).and_then(|v| v.as_str()).unwrap_or_default().to_owned()
}

/// The ticket panel's lines, newest first.
pub fn tickets_text(world: &World, width: usize) -> Vec<Line<'static>> {
    world
        .tickets
        .iter()
        .map(|t| {
            let style = match (t.status, t.severity.as_str()) {
                (TicketStatus::Resolved, _) => Style::new().fg(Color::DarkGray),
                (_, "critical") => Style::new().fg(Color::Red),
                _ => Style::new().fg(Color::Yellow),
            };
            let resolved = if t.status == TicketStatus::Resolved { " resolved" } else { "" };
            Line::styled(cut(&format!("{} {}@{}{resolved}", t.id, t.invariant, t.entity), width), style)
        })
        .collect()
}

/// Draws everything.
pub fn draw(frame: &mut Frame, app: &App, world: &World, now_ms: u64) {
    let plan = plan(frame.area(), cluster_lines(&world.entities));
    frame.render_widget(Paragraph::new(header_text(app, world)), plan.header);
    if let Some(area) = plan.cluster {
        let lines = cluster_text(&world.entities, area.width.saturating_sub(2) as usize);
        let title = match world.observed_at_ms {
            Some(at) => format!("Cluster (observed {})", clock(at)),
            None => "Cluster (not observed yet)".into(),
        };
        frame.render_widget(Paragraph::new(lines).block(Block::bordered().title(title)), area);
    }
    if let Some(area) = plan.workload {
        let now = world.ops.last().copied().unwrap_or(0);
        let width = area.width.saturating_sub(2) as usize;
        let data: Vec<u64> = world.ops.iter().rev().take(width).rev().copied().collect();
        // A fixed headroom above the highest sample keeps a steady load from filling the panel.
        let max = data.iter().copied().max().unwrap_or(0).saturating_mul(5) / 4;
        frame.render_widget(
            Sparkline::default()
                .block(Block::bordered().title(format!("Workload {} ops/s", rate_text(now))))
                .style(Style::new().fg(Color::Cyan))
                .max(max.max(1))
                .data(data),
            area,
        );
    }
    if let Some(area) = plan.tickets {
        let active = world.active_tickets().count();
        frame.render_widget(
            Paragraph::new(tickets_text(world, area.width.saturating_sub(2) as usize))
                .block(Block::bordered().title(format!("Tickets ({active} active)"))),
            area,
        );
    }
    if let Some(area) = plan.strip {
        frame.render_widget(Paragraph::new(strip_text(world)), area);
    }
    let story = Block::new()
        .borders(Borders::TOP)
        .title(format!(" {}/9 {} ", app.chapter.number(), app.chapter.title()))
        .title_style(Style::new().add_modifier(Modifier::BOLD));
    frame.render_widget(
        Paragraph::new(story_text(app, world, now_ms)).wrap(Wrap { trim: true }).block(story),
        plan.story,
    );
    if let Some(area) = plan.audit {
        let rows = area.height.saturating_sub(1) as usize;
        let width = area.width as usize;
        let lines: Vec<Line> = world
            .audit
            .iter()
            .rev()
            .take(rows)
            .rev()
            .map(|l| Line::from(cut(&format!("{} {}", clock(l.at_ms), l.text), width)))
            .collect();
        let block = Block::new()
            .borders(Borders::TOP)
            .title(format!(" Audit: {} records (routine reads not shown) ", world.audit_total));
        frame.render_widget(Paragraph::new(lines).block(block), area);
    }
    frame.render_widget(Paragraph::new(keys_text(app, world)), plan.keys);
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::demo::app::Key;
    use crate::demo::scenarios;

    fn world() -> World {
        let store = |id: &str, health: Health| Entity {
            kind: "store".into(),
            id: id.into(),
            health,
            figures: vec![("leaders".into(), 30.0, String::new()), ("regions".into(), 90.0, String::new())],
            note: String::new(),
        };
        let member = |id: &str, note: &str| Entity {
            kind: "pd-member".into(),
            id: id.into(),
            health: Health::Healthy,
            figures: vec![],
            note: note.into(),
        };
        World {
            entities: vec![
                store("1", Health::Healthy),
                store("2", Health::Healthy),
                store("3", Health::Degraded),
                store("4", Health::Down),
                member("pd-0", "leader"),
                member("pd-1", ""),
                member("pd-2", ""),
            ],
            ops: vec![19_000, 19_600],
            mode: "execute".into(),
            speed: 20.0,
            ..World::default()
        }
    }

    fn render(width: u16, height: u16, app: &App, world: &World) -> String {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|frame| draw(frame, app, world, 0)).unwrap();
        let buffer = terminal.backend().buffer().clone();
        let mut out = String::new();
        for y in 0..buffer.area.height {
            for x in 0..buffer.area.width {
                out.push_str(buffer[(x, y)].symbol());
            }
            out.push('\n');
        }
        out
    }

    #[test]
    fn at_80x24_every_panel_fits_and_the_chapter_keeps_eight_lines() {
        let area = Rect::new(0, 0, 80, 24);
        let p = plan(area, 5);
        assert_eq!(p.header.height, 1);
        assert_eq!(p.keys.y, 23);
        let (cluster, workload, tickets, audit) =
            (p.cluster.unwrap(), p.workload.unwrap(), p.tickets.unwrap(), p.audit.unwrap());
        assert_eq!(cluster.height, 8, "five lines need at least the minimum top row count");
        assert_eq!(cluster.width, 40);
        assert_eq!(workload.x, 40);
        assert_eq!(workload.width + cluster.width, 80);
        assert_eq!(tickets.y, workload.bottom());
        assert!(p.story.height >= STORY_ROWS, "{p:?}");
        assert!(audit.height >= 3, "{p:?}");
        assert_eq!(audit.bottom(), p.keys.y);
        assert!(p.strip.is_none());
        for r in [p.header, cluster, workload, tickets, p.story, audit, p.keys] {
            assert!(area.contains(r.as_position()) && r.right() <= 80 && r.bottom() <= 24, "{r:?}");
        }
    }

    #[test]
    fn small_screens_fold_the_top_panels_into_a_strip_and_drop_the_audit_first() {
        let narrow = plan(Rect::new(0, 0, 50, 30), 7);
        assert!(narrow.cluster.is_none() && narrow.workload.is_none() && narrow.tickets.is_none());
        assert_eq!(narrow.strip.map(|s| s.height), Some(1));
        let short = plan(Rect::new(0, 0, 100, 14), 7);
        assert!(short.cluster.is_none() && short.strip.is_some());
        assert!(short.audit.is_none(), "the chapter keeps the room: {short:?}");
        assert_eq!(short.story.height, 11);
        let big = plan(Rect::new(0, 0, 160, 50), 9);
        assert_eq!(big.cluster.unwrap().height, 11);
        assert!(big.audit.unwrap().height > 4 && big.story.height > STORY_ROWS);
        let tiny = plan(Rect::new(0, 0, 20, 4), 9);
        assert!(tiny.strip.is_none() && tiny.audit.is_none());
        assert_eq!(tiny.story.height, 2);
    }

    #[test]
    fn the_healthy_screen_at_80x24_shows_the_cluster_workload_and_keys() {
        let app = App::new(scenarios::menu(&[1, 2, 3, 4]));
        let screen = render(80, 24, &app, &world());
        assert!(screen.contains("1/9 Healthy cluster"), "{screen}");
        assert!(screen.contains("● store 1 leaders 30 regions 90"), "{screen}");
        assert!(screen.contains("✖ store 4"), "a down store is marked: {screen}");
        assert!(screen.contains("pd-member ●pd-0(leader) ●pd-1 ●pd-2"), "{screen}");
        assert!(screen.contains("Workload 19.6k ops/s"), "{screen}");
        assert!(screen.contains("4 × store, 3 × pd-member"), "{screen}");
        assert!(screen.contains("q quit"), "{screen}");
    }

    #[test]
    fn the_menu_shows_all_twelve_scenarios_at_80x24() {
        let mut app = App::new(scenarios::menu(&[1, 2, 3, 4]));
        let world = world();
        app.on_key(Key::Char(' '), &world, 0);
        let screen = render(80, 24, &app, &world);
        for s in &app.scenarios {
            assert!(screen.contains(&format!("{} {:<4}", s.key, s.id)), "{} missing:\n{screen}", s.id);
        }
        // The selected one's description, as the simulator's catalogue words it.
        let selected = &app.scenarios[app.selected];
        assert_eq!(selected.id, "S1");
        let opening = selected.description.split_whitespace().take(4).collect::<Vec<_>>().join(" ");
        assert!(screen.contains(&format!("{}: {opening}", selected.id)), "the selected one's description: {screen}");
    }

    #[test]
    fn figures_and_rates_are_short() {
        assert_eq!(figure_text("leaders", 30.0, ""), "leaders 30");
        assert_eq!(figure_text("available", 72.46, "%"), "available 72.5%");
        assert_eq!(figure_text("p99", 123.4, "ms"), "p99 123ms");
        assert_eq!(rate_text(950), "950");
        assert_eq!(rate_text(19_600), "19.6k");
        assert_eq!(rate_text(4_100_000), "4.1M");
        let lines = cluster_text(&world().entities, 20);
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0].to_string(), "● store 1 leaders 30", "figures stop at the width");
    }
}
