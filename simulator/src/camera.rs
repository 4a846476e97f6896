//! One simulated video-analytics box with one or two cameras, watching an
//! elevator car or a ride's platform. It publishes incidents, not states.
//!
//! A healthy box reports what cameras see all day: door obstructions and
//! crowding (no rule watches them) and the detector's false positives,
//! whose confidence stays below every rule's `min_confidence` (rules.md).
//! A fault is a real incident: an e-bike in the car, a fall, smoke, an
//! intrusion into the danger zone, or a lens covered for minutes.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vigil_model::reading::{VideoEvent, VideoKind};
use vigil_model::{EpochMs, Payload};

use crate::elevator::{FaultKind, FaultPlan, TICK_MS};
use crate::machine::{Emitted, FaultEdge};

const MAX_BACKLOG_MS: EpochMs = 10_000;

/// Everything needed to build one camera box.
#[derive(Debug, Clone)]
pub(crate) struct CameraSpec {
    pub device_id: String,
    /// Watches a ride's platform rather than an elevator car.
    pub at_ride: bool,
    pub cameras: Vec<String>,
    pub seed: u64,
    pub fault: Option<FaultPlan>,
}

/// A background kind of event: mean interval and confidence range.
struct Background {
    kind: VideoKind,
    mean_ms: f64,
    confidence: (f32, f32),
}

/// rules.md's lowest `min_confidence` per kind keeps these harmless:
/// e-bike 0.8, fall 0.7, danger zone 0.7, smoke 0.6.
const IN_CAR: &[Background] = &[
    Background {
        kind: VideoKind::DoorObstruction,
        mean_ms: 240_000.0,
        confidence: (0.55, 0.97),
    },
    Background {
        kind: VideoKind::Crowding,
        mean_ms: 900_000.0,
        confidence: (0.5, 0.9),
    },
    Background {
        kind: VideoKind::ElectricBike,
        mean_ms: 1_800_000.0,
        confidence: (0.3, 0.74),
    },
    Background {
        kind: VideoKind::PersonFall,
        mean_ms: 3_600_000.0,
        confidence: (0.25, 0.6),
    },
    Background {
        kind: VideoKind::SmokeFire,
        mean_ms: 7_200_000.0,
        confidence: (0.15, 0.5),
    },
];

const AT_RIDE: &[Background] = &[
    Background {
        kind: VideoKind::Crowding,
        mean_ms: 180_000.0,
        confidence: (0.6, 0.98),
    },
    Background {
        kind: VideoKind::DangerZoneIntrusion,
        mean_ms: 1_200_000.0,
        confidence: (0.3, 0.65),
    },
    Background {
        kind: VideoKind::PersonFall,
        mean_ms: 3_600_000.0,
        confidence: (0.25, 0.6),
    },
    Background {
        kind: VideoKind::SmokeFire,
        mean_ms: 7_200_000.0,
        confidence: (0.15, 0.5),
    },
];

#[derive(Debug, Clone)]
enum FaultState {
    None,
    Planned(FaultPlan),
    /// An incident in progress: reports left to send and when.
    Active {
        kind: FaultKind,
        camera: usize,
        next: EpochMs,
        left: u32,
        every_ms: EpochMs,
    },
    Done,
}

pub(crate) struct Camera {
    spec: CameraSpec,
    rng: StdRng,
    t: Option<EpochMs>,
    fault: FaultState,
    out: Vec<Emitted>,
    edges: Vec<FaultEdge>,
}

impl Camera {
    pub(crate) fn new(spec: &CameraSpec) -> Camera {
        Camera {
            rng: StdRng::seed_from_u64(spec.seed),
            t: None,
            fault: spec
                .fault
                .clone()
                .map_or(FaultState::None, FaultState::Planned),
            out: Vec::new(),
            edges: Vec::new(),
            spec: spec.clone(),
        }
    }

    pub(crate) fn step(&mut self, now: EpochMs) -> Vec<Emitted> {
        let Some(mut t) = self.t else {
            self.t = Some(now);
            if let FaultState::Planned(plan) = &self.fault {
                self.fault = FaultState::Planned(FaultPlan {
                    kind: plan.kind,
                    after_ms: now + plan.after_ms,
                });
            }
            return Vec::new();
        };
        while t + TICK_MS <= now {
            t += TICK_MS;
            self.tick(t, t >= now - MAX_BACKLOG_MS);
        }
        self.t = Some(t);
        std::mem::take(&mut self.out)
    }

    pub(crate) fn take_fault_edges(&mut self) -> Vec<FaultEdge> {
        std::mem::take(&mut self.edges)
    }

    fn tick(&mut self, t: EpochMs, publish: bool) {
        let table = if self.spec.at_ride { AT_RIDE } else { IN_CAR };
        for bg in table {
            if self.rng.gen_bool((TICK_MS as f64 / bg.mean_ms).min(1.0)) {
                let camera = self.rng.gen_range(0..self.spec.cameras.len());
                let confidence = self.rng.gen_range(bg.confidence.0..bg.confidence.1);
                if publish {
                    self.emit(t, camera, bg.kind, confidence);
                }
            }
        }
        match self.fault.clone() {
            FaultState::Planned(plan) if t >= plan.after_ms => {
                // (reports, every): enough for each rule — one qualifying
                // event raises; an occlusion must be reported for 5 min.
                let (left, every_ms) = match plan.kind {
                    FaultKind::CameraOccluded => (8, 60_000),
                    FaultKind::CameraEbike => (3, 6_000),
                    _ => (2, 4_000),
                };
                let camera = self.rng.gen_range(0..self.spec.cameras.len());
                self.fault = FaultState::Active {
                    kind: plan.kind,
                    camera,
                    next: t,
                    left,
                    every_ms,
                };
                self.edges.push(FaultEdge {
                    ts: t,
                    kind: plan.kind,
                    started: true,
                });
            }
            FaultState::Active {
                kind,
                camera,
                next,
                left,
                every_ms,
            } if t >= next => {
                let (event, lo) = match kind {
                    FaultKind::CameraEbike => (VideoKind::ElectricBike, 0.82),
                    FaultKind::CameraFall => (VideoKind::PersonFall, 0.75),
                    FaultKind::CameraSmoke => (VideoKind::SmokeFire, 0.66),
                    FaultKind::CameraIntrusion => (VideoKind::DangerZoneIntrusion, 0.75),
                    _ => (VideoKind::CameraOccluded, 0.9),
                };
                let confidence = self.rng.gen_range(lo..0.99);
                self.emit(t, camera, event, confidence);
                if left <= 1 {
                    self.fault = FaultState::Done;
                    self.edges.push(FaultEdge {
                        ts: t,
                        kind,
                        started: false,
                    });
                } else {
                    self.fault = FaultState::Active {
                        kind,
                        camera,
                        next: t + every_ms,
                        left: left - 1,
                        every_ms,
                    };
                }
            }
            _ => {}
        }
    }

    fn emit(&mut self, t: EpochMs, camera: usize, event: VideoKind, confidence: f32) {
        let camera_id = self.spec.cameras[camera].clone();
        let snapshot = format!(
            "snap/{}/{camera_id}/{t}.jpg",
            self.spec.device_id.to_lowercase()
        );
        self.out.push(Emitted {
            ts: t,
            payload: Payload::Video(VideoEvent {
                camera_id,
                event,
                confidence: (confidence * 100.0).round() / 100.0,
                snapshot: Some(snapshot),
            }),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: EpochMs = 1_750_000_000_000;

    fn run(at_ride: bool, fault: Option<FaultKind>, ms: EpochMs) -> Vec<(EpochMs, VideoEvent)> {
        let mut cam = Camera::new(&CameraSpec {
            device_id: "CM000001".into(),
            at_ride,
            cameras: vec!["car".into(), "hall".into()],
            seed: 3,
            fault: fault.map(|kind| FaultPlan {
                kind,
                after_ms: 60_000,
            }),
        });
        let mut out = Vec::new();
        let mut t = T0;
        while t <= T0 + ms {
            for m in cam.step(t) {
                if let Payload::Video(v) = m.payload {
                    out.push((m.ts, v));
                }
            }
            t += TICK_MS;
        }
        out
    }

    /// rules.md's video rules with their lowest confidences.
    fn qualifies(v: &VideoEvent) -> bool {
        let min = match v.event {
            VideoKind::ElectricBike => 0.8,
            VideoKind::PersonFall | VideoKind::DangerZoneIntrusion => 0.7,
            VideoKind::SmokeFire => 0.6,
            VideoKind::CameraOccluded | VideoKind::RestraintUnlocked => 0.0,
            VideoKind::Crowding | VideoKind::DoorObstruction => f32::INFINITY,
        };
        v.confidence >= min
    }

    #[test]
    fn a_healthy_box_reports_often_and_raises_nothing() {
        for at_ride in [false, true] {
            let events = run(at_ride, None, 12 * 3_600_000);
            assert!(events.len() > 40, "{}", events.len());
            assert!(events.iter().all(|(_, v)| !qualifies(v)));
            // Often enough for a one-hour report interval (offline after 3 h).
            let gap = events.windows(2).map(|p| p[1].0 - p[0].0).max().unwrap();
            assert!(gap < 3 * 3_600_000, "{gap}");
        }
    }

    #[test]
    fn incidents_qualify() {
        for kind in [
            FaultKind::CameraEbike,
            FaultKind::CameraFall,
            FaultKind::CameraSmoke,
            FaultKind::CameraIntrusion,
        ] {
            let events = run(kind == FaultKind::CameraIntrusion, Some(kind), 300_000);
            assert!(events.iter().any(|(_, v)| qualifies(v)), "{kind}");
        }
        let occluded: Vec<EpochMs> = run(false, Some(FaultKind::CameraOccluded), 900_000)
            .into_iter()
            .filter(|(_, v)| v.event == VideoKind::CameraOccluded)
            .map(|(ts, _)| ts)
            .collect();
        // Reported for at least 5 min, never 120 s apart.
        assert!(occluded.last().unwrap() - occluded[0] >= 300_000);
        assert!(occluded.windows(2).all(|p| p[1] - p[0] < 120_000));
    }
}
