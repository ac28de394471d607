//! Carbon's pickle protocol: frames of a 4-byte big-endian length and a
//! pickle of `[(path, (timestamp, value)), ...]`, decoded by the safe
//! decoder (no global, class or reduce is ever executed). A frame over the
//! size limit is skipped, not fatal; a frame that does not decode is
//! counted and skipped; the connection goes on (carbon closes it and loses
//! what follows).

use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};

use super::{Intake, ReceiveContext};
use crate::shutdown::Shutdown;
use crate::telemetry::{Counter, LogLimit};

/// Serves the pickle receiver until `shutdown`.
pub async fn serve(listener: TcpListener, ctx: Arc<ReceiveContext>, shutdown: Shutdown) {
    super::serve_connections("carbon pickle", listener, ctx, shutdown, connection).await;
}

async fn connection(mut stream: TcpStream, ctx: Arc<ReceiveContext>, mut shutdown: Shutdown) {
    let mut intake = Intake::new(&ctx);
    let mut refused_log = LogLimit::per_second();
    loop {
        let mut header = [0u8; 4];
        let read = tokio::select! {
            read = stream.read_exact(&mut header) => read,
            _ = shutdown.wait() => return,
        };
        if read.is_err() {
            return;
        }
        let length = u32::from_be_bytes(header) as usize;
        if length > ctx.max_frame_bytes {
            let total = ctx.telemetry.add(Counter::CarbonPickleFramesRefused, 1);
            if let Some(suppressed) = refused_log.ready() {
                tracing::warn!(
                    bytes = length,
                    limit = ctx.max_frame_bytes,
                    refused_total = total,
                    suppressed,
                    "pickle frame over listen.carbon_pickle_max_frame; skipped"
                );
            }
            // Skip it, bounded by what the sender really sends.
            let mut rest = (&mut stream).take(length as u64);
            if tokio::io::copy(&mut rest, &mut tokio::io::sink())
                .await
                .is_err()
            {
                return;
            }
            continue;
        }
        let mut frame = vec![0u8; length];
        if stream.read_exact(&mut frame).await.is_err() {
            return;
        }
        intake.tick();
        match crate::protocol::pickle::decode_points(&frame) {
            Ok(points) => {
                for (name, ts, value) in points {
                    if value.is_nan() {
                        ctx.telemetry.add(Counter::CarbonNanDropped, 1);
                        continue;
                    }
                    if !ts.is_finite() || ts.abs() > 1e15 {
                        ctx.telemetry.add(Counter::CarbonBadLines, 1);
                        continue;
                    }
                    let ts = ts.trunc() as i64;
                    let ts = if ts == -1 {
                        crate::telemetry::unix_now_rounded()
                    } else {
                        ts
                    };
                    intake.point(&name, ts, value);
                }
                intake.relay_now();
            }
            Err(e) => {
                let total = ctx.telemetry.add(Counter::CarbonPickleFramesRefused, 1);
                if let Some(suppressed) = refused_log.ready() {
                    tracing::warn!(error = %e, refused_total = total, suppressed, "pickle frame refused");
                }
            }
        }
    }
}
