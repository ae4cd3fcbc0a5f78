//! `advisor apply CONTAINER [--mode bridge|host] [--dry-run]`: recreate CONTAINER in the other
//! network mode (without --mode: as recommended), and wait for the outcome.
//! `advisor history`: every change made, newest first.

use std::time::Duration;

use netmode_advisor::Error;
use netmode_advisor::api::{ApplyList, ApplyRecord, ApplyRequest, ApplyState, ModeKind};
use netmode_advisor::client::Client;
use netmode_advisor::format;

use crate::{Args, expect_operands};

pub fn run(client: &Client, args: &Args) -> Result<(), Error> {
    expect_operands(args, 1, "CONTAINER (a name or id)")?;
    let mode = match args.mode.as_deref() {
        None => None,
        Some("bridge") => Some(ModeKind::Bridge),
        Some("host") => Some(ModeKind::Host),
        Some(other) => return Err(crate::usage(format!("--mode {other:?}: bridge or host"))),
    };
    let request = ApplyRequest {
        container: args.operands[0].clone(),
        mode,
        dry_run: args.dry_run,
        carry_writable_layer: args.carry_writable_layer,
    };
    let body = serde_json::to_vec(&request).map_err(|e| Error::Usage(e.to_string()))?;
    let first: ApplyRecord = client.post_json("/v1/apply", &body)?;
    let record = if matches!(
        first.state,
        ApplyState::DryRun | ApplyState::ComposeOverride
    ) {
        first
    } else {
        eprintln!(
            "apply {}: {} from {} to {} mode; waiting for it to finish",
            first.id,
            first.container,
            first.from.as_str(),
            first.to.as_str()
        );
        let path = format!("/v1/applies/{}", first.id);
        loop {
            let r: ApplyRecord = client.get_json(&path)?;
            if !matches!(r.state, ApplyState::Queued | ApplyState::Running) {
                break r;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&record).unwrap_or_default()
        );
    } else {
        print!("{}", format::apply_record(&record));
    }
    match record.state {
        ApplyState::Applied | ApplyState::DryRun => {
            if let Some(e) = &record.error {
                eprintln!("apply {}: {e}", record.id);
            }
            Ok(())
        }
        ApplyState::RolledBack => Err(Error::RolledBack(format!(
            "{}: {}; {} runs as before",
            record.id,
            record.error.as_deref().unwrap_or("the change failed"),
            record.container
        ))),
        ApplyState::ComposeOverride => Err(Error::ComposeOverride(format!(
            "{} is managed by Docker Compose: nothing was changed; run `{}`",
            record.container,
            record
                .compose_override
                .as_ref()
                .map(|o| o.command.as_str())
                .unwrap_or("docker compose up -d")
        ))),
        _ => Err(Error::Probe(format!(
            "apply {} ended {:?}: {}",
            record.id,
            record.state,
            record.error.as_deref().unwrap_or("")
        ))),
    }
}

pub fn history(client: &Client, args: &Args) -> Result<(), Error> {
    expect_operands(args, 0, "no operands")?;
    if args.json {
        print!("{}", client.get_text("/v1/applies")?);
        return Ok(());
    }
    let list: ApplyList = client.get_json("/v1/applies")?;
    print!("{}", format::apply_history(&list));
    Ok(())
}
