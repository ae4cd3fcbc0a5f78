//! Human-readable rendering of API documents (what `advisor status` prints).
//! Pure functions of data, so they are tested without a daemon.

use crate::api::{Attribution, Container, DockerState, Status};

/// A left/right aligned text table.
pub struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns named in `header`; a name starting with `>` is right-aligned.
    pub fn new(header: &[&'static str]) -> Self {
        Table {
            header: header.iter().map(|h| h.trim_start_matches('>')).collect(),
            right: header.iter().map(|h| h.starts_with('>')).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut width: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in width.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = width[i] - cell.chars().count();
                if self.right[i] {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `1234567.0` bit/s -> `"1.23"` (Mbit/s).
pub fn mbit(bps: f64) -> String {
    format!("{:.2}", bps / 1e6)
}

/// Packets per second, compact: `950`, `12.3k`, `1.20M`.
pub fn rate(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

pub fn percent(fraction: Option<f64>) -> String {
    match fraction {
        Some(f) => format!("{:.1}%", f * 100.0),
        None => "-".into(),
    }
}

pub fn attribution(a: Attribution) -> &'static str {
    match a {
        Attribution::Full => "all",
        Attribution::TcpOnly => "tcp only",
        Attribution::Shared => "shared",
        Attribution::None => "none",
    }
}

/// The one-line summary above the table.
pub fn status_headline(s: &Status) -> String {
    let h = &s.host;
    let docker = match s.docker.state {
        DockerState::Connected => format!(
            "docker: connected ({}, API {})",
            s.docker.server_version.as_deref().unwrap_or("?"),
            s.docker.api_version.as_deref().unwrap_or("?")
        ),
        DockerState::Connecting => "docker: connecting".to_string(),
        DockerState::Unavailable => match &s.docker.error {
            Some(e) => format!("docker: unavailable ({e})"),
            None => "docker: unavailable".to_string(),
        },
    };
    let cs = h
        .context_switches_per_s
        .map(|v| format!("{} cs/s", rate(v)))
        .unwrap_or_else(|| "- cs/s".into());
    format!(
        "netmoded {} on {} | {} CPUs, cpu {}, softirq {}, {} | {}",
        s.version,
        h.hostname,
        h.cpus,
        percent(h.cpu_utilisation),
        percent(h.softirq_share),
        cs,
        docker
    )
}

fn live_cells(c: &Container) -> [String; 6] {
    match &c.live {
        Some(l) => [
            mbit(l.rx_bps),
            mbit(l.tx_bps),
            rate(l.rx_pps),
            rate(l.tx_pps),
            l.mean_packet_bytes
                .map(|b| format!("{b:.0}"))
                .unwrap_or_else(|| "-".into()),
            attribution(l.attributed).to_string(),
        ],
        None => [
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "-".into(),
            "(sampling)".into(),
        ],
    }
}

/// The whole `advisor status` output.
pub fn status_table(s: &Status) -> String {
    let mut out = status_headline(s);
    out.push('\n');
    if s.containers.is_empty() {
        out.push_str("no running containers\n");
        return out;
    }
    let mut t = Table::new(&[
        "NAME",
        "MODE",
        ">RX Mbit/s",
        ">TX Mbit/s",
        ">RX pkt/s",
        ">TX pkt/s",
        ">MEAN B",
        "SEEN",
    ]);
    for c in &s.containers {
        let [rx, tx, rxp, txp, mean, seen] = live_cells(c);
        t.row(vec![
            c.name.clone(),
            c.network_mode.clone(),
            rx,
            tx,
            rxp,
            txp,
            mean,
            seen,
        ]);
    }
    out.push('\n');
    out.push_str(&t.render());
    let notes: Vec<String> = s
        .containers
        .iter()
        .filter_map(|c| {
            let note = c.live.as_ref()?.note.as_ref()?;
            Some(format!("  {}: {}", c.name, note))
        })
        .collect();
    if !notes.is_empty() {
        out.push_str("\nnotes:\n");
        for n in notes {
            out.push_str(&n);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_numbers_right_and_text_left() {
        let mut t = Table::new(&["NAME", ">RATE"]);
        t.row(vec!["a".into(), "1.00".into()]);
        t.row(vec!["longer".into(), "12.50".into()]);
        assert_eq!(t.render(), "NAME     RATE\na        1.00\nlonger  12.50\n");
    }

    #[test]
    fn rates_are_compact() {
        assert_eq!(rate(950.4), "950");
        assert_eq!(rate(12_345.0), "12.3k");
        assert_eq!(rate(1_200_000.0), "1.20M");
        assert_eq!(mbit(1_234_567.0), "1.23");
        assert_eq!(percent(Some(0.1234)), "12.3%");
        assert_eq!(percent(None), "-");
    }
}
