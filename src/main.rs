//! The `ochopod` command line: parse, set up logging, call into the library, map the outcome to
//! an exit code.
//!
//! Exit codes: the process's own code for `run` (128+n when signal n killed it); 0 success;
//! 1 failure; 2 bad input (pod.yaml problems, usage, `OCHOPOD_ZK*` settings, a ZooKeeper tree
//! ochopod refuses to run on); 3 timeout (`ctl wait`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use ochopod::logs::{LogRing, TeeWriter};
use ochopod::runtime::{self, RunOptions, StartError};

#[derive(Parser)]
#[command(
    name = "ochopod",
    version,
    about = "Configure and supervise clustered containers from a pod.yaml"
)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "OCHOPOD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the pod.
    Run {
        /// The pod.yaml (default: $OCHOPOD_POD, else ./pod.yaml).
        #[arg(env = "OCHOPOD_POD", default_value = "pod.yaml")]
        pod_yaml: PathBuf,
        /// No ZooKeeper: configure the pod as a cluster of one at start.
        #[arg(long)]
        standalone: bool,
    },
    /// Validate a pod.yaml and render every template against a sample cluster of 3 pods.
    Check { pod_yaml: PathBuf },
    /// Local development: a throwaway ZooKeeper and N pods on 127.0.0.2, 127.0.0.3, ...
    Up(ochopod::up::UpOptions),
    /// Print what a given cluster map renders.
    Render {
        pod_yaml: PathBuf,
        /// A cluster map as JSON (the body of /control/on).
        #[arg(long)]
        cluster: PathBuf,
    },
    /// Drive the pods of running clusters: find them in ZooKeeper, call their control API.
    Ctl(ochopod::ctl::CtlArgs),
    /// Print a shell completion script (`ochopod completions bash > /etc/bash_completion.d/ochopod`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (ochopod.1, ochopod-run.1, ochopod-ctl.1, ...) into DIR (docs/man).
    #[command(hide = true)]
    Man { dir: PathBuf },
}

/// `OCHOPOD_LOG` is a list of `target=level` directives with an optional default level
/// (`info,ochopod::sync=debug`): a [`Targets`](tracing_subscriber::filter::Targets) filter, which
/// needs no regular expressions (`EnvFilter` would link a regex engine, about 0.5 MB of code
/// mapped into every pod, for span and field filters nobody sets on a pod).
fn init_logging(format: LogFormat, ring: &LogRing) {
    use tracing_subscriber::filter::Targets;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    let directives = std::env::var("OCHOPOD_LOG").ok().filter(|v| !v.trim().is_empty());
    let filter = match directives.as_deref().map(str::parse::<Targets>) {
        Some(Ok(filter)) => filter,
        Some(Err(e)) => {
            eprintln!("ochopod: OCHOPOD_LOG: {e}; logging at info");
            Targets::new().with_default(tracing::Level::INFO)
        }
        None => Targets::new().with_default(tracing::Level::INFO),
    };
    let writer = TeeWriter { ring: ring.clone() };
    // The builder alone stops at INFO: let everything through to `filter`, which decides.
    let builder = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(writer)
        .with_target(false);
    match format {
        LogFormat::Human => builder.with_ansi(false).finish().with(filter).init(),
        LogFormat::Json => builder.json().finish().with(filter).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logging = |ring: &LogRing| init_logging(cli.log_format, ring);
    let code = match cli.command {
        // ctl, completions and man are clients: their output is theirs, no log ring or tracing.
        Command::Ctl(args) => ochopod::ctl::run(args),
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            // Into a buffer first: clap_complete panics on a write error (a closed pipe).
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "ochopod", &mut script);
            match std::io::Write::write_all(&mut std::io::stdout(), &script) {
                Ok(()) => 0,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
                Err(e) => {
                    eprintln!("ochopod: cannot write the completion script: {e}");
                    1
                }
            }
        }
        Command::Man { dir } => match man_pages(&dir) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("ochopod: cannot write the man pages into {}: {e}", dir.display());
                1
            }
        },
        Command::Run { pod_yaml, standalone } => {
            let ring = LogRing::default();
            logging(&ring);
            run(RunOptions {
                pod_yaml,
                standalone,
                ring,
            })
        }
        Command::Up(mut opts) => {
            use std::io::IsTerminal;
            logging(&LogRing::default());
            opts.plain |= !std::io::stdout().is_terminal();
            block_on(ochopod::up::up(opts)).unwrap_or_else(|e| {
                eprintln!("ochopod up: {e:#}");
                1
            })
        }
        Command::Check { pod_yaml } => {
            logging(&LogRing::default());
            ochopod::check::check(&pod_yaml)
        }
        Command::Render { pod_yaml, cluster } => {
            logging(&LogRing::default());
            ochopod::check::render(&pod_yaml, &cluster)
        }
    };
    exit(code)
}

/// Writes one page per visible command, `ochopod.1`, `ochopod-ctl.1`, `ochopod-ctl-ls.1`...
fn man_pages(dir: &std::path::Path) -> std::io::Result<()> {
    fn each(cmd: &clap::Command, dir: &std::path::Path, source: &str) -> std::io::Result<()> {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
            each(sub, dir, source)?;
        }
        clap_mangen::Man::new(cmd.clone())
            .source(source)
            .generate_to(dir)
            .map(drop)
    }
    let mut cmd = <Cli as clap::CommandFactory>::command().disable_help_subcommand(true);
    // Gives every subcommand its full name (`ochopod-ctl-ls`).
    cmd.build();
    each(&cmd, dir, &format!("ochopod {}", env!("CARGO_PKG_VERSION")))
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn run(opts: RunOptions) -> i32 {
    match block_on(async { Ok(runtime::run(opts).await) }) {
        Ok(Ok(code)) => code,
        Ok(Err(StartError::Spec(d))) => {
            eprintln!("{d}");
            2
        }
        Ok(Err(StartError::Template(e))) => {
            eprintln!("{e}");
            2
        }
        Ok(Err(e @ (StartError::Token(_) | StartError::Identity(_) | StartError::Binding(_)))) => {
            eprintln!("ochopod: {e}");
            2
        }
        Ok(Err(StartError::Zk(e))) => {
            eprintln!("ochopod: {:#}", anyhow::Error::from(e));
            2
        }
        Ok(Err(e @ (StartError::StateDir { .. } | StartError::Listen { .. }))) => {
            eprintln!("ochopod: {:#}", anyhow::Error::from(e));
            1
        }
        // Its message already ends with its cause.
        Ok(Err(StartError::Uuid(e))) => {
            eprintln!("ochopod: {e}");
            1
        }
        Err(e) => {
            eprintln!("ochopod: {e:#}");
            1
        }
    }
}

/// Runs a future on a small multi-threaded runtime: 2 workers, the default blocking pool.
///
/// ochopod mostly waits, but a few of its steps block a thread for as long as the disk takes
/// (the supervise loop's atomic writes fsync each file it renders): with a second worker the
/// control API and the ZooKeeper session keep going meanwhile. What a single-threaded runtime
/// would save was measured (docs/benchmarks.md, "A lighter pod"): 2 threads and 0.06–0.2 MiB of
/// RSS, no faster formation; not worth a pod whose API and heartbeats wait on a slow fsync.
fn block_on<T>(future: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| anyhow::anyhow!("cannot start the async runtime: {e}"))?;
    runtime.block_on(future)
}
