//! `netmoded send`: one probe sender. Probe containers run it as their entrypoint; it also
//! works by hand (and is what bench/sender compares with the iperf3 client).

use std::time::Duration;

use netmode_advisor::api::{Direction, Pattern, Protocol};

use super::{Arg, Global, parse_rest, text};
use crate::config::MAX_RR_IN_FLIGHT;
use crate::error::{Error, ProbeError, Result};
use crate::traffic::{self, SendSpec, SenderReport, Target};

pub struct Options {
    pub target: Option<String>,
    pub protocol: Protocol,
    pub size: usize,
    pub duration: Duration,
    pub rate_bps: Option<u64>,
    pub session: Option<u32>,
    /// Ingress: the sink sends and this end receives.
    pub direction: Direction,
    pub pattern: Pattern,
    /// Request/response: exchanges in flight, each on its own connection.
    pub in_flight: usize,
    /// Wait up to this long for SIGUSR1 before sending (the daemon's start signal).
    pub wait_go: Option<Duration>,
    pub json: bool,
    /// Count cycles and instructions of this process itself.
    pub perf: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            target: None,
            protocol: Protocol::Tcp,
            size: 1024,
            duration: Duration::from_secs(3),
            rate_bps: None,
            session: None,
            direction: Direction::Egress,
            pattern: Pattern::Stream,
            in_flight: 1,
            wait_go: None,
            json: false,
            perf: false,
        }
    }
}

/// `send`'s options; anything else is refused.
pub fn parse(p: &mut lexopt::Parser, global: &mut Global) -> Result<Options> {
    let mut o = Options::default();
    let bad = |m: String| super::usage(m);
    parse_rest("send", p, global, |arg, p| {
        let Arg::Long(name) = arg else {
            return Ok(false);
        };
        match name.as_str() {
            "target" => o.target = Some(text(p)?),
            "protocol" => {
                o.protocol = match text(p)?.as_str() {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    other => return Err(bad(format!("--protocol {other:?}: tcp or udp"))),
                }
            }
            "direction" => {
                o.direction = match text(p)?.as_str() {
                    "egress" => Direction::Egress,
                    "ingress" => Direction::Ingress,
                    other => {
                        return Err(bad(format!(
                            "--direction {other:?}: egress (this end sends) or ingress (the sink sends)"
                        )));
                    }
                }
            }
            "pattern" => {
                o.pattern = match text(p)?.as_str() {
                    "stream" => Pattern::Stream,
                    "request-response" | "rr" => Pattern::RequestResponse,
                    other => {
                        return Err(bad(format!(
                            "--pattern {other:?}: stream or request-response"
                        )));
                    }
                }
            }
            "size" => {
                let v = text(p)?;
                o.size =
                    v.parse().ok().filter(|s| *s >= 1).ok_or_else(|| {
                        bad(format!("--size {v:?}: a number of bytes, 1 or more"))
                    })?;
            }
            "in-flight" => {
                let v = text(p)?;
                o.in_flight = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_RR_IN_FLIGHT as usize).contains(n))
                    .ok_or_else(|| {
                        bad(format!(
                            "--in-flight {v:?}: exchanges at once, 1..{MAX_RR_IN_FLIGHT}"
                        ))
                    })?;
            }
            "duration" => {
                let v = text(p)?;
                o.duration = humantime::parse_duration(&v)
                    .ok()
                    .filter(|d| !d.is_zero() && d.as_secs() <= 3600)
                    .ok_or_else(|| bad(format!("--duration {v:?}: like 3s, up to 1h")))?;
            }
            "rate" => {
                o.rate_bps =
                    Some(crate::config::parse_rate(&text(p)?).map_err(|e| bad(e.to_string()))?)
            }
            "session" => {
                let v = text(p)?;
                o.session = Some(
                    v.parse()
                        .map_err(|_| bad(format!("--session {v:?}: a number")))?,
                );
            }
            "wait-go" => {
                let v = text(p)?;
                o.wait_go = Some(
                    humantime::parse_duration(&v)
                        .map_err(|e| bad(format!("--wait-go {v:?}: {e}")))?,
                );
            }
            "json" => o.json = true,
            "perf" => o.perf = true,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(o)
}

static GO: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

extern "C" fn on_go(_: libc::c_int) {
    GO.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Wait up to `limit` for SIGUSR1; `false` on timeout. A handler goes in first: from then
/// on the daemon sees the signal as caught (`SigCgt` in /proc/PID/status) and a signal cannot
/// be lost, whether it lands before the wait (the handler notes it) or during it.
fn wait_for_go(limit: Duration) -> bool {
    use std::sync::atomic::Ordering;
    // SAFETY: installing an async-signal-safe handler and changing this thread's mask; no
    // other thread exists yet.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_go as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGUSR1, &sa, std::ptr::null_mut());
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if GO.load(Ordering::SeqCst) {
            return true;
        }
        let ts = libc::timespec {
            tv_sec: limit.as_secs() as _,
            tv_nsec: limit.subsec_nanos() as _,
        };
        loop {
            let r = libc::sigtimedwait(&set, std::ptr::null_mut(), &ts);
            if r == libc::SIGUSR1 || GO.load(Ordering::SeqCst) {
                return true;
            }
            if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
                return false;
            }
        }
    }
}

pub fn run(o: Options) -> Result<()> {
    let target = o.target.as_deref().ok_or_else(|| {
        Error::Usage("send needs --target netmode://HOST:PORT or iperf3://HOST:PORT".into())
    })?;
    let target = Target::parse(target).map_err(|e| Error::Usage(e.to_string()))?;
    if o.size > o.protocol.max_message() as usize {
        return Err(Error::Usage(format!(
            "--size {}: a {} message is at most {} bytes",
            o.size,
            o.protocol.as_str(),
            o.protocol.max_message()
        )));
    }
    let spec = SendSpec {
        target,
        protocol: o.protocol,
        size: o.size,
        duration: o.duration,
        rate_bps: o.rate_bps,
        session: o.session.unwrap_or_else(traffic::new_session),
        direction: o.direction,
        pattern: o.pattern,
        in_flight: o.in_flight,
    };
    let report = if o.wait_go.is_some_and(|limit| !wait_for_go(limit)) {
        SenderReport {
            error: Some("no start signal (SIGUSR1) arrived in time".into()),
            ..Default::default()
        }
    } else {
        let counters = o.perf.then(|| traffic::perf::Counters::start(0));
        let mut r = traffic::send(&spec, false);
        r.perf = counters.map(|c| c.read());
        r
    };
    if o.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else if let Some(out) = &report.outcome {
        println!(
            "{} {} B {} {}: sent {:.2} Mbit/s, received {:.2} Mbit/s{}, cpu {:.2}s user {:.2}s system",
            spec.protocol.as_str(),
            spec.size,
            match spec.direction {
                Direction::Egress => "to",
                Direction::Ingress => "from",
            },
            spec.target,
            out.sent_bps() / 1e6,
            out.goodput_bps() / 1e6,
            out.loss
                .map(|l| format!(" (loss {:.2}%)", l * 100.0))
                .unwrap_or_default(),
            report.usage.user_s,
            report.usage.system_s,
        );
    }
    match report.error {
        Some(e) => Err(Error::Probe(ProbeError::Sender(e))),
        None => Ok(()),
    }
}
