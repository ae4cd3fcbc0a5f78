//! `advisor status`: the table an operator reads at a glance.

use netmode_advisor::Error;
use netmode_advisor::api::Status;
use netmode_advisor::client::Client;
use netmode_advisor::format::status_table;

use crate::{Args, expect_operands};

pub fn run(client: &Client, args: &Args) -> Result<(), Error> {
    expect_operands(args, 0, "no operands")?;
    if args.json {
        print!("{}", client.get_text("/v1/status")?);
        return Ok(());
    }
    let status: Status = client.get_json("/v1/status")?;
    print!("{}", status_table(&status));
    Ok(())
}
