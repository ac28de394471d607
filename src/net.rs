//! Sockets for every listener: options, binding (refusing an address that
//! another process holds), and the one TCP accept loop, which backs off on
//! errors such as EMFILE instead of spinning.

use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::{TcpListener, TcpStream};

use crate::shutdown::Shutdown;
use crate::telemetry::LogLimit;

/// Why a listening socket could not be had.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another socket holds the address.
    #[error(
        "{what} {addr} is already in use by another process (is another sluice or statsd running?)"
    )]
    InUse {
        /// What was being bound ("StatsD UDP", "admin"...).
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
    },
    /// A unix socket path that could not be had.
    #[error("cannot bind {what} {}: {source}", path.display())]
    Unix {
        /// What was being bound.
        what: &'static str,
        /// The socket file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Any other failure.
    #[error("cannot bind {what} {addr}: {source}")]
    Io {
        /// What was being bound.
        what: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The system's error.
        source: std::io::Error,
    },
}

fn bind_error(what: &'static str, addr: SocketAddr, source: std::io::Error) -> BindError {
    if source.kind() == std::io::ErrorKind::AddrInUse {
        BindError::InUse { what, addr }
    } else {
        BindError::Io { what, addr, source }
    }
}

/// `count` UDP sockets sharing one address through SO_REUSEPORT, each with
/// `receive_buffer` bytes of receive buffer; returns the address bound
/// (port 0 becomes a real port).
///
/// SO_REUSEPORT would also let a second sluice (same user) bind the port
/// and silently take half the traffic, so the address is first bound by a
/// plain socket, which fails if anyone holds it.
pub fn bind_udp_group(
    what: &'static str,
    addr: SocketAddr,
    count: usize,
    receive_buffer: usize,
) -> Result<(SocketAddr, Vec<UdpSocket>), BindError> {
    let probe = UdpSocket::bind(addr).map_err(|e| bind_error(what, addr, e))?;
    let actual = probe.local_addr().map_err(|e| bind_error(what, addr, e))?;
    drop(probe);
    let mut sockets = Vec::with_capacity(count);
    for _ in 0..count.max(1) {
        let socket =
            reuseport_udp(actual, receive_buffer).map_err(|e| bind_error(what, addr, e))?;
        sockets.push(socket);
    }
    Ok((actual, sockets))
}

fn reuseport_udp(addr: SocketAddr, receive_buffer: usize) -> std::io::Result<UdpSocket> {
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_port(true)?;
    set_receive_buffer(&socket, receive_buffer);
    enable_drop_counter(&socket);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// A non-blocking TCP listener on `addr` (SO_REUSEADDR, so a restart does
/// not wait for TIME_WAIT; two listeners on one address still fail).
pub fn bind_tcp(
    what: &'static str,
    addr: SocketAddr,
) -> Result<(SocketAddr, std::net::TcpListener), BindError> {
    let fail = |e| bind_error(what, addr, e);
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None).map_err(fail)?;
    socket.set_reuse_address(true).map_err(fail)?;
    socket.bind(&addr.into()).map_err(fail)?;
    socket.listen(1024).map_err(fail)?;
    socket.set_nonblocking(true).map_err(fail)?;
    let listener: std::net::TcpListener = socket.into();
    let actual = listener.local_addr().map_err(fail)?;
    Ok((actual, listener))
}

/// Sets an integer socket option.
fn set_int_option(
    socket: &impl AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: setsockopt reads exactly size_of::<c_int>() bytes from
    // `value`, which lives for the call; the descriptor is open (borrowed
    // from a live socket).
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Asks for `wanted` bytes of receive buffer: SO_RCVBUFFORCE (exceeds
/// rmem_max, needs CAP_NET_ADMIN), else SO_RCVBUF (capped by rmem_max).
fn set_receive_buffer(socket: &Socket, wanted: usize) {
    let size = wanted.min(i32::MAX as usize) as libc::c_int;
    let forced = set_int_option(socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, size).is_ok();
    if !forced {
        let _ = socket.set_recv_buffer_size(wanted);
    }
    let got = socket.recv_buffer_size().unwrap_or(0);
    tracing::debug!(wanted, got, forced, "UDP receive buffer");
    if got < wanted {
        tracing::warn!(
            wanted,
            got,
            "UDP receive buffer smaller than configured (raise net.core.rmem_max or grant CAP_NET_ADMIN)"
        );
    }
}

/// Asks the kernel to attach the socket's drop count to each datagram
/// (SO_RXQ_OVFL), which the receivers report as kernel drops.
fn enable_drop_counter(socket: &Socket) {
    if let Err(e) = set_int_option(socket, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1) {
        tracing::warn!(error = %e, "SO_RXQ_OVFL unavailable: kernel drops per socket are not reported");
    }
}

/// A listening stream socket: TCP, or a unix stream socket.
pub trait Acceptor {
    /// An accepted connection.
    type Stream;
    /// Who connected.
    type Peer: std::fmt::Debug;
    /// The next connection.
    fn accept_one(
        &self,
    ) -> impl std::future::Future<Output = std::io::Result<(Self::Stream, Self::Peer)>> + Send;
}

impl Acceptor for TcpListener {
    type Stream = TcpStream;
    type Peer = SocketAddr;
    fn accept_one(
        &self,
    ) -> impl std::future::Future<Output = std::io::Result<(TcpStream, SocketAddr)>> + Send {
        self.accept()
    }
}

impl Acceptor for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    type Peer = tokio::net::unix::SocketAddr;
    fn accept_one(
        &self,
    ) -> impl std::future::Future<Output = std::io::Result<(Self::Stream, Self::Peer)>> + Send {
        self.accept()
    }
}

/// Makes `path` free for a new socket file: nothing there, or a socket
/// file nobody listens on (left by an earlier run, which a crash does not
/// remove). A live socket or any other kind of file is left alone.
fn free_socket_path(what: &'static str, path: &Path) -> Result<(), BindError> {
    use std::os::unix::fs::FileTypeExt;
    let fail = |source| BindError::Unix {
        what,
        path: path.to_path_buf(),
        source,
    };
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return Ok(());
    };
    if !meta.file_type().is_socket() {
        return Err(fail(std::io::Error::other(
            "the path exists and is not a socket; not removed",
        )));
    }
    let live = std::os::unix::net::UnixStream::connect(path).is_ok()
        || std::os::unix::net::UnixDatagram::unbound()
            .and_then(|s| s.connect(path))
            .is_ok();
    if live {
        return Err(fail(std::io::Error::new(
            std::io::ErrorKind::AddrInUse,
            "another process listens on this socket",
        )));
    }
    tracing::info!(listener = what, path = %path.display(), "removing a stale socket file from an earlier run");
    std::fs::remove_file(path).map_err(fail)
}

/// Who may use a socket file: its permission bits, and the owner and
/// group to give it (`None`: left as created).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnixAccess {
    /// Permission bits.
    pub mode: u32,
    /// Owner (uid).
    pub owner: Option<u32>,
    /// Group (gid).
    pub group: Option<u32>,
}

fn set_access(what: &'static str, path: &Path, access: UnixAccess) -> Result<(), BindError> {
    use std::os::unix::fs::PermissionsExt;
    let fail = |source| BindError::Unix {
        what,
        path: path.to_path_buf(),
        source,
    };
    if access.owner.is_some() || access.group.is_some() {
        std::os::unix::fs::chown(path, access.owner, access.group).map_err(fail)?;
    }
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(access.mode)).map_err(fail)
}

/// A unix datagram socket at `path`, its file given `access`.
pub fn bind_unix_datagram(
    what: &'static str,
    path: &Path,
    access: UnixAccess,
    receive_buffer: usize,
) -> Result<std::os::unix::net::UnixDatagram, BindError> {
    free_socket_path(what, path)?;
    let fail = |source| BindError::Unix {
        what,
        path: path.to_path_buf(),
        source,
    };
    let socket = std::os::unix::net::UnixDatagram::bind(path).map_err(fail)?;
    // A bigger buffer rides out bursts, as for UDP; the kernel caps it.
    let _ = socket2::SockRef::from(&socket).set_recv_buffer_size(receive_buffer);
    set_access(what, path, access)?;
    Ok(socket)
}

/// A unix stream listener at `path`, its file given `access`.
pub fn bind_unix_stream(
    what: &'static str,
    path: &Path,
    access: UnixAccess,
) -> Result<std::os::unix::net::UnixListener, BindError> {
    free_socket_path(what, path)?;
    let listener =
        std::os::unix::net::UnixListener::bind(path).map_err(|source| BindError::Unix {
            what,
            path: path.to_path_buf(),
            source,
        })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| BindError::Unix {
            what,
            path: path.to_path_buf(),
            source,
        })?;
    set_access(what, path, access)?;
    Ok(listener)
}

/// First and longest pause after a failed accept.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Accepts connections on `listener` until `shutdown`, handing each to
/// `on_accept`. A failed accept (EMFILE, ENFILE, ENOBUFS...) is logged at
/// most once a second with the count in between, and the loop pauses,
/// doubling from 10 ms up to 1 s, so running out of descriptors does not
/// spin a core.
pub async fn accept_loop<L: Acceptor>(
    what: &'static str,
    listener: &L,
    mut shutdown: Shutdown,
    mut on_accept: impl FnMut(L::Stream, L::Peer),
) {
    let mut backoff = ACCEPT_BACKOFF_MIN;
    let mut log = LogLimit::per_second();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept_one() => accepted,
            _ = shutdown.wait() => return,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                on_accept(stream, peer);
            }
            Err(e) => {
                if let Some(suppressed) = log.ready() {
                    tracing::warn!(listener = what, error = %e, suppressed, ?backoff,
                        "accept failed; pausing before the next accept");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shutdown.wait() => return,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_udp_port_is_refused() {
        let (addr, sockets) =
            bind_udp_group("StatsD UDP", "127.0.0.1:0".parse().unwrap(), 2, 4096).unwrap();
        assert_eq!(sockets.len(), 2);
        assert_ne!(addr.port(), 0);
        match bind_udp_group("StatsD UDP", addr, 2, 4096) {
            Err(BindError::InUse { addr: a, .. }) => assert_eq!(a, addr),
            other => panic!("a held port was bound again: {other:?}"),
        }
        let message = bind_udp_group("StatsD UDP", addr, 1, 4096)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains(&addr.to_string()) && message.contains("in use"),
            "{message}"
        );
    }

    #[test]
    fn a_held_tcp_port_is_refused() {
        let (addr, _listener) = bind_tcp("admin", "127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(matches!(
            bind_tcp("admin", addr),
            Err(BindError::InUse { .. })
        ));
    }
}
