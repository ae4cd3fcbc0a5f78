//! `advisor probe CONTAINER`: measure now what CONTAINER gets in bridge and in host mode.
//! `advisor probe --sweep`: the multi-container sweep alone.

use std::time::Duration;

use netmode_advisor::Error;
use netmode_advisor::api::{ProbeRequest, ProbeRun, RunState};
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
    let run = loop {
        let run: ProbeRun = client.get_json(&path)?;
        if matches!(
            run.state,
            RunState::Done | RunState::Failed | RunState::Aborted
        ) {
            break run;
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
