//! CPU cycles, instructions and CPU migrations through perf_event_open, called as a raw
//! syscall so it builds for every target (the perf crates have no 32-bit ARM bindings). Where
//! the PMU or the kernel refuses, the reason is reported instead of a number. Migrations are a
//! software event: they are counted also where no PMU is exposed (a virtual machine).

use std::io;

use netmode_advisor::api::PerfCounts;

const PERF_TYPE_HARDWARE: u32 = 0;
const PERF_TYPE_SOFTWARE: u32 = 1;
const PERF_COUNT_SW_CPU_MIGRATIONS: u64 = 4;
const PERF_COUNT_HW_CPU_CYCLES: u64 = 0;
const PERF_COUNT_HW_INSTRUCTIONS: u64 = 1;
const PERF_FORMAT_TOTAL_TIME_ENABLED: u64 = 1;
const PERF_FORMAT_TOTAL_TIME_RUNNING: u64 = 2;
const FLAG_INHERIT: u64 = 1 << 1;
const FLAG_EXCLUDE_HV: u64 = 1 << 6;
const PERF_FLAG_FD_CLOEXEC: libc::c_ulong = 8;

/// `struct perf_event_attr` up to PERF_ATTR_SIZE_VER5 (112 bytes), the layout every kernel
/// since 4.1 accepts.
#[repr(C)]
#[derive(Default)]
struct Attr {
    type_: u32,
    size: u32,
    config: u64,
    sample_period: u64,
    sample_type: u64,
    read_format: u64,
    flags: u64,
    wakeup_events: u32,
    bp_type: u32,
    config1: u64,
    config2: u64,
    branch_sample_type: u64,
    sample_regs_user: u64,
    sample_stack_user: u32,
    clockid: i32,
    sample_regs_intr: u64,
    aux_watermark: u32,
    sample_max_stack: u16,
    reserved: u16,
}

struct Event(i32);

impl Drop for Event {
    fn drop(&mut self) {
        // SAFETY: closing a descriptor we own.
        unsafe { libc::close(self.0) };
    }
}

fn open_one(type_: u32, config: u64, pid: i32) -> io::Result<Event> {
    let attr = Attr {
        type_,
        size: std::mem::size_of::<Attr>() as u32,
        config,
        read_format: PERF_FORMAT_TOTAL_TIME_ENABLED | PERF_FORMAT_TOTAL_TIME_RUNNING,
        // Count kernel work too: for networking that is most of it.
        flags: FLAG_INHERIT | FLAG_EXCLUDE_HV,
        ..Attr::default()
    };
    // SAFETY: a valid attr for the duration of the call; the result is a new descriptor.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_perf_event_open,
            &attr as *const Attr,
            pid as libc::c_int,
            -1 as libc::c_int,
            -1 as libc::c_int,
            PERF_FLAG_FD_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Event(fd as i32))
}

impl Event {
    /// The count, scaled for the time the event was multiplexed off the PMU.
    fn read(&self) -> io::Result<u64> {
        let mut v = [0u64; 3];
        // SAFETY: reading 24 bytes into a 24-byte buffer.
        let n = unsafe { libc::read(self.0, v.as_mut_ptr().cast(), std::mem::size_of_val(&v)) };
        if n != std::mem::size_of_val(&v) as isize {
            return Err(io::Error::last_os_error());
        }
        let [value, enabled, running] = v;
        Ok(if running == 0 {
            0
        } else if running < enabled {
            (value as f64 * enabled as f64 / running as f64) as u64
        } else {
            value
        })
    }
}

/// Cycles, instructions and CPU migrations of a process (and the threads and children it
/// creates afterwards).
pub struct Counters {
    /// The hardware pair, or why the PMU refused.
    hardware: Result<(Event, Event), PerfUnavailable>,
    /// The software counter, `None` where perf_event_open refuses altogether.
    migrations: Option<Event>,
}

/// Why perf_event_open failed, in words an operator can act on.
pub fn explain(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::EOPNOTSUPP) | Some(libc::ENODEV) => {
            "no hardware performance counters here (no PMU exposed, e.g. a virtual machine or a kernel without PMU support)".into()
        }
        Some(libc::EACCES) | Some(libc::EPERM) => {
            let paranoid = std::fs::read_to_string("/proc/sys/kernel/perf_event_paranoid")
                .map(|s| s.trim().to_string())
                .unwrap_or_else(|_| "?".into());
            format!("perf_event_open not permitted (kernel.perf_event_paranoid={paranoid}, or CAP_PERFMON missing)")
        }
        Some(libc::ENOSYS) => "kernel built without perf events".into(),
        _ => format!("perf_event_open: {e}"),
    }
}

impl Counters {
    /// Start counting for `pid` (0: the calling thread). Each counter counts where the kernel
    /// allows it; [`Counters::read`] says why a count is missing.
    pub fn start(pid: i32) -> Counters {
        let hardware = open_one(PERF_TYPE_HARDWARE, PERF_COUNT_HW_CPU_CYCLES, pid)
            .and_then(|c| {
                Ok((
                    c,
                    open_one(PERF_TYPE_HARDWARE, PERF_COUNT_HW_INSTRUCTIONS, pid)?,
                ))
            })
            .map_err(|e| PerfUnavailable(explain(&e)));
        let migrations = open_one(PERF_TYPE_SOFTWARE, PERF_COUNT_SW_CPU_MIGRATIONS, pid).ok();
        Counters {
            hardware,
            migrations,
        }
    }

    /// Whether hardware counters count here, or why not (the study's machine description).
    pub fn hardware(&self) -> Result<(), PerfUnavailable> {
        self.hardware.as_ref().map(|_| ()).map_err(Clone::clone)
    }

    pub fn read(&self) -> PerfCounts {
        let cpu_migrations = self.migrations.as_ref().and_then(|m| m.read().ok());
        let mut counts = match &self.hardware {
            Err(why) => PerfCounts::unavailable(why.0.clone()),
            Ok((cycles, instructions)) => match (cycles.read(), instructions.read()) {
                (Ok(c), Ok(i)) => PerfCounts {
                    cycles: Some(c),
                    instructions: Some(i),
                    ipc: (c > 0).then(|| i as f64 / c as f64),
                    ..PerfCounts::default()
                },
                (Err(e), _) | (_, Err(e)) => {
                    PerfCounts::unavailable(format!("reading counters: {e}"))
                }
            },
        };
        counts.cpu_migrations = cpu_migrations;
        counts
    }
}

/// Why hardware counters cannot count here (no PMU, not permitted), in words.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{0}")]
pub struct PerfUnavailable(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attr_has_the_ver5_layout() {
        assert_eq!(std::mem::size_of::<Attr>(), 112);
    }

    /// On a machine with a PMU this counts; without one (this CI's VMs) it must say why,
    /// never panic or report zeros as if they were measured.
    /// On a machine with a PMU this counts; without one (this CI's VMs) it must say why,
    /// never panic or report zeros as if they were measured. Migrations (a software event)
    /// count wherever perf_event_open is permitted.
    #[test]
    fn counts_or_explains() {
        let c = Counters::start(0);
        let mut x = 0u64;
        for i in 0..1_000_000u64 {
            x = x.wrapping_add(std::hint::black_box(i));
        }
        let r = c.read();
        match c.hardware() {
            Ok(()) => {
                assert!(r.unavailable.is_none(), "{r:?} {x}");
                assert!(r.instructions.unwrap() > 1_000_000, "{r:?}");
                assert!(r.ipc.is_some());
            }
            Err(PerfUnavailable(reason)) => {
                assert_eq!(r.unavailable.as_deref(), Some(reason.as_str()));
                assert_eq!((r.cycles, r.instructions, r.ipc), (None, None, None));
                eprintln!("hardware counters unavailable here: {reason}");
            }
        }
        // Root (as the tests run) may open software events whatever perf_event_paranoid says.
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert!(r.cpu_migrations.is_some(), "{r:?}");
        }
    }

    /// A thread made to hop between CPUs is seen migrating.
    #[test]
    fn migrations_are_counted() {
        // SAFETY: geteuid has no preconditions.
        let ncpu = std::thread::available_parallelism().map_or(1, |n| n.get());
        if unsafe { libc::geteuid() } != 0 || ncpu < 2 {
            eprintln!("skipped: needs root and 2 CPUs");
            return;
        }
        let n = std::thread::spawn(move || {
            let c = Counters::start(0);
            for i in 0..20 {
                // SAFETY: a zeroed cpu_set_t with one CPU set, for the calling thread.
                unsafe {
                    let mut set: libc::cpu_set_t = std::mem::zeroed();
                    libc::CPU_SET(i % 2, &mut set);
                    libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
                }
                std::thread::yield_now();
            }
            c.read().cpu_migrations
        })
        .join()
        .unwrap();
        assert!(n.unwrap_or(0) >= 10, "{n:?} migrations for 20 moves");
    }
}
