//! `vss top`: a live view of a cluster, refreshed every interval, from every
//! instance's `Status`. Rates are the difference of two samples' counters;
//! the first view has none yet. A full-screen view on a terminal (ratatui),
//! plain text otherwise, so it pipes and logs.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::time::{Duration, Instant};

use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Paragraph, Row, Table};
use vss_client::Client;
use vss_client::StatusReply;

/// One round of `Status` answers, by endpoint.
#[derive(Debug, Clone)]
pub struct Sample {
    at: Instant,
    answers: Vec<(String, Result<StatusReply, String>)>,
}

impl Sample {
    pub async fn take(client: &Client) -> Self {
        let answers = client
            .status()
            .await
            .into_iter()
            .map(|(endpoint, result)| (endpoint, result.map_err(|e| e.to_string())))
            .collect();
        Self {
            at: Instant::now(),
            answers,
        }
    }
}

/// Per second, since the previous sample.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    pub calls: f64,
    pub errors: f64,
    pub delivered: f64,
    pub failed_deliveries: f64,
}

impl Rates {
    fn add(&mut self, other: Rates) {
        self.calls += other.calls;
        self.errors += other.errors;
        self.delivered += other.delivered;
        self.failed_deliveries += other.failed_deliveries;
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRow {
    pub endpoint: String,
    /// None: no answer (the error).
    pub id: Result<String, String>,
    pub epoch: u64,
    pub generation: u64,
    pub rates: Option<Rates>,
    /// Peers as this instance sees them: (id, healthy, RTT µs).
    pub peers: Vec<(String, bool, u64)>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SlotRow {
    pub slot: u32,
    pub type_name: String,
    pub owner: String,
    pub standby: String,
    /// Summed over the instances that answered both samples.
    pub rates: Option<Rates>,
}

/// What one refresh shows.
#[derive(Debug, Clone, PartialEq)]
pub struct View {
    pub leader: Option<String>,
    pub epoch: u64,
    pub up: usize,
    pub instances: Vec<InstanceRow>,
    pub slots: Vec<SlotRow>,
}

impl View {
    /// The view of `now`, with rates against `before` when given.
    pub fn of(before: Option<&Sample>, now: &Sample) -> Self {
        let seconds = before.map(|b| now.at.duration_since(b.at).as_secs_f64());
        let earlier = |endpoint: &str| {
            before?
                .answers
                .iter()
                .find(|(e, _)| e == endpoint)
                .and_then(|(_, a)| a.as_ref().ok())
        };
        let routing = now
            .answers
            .iter()
            .filter_map(|(_, a)| a.as_ref().ok()?.routing.as_ref())
            .max_by_key(|t| t.epoch);
        let mut slot_types = BTreeMap::new();
        let mut slot_rates: BTreeMap<u32, Rates> = BTreeMap::new();
        let mut instances = Vec::new();
        for (endpoint, answer) in &now.answers {
            let status = match answer {
                Ok(status) => status,
                Err(e) => {
                    instances.push(InstanceRow {
                        endpoint: endpoint.clone(),
                        id: Err(e.clone()),
                        epoch: 0,
                        generation: 0,
                        rates: None,
                        peers: Vec::new(),
                    });
                    continue;
                }
            };
            let previous = earlier(endpoint).filter(|p| p.instance == status.instance);
            let mut total: Option<Rates> = None;
            for slot in &status.slots {
                slot_types
                    .entry(slot.id)
                    .or_insert_with(|| slot.r#type.clone());
                let was = previous.and_then(|p| p.slots.iter().find(|s| s.id == slot.id));
                let (Some(was), Some(seconds)) = (was, seconds.filter(|s| *s > 0.0)) else {
                    continue;
                };
                // A counter that went down is a restarted instance: no rate.
                let per_second = |now: u64, then: u64| now.saturating_sub(then) as f64 / seconds;
                let rates = Rates {
                    calls: per_second(slot.calls, was.calls),
                    errors: per_second(slot.errors, was.errors),
                    delivered: per_second(slot.delivered, was.delivered),
                    failed_deliveries: per_second(slot.failed_deliveries, was.failed_deliveries),
                };
                slot_rates.entry(slot.id).or_default().add(rates);
                total.get_or_insert_with(Rates::default).add(rates);
            }
            instances.push(InstanceRow {
                endpoint: endpoint.clone(),
                id: Ok(status.instance.clone()),
                epoch: status.routing.as_ref().map_or(0, |r| r.epoch),
                generation: status.config_generation,
                rates: total,
                peers: status
                    .peers
                    .iter()
                    .map(|p| (p.id.clone(), p.healthy, p.rtt_us))
                    .collect(),
            });
        }
        let route = |slot: u32| {
            routing
                .and_then(|t| t.routes.iter().find(|r| r.slot == slot))
                .map(|r| match r.partitions.len() {
                    0 => (r.owner.clone(), r.standby.clone()),
                    // One word per cell: owners with their partition counts.
                    n => (
                        crate::output::partition_owners(r)
                            .replace(", ", ",")
                            .replace(' ', ":"),
                        format!("{n}-split"),
                    ),
                })
                .unwrap_or_default()
        };
        let slots = slot_types
            .into_iter()
            .map(|(slot, type_name)| {
                let (owner, standby) = route(slot);
                SlotRow {
                    slot,
                    type_name,
                    owner,
                    standby,
                    rates: slot_rates.get(&slot).copied(),
                }
            })
            .collect();
        View {
            leader: routing.map(|t| t.leader.clone()),
            epoch: routing.map_or(0, |t| t.epoch),
            up: instances.iter().filter(|i| i.id.is_ok()).count(),
            instances,
            slots,
        }
    }

    fn headline(&self) -> String {
        format!(
            "{} of {} instances up   leader {}   epoch {}",
            self.up,
            self.instances.len(),
            self.leader.as_deref().unwrap_or("none"),
            self.epoch
        )
    }
}

const INSTANCE_HEADER: [&str; 8] = [
    "INSTANCE",
    "ENDPOINT",
    "EPOCH",
    "CONFIG",
    "CALLS/S",
    "ERRORS/S",
    "DELIVERED/S",
    "PEERS (RTT)",
];
const SLOT_HEADER: [&str; 8] = [
    "SLOT",
    "TYPE",
    "OWNER",
    "STANDBY",
    "CALLS/S",
    "ERRORS/S",
    "DELIVERED/S",
    "FAILED/S",
];

fn rate(r: Option<Rates>, pick: fn(&Rates) -> f64) -> String {
    r.map_or_else(|| "-".into(), |r| format!("{:.0}", pick(&r)))
}

fn instance_cells(i: &InstanceRow) -> [String; 8] {
    let peers = i
        .peers
        .iter()
        .map(|(id, healthy, rtt)| {
            if *healthy {
                format!("{id} {rtt}µs")
            } else {
                format!("{id} DOWN")
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    match &i.id {
        Ok(id) => [
            id.clone(),
            i.endpoint.clone(),
            i.epoch.to_string(),
            i.generation.to_string(),
            rate(i.rates, |r| r.calls),
            rate(i.rates, |r| r.errors),
            rate(i.rates, |r| r.delivered),
            peers,
        ],
        Err(e) => [
            "DOWN".into(),
            i.endpoint.clone(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            e.clone(),
        ],
    }
}

fn slot_cells(s: &SlotRow) -> [String; 8] {
    let or_dash = |v: &str| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.to_string()
        }
    };
    [
        s.slot.to_string(),
        s.type_name.clone(),
        or_dash(&s.owner),
        or_dash(&s.standby),
        rate(s.rates, |r| r.calls),
        rate(s.rates, |r| r.errors),
        rate(s.rates, |r| r.delivered),
        rate(s.rates, |r| r.failed_deliveries),
    ]
}

/// The view as plain text: a headline and two aligned tables, no blank
/// line.
pub fn text(view: &View) -> String {
    let mut out = view.headline();
    out.push('\n');
    let instances: Vec<_> = view.instances.iter().map(instance_cells).collect();
    out.push_str(&aligned(&INSTANCE_HEADER, &instances));
    // No blank line inside a view: a blank line separates refreshes.
    let slots: Vec<_> = view.slots.iter().map(slot_cells).collect();
    out.push_str(&aligned(&SLOT_HEADER, &slots));
    out
}

fn aligned(header: &[&str; 8], rows: &[[String; 8]]) -> String {
    let mut widths = header.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        padded.join("  ").trim_end().to_string() + "\n"
    };
    let mut out = line(header.to_vec());
    for row in rows {
        out.push_str(&line(row.iter().map(String::as_str).collect()));
    }
    out
}

/// Draws the view on a ratatui frame.
pub fn draw(frame: &mut ratatui::Frame<'_>, view: &View) {
    let [head, instances, slots, help] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(u16::try_from(view.instances.len() + 3).unwrap_or(u16::MAX)),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    let bold = Style::new().add_modifier(Modifier::BOLD);
    frame.render_widget(
        Paragraph::new(Line::from(view.headline())).style(bold),
        head,
    );
    let widths = [
        Constraint::Length(12),
        Constraint::Length(21),
        Constraint::Length(6),
        Constraint::Length(7),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(12),
        Constraint::Fill(1),
    ];
    frame.render_widget(
        Table::new(
            view.instances.iter().map(|i| Row::new(instance_cells(i))),
            widths,
        )
        .header(Row::new(INSTANCE_HEADER).style(bold))
        .block(Block::bordered().title("instances")),
        instances,
    );
    let widths = [
        Constraint::Length(5),
        Constraint::Length(16),
        Constraint::Length(12),
        Constraint::Length(12),
        Constraint::Length(9),
        Constraint::Length(9),
        Constraint::Length(12),
        Constraint::Length(9),
    ];
    frame.render_widget(
        Table::new(view.slots.iter().map(|s| Row::new(slot_cells(s))), widths)
            .header(Row::new(SLOT_HEADER).style(bold))
            .block(Block::bordered().title("slots")),
        slots,
    );
    frame.render_widget(Paragraph::new("q: quit"), help);
}

/// Runs `vss top` until `count` refreshes are shown (None: until quit).
pub async fn run(client: &Client, every: Duration, count: Option<u64>) -> anyhow::Result<()> {
    if std::io::stdout().is_terminal() {
        let mut terminal = ratatui::try_init()?;
        let shown = refresh(
            client,
            count,
            |view, _| {
                terminal.draw(|frame| draw(frame, view))?;
                Ok(())
            },
            || async move {
                // Keys are read on a blocking thread: crossterm's reads block.
                Ok(tokio::task::spawn_blocking(move || quit_pressed_within(every)).await??)
            },
        )
        .await;
        ratatui::try_restore()?;
        shown
    } else {
        refresh(
            client,
            count,
            |view, shown| {
                let mut stdout = std::io::stdout().lock();
                if shown > 0 {
                    writeln!(stdout)?;
                }
                write!(stdout, "{}", text(view))?;
                stdout.flush()?;
                Ok(())
            },
            || async move {
                tokio::time::sleep(every).await;
                Ok(false)
            },
        )
        .await
    }
}

/// Takes a sample, `show`s its view (with how many were shown before),
/// then `wait`s for the next, until `count` are shown or `wait` says quit.
async fn refresh<W: Future<Output = anyhow::Result<bool>>>(
    client: &Client,
    count: Option<u64>,
    mut show: impl FnMut(&View, u64) -> anyhow::Result<()>,
    wait: impl Fn() -> W,
) -> anyhow::Result<()> {
    let mut before: Option<Sample> = None;
    let mut shown = 0u64;
    loop {
        let now = Sample::take(client).await;
        show(&View::of(before.as_ref(), &now), shown)?;
        shown += 1;
        if count.is_some_and(|n| shown >= n) || wait().await? {
            return Ok(());
        }
        before = Some(now);
    }
}

/// Whether q, Esc or Ctrl-C is pressed within `limit` (raw mode turns
/// Ctrl-C into a key).
fn quit_pressed_within(limit: Duration) -> std::io::Result<bool> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !event::poll(left)? {
            return Ok(false);
        }
        if let Event::Key(key) = event::read()? {
            let ctrl_c =
                key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
            if ctrl_c || matches!(key.code, KeyCode::Char('q') | KeyCode::Esc) {
                return Ok(true);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use vss_client::{PeerStatus, RoutingTable, SlotRoute, SlotStatus};

    use super::*;

    fn status(instance: &str, calls: u64, delivered: u64) -> StatusReply {
        StatusReply {
            instance: instance.into(),
            config_generation: 3,
            slots: vec![
                SlotStatus {
                    id: 0,
                    r#type: "token-bucket".into(),
                    calls,
                    errors: 1,
                    ..SlotStatus::default()
                },
                SlotStatus {
                    id: 10,
                    r#type: "broadcast".into(),
                    delivered,
                    ..SlotStatus::default()
                },
            ],
            routing: Some(RoutingTable {
                epoch: 7,
                leader: "vss-0".into(),
                routes: vec![SlotRoute {
                    slot: 0,
                    owner: "vss-1".into(),
                    standby: "vss-0".into(),
                    partitions: Vec::new(),
                }],
                ..RoutingTable::default()
            }),
            peers: vec![PeerStatus {
                id: "vss-1".into(),
                healthy: true,
                rtt_us: 250,
                ..PeerStatus::default()
            }],
            ..StatusReply::default()
        }
    }

    fn sample(at: Instant, answers: Vec<(&str, Result<StatusReply, String>)>) -> Sample {
        Sample {
            at,
            answers: answers
                .into_iter()
                .map(|(e, a)| (e.to_string(), a))
                .collect(),
        }
    }

    #[test]
    fn rates_are_the_counters_difference_per_second_summed_over_instances() {
        let t0 = Instant::now();
        let before = sample(
            t0,
            vec![
                ("a:1", Ok(status("vss-0", 100, 0))),
                ("b:1", Ok(status("vss-1", 50, 10))),
            ],
        );
        let now = sample(
            t0 + Duration::from_secs(2),
            vec![
                ("a:1", Ok(status("vss-0", 300, 0))),
                ("b:1", Ok(status("vss-1", 150, 30))),
            ],
        );
        let view = View::of(Some(&before), &now);
        assert_eq!(view.leader.as_deref(), Some("vss-0"));
        assert_eq!((view.epoch, view.up), (7, 2));
        let slot0 = &view.slots[0];
        assert_eq!(
            (slot0.owner.as_str(), slot0.standby.as_str()),
            ("vss-1", "vss-0")
        );
        assert_eq!(
            slot0.rates.map(|r| r.calls),
            Some(150.0),
            "(200 + 100) / 2 s"
        );
        assert_eq!(view.slots[1].rates.map(|r| r.delivered), Some(10.0));
        assert_eq!(view.instances[0].rates.map(|r| r.calls), Some(100.0));
    }

    #[test]
    fn the_first_view_has_no_rates_and_a_restarted_or_silent_instance_none_either() {
        let t0 = Instant::now();
        let first = sample(t0, vec![("a:1", Ok(status("vss-0", 100, 0)))]);
        assert!(
            View::of(None, &first)
                .slots
                .iter()
                .all(|s| s.rates.is_none())
        );
        let replaced = sample(
            t0 + Duration::from_secs(1),
            vec![
                ("a:1", Ok(status("vss-9", 5, 0))),
                ("b:1", Err("unreachable".into())),
            ],
        );
        let view = View::of(Some(&first), &replaced);
        assert!(view.slots.iter().all(|s| s.rates.is_none()));
        assert_eq!(view.up, 1);
        let text = text(&view);
        assert!(
            text.starts_with("1 of 2 instances up   leader vss-0   epoch 7\n"),
            "{text}"
        );
        assert!(text.contains("DOWN"), "{text}");
        assert!(text.contains("unreachable"), "{text}");
    }

    #[test]
    fn the_terminal_view_shows_the_headline_and_both_tables() {
        let t0 = Instant::now();
        let before = sample(t0, vec![("a:1", Ok(status("vss-0", 0, 0)))]);
        let now = sample(
            t0 + Duration::from_secs(1),
            vec![("a:1", Ok(status("vss-0", 42, 0)))],
        );
        let view = View::of(Some(&before), &now);
        let mut terminal = Terminal::new(TestBackend::new(120, 20)).expect("terminal");
        terminal.draw(|f| draw(f, &view)).expect("draw");
        let screen: String = terminal
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        for expected in [
            "1 of 1 instances up",
            "instances",
            "slots",
            "token-bucket",
            "42",
            "vss-1 250µs",
        ] {
            assert!(screen.contains(expected), "{expected:?} not on screen");
        }
    }
}
