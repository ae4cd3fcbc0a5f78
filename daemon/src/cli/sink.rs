//! `netmoded sink --listen ADDR`: the probe receiver, for an upstream host (the study's
//! evaluation server). Point netmoded at it with `probe.target = "netmode://ADDR"`.

use futures_lite::StreamExt;

use super::{Arg, Global, parse_rest, text};
use crate::error::{Error, Result};
use crate::traffic::sink::Sink;

/// `sink`'s one option, `--listen IP:PORT`.
pub fn parse(p: &mut lexopt::Parser, global: &mut Global) -> Result<String> {
    let mut listen = None;
    parse_rest("sink", p, global, |arg, p| match arg {
        Arg::Long(l) if l == "listen" => {
            listen = Some(text(p)?);
            Ok(true)
        }
        _ => Ok(false),
    })?;
    listen.ok_or_else(|| super::usage("sink needs --listen IP:PORT"))
}

pub fn run(listen: &str) -> Result<()> {
    let addr: std::net::SocketAddr = listen.parse().map_err(|_| {
        Error::Usage(format!(
            "--listen {listen:?}: expected IP:PORT, like 0.0.0.0:5291"
        ))
    })?;
    let sink = Sink::bind(addr).map_err(|e| Error::Listen {
        addr: addr.to_string(),
        source: e,
    })?;
    eprintln!(
        "netmoded sink: receiving TCP and UDP probe traffic on {}",
        sink.tcp_addr
    );
    crate::rt::block_on(async {
        let mut signals =
            async_signal::Signals::new([async_signal::Signal::Term, async_signal::Signal::Int])
                .map_err(|e| Error::io("cannot install signal handlers", "SIGTERM/SIGINT", e))?;
        signals.next().await;
        Ok::<(), Error>(())
    })?;
    drop(sink);
    Ok(())
}
