//! `journeybee-sim`: the JourneyBee API simulator as a process of its own, for scripts
//! (soak, benchmarks, manual checks) that want an upstream without the gateway's demo.
//!
//! Once listening it prints one line on stdout,
//!
//! ```text
//! SIM_URL=http://127.0.0.1:41234 SIM_READ_KEY=jb_sim_read_... SIM_WRITE_KEY=jb_sim_write_... SIM_USER_IDS=101,102,... SIM_COMPANY_DOMAINS=acme-partners.io
//! ```
//!
//! (the simulator's own fake keys; the company's active user ids, valid as `userId`, in the
//! order of `GET /api/v1/users`; the company's own e-mail domains, comma-separated),
//! optionally writes the same as `KEY=value` lines to `--env-file`, and serves until SIGINT
//! or SIGTERM. Logs go to stderr (`RUST_LOG` filters). A gateway config for this simulator
//! needs the keys, user ids among `SIM_USER_IDS`, and `SIM_COMPANY_DOMAINS` as
//! `[validation] own_domains` (scripts/lib.sh writes one).

#![forbid(unsafe_code)]

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use journeybee_sim::{RateLimitMode, SimConfig, Simulator, SIM_READ_KEY, SIM_WRITE_KEY};

/// Simulator of the JourneyBee v1 API: seeded data, bearer-key auth with read/write keys, an
/// optional per-key rate limit, and faults switchable at run time through
/// `PUT /__sim/fault` (`GET /__sim/stats` for counters).
#[derive(Parser, Debug)]
#[command(name = "journeybee-sim", version, about, long_about)]
struct Cli {
    /// Address to listen on; port 0 picks a free port (the printed URL has the real one).
    #[arg(long, env = "SIM_LISTEN", default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Seed of the deterministic data generator.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Number of partnerships to generate.
    #[arg(long, default_value_t = 300)]
    partnerships: usize,
    /// Page size of the partnership list.
    #[arg(long, default_value_t = 25)]
    page_size: usize,
    /// The company id (the only valid `{id}` of the `companies/{id}` routes).
    #[arg(long, default_value_t = 123)]
    company_id: u64,
    /// Per-key rate limit: requests per window (JourneyBee allows 100 a minute); unlimited
    /// when not given.
    #[arg(long, value_name = "N")]
    rate_limit: Option<u32>,
    /// How the rate limit counts: fixed one-minute windows, or an exact sliding window of
    /// --rate-limit-window-ms.
    #[arg(long, value_enum, default_value_t = Mode::Fixed, requires = "rate_limit")]
    rate_limit_mode: Mode,
    /// Length of the sliding window (with --rate-limit-mode sliding).
    #[arg(long, default_value_t = 60_000, value_name = "MS")]
    rate_limit_window_ms: u64,
    /// Do not serve the control endpoints (`/__sim/fault`, `/__sim/stats`).
    #[arg(long)]
    no_control: bool,
    /// Keep only the most recent this-many requests in memory (the count stays exact).
    #[arg(long, default_value_t = 1_000, value_name = "N")]
    record_limit: usize,
    /// Also write SIM_URL, SIM_READ_KEY, SIM_WRITE_KEY, SIM_USER_IDS and SIM_COMPANY_DOMAINS
    /// to this file as KEY=value lines once listening (written whole, then renamed into place).
    #[arg(long, value_name = "PATH")]
    env_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Mode {
    /// A fixed one-minute window per key.
    Fixed,
    /// An exact sliding window per key, like the real JourneyBee.
    Sliding,
}

impl Cli {
    fn sim_config(&self) -> SimConfig {
        let rate_limit_mode = match (self.rate_limit_mode, self.rate_limit) {
            (Mode::Sliding, Some(limit)) => RateLimitMode::Sliding {
                limit,
                window: Duration::from_millis(self.rate_limit_window_ms),
            },
            _ => RateLimitMode::FixedMinute,
        };
        SimConfig {
            company_id: self.company_id,
            partnerships: self.partnerships,
            seed: self.seed,
            page_size: self.page_size,
            rate_limit_per_minute: self.rate_limit,
            rate_limit_mode,
            control: !self.no_control,
            record_limit: Some(self.record_limit),
            ..SimConfig::default()
        }
    }
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C only, off Unix).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// What the simulator tells its caller once listening, as `(KEY, value)` pairs: printed on
/// one line and written to `--env-file`.
fn announcement(
    url: &str,
    user_ids: &[u64],
    company_domains: &[String],
) -> Vec<(&'static str, String)> {
    let ids: Vec<String> = user_ids.iter().map(u64::to_string).collect();
    vec![
        ("SIM_URL", url.to_string()),
        ("SIM_READ_KEY", SIM_READ_KEY.to_string()),
        ("SIM_WRITE_KEY", SIM_WRITE_KEY.to_string()),
        ("SIM_USER_IDS", ids.join(",")),
        ("SIM_COMPANY_DOMAINS", company_domains.join(",")),
    ]
}

fn write_env_file(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    // Installed before listening, so a signal sent once the line is printed is handled.
    let stop = shutdown_signal();
    let config = cli.sim_config();
    let company_domains = config.company_domains.clone();
    let sim = match Simulator::start(cli.listen, config).await {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("journeybee-sim: cannot listen on {}: {e}", cli.listen);
            return ExitCode::from(1);
        }
    };
    let url = sim.base_url();
    let pairs = announcement(&url, &sim.user_ids(), &company_domains);
    let pair = |(k, v): &(&str, String)| format!("{k}={v}");
    if let Some(path) = &cli.env_file {
        let env: String = pairs.iter().map(|p| pair(p) + "\n").collect();
        if let Err(e) = write_env_file(path, &env) {
            eprintln!("journeybee-sim: {}: {e}", path.display());
            return ExitCode::from(1);
        }
    }
    {
        let line: Vec<String> = pairs.iter().map(pair).collect();
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{}", line.join(" "));
        let _ = out.flush();
    }
    tracing::info!(%url, control = !cli.no_control, "journeybee simulator serving");
    stop.await;
    tracing::info!("shutting down");
    sim.shutdown();
    sim.stopped().await;
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }

    #[test]
    fn options_map_to_the_sim_config() {
        let cli = Cli::parse_from([
            "journeybee-sim",
            "--seed",
            "7",
            "--partnerships",
            "10",
            "--rate-limit",
            "5",
            "--rate-limit-mode",
            "sliding",
            "--rate-limit-window-ms",
            "1000",
            "--no-control",
        ]);
        let c = cli.sim_config();
        assert_eq!((c.seed, c.partnerships, c.control), (7, 10, false));
        assert_eq!(
            c.rate_limit_mode,
            RateLimitMode::Sliding {
                limit: 5,
                window: Duration::from_secs(1)
            }
        );
        let c = Cli::parse_from(["journeybee-sim"]).sim_config();
        assert_eq!(c.company_domains, [journeybee_sim::DEFAULT_COMPANY_DOMAIN]);
        assert!(c.control);
        assert_eq!(c.rate_limit_per_minute, None);
        assert_eq!(c.rate_limit_mode, RateLimitMode::FixedMinute);
    }

    #[test]
    fn the_announcement_names_keys_user_ids_and_domains() {
        let pairs = announcement(
            "http://127.0.0.1:1",
            &[101, 102],
            &["a.example".to_string(), "b.example".to_string()],
        );
        let text: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
        assert_eq!(
            text,
            [
                "SIM_URL=http://127.0.0.1:1".to_string(),
                format!("SIM_READ_KEY={SIM_READ_KEY}"),
                format!("SIM_WRITE_KEY={SIM_WRITE_KEY}"),
                "SIM_USER_IDS=101,102".to_string(),
                "SIM_COMPANY_DOMAINS=a.example,b.example".to_string(),
            ]
        );
    }
}
