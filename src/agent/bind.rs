//! Binding every listening socket before the agent runs, so `main` and the
//! tests learn the real addresses (port 0 works) and a port held by another
//! process stops the start with a message naming it.

use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::PathBuf;

use crate::config::Config;
use crate::net::{bind_tcp, bind_udp_group, bind_unix_datagram, bind_unix_stream, BindError};

/// Listening sockets, bound before the agent runs.
pub struct BoundSockets {
    /// Per StatsD UDP address: one SO_REUSEPORT socket per receiver thread.
    pub udp: Vec<(SocketAddr, Vec<UdpSocket>)>,
    /// StatsD TCP listeners.
    pub tcp: Vec<(SocketAddr, TcpListener)>,
    /// The admin interface, when enabled.
    pub admin: Option<(SocketAddr, TcpListener)>,
    /// The HTTP endpoint, when enabled.
    pub http: Option<(SocketAddr, TcpListener)>,
    /// Carbon line receivers: TCP and UDP on one address.
    pub carbon_line: Vec<(SocketAddr, TcpListener, UdpSocket)>,
    /// Carbon pickle receivers.
    pub carbon_pickle: Vec<(SocketAddr, TcpListener)>,
    /// StatsD unix datagram sockets (removed at shutdown).
    pub unix_datagram: Vec<(PathBuf, UnixDatagram)>,
    /// StatsD unix stream listeners (removed at shutdown).
    pub unix_stream: Vec<(PathBuf, UnixListener)>,
}

impl BoundSockets {
    /// Binds everything `config` asks for.
    pub fn bind(config: &Config) -> Result<BoundSockets, BindError> {
        let listen = &config.listen;
        let udp = listen
            .udp
            .iter()
            .map(|addr| {
                bind_udp_group(
                    "StatsD UDP",
                    *addr,
                    listen.udp_receivers,
                    listen.udp_receive_buffer,
                )
            })
            .collect::<Result<_, _>>()?;
        let tcp = listen
            .tcp
            .iter()
            .map(|addr| bind_tcp("StatsD TCP", *addr))
            .collect::<Result<_, _>>()?;
        let admin = config.admin.map(|a| bind_tcp("admin", a)).transpose()?;
        let http = config
            .http
            .address
            .map(|a| bind_tcp("HTTP", a))
            .transpose()?;
        let mut carbon_line = Vec::new();
        for wanted in &listen.carbon_line {
            let (addr, tcp) = bind_tcp("carbon line TCP", *wanted)?;
            // UDP on the same port as the TCP listener got.
            let (_, mut udp) = bind_udp_group("carbon line UDP", addr, 1, 8 << 20)?;
            if let Some(udp) = udp.pop() {
                carbon_line.push((addr, tcp, udp));
            }
        }
        let carbon_pickle = listen
            .carbon_pickle
            .iter()
            .map(|addr| bind_tcp("carbon pickle", *addr))
            .collect::<Result<_, _>>()?;
        let unix_datagram = listen
            .unix_datagram
            .iter()
            .map(|p| {
                bind_unix_datagram(
                    "StatsD unix datagram",
                    p,
                    listen.unix_access(),
                    listen.udp_receive_buffer,
                )
                .map(|s| (p.clone(), s))
            })
            .collect::<Result<_, _>>()?;
        let unix_stream = listen
            .unix_stream
            .iter()
            .map(|p| {
                bind_unix_stream("StatsD unix stream", p, listen.unix_access())
                    .map(|s| (p.clone(), s))
            })
            .collect::<Result<_, _>>()?;
        Ok(BoundSockets {
            unix_datagram,
            unix_stream,
            udp,
            tcp,
            admin,
            http,
            carbon_line,
            carbon_pickle,
        })
    }
}
