//! Anomaly detection for one device and one metric (door cycle time, trip
//! duration, vibration, fill time): values in, a verdict out, against the
//! device's own normal rather than a fixed threshold.
//!
//! Two exponentially weighted means run side by side. The *baseline* learns
//! slowly (`baseline_alpha`) what is normal for this device, together with
//! its mean absolute deviation; the *recent* mean follows quickly
//! (`recent_alpha`). A reading is anomalous when the recent mean has moved
//! more than `threshold` baseline deviations away from the baseline (the
//! baseline learns from values clipped to that distance, so a fault does not
//! widen its own normal): a drift
//! that builds up over a few dozen samples (a door motor getting slower, a
//! drive starting to vibrate) gets through, while single noisy samples are
//! averaged away. While anomalous the baseline learns ten times slower, so a
//! fault is not quietly learned as the new normal; it still adapts in the end
//! (after a repair that changes the normal, say).
//!
//! The first `warmup` values only learn (plain running averages, so the
//! start does not bias the baseline) and never give a verdict. State is four
//! numbers and a counter: O(1) memory per device and metric.

use serde::{Deserialize, Serialize};

/// Tuning of a detector; one per metric, overridable like rule parameters.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnomalyParams {
    /// Values that only learn before any verdict.
    pub warmup: u32,
    /// Weight of a new value in the baseline (about 1 / memory in samples).
    pub baseline_alpha: f64,
    /// Weight of a new value in the recent mean.
    pub recent_alpha: f64,
    /// How many baseline deviations the recent mean may move.
    pub threshold: f64,
    /// A floor under the deviation, in the metric's unit: a metric that has
    /// been perfectly constant must not alarm on its first tiny change.
    pub min_deviation: f64,
}

impl AnomalyParams {
    /// The shipped tuning (the anomaly rules' defaults).
    pub const DEFAULT: AnomalyParams = AnomalyParams {
        warmup: 200,
        baseline_alpha: 1.0 / 500.0,
        recent_alpha: 1.0 / 20.0,
        threshold: 2.0,
        min_deviation: 0.0,
    };
}

impl Default for AnomalyParams {
    fn default() -> Self {
        AnomalyParams::DEFAULT
    }
}

/// What one value says about the device.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Verdict {
    /// Still learning; `seen` values so far.
    WarmingUp { seen: u32 },
    /// Within normal; `score` is the distance in baseline deviations.
    Normal { score: f64 },
    /// Outside normal: the recent mean against the baseline.
    Anomalous {
        score: f64,
        recent: f64,
        baseline: f64,
        deviation: f64,
    },
}

impl Verdict {
    pub fn is_anomalous(&self) -> bool {
        matches!(self, Verdict::Anomalous { .. })
    }
}

/// The running state of one device's metric.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Detector {
    seen: u32,
    baseline: f64,
    deviation: f64,
    recent: f64,
    anomalous: bool,
}

impl Detector {
    pub fn new() -> Detector {
        Detector::default()
    }

    /// Learns `value` and says whether the device is outside its normal.
    /// Values that are not finite are ignored (the codec refuses them; this
    /// keeps a stray NaN from poisoning the state for good).
    pub fn observe(&mut self, value: f64, p: &AnomalyParams) -> Verdict {
        if !value.is_finite() {
            return self.verdict(p);
        }
        if self.seen < p.warmup.max(1) {
            // Running averages: every warm-up value weighs the same.
            self.seen += 1;
            let w = 1.0 / f64::from(self.seen);
            let before = self.baseline;
            self.baseline += w * (value - self.baseline);
            self.recent = self.baseline;
            if self.seen > 1 {
                self.deviation += w * ((value - before).abs() - self.deviation);
            }
            return self.verdict(p);
        }
        self.seen = self.seen.saturating_add(1);
        self.recent += p.recent_alpha * (value - self.recent);
        let alpha = if self.anomalous {
            p.baseline_alpha / 10.0
        } else {
            p.baseline_alpha
        };
        // Huber-style: the baseline and its deviation learn from the value
        // clipped to `threshold` deviations, so a fault's large values do
        // not widen what counts as normal (and blunt the detector).
        let bound = p.threshold.max(1.0) * self.deviation.max(p.min_deviation).max(f64::EPSILON);
        let step = (value - self.baseline).clamp(-bound, bound);
        self.baseline += alpha * step;
        self.deviation += alpha * (step.abs() - self.deviation);
        let verdict = self.verdict(p);
        self.anomalous = verdict.is_anomalous();
        verdict
    }

    fn verdict(&self, p: &AnomalyParams) -> Verdict {
        if self.seen <= p.warmup {
            return Verdict::WarmingUp { seen: self.seen };
        }
        let deviation = self.deviation.max(p.min_deviation).max(f64::EPSILON);
        let score = (self.recent - self.baseline).abs() / deviation;
        if score > p.threshold {
            Verdict::Anomalous {
                score,
                recent: self.recent,
                baseline: self.baseline,
                deviation,
            }
        } else {
            Verdict::Normal { score }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (SplitMix64), so the tests need no
    /// randomness crate and always see the same noise.
    struct Noise(u64);

    impl Noise {
        fn unit(&mut self) -> f64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Roughly normal with mean 0 and deviation 1 (sum of 12 uniforms).
        fn gauss(&mut self) -> f64 {
            (0..12).map(|_| self.unit()).sum::<f64>() - 6.0
        }
    }

    fn feed(
        d: &mut Detector,
        p: &AnomalyParams,
        values: impl Iterator<Item = f64>,
    ) -> Vec<Verdict> {
        values.map(|v| d.observe(v, p)).collect()
    }

    #[test]
    fn no_verdict_while_warming_up_even_for_wild_values() {
        let p = AnomalyParams::default();
        let mut d = Detector::new();
        let wild = [4.0, 400.0, -3.0, 1e6, 4.0];
        let verdicts = feed(&mut d, &p, wild.iter().copied().cycle().take(200));
        assert!(
            verdicts
                .iter()
                .all(|v| matches!(v, Verdict::WarmingUp { .. }))
        );
        assert_eq!(verdicts[199], Verdict::WarmingUp { seen: 200 });
    }

    #[test]
    fn normal_variation_never_alarms() {
        // A door cycle of 4.0 s ± 0.3 s over 20 000 cycles (months of use).
        let p = AnomalyParams::default();
        let mut d = Detector::new();
        let mut noise = Noise(7);
        let verdicts = feed(&mut d, &p, (0..20_000).map(|_| 4.0 + 0.3 * noise.gauss()));
        let alarms = verdicts.iter().filter(|v| v.is_anomalous()).count();
        assert_eq!(alarms, 0, "false alarms on normal variation");
    }

    #[test]
    fn a_slowly_drifting_door_motor_is_caught_and_a_brief_glitch_is_not() {
        let p = AnomalyParams::default();
        let mut d = Detector::new();
        let mut noise = Noise(11);
        feed(&mut d, &p, (0..2_000).map(|_| 4.0 + 0.3 * noise.gauss()));
        // Three slow cycles in a row (someone held the door): not a fault.
        let glitch = feed(&mut d, &p, [5.5, 5.8, 5.6].into_iter());
        assert!(glitch.iter().all(|v| !v.is_anomalous()), "{glitch:?}");
        feed(&mut d, &p, (0..50).map(|_| 4.0 + 0.3 * noise.gauss()));
        // The motor wears: +1.5 s spread over 300 cycles.
        let drift = feed(
            &mut d,
            &p,
            (0..300).map(|i| 4.0 + 1.5 * f64::from(i) / 300.0 + 0.3 * noise.gauss()),
        );
        let first = drift.iter().position(Verdict::is_anomalous);
        let first = first.expect("a 1.5 s drift must be caught");
        // Caught well before the end of the drift, around +0.5 s.
        assert!(first < 200, "caught only after {first} cycles");
        let Verdict::Anomalous {
            baseline, recent, ..
        } = drift[first]
        else {
            unreachable!()
        };
        assert!(
            (baseline - 4.0).abs() < 0.2,
            "baseline stays near normal: {baseline}"
        );
        assert!(recent > baseline, "{recent} vs {baseline}");
    }

    #[test]
    fn a_vibrating_drive_stays_anomalous_and_is_not_learned_as_normal_soon() {
        // Vibration 2.0 mm/s ± 0.2, then a bearing fault doubles it.
        let p = AnomalyParams::default();
        let mut d = Detector::new();
        let mut noise = Noise(3);
        feed(&mut d, &p, (0..1_000).map(|_| 2.0 + 0.2 * noise.gauss()));
        let fault = feed(&mut d, &p, (0..1_000).map(|_| 4.0 + 0.4 * noise.gauss()));
        let first = fault.iter().position(Verdict::is_anomalous).unwrap();
        assert!(first < 20, "caught after {first} samples");
        assert!(
            fault[first..].iter().all(Verdict::is_anomalous),
            "the fault stays visible for the next 1 000 samples"
        );
    }

    #[test]
    fn a_constant_metric_needs_the_floor_to_stay_quiet() {
        let p = AnomalyParams {
            min_deviation: 0.05,
            ..AnomalyParams::default()
        };
        let mut d = Detector::new();
        feed(&mut d, &p, std::iter::repeat_n(10.0, 500));
        assert!(!d.observe(10.01, &p).is_anomalous());
        let v = feed(&mut d, &p, std::iter::repeat_n(11.0, 50));
        assert!(v.last().unwrap().is_anomalous());
    }

    #[test]
    fn not_finite_values_change_nothing() {
        let p = AnomalyParams::default();
        let mut d = Detector::new();
        feed(&mut d, &p, std::iter::repeat_n(1.0, 300));
        let before = d;
        d.observe(f64::NAN, &p);
        d.observe(f64::INFINITY, &p);
        assert_eq!(d, before);
    }
}
