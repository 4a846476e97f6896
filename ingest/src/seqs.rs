//! Per-device sequence bookkeeping: exact de-duplication on
//! `(device_id, seq)` and the ack watermark.
//!
//! De-duplication asks one question: is this very seq stored (or taken and
//! on its way to the store)? Each device keeps the seqs it has stored as a
//! bounded [`StoredSeqs`], exact from its floor upwards and rebuilt from the
//! store at start; a seq below the floor is [`Take::Unknown`] and the
//! pipeline asks the store ([`vigil_storage::Store::stored_seqs`]). Nothing
//! is a duplicate for being below the watermark.
//!
//! The watermark `W` promises "every message of this device with `seq ≤ W`
//! is durable, or was given up on after the gap grace". Seqs taken above `W`
//! wait in `above` until the store reports them durable; `W` then walks up
//! through them. A hole (a seq never taken) holds `W` for the grace, because
//! the device may re-send it; after the grace the hole is counted as a gap
//! and `W` moves on. A seq that arrives at or below `W` (a late re-send) is
//! stored like any other and, once durable, the device hears `W` again.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use vigil_model::{DeviceId, EpochMs};
use vigil_storage::StoredSeqs;

/// The highest seq ingest takes: PostgreSQL keeps seqs as `bigint`, and a
/// device near `u64::MAX` would have nowhere left to count.
pub(crate) const MAX_SEQ: u64 = i64::MAX as u64;

/// At most one gap log line per device this often (engine clock); the
/// counter has every gap.
const GAP_LOG_EVERY_MS: EpochMs = 60_000;

/// What to do with a message's seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Take {
    /// Taken: store the message. `late` when it is at or below the
    /// watermark (a hole filled after its grace, or after a restart).
    New { late: bool },
    /// Stored already, or taken and on its way: drop it, ack again.
    Duplicate,
    /// Older than this device's history in memory: ask the store, then
    /// [`SeqBook::take_looked_up`]. Nothing was recorded.
    Unknown,
    /// Implausible: refuse it without taking the seq. `None` when it is
    /// above [`MAX_SEQ`], else why the jump was too far.
    Jump(Option<TooFar>),
}

/// A jump further than the device's seq could have advanced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooFar {
    /// The device's highest seq.
    pub highest: u64,
    /// Seconds since it was received (engine clock).
    pub silent_s: u64,
    /// The largest jump allowed after that silence.
    pub allowed: u64,
}

/// A seq taken above the watermark.
#[derive(Debug, Clone, Copy)]
struct Pending {
    durable: bool,
    /// Engine clock at receipt: the gap grace is measured on it.
    received_ms: EpochMs,
    /// Wall time at receipt, for the commit-latency histogram only.
    received: Instant,
}

/// Rate limit of one device's gap log lines.
#[derive(Debug, Default)]
struct GapLog {
    last_ms: Option<EpochMs>,
    /// Gaps passed since the last line that had none.
    unlogged: u64,
}

#[derive(Debug, Default)]
struct SeqState {
    /// Stored or taken seqs, exact from its floor up.
    stored: StoredSeqs,
    /// Covered: every seq at or below is durable or given up on.
    watermark: Option<u64>,
    /// Lowest seq taken while nothing was covered: a device with no history
    /// starts there rather than at 0.
    start: Option<u64>,
    /// Engine clock when the highest seq was received: how far the next
    /// one may jump grows with the silence since.
    highest_ms: Option<EpochMs>,
    /// Taken above the watermark, durable or not.
    above: BTreeMap<u64, Pending>,
    /// Runs stored before the start and above the watermark, highest first
    /// (the next in line is popped from the end). Durable; their grace
    /// runs from the start.
    recovered: Vec<(u64, u64)>,
    /// Taken at or below the watermark, not durable yet.
    late: BTreeMap<u64, Instant>,
    /// Last watermark published, so an unchanged one is not sent again.
    published: Option<u64>,
    /// A late seq became durable: publish the watermark even if unchanged.
    reack: bool,
    gap_log: GapLog,
}

impl SeqState {
    /// From the store's history: the lowest known run is covered; the runs
    /// above it wait for their holes like fresh ones (the grace starts now),
    /// since a hole open at a crash looks like one passed long before it.
    fn seeded(stored: StoredSeqs, highest_ms: EpochMs) -> SeqState {
        let mut state = SeqState {
            highest_ms: Some(highest_ms),
            ..SeqState::default()
        };
        let runs = stored.runs();
        state.watermark = match runs.first() {
            Some(&(_, last)) => Some(last),
            None => stored.from().checked_sub(1),
        };
        state.recovered = runs.iter().skip(1).rev().copied().collect();
        state.published = state.watermark;
        state.stored = stored;
        state
    }

    fn in_flight(&self, seq: u64) -> bool {
        self.late.contains_key(&seq) || self.above.contains_key(&seq)
    }

    fn take(&mut self, seq: u64, now_ms: EpochMs) -> Take {
        if self.stored.highest().is_none_or(|h| seq > h) {
            self.highest_ms = Some(now_ms);
        }
        self.stored.insert(seq);
        let now = Instant::now();
        if self.watermark.is_some_and(|w| seq <= w) {
            self.late.insert(seq, now);
            return Take::New { late: true };
        }
        self.above.insert(
            seq,
            Pending {
                durable: false,
                received_ms: now_ms,
                received: now,
            },
        );
        if self.watermark.is_none() {
            self.start = Some(self.start.map_or(seq, |s| s.min(seq)));
        }
        Take::New { late: false }
    }

    /// The next durable-or-not seqs above the watermark, lowest first: a
    /// taken seq, or a recovered run (durable, received at `started_ms`).
    /// `(first, last, durable, received_ms, recovered)`.
    fn next_up(&self, started_ms: EpochMs) -> Option<(u64, u64, bool, EpochMs, bool)> {
        let taken = self
            .above
            .first_key_value()
            .map(|(&s, p)| (s, s, p.durable, p.received_ms, false));
        let recovered = self
            .recovered
            .last()
            .map(|&(first, last)| (first, last, true, started_ms, true));
        match (taken, recovered) {
            (Some(t), Some(r)) => Some(if r.0 < t.0 { r } else { t }),
            (t, r) => t.or(r),
        }
    }

    /// Walks the watermark up; returns the holes given up on, as the first
    /// and last missing seq.
    fn advance(&mut self, now_ms: EpochMs, grace_ms: i64, started_ms: EpochMs) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        while let Some((first, last, durable, received_ms, recovered)) = self.next_up(started_ms) {
            if !durable {
                break;
            }
            let expected = match self.watermark {
                Some(w) => w.saturating_add(1),
                None => self.start.unwrap_or(first),
            };
            if first > expected {
                if now_ms.saturating_sub(received_ms) < grace_ms {
                    break;
                }
                gaps.push((expected, first - 1));
            }
            self.watermark = Some(self.watermark.map_or(last, |w| w.max(last)));
            if recovered {
                self.recovered.pop();
            } else {
                self.above.pop_first();
            }
        }
        gaps
    }

    /// Held below a hole: the next in line is durable but not next.
    fn is_held(&self, started_ms: EpochMs) -> bool {
        self.next_up(started_ms).is_some_and(|n| n.2)
    }

    fn ack_due(&mut self) -> Option<u64> {
        let due = self.watermark.is_some() && (self.watermark != self.published || self.reack);
        self.reack = false;
        if due {
            self.published = self.watermark;
            return self.watermark;
        }
        None
    }

    /// Whether to log this device's gaps now, and how many went unlogged.
    fn log_gaps(&mut self, gaps: u64, now_ms: EpochMs) -> Option<u64> {
        let log = &mut self.gap_log;
        if log
            .last_ms
            .is_some_and(|t| now_ms.saturating_sub(t) < GAP_LOG_EVERY_MS)
        {
            log.unlogged += gaps;
            return None;
        }
        log.last_ms = Some(now_ms);
        Some(std::mem::take(&mut log.unlogged))
    }
}

/// A hole given up on after the grace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gap {
    pub device: DeviceId,
    pub first: u64,
    pub last: u64,
    /// Log it (at most one line per device a minute); with the number of
    /// this device's gaps passed since its last line and not logged.
    pub log: Option<u64>,
}

/// What a durable report or a tick changed.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Watermarks to publish, one per device.
    pub acks: Vec<(DeviceId, u64)>,
    /// Holes given up on after the grace.
    pub gaps: Vec<Gap>,
    /// Receive → durable time of each newly durable message.
    pub latencies: Vec<Duration>,
}

#[derive(Default)]
struct Book {
    devices: HashMap<DeviceId, SeqState>,
    /// Devices whose watermark waits on a hole; re-examined on every tick.
    held: HashSet<DeviceId>,
}

/// Shared by the ingest thread (take, de-dup) and the ack task (durable,
/// tick). One lock: both sides hold it briefly, once per batch.
pub(crate) struct SeqBook {
    inner: Mutex<Book>,
    grace_ms: i64,
    /// How fast a silent device's seq may advance, per second.
    max_rate: u64,
    /// Engine clock at start: when the recovered runs were "received".
    started_ms: EpochMs,
}

impl SeqBook {
    /// Seeded with each device's stored seqs and when it was last heard;
    /// `now_ms` starts the grace of the holes in that history.
    pub(crate) fn new(
        history: &HashMap<DeviceId, StoredSeqs>,
        last_seen: &HashMap<DeviceId, EpochMs>,
        gap_grace_s: u64,
        max_seq_rate: u64,
        now_ms: EpochMs,
    ) -> SeqBook {
        let mut book = Book::default();
        book.devices.reserve(history.len());
        for (device, stored) in history {
            let heard = last_seen.get(device).copied().unwrap_or(now_ms);
            let state = SeqState::seeded(stored.clone(), heard);
            if state.is_held(now_ms) {
                book.held.insert(device.clone());
            }
            book.devices.insert(device.clone(), state);
        }
        SeqBook {
            inner: Mutex::new(book),
            grace_ms: i64::try_from(gap_grace_s.saturating_mul(1000)).unwrap_or(i64::MAX),
            max_rate: max_seq_rate,
            started_ms: now_ms,
        }
    }

    /// The configured `ingest.max_seq_rate`.
    pub(crate) fn max_rate(&self) -> u64 {
        self.max_rate
    }

    /// Takes `seq` for `device` unless it is stored or taken already, is
    /// unknown here, or is implausible (see [`Take`]).
    pub(crate) fn take(&self, device: &DeviceId, seq: u64, now_ms: EpochMs) -> Take {
        if seq > MAX_SEQ {
            return Take::Jump(None);
        }
        let mut book = self.inner.lock();
        let state = book.devices.entry(device.clone()).or_default();
        if state.in_flight(seq) {
            return Take::Duplicate;
        }
        match state.stored.contains(seq) {
            Some(true) => Take::Duplicate,
            None => Take::Unknown,
            Some(false) => match state.stored.highest() {
                Some(highest) if seq > highest => {
                    // At most `max_rate` a second of silence, and one
                    // second's worth right away.
                    let silent_s = state.highest_ms.map_or(0, |t| {
                        u64::try_from(now_ms.saturating_sub(t) / 1000).unwrap_or(0)
                    });
                    let allowed = self.max_rate.saturating_mul(silent_s.saturating_add(1));
                    if seq - highest > allowed {
                        return Take::Jump(Some(TooFar {
                            highest,
                            silent_s,
                            allowed,
                        }));
                    }
                    state.take(seq, now_ms)
                }
                _ => state.take(seq, now_ms),
            },
        }
    }

    /// Decides a [`Take::Unknown`] seq once the store said whether it holds
    /// it. A copy taken meanwhile (earlier in the batch) makes it a duplicate.
    pub(crate) fn take_looked_up(
        &self,
        device: &DeviceId,
        seq: u64,
        in_store: bool,
        now_ms: EpochMs,
    ) -> Take {
        let mut book = self.inner.lock();
        let state = book.devices.entry(device.clone()).or_default();
        if in_store || state.in_flight(seq) || state.stored.contains(seq) == Some(true) {
            return Take::Duplicate;
        }
        state.take(seq, now_ms)
    }

    /// Forgets seqs whose write failed, so that the device's re-send is
    /// accepted rather than treated as a duplicate.
    pub(crate) fn release(&self, taken: &[(DeviceId, u64)]) {
        let mut book = self.inner.lock();
        for (device, seq) in taken {
            let Some(state) = book.devices.get_mut(device) else {
                continue;
            };
            let pending = state.above.get(seq).is_some_and(|p| !p.durable);
            if pending {
                state.above.remove(seq);
            } else if state.late.remove(seq).is_none() {
                continue;
            }
            state.stored.remove(*seq);
            if state.watermark.is_none() {
                state.start = state.above.first_key_value().map(|(&s, _)| s);
            }
        }
    }

    /// The watermark to re-send to a device that sent a duplicate.
    pub(crate) fn reack(&self, device: &DeviceId) -> Option<u64> {
        let mut book = self.inner.lock();
        let state = book.devices.get_mut(device)?;
        state.published = state.watermark.or(state.published);
        state.watermark
    }

    /// Marks these seqs durable and moves the watermarks they unblock.
    pub(crate) fn durable(
        &self,
        tokens: impl IntoIterator<Item = (DeviceId, u64)>,
        now_ms: EpochMs,
    ) -> Progress {
        let mut progress = Progress::default();
        let mut book = self.inner.lock();
        let mut touched: HashSet<DeviceId> = HashSet::new();
        for (device, seq) in tokens {
            let Some(state) = book.devices.get_mut(&device) else {
                continue;
            };
            if let Some(p) = state.above.get_mut(&seq).filter(|p| !p.durable) {
                p.durable = true;
                progress.latencies.push(p.received.elapsed());
                touched.insert(device);
            } else if let Some(received) = state.late.remove(&seq) {
                progress.latencies.push(received.elapsed());
                state.reack = true;
                touched.insert(device);
            }
        }
        for device in touched {
            self.settle(&mut book, device, now_ms, &mut progress);
        }
        progress
    }

    /// Re-examines devices held below a hole (their grace may have passed).
    pub(crate) fn tick(&self, now_ms: EpochMs) -> Progress {
        let mut progress = Progress::default();
        let mut book = self.inner.lock();
        let held: Vec<DeviceId> = book.held.iter().cloned().collect();
        for device in held {
            self.settle(&mut book, device, now_ms, &mut progress);
        }
        progress
    }

    fn settle(&self, book: &mut Book, device: DeviceId, now_ms: EpochMs, progress: &mut Progress) {
        let Some(state) = book.devices.get_mut(&device) else {
            return;
        };
        let gaps = state.advance(now_ms, self.grace_ms, self.started_ms);
        if !gaps.is_empty() {
            let mut log = state.log_gaps(gaps.len() as u64, now_ms);
            for (first, last) in gaps {
                progress.gaps.push(Gap {
                    device: device.clone(),
                    first,
                    last,
                    // One line for the batch of holes passed at once.
                    log: log.take(),
                });
            }
        }
        let held = state.is_held(self.started_ms);
        if let Some(w) = state.ack_due() {
            progress.acks.push((device.clone(), w));
        }
        if held {
            book.held.insert(device);
        } else {
            book.held.remove(&device);
        }
    }

    /// Taken messages the store has not yet reported durable.
    pub(crate) fn undurable(&self) -> usize {
        let book = self.inner.lock();
        book.devices
            .values()
            .map(|s| s.above.values().filter(|p| !p.durable).count() + s.late.len())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE_S: u64 = 30;
    const RATE: u64 = 1_000;
    const T0: EpochMs = 1_732_300_000_000;
    const NEW: Take = Take::New { late: false };
    const LATE: Take = Take::New { late: true };

    fn dev(id: &str) -> DeviceId {
        DeviceId::new(id).unwrap()
    }

    fn empty_book() -> SeqBook {
        SeqBook::new(&HashMap::new(), &HashMap::new(), GRACE_S, RATE, T0)
    }

    /// A device whose store holds these runs (everything known).
    fn history(runs: &[(u64, u64)]) -> SeqBook {
        let mut stored = StoredSeqs::new();
        for &(a, b) in runs {
            stored.insert_run(a, b);
        }
        SeqBook::new(
            &HashMap::from([(dev("EL1"), stored)]),
            &HashMap::from([(dev("EL1"), T0)]),
            GRACE_S,
            RATE,
            T0,
        )
    }

    fn durable(book: &SeqBook, id: &str, seqs: &[u64], now: EpochMs) -> Progress {
        book.durable(seqs.iter().map(|&s| (dev(id), s)), now)
    }

    fn gaps(p: &Progress) -> Vec<(u64, u64)> {
        p.gaps.iter().map(|g| (g.first, g.last)).collect()
    }

    #[test]
    fn a_new_device_starts_at_its_first_seq_and_acks_each_durable_batch_once() {
        let book = empty_book();
        for seq in [41, 42, 43] {
            assert_eq!(book.take(&dev("EL1"), seq, T0), NEW);
        }
        assert_eq!(book.undurable(), 3);
        let p = durable(&book, "EL1", &[41, 42], T0);
        assert_eq!(
            p.acks,
            vec![(dev("EL1"), 42)],
            "one coalesced ack for the batch"
        );
        assert_eq!((p.gaps.len(), p.latencies.len()), (0, 2));
        assert!(book.tick(T0).acks.is_empty());
        assert_eq!(
            durable(&book, "EL1", &[43], T0).acks,
            vec![(dev("EL1"), 43)]
        );
        assert_eq!(book.undurable(), 0);
        assert!(durable(&book, "EL1", &[43], T0).acks.is_empty());
    }

    #[test]
    fn only_stored_or_taken_seqs_are_duplicates() {
        let book = history(&[(1, 10)]);
        assert_eq!(book.take(&dev("EL1"), 10, T0), Take::Duplicate);
        assert_eq!(book.take(&dev("EL1"), 3, T0), Take::Duplicate);
        assert_eq!(book.take(&dev("EL1"), 11, T0), NEW);
        assert_eq!(
            book.take(&dev("EL1"), 11, T0),
            Take::Duplicate,
            "taken, on its way to the store"
        );
        assert_eq!(book.reack(&dev("EL1")), Some(10));
        assert_eq!(book.take(&dev("EL2"), 11, T0), NEW, "seqs are per device");
        assert_eq!(book.reack(&dev("EL3")), None);
        // Never stored, below the watermark: stored late, not dropped.
        let book = history(&[(1, 4), (6, 10)]);
        assert_eq!(book.take(&dev("EL1"), 0, T0), LATE);
        assert_eq!(book.take(&dev("EL1"), 0, T0), Take::Duplicate);
    }

    #[test]
    fn a_hole_holds_the_watermark_until_filled() {
        let book = history(&[(1, 4)]);
        for seq in [5, 7, 8] {
            assert_eq!(book.take(&dev("EL1"), seq, T0), NEW);
        }
        let p = durable(&book, "EL1", &[5, 7, 8], T0);
        assert_eq!(p.acks, vec![(dev("EL1"), 5)], "held below the missing 6");
        assert!(book.tick(T0 + 10_000).acks.is_empty());
        assert_eq!(book.take(&dev("EL1"), 6, T0 + 10_000), NEW);
        let p = durable(&book, "EL1", &[6], T0 + 10_000);
        assert_eq!(p.acks, vec![(dev("EL1"), 8)]);
        assert!(p.gaps.is_empty());
    }

    #[test]
    fn a_hole_filled_after_the_grace_is_stored_and_acked_again() {
        let book = history(&[(1, 4)]);
        book.take(&dev("EL1"), 5, T0);
        book.take(&dev("EL1"), 9, T0 + 1_000);
        book.take(&dev("EL1"), 12, T0 + 2_000);
        let p = durable(&book, "EL1", &[5, 9, 12], T0 + 2_000);
        assert_eq!(p.acks, vec![(dev("EL1"), 5)]);
        // The grace runs from the receipt of the first seq above each hole.
        assert!(book.tick(T0 + 30_999).acks.is_empty());
        let p = book.tick(T0 + 31_000);
        assert_eq!((gaps(&p), p.acks), (vec![(6, 8)], vec![(dev("EL1"), 9)]));
        let p = book.tick(T0 + 32_000);
        assert_eq!((gaps(&p), p.acks), (vec![(10, 11)], vec![(dev("EL1"), 12)]));
        assert!(book.tick(T0 + 99_000).acks.is_empty());
        // A late 6: never stored, so it is taken; once durable the device
        // hears the (unchanged) watermark, which now covers it for real.
        assert_eq!(book.take(&dev("EL1"), 6, T0 + 99_000), LATE);
        assert_eq!(book.take(&dev("EL1"), 6, T0 + 99_000), Take::Duplicate);
        assert_eq!(book.undurable(), 1);
        let p = durable(&book, "EL1", &[6], T0 + 99_000);
        assert_eq!((p.acks, p.latencies.len()), (vec![(dev("EL1"), 12)], 1));
        assert_eq!(book.take(&dev("EL1"), 6, T0 + 99_000), Take::Duplicate);
    }

    #[test]
    fn holes_in_the_recovered_history_get_a_fresh_grace() {
        // Stored before the restart: 1..=4, 6..=10 and 13 (5, 11, 12 missing).
        let book = history(&[(1, 4), (6, 10), (13, 13)]);
        assert_eq!(book.take(&dev("EL1"), 5, T0 + 1_000), NEW);
        assert_eq!(book.take(&dev("EL1"), 7, T0 + 1_000), Take::Duplicate);
        let p = durable(&book, "EL1", &[5], T0 + 1_000);
        assert_eq!(p.acks, vec![(dev("EL1"), 10)], "5 filled the first hole");
        assert!(book.tick(T0 + 29_999).acks.is_empty());
        let p = book.tick(T0 + 30_000);
        assert_eq!((gaps(&p), p.acks), (vec![(11, 12)], vec![(dev("EL1"), 13)]));
        // The passed hole is still not a duplicate.
        assert_eq!(book.take(&dev("EL1"), 11, T0 + 31_000), LATE);
    }

    #[test]
    fn seqs_older_than_the_history_in_memory_are_unknown() {
        let book = SeqBook::new(
            &HashMap::from([(dev("EL1"), {
                let mut s = StoredSeqs::known_from(100);
                s.insert_run(100, 120);
                s
            })]),
            &HashMap::new(),
            GRACE_S,
            RATE,
            T0,
        );
        assert_eq!(book.take(&dev("EL1"), 99, T0), Take::Unknown);
        assert_eq!(book.take(&dev("EL1"), 99, T0), Take::Unknown);
        assert_eq!(
            book.take_looked_up(&dev("EL1"), 98, true, T0),
            Take::Duplicate
        );
        assert_eq!(book.take_looked_up(&dev("EL1"), 99, false, T0), LATE);
        assert_eq!(
            book.take_looked_up(&dev("EL1"), 99, false, T0),
            Take::Duplicate,
            "the second copy of the batch finds the first taken"
        );
        assert_eq!(book.take(&dev("EL1"), 99, T0), Take::Duplicate);
        durable(&book, "EL1", &[99], T0);
        assert_eq!(book.undurable(), 0);
    }

    #[test]
    fn implausible_seqs_are_refused_without_moving_anything() {
        let book = history(&[(1, 10)]);
        assert_eq!(book.take(&dev("EL1"), u64::MAX, T0), Take::Jump(None));
        // Heard at T0: one second's worth of seqs right away.
        assert_eq!(
            book.take(&dev("EL1"), 10 + RATE + 1, T0 + 999),
            Take::Jump(Some(TooFar {
                highest: 10,
                silent_s: 0,
                allowed: RATE
            }))
        );
        assert_eq!(book.take(&dev("EL1"), 11, T0), NEW, "not silenced");
        // The allowance grows with the silence since the highest seq.
        assert_eq!(
            book.take(&dev("EL1"), 11 + 10 * RATE, T0 + 9_000),
            NEW,
            "ten seconds' worth after nine seconds of silence"
        );
        assert_eq!(
            book.take(&dev("EL1"), 11 + 10 * RATE + RATE + 1, T0 + 9_000),
            Take::Jump(Some(TooFar {
                highest: 11 + 10 * RATE,
                silent_s: 0,
                allowed: RATE
            })),
            "measured from the new highest"
        );
        // A device without history may start anywhere below the ceiling.
        assert_eq!(book.take(&dev("EL2"), MAX_SEQ, T0), NEW);
        assert_eq!(book.take(&dev("EL3"), MAX_SEQ + 1, T0), Take::Jump(None));
    }

    #[test]
    fn a_released_seq_can_be_taken_again() {
        let book = empty_book();
        book.take(&dev("EL1"), 1, T0);
        book.take(&dev("EL1"), 2, T0);
        book.release(&[(dev("EL1"), 1)]);
        assert_eq!(
            durable(&book, "EL1", &[2], T0).acks,
            vec![(dev("EL1"), 2)],
            "2 is the start now"
        );
        let book = empty_book();
        book.take(&dev("EL1"), 1, T0);
        book.release(&[(dev("EL1"), 1)]);
        assert_eq!(
            book.take(&dev("EL1"), 1, T0),
            NEW,
            "the re-send after a failed write is accepted"
        );
        assert_eq!(book.undurable(), 1);
        let book = history(&[(1, 10)]);
        assert_eq!(book.take(&dev("EL1"), 0, T0), LATE);
        book.release(&[(dev("EL1"), 0)]);
        assert_eq!((book.undurable(), book.take(&dev("EL1"), 0, T0)), (0, LATE));
    }

    #[test]
    fn a_duplicate_forces_the_current_watermark_out_again() {
        let book = empty_book();
        book.take(&dev("EL1"), 1, T0);
        assert_eq!(
            book.reack(&dev("EL1")),
            None,
            "nothing durable yet: nothing to promise"
        );
        assert_eq!(durable(&book, "EL1", &[1], T0).acks, vec![(dev("EL1"), 1)]);
        assert_eq!(book.reack(&dev("EL1")), Some(1));
    }

    #[test]
    fn gap_lines_are_limited_per_device() {
        let book = history(&[(1, 1)]);
        let mut t = T0;
        let mut logged = Vec::new();
        let mut passed = 0;
        for seq in (3..=41).step_by(2) {
            book.take(&dev("EL1"), seq, t);
            durable(&book, "EL1", &[seq], t);
            t += 31_000;
            let p = book.tick(t);
            passed += p.gaps.len();
            logged.extend(p.gaps.iter().filter_map(|g| g.log));
        }
        assert_eq!(passed, 20, "every gap is counted");
        // 20 gaps over ~10 minutes: one line a minute, each saying how many
        // went unlogged since the one before.
        assert_eq!(logged.len(), 10, "{logged:?}");
        assert_eq!(logged[0], 0);
        assert!(logged[1..].iter().all(|&n| n == 1), "{logged:?}");
    }
}
