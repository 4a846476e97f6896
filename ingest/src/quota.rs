//! Per-connection quotas: how many messages and bytes one MQTT connection may
//! send, derived from its device's registered `report_interval_s`.
//!
//! Two token buckets (messages, bytes) refill at the sustained rate and hold
//! `burst_factor` seconds of it. A packet that takes a bucket below zero is
//! still taken; the connection's socket is then not read until the bucket is
//! back at zero (see `sessions::Metered`). A connection that stays over its
//! quota for `disconnect_after_s` is disconnected. Nothing it sent before is
//! lost: what was PUBACKed is in the broker, what was not is re-sent by the
//! device.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// `[ingest.quota]`. Integers, so the config stays `Eq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct QuotaConfig {
    /// Off: no connection is ever throttled or disconnected for its rate.
    pub enabled: bool,
    /// Sustained messages allowed per report interval: a device registered
    /// with `report_interval_s = 30` may send `rate_multiple / 30` messages
    /// per second (but at least `min_msgs_per_s`).
    pub rate_multiple: u32,
    /// Floor of the sustained rate, messages per second (also the rate of
    /// alarm-feed logins, which have no report interval).
    pub min_msgs_per_s: u32,
    /// Each bucket holds this many seconds of the sustained rate: what a
    /// device may send at once, e.g. its backlog after an outage.
    pub burst_factor: u32,
    /// Payload bytes allowed per allowed message (topic and payload count).
    pub bytes_per_msg: u32,
    /// Seconds a connection may stay over its quota (throttled without a
    /// break) before it is disconnected.
    pub disconnect_after_s: u32,
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            enabled: true,
            rate_multiple: 300,
            min_msgs_per_s: 5,
            burst_factor: 30,
            bytes_per_msg: 4096,
            disconnect_after_s: 120,
        }
    }
}

impl QuotaConfig {
    /// The limits of a connection whose device reports every
    /// `report_interval_s` seconds (`None`: not a device).
    pub(crate) fn limits(&self, report_interval_s: Option<u32>) -> Option<Limits> {
        if !self.enabled {
            return None;
        }
        let floor = f64::from(self.min_msgs_per_s.max(1));
        let msgs_per_s = match report_interval_s {
            Some(interval) => {
                (f64::from(self.rate_multiple) / f64::from(interval.max(1))).max(floor)
            }
            None => floor,
        };
        let bytes_per_s = msgs_per_s * f64::from(self.bytes_per_msg.max(1));
        let burst = f64::from(self.burst_factor.max(1));
        Some(Limits {
            msgs_per_s,
            bytes_per_s,
            burst_msgs: msgs_per_s * burst,
            burst_bytes: bytes_per_s * burst,
            disconnect_after: Duration::from_secs(u64::from(self.disconnect_after_s)),
        })
    }
}

/// Which bucket ran dry (the label of `vigil_ingest_throttled_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Excess {
    Messages,
    Bytes,
}

impl Excess {
    pub(crate) const ALL: [Excess; 2] = [Excess::Messages, Excess::Bytes];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Excess::Messages => "messages",
            Excess::Bytes => "bytes",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Limits {
    pub msgs_per_s: f64,
    pub bytes_per_s: f64,
    pub burst_msgs: f64,
    pub burst_bytes: f64,
    pub disconnect_after: Duration,
}

/// What a packet did to its connection's quota.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Charge {
    Within,
    /// Over quota: read nothing more until `until`. `first` on the packet
    /// that started this spell of throttling.
    Throttle {
        until: Instant,
        excess: Excess,
        first: bool,
    },
    /// Over quota for longer than `disconnect_after`.
    Disconnect(Excess),
}

/// The two buckets of one connection. Only its own connection task touches
/// it.
#[derive(Debug)]
pub(crate) struct Bucket {
    limits: Limits,
    msgs: f64,
    bytes: f64,
    last: Instant,
    /// Start of the current spell over quota.
    over_since: Option<Instant>,
}

impl Bucket {
    pub(crate) fn new(limits: Limits, now: Instant) -> Bucket {
        Bucket {
            limits,
            msgs: limits.burst_msgs,
            bytes: limits.burst_bytes,
            last: now,
            over_since: None,
        }
    }

    /// Takes one packet of `bytes` from the buckets.
    pub(crate) fn charge(&mut self, now: Instant, bytes: usize) -> Charge {
        let l = self.limits;
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.msgs = (self.msgs + elapsed * l.msgs_per_s).min(l.burst_msgs) - 1.0;
        self.bytes = (self.bytes + elapsed * l.bytes_per_s).min(l.burst_bytes) - bytes as f64;
        let msg_wait = (-self.msgs).max(0.0) / l.msgs_per_s;
        let byte_wait = (-self.bytes).max(0.0) / l.bytes_per_s;
        let (wait, excess) = if msg_wait >= byte_wait {
            (msg_wait, Excess::Messages)
        } else {
            (byte_wait, Excess::Bytes)
        };
        if wait <= 0.0 {
            self.over_since = None;
            return Charge::Within;
        }
        let first = self.over_since.is_none();
        let since = *self.over_since.get_or_insert(now);
        if now.saturating_duration_since(since) >= l.disconnect_after {
            return Charge::Disconnect(excess);
        }
        Charge::Throttle {
            until: now + Duration::from_secs_f64(wait),
            excess,
            first,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(interval: u32) -> Limits {
        QuotaConfig {
            rate_multiple: 30,
            min_msgs_per_s: 1,
            burst_factor: 10,
            bytes_per_msg: 100,
            disconnect_after_s: 5,
            ..QuotaConfig::default()
        }
        .limits(Some(interval))
        .unwrap()
    }

    #[test]
    fn the_rate_follows_the_report_interval_with_a_floor() {
        assert_eq!(limits(3).msgs_per_s, 10.0);
        assert_eq!(limits(30).msgs_per_s, 1.0);
        assert_eq!(limits(3600).msgs_per_s, 1.0, "the floor");
        assert_eq!(limits(3).burst_msgs, 100.0);
        assert_eq!(limits(3).bytes_per_s, 1000.0);
        let off = QuotaConfig {
            enabled: false,
            ..QuotaConfig::default()
        };
        assert!(off.limits(Some(30)).is_none());
    }

    #[test]
    fn a_burst_passes_then_the_sustained_rate_holds() {
        let t0 = Instant::now();
        let mut b = Bucket::new(limits(3), t0);
        for _ in 0..100 {
            assert_eq!(b.charge(t0, 10), Charge::Within);
        }
        let Charge::Throttle {
            until,
            excess,
            first,
        } = b.charge(t0, 10)
        else {
            panic!("the 101st message at once is over the burst");
        };
        assert!(first);
        assert_eq!(excess, Excess::Messages);
        assert_eq!(
            until - t0,
            Duration::from_millis(100),
            "one message at 10/s"
        );
        // Still over on the next packet of the same spell: not a new spell.
        assert!(matches!(
            b.charge(t0, 10),
            Charge::Throttle { first: false, .. }
        ));
        // A pause long enough refills; the spell ends.
        assert_eq!(b.charge(t0 + Duration::from_secs(2), 10), Charge::Within);
    }

    #[test]
    fn bytes_have_their_own_bucket() {
        let t0 = Instant::now();
        let mut b = Bucket::new(limits(3), t0);
        // 10 000 bytes of burst; one 12 000-byte message overdraws it.
        assert!(matches!(
            b.charge(t0, 12_000),
            Charge::Throttle {
                excess: Excess::Bytes,
                ..
            }
        ));
    }

    #[test]
    fn staying_over_the_quota_ends_in_a_disconnect() {
        let t0 = Instant::now();
        let mut b = Bucket::new(limits(30), t0);
        let mut t = t0;
        let mut outcome = Charge::Within;
        // Two messages a second against a rate of one, for 10 s.
        for _ in 0..20 {
            t += Duration::from_millis(500);
            for _ in 0..2 {
                outcome = b.charge(t, 10);
            }
            if matches!(outcome, Charge::Disconnect(_)) {
                break;
            }
        }
        assert_eq!(outcome, Charge::Disconnect(Excess::Messages));
        assert!(t - t0 <= Duration::from_secs(10));
    }
}
