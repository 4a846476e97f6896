//! Time, injected: every stage asks a [`Clock`] for now, so tests drive it
//! by hand and rules never read the wall clock themselves.

use std::sync::Arc;

use crate::EpochMs;

/// Now, as epoch milliseconds.
pub type Clock = Arc<dyn Fn() -> EpochMs + Send + Sync>;

/// The wall clock.
pub fn system_clock() -> Clock {
    Arc::new(|| {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        now.as_millis() as EpochMs
    })
}

/// A clock that stands at `start` until moved: `(clock, handle)`; store
/// into the handle to move it.
pub fn manual_clock(start: EpochMs) -> (Clock, Arc<std::sync::atomic::AtomicI64>) {
    let now = Arc::new(std::sync::atomic::AtomicI64::new(start));
    let read = Arc::clone(&now);
    (
        Arc::new(move || read.load(std::sync::atomic::Ordering::SeqCst)),
        now,
    )
}
