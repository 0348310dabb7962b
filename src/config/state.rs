//! `[state]`: where the history that outlives a generation lives (budget, idempotency
//! records, list-cache coherence), and how a replica behaves while it cannot reach it.

use super::raw::RawState;
use super::{read_secret, Problems, RequestsPerMinute};
use crate::state::redis::RedisSettings;
use std::path::Path;
use std::time::Duration;

/// Which store holds the shared state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// In this process: one replica; kept across reloads.
    Memory,
    /// A Redis-protocol server shared by every replica with the same key prefix.
    Redis(RedisSettings),
}

/// `[state]`, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct StateSettings {
    /// The store.
    pub backend: Backend,
    /// Replicas that may share one budget at once (the private shares must fit N).
    pub max_replicas: u32,
    /// Fraction of each key's `requests_per_minute` this replica may spend alone.
    pub private_share: f64,
    /// While the backend is down, a locally cached list is served only this young.
    pub degraded_max_age: Duration,
}

impl StateSettings {
    /// The memory backend's settings (the default).
    pub fn memory() -> StateSettings {
        StateSettings {
            backend: Backend::Memory,
            max_replicas: 1,
            private_share: 0.0,
            degraded_max_age: Duration::from_secs(5),
        }
    }

    /// (shared, private) split of a key's limit `n`: each of `max_replicas` replicas keeps
    /// `private`, so `shared + max_replicas × private ≤ n` in every state of the backend.
    /// `None` for an unlimited key: there is no budget to split.
    pub fn split(&self, n: RequestsPerMinute) -> Option<(u32, u32)> {
        let n = n.limit()?;
        Some(match self.backend {
            Backend::Memory => (n, 0),
            Backend::Redis(_) => {
                let private = (f64::from(n) * self.private_share).floor() as u32;
                // Validation keeps private_share × max_replicas below 1, so in exact
                // arithmetic at least one admission is shared; this keeps it so whatever the
                // floating point rounding of a share just under 1 / max_replicas.
                let private = private.min(n.saturating_sub(1) / self.max_replicas.max(1));
                let shared = n - private * self.max_replicas.max(1);
                (shared, private)
            }
        })
    }
}

pub(super) fn validate_state(raw: &RawState, base: &Path, p: &mut Problems) -> StateSettings {
    let max_replicas = match raw.max_replicas {
        None => 3,
        Some(0) => {
            p.push("state.max_replicas", "must be at least 1");
            1
        }
        Some(n) => n,
    };
    let private_share = match raw.private_share {
        None => 0.3 / f64::from(max_replicas),
        Some(s) if !(0.0..=1.0).contains(&s) || !s.is_finite() => {
            p.push("state.private_share", "must be a fraction between 0 and 1");
            0.0
        }
        // Equal to the whole budget is refused too: it leaves no shared pool, so the shared
        // store would be asked for admissions with a limit of 0 (every request then falls to
        // a private share, each replica alone gets 1/max_replicas of N even while the others
        // are not running, and the budget becomes a static partition nobody asked for).
        Some(s) if s * f64::from(max_replicas) >= 1.0 => {
            let what = if s * f64::from(max_replicas) > 1.0 {
                "exceeds the whole budget"
            } else {
                "is the whole budget and leaves no shared pool"
            };
            p.push(
                "state.private_share",
                format!(
                    "state.private_share ({s}) × state.max_replicas ({max_replicas}) {what}: \
                     keep it below 1 / max_replicas ({})",
                    1.0 / f64::from(max_replicas)
                ),
            );
            0.0
        }
        Some(s) => s,
    };
    let degraded_max_age = p.duration(
        "state.degraded_max_age",
        raw.degraded_max_age.as_deref(),
        Duration::from_secs(5),
    );
    let connect_timeout = p.duration(
        "state.connect_timeout",
        raw.connect_timeout.as_deref(),
        Duration::from_millis(500),
    );
    let command_timeout = p.duration(
        "state.command_timeout",
        raw.command_timeout.as_deref(),
        Duration::from_millis(50),
    );
    if command_timeout.is_zero() || connect_timeout.is_zero() {
        p.push(
            "state",
            "connect_timeout and command_timeout must be greater than zero",
        );
    }
    let key_prefix = raw.key_prefix.clone().unwrap_or_else(|| "jbgw".into());
    if key_prefix.is_empty()
        || key_prefix.len() > 64
        || !key_prefix
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
    {
        p.push(
            "state.key_prefix",
            "1 to 64 characters among letters, digits, '-', '_', '.', ':'",
        );
    }
    let backend = match raw.backend.as_deref().unwrap_or("memory") {
        "memory" => {
            if raw.url.is_some() || raw.url_env.is_some() || raw.url_file.is_some() {
                p.push("state.url", "only used with backend = \"redis\"");
            }
            return StateSettings {
                max_replicas: 1,
                private_share: 0.0,
                ..StateSettings::memory()
            };
        }
        "redis" => {
            let url = match (&raw.url, &raw.url_env, &raw.url_file) {
                (Some(u), None, None) => {
                    let parsed = u.parse::<http::Uri>().ok();
                    let has_credentials = parsed
                        .as_ref()
                        .and_then(|u| u.authority())
                        .is_some_and(|a| a.as_str().contains('@'));
                    if has_credentials {
                        p.push(
                            "state.url",
                            "credentials must not be inline: put the URL in url_env or url_file",
                        );
                    }
                    Some(u.clone())
                }
                (None, env, file) if env.is_some() || file.is_some() => read_secret(
                    "state.url",
                    env.as_deref(),
                    file.as_deref(),
                    base,
                    "Redis URL",
                    p,
                ),
                (None, _, _) => {
                    p.push(
                        "state.url",
                        "backend = \"redis\" needs url, url_env or url_file",
                    );
                    None
                }
                _ => {
                    p.push("state.url", "set only one of url, url_env and url_file");
                    None
                }
            };
            match url {
                Some(u) if u.starts_with("redis://") || u.starts_with("rediss://") => {
                    Backend::Redis(RedisSettings {
                        url: u,
                        connect_timeout,
                        command_timeout,
                        key_prefix,
                    })
                }
                Some(_) => {
                    // Never echo the URL: it may hold a password.
                    p.push("state.url", "must start with redis:// or rediss://");
                    Backend::Memory
                }
                None => Backend::Memory,
            }
        }
        other => {
            p.push(
                "state.backend",
                format!("unknown backend {other:?} (memory or redis)"),
            );
            Backend::Memory
        }
    };
    StateSettings {
        backend,
        max_replicas,
        private_share,
        degraded_max_age,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redis(max_replicas: u32, private_share: f64) -> StateSettings {
        StateSettings {
            backend: Backend::Redis(RedisSettings {
                url: "redis://127.0.0.1:6379/0".into(),
                connect_timeout: Duration::from_millis(500),
                command_timeout: Duration::from_millis(50),
                key_prefix: "jbgw".into(),
            }),
            max_replicas,
            private_share,
            degraded_max_age: Duration::from_secs(5),
        }
    }

    #[test]
    fn a_limit_splits_and_unlimited_has_nothing_to_split() {
        let memory = StateSettings::memory();
        assert_eq!(
            memory.split(RequestsPerMinute::Limited(100)),
            Some((100, 0))
        );
        assert_eq!(memory.split(RequestsPerMinute::Unlimited), None);
        let shared = redis(3, 0.1);
        assert_eq!(
            shared.split(RequestsPerMinute::Limited(100)),
            Some((70, 10))
        );
        assert_eq!(shared.split(RequestsPerMinute::Unlimited), None);
    }

    #[test]
    fn every_accepted_split_leaves_a_shared_pool() {
        for max_replicas in 1..=8u32 {
            for share in [
                0.0,
                0.1,
                0.3,
                1.0 / f64::from(max_replicas) - 1e-12,
                0.999 / f64::from(max_replicas),
            ] {
                let settings = redis(max_replicas, share.max(0.0));
                for n in [1, 2, 3, 7, 10, 99, 100, 1_000_000] {
                    let (shared, private) = settings.split(RequestsPerMinute::Limited(n)).unwrap();
                    assert!(
                        shared >= 1,
                        "n {n}, {max_replicas} × {share}: ({shared}, {private})"
                    );
                    assert!(shared + private * max_replicas <= n);
                }
            }
        }
    }

    fn check(text: &str) -> Result<crate::config::Settings, crate::config::ConfigError> {
        let dir = std::env::temp_dir().join(format!(
            "jbgw-state-split-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("read.key"), "jb_read").unwrap();
        std::fs::write(dir.join("jwt.secret"), "0123456789abcdef0123456789abcdef").unwrap();
        let text = format!(
            "[upstream]\nbase_url = \"http://127.0.0.1:9\"\n\
             [upstream.keys.read]\nsecret_file = \"read.key\"\nrequests_per_minute = 100\n\
             [auth]\nalgorithms = [\"HS256\"]\nissuer = \"https://idp.test\"\naudience = \"gw\"\n\
             [[auth.keys]]\nhmac_secret_file = \"jwt.secret\"\n\
             [[users]]\nsubject = \"bob\"\nupstream_key = \"read\"\nuser_id = 2\naccess = \"read\"\n\
             [state]\nbackend = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\n{text}"
        );
        let out = crate::config::from_toml(&text, &dir);
        std::fs::remove_dir_all(&dir).ok();
        out
    }

    #[test]
    fn a_split_that_leaves_no_shared_pool_is_refused_naming_both_fields() {
        // Issue 20 §3: 2 × 0.5 is the whole budget; the shared pool would be 0.
        for (max_replicas, share) in [(2, "0.5"), (1, "1.0"), (4, "0.25"), (3, "0.4")] {
            let e = check(&format!(
                "max_replicas = {max_replicas}\nprivate_share = {share}\n"
            ))
            .expect_err("no shared pool");
            let (path, msg) = &e.problems[0];
            assert_eq!(e.problems.len(), 1, "{e}");
            assert_eq!(path, "state.private_share");
            assert!(
                msg.contains("state.private_share") && msg.contains("state.max_replicas"),
                "{msg}"
            );
        }
        // Just under the whole budget: accepted, and the store is never asked with 0.
        let ok =
            check("max_replicas = 2\nprivate_share = 0.49\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ok.state.split(RequestsPerMinute::Limited(100)),
            Some((2, 49))
        );
        let ok = check("max_replicas = 3\n").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            ok.state.split(RequestsPerMinute::Limited(100)),
            Some((70, 10))
        );
    }
}
