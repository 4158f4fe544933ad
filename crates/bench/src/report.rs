//! The table: one row per figure, PlexSpaces beside the tokio floor and their ratio.

/// Which way is good for a figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    /// Throughput: more is better.
    Higher,
    /// Latency, cost, memory: less is better.
    Lower,
}

/// One measured figure.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    pub unit: &'static str,
    pub plex: f64,
    pub floor: f64,
    pub better: Better,
    pub target: &'static str,
}

impl Row {
    pub fn new(
        name: &str,
        unit: &'static str,
        plex: f64,
        floor: f64,
        better: Better,
        target: &'static str,
    ) -> Row {
        Row {
            name: name.to_owned(),
            unit,
            plex,
            floor,
            better,
            target,
        }
    }

    /// PlexSpaces divided by the floor.
    pub fn ratio(&self) -> f64 {
        if self.floor == 0.0 {
            f64::NAN
        } else {
            self.plex / self.floor
        }
    }
}

/// The median (sorts `values`); 0 for none.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Percentiles of nanosecond samples, in microseconds.
#[derive(Debug, Clone, Copy)]
pub struct Latency {
    pub p50: f64,
    pub p99: f64,
}

impl Latency {
    /// From raw samples in nanoseconds (sorts them).
    pub fn from_nanos(samples: &mut [u64]) -> Latency {
        if samples.is_empty() {
            return Latency { p50: 0.0, p99: 0.0 };
        }
        samples.sort_unstable();
        let at = |pct: usize| {
            let i = (samples.len() * pct / 100).min(samples.len() - 1);
            samples[i] as f64 / 1_000.0
        };
        Latency {
            p50: at(50),
            p99: at(99),
        }
    }
}

fn figure(value: f64, unit: &str) -> String {
    if unit.ends_with("/s") {
        if value >= 1e6 {
            format!("{:.2} M", value / 1e6)
        } else {
            format!("{:.0} k", value / 1e3)
        }
    } else if unit == "B" {
        format!("{value:.0}")
    } else {
        format!("{value:.2}")
    }
}

/// The markdown table, with a caption line above it.
pub fn markdown(caption: &str, rows: &[Row]) -> String {
    markdown_with(caption, "tokio task + mpsc", rows)
}

/// The markdown table with `floor` naming the comparison column.
pub fn markdown_with(caption: &str, floor: &str, rows: &[Row]) -> String {
    let mut out = String::new();
    out.push_str(caption);
    out.push_str("\n\n");
    out.push_str(&format!(
        "| benchmark | unit | PlexSpaces | {floor} | PlexSpaces / floor | better | target |\n"
    ));
    out.push_str("|---|---|---:|---:|---:|---|---|\n");
    for row in rows {
        let better = match row.better {
            Better::Higher => "higher",
            Better::Lower => "lower",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.2}× | {} | {} |\n",
            row.name,
            row.unit,
            figure(row.plex, row.unit),
            figure(row.floor, row.unit),
            row.ratio(),
            better,
            row.target,
        ));
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The rows as a JSON document (hand-written: the default build pulls no serializer).
pub fn json(rows: &[Row], quick: bool, workers: usize) -> String {
    let items: Vec<String> = rows
        .iter()
        .map(|row| {
            format!(
                "{{\"name\":\"{}\",\"unit\":\"{}\",\"plexspaces\":{},\"floor\":{},\"ratio\":{},\"better\":\"{}\",\"target\":\"{}\"}}",
                escape(&row.name),
                escape(row.unit),
                row.plex,
                row.floor,
                if row.ratio().is_finite() { row.ratio() } else { 0.0 },
                match row.better {
                    Better::Higher => "higher",
                    Better::Lower => "lower",
                },
                escape(row.target),
            )
        })
        .collect();
    format!(
        "{{\"quick\":{quick},\"workers\":{workers},\"rows\":[{}]}}",
        items.join(",")
    )
}

/// One figure across every framework in the peers table.
#[derive(Debug, Clone)]
pub struct PeerRow {
    pub name: &'static str,
    pub unit: &'static str,
    pub better: Better,
    pub plex: f64,
    pub floor: f64,
    pub actix: f64,
    pub ractor: f64,
    pub kameo: f64,
}

fn ratio(a: f64, b: f64) -> String {
    if b == 0.0 {
        "n/a".to_owned()
    } else {
        format!("{:.2}×", a / b)
    }
}

/// The peers table: each framework's figure, then PlexSpaces divided by each of the others.
pub fn peers_markdown(caption: &str, rows: &[PeerRow]) -> String {
    let mut out = String::new();
    out.push_str(caption);
    out.push_str("\n\n");
    out.push_str("| benchmark | unit | better | PlexSpaces | tokio floor | actix | ractor | kameo | ÷ floor | ÷ actix | ÷ ractor | ÷ kameo |\n");
    out.push_str("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for row in rows {
        let better = match row.better {
            Better::Higher => "higher",
            Better::Lower => "lower",
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row.name,
            row.unit,
            better,
            figure(row.plex, row.unit),
            figure(row.floor, row.unit),
            figure(row.actix, row.unit),
            figure(row.ractor, row.unit),
            figure(row.kameo, row.unit),
            ratio(row.plex, row.floor),
            ratio(row.plex, row.actix),
            ratio(row.plex, row.ractor),
            ratio(row.plex, row.kameo),
        ));
    }
    out
}

/// The peers rows as a JSON array.
pub fn peers_json(rows: &[PeerRow]) -> String {
    let items: Vec<String> = rows
        .iter()
        .map(|row| {
            format!(
                "{{\"name\":\"{}\",\"unit\":\"{}\",\"plexspaces\":{},\"floor\":{},\"actix\":{},\"ractor\":{},\"kameo\":{}}}",
                escape(row.name),
                escape(row.unit),
                row.plex,
                row.floor,
                row.actix,
                row.ractor,
                row.kameo,
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}
