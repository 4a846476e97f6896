//! Holds a scenario's alarms to its expectations: each expected alarm with
//! how late it came, each missing one, each that should have cleared and
//! did not, and each alarm on the scenario's equipment nobody expected.

use std::collections::HashSet;

use serde::Serialize;
use serde_json::Value;
use vigil_model::EpochMs;
use vigil_simulator::scenario::{DriveStats, MaintenancePost, Prepared, Timeline};

/// An alarm (its latest version) and when the feed first showed it
/// (`i64::MAX`: only the store had it).
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub alarm: Value,
    pub first_seen: EpochMs,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Report {
    pub file: String,
    pub name: String,
    pub run_tag: String,
    pub speed: f64,
    pub devices: Vec<DeviceBrief>,
    pub expected: Vec<Outcome>,
    pub unexpected: Vec<AlarmBrief>,
    pub drive: DriveStats,
    pub maintenance_posted: Vec<MaintenancePost>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct DeviceBrief {
    pub name: String,
    pub device_id: String,
    pub equipment_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Outcome {
    pub rule: String,
    pub device: String,
    pub equipment_id: String,
    /// The step's line in the scenario file.
    pub line: usize,
    /// `ok`, `missing`, `late` (after `within_s`) or `not_cleared`.
    pub status: &'static str,
    pub alarm_id: Option<String>,
    /// Device time from the step to the alarm's `raised_at`.
    pub raised_after_s: Option<f64>,
    /// Wall time from the step to the alarm on the feed: how late it came.
    pub seen_after_s: Option<f64>,
    /// Every alarm it took has cleared.
    pub cleared: bool,
    /// Further alarms of the rule the same fault raised after the first.
    pub raised_again: usize,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct AlarmBrief {
    pub rule: String,
    pub equipment_id: String,
    pub device_id: Option<String>,
    pub alarm_id: String,
    pub raised_at: i64,
    pub state: String,
    pub details: Value,
}

impl Report {
    pub(crate) fn passed(&self) -> bool {
        self.unexpected.is_empty() && self.expected.iter().all(|o| o.status == "ok")
    }

    pub(crate) fn print(&self, check: bool) {
        let verdict = match (check, self.passed()) {
            (false, _) => "",
            (true, true) => "  PASS",
            (true, false) => "  FAIL",
        };
        println!(
            "{} ({}, run {}){verdict}",
            self.name, self.file, self.run_tag
        );
        for o in &self.expected {
            let timing = match (o.raised_after_s, o.seen_after_s) {
                (Some(r), Some(s)) => format!(
                    "raised {r:.1} s (device) after the step, on the feed {s:.1} s after it"
                ),
                (Some(r), None) => {
                    format!("raised {r:.1} s (device) after the step (not seen on the feed)")
                }
                _ => "no alarm".to_owned(),
            };
            let cleared = if o.cleared { ", cleared" } else { "" };
            let again = match o.raised_again {
                0 => String::new(),
                n => format!(", raised {n} more time(s)"),
            };
            println!(
                "  {:<11} {:<32} {} ({}) line {}: {timing}{cleared}{again}",
                o.status.to_uppercase(),
                o.rule,
                o.equipment_id,
                o.device,
                o.line
            );
        }
        for u in &self.unexpected {
            println!(
                "  UNEXPECTED  {:<32} {} device {} {} {}",
                u.rule,
                u.equipment_id,
                u.device_id.as_deref().unwrap_or("-"),
                u.state,
                u.details
            );
        }
    }
}

/// Matches the alarms of one scenario's equipment to its expectations.
/// An expectation takes the alarms of its rule on its equipment raised
/// from its step (device time, 1 s of slack; a step at 0 s: from the
/// start) until the next step expecting the same: the first is the alarm
/// it expected; later ones are the same fault raising the rule again (a
/// coaster over the limit on each hill) and are listed with it. Alarms
/// raised after the scenario's end (its devices are switched off then)
/// are not counted.
pub(super) fn check(
    p: &Prepared,
    timeline: &Timeline,
    alarms: &[Seen],
    drive: DriveStats,
    maintenance_posted: Vec<MaintenancePost>,
) -> Report {
    let end = timeline.device_start + p.scenario.duration_ms + 1_000;
    let mut sorted: Vec<&Seen> = alarms.iter().collect();
    sorted.sort_by_key(|s| s.alarm["raised_at"].as_i64().unwrap_or(i64::MAX));
    let earliest = |at_ms: EpochMs| {
        // A step at 0 s expects what the registry import itself raises,
        // before the device clock starts: any alarm of this run counts.
        if at_ms == 0 {
            i64::MIN
        } else {
            timeline.device_start + at_ms - 1_000
        }
    };
    let mut used: HashSet<String> = HashSet::new();
    let mut expected = Vec::new();
    for (i, e) in p.expectations.iter().enumerate() {
        let step_device = timeline.device_start + e.at_ms;
        let step_wall = timeline.wall_of(e.at_ms);
        let from = earliest(e.at_ms);
        let until = p.expectations[i + 1..]
            .iter()
            .filter(|n| n.rule == e.rule && n.equipment_id == e.equipment_id && n.at_ms > e.at_ms)
            .map(|n| earliest(n.at_ms))
            .min()
            .unwrap_or(i64::MAX);
        let mine: Vec<&&Seen> = sorted
            .iter()
            .filter(|s| {
                let a = &s.alarm;
                a["rule"] == e.rule.as_str()
                    && a["equipment_id"] == e.equipment_id.as_str()
                    && a["raised_at"]
                        .as_i64()
                        .is_some_and(|t| t >= from && t < until)
                    && !used.contains(a["alarm_id"].as_str().unwrap_or_default())
            })
            .collect();
        // The first may come in the settle time; later ones count only
        // while the scenario ran.
        let mine: Vec<&&Seen> = mine
            .iter()
            .enumerate()
            .filter(|(k, s)| *k == 0 || s.alarm["raised_at"].as_i64().is_some_and(|t| t <= end))
            .map(|(_, s)| *s)
            .collect();
        let Some(s) = mine.first() else {
            expected.push(Outcome {
                rule: e.rule.to_string(),
                device: e.device.clone(),
                equipment_id: e.equipment_id.clone(),
                line: e.line,
                status: "missing",
                alarm_id: None,
                raised_after_s: None,
                seen_after_s: None,
                cleared: false,
                raised_again: 0,
            });
            continue;
        };
        for m in &mine {
            used.insert(m.alarm["alarm_id"].as_str().unwrap_or_default().to_owned());
        }
        let id = s.alarm["alarm_id"].as_str().unwrap_or_default().to_owned();
        let raised = s.alarm["raised_at"].as_i64().unwrap_or_default();
        let seen_after =
            (s.first_seen != i64::MAX).then(|| (s.first_seen - step_wall) as f64 / 1000.0);
        let cleared = mine.iter().all(|m| m.alarm["state"] == "cleared");
        let late = matches!((e.within_ms, seen_after), (Some(w), Some(after)) if after * 1000.0 > w as f64);
        let status = if late {
            "late"
        } else if e.clears && !cleared {
            "not_cleared"
        } else {
            "ok"
        };
        expected.push(Outcome {
            rule: e.rule.to_string(),
            device: e.device.clone(),
            equipment_id: e.equipment_id.clone(),
            line: e.line,
            status,
            alarm_id: Some(id),
            raised_after_s: Some((raised - step_device) as f64 / 1000.0),
            seen_after_s: seen_after,
            cleared,
            raised_again: mine.len() - 1,
        });
    }
    let unexpected = sorted
        .iter()
        .filter(|s| !used.contains(s.alarm["alarm_id"].as_str().unwrap_or_default()))
        .filter(|s| s.alarm["raised_at"].as_i64().is_some_and(|t| t <= end))
        .map(|s| AlarmBrief {
            rule: s.alarm["rule"].as_str().unwrap_or_default().to_owned(),
            equipment_id: s.alarm["equipment_id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            device_id: s.alarm["device_id"].as_str().map(str::to_owned),
            alarm_id: s.alarm["alarm_id"].as_str().unwrap_or_default().to_owned(),
            raised_at: s.alarm["raised_at"].as_i64().unwrap_or_default(),
            state: s.alarm["state"].as_str().unwrap_or_default().to_owned(),
            details: s.alarm["details"].clone(),
        })
        .collect();
    Report {
        file: p.scenario.path.display().to_string(),
        name: p.scenario.name.clone(),
        run_tag: p.run_tag.clone(),
        speed: p.scenario.speed,
        devices: p
            .devices
            .iter()
            .map(|d| DeviceBrief {
                name: d.name.clone(),
                device_id: d.device_id.clone(),
                equipment_id: d.equipment_id.clone(),
            })
            .collect(),
        expected,
        unexpected,
        drive,
        maintenance_posted,
    }
}
