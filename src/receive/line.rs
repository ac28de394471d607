//! Carbon's line protocol: `path value timestamp\n` over TCP (partial
//! lines kept across reads, over-long lines skipped, an unterminated last
//! line processed at close) and over UDP (several lines per datagram).

use std::net::UdpSocket;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use super::{Intake, ReceiveContext};
use crate::shutdown::Shutdown;

/// Serves the TCP line receiver until `shutdown`, then lets each open
/// connection take what it already holds.
pub async fn serve_tcp(listener: TcpListener, ctx: Arc<ReceiveContext>, shutdown: Shutdown) {
    super::serve_connections("carbon line TCP", listener, ctx, shutdown, connection).await;
}

async fn connection(mut stream: TcpStream, ctx: Arc<ReceiveContext>, mut shutdown: Shutdown) {
    let mut intake = Intake::new(&ctx);
    let mut framer = Framer::new(ctx.max_line_length);
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        let read = tokio::select! {
            read = stream.read(&mut chunk) => read,
            _ = shutdown.wait() => {
                while let Ok(n) = stream.try_read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    framer.feed(&chunk[..n], &mut intake);
                }
                break;
            }
        };
        match read {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                intake.tick();
                framer.feed(&chunk[..n], &mut intake);
                intake.relay_now();
            }
        }
    }
    framer.finish(&mut intake);
}

/// Newline framing with a length bound.
struct Framer {
    partial: Vec<u8>,
    max: usize,
    skipping: bool,
}

impl Framer {
    fn new(max: usize) -> Framer {
        Framer {
            partial: Vec::new(),
            max,
            skipping: false,
        }
    }

    fn feed(&mut self, mut data: &[u8], intake: &mut Intake<'_>) {
        while let Some(end) = memchr::memchr(b'\n', data) {
            let piece = &data[..end];
            if self.skipping {
                self.skipping = false;
            } else if self.partial.is_empty() {
                if piece.len() > self.max {
                    intake.too_long(piece.len());
                } else {
                    intake.line(piece);
                }
            } else {
                self.partial.extend_from_slice(piece);
                if self.partial.len() > self.max {
                    intake.too_long(self.partial.len());
                } else {
                    intake.line(&self.partial);
                }
                self.partial.clear();
            }
            data = &data[end + 1..];
        }
        if self.skipping {
            return;
        }
        self.partial.extend_from_slice(data);
        if self.partial.len() > self.max {
            intake.too_long(self.partial.len());
            self.partial.clear();
            self.skipping = true;
        }
    }

    /// Carbon drops an unterminated last line; sluice keeps it.
    fn finish(&mut self, intake: &mut Intake<'_>) {
        if !self.skipping && !self.partial.is_empty() {
            let last = std::mem::take(&mut self.partial);
            intake.line(&last);
        }
    }
}

/// Receives line datagrams on `socket` until `shutdown` (an OS thread).
pub fn receive_udp(socket: UdpSocket, ctx: Arc<ReceiveContext>, shutdown: Shutdown) {
    if let Err(e) = socket.set_read_timeout(Some(Duration::from_millis(100))) {
        tracing::error!(error = %e, "cannot set the carbon UDP read timeout; receiver stops");
        return;
    }
    let mut intake = Intake::new(&ctx);
    let mut buf = vec![0u8; 65536];
    loop {
        let draining = shutdown.is_triggered();
        if draining {
            let _ = socket.set_nonblocking(true);
        }
        match socket.recv(&mut buf) {
            Ok(n) => {
                intake.tick();
                for line in buf[..n].split(|b| *b == b'\n') {
                    if line.len() > ctx.max_line_length {
                        intake.too_long(line.len());
                    } else {
                        intake.line(line);
                    }
                }
                intake.relay_now();
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if draining {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                tracing::warn!(error = %e, "carbon UDP receive failed");
                if draining {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}
