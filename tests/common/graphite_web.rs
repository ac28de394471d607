//! A real graphite-web 1.1.8 (Debian's package, run with Debian's system
//! python3 and Django's development server) on 127.0.0.1, reading a
//! whisper directory of the test's: the oracle for the read API.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running graphite-web; stopped on drop.
pub struct GraphiteWeb {
    child: Child,
    /// Where it listens.
    pub addr: SocketAddr,
    _base: tempfile::TempDir,
}

const SETTINGS: &str = r#"
import inspect, os
from collections import namedtuple
# Python 3.11 removed these; graphite-web 1.1.8's /functions needs them.
if not hasattr(inspect, "getargspec"):
    ArgSpec = namedtuple("ArgSpec", "args varargs keywords defaults")
    def getargspec(f):
        s = inspect.getfullargspec(f)
        return ArgSpec(s.args, s.varargs, s.varkw, s.defaults)
    inspect.getargspec = getargspec
if not hasattr(inspect, "formatargspec"):
    def formatargspec(args, varargs=None, varkw=None, defaults=None, *rest, **kw):
        return str(inspect.signature(lambda: None))
    inspect.formatargspec = formatargspec
BASE = os.environ["GW_BASE"]
SECRET_KEY = "sluice-oracle"
TIME_ZONE = "UTC"
LOG_DIR = BASE
STORAGE_DIR = BASE
WHISPER_DIR = os.environ["GW_WHISPER"]
STANDARD_DIRS = [WHISPER_DIR]
INDEX_FILE = os.path.join(BASE, "index")
DEFAULT_XFILES_FACTOR = 0
CARBONLINK_HOSTS = []
DATABASES = {"default": {"NAME": os.path.join(BASE, "graphite.db"), "ENGINE": "django.db.backends.sqlite3"}}
ALLOWED_HOSTS = ["*"]
CLUSTER_SERVERS = [s for s in os.environ.get("GW_CLUSTER", "").split(",") if s]
"#;

impl GraphiteWeb {
    /// Starts graphite-web on a free loopback port over `whisper_dir`.
    pub fn start(whisper_dir: &Path) -> GraphiteWeb {
        GraphiteWeb::start_federating(whisper_dir, &[])
    }

    /// Starts graphite-web over `whisper_dir` that also reads the nodes
    /// `cluster` (its CLUSTER_SERVERS), as a federating front end.
    pub fn start_federating(whisper_dir: &Path, cluster: &[SocketAddr]) -> GraphiteWeb {
        let cluster: Vec<String> = cluster.iter().map(|a| a.to_string()).collect();
        let base = tempfile::tempdir().expect("graphite-web base dir");
        let conf = base.path().join("conf");
        std::fs::create_dir_all(&conf).unwrap();
        std::fs::write(conf.join("sluice_oracle_settings.py"), SETTINGS).unwrap();
        let port = crate::common::free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let python = "/usr/bin/python3";
        assert!(
            Path::new("/usr/lib/python3/dist-packages/graphite/render/views.py").exists(),
            "graphite-web is not installed: run scripts/install-test-deps.sh"
        );
        let env = |cmd: &mut Command| {
            cmd.env("PYTHONPATH", &conf)
                .env("GRAPHITE_SETTINGS_MODULE", "sluice_oracle_settings")
                .env("DJANGO_SETTINGS_MODULE", "graphite.settings")
                .env("GW_BASE", base.path())
                .env("GW_WHISPER", whisper_dir)
                .env("GW_CLUSTER", cluster.join(","))
                .stdin(Stdio::null());
        };
        let mut migrate = Command::new(python);
        migrate.args(["-m", "django", "migrate", "--noinput", "-v0"]);
        env(&mut migrate);
        let out = migrate.output().expect("run django migrate");
        assert!(
            out.status.success(),
            "migrate: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut serve = Command::new(python);
        serve.args(["-m", "django", "runserver", "--noreload", &addr.to_string()]);
        env(&mut serve);
        let log = std::fs::File::create(base.path().join("server.log")).unwrap();
        let child = serve
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start graphite-web");
        let web = GraphiteWeb {
            child,
            addr,
            _base: base,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while crate::common::http::get(addr, "/version").is_none() {
            assert!(Instant::now() < deadline, "graphite-web did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        web
    }
}

impl Drop for GraphiteWeb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
