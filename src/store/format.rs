//! The whisper file format, byte-compatible with Graphite's Python
//! `whisper` 1.1 (on CPython <= 3.11): header layout, ring-buffer slots,
//! `update`, `update_many`, propagation with xFilesFactor, the eight
//! aggregation methods, `fetch` and `info`.
//!
//! Every operation takes `now` explicitly, so the same calls give the same
//! bytes as Python's (tests replay Python's reference files). I/O is
//! positional (pread/pwrite); the header is read once per open file and the
//! base timestamp of each archive is cached.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

const METADATA_SIZE: u64 = 16;
const ARCHIVE_INFO_SIZE: u64 = 12;
const POINT_SIZE: u64 = 12;

#[derive(Debug, thiserror::Error)]
/// Why a whisper operation failed.
pub enum WhisperError {
    #[error("{0}")]
    /// The file system said no.
    Io(#[from] io::Error),
    #[error("corrupt whisper file: {0}")]
    /// The file is not a whisper file whisper could have written.
    Corrupt(String),
    #[error("invalid archive list: {0}")]
    /// An archive list whisper would refuse.
    InvalidArchives(String),
    #[error("timestamp {timestamp} not covered by the file (now {now})")]
    /// The timestamp is outside the file's retention.
    TimestampNotCovered {
        /// The point's time.
        timestamp: i64,
        /// The time the update was made at.
        now: i64,
    },
    #[error("invalid time interval: from {from} is after until {until}")]
    /// A fetch whose start is after its end.
    InvalidTimeInterval {
        /// Start.
        from: i64,
        /// End.
        until: i64,
    },
    #[error("file exists: {0}")]
    /// The file already exists.
    Exists(String),
}

/// A whisper result.
pub type Result<T> = std::result::Result<T, WhisperError>;

/// Whisper's aggregation methods, numbered as in the file header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// average.
    Average = 1,
    /// sum.
    Sum = 2,
    /// last.
    Last = 3,
    /// max.
    Max = 4,
    /// min.
    Min = 5,
    /// avg_zero.
    AvgZero = 6,
    /// absmax.
    AbsMax = 7,
    /// absmin.
    AbsMin = 8,
}

impl Aggregation {
    /// The accepted names, for messages.
    pub const NAMES: &'static str = "average, sum, last, max, min, avg_zero, absmax, absmin";

    /// The method called `name` in the config files.
    pub fn from_name(name: &str) -> Option<Aggregation> {
        Some(match name {
            "average" => Aggregation::Average,
            "sum" => Aggregation::Sum,
            "last" => Aggregation::Last,
            "max" => Aggregation::Max,
            "min" => Aggregation::Min,
            "avg_zero" => Aggregation::AvgZero,
            "absmax" => Aggregation::AbsMax,
            "absmin" => Aggregation::AbsMin,
            _ => return None,
        })
    }

    fn from_code(code: u32) -> Option<Aggregation> {
        Some(match code {
            1 => Aggregation::Average,
            2 => Aggregation::Sum,
            3 => Aggregation::Last,
            4 => Aggregation::Max,
            5 => Aggregation::Min,
            6 => Aggregation::AvgZero,
            7 => Aggregation::AbsMax,
            8 => Aggregation::AbsMin,
            _ => return None,
        })
    }

    /// Its name in the config files.
    pub fn name(self) -> &'static str {
        match self {
            Aggregation::Average => "average",
            Aggregation::Sum => "sum",
            Aggregation::Last => "last",
            Aggregation::Max => "max",
            Aggregation::Min => "min",
            Aggregation::AvgZero => "avg_zero",
            Aggregation::AbsMax => "absmax",
            Aggregation::AbsMin => "absmin",
        }
    }

    /// Python whisper's `aggregate()`: `known` in time order, `all` with
    /// `None` for unknown slots (for avg_zero). Sums are plain left to
    /// right from +0.0, as CPython <= 3.11's `sum()`.
    pub fn apply(self, known: &[f64], all: &[Option<f64>]) -> f64 {
        let sum = |values: &mut dyn Iterator<Item = f64>| values.fold(0.0f64, |acc, v| acc + v);
        match self {
            Aggregation::Average => sum(&mut known.iter().copied()) / known.len() as f64,
            Aggregation::Sum => sum(&mut known.iter().copied()),
            Aggregation::Last => known[known.len() - 1],
            // Python's max/min: the first is kept unless a later one is
            // strictly greater/less (so NaN first stays, later NaN is ignored).
            Aggregation::Max => pick(known, |cand, best| cand > best),
            Aggregation::Min => pick(known, |cand, best| cand < best),
            Aggregation::AbsMax => pick(known, |cand, best| cand.abs() > best.abs()),
            Aggregation::AbsMin => pick(known, |cand, best| cand.abs() < best.abs()),
            Aggregation::AvgZero => {
                // `x or 0`: None and zeroes count as 0; NaN is kept.
                let mut values = all.iter().map(|v| match v {
                    Some(x) if *x != 0.0 => *x,
                    _ => 0.0,
                });
                sum(&mut values) / all.len() as f64
            }
        }
    }
}

fn pick(values: &[f64], better: impl Fn(f64, f64) -> bool) -> f64 {
    let mut best = values[0];
    for &v in &values[1..] {
        if better(v, best) {
            best = v;
        }
    }
    best
}

/// One archive as described in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct ArchiveInfo {
    /// Byte offset of the archive's first point.
    pub offset: u32,
    /// Seconds per point.
    pub seconds_per_point: u32,
    /// Points (slots).
    pub points: u32,
}

impl ArchiveInfo {
    /// Seconds the archive covers.
    pub fn retention(&self) -> i64 {
        i64::from(self.seconds_per_point) * i64::from(self.points)
    }

    fn size(&self) -> i64 {
        i64::from(self.points) * POINT_SIZE as i64
    }

    fn step(&self) -> i64 {
        i64::from(self.seconds_per_point)
    }
}

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
/// A whisper file's header.
pub struct Header {
    /// How points roll up into coarser archives.
    pub aggregation: Aggregation,
    /// The longest archive's retention, in seconds.
    pub max_retention: u32,
    /// As stored: a 4-byte float.
    pub x_files_factor: f32,
    /// The archives, finest first.
    pub archives: Vec<ArchiveInfo>,
}

impl Header {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + 12 * self.archives.len());
        out.extend_from_slice(&(self.aggregation as u32).to_be_bytes());
        out.extend_from_slice(&self.max_retention.to_be_bytes());
        out.extend_from_slice(&self.x_files_factor.to_be_bytes());
        out.extend_from_slice(&(self.archives.len() as u32).to_be_bytes());
        for a in &self.archives {
            out.extend_from_slice(&a.offset.to_be_bytes());
            out.extend_from_slice(&a.seconds_per_point.to_be_bytes());
            out.extend_from_slice(&a.points.to_be_bytes());
        }
        out
    }

    fn read(file: &File) -> Result<Header> {
        let corrupt = || WhisperError::Corrupt("unable to read header".into());
        // One read covers the metadata and up to 8 archive infos.
        let mut head = [0u8; 16 + 12 * 8];
        let mut got = 0;
        while got < head.len() {
            match file.read_at(&mut head[got..], got as u64)? {
                0 => break,
                n => got += n,
            }
        }
        if got < METADATA_SIZE as usize {
            return Err(corrupt());
        }
        let meta = &head[..METADATA_SIZE as usize];
        let word = |i: usize| u32::from_be_bytes([meta[i], meta[i + 1], meta[i + 2], meta[i + 3]]);
        let aggregation = Aggregation::from_code(word(0)).ok_or_else(corrupt)?;
        let x_files_factor = f32::from_bits(word(8));
        if !(0.0..=1.0).contains(&x_files_factor) {
            return Err(corrupt());
        }
        let count = word(12) as usize;
        // A count no real file has would make us read garbage; refuse it.
        if count == 0 || count > 1024 {
            return Err(corrupt());
        }
        let infos_len = count * ARCHIVE_INFO_SIZE as usize;
        let mut infos = vec![0u8; infos_len];
        let cached = (got - METADATA_SIZE as usize).min(infos_len);
        infos[..cached]
            .copy_from_slice(&head[METADATA_SIZE as usize..METADATA_SIZE as usize + cached]);
        if cached < infos_len {
            file.read_exact_at(&mut infos[cached..], METADATA_SIZE + cached as u64)
                .map_err(|_| corrupt())?;
        }
        let len = file.metadata()?.len();
        let archives = infos
            .chunks_exact(12)
            .map(|c| {
                let w = |i: usize| u32::from_be_bytes([c[i], c[i + 1], c[i + 2], c[i + 3]]);
                ArchiveInfo {
                    offset: w(0),
                    seconds_per_point: w(4),
                    points: w(8),
                }
            })
            .collect::<Vec<_>>();
        let header = Header {
            aggregation,
            max_retention: word(4),
            x_files_factor,
            archives,
        };
        header.check_layout(len)?;
        Ok(header)
    }

    /// Refuses a header that whisper itself could not have written: every
    /// later size (reads, roll-ups, fetch results) is derived from it, so a
    /// crafted one must not get past here. The archives must be in
    /// precision order and pass whisper's validateArchiveList, lie back to
    /// back right after the header, end inside the file, and the stored
    /// maximum retention must be the longest archive's.
    fn check_layout(&self, file_len: u64) -> Result<()> {
        let corrupt = |why: String| Err(WhisperError::Corrupt(why));
        let pairs: Vec<(u32, u32)> = self
            .archives
            .iter()
            .map(|a| (a.seconds_per_point, a.points))
            .collect();
        if pairs.windows(2).any(|w| w[0].0 >= w[1].0) {
            return corrupt("archives are not in increasing precision order".into());
        }
        if let Err(why) = validate_archives(&pairs) {
            return corrupt(format!("invalid archive list: {why}"));
        }
        let mut expected = METADATA_SIZE + ARCHIVE_INFO_SIZE * self.archives.len() as u64;
        for (i, a) in self.archives.iter().enumerate() {
            if u64::from(a.offset) != expected {
                return corrupt(format!(
                    "archive {i} starts at byte {} instead of {expected}",
                    a.offset
                ));
            }
            expected += u64::from(a.points) * POINT_SIZE;
        }
        if expected > file_len {
            return corrupt(format!(
                "the archives need {expected} bytes but the file has {file_len}"
            ));
        }
        let longest = self.archives.iter().map(ArchiveInfo::retention).max();
        if longest != Some(i64::from(self.max_retention)) {
            return corrupt(format!(
                "maxRetention {} is not the longest archive's retention ({})",
                self.max_retention,
                longest.unwrap_or(0)
            ));
        }
        Ok(())
    }
}

/// Checks an archive list the way whisper's validateArchiveList does
/// (after sorting by precision).
pub fn validate_archives(archives: &[(u32, u32)]) -> std::result::Result<(), String> {
    if archives.is_empty() {
        return Err("at least one archive is required".into());
    }
    let mut sorted = archives.to_vec();
    sorted.sort_by_key(|a| a.0);
    for &(step, points) in &sorted {
        if step == 0 || points == 0 {
            return Err(format!(
                "{step}:{points}: seconds per point and points must be > 0"
            ));
        }
    }
    for pair in sorted.windows(2) {
        let ((s1, p1), (s2, p2)) = (pair[0], pair[1]);
        if s1 == s2 {
            return Err(format!("two archives with the same precision {s1}s"));
        }
        if s2 % s1 != 0 {
            return Err(format!("precision {s2}s is not a multiple of {s1}s"));
        }
        if u64::from(s1) * u64::from(p1) >= u64::from(s2) * u64::from(p2) {
            return Err(format!("{s2}s:{p2} must cover more time than {s1}s:{p1}"));
        }
        if p1 < s2 / s1 {
            return Err(format!(
                "{s1}s:{p1} has fewer points than one {s2}s interval needs ({})",
                s2 / s1
            ));
        }
    }
    Ok(())
}

/// An open whisper file.
#[derive(Debug)]
pub struct WhisperFile {
    file: File,
    /// The file's header (validated).
    pub header: Header,
    /// Cached timestamp of each archive's first slot (None = not read yet).
    bases: Vec<Option<u32>>,
}

/// What `fetch` returns: (from, until, step) and one value per slot.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Fetched {
    /// First slot's time.
    pub from: i64,
    /// End of the range (exclusive).
    pub until: i64,
    /// Seconds per slot.
    pub step: i64,
    /// One value per slot (`None`: no point).
    pub values: Vec<Option<f64>>,
}

fn interval_of(ts: i64, step: i64) -> i64 {
    ts - ts.rem_euclid(step)
}

fn point_bytes(ts: i64, value: f64) -> [u8; 12] {
    let mut b = [0u8; 12];
    b[..4].copy_from_slice(&(ts as u32).to_be_bytes());
    b[4..].copy_from_slice(&value.to_be_bytes());
    b
}

fn parse_point(b: &[u8]) -> (i64, f64) {
    let ts = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[4..12]);
    (i64::from(ts), f64::from_be_bytes(v))
}

fn fits_u32(ts: i64) -> bool {
    (0..=i64::from(u32::MAX)).contains(&ts)
}

impl WhisperFile {
    /// Creates `path` (which must not exist) with archives given as
    /// (seconds per point, points), in any order.
    pub fn create(
        path: &Path,
        archives: &[(u32, u32)],
        x_files_factor: f64,
        aggregation: Aggregation,
    ) -> Result<WhisperFile> {
        validate_archives(archives).map_err(WhisperError::InvalidArchives)?;
        if !(0.0..=1.0).contains(&x_files_factor) {
            return Err(WhisperError::InvalidArchives(format!(
                "xFilesFactor {x_files_factor} is not between 0 and 1"
            )));
        }
        let mut sorted = archives.to_vec();
        sorted.sort_by_key(|a| a.0);
        let mut offset = METADATA_SIZE + ARCHIVE_INFO_SIZE * sorted.len() as u64;
        let mut infos = Vec::with_capacity(sorted.len());
        for &(step, points) in &sorted {
            let too_big = || WhisperError::InvalidArchives("file would exceed 4 GiB".into());
            infos.push(ArchiveInfo {
                offset: u32::try_from(offset).map_err(|_| too_big())?,
                seconds_per_point: step,
                points,
            });
            offset += u64::from(points) * POINT_SIZE;
        }
        let max_retention = sorted
            .iter()
            .map(|&(s, p)| u64::from(s) * u64::from(p))
            .max()
            .unwrap_or(0);
        let header = Header {
            aggregation,
            max_retention: u32::try_from(max_retention)
                .map_err(|_| WhisperError::InvalidArchives("retention exceeds 2^32 s".into()))?,
            x_files_factor: x_files_factor as f32,
            archives: infos,
        };
        // Made whole under a temporary name in the same directory, then
        // linked into place without replacing anything: a kill at any
        // point leaves either no file or a complete one (and at worst a
        // hidden `.sluice-*.wsp.tmp` that no reader takes for a metric).
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let temp = tempfile::Builder::new()
            .prefix(".sluice-")
            .suffix(".wsp.tmp")
            .tempfile_in(dir)?;
        temp.as_file().write_all_at(&header.encode(), 0)?;
        temp.as_file().set_len(offset)?;
        let file = match temp.persist_noclobber(path) {
            Ok(f) => f,
            Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => {
                return Err(WhisperError::Exists(path.display().to_string()))
            }
            Err(e) => return Err(e.error.into()),
        };
        let bases = vec![Some(0); header.archives.len()];
        Ok(WhisperFile {
            file,
            header,
            bases,
        })
    }

    /// True when `path` can only be what an interrupted creation leaves:
    /// empty, or a whole whisper header with nothing (or less than one
    /// archive) behind it. Older sluice versions created files in three
    /// steps (create, header, length), and a kill between them left these.
    /// Such a file holds no data and may be replaced; anything else is not.
    pub fn is_interrupted_creation(path: &Path) -> io::Result<bool> {
        let file = File::open(path)?;
        let len = file.metadata()?.len();
        if len == 0 {
            return Ok(true);
        }
        let mut meta = [0u8; METADATA_SIZE as usize];
        if len < METADATA_SIZE || file.read_exact_at(&mut meta, 0).is_err() {
            return Ok(false);
        }
        let word = |i: usize| u32::from_be_bytes([meta[i], meta[i + 1], meta[i + 2], meta[i + 3]]);
        let count = u64::from(word(12));
        let plausible = Aggregation::from_code(word(0)).is_some()
            && (0.0..=1.0).contains(&f32::from_bits(word(8)))
            && (1..=1024).contains(&count);
        Ok(plausible && len <= METADATA_SIZE + ARCHIVE_INFO_SIZE * count)
    }

    /// Opens an existing file for reading and writing.
    pub fn open(path: &Path) -> Result<WhisperFile> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Self::from_file(file)
    }

    /// Opens an existing file read-only.
    pub fn open_read(path: &Path) -> Result<WhisperFile> {
        Self::from_file(File::open(path)?)
    }

    fn from_file(file: File) -> Result<WhisperFile> {
        let header = Header::read(&file)?;
        let bases = vec![None; header.archives.len()];
        Ok(WhisperFile {
            file,
            header,
            bases,
        })
    }

    /// True when the file this handle holds is no longer the one at
    /// `path`: deleted (no links left) or replaced by another inode. Its
    /// space is only released once the handle is dropped.
    pub fn is_stale(&self, path: &Path) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(held) = self.file.metadata() else {
            return true;
        };
        if held.nlink() == 0 {
            return true;
        }
        match std::fs::metadata(path) {
            Ok(at_path) => at_path.ino() != held.ino() || at_path.dev() != held.dev(),
            Err(_) => true,
        }
    }

    /// The file's size in bytes.
    pub fn file_size(&self) -> io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    fn base(&mut self, archive: usize) -> Result<i64> {
        if let Some(b) = self.bases[archive] {
            return Ok(i64::from(b));
        }
        let mut buf = [0u8; 12];
        let a = self.header.archives[archive];
        self.file.read_exact_at(&mut buf, u64::from(a.offset))?;
        let (ts, _) = parse_point(&buf);
        self.bases[archive] = Some(ts as u32);
        Ok(ts)
    }

    /// Byte offset of `interval` in `archive`, given its base.
    fn slot_offset(&self, archive: usize, base: i64, interval: i64) -> u64 {
        let a = self.header.archives[archive];
        if base == 0 {
            return u64::from(a.offset);
        }
        let distance = (interval - base).div_euclid(a.step()) * POINT_SIZE as i64;
        u64::from(a.offset) + distance.rem_euclid(a.size()) as u64
    }

    fn write_point(&mut self, archive: usize, interval: i64, value: f64) -> Result<()> {
        let base = self.base(archive)?;
        let offset = self.slot_offset(archive, base, interval);
        self.file
            .write_all_at(&point_bytes(interval, value), offset)?;
        if offset == u64::from(self.header.archives[archive].offset) {
            self.bases[archive] = Some(interval as u32);
        }
        Ok(())
    }

    /// The value the finest archive holds for the slot starting at
    /// `interval`, if that slot was written for that time.
    pub fn finest_point(&mut self, interval: i64) -> Result<Option<f64>> {
        let base = self.base(0)?;
        if base == 0 {
            return Ok(None);
        }
        let offset = self.slot_offset(0, base, interval);
        let mut buf = [0u8; 12];
        self.file.read_exact_at(&mut buf, offset)?;
        let (ts, value) = parse_point(&buf);
        Ok((ts == interval).then_some(value))
    }

    /// Python whisper's `update(path, value, timestamp, now)`.
    pub fn update(&mut self, value: f64, timestamp: i64, now: i64) -> Result<()> {
        let age = now - timestamp;
        if !(age >= 0 && age < i64::from(self.header.max_retention) && fits_u32(timestamp)) {
            return Err(WhisperError::TimestampNotCovered { timestamp, now });
        }
        let Some(first) = self
            .header
            .archives
            .iter()
            .position(|a| a.retention() >= age)
        else {
            return Err(WhisperError::TimestampNotCovered { timestamp, now });
        };
        let interval = interval_of(timestamp, self.header.archives[first].step());
        self.write_point(first, interval, value)?;
        let mut higher = first;
        for lower in first + 1..self.header.archives.len() {
            if !self.propagate(interval, higher, lower)? {
                break;
            }
            higher = lower;
        }
        Ok(())
    }

    /// Python whisper's `update_many(path, points, now)`: points may come in
    /// any order; see specs/graphite.md 1.6 for the rules followed here.
    /// Timestamps that do not fit in 32 bits are dropped first (Python
    /// fails the whole call instead).
    pub fn update_many(&mut self, points: &[(i64, f64)], now: i64) -> Result<()> {
        let mut points: Vec<(i64, f64)> =
            points.iter().copied().filter(|p| fits_u32(p.0)).collect();
        if points.is_empty() {
            return Ok(());
        }
        // Stable sort, newest first: equal timestamps keep input order.
        points.sort_by_key(|p| std::cmp::Reverse(p.0));
        let mut archive = 0usize;
        let mut current: Vec<(i64, f64)> = Vec::new();
        let archives = self.header.archives.len();
        let mut exhausted = false;
        for point in points {
            let age = now - point.0;
            while self.header.archives[archive].retention() < age {
                if !current.is_empty() {
                    current.reverse();
                    self.archive_update_many(archive, &current)?;
                    current.clear();
                }
                archive += 1;
                if archive == archives {
                    exhausted = true;
                    break;
                }
            }
            if exhausted {
                break;
            }
            current.push(point);
        }
        if !exhausted && !current.is_empty() {
            current.reverse();
            self.archive_update_many(archive, &current)?;
        }
        Ok(())
    }

    /// Writes chronologically ordered points into one archive, then
    /// propagates down.
    fn archive_update_many(&mut self, archive: usize, points: &[(i64, f64)]) -> Result<()> {
        let a = self.header.archives[archive];
        let step = a.step();
        let aligned: Vec<(i64, f64)> = points
            .iter()
            .map(|&(ts, v)| (interval_of(ts, step), v))
            .collect();
        // The last point of each run of equal intervals wins.
        let kept: Vec<(i64, f64)> = aligned
            .iter()
            .enumerate()
            .filter(|(i, p)| aligned.get(i + 1).is_none_or(|next| next.0 != p.0))
            .map(|(_, p)| *p)
            .collect();
        // An empty archive takes the batch's oldest interval as its base
        // (whisper: the start of the first contiguous run).
        let mut base = self.base(archive)?;
        if base == 0 {
            base = kept[0].0;
            self.bases[archive] = Some(base as u32);
        }
        // Consecutive slots go out in one write (as whisper packs runs).
        let mut run: Vec<u8> = Vec::with_capacity(kept.len() * 12);
        let mut run_start = 0u64;
        for &(interval, value) in &kept {
            let offset = self.slot_offset(archive, base, interval);
            if !run.is_empty() && offset != run_start + run.len() as u64 {
                self.file.write_all_at(&run, run_start)?;
                run.clear();
            }
            if run.is_empty() {
                run_start = offset;
            }
            run.extend_from_slice(&point_bytes(interval, value));
            if offset == u64::from(a.offset) {
                self.bases[archive] = Some(interval as u32);
            }
        }
        if !run.is_empty() {
            self.file.write_all_at(&run, run_start)?;
        }
        let mut higher = archive;
        for lower in archive + 1..self.header.archives.len() {
            let lower_step = self.header.archives[lower].step();
            let intervals: Vec<i64> = aligned
                .iter()
                .map(|p| interval_of(p.0, lower_step))
                .collect();
            let mut propagated = false;
            for interval in python_set_order(&intervals) {
                if self.propagate(interval, higher, lower)? {
                    propagated = true;
                }
            }
            if !propagated {
                break;
            }
            higher = lower;
        }
        Ok(())
    }

    /// Recomputes the `lower` slot holding `timestamp` from the `higher`
    /// archive; false when too few higher points are known.
    fn propagate(&mut self, timestamp: i64, higher: usize, lower: usize) -> Result<bool> {
        let h = self.header.archives[higher];
        let l = self.header.archives[lower];
        let start = interval_of(timestamp, l.step());
        let base = self.base(higher)?;
        let first = self.slot_offset(higher, base, start);
        let n = (l.step() / h.step()) as usize;
        let bytes = self.read_ring(higher, first, n)?;
        let mut all = Vec::with_capacity(n);
        let mut known = Vec::with_capacity(n);
        for (i, chunk) in bytes.chunks_exact(12).enumerate() {
            let (ts, value) = parse_point(chunk);
            if ts == start + i as i64 * h.step() {
                all.push(Some(value));
                known.push(value);
            } else {
                all.push(None);
            }
        }
        if known.is_empty() {
            return Ok(false);
        }
        let known_percent = known.len() as f64 / n as f64;
        if known_percent < f64::from(self.header.x_files_factor) {
            return Ok(false);
        }
        let value = self.header.aggregation.apply(&known, &all);
        self.write_point(lower, start, value)?;
        Ok(true)
    }

    /// Reads `n` slots of `archive` from byte `offset`, wrapping at its end.
    fn read_ring(&self, archive: usize, offset: u64, n: usize) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        self.read_ring_into(archive, offset, n, &mut buf)?;
        Ok(buf)
    }

    /// `n` slots from `offset`, wrapping at the archive's end, into `buf`.
    fn read_ring_into(
        &self,
        archive: usize,
        offset: u64,
        n: usize,
        buf: &mut Vec<u8>,
    ) -> Result<()> {
        let a = self.header.archives[archive];
        let start = u64::from(a.offset);
        let end = start + a.size() as u64;
        let want = (n as u64 * POINT_SIZE).min(a.size() as u64);
        buf.clear();
        buf.resize(want as usize, 0);
        let first = (end - offset).min(want);
        self.file
            .read_exact_at(&mut buf[..first as usize], offset)?;
        if first < want {
            self.file.read_exact_at(&mut buf[first as usize..], start)?;
        }
        Ok(())
    }

    /// Python whisper's `fetch(path, from, until, now)`; `None` when the
    /// range is entirely outside the file.
    pub fn fetch(&mut self, from: i64, until: Option<i64>, now: i64) -> Result<Option<Fetched>> {
        let mut until = until.unwrap_or(now);
        let mut from = from;
        if from > until {
            return Err(WhisperError::InvalidTimeInterval { from, until });
        }
        let oldest = now - i64::from(self.header.max_retention);
        if from > now || until < oldest {
            return Ok(None);
        }
        from = from.max(oldest);
        until = until.min(now);
        let age = now - from;
        let archive = self
            .header
            .archives
            .iter()
            .position(|a| a.retention() >= age)
            .unwrap_or(self.header.archives.len() - 1);
        let a = self.header.archives[archive];
        let step = a.step();
        let from_interval = interval_of(from, step) + step;
        let mut until_interval = interval_of(until, step) + step;
        if from_interval == until_interval {
            until_interval += step;
        }
        let base = self.base(archive)?;
        // The header check bounds this by the archive's points; refuse
        // anything else rather than allocate what a file or request says.
        let wanted = (until_interval - from_interval) / step;
        if !(0..=i64::from(a.points) + 2).contains(&wanted) {
            return Err(WhisperError::Corrupt(format!(
                "a fetch of {wanted} points from a {}-point archive",
                a.points
            )));
        }
        let wanted = wanted as usize;
        if base == 0 {
            return Ok(Some(Fetched {
                from: from_interval,
                until: until_interval,
                step,
                values: vec![None; wanted],
            }));
        }
        let from_offset = self.slot_offset(archive, base, from_interval);
        let until_offset = self.slot_offset(archive, base, until_interval);
        // Like whisper: the slots between the two offsets, wrapping.
        let slots = if from_offset < until_offset {
            (until_offset - from_offset) / POINT_SIZE
        } else {
            (a.size() as u64 - (from_offset - until_offset)) / POINT_SIZE
        } as usize;
        // One read buffer per thread: a render reads thousands of files,
        // and a fresh buffer each time costs more in page faults than the
        // read itself.
        thread_local! {
            static READ_BUFFER: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
        }
        let mut values = READ_BUFFER.with(|buffer| -> Result<Vec<Option<f64>>> {
            let mut bytes = buffer.borrow_mut();
            self.read_ring_into(archive, from_offset, slots, &mut bytes)?;
            let values = bytes
                .chunks_exact(12)
                .zip((0..).map(|i| from_interval + i * step))
                .map(|(chunk, expected)| {
                    let (ts, value) = parse_point(chunk);
                    (ts == expected).then_some(value)
                })
                .collect();
            if bytes.capacity() > MAX_KEPT_READ_BUFFER {
                *bytes = Vec::new();
            }
            Ok(values)
        })?;
        values.resize(slots, None);
        Ok(Some(Fetched {
            from: from_interval,
            until: until_interval,
            step,
            values,
        }))
    }
}

/// The iteration order of CPython 3.11's `set(ints)` for non-negative ints
/// below 2^61 (whose hash is the value itself). Whisper propagates lower
/// intervals in this order, and the first one written into an empty lower
/// archive becomes its base, so byte compatibility depends on it.
pub fn python_set_order(values: &[i64]) -> Vec<i64> {
    const LINEAR_PROBES: usize = 9;
    const PERTURB_SHIFT: u32 = 5;
    /// CPython's probe sequence: `Ok(())` if `value` is present, else the
    /// empty slot where it goes (there are no deletions, so lookup and
    /// insertion stop at the same slot).
    fn probe(table: &[Option<i64>], value: i64) -> std::result::Result<(), usize> {
        let mask = table.len() - 1;
        let mut perturb = value as u64;
        let mut i = (value as u64 as usize) & mask;
        loop {
            let probes = if i + LINEAR_PROBES <= mask {
                LINEAR_PROBES
            } else {
                0
            };
            for j in 0..=probes {
                match table[i + j] {
                    None => return Err(i + j),
                    Some(existing) if existing == value => return Ok(()),
                    Some(_) => {}
                }
            }
            perturb >>= PERTURB_SHIFT;
            i = (i
                .wrapping_mul(5)
                .wrapping_add(1)
                .wrapping_add(perturb as usize))
                & mask;
        }
    }
    let mut table: Vec<Option<i64>> = vec![None; 8];
    let mut used = 0usize;
    for &v in values {
        let Err(slot) = probe(&table, v) else {
            continue;
        };
        table[slot] = Some(v);
        used += 1;
        // fill*5 >= mask*3 triggers a resize to the next power of two
        // above used*4 (used*2 past 50000), reinserting in table order.
        if used * 5 >= (table.len() - 1) * 3 {
            let min_used = if used > 50_000 { used * 2 } else { used * 4 };
            let mut size = 8;
            while size <= min_used {
                size <<= 1;
            }
            let old = std::mem::replace(&mut table, vec![None; size]);
            for v in old.into_iter().flatten() {
                if let Err(slot) = probe(&table, v) {
                    table[slot] = Some(v);
                }
            }
        }
    }
    table.into_iter().flatten().collect()
}

/// The largest fetch buffer a thread keeps between fetches (a year at
/// 10 s is 38 MB; such a read gets a buffer of its own).
const MAX_KEPT_READ_BUFFER: usize = 4 << 20;

/// Python's `repr(float)` (= `str`): the shortest digits that round-trip,
/// fixed notation from 1e-4 to below 1e16, scientific (`1e-05`, `1e+16`)
/// outside it; `inf`, `-inf`, `nan`.
pub fn python_float_repr(value: f64) -> String {
    let mut out = String::new();
    write_python_float(&mut out, value);
    out
}

/// [`python_float_repr`] appended to `out` (the read API writes millions).
pub fn write_python_float(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("nan");
        return;
    }
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "inf" } else { "-inf" });
        return;
    }
    if value.fract() == 0.0 && value.abs() < 1e16 {
        if value == 0.0 && value.is_sign_negative() {
            out.push('-');
        }
        // Exact: integers below 2^53 < 1e16 convert without loss.
        out.push_str(itoa::Buffer::new().format(value as i64));
        out.push_str(".0");
        return;
    }
    // ryu gives the shortest round-trip digits (Python's too); only its
    // layout differs, so take the digits and the point's position from it.
    let mut buffer = ryu::Buffer::new();
    let text = buffer.format_finite(value);
    let (sign, text) = match text.strip_prefix('-') {
        Some(t) => ("-", t),
        None => ("", text),
    };
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, e.parse::<i32>().unwrap_or(0)),
        None => (text, 0),
    };
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut digits: Vec<u8> = whole.bytes().chain(fraction.bytes()).collect();
    // value = 0.DIGITS x 10^point
    let mut point = whole.len() as i32 + exponent;
    let leading = digits.iter().take_while(|d| **d == b'0').count();
    digits.drain(..leading.min(digits.len().saturating_sub(1)));
    point -= leading as i32;
    while digits.len() > 1 && digits.last() == Some(&b'0') {
        digits.pop();
    }
    let digits = std::str::from_utf8(&digits).unwrap_or("0");
    out.push_str(sign);
    if !(-3..=16).contains(&point) {
        let exponent = point - 1;
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exponent < 0 { '-' } else { '+' });
        if exponent.unsigned_abs() < 10 {
            out.push('0');
        }
        out.push_str(itoa::Buffer::new().format(exponent.unsigned_abs()));
    } else if point <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', point.unsigned_abs() as usize));
        out.push_str(digits);
    } else {
        let point = point as usize;
        if point >= digits.len() {
            out.push_str(digits);
            out.extend(std::iter::repeat_n('0', point - digits.len()));
            out.push_str(".0");
        } else {
            out.push_str(&digits[..point]);
            out.push('.');
            out.push_str(&digits[point..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_print_as_python_prints_them() {
        // Each right-hand side is Python 3.11's repr of the left.
        for (value, python) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (3.0, "3.0"),
            (-17.0, "-17.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1.0 / 3.0, "0.3333333333333333"),
            (12345.678, "12345.678"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (1e15, "1000000000000000.0"),
            (9999999999999998.0, "9999999999999998.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (123456789012345678.0, "1.2345678901234568e+17"),
            (1e22, "1e+22"),
            (1e100, "1e+100"),
            (5e-324, "5e-324"),
            (1234567.891, "1234567.891"),
            (f64::INFINITY, "inf"),
            (f64::NEG_INFINITY, "-inf"),
            (f64::NAN, "nan"),
        ] {
            assert_eq!(python_float_repr(value), python, "{value:e}");
        }
    }

    #[test]
    fn header_of_the_spec_example() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.wsp");
        WhisperFile::create(
            &path,
            &[(3600, 720), (10, 360), (60, 1440)],
            0.5,
            Aggregation::Average,
        )
        .unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 30292);
        let hex: String = bytes[..52].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "0000000100278d003f00000000000003\
             000000340000000a00000168\
             000011140000003c000005a0\
             0000549400000e10000002d0"
        );
        let f = WhisperFile::open(&path).unwrap();
        assert_eq!(f.header.archives.len(), 3);
        assert_eq!(f.header.max_retention, 2_592_000);
    }

    #[test]
    fn archive_validation() {
        assert!(validate_archives(&[(60, 1440), (10, 360)]).is_ok());
        assert!(validate_archives(&[]).is_err());
        assert!(validate_archives(&[(10, 100), (10, 200)]).is_err());
        assert!(validate_archives(&[(10, 100), (15, 200)]).is_err());
        assert!(validate_archives(&[(10, 100), (60, 10)]).is_err());
        assert!(validate_archives(&[(10, 3), (60, 100)]).is_err());
    }

    #[test]
    fn python_set_order_matches_cpython() {
        // CPython 3.11: list(set([1700000000, 1699999700, 1699999400])) and
        // small ints, which land in their own slots.
        assert_eq!(python_set_order(&[3, 1, 2, 1]), vec![1, 2, 3]);
        assert_eq!(python_set_order(&[8, 1]), vec![8, 1]);
    }

    #[test]
    fn aggregation_tie_and_nan_rules() {
        assert_eq!(Aggregation::AbsMax.apply(&[-5.0, 5.0], &[]), -5.0);
        assert_eq!(Aggregation::AbsMin.apply(&[3.0, -3.0], &[]), 3.0);
        assert!(Aggregation::Max.apply(&[f64::NAN, 1.0], &[]).is_nan());
        assert_eq!(Aggregation::Max.apply(&[1.0, f64::NAN], &[]), 1.0);
        assert_eq!(
            Aggregation::Sum.apply(&[-0.0], &[]).to_bits(),
            0.0f64.to_bits()
        );
        assert_eq!(Aggregation::AvgZero.apply(&[4.0], &[Some(4.0), None]), 2.0);
    }

    #[test]
    fn corrupt_headers_are_errors_not_panics() {
        let dir = tempfile::tempdir().unwrap();
        for bytes in [vec![], vec![0u8; 10], vec![0u8; 16], {
            let mut b = vec![0u8; 40];
            b[3] = 1; // average
            b[15] = 1; // one archive
            b[16..20].copy_from_slice(&28u32.to_be_bytes());
            b[20..24].copy_from_slice(&10u32.to_be_bytes());
            b[24..28].copy_from_slice(&1000u32.to_be_bytes()); // runs past the end
            b
        }] {
            let path = dir.path().join("bad.wsp");
            std::fs::write(&path, &bytes).unwrap();
            assert!(WhisperFile::open(&path).is_err());
        }
    }

    /// The crafted header from the reliability issue: two archives (1 s x 1
    /// and 0xFFFFFFF0 s x 1) that fit in the 64-byte file; the first roll-up
    /// tried to allocate 64 GiB and aborted the agent.
    fn crafted_huge_rollup() -> Vec<u8> {
        let mut b = Vec::new();
        for w in [1u32, 0xFFFF_FFFF, 0, 2, 40, 1, 1, 52, 0xFFFF_FFF0, 1] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b.resize(64, 0);
        b
    }

    #[test]
    fn regression_crafted_rollup_header_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("evil.wsp");
        std::fs::write(&path, crafted_huge_rollup()).unwrap();
        let err = WhisperFile::open(&path).unwrap_err();
        assert!(matches!(err, WhisperError::Corrupt(_)), "{err}");
    }

    #[test]
    fn regression_fetch_sized_by_max_retention_is_refused() {
        // One 1 s x 2 archive but maxRetention 0xFFFFFFFF: a fetch from 0
        // tried to allocate 28.7 GB.
        let mut b = Vec::new();
        for w in [1u32, 0xFFFF_FFFF, 0, 1, 28, 1, 1] {
            b.extend_from_slice(&w.to_be_bytes());
        }
        b.resize(40, 0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wide.wsp");
        std::fs::write(&path, &b).unwrap();
        assert!(matches!(
            WhisperFile::open_read(&path),
            Err(WhisperError::Corrupt(_))
        ));
    }

    #[test]
    fn headers_whisper_could_not_write_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good.wsp");
        WhisperFile::create(&good, &[(10, 6), (60, 10)], 0.5, Aggregation::Sum).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        let set = |at: usize, v: u32| {
            let mut b = bytes.clone();
            b[at..at + 4].copy_from_slice(&v.to_be_bytes());
            b
        };
        let cases = [
            ("max retention", set(4, 601)),
            ("offset gap", set(28, 40 + 72 + 12)),
            ("precision order", set(20, 120)),
            ("not a multiple", set(32, 25)),
            ("too few points to roll up", set(24, 5)),
            ("truncated", bytes[..bytes.len() - 12].to_vec()),
        ];
        for (what, b) in cases {
            let path = dir.path().join("bad.wsp");
            std::fs::write(&path, &b).unwrap();
            assert!(
                matches!(WhisperFile::open(&path), Err(WhisperError::Corrupt(_))),
                "{what} was accepted"
            );
        }
        assert!(WhisperFile::open(&good).is_ok());
    }
}
