//! The write fence. Under leader election this process may write (to Kubernetes or to
//! JetStream) only until the deadline its last successful Lease renewal allows; every
//! write checks it first. A leader that was frozen past that deadline (stopped, starved
//! of CPU, swapped out) therefore never writes again, even before its election task has
//! run and ended the process. Without leader election the fence stays open.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Milliseconds since the process's first use of the fence until which writes are
/// allowed; `u64::MAX`: always (no election), `0`: never again.
static UNTIL_MS: AtomicU64 = AtomicU64::new(u64::MAX);
static EPOCH: OnceLock<Instant> = OnceLock::new();

fn millis(t: Instant) -> u64 {
    let epoch = *EPOCH.get_or_init(Instant::now);
    t.saturating_duration_since(epoch).as_millis() as u64
}

/// Allows writes until `t` (set by the leader after each renewal).
pub fn open_until(t: Instant) {
    // A deadline is never moved back to "always": 0 stays 0 once closed.
    let until = millis(t);
    let _ = UNTIL_MS.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |now| {
        (now != 0).then_some(until)
    });
}

/// Forbids writes for the rest of the process's life (leadership lost).
pub fn close() {
    UNTIL_MS.store(0, Ordering::SeqCst);
}

/// Whether a write may be sent now.
pub fn is_open() -> bool {
    let until = UNTIL_MS.load(Ordering::SeqCst);
    until == u64::MAX || millis(Instant::now()) < until
}

/// The error a fenced write reports.
pub const FENCED: &str = "this replica is no longer the leader: writes are fenced";
