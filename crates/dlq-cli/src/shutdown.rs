//! Graceful stop of the long-running commands (`process`, `produce`,
//! `replay`, `monitor`).
//!
//! The first SIGINT (Ctrl-C) or SIGTERM sets a stop flag: the command stops
//! taking new work, finishes what is in flight, commits and exits 0 (a
//! rerun resumes where it stopped). A second signal exits at once, with the
//! shell's code for death by that signal (130 for SIGINT, 143 for SIGTERM);
//! what was committed before is safe, what was not is redone by the rerun.
//!
//! Commands that do not install this keep the default: a signal ends them
//! at once, which is fine for commands that only read.

use signal_hook::consts::{SIGINT, SIGTERM};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The stop flag shared with a command's engine.
#[derive(Debug, Clone)]
pub struct StopFlag(Arc<AtomicBool>);

impl StopFlag {
    /// Installs the signal handlers and returns the flag they set.
    ///
    /// # Errors
    ///
    /// When a handler cannot be registered (not expected on Unix).
    pub fn install() -> anyhow::Result<StopFlag> {
        let flag = Arc::new(AtomicBool::new(false));
        for (signal, code) in [(SIGINT, 130), (SIGTERM, 143)] {
            // The exit is registered first, so that it sees the flag as the
            // previous signal left it: unset on the first signal, set on
            // the second.
            signal_hook::flag::register_conditional_shutdown(signal, code, Arc::clone(&flag))?;
            signal_hook::flag::register(signal, Arc::clone(&flag))?;
        }
        Ok(StopFlag(flag))
    }

    /// Whether a stop was asked for.
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// The flag itself, for engines that take an `AtomicBool`.
    pub fn as_atomic(&self) -> &AtomicBool {
        &self.0
    }

    /// The shared flag, for engines that keep it.
    pub fn shared(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.0)
    }
}
