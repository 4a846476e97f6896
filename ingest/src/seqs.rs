//! Per-device sequence bookkeeping: de-duplication on `(device_id, seq)` and
//! the ack watermark.
//!
//! A device's watermark `W` promises "every message of this device with
//! `seq ≤ W` is durable". Seqs taken above `W` wait in `pending` until the
//! store reports them durable; `W` then walks up through them. A hole (a seq
//! never received) holds `W` for the grace period, because rumqttd may have
//! dropped that message and the device will re-send it; after the grace the
//! hole is counted as a gap and `W` moves on (seqs need not be contiguous).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use vigil_model::{DeviceId, EpochMs};

/// One seq taken above the watermark.
#[derive(Debug, Clone, Copy)]
struct Pending {
    durable: bool,
    /// Engine clock at receipt: the gap grace is measured on it.
    received_ms: EpochMs,
    /// Wall time at receipt, for the commit-latency histogram only.
    received: Instant,
}

#[derive(Debug, Default)]
struct SeqState {
    /// Highest covered seq; `None` until something is covered.
    watermark: Option<u64>,
    /// Lowest seq taken while nothing was covered: a device with no history
    /// starts there rather than at 0.
    start: Option<u64>,
    pending: BTreeMap<u64, Pending>,
    /// Last watermark published, so an unchanged one is not sent again.
    published: Option<u64>,
}

impl SeqState {
    fn seeded(last_seq: u64) -> SeqState {
        SeqState {
            watermark: Some(last_seq),
            published: Some(last_seq),
            ..SeqState::default()
        }
    }

    fn is_taken(&self, seq: u64) -> bool {
        self.watermark.is_some_and(|w| seq <= w) || self.pending.contains_key(&seq)
    }

    fn take(&mut self, seq: u64, now_ms: EpochMs, now: Instant) {
        self.pending.insert(
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
    }

    /// Walks the watermark up; returns the holes given up on, as the first
    /// and last missing seq.
    fn advance(&mut self, now_ms: EpochMs, grace_ms: i64) -> Vec<(u64, u64)> {
        let mut gaps = Vec::new();
        while let Some((&seq, p)) = self.pending.first_key_value() {
            if !p.durable {
                break;
            }
            let expected = match self.watermark {
                Some(w) => w.saturating_add(1),
                None => self.start.unwrap_or(seq),
            };
            if seq > expected {
                if now_ms.saturating_sub(p.received_ms) < grace_ms {
                    break;
                }
                gaps.push((expected, seq - 1));
            }
            self.watermark = Some(seq);
            self.pending.pop_first();
        }
        gaps
    }

    /// Held below a hole: the next pending seq is durable but not next in line.
    fn is_held(&self) -> bool {
        self.pending
            .first_key_value()
            .is_some_and(|(_, p)| p.durable)
    }

    fn ack_due(&mut self) -> Option<u64> {
        if self.watermark.is_some() && self.watermark != self.published {
            self.published = self.watermark;
            return self.watermark;
        }
        None
    }
}

/// What a durable report or a tick changed.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Watermarks to publish, one per device.
    pub acks: Vec<(DeviceId, u64)>,
    /// Holes given up on after the grace: device, first and last missing seq.
    pub gaps: Vec<(DeviceId, u64, u64)>,
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
}

impl SeqBook {
    pub fn new(last_seq: &HashMap<DeviceId, u64>, gap_grace_s: u64) -> SeqBook {
        let devices = last_seq
            .iter()
            .map(|(d, &s)| (d.clone(), SeqState::seeded(s)))
            .collect();
        SeqBook {
            inner: Mutex::new(Book {
                devices,
                held: HashSet::new(),
            }),
            grace_ms: i64::try_from(gap_grace_s.saturating_mul(1000)).unwrap_or(i64::MAX),
        }
    }

    /// Takes `seq` for `device` unless it was taken before; returns whether
    /// it is new. A seq at or below the watermark, or pending above it, is a
    /// duplicate.
    pub fn take(&self, device: &DeviceId, seq: u64, now_ms: EpochMs) -> bool {
        let mut book = self.inner.lock();
        let state = book.devices.entry(device.clone()).or_default();
        if state.is_taken(seq) {
            return false;
        }
        state.take(seq, now_ms, Instant::now());
        true
    }

    /// Forgets seqs whose write failed, so that the device's re-send is
    /// accepted rather than treated as a duplicate.
    pub fn release(&self, taken: &[(DeviceId, u64)]) {
        let mut book = self.inner.lock();
        for (device, seq) in taken {
            if let Some(state) = book.devices.get_mut(device) {
                if state.pending.get(seq).is_some_and(|p| !p.durable) {
                    state.pending.remove(seq);
                }
                if state.watermark.is_none() {
                    state.start = state.pending.first_key_value().map(|(&s, _)| s);
                }
            }
        }
    }

    /// The watermark to re-send to a device that sent a duplicate.
    pub fn reack(&self, device: &DeviceId) -> Option<u64> {
        let mut book = self.inner.lock();
        let state = book.devices.get_mut(device)?;
        state.published = state.watermark.or(state.published);
        state.watermark
    }

    /// Marks these seqs durable and moves the watermarks they unblock.
    pub fn durable(
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
            if let Some(p) = state.pending.get_mut(&seq).filter(|p| !p.durable) {
                p.durable = true;
                progress.latencies.push(p.received.elapsed());
                touched.insert(device);
            }
        }
        for device in touched {
            self.settle(&mut book, device, now_ms, &mut progress);
        }
        progress
    }

    /// Re-examines devices held below a hole (their grace may have passed).
    pub fn tick(&self, now_ms: EpochMs) -> Progress {
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
        for (first, last) in state.advance(now_ms, self.grace_ms) {
            progress.gaps.push((device.clone(), first, last));
        }
        let held = state.is_held();
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
    pub fn undurable(&self) -> usize {
        let book = self.inner.lock();
        book.devices
            .values()
            .map(|s| s.pending.values().filter(|p| !p.durable).count())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GRACE_S: u64 = 30;
    const T0: EpochMs = 1_732_300_000_000;

    fn dev(id: &str) -> DeviceId {
        DeviceId::new(id).unwrap()
    }

    fn durable(book: &SeqBook, id: &str, seqs: &[u64], now: EpochMs) -> Progress {
        book.durable(seqs.iter().map(|&s| (dev(id), s)), now)
    }

    #[test]
    fn a_new_device_starts_at_its_first_seq_and_acks_each_durable_batch_once() {
        let book = SeqBook::new(&HashMap::new(), GRACE_S);
        for seq in [41, 42, 43] {
            assert!(book.take(&dev("EL1"), seq, T0));
        }
        assert_eq!(book.undurable(), 3);
        let p = durable(&book, "EL1", &[41, 42], T0);
        assert_eq!(
            p.acks,
            vec![(dev("EL1"), 42)],
            "one coalesced ack for the batch"
        );
        assert_eq!((p.gaps.len(), p.latencies.len()), (0, 2));
        // 43 is not durable yet, so the watermark stays; nothing new to send.
        assert!(book.tick(T0).acks.is_empty());
        assert_eq!(
            durable(&book, "EL1", &[43], T0).acks,
            vec![(dev("EL1"), 43)]
        );
        assert_eq!(book.undurable(), 0);
        // A second report of the same token changes nothing.
        assert!(durable(&book, "EL1", &[43], T0).acks.is_empty());
    }

    #[test]
    fn duplicates_are_refused_below_the_watermark_and_while_pending() {
        let book = SeqBook::new(&HashMap::from([(dev("EL1"), 10)]), GRACE_S);
        assert!(!book.take(&dev("EL1"), 10, T0), "recovered history counts");
        assert!(!book.take(&dev("EL1"), 3, T0));
        assert!(book.take(&dev("EL1"), 11, T0));
        assert!(
            !book.take(&dev("EL1"), 11, T0),
            "pending above the watermark counts"
        );
        assert_eq!(book.reack(&dev("EL1")), Some(10));
        assert!(book.take(&dev("EL2"), 11, T0), "seqs are per device");
        assert_eq!(book.reack(&dev("EL3")), None);
    }

    #[test]
    fn a_hole_holds_the_watermark_until_filled() {
        let book = SeqBook::new(&HashMap::from([(dev("EL1"), 4)]), GRACE_S);
        for seq in [5, 7, 8] {
            assert!(book.take(&dev("EL1"), seq, T0));
        }
        let p = durable(&book, "EL1", &[5, 7, 8], T0);
        assert_eq!(p.acks, vec![(dev("EL1"), 5)], "held below the missing 6");
        assert!(book.tick(T0 + 10_000).acks.is_empty());
        assert!(
            book.take(&dev("EL1"), 6, T0 + 10_000),
            "the re-sent 6 is not a duplicate"
        );
        let p = durable(&book, "EL1", &[6], T0 + 10_000);
        assert_eq!(p.acks, vec![(dev("EL1"), 8)]);
        assert!(p.gaps.is_empty());
    }

    #[test]
    fn an_unfilled_hole_is_counted_and_passed_after_the_grace() {
        let book = SeqBook::new(&HashMap::from([(dev("EL1"), 4)]), GRACE_S);
        book.take(&dev("EL1"), 5, T0);
        book.take(&dev("EL1"), 9, T0 + 1_000);
        book.take(&dev("EL1"), 12, T0 + 2_000);
        let p = durable(&book, "EL1", &[5, 9, 12], T0 + 2_000);
        assert_eq!(p.acks, vec![(dev("EL1"), 5)]);
        // The grace runs from the receipt of the first seq above each hole.
        assert!(book.tick(T0 + 30_999).acks.is_empty());
        let p = book.tick(T0 + 31_000);
        assert_eq!(
            (p.acks, p.gaps),
            (vec![(dev("EL1"), 9)], vec![(dev("EL1"), 6, 8)])
        );
        let p = book.tick(T0 + 32_000);
        assert_eq!(
            (p.acks, p.gaps),
            (vec![(dev("EL1"), 12)], vec![(dev("EL1"), 10, 11)])
        );
        assert!(
            book.tick(T0 + 99_000).acks.is_empty(),
            "nothing held any more"
        );
        // A late 6 is now below the watermark: a duplicate.
        assert!(!book.take(&dev("EL1"), 6, T0 + 99_000));
    }

    #[test]
    fn a_released_seq_can_be_taken_again() {
        let book = SeqBook::new(&HashMap::new(), GRACE_S);
        book.take(&dev("EL1"), 1, T0);
        book.take(&dev("EL1"), 2, T0);
        book.release(&[(dev("EL1"), 1)]);
        assert_eq!(
            durable(&book, "EL1", &[2], T0).acks,
            vec![(dev("EL1"), 2)],
            "2 is the start now"
        );
        let book = SeqBook::new(&HashMap::new(), GRACE_S);
        book.take(&dev("EL1"), 1, T0);
        book.release(&[(dev("EL1"), 1)]);
        assert!(
            book.take(&dev("EL1"), 1, T0),
            "the re-send after a failed write is accepted"
        );
        assert_eq!(book.undurable(), 1);
    }

    #[test]
    fn a_duplicate_forces_the_current_watermark_out_again() {
        let book = SeqBook::new(&HashMap::new(), GRACE_S);
        book.take(&dev("EL1"), 1, T0);
        assert_eq!(
            book.reack(&dev("EL1")),
            None,
            "nothing durable yet: nothing to promise"
        );
        assert_eq!(durable(&book, "EL1", &[1], T0).acks, vec![(dev("EL1"), 1)]);
        assert_eq!(book.reack(&dev("EL1")), Some(1));
    }
}
