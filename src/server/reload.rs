//! Live reload: on SIGHUP, and when the config file changes, load and fully validate the new
//! config and swap it in; an invalid one is refused with every problem logged, and the old
//! config keeps serving. The TLS certificate is loaded again on SIGHUP too, and when its files
//! change (a renewal), without touching the rest of the config.

use crate::config;
use crate::metrics::ReloadResult;
use crate::server::gateway::{Gateway, Reloaded};
use crate::server::signals;
use std::path::Path;
use std::time::{Duration, SystemTime};

/// What identifies a version of the file without reading it.
fn fingerprint(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Loads `path` and swaps it in. Returns whether the new config is now serving.
pub async fn reload_from(gateway: &Gateway, path: &Path, trigger: &str) -> bool {
    let metrics = gateway.state().metrics.clone();
    let outcome = config::load(path).map_err(|e| {
        e.problems
            .iter()
            .map(|(p, m)| format!("{p}: {m}"))
            .collect::<Vec<_>>()
            .join("; ")
    });
    let result = match outcome {
        Ok(settings) => gateway.reload(settings).await,
        Err(e) => Err(e),
    };
    if result.is_ok() {
        // The certificate's content is not part of the config's digest (a renewal must not
        // rebuild the caches): it is swapped on its own, after the config that names it.
        gateway.reload_tls(trigger);
    }
    match result {
        Ok(Reloaded::Swapped) => {
            metrics.config_reload(ReloadResult::Success);
            tracing::info!(trigger, path = %path.display(), "configuration reloaded");
            true
        }
        Ok(Reloaded::Unchanged) => {
            metrics.config_reload(ReloadResult::Unchanged);
            tracing::info!(
                trigger,
                path = %path.display(),
                "configuration unchanged (same settings and secrets): nothing reloaded"
            );
            true
        }
        Err(problems) => {
            metrics.config_reload(ReloadResult::Failure);
            tracing::error!(
                trigger,
                path = %path.display(),
                %problems,
                "configuration refused; the previous one keeps serving"
            );
            false
        }
    }
}

/// Watches for SIGHUP and for changes of `path` (polled every `poll`), reloading on each.
/// Runs until dropped.
/// `hup` is made before the listeners start (see [`crate::server::signals`]).
pub async fn watch(gateway: &Gateway, path: &Path, poll: Duration, mut hup: signals::Handler) {
    let mut last = fingerprint(path);
    let certs = || gateway.tls().map(|t| t.fingerprint());
    let mut last_certs = certs();
    loop {
        tokio::select! {
            _ = hup.recv() => {
                last = fingerprint(path);
                reload_from(gateway, path, "SIGHUP").await;
                last_certs = certs();
            }
            _ = tokio::time::sleep(poll) => {
                let now = fingerprint(path);
                if now != last {
                    last = now;
                    reload_from(gateway, path, "file change").await;
                    last_certs = certs();
                }
                let now = certs();
                if now != last_certs {
                    last_certs = now;
                    gateway.reload_tls("certificate file change");
                }
            }
        }
    }
}
