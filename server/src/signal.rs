//! The process's shutdown trigger: SIGTERM (what orchestrators send) or SIGINT (Ctrl-C).

use std::future::Future;

/// Starts catching SIGTERM and SIGINT now and returns a future that completes on the first.
///
/// The handlers are installed when this is called, not when the future is first polled: the
/// binary calls it before opening the store, so a signal that arrives while the server is
/// still starting (opening RocksDB, loading the catalog) is kept, and the server shuts down
/// cleanly as soon as it serves, instead of dying by the signal's default action. Call it
/// inside a Tokio runtime.
pub fn shutdown() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let terminate = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        async fn received(signal: Option<Signal>) {
            match signal {
                Some(mut signal) => {
                    signal.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        async move {
            tokio::select! {
                () = received(terminate) => {}
                () = received(interrupt) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        let _ = tokio::signal::ctrl_c().await;
    }
}
