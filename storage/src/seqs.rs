//! Which seqs one device has stored, in bounded memory: exact from a floor
//! upwards, unknown below it (there only the store itself can answer, see
//! [`crate::Store::stored_seqs`]).
//!
//! A device that counts 1, 2, 3, … is one run whatever its history; every
//! number it skips adds a run. Beyond [`MAX_RUNS`] the lowest runs are
//! forgotten and the floor rises above them, so memory stays bounded for a
//! device whose seqs skip all the time (a timestamp used as seq).

use serde::{Deserialize, Serialize};

/// Most runs kept per device: 32 × 16 bytes.
pub const MAX_RUNS: usize = 32;

/// The stored seqs of one device at or above [`StoredSeqs::from`], as
/// disjoint, non-adjacent, ascending runs `(first, last)` (inclusive).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredSeqs {
    from: u64,
    runs: Vec<(u64, u64)>,
}

impl StoredSeqs {
    /// Nothing stored, and that is known for every seq.
    pub fn new() -> StoredSeqs {
        StoredSeqs::default()
    }

    /// Nothing stored at or above `from`; below it, unknown.
    pub fn known_from(from: u64) -> StoredSeqs {
        StoredSeqs {
            from,
            runs: Vec::new(),
        }
    }

    /// The lowest seq this set knows about: below it, ask the store.
    pub fn from(&self) -> u64 {
        self.from
    }

    pub fn runs(&self) -> &[(u64, u64)] {
        &self.runs
    }

    /// The highest stored seq, or (nothing known stored) an upper bound of
    /// it: `from - 1`. `None` for a device with nothing stored at all.
    pub fn highest(&self) -> Option<u64> {
        self.runs
            .last()
            .map(|r| r.1)
            .or_else(|| self.from.checked_sub(1))
    }

    /// `Some(stored)` at or above the floor, `None` below it.
    pub fn contains(&self, seq: u64) -> Option<bool> {
        if seq < self.from {
            return None;
        }
        let i = self.runs.partition_point(|r| r.1 < seq);
        Some(self.runs.get(i).is_some_and(|r| r.0 <= seq))
    }

    pub fn insert(&mut self, seq: u64) {
        self.insert_run(seq, seq);
    }

    /// Adds `first..=last`; the part below the floor is ignored.
    pub fn insert_run(&mut self, first: u64, last: u64) {
        let first = first.max(self.from);
        if first > last {
            return;
        }
        // Runs overlapping or touching first..=last merge with it.
        let lo = self.runs.partition_point(|r| r.1.saturating_add(1) < first);
        let hi = self.runs.partition_point(|r| r.0 <= last.saturating_add(1));
        let merged = if lo < hi {
            (first.min(self.runs[lo].0), last.max(self.runs[hi - 1].1))
        } else {
            (first, last)
        };
        self.runs.splice(lo..hi, [merged]);
        self.trim();
    }

    /// Forgets `seq` (its write failed). Below the floor it was never known.
    pub fn remove(&mut self, seq: u64) {
        if seq < self.from {
            return;
        }
        let i = self.runs.partition_point(|r| r.1 < seq);
        let Some(&(first, last)) = self.runs.get(i).filter(|r| r.0 <= seq) else {
            return;
        };
        let mut parts = Vec::with_capacity(2);
        if first < seq {
            parts.push((first, seq - 1));
        }
        if seq < last {
            parts.push((seq + 1, last));
        }
        self.runs.splice(i..=i, parts);
        self.trim();
    }

    /// Drops the lowest runs beyond [`MAX_RUNS`]; the floor rises past them.
    fn trim(&mut self) {
        if self.runs.len() > MAX_RUNS {
            let excess = self.runs.len() - MAX_RUNS;
            let dropped_last = self.runs[excess - 1].1;
            self.runs.drain(..excess);
            self.from = dropped_last.saturating_add(1);
        }
    }

    /// Heap bytes held (for memory figures).
    pub fn heap_bytes(&self) -> usize {
        self.runs.capacity() * std::mem::size_of::<(u64, u64)>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(s: &StoredSeqs) -> Vec<(u64, u64)> {
        s.runs().to_vec()
    }

    #[test]
    fn consecutive_seqs_are_one_run_in_any_order() {
        let mut s = StoredSeqs::new();
        for seq in [5, 3, 4, 7, 6, 1] {
            s.insert(seq);
        }
        assert_eq!(runs(&s), [(1, 1), (3, 7)]);
        s.insert(2);
        assert_eq!(runs(&s), [(1, 7)]);
        assert_eq!(s.contains(0), Some(false));
        assert_eq!(s.contains(4), Some(true));
        assert_eq!(s.contains(8), Some(false));
        assert_eq!(s.highest(), Some(7));
        s.insert_run(9, 20);
        s.insert_run(6, 10);
        assert_eq!(runs(&s), [(1, 20)]);
    }

    #[test]
    fn removing_splits_a_run() {
        let mut s = StoredSeqs::new();
        s.insert_run(1, 10);
        s.remove(5);
        assert_eq!(runs(&s), [(1, 4), (6, 10)]);
        s.remove(1);
        s.remove(10);
        s.remove(42);
        assert_eq!(runs(&s), [(2, 4), (6, 9)]);
    }

    #[test]
    fn the_floor_rises_past_forgotten_runs() {
        let mut s = StoredSeqs::new();
        // Every other seq: one run each.
        for i in 0..(MAX_RUNS as u64 + 3) {
            s.insert(i * 2);
        }
        assert_eq!(s.runs().len(), MAX_RUNS);
        // 0, 2 and 4 were forgotten: below the floor nothing is known.
        assert_eq!(s.from(), 5);
        assert_eq!(s.contains(4), None);
        assert_eq!(s.contains(5), Some(false));
        assert_eq!(s.contains(6), Some(true));
        // Below the floor, inserts are ignored: they are the store's to know.
        s.insert(1);
        assert_eq!(s.contains(1), None);
        assert_eq!(s.runs().len(), MAX_RUNS);
    }

    #[test]
    fn a_floor_without_runs_bounds_the_highest_seq() {
        let s = StoredSeqs::known_from(100);
        assert_eq!((s.contains(99), s.contains(100)), (None, Some(false)));
        assert_eq!(s.highest(), Some(99));
        assert_eq!(StoredSeqs::new().highest(), None);
    }

    #[test]
    fn the_ends_of_the_range_do_not_overflow() {
        let mut s = StoredSeqs::new();
        s.insert(u64::MAX);
        s.insert(u64::MAX - 1);
        s.insert(0);
        assert_eq!(runs(&s), [(0, 0), (u64::MAX - 1, u64::MAX)]);
        s.remove(u64::MAX);
        assert_eq!(runs(&s), [(0, 0), (u64::MAX - 1, u64::MAX - 1)]);
    }
}
