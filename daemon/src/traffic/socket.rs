//! Socket primitives the sender and the sink both use: pacing, a TCP stream of writes, UDP
//! datagrams sent (sendmmsg) and received (recvmmsg) in batches, the receive buffer, and what
//! counts as a read that only waited.

use std::io::{self, Write};
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::{Outcome, SendSpec};

/// Paces a sender to a bit rate.
pub struct Pacer {
    start: Instant,
    bytes_per_s: Option<f64>,
}

impl Pacer {
    pub fn new(rate_bps: Option<u64>) -> Pacer {
        Pacer {
            start: Instant::now(),
            bytes_per_s: rate_bps.filter(|r| *r > 0).map(|r| r as f64 / 8.0),
        }
    }

    /// Sleep if `sent` bytes are ahead of the rate.
    pub fn pace(&self, sent: u64) {
        if let Some(rate) = self.bytes_per_s {
            let due = self.start + Duration::from_secs_f64(sent as f64 / rate);
            let now = Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
    }
}

/// Write `spec.size`-byte messages to `s` for `spec.duration` (paced to `spec.rate_bps`).
pub fn tcp_stream(s: &mut TcpStream, spec: &SendSpec) -> io::Result<Outcome> {
    let msg = vec![0x6eu8; spec.size.max(1)];
    let pacer = Pacer::new(spec.rate_bps);
    let start = Instant::now();
    let deadline = start + spec.duration;
    let (mut bytes, mut messages) = (0u64, 0u64);
    loop {
        s.write_all(&msg)?;
        bytes += msg.len() as u64;
        messages += 1;
        // Reading the clock is cheap, but not free at 64-byte writes.
        if messages % 32 == 0 {
            if Instant::now() >= deadline {
                break;
            }
            pacer.pace(bytes);
        }
    }
    Ok(Outcome {
        sent_bytes: bytes,
        sent_messages: messages,
        elapsed_s: start.elapsed().as_secs_f64(),
        ..Default::default()
    })
}

/// A read that timed out (SO_RCVTIMEO) or was interrupted: wait again.
pub fn waited(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// Datagrams per sendmmsg call.
const BATCH: usize = 32;

/// A UDP socket connected to `addr`.
pub fn udp_socket(addr: SocketAddr) -> io::Result<UdpSocket> {
    let bind: SocketAddr = if addr.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    }
    .parse()
    .unwrap();
    let s = UdpSocket::bind(bind)?;
    s.connect(addr)?;
    Ok(s)
}

/// Send `spec.size`-byte datagrams on the connected socket `s` for `spec.duration`,
/// `header(buf, seq)` writing each datagram's header (`header_len` bytes, sequence numbers
/// from 0), in batches of `BATCH` through sendmmsg.
pub fn udp_stream(
    s: &UdpSocket,
    spec: &SendSpec,
    header_len: usize,
    mut header: impl FnMut(&mut [u8], u64),
) -> io::Result<Outcome> {
    if spec.size < header_len {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("UDP message size must be at least {header_len} bytes (the probe header)"),
        ));
    }
    let fd = s.as_raw_fd();
    let size = spec.size;
    let mut bufs = vec![0x75u8; size * BATCH];
    let mut iovs: Vec<libc::iovec> = bufs
        .chunks_mut(size)
        .map(|c| libc::iovec {
            iov_base: c.as_mut_ptr().cast(),
            iov_len: size,
        })
        .collect();
    // SAFETY: zeroed mmsghdr is a valid empty header; each points at one iovec.
    let mut hdrs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    let pacer = Pacer::new(spec.rate_bps);
    let start = Instant::now();
    let deadline = start + spec.duration;
    let (mut seq, mut bytes, mut messages, mut errors) = (0u64, 0u64, 0u64, 0u64);
    while Instant::now() < deadline {
        for (i, chunk) in bufs.chunks_mut(size).enumerate() {
            header(chunk, seq + i as u64);
        }
        let mut done = 0usize;
        while done < BATCH {
            // SAFETY: hdrs[done..] point into `bufs`, alive for the call.
            let n =
                unsafe { libc::sendmmsg(fd, hdrs[done..].as_mut_ptr(), (BATCH - done) as _, 0) };
            if n < 0 {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    // The sink's port is closed (ICMP port unreachable): nothing will arrive.
                    Some(libc::ECONNREFUSED) => return Err(e),
                    Some(libc::EINTR) => continue,
                    // Queue full: the datagram is lost, as on a real link. Count it.
                    _ => {
                        errors += 1;
                        done += 1;
                        std::thread::yield_now();
                        continue;
                    }
                }
            }
            let n = n as usize;
            bytes += (n * size) as u64;
            messages += n as u64;
            done += n;
        }
        // Sequence numbers advance per attempt so the receiver's loss figure is honest.
        seq += BATCH as u64;
        pacer.pace(bytes);
    }
    Ok(Outcome {
        sent_bytes: bytes,
        sent_messages: messages,
        send_errors: errors,
        elapsed_s: start.elapsed().as_secs_f64(),
        ..Default::default()
    })
}

/// Datagrams received in batches (recvmmsg): only the first `SLOT` bytes of each (the probe
/// header) are copied out; MSG_TRUNC makes the kernel report each one's full length. Used by
/// the sink and by the receiver of an ingress probe.
pub struct Batch {
    bufs: Vec<[u8; Batch::SLOT]>,
    // Point into `bufs` and `iovs`: heap buffers that never move (the vectors never grow).
    _iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
}

impl Default for Batch {
    fn default() -> Self {
        Batch::new()
    }
}

impl Batch {
    const SIZE: usize = 64;
    const SLOT: usize = 64;

    pub fn new() -> Batch {
        let mut bufs = vec![[0u8; Batch::SLOT]; Batch::SIZE];
        let mut iovs: Vec<libc::iovec> = bufs
            .iter_mut()
            .map(|b| libc::iovec {
                iov_base: b.as_mut_ptr().cast(),
                iov_len: Batch::SLOT,
            })
            .collect();
        // SAFETY: zeroed mmsghdr is a valid empty header.
        let mut hdrs: Vec<libc::mmsghdr> = (0..Batch::SIZE)
            .map(|_| unsafe { std::mem::zeroed() })
            .collect();
        for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
        }
        Batch {
            bufs,
            _iovs: iovs,
            hdrs,
        }
    }

    /// Wait for datagrams on `fd` (up to its SO_RCVTIMEO); how many arrived.
    pub fn recv(&mut self, fd: i32) -> io::Result<usize> {
        // SAFETY: hdrs, iovs and bufs outlive the call; SIZE entries are initialised.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                Batch::SIZE as _,
                (libc::MSG_TRUNC | libc::MSG_WAITFORONE) as _,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// The full length and the first bytes of datagram `i` of the last batch.
    pub fn datagram(&self, i: usize) -> (u64, &[u8]) {
        (self.hdrs[i].msg_len as u64, &self.bufs[i])
    }
}

pub fn grow_receive_buffer(s: &impl AsRawFd, bytes: i32) {
    let fd = s.as_raw_fd();
    let v = bytes;
    let len = std::mem::size_of::<i32>() as libc::socklen_t;
    // SAFETY: setsockopt with a pointer to an i32 of the given length.
    unsafe {
        // FORCE needs CAP_NET_ADMIN; fall back to the plain option (capped by rmem_max).
        if libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&v as *const i32).cast(),
            len,
        ) != 0
        {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&v as *const i32).cast(),
                len,
            );
        }
    }
}
