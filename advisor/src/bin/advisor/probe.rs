//! `advisor probe CONTAINER`: measure now what CONTAINER gets in bridge and in host mode.
//! `advisor probe --sweep`: the multi-container sweep alone.

use std::io::IsTerminal;
use std::time::Duration;

use netmode_advisor::Error;
use netmode_advisor::api::{ProbeProgress, ProbeRequest, ProbeRun, RunState};
use netmode_advisor::client::Client;
use netmode_advisor::format;

use crate::Args;

pub fn run(client: &Client, args: &Args) -> Result<(), Error> {
    let request = ProbeRequest {
        container: args.operands.first().cloned(),
        all: args.all,
        sweep: args.sweep,
    };
    if args.operands.len() > 1 || (request.container.is_none() && !request.sweep && !request.all) {
        return Err(crate::usage("probe expects CONTAINER, --all or --sweep"));
    }
    if request.all && request.container.is_some() {
        return Err(crate::usage("probe takes CONTAINER or --all, not both"));
    }
    let body = serde_json::to_vec(&request).map_err(|e| Error::Usage(e.to_string()))?;
    let queued: ProbeRun = client.post_json("/v1/probes", &body)?;
    if args.no_wait {
        println!("{}", queued.id);
        return Ok(());
    }
    eprintln!(
        "probe {} queued{}; waiting for it to finish",
        queued.id,
        request
            .container
            .as_deref()
            .map(|c| format!(" for {c}"))
            .unwrap_or_default()
    );
    let path = format!("/v1/probes/{}", queued.id);
    let tty = std::io::stderr().is_terminal();
    let mut shown = None;
    let run = loop {
        let run: ProbeRun = client.get_json(&path)?;
        if matches!(
            run.state,
            RunState::Done | RunState::Failed | RunState::Aborted
        ) {
            if tty && shown.is_some() {
                eprintln!();
            }
            break run;
        }
        if let Some(p) = &run.progress {
            // A terminal gets one line redrawn; a log gets a line per cell.
            if tty {
                eprint!("\r\x1b[2K{}", progress_line(p));
            } else if shown != Some(p.cells_done) {
                eprintln!("{}", progress_line(p));
            }
            shown = Some(p.cells_done);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&run).unwrap_or_default());
    } else {
        print!("{}", format::probe_run(&run));
    }
    match run.state {
        RunState::Done => Ok(()),
        _ => Err(Error::Probe(format!(
            "probe {} {}",
            run.id,
            run.error.as_deref().unwrap_or("did not complete")
        ))),
    }
}

/// "[#####-------] 5/12 cells, ~20 s left  web: host ingress tcp 1024 B".
fn progress_line(p: &ProbeProgress) -> String {
    let width = 20;
    let filled = (width * p.cells_done as usize)
        .checked_div(p.cells_total as usize)
        .unwrap_or(0)
        .min(width);
    format!(
        "[{}{}] {}/{} cells{}{}",
        "#".repeat(filled),
        "-".repeat(width - filled),
        p.cells_done,
        p.cells_total,
        p.remaining_s
            .map(|s| format!(", ~{} s left", s.round() as u64))
            .unwrap_or_default(),
        p.current
            .as_deref()
            .map(|c| format!("  {c}"))
            .unwrap_or_default()
    )
}
