//! `netmoded send`: one probe sender. Probe containers run it as their entrypoint; it also
//! works by hand (and is what bench/sender compares with the iperf3 client).

use std::time::Duration;

use netmode_advisor::api::Protocol;

use crate::error::{Error, Result};
use crate::probe::{self, SendSpec, SenderReport, Target};

pub struct Options {
    pub target: Option<String>,
    pub protocol: Protocol,
    pub size: usize,
    pub duration: Duration,
    pub rate_bps: Option<u64>,
    pub session: Option<u32>,
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
            wait_go: None,
            json: false,
            perf: false,
        }
    }
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
    let target = Target::parse(target).map_err(Error::Usage)?;
    let spec = SendSpec {
        target,
        protocol: o.protocol,
        size: o.size,
        duration: o.duration,
        rate_bps: o.rate_bps,
        session: o.session.unwrap_or_else(probe::new_session),
    };
    let report = if o.wait_go.is_some_and(|limit| !wait_for_go(limit)) {
        SenderReport {
            error: Some("no start signal (SIGUSR1) arrived in time".into()),
            ..Default::default()
        }
    } else {
        let counters = o.perf.then(|| probe::perf::start(0));
        let mut r = probe::send(&spec, false);
        r.perf = counters.map(|c| match c {
            Ok(c) => c.read(),
            Err(unavailable) => unavailable,
        });
        r
    };
    if o.json {
        println!("{}", serde_json::to_string(&report).unwrap_or_default());
    } else if let Some(out) = &report.outcome {
        println!(
            "{} {} B to {}: sent {:.2} Mbit/s, received {:.2} Mbit/s{}, cpu {:.2}s user {:.2}s system",
            spec.protocol.as_str(),
            spec.size,
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
        Some(e) => Err(Error::Probe(e)),
        None => Ok(()),
    }
}
