//! Process signals: SIGTERM/SIGINT stop the gateway, SIGHUP reloads its config.
//!
//! Handlers are installed eagerly, when a [`Handler`] is made, not when it is first awaited.
//! The default action of each of these signals ends the process, so one that arrives between
//! "gateway listening" and the first poll of a lazily installed handler would kill the
//! gateway without draining (or instead of reloading). Make them before the listeners start.

use std::future::Future;

/// One installed signal handler (a no-op off Unix, where it never fires).
pub struct Handler {
    #[cfg(unix)]
    signal: Option<tokio::signal::unix::Signal>,
}

impl Handler {
    #[cfg(unix)]
    fn install(kind: tokio::signal::unix::SignalKind) -> Self {
        Handler {
            signal: tokio::signal::unix::signal(kind).ok(),
        }
    }

    /// SIGHUP: reload the config. Must be called inside the Tokio runtime.
    pub fn hangup() -> Self {
        #[cfg(unix)]
        return Self::install(tokio::signal::unix::SignalKind::hangup());
        #[cfg(not(unix))]
        Handler {}
    }

    /// Resolves on the next delivery; never, if the handler could not be installed.
    pub async fn recv(&mut self) {
        #[cfg(unix)]
        if let Some(s) = self.signal.as_mut() {
            s.recv().await;
            return;
        }
        std::future::pending::<()>().await
    }
}

/// Installs the SIGTERM and SIGINT handlers now and returns a future that resolves on the
/// first of them. Must be called inside the Tokio runtime, before the listeners start.
pub fn shutdown() -> impl Future<Output = ()> + Send {
    #[cfg(unix)]
    {
        use tokio::signal::unix::SignalKind;
        let mut term = Handler::install(SignalKind::terminate());
        let mut int = Handler::install(SignalKind::interrupt());
        async move {
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
