//! UDP receivers: one OS thread per SO_REUSEPORT socket, each receiving
//! batches of datagrams with recvmmsg and parsing them in place from its
//! receive buffers. A batch's samples reach the shards with one lock per
//! shard. At shutdown a receiver drains what its socket still holds.

use std::io;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::time::Duration;

use super::Packets;
use crate::shutdown::Shutdown;
use crate::telemetry::Counter;

/// Largest UDP payload over IPv4.
const DATAGRAM_MAX: usize = 65536;
/// Bytes from one receive slot to the next: a datagram's room and 17
/// cache lines more. At a stride of exactly 64 KiB every datagram's
/// first lines fall into the same cache sets, and a batch of 32 evicts
/// itself before it is parsed; an odd number of extra lines spreads them.
const SLOT: usize = DATAGRAM_MAX + 17 * 64;
/// Datagrams per recvmmsg call.
const BATCH: usize = 32;
/// u64 words of control buffer per message (CMSG_SPACE(4) is 24 bytes).
const CONTROL_WORDS: usize = 4;
/// How often a blocked receiver looks at the stop flag.
const POLL: Duration = Duration::from_millis(100);
/// After a receive that emptied the socket, how long a receiver lets
/// datagrams gather before it asks again: at rates where a blocking
/// receive would wake for every few datagrams, the wake-ups cost more than
/// the datagrams (at one line per datagram, about half of the CPU). Far
/// below a flush interval, so no sample changes interval by it.
const GATHER: Duration = Duration::from_millis(2);
/// The receive buffer needed to gather: 2 ms of datagrams must fit
/// with room to spare at any rate one host can send.
const GATHER_MIN_BUFFER: usize = 4 << 20;

/// Receive buffers and the kernel structures pointing into them.
struct MmsgBuffers {
    data: Vec<u8>,
    /// One control buffer per message, for the SO_RXQ_OVFL drop counter.
    control: Vec<u64>,
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: the raw pointers in iovecs/headers point into `data` and
// `control`, which this struct owns and never reallocates; the struct
// moves between threads whole, so no pointer outlives or escapes it.
unsafe impl Send for MmsgBuffers {}

impl MmsgBuffers {
    fn new() -> Box<MmsgBuffers> {
        let mut b = Box::new(MmsgBuffers {
            data: vec![0u8; SLOT * BATCH],
            control: vec![0u64; CONTROL_WORDS * BATCH],
            iovecs: Vec::with_capacity(BATCH),
            headers: Vec::with_capacity(BATCH),
        });
        let base = b.data.as_mut_ptr();
        for i in 0..BATCH {
            b.iovecs.push(libc::iovec {
                // SAFETY: in bounds, i * SLOT + DATAGRAM_MAX <= data.len().
                iov_base: unsafe { base.add(i * SLOT) }.cast(),
                iov_len: DATAGRAM_MAX,
            });
        }
        let iov = b.iovecs.as_mut_ptr();
        let control = b.control.as_mut_ptr();
        for i in 0..BATCH {
            // SAFETY: mmsghdr is plain data; all-zero is a valid empty
            // header.
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            // SAFETY: in bounds, i < BATCH == iovecs.len().
            h.msg_hdr.msg_iov = unsafe { iov.add(i) };
            h.msg_hdr.msg_iovlen = 1;
            // SAFETY: in bounds, i * CONTROL_WORDS < control.len().
            h.msg_hdr.msg_control = unsafe { control.add(i * CONTROL_WORDS) }.cast();
            h.msg_hdr.msg_controllen = CONTROL_WORDS * 8;
            b.headers.push(h);
        }
        b
    }

    /// Receives up to BATCH datagrams; returns how many arrived.
    fn receive(&mut self, socket: RawFd, flags: libc::c_int) -> io::Result<usize> {
        for h in &mut self.headers {
            h.msg_len = 0;
            h.msg_hdr.msg_controllen = CONTROL_WORDS * 8;
        }
        // SAFETY: headers[i] points at iovecs[i], which points at a distinct
        // DATAGRAM_MAX-byte slice of `data` (slots SLOT bytes apart); all
        // three live as long as self and are not touched by Rust during the
        // call. The kernel writes at most iov_len bytes per message and
        // BATCH headers.
        let n = unsafe {
            libc::recvmmsg(
                socket,
                self.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                flags,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }

    /// The socket's cumulative kernel drop count carried by message `i`
    /// (SO_RXQ_OVFL), if the kernel attached one.
    fn drops(&self, i: usize) -> Option<u32> {
        let h = &self.headers[i].msg_hdr;
        // SAFETY: msg_control points at this message's control buffer and
        // the kernel set msg_controllen to the bytes it wrote there; the
        // CMSG_* macros only walk within those bytes.
        unsafe {
            let mut cmsg = libc::CMSG_FIRSTHDR(h);
            while !cmsg.is_null() {
                if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SO_RXQ_OVFL
                {
                    let data = libc::CMSG_DATA(cmsg).cast::<u32>();
                    return Some(data.read_unaligned());
                }
                cmsg = libc::CMSG_NXTHDR(h, cmsg);
            }
        }
        None
    }

    fn datagram(&self, i: usize) -> &[u8] {
        let len = (self.headers[i].msg_len as usize).min(DATAGRAM_MAX);
        &self.data[i * SLOT..i * SLOT + len]
    }
}

/// Runs one receiver until `shutdown`, then drains the socket and
/// returns. Meant for its own OS thread.
/// `socket` is a UDP or a unix datagram socket.
pub fn receive_loop(socket: impl AsFd, mut packets: impl Packets, shutdown: Shutdown) {
    if let Err(e) = socket2::SockRef::from(&socket).set_read_timeout(Some(POLL)) {
        tracing::error!(error = %e, "cannot set the UDP read timeout; receiver stops");
        return;
    }
    let gather = gather_delay(&socket);
    let mut buffers = MmsgBuffers::new();
    let mut drops_seen = 0u32;
    loop {
        let draining = shutdown.is_triggered();
        let flags = if draining {
            libc::MSG_DONTWAIT
        } else {
            libc::MSG_WAITFORONE
        };
        match buffers.receive(socket.as_fd().as_raw_fd(), flags) {
            Ok(n) => {
                for i in 0..n {
                    packets.packet(buffers.datagram(i));
                }
                packets.commit();
                if n < BATCH && !draining {
                    if let Some(delay) = gather {
                        std::thread::sleep(delay);
                    }
                }
                if let Some(drops) = (0..n).filter_map(|i| buffers.drops(i)).max() {
                    // The kernel's count only grows (it wraps at 2^32).
                    let new = drops.wrapping_sub(drops_seen);
                    if new > 0 && new < u32::MAX / 2 {
                        packets
                            .telemetry()
                            .add(Counter::KernelDroppedDatagrams, u64::from(new));
                        drops_seen = drops;
                    }
                }
            }
            Err(e) if is_timeout(&e) => {
                if draining {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(error = %e, "UDP receive failed");
                if draining {
                    return;
                }
                std::thread::sleep(POLL);
            }
        }
    }
}

/// Whether this socket's receive buffer is large enough to let datagrams
/// gather between receives (the default 64 MiB is; a kernel that granted
/// less, such as Debian's 208 KiB default cap, is served by waking at once).
fn gather_delay(socket: &impl AsFd) -> Option<Duration> {
    let granted = socket2::SockRef::from(socket)
        .recv_buffer_size()
        .unwrap_or(0);
    (granted >= GATHER_MIN_BUFFER).then_some(GATHER)
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_receive_buffer_wakes_at_once_and_a_large_one_gathers() {
        let small = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        socket2::SockRef::from(&small)
            .set_recv_buffer_size(64 * 1024)
            .expect("set buffer");
        assert_eq!(gather_delay(&small), None);
        let large = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let sock = socket2::SockRef::from(&large);
        // Granted only up to net.core.rmem_max unless privileged.
        let _ = sock.set_recv_buffer_size(GATHER_MIN_BUFFER);
        let granted = sock.recv_buffer_size().expect("buffer size");
        let want = (granted >= GATHER_MIN_BUFFER).then_some(GATHER);
        assert_eq!(gather_delay(&large), want);
    }
}
