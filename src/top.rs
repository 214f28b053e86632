//! `ringway top --metrics URL`: a live terminal view of a running ringway's `/metrics`,
//! refreshed every second — the budget per worker (the 511 story as it happens), tunnels
//! and requests per backend, rates, and errors. Quit with `q` (or Esc, Ctrl-C).
//!
//! It reads only the metrics endpoint (the text format), so it works for thread and
//! process mode alike, and from another machine. The screen is drawn with ratatui.

use ratatui::crossterm::event::{self, Event, KeyCode, KeyModifiers};
use ratatui::layout::{Constraint, Layout};
use ratatui::style::{Modifier, Style};
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::Frame;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One series: its labels and value.
type Series = (BTreeMap<String, String>, f64);

/// One scrape: `name` → its series.
#[derive(Clone, Debug, Default)]
pub struct Scrape {
    rows: BTreeMap<String, Vec<Series>>,
}

impl Scrape {
    /// Parse the text exposition format (comments skipped).
    pub fn parse(text: &str) -> Scrape {
        let mut s = Scrape::default();
        for l in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let Some((series, value)) = l.rsplit_once(' ') else {
                continue;
            };
            let Ok(v) = value.parse::<f64>() else {
                continue;
            };
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter_map(|kv| kv.split_once('='))
                .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
                .collect();
            s.rows
                .entry(name.to_string())
                .or_default()
                .push((labels, v));
        }
        s
    }

    /// The sum of `name` over the series whose labels include `want`.
    pub fn sum(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        self.rows.get(name).map_or(0.0, |rows| {
            rows.iter()
                .filter(|(l, _)| want.iter().all(|(k, v)| l.get(*k).is_some_and(|x| x == v)))
                .map(|(_, v)| v)
                .sum()
        })
    }

    /// Every value of label `key` among the series of `name`, sorted.
    pub fn values_of(&self, name: &str, key: &str) -> Vec<String> {
        let mut v: Vec<String> = self
            .rows
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(|(l, _)| l.get(key).cloned())
            .collect();
        v.sort_by_key(|s| (s.len(), s.clone()));
        v.dedup();
        v
    }

    fn label(&self, name: &str, key: &str) -> String {
        self.rows
            .get(name)
            .and_then(|r| r.first())
            .and_then(|(l, _)| l.get(key).cloned())
            .unwrap_or_default()
    }
}

/// `host:port` and path of a metrics URL (`http://H:P/metrics`, `H:P/metrics` or `H:P`).
pub fn parse_url(url: &str) -> Result<(String, String), String> {
    let rest = url.strip_prefix("http://").unwrap_or(url);
    if url.starts_with("https://") {
        return Err(format!(
            "{url}: ringway top reads plain http:// metrics URLs"
        ));
    }
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    if host.is_empty() || !host.contains(':') {
        return Err(format!(
            "{url}: give the metrics address as http://HOST:PORT/metrics (ringway --metrics HOST:PORT)"
        ));
    }
    Ok((host.to_string(), path.to_string()))
}

/// Fetch one scrape.
pub fn fetch(host: &str, path: &str) -> Result<Scrape, String> {
    let mut s = TcpStream::connect(host).map_err(|e| format!("cannot reach {host}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| format!("reading {host}{path}: {e}"))?;
    let Some(i) = text.find("\r\n\r\n") else {
        return Err(format!("{host}{path}: not an HTTP answer"));
    };
    if !text.starts_with("HTTP/1.1 200") {
        let first = text.lines().next().unwrap_or("");
        return Err(format!("{host}{path}: {first}"));
    }
    Ok(Scrape::parse(&text[i + 4..]))
}

/// What the screen shows: the newest scrape, the one before (for rates), or an error.
#[derive(Debug, Default)]
pub struct View {
    /// Where from.
    pub url: String,
    /// The newest scrape and when it was taken.
    pub now: Option<(Scrape, Instant)>,
    /// The scrape before it.
    pub prev: Option<(Scrape, Instant)>,
    /// The last fetch's error, if it failed.
    pub error: Option<String>,
}

impl View {
    fn rate(&self, name: &str, want: &[(&str, &str)]) -> f64 {
        match (&self.now, &self.prev) {
            (Some((a, ta)), Some((b, tb))) => {
                let dt = ta.duration_since(*tb).as_secs_f64();
                if dt > 0.0 {
                    (a.sum(name, want) - b.sum(name, want)).max(0.0) / dt
                } else {
                    0.0
                }
            }
            _ => 0.0,
        }
    }
}

fn n(v: f64) -> String {
    format!("{}", v as u64)
}

fn bytes(v: f64) -> String {
    match v {
        v if v >= 1e9 => format!("{:.1} GB", v / 1e9),
        v if v >= 1e6 => format!("{:.1} MB", v / 1e6),
        v if v >= 1e3 => format!("{:.1} kB", v / 1e3),
        v => format!("{v:.0} B"),
    }
}

/// Draw `view` on frame `f`.
pub fn draw(f: &mut Frame, view: &View) {
    let bold = Style::default().add_modifier(Modifier::BOLD);
    let Some((s, _)) = &view.now else {
        let msg = view
            .error
            .clone()
            .unwrap_or_else(|| "waiting for the first scrape".into());
        f.render_widget(
            Paragraph::new(format!("ringway top — {}\n\n{msg}", view.url)).block(Block::bordered()),
            f.area(),
        );
        return;
    };
    let workers = s.values_of("ringway_worker_slots", "worker");
    let backends = s.values_of("ringway_backend_tunnels", "backend");
    let [head, budget, backs, foot] = Layout::vertical([
        Constraint::Length(4),
        Constraint::Length(workers.len() as u16 + 3),
        Constraint::Length(backends.len() as u16 + 3),
        Constraint::Min(3),
    ])
    .areas(f.area());
    let up = s.sum("ringway_tunnels", &[]);
    let used = s.sum("ringway_worker_slots_used", &[]);
    let total = s.sum("ringway_worker_slots", &[]);
    let mut title = format!(
        "ringway {} ({}) — {} — {} worker(s), reloads {}",
        s.label("ringway_build_info", "version"),
        s.label("ringway_build_info", "commit"),
        view.url,
        n(s.sum("ringway_workers", &[])),
        n(s.sum("ringway_reloads_total", &[]))
    );
    if let Some(e) = &view.error {
        title = format!("{title} — last scrape failed: {e}");
    }
    let rates = format!(
        "tunnels {} live · slots {} of {} used · accepted {:.0}/s · requests {:.0}/s · tunnels opened {:.0}/s · up {}/s · down {}/s",
        n(up),
        n(used),
        n(total),
        view.rate("ringway_accepted_total", &[]),
        view.rate("ringway_http_requests_total", &[]),
        view.rate("ringway_tunnels_opened_total", &[]),
        bytes(view.rate("ringway_tunnel_bytes_total", &[("direction", "client_to_backend")])),
        bytes(view.rate("ringway_tunnel_bytes_total", &[("direction", "backend_to_client")])),
    );
    f.render_widget(
        Paragraph::new(format!("{title}\n{rates}"))
            .block(Block::bordered().title(" ringway top (q quits) ")),
        head,
    );
    let rows = workers.iter().map(|w| {
        let l = [("worker", w.as_str())];
        let ws = |k: &str, v: &str| s.sum("ringway_worker_refused_total", &[("worker", w), (k, v)]);
        Row::new(vec![
            w.clone(),
            n(s.sum("ringway_worker_slots_used", &l)),
            n(s.sum("ringway_worker_slots_free", &l)),
            n(s.sum("ringway_worker_slots", &l)),
            n(s.sum("ringway_tunnels", &l)),
            n(s.sum("ringway_sessions", &l)),
            n(ws("reason", "503")),
            n(ws("reason", "reset")),
            n(s.sum("ringway_worker_not_enough_episodes_total", &l)),
            n(s.sum("ringway_worker_handoffs_total", &l)),
        ])
    });
    let w7 = Constraint::Length(9);
    f.render_widget(
        Table::new(
            rows,
            [Constraint::Length(7), w7, w7, w7, w7, w7, w7, w7, w7, w7],
        )
        .header(
            Row::new([
                "worker", "used", "free", "slots", "tunnels", "sessions", "503", "reset",
                "episodes", "handoffs",
            ])
            .style(bold),
        )
        .block(Block::bordered().title(" budget per worker (worker_connections) ")),
        budget,
    );
    let rows = backends.iter().map(|b| {
        let l = [("backend", b.as_str())];
        Row::new(vec![
            b.clone(),
            n(s.sum("ringway_backend_tunnels", &l)),
            n(s.sum("ringway_backend_active", &l)),
            format!("{:.0}/s", view.rate("ringway_backend_requests_total", &l)),
            n(s.sum("ringway_backend_requests_total", &l)),
            n(s.sum("ringway_backend_connect_failures_total", &l)),
            n(s.sum("ringway_backend_timeouts_total", &l)),
            n(s.sum(
                "ringway_backend_responses_total",
                &[("backend", b), ("class", "5xx")],
            )),
        ])
    });
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(24),
                w7,
                w7,
                Constraint::Length(10),
                Constraint::Length(10),
                w7,
                w7,
                w7,
            ],
        )
        .header(
            Row::new([
                "backend",
                "tunnels",
                "active",
                "req rate",
                "requests",
                "conn fail",
                "timeouts",
                "5xx",
            ])
            .style(bold),
        )
        .block(Block::bordered().title(" backends ")),
        backs,
    );
    let errors = format!(
        "own answers {} · refused at limit {} · 5xx {} · 4xx {} · upgrades refused {} · tunnels ended: client {} / backend {} / timeout {} / error {}",
        n(s.sum("ringway_own_answers_total", &[])),
        n(s.sum("ringway_worker_refused_total", &[])),
        n(s.sum("ringway_http_responses_total", &[("class", "5xx")])),
        n(s.sum("ringway_http_responses_total", &[("class", "4xx")])),
        n(s.sum("ringway_upgrades_refused_total", &[])),
        n(s.sum("ringway_tunnels_closed_total", &[("end", "client_close")])),
        n(s.sum("ringway_tunnels_closed_total", &[("end", "backend_close")])),
        n(s.sum("ringway_tunnels_closed_total", &[("end", "timeout")])),
        n(s.sum("ringway_tunnels_closed_total", &[("end", "error")])),
    );
    f.render_widget(
        Paragraph::new(errors).block(Block::bordered().title(" errors ")),
        foot,
    );
}

/// `ringway top` with its arguments (after `top`); returns the exit status.
pub fn run(args: &[String]) -> i32 {
    let mut url = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--metrics" => url = it.next().cloned(),
            s if s.starts_with("--metrics=") => url = Some(s["--metrics=".len()..].to_string()),
            "-h" | "--help" => {
                println!("ringway top --metrics URL: a live view of a ringway started with --metrics (e.g. ringway top --metrics http://127.0.0.1:9145/metrics); q quits");
                return 0;
            }
            other => {
                eprintln!("error: ringway top: unexpected argument '{other}'; usage: ringway top --metrics http://HOST:PORT/metrics");
                return 2;
            }
        }
    }
    let Some(url) = url else {
        eprintln!("error: ringway top needs --metrics URL (the address ringway was started with --metrics on), e.g. ringway top --metrics http://127.0.0.1:9145/metrics");
        return 2;
    };
    let (host, path) = match parse_url(&url) {
        Ok(x) => x,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let mut term = ratatui::init();
    let mut view = View {
        url: url.clone(),
        ..View::default()
    };
    let mut next = Instant::now();
    let code = loop {
        if Instant::now() >= next {
            match fetch(&host, &path) {
                Ok(s) => {
                    view.prev = view.now.take();
                    view.now = Some((s, Instant::now()));
                    view.error = None;
                }
                Err(e) => view.error = Some(e),
            }
            next = Instant::now() + Duration::from_secs(1);
            if term.draw(|f| draw(f, &view)).is_err() {
                break 1;
            }
        }
        let wait = next.saturating_duration_since(Instant::now());
        match event::poll(wait) {
            Ok(true) => {
                if let Ok(Event::Key(k)) = event::read() {
                    let ctrl_c =
                        k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                    if ctrl_c || matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) {
                        break 0;
                    }
                }
                if term.draw(|f| draw(f, &view)).is_err() {
                    break 1;
                }
            }
            Ok(false) => {}
            Err(_) => break 1,
        }
    };
    ratatui::restore();
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_text_format_and_urls() {
        let s = Scrape::parse(
            "# TYPE ringway_tunnels gauge\nringway_tunnels{worker=\"0\",mode=\"auto\"} 3\nringway_tunnels{worker=\"1\",mode=\"auto\"} 4\nringway_reloads_total{} 2\n# EOF\n",
        );
        assert_eq!(s.sum("ringway_tunnels", &[]), 7.0);
        assert_eq!(s.sum("ringway_tunnels", &[("worker", "1")]), 4.0);
        assert_eq!(s.sum("ringway_reloads_total", &[]), 2.0);
        assert_eq!(s.values_of("ringway_tunnels", "worker"), ["0", "1"]);
        assert_eq!(
            parse_url("http://127.0.0.1:9145/metrics").unwrap(),
            ("127.0.0.1:9145".into(), "/metrics".into())
        );
        assert_eq!(parse_url("127.0.0.1:9145").unwrap().1, "/metrics");
        assert!(parse_url("https://x:1/").is_err());
        assert!(parse_url("localhost").is_err());
    }
}
