//! The `sluice` binary: command-line flags, logging, signals.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};

use sluice::agent::{self, BoundSockets, Reloads};
use sluice::config::check::check_resources;
use sluice::config::layer::Overrides;
use sluice::config::print::toml_text;
use sluice::config::Config;

#[derive(Parser)]
#[command(
    name = "sluice",
    version,
    about = "StatsD aggregation agent with Graphite output"
)]
struct Cli {
    #[command(flatten)]
    flags: Flags,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent (the default).
    Run,
    /// Validate the configuration and print the effective settings.
    CheckConfig,
    /// Whisper file tools (like whisper-info, whisper-fetch, whisper-create).
    #[command(subcommand)]
    Whisper(WhisperCommand),
    /// End-to-end load test: starts each target on loopback, sends StatsD
    /// with sendmmsg, and accounts loss, aggregates, CPU and memory exactly.
    Bench(BenchArgs),
    /// Etsy's cluster proxy: forward each StatsD line unchanged to the
    /// backend a consistent hash of its name picks (uses --udp, --tcp,
    /// --admin, --config's [proxy] table and --log-level).
    Proxy(ProxyArgs),
}

#[derive(Args)]
struct ProxyArgs {
    /// A StatsD backend, host:port[:admin_port] (repeatable); with an admin
    /// port it is health-checked with the `health` command.
    #[arg(long = "backend", value_name = "HOST:PORT[:ADMIN_PORT]")]
    backends: Vec<String>,
    /// Largest datagram sent to a backend, in bytes (default 1432).
    #[arg(long)]
    max_datagram: Option<i64>,
    /// How often backends are health-checked (default 1s).
    #[arg(long, value_name = "DURATION")]
    check_interval: Option<String>,
}

#[derive(Args)]
struct BenchArgs {
    /// Targets to measure, in order: sluice, etsy, collectd, sluice-proxy
    /// (sluice proxy in front of a sluice aggregator), etsy-proxy (Etsy's
    /// proxy.js in front of the same), brubeck, statsite.
    #[arg(long, value_delimiter = ',', default_value = "sluice,etsy")]
    targets: Vec<String>,
    /// Lines to send.
    #[arg(long, default_value_t = 2_000_000)]
    lines: u64,
    /// Percent of counters,timers,gauges,sets (e.g. 70,15,10,5).
    #[arg(long, default_value = "100,0,0,0")]
    mix: String,
    /// Sample rates counters and timers cycle through (e.g. 1,0.5,0.1).
    #[arg(long, value_delimiter = ',', default_value = "1")]
    sample_rates: Vec<f64>,
    /// Distinct keys (shared out between the types by the mix).
    #[arg(long, default_value_t = 10_000)]
    keys: u64,
    /// Lines per datagram.
    #[arg(long, default_value_t = 25)]
    per_datagram: usize,
    /// Lines per second (0: flat out).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Source sockets the sender rotates over, as several clients would.
    #[arg(long, default_value_t = 1)]
    sockets: usize,
    /// The targets' flush interval.
    #[arg(long, default_value = "1s")]
    flush: String,
    /// Etsy's stats.js.
    #[arg(long, default_value = ".test-deps/node_modules/statsd/stats.js")]
    etsy: PathBuf,
    /// A config file for the sluice target (e.g. a bigger receive buffer).
    #[arg(long)]
    sluice_config: Option<PathBuf>,
    /// brubeck's binary, built from its source (for the brubeck target;
    /// given alone, it adds brubeck to the targets).
    #[arg(long)]
    brubeck: Option<PathBuf>,
    /// statsite's binary, built from its source (given alone, it adds
    /// statsite to the targets).
    #[arg(long)]
    statsite: Option<PathBuf>,
}

#[derive(Subcommand)]
enum WhisperCommand {
    /// Print a file's header, as whisper-info does.
    Info {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Print a file's points, as whisper-fetch does.
    Fetch {
        file: PathBuf,
        /// Unix time to start from (default: 24 hours ago).
        #[arg(long)]
        from: Option<i64>,
        /// Unix time to end at (default: now).
        #[arg(long)]
        until: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Create a file, as whisper-create does.
    Create {
        file: PathBuf,
        /// precision:retention items, e.g. 10s:6h 1m:7d or 60:1440.
        #[arg(required = true)]
        retentions: Vec<String>,
        #[arg(long, default_value_t = 0.5)]
        xff: f64,
        #[arg(long, default_value = "average")]
        method: String,
    },
}

/// Settings that override the config file.
#[derive(Args, Clone, Default)]
struct Flags {
    /// TOML config file (see config/sluice.toml); without it, defaults.
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// UDP listen address (repeatable), e.g. 127.0.0.1:8125.
    #[arg(long, global = true, value_name = "ADDR")]
    udp: Vec<String>,
    /// TCP listen address (repeatable).
    #[arg(long, global = true, value_name = "ADDR")]
    tcp: Vec<String>,
    /// Admin interface address.
    #[arg(long, global = true, value_name = "ADDR")]
    admin: Option<String>,
    /// HTTP address: Graphite's read API, /health, /metrics ("" turns it off).
    #[arg(long, global = true, value_name = "ADDR")]
    http: Option<String>,
    /// Carbon line receiver (TCP and UDP), e.g. 0.0.0.0:2003 (repeatable).
    #[arg(long, global = true, value_name = "ADDR")]
    line_receiver: Vec<String>,
    /// Carbon pickle receiver, e.g. 0.0.0.0:2004 (repeatable).
    #[arg(long, global = true, value_name = "ADDR")]
    pickle_receiver: Vec<String>,
    /// StatsD over a unix datagram socket at PATH, as DogStatsD's
    /// dsd.socket (repeatable).
    #[arg(long, global = true, value_name = "PATH")]
    unix_datagram: Vec<String>,
    /// StatsD over a unix stream socket at PATH, newline framed (repeatable).
    #[arg(long, global = true, value_name = "PATH")]
    unix_stream: Vec<String>,
    /// Live series kept at most, all kinds together (flush.max_series; 0:
    /// no cap); past it new series are refused and counted.
    #[arg(long, global = true, value_name = "N")]
    max_series: Option<i64>,
    /// Carbon line-protocol destination host:port (repeatable).
    #[arg(long, global = true, value_name = "HOST:PORT")]
    carbon: Vec<String>,
    /// Flush interval: 500ms, 1s, 10s...
    #[arg(long, global = true, value_name = "DURATION")]
    flush_interval: Option<String>,
    /// Directory of the embedded whisper store.
    #[arg(long, global = true, value_name = "DIR")]
    whisper_dir: Option<String>,
    /// Do not write the embedded whisper store.
    #[arg(long, global = true)]
    no_whisper: bool,
    /// Also print every flushed point to stdout.
    #[arg(long, global = true)]
    console: bool,
    /// Log level: error, warn, info, debug, trace.
    #[arg(long, global = true, value_name = "LEVEL")]
    log_level: Option<String>,
}

impl Flags {
    /// The flags as the library's overrides.
    fn overrides(&self) -> Overrides {
        Overrides {
            config: self.config.clone(),
            udp: self.udp.clone(),
            tcp: self.tcp.clone(),
            admin: self.admin.clone(),
            http: self.http.clone(),
            line_receiver: self.line_receiver.clone(),
            pickle_receiver: self.pickle_receiver.clone(),
            unix_datagram: self.unix_datagram.clone(),
            unix_stream: self.unix_stream.clone(),
            max_series: self.max_series,
            carbon: self.carbon.clone(),
            flush_interval: self.flush_interval.clone(),
            whisper_dir: self.whisper_dir.clone(),
            no_whisper: self.no_whisper,
            console: self.console,
            log_level: self.log_level.clone(),
        }
    }
}

/// Reads, layers, validates and checks the configuration: what a run
/// refuses, check-config refuses too.
fn load_config(overrides: &Overrides) -> anyhow::Result<Config> {
    let config = Config::from_raw(&overrides.load()?)?;
    check_resources(&config)?;
    Ok(config)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("sluice: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Some(Command::Whisper(tool)) => return whisper_tool(tool),
        Some(Command::Bench(args)) => return bench(args),
        Some(Command::Proxy(args)) => return proxy(&cli.flags, args),
        _ => {}
    }
    let overrides = cli.flags.overrides();
    let config = load_config(&overrides)?;
    match cli.command.unwrap_or(Command::Run) {
        Command::CheckConfig => {
            println!("# effective configuration (valid)\n{}", toml_text(&config));
            Ok(())
        }
        Command::Run => run(config, overrides),
        Command::Whisper(_) | Command::Bench(_) | Command::Proxy(_) => {
            unreachable!("handled above")
        }
    }
}

fn proxy(flags: &Flags, args: ProxyArgs) -> anyhow::Result<()> {
    let proxy_flags = sluice::proxy::ProxyFlags {
        udp: flags.udp.clone(),
        tcp: flags.tcp.clone(),
        backends: args.backends,
        admin: flags.admin.clone(),
        max_datagram: args.max_datagram,
        check_interval: args.check_interval,
    };
    let config = sluice::proxy::ProxyConfig::load(flags.config.as_deref(), &proxy_flags)?;
    let _log = init_logging(flags.log_level.as_deref().unwrap_or("info"));
    sluice::proxy::run(config)
}

fn bench(args: BenchArgs) -> anyhow::Result<()> {
    use sluice::loadgen::{self, Mix, Target, Workload};
    let flush = sluice::config::parse_duration(&args.flush).ok_or_else(|| {
        anyhow::anyhow!(
            "--flush {:?}: a duration with a unit, such as 1s",
            args.flush
        )
    })?;
    let mix = Mix::parse(&args.mix).map_err(anyhow::Error::msg)?;
    if let Some(bad) = args
        .sample_rates
        .iter()
        .find(|r| !(**r > 0.0 && **r <= 1.0))
    {
        anyhow::bail!("--sample-rates: {bad} is not in (0, 1]");
    }
    let workload = Workload {
        lines: args.lines,
        mix,
        sample_rates: args.sample_rates,
        keys: args.keys,
        lines_per_datagram: args.per_datagram.max(1),
        rate: args.rate,
        sockets: args.sockets.max(1),
        flush,
        etsy_stats_js: args.etsy,
        sluice_config: args.sluice_config,
        brubeck: args.brubeck,
        statsite: args.statsite,
    };
    let mut targets = Vec::new();
    for name in &args.targets {
        targets.push(Target::parse(name).ok_or_else(|| {
            anyhow::anyhow!(
                "--targets {name:?}: sluice, etsy, collectd, sluice-proxy, etsy-proxy, brubeck or statsite"
            )
        })?);
    }
    for (path, target, flag) in [
        (&workload.brubeck, Target::Brubeck, "--brubeck"),
        (&workload.statsite, Target::Statsite, "--statsite"),
    ] {
        match path {
            Some(p) if !p.is_file() => {
                anyhow::bail!("{flag} {}: no such file", p.display())
            }
            Some(_) if !targets.contains(&target) => targets.push(target),
            None if targets.contains(&target) => {
                anyhow::bail!(
                    "--targets {}: needs {flag} PATH to its binary",
                    target.name()
                )
            }
            _ => {}
        }
    }
    let mut outcomes = Vec::new();
    for target in targets {
        eprintln!("measuring {} ...", target.name());
        match loadgen::run(target, &workload) {
            Ok(o) => outcomes.push(o),
            Err(e) => eprintln!("{}: {e}", target.name()),
        }
    }
    print!("{}", loadgen::report(&workload, &outcomes));
    Ok(())
}

fn whisper_tool(tool: WhisperCommand) -> anyhow::Result<()> {
    use sluice::store::tools;
    let text = match tool {
        WhisperCommand::Info { file, json } => {
            tools::info(&file, json).with_context(|| file.display().to_string())?
        }
        WhisperCommand::Fetch {
            file,
            from,
            until,
            json,
        } => {
            let now = sluice::telemetry::unix_now_f64() as i64;
            tools::fetch(&file, from, until, now, json)
                .with_context(|| file.display().to_string())?
        }
        WhisperCommand::Create {
            file,
            retentions,
            xff,
            method,
        } => tools::create(&file, &retentions, xff, &method).map_err(anyhow::Error::msg)?,
    };
    print!("{text}");
    Ok(())
}

type LogHandle =
    tracing_subscriber::reload::Handle<tracing_subscriber::EnvFilter, tracing_subscriber::Registry>;

fn log_filter(level: &str) -> tracing_subscriber::EnvFilter {
    tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("sluice={level},{level}")))
}

/// Logging to stderr, with a handle to change the level on reload.
fn init_logging(level: &str) -> LogHandle {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let (filter, handle) = tracing_subscriber::reload::Layer::new(log_filter(level));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(std::io::stderr)
                .with_ansi(std::io::stderr().is_terminal()),
        )
        .init();
    handle
}

fn run(config: Config, overrides: Overrides) -> anyhow::Result<()> {
    let log = init_logging(&config.log_level);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .thread_name("sluice-io")
        .build()?;
    runtime.block_on(async {
        let sockets = BoundSockets::bind(&config)?;
        let (reload_tx, configs) = tokio::sync::mpsc::unbounded_channel();
        // Installed before READY=1: SIGHUP's default action would kill us.
        let hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .context("installing the SIGHUP handler")?;
        tokio::spawn(reload_on_sighup(overrides, hup, reload_tx));
        let shutdown = shutdown_signal()?;
        let reloads = Reloads {
            configs,
            set_log_level: Box::new(move |level| {
                if log.reload(log_filter(level)).is_ok() {
                    tracing::info!(level, "log level changed");
                }
            }),
        };
        agent::run(config, sockets, Vec::new(), shutdown, reloads).await
    })
}

/// On SIGHUP, reads and validates the config file again; a valid one goes
/// to the agent, an invalid one is logged and the running config stays.
async fn reload_on_sighup(
    overrides: Overrides,
    mut hup: tokio::signal::unix::Signal,
    configs: tokio::sync::mpsc::UnboundedSender<Config>,
) {
    while hup.recv().await.is_some() {
        tracing::info!("SIGHUP received: reloading the configuration");
        match load_config(&overrides) {
            Ok(config) => {
                if configs.send(config).is_err() {
                    return;
                }
            }
            Err(e) => tracing::error!(
                error = %format!("{e:#}"),
                "reload refused; the running configuration stays"
            ),
        }
    }
}

/// Completes on SIGTERM or SIGINT.
/// Installs the SIGTERM/SIGINT handlers now (before READY=1 goes out, so
/// an early signal is never fatal) and returns the future that completes on
/// either.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}
