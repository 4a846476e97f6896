//! A device's unacknowledged messages (protocol.md "Engine → device").
//!
//! Every published message stays here until an ack `{"seq": N}` covers it.
//! A send cursor walks the buffer in `seq` order; rewinding it to the
//! watermark (after a reconnect, or when acks stall) re-sends exactly what
//! is not yet covered, in order, without ever blocking the device.

use std::collections::VecDeque;

use vigil_model::{EpochMs, Stream};

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pending {
    pub seq: u64,
    pub stream: Stream,
    pub bytes: Vec<u8>,
}

#[derive(Debug)]
pub(crate) struct Unacked {
    /// Strictly increasing `seq`.
    msgs: VecDeque<Pending>,
    cap: usize,
    /// Next `seq` to hand to the broker (any `seq` ≥ this is unsent).
    cursor: u64,
    /// Highest `seq` ever handed out: a send at or below it is a re-send.
    max_sent: u64,
    /// Highest `seq` an ack covered.
    acked: u64,
    /// When the watermark last advanced (or a re-send restarted the wait).
    last_progress: EpochMs,
    dropped: u64,
}

/// What one `ack` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AckOutcome {
    /// Messages the ack released.
    pub released: usize,
}

impl Unacked {
    pub(crate) fn new(cap: usize) -> Unacked {
        Unacked {
            msgs: VecDeque::new(),
            cap: cap.max(1),
            cursor: 0,
            max_sent: 0,
            acked: 0,
            last_progress: 0,
            dropped: 0,
        }
    }

    /// Keeps a new message; when full, the oldest goes (returned, to be counted).
    pub(crate) fn push(&mut self, msg: Pending, now: EpochMs) -> Option<u64> {
        if self.msgs.is_empty() {
            // Nothing was waiting: the stall clock starts with this message.
            self.last_progress = now;
        }
        self.msgs.push_back(msg);
        if self.msgs.len() > self.cap {
            let old = self.msgs.pop_front()?;
            self.dropped += 1;
            return Some(old.seq);
        }
        None
    }

    /// Releases everything up to `seq`; stale or repeated acks do nothing.
    pub(crate) fn ack(&mut self, seq: u64, now: EpochMs) -> AckOutcome {
        if seq <= self.acked {
            return AckOutcome { released: 0 };
        }
        self.acked = seq;
        let before = self.msgs.len();
        while self.msgs.front().is_some_and(|m| m.seq <= seq) {
            self.msgs.pop_front();
        }
        self.cursor = self.cursor.max(seq + 1);
        self.last_progress = now;
        AckOutcome {
            released: before - self.msgs.len(),
        }
    }

    /// The next message to hand to the broker, if any.
    pub(crate) fn next_to_send(&self) -> Option<&Pending> {
        let i = self.msgs.partition_point(|m| m.seq < self.cursor);
        self.msgs.get(i)
    }

    /// The message from `next_to_send` went out; true if it was a re-send.
    pub(crate) fn mark_sent(&mut self, seq: u64) -> bool {
        self.cursor = seq + 1;
        let resend = seq <= self.max_sent;
        self.max_sent = self.max_sent.max(seq);
        resend
    }

    /// Sends again from the watermark: everything not covered by an ack.
    pub(crate) fn rewind(&mut self, now: EpochMs) {
        self.cursor = self.acked + 1;
        self.last_progress = now;
    }

    /// Messages wait and no ack advanced for `stall_ms`.
    pub(crate) fn stalled(&self, now: EpochMs, stall_ms: EpochMs) -> bool {
        !self.msgs.is_empty() && self.max_sent > self.acked && now - self.last_progress >= stall_ms
    }

    pub(crate) fn len(&self) -> usize {
        self.msgs.len()
    }

    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64) -> Pending {
        Pending {
            seq,
            stream: Stream::Elevator,
            bytes: format!("{{\"seq\":{seq}}}").into_bytes(),
        }
    }

    /// Drains the cursor the way the runner does, returning the sent seqs.
    fn send_all(buf: &mut Unacked) -> Vec<u64> {
        let mut sent = Vec::new();
        while let Some(seq) = buf.next_to_send().map(|m| m.seq) {
            buf.mark_sent(seq);
            sent.push(seq);
        }
        sent
    }

    #[test]
    fn resends_exactly_what_the_ack_does_not_cover() {
        let mut buf = Unacked::new(100);
        for seq in 1..=5 {
            buf.push(msg(seq), 0);
        }
        assert_eq!(send_all(&mut buf), vec![1, 2, 3, 4, 5]);
        assert_eq!(buf.ack(3, 10).released, 3);
        buf.rewind(20);
        assert_eq!(send_all(&mut buf), vec![4, 5]);
        // A stale ack changes nothing; the next rewind still starts at 4.
        assert_eq!(buf.ack(2, 30).released, 0);
        buf.rewind(40);
        assert_eq!(
            buf.next_to_send().map(|m| m.bytes.clone()),
            Some(b"{\"seq\":4}".to_vec())
        );
        assert_eq!(buf.ack(5, 50).released, 2);
        buf.rewind(60);
        assert_eq!(send_all(&mut buf), Vec::<u64>::new());
        assert_eq!(buf.len(), 0);
    }

    #[test]
    fn new_messages_queue_behind_a_resend_in_order() {
        let mut buf = Unacked::new(100);
        for seq in 1..=3 {
            buf.push(msg(seq), 0);
        }
        send_all(&mut buf);
        buf.ack(1, 0);
        buf.rewind(0);
        buf.push(msg(4), 0);
        let mut resent = Vec::new();
        while let Some(seq) = buf.next_to_send().map(|m| m.seq) {
            resent.push((seq, buf.mark_sent(seq)));
        }
        assert_eq!(resent, vec![(2, true), (3, true), (4, false)]);
    }

    #[test]
    fn an_ack_beyond_the_cursor_skips_covered_messages() {
        let mut buf = Unacked::new(100);
        for seq in 1..=4 {
            buf.push(msg(seq), 0);
        }
        buf.mark_sent(1);
        // Covered by an ack (sent in an earlier connection): never re-sent.
        buf.ack(2, 0);
        assert_eq!(send_all(&mut buf), vec![3, 4]);
    }

    #[test]
    fn stalls_only_when_sent_messages_wait_too_long() {
        let mut buf = Unacked::new(100);
        assert!(!buf.stalled(1_000_000, 10_000));
        buf.push(msg(1), 100_000);
        assert!(
            !buf.stalled(200_000, 10_000),
            "unsent messages are not a stall"
        );
        send_all(&mut buf);
        assert!(!buf.stalled(109_999, 10_000));
        assert!(buf.stalled(110_000, 10_000));
        buf.rewind(110_000);
        assert!(!buf.stalled(115_000, 10_000));
        buf.ack(1, 116_000);
        assert!(!buf.stalled(200_000, 10_000));
    }

    #[test]
    fn bounded_drops_the_oldest() {
        let mut buf = Unacked::new(3);
        let dropped: Vec<_> = (1..=5).filter_map(|seq| buf.push(msg(seq), 0)).collect();
        assert_eq!(dropped, vec![1, 2]);
        assert_eq!(buf.dropped(), 2);
        assert_eq!(send_all(&mut buf), vec![3, 4, 5]);
    }
}
