//! A real carbon-cache (Debian's graphite-carbon, installed by
//! scripts/install-test-deps.sh) on loopback, with its own config dir,
//! free ports and 1-second retention, for forwarding tests.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::free_port;
use sluice::store::format::WhisperFile;
use sluice::store::path::metric_path;

pub const CARBON_CACHE: &str = "/usr/bin/carbon-cache";

pub struct CarbonCache {
    pub root: PathBuf,
    pub line_port: u16,
    pub pickle_port: u16,
    child: Option<Child>,
}

impl CarbonCache {
    /// Writes a private config under `root` and starts carbon-cache.
    pub fn start(root: &Path) -> CarbonCache {
        assert!(
            Path::new(CARBON_CACHE).exists(),
            "{CARBON_CACHE} not found: run scripts/install-test-deps.sh"
        );
        let (line_port, pickle_port, query_port) = (free_port(), free_port(), free_port());
        for dir in ["conf", "storage/whisper", "storage/log"] {
            std::fs::create_dir_all(root.join(dir)).expect("carbon dirs");
        }
        let r = root.display();
        let conf = format!(
            "[cache]\nSTORAGE_DIR = {r}/storage/\nLOCAL_DATA_DIR = {r}/storage/whisper/\n\
             CONF_DIR = {r}/conf/\nLOG_DIR = {r}/storage/log/\nPID_DIR = {r}/storage/\nUSER =\n\
             DATABASE = whisper\nMAX_CACHE_SIZE = inf\nMAX_UPDATES_PER_SECOND = inf\n\
             MAX_CREATES_PER_MINUTE = inf\nLINE_RECEIVER_INTERFACE = 127.0.0.1\n\
             LINE_RECEIVER_PORT = {line_port}\nENABLE_UDP_LISTENER = False\n\
             PICKLE_RECEIVER_INTERFACE = 127.0.0.1\nPICKLE_RECEIVER_PORT = {pickle_port}\n\
             CACHE_QUERY_INTERFACE = 127.0.0.1\nCACHE_QUERY_PORT = {query_port}\n\
             USE_FLOW_CONTROL = True\nLOG_UPDATES = False\nLOG_CREATES = False\n\
             CACHE_WRITE_STRATEGY = sorted\nWHISPER_AUTOFLUSH = False\n\
             WHISPER_FALLOCATE_CREATE = True\nENABLE_TAGS = False\nCARBON_METRIC_INTERVAL = 0\n"
        );
        std::fs::write(root.join("conf/carbon.conf"), conf).expect("carbon.conf");
        std::fs::write(
            root.join("conf/storage-schemas.conf"),
            "[all]\npattern = .*\nretentions = 1s:1h\n",
        )
        .expect("schemas");
        let mut cache = CarbonCache {
            root: root.to_path_buf(),
            line_port,
            pickle_port,
            child: None,
        };
        cache.restart();
        cache
    }

    /// Starts (again) with the same config and ports.
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "carbon-cache already running");
        let log = std::fs::File::create(self.root.join("carbon.out")).expect("carbon log");
        let child = Command::new(CARBON_CACHE)
            .arg(format!(
                "--config={}",
                self.root.join("conf/carbon.conf").display()
            ))
            .args(["--nodaemon", "start"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("start carbon-cache");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.line_port)).is_err()
            || TcpStream::connect(("127.0.0.1", self.pickle_port)).is_err()
        {
            assert!(
                Instant::now() < deadline,
                "carbon-cache did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, and wait until the process is gone.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().ok().flatten().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.root.join("carbon.out")).unwrap_or_default()
    }

    pub fn whisper_dir(&self) -> PathBuf {
        self.root.join("storage/whisper")
    }

    /// The (timestamp, value) points carbon has written for `metric` in the
    /// last hour (empty if there is no file yet).
    pub fn points(&self, metric: &str) -> Vec<(i64, f64)> {
        let Ok(relative) = metric_path(metric) else {
            return Vec::new();
        };
        let Ok(mut file) = WhisperFile::open_read(&self.whisper_dir().join(relative)) else {
            return Vec::new();
        };
        // Look a little ahead: the final flush is stamped up to an interval
        // into the future.
        let now = sluice::telemetry::unix_now_f64() as i64 + 10;
        match file.fetch(now - 3500, Some(now), now) {
            Ok(Some(f)) => f
                .values
                .iter()
                .enumerate()
                .filter_map(|(i, v)| v.map(|v| (f.from + i as i64 * f.step, v)))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Polls until `check` holds for what carbon wrote, or panics.
    pub fn wait_until(&self, what: &str, timeout: Duration, mut check: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        while !check(self) {
            assert!(
                Instant::now() < deadline,
                "carbon never showed {what}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for CarbonCache {
    fn drop(&mut self) {
        self.stop();
    }
}
