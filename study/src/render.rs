//! The study's files, drawn from its results without I/O: `results.csv`, one plain SVG per
//! figure (no browser or font library needed), `tables.md`, and `report.html` that sets every
//! figure and table beside the paper's numbers and says what the data shows.

use std::collections::BTreeMap;
use std::fmt::Write;

use netmode_advisor::api::Protocol;

use crate::paper;
use crate::plan::{Experiment, Mode};
use crate::results::{Group, Results, Spread, Summary, summarise};

/// Every file of a study's output directory but results.json: (name, contents).
pub fn files(r: &Results) -> Vec<(&'static str, String)> {
    let s = summarise(&r.cells);
    let findings = Findings::of(r, &s);
    vec![
        ("results.csv", csv(r)),
        ("figure3.svg", figure3(r, &s)),
        ("figure4.svg", figure4(r, &s)),
        ("figure5.svg", figure5(r, &s, &findings)),
        ("tables.md", tables_md(r, &s)),
        ("report.html", report(r, &s, &findings)),
    ]
}

fn opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v}")).unwrap_or_default()
}

pub fn csv(r: &Results) -> String {
    let mut out = String::from(
        "experiment,mode,protocol,size,n,rep,goodput_bps,sent_bps,loss,duration_s,cpu_s,\
         cycles,instructions,ipc,context_switches,page_faults,cpu_migrations,net_softirqs,error\n",
    );
    for c in &r.cells {
        let k = c.counters.as_ref();
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            match c.key.experiment {
                Experiment::Single => "single",
                Experiment::Multi => "multi",
            },
            c.key.mode.as_str(),
            c.key.protocol.as_str(),
            c.key.size,
            c.key.n,
            c.key.rep + 1,
            opt(c.goodput_bps),
            opt(c.sent_bps),
            opt(c.loss),
            c.duration_s,
            opt(k.map(|k| k.cpu_s)),
            opt(k.and_then(|k| k.perf.cycles.map(|v| v as f64))),
            opt(k.and_then(|k| k.perf.instructions.map(|v| v as f64))),
            opt(k.and_then(|k| k.perf.ipc)),
            opt(k.map(|k| (k.voluntary_context_switches + k.involuntary_context_switches) as f64)),
            opt(k.map(|k| (k.minor_faults + k.major_faults) as f64)),
            opt(k.and_then(|k| k.perf.cpu_migrations.map(|v| v as f64))),
            opt(k.map(|k| (k.net_rx_softirqs + k.net_tx_softirqs) as f64)),
            c.error
                .as_deref()
                .map(|e| format!("\"{}\"", e.replace('"', "'")))
                .unwrap_or_default(),
        );
    }
    out
}

fn single(
    s: &BTreeMap<Group, Summary>,
    mode: Mode,
    protocol: Protocol,
    size: u32,
) -> Option<&Summary> {
    s.get(&Group {
        experiment: Experiment::Single,
        mode,
        protocol,
        size,
        n: 1,
    })
}

fn multi(s: &BTreeMap<Group, Summary>, r: &Results, mode: Mode, n: u32) -> Option<Spread> {
    s.get(&Group {
        experiment: Experiment::Multi,
        mode,
        protocol: r.options.multi_protocol,
        size: r.options.multi_size,
        n,
    })?
    .goodput
}

fn colour(m: Mode) -> &'static str {
    match m {
        Mode::Native => "#7f7f7f",
        Mode::Bridge => "#1f77b4",
        Mode::Host => "#d62728",
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

const W: f64 = 640.0;
const H: f64 = 380.0;
const L: f64 = 70.0;
const R: f64 = 20.0;
const T: f64 = 50.0;
const B: f64 = 60.0;

fn svg_open(title: &str, y_label: &str) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" \
         viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <title>{t}</title>\n<rect width=\"{W}\" height=\"{H}\" fill=\"white\"/>\n\
         <text x=\"{cx}\" y=\"22\" text-anchor=\"middle\" font-size=\"14\">{t}</text>\n\
         <text x=\"16\" y=\"{cy}\" transform=\"rotate(-90 16 {cy})\" text-anchor=\"middle\">{y}</text>\n",
        t = esc(title),
        y = esc(y_label),
        cx = W / 2.0,
        cy = (T + H - B) / 2.0,
    )
}

/// Axes and horizontal grid lines up to `ymax` (Mbit/s).
fn axes(out: &mut String, ymax: f64) {
    let _ = writeln!(
        out,
        "<line x1=\"{L}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
        H - B,
        W - R,
        H - B
    );
    let _ = writeln!(
        out,
        "<line x1=\"{L}\" y1=\"{T}\" x2=\"{L}\" y2=\"{}\" stroke=\"black\"/>",
        H - B
    );
    for i in 0..=4 {
        let v = ymax * i as f64 / 4.0;
        let y = yof(v, ymax);
        let _ = writeln!(
            out,
            "<line x1=\"{L}\" y1=\"{y:.1}\" x2=\"{}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>",
            W - R,
            L - 6.0,
            y + 4.0,
            fmt_num(v)
        );
    }
}

/// The axis maximum: the next of 1, 2, 2.5, 5 x 10^k at or above `v`.
fn nice_max(v: f64) -> f64 {
    if v.is_nan() || v <= 0.0 || !v.is_finite() {
        return 1.0;
    }
    let k = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * k)
        .find(|&x| x >= v)
        .unwrap_or(10.0 * k)
}

fn yof(v: f64, ymax: f64) -> f64 {
    H - B - (v / ymax.max(1e-9)) * (H - B - T)
}

fn fmt_num(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}")
    } else if v >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn mbit(s: &Spread) -> Spread {
    Spread {
        median: s.median / 1e6,
        min: s.min / 1e6,
        max: s.max / 1e6,
        n: s.n,
    }
}

fn legend(out: &mut String, modes: &[Mode]) {
    for (i, m) in modes.iter().enumerate() {
        let x = L + 10.0 + i as f64 * 110.0;
        let _ = writeln!(
            out,
            "<rect x=\"{x}\" y=\"{}\" width=\"12\" height=\"12\" fill=\"{}\"/>\
             <text x=\"{}\" y=\"{}\">{}</text>",
            T - 16.0,
            colour(*m),
            x + 16.0,
            T - 6.0,
            m.as_str()
        );
    }
}

/// Grouped bars (median) with whiskers (min..max of the repetitions), one group per
/// protocol and size, one series (`<g class="series" data-mode=...>`) per mode.
fn bars(title: &str, r: &Results, s: &BTreeMap<Group, Summary>, modes: &[Mode]) -> String {
    let groups = r.options.pairs();
    let ymax = groups
        .iter()
        .flat_map(|&(p, z)| modes.iter().filter_map(move |&m| single(s, m, p, z)))
        .filter_map(|x| x.goodput.map(|g| g.max / 1e6))
        .fold(0.0, f64::max);
    let ymax = nice_max(ymax * 1.05);
    let mut out = svg_open(title, "goodput, Mbit/s (median, min..max)");
    axes(&mut out, ymax);
    legend(&mut out, modes);
    if !r.options.single {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">not measured in this study (--figures)</text>",
            (L + W - R) / 2.0,
            H / 2.0
        );
    }
    let gw = (W - L - R) / groups.len().max(1) as f64;
    let bw = gw * 0.7 / modes.len() as f64;
    for (gi, (p, z)) in groups.iter().enumerate() {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{} {} B</text>",
            L + gw * (gi as f64 + 0.5),
            H - B + 18.0,
            p.as_str().to_uppercase(),
            z
        );
    }
    for (mi, m) in modes.iter().enumerate() {
        let _ = writeln!(
            out,
            "<g class=\"series\" data-mode=\"{}\" fill=\"{}\">",
            m.as_str(),
            colour(*m)
        );
        for (gi, (p, z)) in groups.iter().enumerate() {
            let Some(g) = single(s, *m, *p, *z)
                .and_then(|x| x.goodput)
                .map(|g| mbit(&g))
            else {
                continue;
            };
            let x = L + gw * gi as f64 + gw * 0.15 + bw * mi as f64;
            let y = yof(g.median, ymax);
            let cx = x + bw / 2.0;
            let _ = writeln!(
                out,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{:.1}\"><title>{} {} {} B: {} Mbit/s (min {}, max {}, {} runs)</title></rect>\
                 <line x1=\"{cx:.1}\" y1=\"{:.1}\" x2=\"{cx:.1}\" y2=\"{:.1}\" stroke=\"black\"/>\
                 <line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>\
                 <line x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>",
                (H - B - y).max(0.0),
                m.as_str(),
                p.as_str(),
                z,
                fmt_num(g.median),
                fmt_num(g.min),
                fmt_num(g.max),
                g.n,
                yof(g.min, ymax),
                yof(g.max, ymax),
                cx - 4.0,
                yof(g.min, ymax),
                cx + 4.0,
                yof(g.min, ymax),
                cx - 4.0,
                yof(g.max, ymax),
                cx + 4.0,
                yof(g.max, ymax),
            );
        }
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
    out
}

pub fn figure3(r: &Results, s: &BTreeMap<Group, Summary>) -> String {
    bars(
        "Figure 3: native process vs container (bridge)",
        r,
        s,
        &[Mode::Native, Mode::Bridge],
    )
}

pub fn figure4(r: &Results, s: &BTreeMap<Group, Summary>) -> String {
    bars(
        "Figure 4: one container, bridge vs host mode",
        r,
        s,
        &[Mode::Bridge, Mode::Host],
    )
}

/// Lines of aggregate goodput over 1..N containers, both modes, whiskers, and the measured
/// crossover marked.
pub fn figure5(r: &Results, s: &BTreeMap<Group, Summary>, f: &Findings) -> String {
    let max_n = r.options.max_n.max(1);
    let ymax = (1..=max_n)
        .flat_map(|n| [Mode::Bridge, Mode::Host].map(|m| multi(s, r, m, n)))
        .flatten()
        .map(|g| g.max / 1e6)
        .fold(0.0, f64::max);
    let ymax = nice_max(ymax * 1.05);
    let kind = match (r.options.multi_pattern, r.options.multi_direction) {
        (netmode_advisor::api::Pattern::RequestResponse, _) => {
            " request/response (requests' bytes)"
        }
        (_, netmode_advisor::api::Direction::Ingress) => " ingress",
        _ => "",
    };
    let title = format!(
        "Figure 5: 1..{max_n} concurrent containers, {} {} B{kind}, aggregate",
        r.options.multi_protocol.as_str().to_uppercase(),
        r.options.multi_size
    );
    let mut out = svg_open(&title, "aggregate goodput, Mbit/s");
    axes(&mut out, ymax);
    legend(&mut out, &[Mode::Bridge, Mode::Host]);
    let xof = |n: u32| {
        if max_n == 1 {
            L + (W - L - R) / 2.0
        } else {
            L + 30.0 + (n - 1) as f64 * (W - L - R - 60.0) / (max_n - 1) as f64
        }
    };
    for n in 1..=max_n {
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\">{n}</text>",
            xof(n),
            H - B + 18.0
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">containers</text>",
        (L + W - R) / 2.0,
        H - B + 40.0
    );
    if let Some(c) = f.crossover {
        let x = xof(c);
        let _ = writeln!(
            out,
            "<g class=\"crossover\"><line x1=\"{x:.1}\" y1=\"{T}\" x2=\"{x:.1}\" y2=\"{}\" stroke=\"#2ca02c\" stroke-dasharray=\"5 4\"/>\
             <text x=\"{:.1}\" y=\"{}\" fill=\"#2ca02c\">crossover: host from {c}</text></g>",
            H - B,
            x + 4.0,
            T + 12.0
        );
    }
    for m in [Mode::Bridge, Mode::Host] {
        let pts: Vec<(u32, Spread)> = (1..=max_n)
            .filter_map(|n| multi(s, r, m, n).map(|g| (n, mbit(&g))))
            .collect();
        let _ = writeln!(
            out,
            "<g class=\"series\" data-mode=\"{}\" stroke=\"{c}\" fill=\"{c}\">",
            m.as_str(),
            c = colour(m)
        );
        let line: Vec<String> = pts
            .iter()
            .map(|(n, g)| format!("{:.1},{:.1}", xof(*n), yof(g.median, ymax)))
            .collect();
        let _ = writeln!(
            out,
            "<polyline fill=\"none\" stroke-width=\"2\" points=\"{}\"/>",
            line.join(" ")
        );
        for (n, g) in &pts {
            let x = xof(*n);
            let _ = writeln!(
                out,
                "<circle cx=\"{x:.1}\" cy=\"{:.1}\" r=\"4\"><title>{} x{n}: {} Mbit/s (min {}, max {})</title></circle>\
                 <line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\"/>",
                yof(g.median, ymax),
                m.as_str(),
                fmt_num(g.median),
                fmt_num(g.min),
                fmt_num(g.max),
                yof(g.min, ymax),
                yof(g.max, ymax)
            );
        }
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
    out
}

/// A measured value beside the paper's: "12.3 (paper 9.8, +25 %)".
fn beside(measured: Option<f64>, paper: Option<f64>, scale: f64, digits: usize) -> String {
    let m = measured.map(|v| v / scale);
    match (m, paper) {
        (Some(m), Some(p)) if p != 0.0 => format!(
            "{m:.digits$} (paper {p:.digits$}, {:+.0} %)",
            (m / p - 1.0) * 100.0
        ),
        (Some(m), Some(p)) => format!("{m:.digits$} (paper {p:.digits$})"),
        (Some(m), None) => format!("{m:.digits$}"),
        (None, Some(p)) => format!("n/a (paper {p:.digits$})"),
        (None, None) => "n/a".into(),
    }
}

fn median(s: Option<Spread>) -> Option<f64> {
    s.map(|s| s.median)
}

/// A row of a counters table to fill: its label, the measured summary, the paper's values.
type RowSource<'a> = (String, Option<&'a Summary>, Option<[f64; 4]>);
/// A table: title, header, rows of cells.
type Table = (String, Vec<&'static str>, Vec<Vec<String>>);

/// Rows of a counters table: (label, cells...).
fn counter_rows(rows: &[RowSource]) -> (Vec<&'static str>, Vec<Vec<String>>) {
    let header = vec![
        "",
        "CPU cycles (x10^6/s)",
        "context switches/s",
        "page faults/s",
        "IPC",
        "CPU migrations/s",
        "NET softirqs/s (host)",
        "CPU (cores)",
        "goodput (Mbit/s)",
    ];
    let body = rows
        .iter()
        .map(|(label, s, p)| {
            let r = s.map(|s| &s.rates);
            let p = |i: usize| p.map(|p| p[i]);
            vec![
                label.clone(),
                beside(r.and_then(|r| median(r.cycles)), p(0), 1e6, 0),
                beside(r.and_then(|r| median(r.context_switches)), p(1), 1.0, 0),
                beside(r.and_then(|r| median(r.page_faults)), p(2), 1.0, 1),
                beside(r.and_then(|r| median(r.ipc)), p(3), 1.0, 2),
                beside(r.and_then(|r| median(r.cpu_migrations)), None, 1.0, 1),
                beside(r.and_then(|r| median(r.softirqs)), None, 1.0, 0),
                beside(r.and_then(|r| median(r.cpu_utilisation)), None, 1.0, 2),
                beside(s.and_then(|s| median(s.goodput)), None, 1e6, 1),
            ]
        })
        .collect();
    (header, body)
}

fn tables(r: &Results, s: &BTreeMap<Group, Summary>) -> Vec<Table> {
    let mut t1 = Vec::new();
    for (p, z) in r.options.pairs() {
        for m in [Mode::Bridge, Mode::Native] {
            t1.push((
                format!("{} {z} B, {}", p.as_str().to_uppercase(), m.as_str()),
                single(s, m, p, z),
                if m == Mode::Bridge {
                    paper::table1(p, z)
                } else {
                    None
                },
            ));
        }
    }
    let (h1, b1) = counter_rows(&t1);
    let mut t2 = Vec::new();
    for (m, paper) in [
        (Mode::Bridge, paper::TABLE2_BRIDGE),
        (Mode::Host, paper::TABLE2_HOST),
    ] {
        t2.push((
            m.as_str().to_string(),
            single(s, m, Protocol::Tcp, 64),
            Some(paper),
        ));
    }
    let (h2, b2) = counter_rows(&t2);
    vec![
        (
            "Table 1: per protocol and size, the sender's counters per second (container in bridge mode beside the paper; native for reference)".to_string(),
            h1,
            b1,
        ),
        (
            "Table 2: TCP 64 B, per network mode".to_string(),
            h2,
            b2,
        ),
    ]
}

fn perf_note(s: &BTreeMap<Group, Summary>, r: &Results) -> String {
    let why = s.values().find_map(|x| x.rates.perf_unavailable.clone());
    let mut note = String::from(
        "Counters are of the sender processes over the cell (perf_event_open for cycles, \
         instructions and CPU migrations, getrusage for context switches and page faults); NET \
         softirqs are host-wide. The paper did not report CPU migrations.",
    );
    if let Some(why) = why {
        let _ = write!(note, " CPU cycles and IPC unavailable here: {why}.");
    }
    let _ = write!(
        note,
        " Medians of {} repetition(s) of {} s each.",
        r.options.repetitions,
        r.options.duration.as_secs_f64()
    );
    note
}

pub fn tables_md(r: &Results, s: &BTreeMap<Group, Summary>) -> String {
    let mut out = String::from("# netmode study: tables\n\n");
    for (title, header, rows) in tables(r, s) {
        let _ = writeln!(out, "## {title}\n");
        let _ = writeln!(out, "| {} |", header.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
        for row in rows {
            let _ = writeln!(out, "| {} |", row.join(" | "));
        }
        out.push('\n');
    }
    let _ = writeln!(out, "{}", perf_note(s, r));
    out
}

/// What the data says, in numbers and in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Findings {
    /// Per protocol: bridge vs native, % (median of the sizes' medians), and whether any
    /// size's spreads overlap.
    pub overhead: Vec<(Protocol, f64, bool)>,
    /// Per protocol and size: host vs bridge, % (medians), spreads overlapping.
    pub host_vs_bridge: Vec<(Protocol, u32, f64, bool)>,
    /// The smallest n from which host beats bridge outside the spread at every larger n.
    pub crossover: Option<u32>,
    pub sentences: Vec<String>,
}

fn pct(a: &Spread, b: &Spread) -> f64 {
    (a.median / b.median - 1.0) * 100.0
}

impl Findings {
    pub fn of(r: &Results, s: &BTreeMap<Group, Summary>) -> Findings {
        let mut overhead = Vec::new();
        for &p in &r.options.protocols {
            let mut v = Vec::new();
            let mut overlap = false;
            for &z in &r.options.sizes {
                let n = single(s, Mode::Native, p, z).and_then(|x| x.goodput);
                let b = single(s, Mode::Bridge, p, z).and_then(|x| x.goodput);
                if let (Some(n), Some(b)) = (n, b) {
                    v.push(pct(&b, &n));
                    overlap |= b.overlaps(&n);
                }
            }
            if let Some(m) = Spread::of(v) {
                overhead.push((p, m.median, overlap));
            }
        }
        let mut host_vs_bridge = Vec::new();
        for (p, z) in r.options.pairs() {
            let b = single(s, Mode::Bridge, p, z).and_then(|x| x.goodput);
            let h = single(s, Mode::Host, p, z).and_then(|x| x.goodput);
            if let (Some(b), Some(h)) = (b, h) {
                host_vs_bridge.push((p, z, pct(&h, &b), h.overlaps(&b)));
            }
        }
        let clear_host = |n: u32| match (multi(s, r, Mode::Host, n), multi(s, r, Mode::Bridge, n)) {
            (Some(h), Some(b)) => h.median > b.median && !h.overlaps(&b),
            _ => false,
        };
        let crossover = (1..=r.options.max_n).find(|&n| (n..=r.options.max_n).all(clear_host));
        let single_runs = r.options.repetitions < 2;
        let unsure = if single_runs {
            "one run per cell: no spread to judge a difference against"
        } else {
            "within the run-to-run spread"
        };
        let mut sentences = Vec::new();
        for (p, v, overlap) in &overhead {
            sentences.push(format!(
                "{}: a container in bridge mode had {:+.0} % of a native process's goodput{} (the paper: {:+.0} %).",
                p.as_str().to_uppercase(),
                v,
                if *overlap {
                    format!(" ({unsure} for at least one size)")
                } else {
                    String::new()
                },
                paper::overhead_pct(*p)
            ));
        }
        for (p, z, v, overlap) in &host_vs_bridge {
            let verdict = if *overlap {
                format!("no winner called: host {v:+.0} %, {unsure}")
            } else if *v > 0.0 {
                format!("host mode {v:+.0} %")
            } else {
                format!(
                    "bridge mode {:+.0} %",
                    (1.0 / (1.0 + v / 100.0) - 1.0) * 100.0
                )
            };
            sentences.push(format!(
                "One container, {} {z} B: {verdict}{}.",
                p.as_str().to_uppercase(),
                paper::host_vs_bridge_pct(*p, *z)
                    .map(|x| format!(" (the paper: host {x:+.0} %)"))
                    .unwrap_or_default()
            ));
        }
        let n = r.options.max_n;
        let at_n = match (multi(s, r, Mode::Host, n), multi(s, r, Mode::Bridge, n)) {
            (Some(h), Some(b)) => format!(
                "; at {n} containers host vs bridge {:+.0} %{}",
                pct(&h, &b),
                if h.overlaps(&b) {
                    " (within the spread)"
                } else {
                    ""
                }
            ),
            _ => String::new(),
        };
        sentences.push(match crossover {
            _ if n == 0 => "Several containers: not measured (--max-n 0).".to_string(),
            Some(c) => format!(
                "Several containers: host mode wins clearly from {c} concurrent container{} on{at_n} (the paper: host from {}, {:.0} to {:.0} % better at 4).",
                if c == 1 { "" } else { "s" },
                paper::CROSSOVER,
                paper::MULTI_HOST_GAIN_PCT.0,
                paper::MULTI_HOST_GAIN_PCT.1
            ),
            None => format!(
                "Several containers: no crossover within 1..{n}: host mode never won outside the spread at every larger count{at_n} (the paper: host from {}).",
                paper::CROSSOVER
            ),
        });
        Findings {
            overhead,
            host_vs_bridge,
            crossover,
            sentences,
        }
    }
}

fn html_table(out: &mut String, title: &str, header: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "<h3>{}</h3>\n<table>\n<tr>", esc(title));
    for h in header {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr>\n");
    for row in rows {
        out.push_str("<tr>");
        for c in row {
            let _ = write!(out, "<td>{}</td>", esc(c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</table>\n");
}

pub fn report(r: &Results, s: &BTreeMap<Group, Summary>, f: &Findings) -> String {
    let m = &r.machine;
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>netmode study: {host}</title>\n<style>\
         body{{font-family:sans-serif;max-width:980px;margin:2em auto;line-height:1.4}}\
         table{{border-collapse:collapse;margin:1em 0;font-size:13px}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}} img{{max-width:100%}}\
         .conclusion li{{margin:.3em 0}}</style></head><body>\n\
         <h1>netmode study on {host}</h1>\n",
        host = esc(&m.hostname)
    );
    let _ = writeln!(
        out,
        "<p>This gateway: {} ({} CPUs, {:.1} GiB), kernel {}, {}, Docker {} (API {}); traffic to {}. \
         The paper (<em>{}</em>): {}.</p>",
        esc(&m.cpu_model),
        m.cpus,
        m.memory_bytes as f64 / (1u64 << 30) as f64,
        esc(&m.kernel),
        esc(&m.arch),
        esc(&m.docker_version),
        esc(&m.docker_api),
        esc(&m.sink),
        paper::TITLE,
        paper::SETUP
    );
    if let Some(rate) = r.options.link_rate {
        let _ = writeln!(
            out,
            "<p>The link to the sink was capped at {:.1} Mbit/s (tc tbf), as the paper's 802.11g link capped its senders.</p>",
            rate as f64 / 1e6
        );
    }
    out.push_str("<h2>What the data shows</h2>\n<ul class=\"conclusion\">\n");
    for sentence in &f.sentences {
        let _ = writeln!(out, "<li>{}</li>", esc(sentence));
    }
    out.push_str(
        "</ul>\n<p>Absolute goodput is not comparable with the paper's (its link capped every \
         sender at 20 Mbit/s); the ratios are.</p>\n",
    );
    for (file, caption) in [
        (
            "figure3.svg",
            "Figure 3: native process vs container in bridge mode",
        ),
        (
            "figure4.svg",
            "Figure 4: one container in bridge vs host mode",
        ),
        (
            "figure5.svg",
            "Figure 5: aggregate goodput of concurrent containers",
        ),
    ] {
        let _ = writeln!(
            out,
            "<figure><img src=\"{file}\" alt=\"{caption}\"><figcaption>{caption}</figcaption></figure>"
        );
    }
    out.push_str("<h2>Beside the paper</h2>\n<table>\n<tr><th>comparison</th><th>this gateway</th><th>paper</th><th>difference</th></tr>\n");
    for (p, v, _) in &f.overhead {
        let pp = paper::overhead_pct(*p);
        let _ = writeln!(
            out,
            "<tr><td>{} container (bridge) vs native</td><td>{v:+.1} %</td><td>{pp:+.0} %</td><td>{:+.1} points</td></tr>",
            p.as_str().to_uppercase(),
            v - pp
        );
    }
    for (p, z, v, overlap) in &f.host_vs_bridge {
        let pp = paper::host_vs_bridge_pct(*p, *z);
        let _ = writeln!(
            out,
            "<tr><td>one container, {} {z} B: host vs bridge</td><td>{v:+.1} %{}</td><td>{}</td><td>{}</td></tr>",
            p.as_str().to_uppercase(),
            if *overlap { " (within spread)" } else { "" },
            pp.map(|x| format!("{x:+.0} %")).unwrap_or_default(),
            pp.map(|x| format!("{:+.1} points", v - x))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(
        out,
        "<tr><td>crossover (host wins from)</td><td>{}</td><td>{} containers</td><td></td></tr>\n</table>",
        f.crossover
            .map(|c| format!("{c} container{}", if c == 1 { "" } else { "s" }))
            .unwrap_or_else(|| format!("none within 1..{}", r.options.max_n)),
        paper::CROSSOVER
    );
    out.push_str("<h2>Tables</h2>\n");
    for (title, header, rows) in tables(r, s) {
        html_table(&mut out, &title, &header, &rows);
    }
    let _ = writeln!(out, "<p>{}</p>", esc(&perf_note(s, r)));
    let errors: Vec<String> = s
        .iter()
        .flat_map(|(g, x)| {
            x.errors.iter().map(move |e| {
                format!(
                    "{} {} {} B x{}: {e}",
                    g.mode.as_str(),
                    g.protocol.as_str(),
                    g.size,
                    g.n
                )
            })
        })
        .collect();
    if !errors.is_empty() {
        out.push_str("<h2>Cells that failed</h2>\n<ul>\n");
        for e in errors {
            let _ = writeln!(out, "<li>{}</li>", esc(&e));
        }
        out.push_str("</ul>\n");
    }
    let _ = writeln!(
        out,
        "<p>Every run and counter: <a href=\"results.json\">results.json</a>, \
         <a href=\"results.csv\">results.csv</a>; <a href=\"tables.md\">tables.md</a>. \
         netmode {}.</p>\n</body></html>",
        esc(&r.netmode_version)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{CellKey, Options, cells};
    use crate::results::{CellResult, Machine};

    /// A study whose goodput is known: native 100, bridge 90, host 80 Mbit/s for one sender
    /// (rep r adds r); n containers: bridge 50 n, host 60 n.
    fn study(reps: u32) -> Results {
        let mut o = Options::quick(2);
        o.repetitions = reps;
        let cells = cells(&o)
            .into_iter()
            .map(|key: CellKey| {
                let base = match (key.experiment, key.mode) {
                    (Experiment::Single, Mode::Native) => 100.0,
                    (Experiment::Single, Mode::Bridge) => 90.0,
                    (Experiment::Single, Mode::Host) => 80.0,
                    (Experiment::Multi, Mode::Bridge) => 50.0 * key.n as f64,
                    (Experiment::Multi, _) => 60.0 * key.n as f64,
                };
                CellResult {
                    goodput_bps: Some((base + key.rep as f64) * 1e6),
                    sent_bps: None,
                    loss: None,
                    duration_s: 5.0,
                    transactions: None,
                    counters: None,
                    error: None,
                    at_ms: 0,
                    key,
                }
            })
            .collect();
        Results {
            format: crate::results::FORMAT,
            netmode_version: "test".into(),
            started_at_ms: 0,
            finished_at_ms: Some(1),
            machine: Machine::default(),
            options: o,
            cells,
        }
    }

    #[test]
    fn every_file_one_series_per_mode_and_the_findings_follow_the_data() {
        let r = study(3);
        let files = files(&r);
        let names: Vec<&str> = files.iter().map(|(n, _)| *n).collect();
        assert_eq!(
            names,
            [
                "results.csv",
                "figure3.svg",
                "figure4.svg",
                "figure5.svg",
                "tables.md",
                "report.html"
            ]
        );
        let get = |n: &str| &files.iter().find(|(f, _)| *f == n).unwrap().1;
        for (fig, modes) in [
            ("figure3.svg", ["native", "bridge"]),
            ("figure4.svg", ["bridge", "host"]),
            ("figure5.svg", ["bridge", "host"]),
        ] {
            let svg = get(fig);
            assert_eq!(svg.matches("<g class=\"series\"").count(), 2, "{fig}");
            for m in modes {
                assert!(svg.contains(&format!("data-mode=\"{m}\"")), "{fig} {m}");
            }
        }
        // The crossover: host wins clearly from 1 container (60 n vs 50 n, spreads of 2).
        assert!(get("figure5.svg").contains("crossover: host from 1"));
        assert_eq!(get("results.csv").lines().count(), 1 + r.cells.len());
        let html = get("report.html");
        for needle in [
            "figure3.svg",
            "figure4.svg",
            "figure5.svg",
            "985",
            "1050",
            "-6 %",
            "-18 %",
        ] {
            assert!(html.contains(needle), "{needle} in the report");
        }
        let s = summarise(&r.cells);
        let f = Findings::of(&r, &s);
        // bridge 91 vs native 101 (medians): -9.9 %.
        assert!(
            f.overhead.iter().all(|(_, v, _)| (*v + 9.9).abs() < 0.1),
            "{f:?}"
        );
        assert!(
            f.host_vs_bridge
                .iter()
                .all(|(_, _, v, overlap)| *v < 0.0 && !overlap)
        );
        assert_eq!(f.crossover, Some(1));
    }

    #[test]
    fn one_repetition_never_calls_a_winner() {
        let r = study(1);
        let s = summarise(&r.cells);
        let f = Findings::of(&r, &s);
        assert_eq!(f.crossover, None);
        assert!(f.host_vs_bridge.iter().all(|(_, _, _, overlap)| *overlap));
        assert!(
            f.sentences
                .iter()
                .any(|x| x.contains("no winner called") && x.contains("one run per cell"))
        );
    }

    #[test]
    fn axis_maxima_are_round() {
        assert_eq!(nice_max(1294.0), 2000.0);
        assert_eq!(nice_max(94.9), 100.0);
        assert_eq!(nice_max(21.0), 25.0);
        assert_eq!(nice_max(0.0), 1.0);
    }
}
