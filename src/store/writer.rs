//! Writing points into the store's whisper files, on writer threads of
//! their own.
//!
//! Each writer owns a fixed share of the metrics (by hash of the name), a
//! bounded queue of flushes and a bounded cache of open files. A writer that
//! falls behind takes every queued flush at once and writes each file's
//! points in one `update_many`. A full queue drops the flush for that writer
//! (counted), so a slow disk never blocks the flush or ingest. An error on
//! one file is logged and counted; the other files go on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::cache::{shard_of, ReceivedCache};
use super::format::{WhisperError, WhisperFile};
use super::index::NameIndex;
use super::path::metric_path;
use super::pending::Pending;
use super::schema::Schemas;
use super::slot;
use super::tags::TagIndex;
use crate::point::PointBatch;
use crate::telemetry::{unix_now_rounded, Counter, LogLimit, Telemetry};

#[derive(Debug, Clone)]
/// Where and how the store writes.
pub struct StoreSettings {
    /// The store's root directory.
    pub root: PathBuf,
    /// Writer threads.
    pub writers: usize,
    /// Flushes queued per writer before new ones are dropped.
    pub queue_flushes: usize,
    /// Open files kept across all writers.
    pub max_open_files: usize,
    /// The name index the read API finds names in; new files join it.
    pub index: Arc<NameIndex>,
    /// The tag index; new tagged files join it.
    pub tags: Arc<TagIndex>,
    /// Flushes not yet written everywhere (read-your-writes).
    pub pending: Arc<Pending>,
    /// Points received over carbon's protocols.
    pub cache: Arc<ReceivedCache>,
    /// Points queued for the writers before new flushes are dropped.
    pub queue_points: usize,
    /// Points queued now (shared with the self-metrics).
    pub queued_points: Arc<AtomicUsize>,
}

/// The store's writer threads: each owns a hash share of the metrics, a
/// bounded queue of flushes and a cache of open files.
pub struct WriterPool {
    queues: Vec<SyncSender<Arc<PointBatch>>>,
    threads: Vec<std::thread::JoinHandle<()>>,
    stats: Arc<Telemetry>,
    pending: Arc<Pending>,
    queued_points: Arc<AtomicUsize>,
    max_queued_points: usize,
}

/// A writer's share of a batch, in points.
fn share_of(batch: &PointBatch, writers: usize) -> usize {
    batch.len() / writers.max(1)
}

impl WriterPool {
    /// Starts `settings.writers` writer threads.
    pub fn start(settings: &StoreSettings, schemas: Schemas, stats: Arc<Telemetry>) -> WriterPool {
        let schemas = Arc::new(schemas);
        let writers = settings.writers.max(1);
        let router = super::cache::router();
        let queued_points = settings.queued_points.clone();
        let mut queues = Vec::new();
        let mut threads = Vec::new();
        let out_of_space = Arc::new(AtomicU64::new(0));
        for index in 0..writers {
            let (tx, rx) = sync_channel(settings.queue_flushes.max(1));
            let mut writer = Writer::new(
                settings,
                schemas.clone(),
                stats.clone(),
                (index, writers, router.clone()),
            );
            writer.out_of_space = out_of_space.clone();
            let thread = std::thread::Builder::new()
                .name(format!("whisper-{index}"))
                .spawn(move || writer.run(rx));
            match thread {
                Ok(t) => {
                    queues.push(tx);
                    threads.push(t);
                }
                Err(e) => tracing::error!(error = %e, "cannot start a whisper writer thread"),
            }
        }
        WriterPool {
            queues,
            threads,
            stats,
            pending: settings.pending.clone(),
            queued_points,
            max_queued_points: settings.queue_points.max(1),
        }
    }

    /// Queues a batch for every writer without blocking; a writer whose
    /// queue is full loses its share of it (counted and logged).
    pub fn submit(&self, batch: &Arc<PointBatch>) {
        let writers = self.queues.len().max(1);
        // Each writer's share of the batch is about len / writers points.
        let share = share_of(batch, writers);
        for queue in &self.queues {
            let queued = self.queued_points.load(Ordering::Relaxed);
            let room = queued + share <= self.max_queued_points;
            match room.then(|| queue.try_send(batch.clone())) {
                Some(Ok(())) => {
                    self.queued_points.fetch_add(share, Ordering::Relaxed);
                }
                Some(Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_))) | None => {
                    self.pending.written(batch);
                    let lost = share.max(1) as u64;
                    let total = self.stats.add(Counter::WhisperPointsDropped, lost);
                    tracing::warn!(
                        dropped_total = total,
                        queued_points = queued,
                        limit = self.max_queued_points,
                        "whisper writer queue full (whisper.queue_points / queue_flushes); flush dropped"
                    );
                }
            }
        }
    }

    /// Points waiting in the writers' queues.
    pub fn queued_points(&self) -> usize {
        self.queued_points.load(Ordering::Relaxed)
    }

    /// Lets the writers finish what is queued and waits for them (blocking).
    pub fn finish(self) {
        drop(self.queues);
        for t in self.threads {
            if t.join().is_err() {
                tracing::error!("a whisper writer thread panicked");
            }
        }
    }
}

/// How a file's new points meet the ones already in their slots.
#[derive(Debug, Clone, Copy)]
enum Combine {
    /// Flushed StatsD points: combined per slot by the file's method.
    PerSlot,
    /// Received carbon points: the last one wins, as in carbon-cache.
    LastWins,
}

/// How often a writer with no flush to write drains the receivers' cache.
const CACHE_DRAIN: Duration = Duration::from_millis(50);

/// An open file and the slot its flushes are filling.
struct OpenFile {
    file: WhisperFile,
    slot: Option<slot::SlotState>,
    path: PathBuf,
    /// When the handle was last checked against the path.
    checked: Instant,
}

/// How often a cached handle is checked against its path, so `rm` and
/// `mv` on a live store act as under carbon-cache (which reopens per write).
const REVALIDATE: Duration = Duration::from_secs(5);

/// One writer's state: its share of the metrics and its open files.
/// Public so benches can drive the real write path without threads.
pub struct Writer {
    index: usize,
    writers: usize,
    router: ahash::RandomState,
    root: PathBuf,
    names: Arc<NameIndex>,
    tags: Arc<TagIndex>,
    pending: Arc<Pending>,
    cache: Arc<ReceivedCache>,
    queued_points: Arc<AtomicUsize>,
    schemas: Arc<Schemas>,
    stats: Arc<Telemetry>,
    files: HashMap<String, OpenFile, ahash::RandomState>,
    max_open: usize,
    /// Refused names and failed writes are rate-limited apart, so one
    /// kind of trouble never hides the other.
    names_log: LogLimit,
    errors_log: LogLimit,
    /// Bumped by any writer that meets a full disk; each writer then drops
    /// its handles of deleted or replaced files, whose space is only freed
    /// when the last handle closes.
    out_of_space: Arc<AtomicU64>,
    out_of_space_seen: u64,
    last_trim: Option<Instant>,
}

/// Least time between two trims of one writer's open files.
const TRIM_EVERY: Duration = Duration::from_secs(1);

fn is_out_of_space(error: &WhisperError) -> bool {
    matches!(error, WhisperError::Io(e) if matches!(e.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT)))
}

impl Writer {
    /// `share` is (this writer's index, number of writers, router).
    pub fn new(
        settings: &StoreSettings,
        schemas: Arc<Schemas>,
        stats: Arc<Telemetry>,
        share: (usize, usize, ahash::RandomState),
    ) -> Writer {
        let (index, writers, router) = share;
        Writer {
            index,
            writers,
            router,
            root: settings.root.clone(),
            names: settings.index.clone(),
            tags: settings.tags.clone(),
            pending: settings.pending.clone(),
            cache: settings.cache.clone(),
            queued_points: settings.queued_points.clone(),
            schemas,
            stats,
            files: HashMap::with_hasher(ahash::RandomState::new()),
            max_open: (settings.max_open_files / writers.max(1)).max(16),
            names_log: LogLimit::per_second(),
            errors_log: LogLimit::per_second(),
            out_of_space: Arc::new(AtomicU64::new(0)),
            out_of_space_seen: 0,
            last_trim: None,
        }
    }

    /// After a full disk anywhere in the pool: closes the handles of files
    /// that were deleted or replaced, so `rm` frees space at once.
    fn trim_after_full_disk(&mut self) {
        let alarms = self.out_of_space.load(Ordering::Relaxed);
        if alarms == self.out_of_space_seen
            || self.last_trim.is_some_and(|t| t.elapsed() < TRIM_EVERY)
        {
            return;
        }
        self.out_of_space_seen = alarms;
        self.last_trim = Some(Instant::now());
        let before = self.files.len();
        self.files.retain(|_, open| !open.file.is_stale(&open.path));
        let closed = before - self.files.len();
        if closed > 0 {
            self.stats
                .add(Counter::WhisperStaleHandlesClosed, closed as u64);
            tracing::info!(
                closed,
                "disk full: closed handles of deleted or replaced whisper files"
            );
        }
    }

    fn run(&mut self, queue: Receiver<Arc<PointBatch>>) {
        loop {
            self.trim_after_full_disk();
            match queue.recv_timeout(CACHE_DRAIN) {
                Ok(first) => {
                    let mut pending = vec![first];
                    // Behind? Take everything queued and write each file once.
                    while let Ok(more) = queue.try_recv() {
                        pending.push(more);
                    }
                    self.write(&pending);
                    for batch in &pending {
                        self.pending.written(batch);
                        let share = share_of(batch, self.writers);
                        let _ = self.queued_points.fetch_update(
                            Ordering::Relaxed,
                            Ordering::Relaxed,
                            |q| Some(q.saturating_sub(share)),
                        );
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.write_received(unix_now_rounded());
                    return;
                }
            }
            self.write_received(unix_now_rounded());
        }
    }

    /// Writes what the carbon receivers cached for this writer's share:
    /// carbon's rule, the last value received for a timestamp wins.
    pub fn write_received(&mut self, now: i64) {
        for (name, points) in self.cache.drain(self.index, self.writers) {
            self.write_file(&name, &points, now, Combine::LastWins);
        }
    }

    /// Whether `name` is this writer's: its cache shard's writer, so a
    /// metric flushed and received goes to one writer.
    fn mine(&self, name: &str) -> bool {
        self.writers == 1 || shard_of(&self.router, name) % self.writers == self.index
    }

    fn write(&mut self, batches: &[Arc<PointBatch>]) {
        self.write_at(batches, unix_now_rounded());
    }

    /// Writes this writer's share of `batches`, each file's points in one
    /// update_many, as of `now`.
    pub fn write_at(&mut self, batches: &[Arc<PointBatch>], now: i64) {
        if batches.len() == 1 {
            let batch = &batches[0];
            for (name, value) in batch.iter() {
                if self.mine(name) {
                    self.write_file(name, &[(batch.timestamp, value)], now, Combine::PerSlot);
                }
            }
            return;
        }
        let mut per_file: HashMap<&str, Vec<(i64, f64)>> = HashMap::new();
        for batch in batches {
            for (name, value) in batch.iter() {
                if self.mine(name) {
                    per_file
                        .entry(name)
                        .or_default()
                        .push((batch.timestamp, value));
                }
            }
        }
        for (name, points) in per_file {
            self.write_file(name, &points, now, Combine::PerSlot);
        }
    }

    fn write_file(&mut self, name: &str, points: &[(i64, f64)], now: i64, how: Combine) {
        // A handle to a file deleted or replaced since it was opened would
        // write where nobody reads (and keep the space of a deleted file).
        let stale = self.files.get_mut(name).is_some_and(|open| {
            if open.checked.elapsed() < REVALIDATE {
                return false;
            }
            open.checked = Instant::now();
            open.file.is_stale(&open.path)
        });
        if stale {
            self.files.remove(name);
        }
        if !self.files.contains_key(name) {
            match self.open_or_create(name) {
                Ok(Some((file, path))) => {
                    if self.files.len() >= self.max_open {
                        self.evict();
                    }
                    self.files.insert(
                        name.to_string(),
                        OpenFile {
                            file,
                            slot: None,
                            path,
                            checked: Instant::now(),
                        },
                    );
                }
                Ok(None) => return,
                Err(e) => {
                    self.failed(name, &e);
                    return;
                }
            }
        }
        let Some(open) = self.files.get_mut(name) else {
            return;
        };
        // Flushed points that share a slot are combined, not overwritten.
        let step = open
            .file
            .header
            .archives
            .first()
            .map(|a| i64::from(a.seconds_per_point))
            .unwrap_or(1);
        let method = open.file.header.aggregation;
        let file = &mut open.file;
        let combined = match how {
            Combine::PerSlot => slot::combine(points, step, method, &mut open.slot, |slot| {
                file.finest_point(slot).ok().flatten()
            }),
            Combine::LastWins => points.to_vec(),
        };
        match open.file.update_many(&combined, now) {
            Ok(()) => {
                self.stats
                    .add(Counter::WhisperPointsWritten, points.len() as u64);
            }
            Err(e) => {
                // The handle may be bad (file replaced, disk trouble): reopen
                // next time.
                self.files.remove(name);
                self.failed(name, &e);
            }
        }
    }

    /// `Ok(None)` when the name is refused (counted).
    fn open_or_create(
        &mut self,
        name: &str,
    ) -> Result<Option<(WhisperFile, PathBuf)>, WhisperError> {
        let relative = match metric_path(name) {
            Ok(p) => p,
            Err(why) => {
                self.refuse_name(name, &why);
                return Ok(None);
            }
        };
        let path = self.root.join(relative);
        match WhisperFile::open(&path) {
            Ok(f) => {
                // A store written before the tag index kept its names.
                self.note_tagged(name);
                return Ok(Some((f, path)));
            }
            Err(WhisperError::Io(e)) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(WhisperError::Io(e)) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => {
                self.refuse_name(name, &"the path is longer than the file system allows");
                return Ok(None);
            }
            Err(WhisperError::Corrupt(why)) => {
                if !WhisperFile::is_interrupted_creation(&path).unwrap_or(false) {
                    return Err(WhisperError::Corrupt(why));
                }
                tracing::warn!(path = %path.display(), "replacing an empty or header-only whisper file left by an interrupted creation");
                std::fs::remove_file(&path)?;
                self.stats.add(Counter::WhisperFilesReplaced, 1);
            }
            Err(e) => return Err(e),
        }
        if let Some(dir) = path.parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                if e.raw_os_error() == Some(libc::ENAMETOOLONG) {
                    self.refuse_name(name, &"the path is longer than the file system allows");
                    return Ok(None);
                }
                return Err(e.into());
            }
        }
        let spec = self.schemas.spec_for(name);
        match WhisperFile::create(&path, &spec.archives, spec.x_files_factor, spec.method) {
            Ok(f) => {
                self.stats.add(Counter::WhisperFilesCreated, 1);
                if name.contains(';') {
                    self.note_tagged(name);
                } else {
                    self.names.insert(name);
                }
                Ok(Some((f, path)))
            }
            // Created meanwhile by someone else: use theirs.
            Err(WhisperError::Exists(_)) => WhisperFile::open(&path).map(|f| Some((f, path))),
            Err(WhisperError::Io(e)) if e.raw_os_error() == Some(libc::ENAMETOOLONG) => {
                self.refuse_name(name, &"the path is longer than the file system allows");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn note_tagged(&self, name: &str) {
        if name.contains(';') {
            // A name carbon would not parse still has its (hashed) file.
            let _ = self.tags.insert(name);
        }
    }

    fn refuse_name(&mut self, name: &str, why: &dyn std::fmt::Display) {
        let n = self.stats.add(Counter::WhisperNamesRejected, 1);
        if let Some(suppressed) = self.names_log.ready() {
            tracing::warn!(metric = %name.escape_debug(), reason = %why, rejected_total = n,
                suppressed, "metric name refused by the whisper store");
        }
    }

    fn evict(&mut self) {
        // Drop an eighth of the open files; HashMap order is arbitrary, which
        // is good enough to keep the hot set mostly open.
        let n = (self.files.len() / 8).max(1);
        let victims: Vec<String> = self.files.keys().take(n).cloned().collect();
        for v in victims {
            self.files.remove(&v);
        }
    }

    fn failed(&mut self, name: &str, error: &WhisperError) {
        if is_out_of_space(error) {
            self.out_of_space.fetch_add(1, Ordering::Relaxed);
        }
        let n = self.stats.add(Counter::WhisperErrors, 1);
        if let Some(suppressed) = self.errors_log.ready() {
            tracing::warn!(metric = %name, error = %error, errors_total = n, suppressed,
                "whisper write failed");
        }
    }
}

/// How many whisper files may stay open: `wanted`, bounded by the process's
/// file-descriptor limit (raised first as far as the process may, as
/// daemons do), keeping 1024 descriptors for sockets and the rest. Only an
/// `explicit` setting that cannot be honoured is worth a warning.
pub fn open_file_budget(wanted: usize, explicit: bool) -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write exactly one rlimit struct
    // that lives on this stack frame.
    let available = unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return wanted.min(1024);
        }
        let needed = (wanted as libc::rlim_t).saturating_add(1024);
        if limit.rlim_cur < needed {
            // Raising the hard limit works with CAP_SYS_RESOURCE (root);
            // otherwise settle for the hard limit.
            let both = libc::rlimit {
                rlim_cur: needed.max(limit.rlim_cur),
                rlim_max: needed.max(limit.rlim_max),
            };
            let soft = libc::rlimit {
                rlim_cur: needed.min(limit.rlim_max).max(limit.rlim_cur),
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &both) == 0 {
                limit.rlim_cur = both.rlim_cur;
            } else if libc::setrlimit(libc::RLIMIT_NOFILE, &soft) == 0 {
                limit.rlim_cur = soft.rlim_cur;
            }
        }
        limit.rlim_cur
    };
    let budget = (available as usize).saturating_sub(1024).max(16);
    if budget < wanted && explicit {
        tracing::warn!(
            wanted,
            budget,
            "whisper.max_open_files exceeds the file-descriptor limit; using the limit"
        );
    }
    wanted.min(budget)
}

/// Creates `root` if needed and checks it is a writable directory, so a
/// bad whisper.dir fails at start-up, not at the first flush.
pub fn prepare_root(root: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(root)?;
    let probe = root.join(".sluice-write-test");
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}
