//! The `journeybee-gateway` command line.

#![forbid(unsafe_code)]

use clap::{Parser, Subcommand};
#[cfg(feature = "demo")]
use journeybee_gateway::demo;
use journeybee_gateway::observe::logging;
use journeybee_gateway::server::{reload, signals};
use journeybee_gateway::{config, server};
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc rather than glibc malloc: the profile put 14–20% of the gateway's CPU in the
/// allocator (many small, short-lived allocations per request); see bench/results/latest.md.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// An authenticating reverse proxy for the JourneyBee partnerships API.
///
/// Internal apps present their own JWT; the gateway verifies it, maps the user to a JourneyBee
/// API key and userId, enforces write permission, validates create bodies and list queries,
/// caches lists, exports Prometheus metrics, and forwards to JourneyBee.
#[derive(Parser)]
#[command(name = "journeybee-gateway", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Config file for the default `serve` command.
    #[arg(
        long,
        short,
        env = "JBGW_CONFIG",
        default_value = "config/gateway.toml"
    )]
    config: PathBuf,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default when no command is given).
    Serve {
        /// The TOML config file (see config/gateway.example.toml).
        #[arg(
            long,
            short,
            env = "JBGW_CONFIG",
            default_value = "config/gateway.toml"
        )]
        config: PathBuf,
    },
    /// Validate a config file, print every problem, and exit (0 when valid, 2 otherwise).
    CheckConfig {
        /// The TOML config file.
        file: PathBuf,
    },
    /// Start the JourneyBee simulator and the gateway in front of it, with a read user and a
    /// write user, print ready tokens and curl commands, and run until Ctrl-C.
    #[cfg(feature = "demo")]
    Demo {
        /// Also write the URLs and tokens to this file as KEY=value lines (for scripts).
        #[arg(long)]
        env_file: Option<PathBuf>,
        /// Serve HTTPS with a CA made for the demo (written into its temp dir), and map a
        /// machine user by its client certificate.
        #[arg(long)]
        tls: bool,
    },
    /// Probe the admin /healthz endpoint; exit 0 when healthy (for container HEALTHCHECKs).
    /// With --ready, probe /readyz instead: exit 0 only when every token issuer has keys.
    Healthcheck {
        /// URL to probe.
        #[arg(long, default_value = "http://127.0.0.1:9090/healthz")]
        url: String,
        /// Probe readiness: the URL's path becomes /readyz (for orchestrators that route
        /// traffic only to ready instances; liveness stays /healthz so an IdP outage does not
        /// get the gateway restarted).
        #[arg(long)]
        ready: bool,
    },
}

/// The runtime. With one worker thread requested (`TOKIO_WORKER_THREADS=1`, as when the
/// gateway is pinned to one core), a current-thread runtime does the same work without the
/// cross-thread wake-ups of a one-worker multi-thread scheduler.
fn runtime() -> tokio::runtime::Runtime {
    let one = std::env::var("TOKIO_WORKER_THREADS").is_ok_and(|v| v.trim() == "1");
    let mut builder = if one {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    builder.enable_all().build().expect("tokio runtime")
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve { config: cli.config }) {
        Command::Serve { config } => {
            let settings = match config::load(&config) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("{}: {e}", config.display());
                    return ExitCode::from(2);
                }
            };
            // Held to the end: dropping it writes out the last lines.
            let _log = logging::init(&settings.log);
            runtime().block_on(async {
                // Handlers first: a signal sent once "gateway listening" is logged must be
                // caught, not take its default action.
                let stop = signals::shutdown();
                let hup = signals::Handler::hangup();
                match server::Gateway::start(settings).await {
                    Ok(gateway) => {
                        let poll = std::time::Duration::from_secs(2);
                        tokio::select! {
                            _ = stop => {}
                            _ = reload::watch(&gateway, &config, poll, hup) => {}
                        }
                        tracing::info!("shutting down: draining in-flight requests");
                        gateway.shutdown().await;
                        tracing::info!("stopped");
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "cannot start");
                        eprintln!("cannot start: {e}");
                        ExitCode::from(1)
                    }
                }
            })
        }
        Command::CheckConfig { file } => match config::load(&file) {
            Ok(s) => {
                println!(
                    "{}: ok ({} upstream key(s), {} user(s), {} token issuer(s))",
                    file.display(),
                    s.upstream.keys.len(),
                    s.users.len(),
                    s.auth.issuers.len()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                ExitCode::from(2)
            }
        },
        #[cfg(feature = "demo")]
        Command::Demo { env_file, tls } => {
            match runtime().block_on(demo::run(env_file.as_deref(), tls)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("demo: {e}");
                    ExitCode::from(1)
                }
            }
        }
        Command::Healthcheck { url, ready } => {
            let url = if ready {
                match server::readiness_url(&url) {
                    Ok(u) => u,
                    Err(e) => {
                        eprintln!("unhealthy: {e}");
                        return ExitCode::from(1);
                    }
                }
            } else {
                url
            };
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("tokio runtime");
            match rt.block_on(server::probe(&url)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("unhealthy: {e}");
                    ExitCode::from(1)
                }
            }
        }
    }
}
