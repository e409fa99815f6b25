//! The one tokio runtime of a command, made at the CLI edge. For commands that run products, SIGINT
//! and SIGTERM are caught from the runtime's first moment, so a stop that comes while the product is
//! still being read is not lost: the run starts stopped and says so in its receipt.

use std::future::Future;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

pub(super) struct Runtime {
    runtime: tokio::runtime::Runtime,
    /// Cancelled by SIGINT or SIGTERM (when caught).
    pub stop: CancellationToken,
}

impl Runtime {
    /// A multi-thread runtime; with `signals`, SIGINT and SIGTERM cancel [`Runtime::stop`].
    pub(super) fn new(signals: bool) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the runtime")?;
        let stop = CancellationToken::new();
        if signals {
            use tokio::signal::unix::{SignalKind, signal};
            // Registered here, before anything else runs; a signal from now on is kept until read.
            let (interrupt, terminate) =
                runtime.block_on(async { (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) });
            let (mut interrupt, mut terminate) = (
                interrupt.context("cannot catch SIGINT")?,
                terminate.context("cannot catch SIGTERM")?,
            );
            let stop = stop.clone();
            runtime.spawn(async move {
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                stop.cancel();
                // A second signal does not wait for the clean stop.
                tokio::select! {
                    _ = interrupt.recv() => {}
                    _ = terminate.recv() => {}
                }
                eprintln!("dpf: second signal: exiting at once");
                std::process::exit(130);
            });
        }
        Ok(Runtime { runtime, stop })
    }

    pub(super) fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }
}
