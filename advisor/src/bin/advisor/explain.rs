//! `advisor explain CONTAINER`: the recommendation and the whole chain of evidence.

use netmode_advisor::Error;
use netmode_advisor::api::Container;
use netmode_advisor::client::Client;
use netmode_advisor::format;

use crate::{Args, expect_operands};

pub fn run(client: &Client, args: &Args) -> Result<(), Error> {
    expect_operands(args, 1, "CONTAINER (a name or id)")?;
    let key = &args.operands[0];
    let c: Container = client.get_json(&format!("/v1/containers/{key}"))?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&c.recommendation).unwrap_or_default()
        );
    } else {
        print!("{}", format::explain(&c));
    }
    Ok(())
}
