//! A budget for log lines that a misbehaving device can multiply (a repeated
//! alarm, a stream of gaps, a reconnect loop): at most a few per second at
//! their level, the rest at `debug`, and the next line that gets through
//! says how many were held back. Counters keep every event; the log need
//! not.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shared by every caller of one log line; cheap (one uncontended lock).
#[derive(Debug)]
pub struct LogLimit {
    per_window: u32,
    window: Duration,
    state: Mutex<Window>,
}

#[derive(Debug, Default)]
struct Window {
    started: Option<Instant>,
    used: u32,
    /// Lines held back since the last one let through.
    held_back: u64,
}

impl LogLimit {
    /// At most `per_second` lines a second.
    pub const fn per_second(per_second: u32) -> LogLimit {
        LogLimit {
            per_window: per_second,
            window: Duration::from_secs(1),
            state: Mutex::new(Window {
                started: None,
                used: 0,
                held_back: 0,
            }),
        }
    }

    /// `Some(n)` when this line may be logged at its level, `n` being how
    /// many were held back before it; `None` when it should go to `debug`.
    pub fn allow(&self) -> Option<u64> {
        let now = Instant::now();
        let mut w = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if w.started
            .is_none_or(|s| now.duration_since(s) >= self.window)
        {
            w.started = Some(now);
            w.used = 0;
        }
        if w.used < self.per_window {
            w.used += 1;
            Some(std::mem::take(&mut w.held_back))
        } else {
            w.held_back += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_a_few_lines_through_per_window_and_counts_the_rest() {
        let limit = LogLimit::per_second(2);
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), Some(0));
        assert_eq!(limit.allow(), None);
        assert_eq!(limit.allow(), None);
        std::thread::sleep(Duration::from_millis(1_010));
        assert_eq!(limit.allow(), Some(2), "says how many were held back");
        assert_eq!(limit.allow(), Some(0));
    }
}
