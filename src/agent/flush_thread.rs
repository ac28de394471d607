//! The flush thread: flushes every interval (each flush due one interval
//! after the previous one was due) and once more at shutdown, stamps each
//! flush so two never share a second, and hands the batch to every sink.
//! The arithmetic runs here, off the async runtime.

use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::aggregate::flush::Flusher;
use crate::config::{Naming, StatsConfig};
use crate::point::PointBatch;
use crate::sink::SinkHandle;
use crate::telemetry::unix_now_f64;

/// Messages to the flush thread.
pub(crate) enum FlushControl {
    /// The listeners have drained: flush one last time and hand the sinks
    /// back.
    FinalFlush,
    /// New settings from the next flush on; `sinks` replace the current
    /// ones when given (the old ones finish delivering on their own).
    Reload {
        stats: Box<StatsConfig>,
        naming: Box<Naming>,
        sinks: Option<Vec<SinkHandle>>,
    },
}

/// The running flush thread.
pub(crate) struct FlushThread {
    control: mpsc::Sender<FlushControl>,
    thread: std::thread::JoinHandle<Vec<SinkHandle>>,
}

impl FlushThread {
    /// Starts flushing every `interval` into `sinks`; replaced sinks get
    /// `grace` to deliver what they hold.
    pub(crate) fn start(
        flusher: Flusher,
        interval: Duration,
        sinks: Vec<SinkHandle>,
        runtime: tokio::runtime::Handle,
        grace: Duration,
    ) -> std::io::Result<FlushThread> {
        let (control, commands) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("flush".into())
            .spawn(move || flush_loop(flusher, interval, sinks, commands, runtime, grace))?;
        Ok(FlushThread { control, thread })
    }

    /// Applies new settings (and sinks) from the next flush on.
    pub(crate) fn reload(
        &self,
        stats: StatsConfig,
        naming: Naming,
        sinks: Option<Vec<SinkHandle>>,
    ) {
        let _ = self.control.send(FlushControl::Reload {
            stats: Box::new(stats),
            naming: Box::new(naming),
            sinks,
        });
    }

    /// Runs the final flush and returns the sinks, to be closed.
    pub(crate) async fn finish(self) -> Vec<SinkHandle> {
        let _ = self.control.send(FlushControl::FinalFlush);
        let thread = self.thread;
        match tokio::task::spawn_blocking(move || thread.join()).await {
            Ok(Ok(sinks)) => sinks,
            _ => {
                tracing::error!("the flush thread panicked; the final flush is lost");
                Vec::new()
            }
        }
    }
}

/// The timestamp of a flush: now rounded (as Etsy), but always after the
/// previous flush so two flushes never share a second (a later one would
/// overwrite the earlier one's slot in whisper). The final flush at shutdown
/// is stamped where the next regular flush would have been, so its partial
/// interval lands in its own slot instead of replacing the last full one.
pub(crate) fn flush_timestamp(
    now: f64,
    previous: Option<i64>,
    interval: Duration,
    last: bool,
) -> i64 {
    let rounded = now.round() as i64;
    match previous {
        None => rounded,
        Some(p) if last => rounded.max(p + (interval.as_secs_f64().round() as i64).max(1)),
        Some(p) => rounded.max(p + 1),
    }
}

fn flush_loop(
    mut flusher: Flusher,
    mut interval: Duration,
    mut sinks: Vec<SinkHandle>,
    control: mpsc::Receiver<FlushControl>,
    runtime: tokio::runtime::Handle,
    grace: Duration,
) -> Vec<SinkHandle> {
    let mut due = Instant::now() + interval;
    let mut previous_ts = None;
    let mut last_batch: Option<Arc<PointBatch>> = None;
    loop {
        let wait = due.saturating_duration_since(Instant::now());
        let last = match control.recv_timeout(wait) {
            Err(mpsc::RecvTimeoutError::Timeout) => false,
            Ok(FlushControl::FinalFlush) | Err(mpsc::RecvTimeoutError::Disconnected) => true,
            Ok(FlushControl::Reload {
                stats,
                naming,
                sinks: new_sinks,
            }) => {
                // The flush already due keeps its time; a new interval
                // counts from there.
                interval = stats.flush_interval;
                flusher.reload(*stats, *naming);
                if let Some(new_sinks) = new_sinks {
                    for old in std::mem::replace(&mut sinks, new_sinks) {
                        runtime.spawn(old.close(grace));
                    }
                }
                continue;
            }
        };
        let ts = flush_timestamp(unix_now_f64(), previous_ts, interval, last);
        previous_ts = Some(ts);
        // Reuse the last batch's buffers if every sink is done with it.
        if let Some(Ok(spent)) = last_batch.take().map(Arc::try_unwrap) {
            flusher.recycle(spent);
        }
        let batch = Arc::new(flusher.flush(ts));
        tracing::debug!(points = batch.len(), ts, "flushed");
        for sink in &sinks {
            sink.submit(batch.clone());
        }
        last_batch = Some(batch);
        if last {
            return sinks;
        }
        // Skip due times already missed (a very slow flush) rather than
        // flushing back to back.
        let now = Instant::now();
        due += interval;
        while due <= now {
            due += interval;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flush_timestamps_never_repeat() {
        let ten = Duration::from_secs(10);
        assert_eq!(flush_timestamp(100.4, None, ten, false), 100);
        assert_eq!(flush_timestamp(100.4, Some(100), ten, false), 101);
        assert_eq!(flush_timestamp(110.2, Some(100), ten, false), 110);
        // SIGTERM 3 s after a flush: stamped at the next grid point.
        assert_eq!(flush_timestamp(103.0, Some(100), ten, true), 110);
        assert_eq!(flush_timestamp(125.0, Some(100), ten, true), 125);
    }
}
