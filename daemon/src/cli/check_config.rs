//! `netmoded check-config PATH`: validate without starting.

use std::path::PathBuf;

use crate::config::Config;
use crate::error::Result;

pub fn run(path: PathBuf) -> Result<()> {
    let config = Config::load(&path, false)?;
    config.check_environment(&path)?;
    println!("{}: ok", path.display());
    Ok(())
}
