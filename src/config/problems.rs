//! The problems collector: every problem found while validating, each with the path of the
//! offending option, so one run reports them all; and the typed readers of durations, sizes,
//! counts and addresses that report into it.

use super::units;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

/// Every problem found in a config file, each with the path of the offending option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// `(path, message)` pairs, in file order.
    pub problems: Vec<(String, String)>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "invalid configuration ({} problem(s)):",
            self.problems.len()
        )?;
        for (path, msg) in &self.problems {
            writeln!(f, "  {path}: {msg}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Collects problems with their paths while validating.
#[derive(Default)]
pub(crate) struct Problems(
    /// `(path, message)` pairs, in file order.
    pub(super) Vec<(String, String)>,
    /// Secret material loaded, fed into the digest.
    pub(super) Vec<u8>,
);

impl Problems {
    /// Feeds loaded secret material into the settings' digest.
    pub(crate) fn material(&mut self, bytes: &[u8]) {
        self.1
            .extend_from_slice(&(bytes.len() as u64).to_be_bytes());
        self.1.extend_from_slice(bytes);
    }

    pub(crate) fn push(&mut self, path: impl Into<String>, msg: impl Into<String>) {
        self.0.push((path.into(), msg.into()));
    }

    pub(crate) fn duration(
        &mut self,
        path: &str,
        raw: Option<&str>,
        default: Duration,
    ) -> Duration {
        match raw.map(units::parse_duration) {
            None => default,
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                self.push(path, e);
                default
            }
        }
    }

    /// A count that must be at least one (the default stands in when it is not).
    pub(crate) fn positive<T: Copy + PartialEq + From<u8>>(
        &mut self,
        path: &str,
        raw: Option<T>,
        default: T,
    ) -> T {
        match raw {
            Some(v) if v == T::from(0) => {
                self.push(path, "must be greater than zero");
                default
            }
            Some(v) => v,
            None => default,
        }
    }

    pub(crate) fn size(&mut self, path: &str, raw: Option<&str>, default: u64) -> u64 {
        match raw.map(units::parse_size) {
            None => default,
            Some(Ok(n)) => n,
            Some(Err(e)) => {
                self.push(path, e);
                default
            }
        }
    }

    pub(super) fn addr(&mut self, path: &str, raw: Option<&str>, default: &str) -> SocketAddr {
        let text = raw.unwrap_or(default);
        text.parse().unwrap_or_else(|_| {
            self.push(
                path,
                format!("invalid socket address {text:?} (expected ip:port)"),
            );
            default.parse().expect("default address parses")
        })
    }
}
