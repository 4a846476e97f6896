//! One car movement: a trapezoidal speed profile (accelerate to the peak
//! speed, cruise, decelerate) between two heights in the shaft.

use vigil_model::EpochMs;

#[derive(Debug, Clone)]
pub(super) struct Trip {
    pub z0: f64,
    pub z1: f64,
    /// Destination stop index.
    pub dest: usize,
    pub t0: EpochMs,
    /// When the car is level at `z1`.
    pub end: EpochMs,
    pub a: f64,
    t_acc: f64,
    t_cruise: f64,
    total: f64,
    /// Injected faults riding on this trip.
    pub door_fault: bool,
    pub stuck: bool,
    pub overspeed: bool,
}

impl Trip {
    /// `vmax` in m/s, `a` in m/s²; short trips never reach `vmax`.
    pub(super) fn new(z0: f64, z1: f64, dest: usize, t0: EpochMs, vmax: f64, a: f64) -> Trip {
        let d = (z1 - z0).abs();
        let (t_acc, t_cruise) = if d >= vmax * vmax / a {
            (vmax / a, (d - vmax * vmax / a) / vmax)
        } else {
            ((d / a).sqrt(), 0.0)
        };
        let total = 2.0 * t_acc + t_cruise;
        Trip {
            z0,
            z1,
            dest,
            t0,
            end: t0 + (total * 1000.0).ceil() as EpochMs,
            a,
            t_acc,
            t_cruise,
            total,
            door_fault: false,
            stuck: false,
            overspeed: false,
        }
    }

    pub(super) fn up(&self) -> bool {
        self.z1 >= self.z0
    }

    /// Seconds since the start.
    pub(super) fn elapsed(&self, t: EpochMs) -> f64 {
        ((t - self.t0) as f64 / 1000.0).clamp(0.0, self.total)
    }

    pub(super) fn total_s(&self) -> f64 {
        self.total
    }

    /// Height (m) and speed (m/s) at `t`.
    pub(super) fn at(&self, t: EpochMs) -> (f64, f64) {
        let e = self.elapsed(t);
        let d = (self.z1 - self.z0).abs();
        let vpeak = self.a * self.t_acc;
        let (dist, v) = if e < self.t_acc {
            (0.5 * self.a * e * e, self.a * e)
        } else if e < self.t_acc + self.t_cruise {
            (
                0.5 * self.a * self.t_acc * self.t_acc + vpeak * (e - self.t_acc),
                vpeak,
            )
        } else {
            let r = (self.total - e).max(0.0);
            (d - 0.5 * self.a * r * r, self.a * r)
        };
        let z = if self.up() {
            self.z0 + dist
        } else {
            self.z0 - dist
        };
        (z, v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_reaches_the_destination_without_exceeding_vmax() {
        for (d, vmax, a) in [(3.0, 1.0, 0.6), (60.0, 2.5, 0.9), (6.0, 1.75, 0.75)] {
            let trip = Trip::new(3.0, 3.0 + d, 0, 0, vmax, a);
            let mut last_z = 3.0;
            let mut t = 0;
            while t <= trip.end {
                let (z, v) = trip.at(t);
                assert!(v <= vmax + 1e-9 && v >= 0.0, "speed {v} at {t}");
                assert!(z >= last_z - 1e-9, "car went back at {t}");
                last_z = z;
                t += 50;
            }
            let (z, v) = trip.at(trip.end);
            assert!((z - (3.0 + d)).abs() < 1e-9 && v.abs() < 1e-9);
        }
        let down = Trip::new(30.0, 0.0, 0, 0, 1.5, 0.7);
        assert_eq!(down.at(down.end).0, 0.0);
        assert!(!down.up());
    }
}
