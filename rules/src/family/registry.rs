//! Registry-time rules: what the registry says of each piece of equipment
//! (inspection date, last maintenance, status) against the wall clock, run
//! on a schedule rather than per reading.
//!
//! The caller passes the facts of every equipment of this engine's shard at
//! each check. A condition that holds raises one alarm and keeps it without
//! repeats (it is one long occurrence); one that no longer holds (the
//! registry was updated) clears at once. An alarm a person resolved while
//! the condition still held stays resolved until the condition has been
//! false once: nobody is nagged every minute about a date they know of.
//! Equipment for which nothing holds gets no state at all, so a province of
//! 1.75 million pieces of equipment costs memory only for its alarms.
//!
//! `registry.maintenance_unverified` also looks at telemetry: each recent
//! maintenance record of an elevator is a claim, checked against what the
//! store held of the equipment's samples around `done_at` when the record
//! arrived ([`MaintenanceFacts::stored`]) and against every sample heard
//! since, late ones included. Only equipment with recent records keeps
//! that state.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Value, json};
use vigil_model::reading::ElevatorMode;
use vigil_model::{Alarm, Binding, DeviceId, EpochMs, EquipmentId, Payload, Severity, Stream};

use super::filling::CertificateFacts;
use super::{Cx, DevCx, EqIx, Family, Hooks, Local, Msg, Sparse, Streams, rules};
use crate::catalogue::{Clear, Decl, Key, Kind, Lit, Ms, Param, Whole};

rules! {
    pub(crate) enum Rule {
        InspectionDue = Decl {
            id: "registry.inspection_due",
            severity: Severity::Warning,
            description: "Equipment in use whose next periodic inspection is within `days`, the inspection day included (registry, on a schedule).",
            basis: "Safety Law Art. 40: request inspection 1 month before",
            clear_s: Clear::None,
            params: &[Param::new(
                "days",
                Kind::Whole,
                Lit::Whole(30),
                "days before the inspection date the warning starts",
            )],
            ..Decl::BASE
        },
        InspectionOverdue = Decl {
            id: "registry.inspection_overdue",
            description: "Next periodic inspection date passed while the equipment is in use and its devices were heard within flowing_h.",
            basis: "Safety Law Art. 40: uninspected equipment must stop",
            clear_s: Clear::None,
            params: &[Param::new(
                "flowing_h",
                Kind::Hours,
                Lit::Num(24.0),
                "hours within which a device of the equipment must have been heard (in use)",
            )],
            ..Decl::BASE
        },
        MaintenanceOverdue = Decl {
            id: "registry.maintenance_overdue",
            severity: Severity::Major,
            description: "More than `days` whole days since the last maintenance (or never maintained) of an elevator or escalator in use (registry).",
            basis: "Regulation Art. 31; TSG T5002 half-monthly maintenance",
            clear_s: Clear::None,
            params: &[Param::new(
                "days",
                Kind::Whole,
                Lit::Whole(15),
                "days since the last maintenance that are tolerated",
            )],
            // Half-monthly maintenance is the elevator regulation's.
            categories: Some(&["elevator", "escalator"]),
            ..Decl::BASE
        },
        MaintenanceUnverified = Decl {
            id: "registry.maintenance_unverified",
            severity: Severity::Major,
            description: "A maintenance record of an elevator whose device's telemetry shows no `inspection` or `maintenance` mode within ±2 h of done_at (a date: that day ±2 h): recorded, not done.",
            basis: "TSG T5002 (maintenance content); practice: 真到场、真的做",
            clear_s: Clear::None,
            // Only elevator samples report a controller mode.
            categories: Some(&["elevator"]),
            ..Decl::BASE
        },
    }
}

/// The rules judged on the registry's dates alone, each check.
const DATED: [Rule; 3] = [
    Rule::InspectionDue,
    Rule::InspectionOverdue,
    Rule::MaintenanceOverdue,
];

/// How far around `done_at` the telemetry must show the car in
/// `inspection` or `maintenance` mode (rules.md: ±2 h).
pub const UNVERIFIED_WINDOW_MS: EpochMs = 2 * 3_600_000;

const DUE_DAYS: Whole = Whole::of(Rule::InspectionDue.decl(), "days");
const FLOWING: Ms = Ms::of(Rule::InspectionOverdue.decl(), "flowing_h");
const MAINTENANCE_DAYS: Whole = Whole::of(Rule::MaintenanceOverdue.decl(), "days");

const DAY_MS: i64 = 86_400_000;

/// What the registry says of one piece of equipment, with its dates as the
/// epoch ms of the start of that day in the registry's local time.
#[derive(Debug, Clone, PartialEq)]
pub struct RegistryFacts {
    pub binding: Binding,
    /// Status `in_use` (not `stopped` or `scrapped`).
    pub in_use: bool,
    /// Start of the day of the next periodic inspection, and that day as
    /// the registry writes it (`YYYY-MM-DD`, shown in the alarm).
    pub next_inspection: EpochMs,
    pub next_inspection_date: String,
    /// Start of the day of the last maintenance that counts (a record the
    /// owner confirmed, or the registry's own date), if any, and that day.
    pub last_maintenance: Option<(EpochMs, String)>,
    /// The `done_at` of the latest record after it that still waits for
    /// the owner's confirmation (shown in the overdue alarm).
    pub awaiting_confirmation: Option<String>,
    /// Maintenance records recent enough to be judged (the caller chooses
    /// how recent): `registry.maintenance_unverified` and, for the
    /// workers' certificates, `registry.certificate_expired`.
    pub maintenance: Vec<MaintenanceFacts>,
}

/// One maintenance record as the registry-time rules see it.
#[derive(Debug, Clone, PartialEq)]
pub struct MaintenanceFacts {
    /// `half_month`, `quarter`, `half_year` or `year`.
    pub kind: String,
    /// As the registry has it: a date or an RFC 3339 timestamp.
    pub done_at: String,
    /// When it was done: the timestamp, or the start of that local day.
    pub at: EpochMs,
    /// `done_at` is a date without a time of day.
    pub date_only: bool,
    pub person_id: String,
    /// The worker's `elevator_maintenance` certificates.
    pub certificates: Vec<CertificateFacts>,
    pub confirmed_by_owner: bool,
    /// The equipment's stored elevator samples within [`Self::window`]
    /// when the record was looked up; `None`: not looked up (yet).
    pub stored: Option<Telemetry>,
}

impl MaintenanceFacts {
    /// The telemetry that can verify the record: ±2 h around `done_at`,
    /// and for a date the whole local day ±2 h.
    pub fn window(&self) -> (EpochMs, EpochMs) {
        let end = if self.date_only {
            self.at + DAY_MS
        } else {
            self.at
        };
        (self.at - UNVERIFIED_WINDOW_MS, end + UNVERIFIED_WINDOW_MS)
    }

    /// The registry's key of the record (with the equipment).
    pub fn key(&self) -> String {
        format!("{} {}", self.kind, self.done_at)
    }
}

/// Elevator samples of one equipment within a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Telemetry {
    pub samples: u64,
    /// Of them, in `inspection` or `maintenance` mode.
    pub service: u64,
    /// A device that sent them.
    pub device: Option<String>,
}

/// The registry-time rules, the alarms people resolved while their
/// condition still held, and the maintenance claims being verified.
#[derive(Default)]
pub(crate) struct Registry {
    quiet: HashSet<(EquipmentId, Local)>,
    claims: Sparse<Claims>,
}

/// The recent maintenance records of one elevator, by [`MaintenanceFacts::key`].
#[derive(Debug, Default)]
struct Claims {
    by_key: BTreeMap<String, Claim>,
    /// Keys an open alarm listed before a restart.
    restored: HashSet<String>,
}

#[derive(Debug)]
struct Claim {
    kind: String,
    done_at: String,
    person_id: String,
    window: (EpochMs, EpochMs),
    /// Samples seen in the window (stored when looked up, then live) and
    /// those in a service mode. Only zero or not matters, so a sample
    /// counted by both is harmless.
    samples: u64,
    service: u64,
    stored_merged: bool,
    device: Option<DeviceId>,
    state: Verdict,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Open,
    /// Listed in the open alarm.
    Unverified,
    /// A person resolved the alarm that listed it.
    Handled,
}

impl Family for Registry {
    fn name(&self) -> &'static str {
        "registry"
    }

    fn rules(&self) -> &'static [Decl] {
        Rule::DECLS
    }

    fn hooks(&self) -> Hooks {
        Hooks {
            heard: Streams::of(&[Stream::Elevator]),
            ..Hooks::NONE
        }
    }

    /// Every registry-time rule over one equipment's `facts` at wall time
    /// `cx.now`; without facts (gone from the registry or this shard) its
    /// alarms end.
    fn on_registry(
        &mut self,
        cx: &mut Cx<'_>,
        facts: Option<&RegistryFacts>,
        heard: Option<EpochMs>,
    ) {
        let id = cx.eq.binding.equipment_id.clone();
        let Some(f) = facts else {
            for &rule in Rule::ALL {
                cx.clear(rule, cx.now);
                self.quiet.remove(&(id.clone(), rule.into()));
            }
            self.claims.remove(&cx.eq.ix());
            return;
        };
        self.verify(cx, &f.maintenance);
        let now = cx.now;
        let tuning = cx.tuning();
        for rule in DATED {
            let p = tuning.of(rule);
            let holds = p.enabled
                && f.in_use
                && match rule {
                    Rule::InspectionDue => {
                        now >= f.next_inspection - i64::from(p.whole(DUE_DAYS)) * DAY_MS
                            && now < f.next_inspection + DAY_MS
                    }
                    Rule::InspectionOverdue => {
                        now >= f.next_inspection + DAY_MS
                            && heard.is_some_and(|t| now.saturating_sub(t) <= p.ms(FLOWING))
                    }
                    Rule::MaintenanceOverdue => {
                        f.last_maintenance.as_ref().is_none_or(|(day, _)| {
                            now >= day + (i64::from(p.whole(MAINTENANCE_DAYS)) + 1) * DAY_MS
                        })
                    }
                    Rule::MaintenanceUnverified => false,
                };
            let key = (id.clone(), rule.into());
            if !holds {
                self.quiet.remove(&key);
                cx.clear(rule, now);
                continue;
            }
            if cx.is_open(rule) || self.quiet.contains(&key) {
                continue;
            }
            let details = match rule {
                Rule::InspectionDue => json!({
                    "next_inspection": f.next_inspection_date,
                    // Calendar days: the inspection day itself is 0 days left.
                    "days_left": (f.next_inspection - now + DAY_MS - 1).div_euclid(DAY_MS),
                }),
                Rule::InspectionOverdue => json!({
                    "next_inspection": f.next_inspection_date,
                    "days_overdue": (now - f.next_inspection).div_euclid(DAY_MS),
                }),
                Rule::MaintenanceOverdue => json!({
                    "last_maintenance": f.last_maintenance.as_ref().map(|(_, d)| d),
                    "days_since": f.last_maintenance.as_ref().map(|(t, _)| (now - t).div_euclid(DAY_MS)),
                    "max_days": p.whole(MAINTENANCE_DAYS),
                    "awaiting_confirmation": f.awaiting_confirmation,
                }),
                Rule::MaintenanceUnverified => Value::Null,
            };
            // No device: the registry raised it.
            cx.raise(rule, p.severity, now, details);
        }
    }

    fn holds_state(&self, eq: EqIx) -> bool {
        self.claims.contains_key(&eq)
    }

    /// An elevator sample, late or not, inside a claim's window is
    /// evidence for it.
    fn on_heard(&mut self, cx: &mut DevCx<'_>, msg: &Msg<'_>) {
        let Payload::Elevator(sample) = msg.payload else {
            return;
        };
        let Some(claims) = self.claims.get_mut(&cx.eq.ix()) else {
            return;
        };
        let service = matches!(
            sample.mode,
            ElevatorMode::Inspection | ElevatorMode::Maintenance
        );
        let mut changed = false;
        for c in claims.by_key.values_mut() {
            if (c.window.0..=c.window.1).contains(&msg.ts) {
                changed |= c.samples == 0 || (service && c.service == 0);
                c.samples += 1;
                c.service += u64::from(service);
                c.device.get_or_insert_with(|| cx.dev.id.clone());
            }
        }
        if changed {
            self.judge(cx);
        }
    }

    fn on_resolve(&mut self, cx: &mut Cx<'_>, rule: Local, _alarm: &Alarm) {
        if rule == Rule::MaintenanceUnverified.into() {
            // The listed records are handled; later ones are judged anew.
            if let Some(claims) = self.claims.get_mut(&cx.eq.ix()) {
                for c in claims.by_key.values_mut() {
                    if c.state == Verdict::Unverified {
                        c.state = Verdict::Handled;
                    }
                }
            }
            return;
        }
        self.quiet
            .insert((cx.eq.binding.equipment_id.clone(), rule));
    }

    /// A restored unverified alarm: the records it lists stay listed.
    fn on_restore(&mut self, cx: &mut Cx<'_>, key: Key, versions: &[Alarm]) {
        let Some(latest) = versions.last().filter(|a| a.state.is_open()) else {
            return;
        };
        if cx.local(key, Rule::ALL.len()) != Some(Rule::MaintenanceUnverified.into()) {
            return;
        }
        let claims = self.claims.entry(cx.eq.ix()).or_default();
        for r in records(latest) {
            let text = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or_default();
            claims
                .restored
                .insert(format!("{} {}", text("kind"), text("done_at")));
        }
    }
}

fn records(alarm: &Alarm) -> impl Iterator<Item = &Value> {
    alarm
        .details
        .get("records")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
}

impl Registry {
    /// Takes the equipment's recent maintenance records as claims (with
    /// what the store held of their windows) and judges them.
    fn verify(&mut self, cx: &mut Cx<'_>, records: &[MaintenanceFacts]) {
        let rule = Rule::MaintenanceUnverified;
        let ix = cx.eq.ix();
        if !cx.tuning().of(rule).enabled {
            self.claims.remove(&ix);
            cx.clear(rule, cx.now);
            return;
        }
        if records.is_empty() && !self.claims.contains_key(&ix) {
            return;
        }
        let claims = self.claims.entry(ix).or_default();
        let keys: HashSet<String> = records.iter().map(MaintenanceFacts::key).collect();
        // Aged out of the caller's horizon: forgotten, unless listed.
        claims
            .by_key
            .retain(|k, c| keys.contains(k) || c.state == Verdict::Unverified);
        for m in records {
            let key = m.key();
            let restored = claims.restored.remove(&key);
            let c = claims.by_key.entry(key).or_insert_with(|| Claim {
                kind: m.kind.clone(),
                done_at: m.done_at.clone(),
                person_id: m.person_id.clone(),
                window: m.window(),
                samples: 0,
                service: 0,
                stored_merged: false,
                device: None,
                state: if restored {
                    Verdict::Unverified
                } else {
                    Verdict::Open
                },
            });
            if let (false, Some(t)) = (c.stored_merged, &m.stored) {
                c.stored_merged = true;
                c.samples += t.samples;
                c.service += t.service;
                if c.device.is_none() {
                    c.device = t.device.as_deref().and_then(|d| DeviceId::new(d).ok());
                }
            }
        }
        if claims.by_key.is_empty() && claims.restored.is_empty() {
            self.claims.remove(&ix);
        }
        self.judge(cx);
    }

    /// Lists every claim whose window has passed (wall clock) with samples
    /// in it and none in a service mode; lets go of listed ones that late
    /// samples verified. One alarm per equipment lists them all; each newly
    /// listed record is an occurrence (count + 1).
    fn judge(&mut self, cx: &mut Cx<'_>) {
        let rule = Rule::MaintenanceUnverified;
        let Some(claims) = self.claims.get_mut(&cx.eq.ix()) else {
            return;
        };
        let now = cx.now;
        let mut newly = None;
        let mut verified = false;
        for c in claims.by_key.values_mut() {
            match c.state {
                // Not before the store's part of the window is known.
                Verdict::Open
                    if c.stored_merged && now >= c.window.1 && c.samples > 0 && c.service == 0 =>
                {
                    c.state = Verdict::Unverified;
                    newly = Some(c.device.clone());
                }
                Verdict::Unverified if c.service > 0 => {
                    c.state = Verdict::Open;
                    verified = true;
                }
                _ => {}
            }
        }
        if newly.is_none() && !verified {
            return;
        }
        let listed: Vec<Value> = claims
            .by_key
            .values()
            .filter(|c| c.state == Verdict::Unverified)
            .map(|c| {
                json!({
                    "kind": c.kind,
                    "done_at": c.done_at,
                    "person_id": c.person_id,
                    "window": [c.window.0, c.window.1],
                    "samples": c.samples,
                    "device_id": c.device.as_ref().map(DeviceId::as_str),
                })
            })
            .collect();
        let tuning = cx.tuning();
        let p = tuning.of(rule);
        if listed.is_empty() {
            cx.clear(rule, now);
            return;
        }
        let details = json!({ "records": listed, "window_h": UNVERIFIED_WINDOW_MS / 3_600_000 });
        match newly {
            Some(Some(device)) => cx.fire_by(rule, &device, p.severity, now, details),
            Some(None) if !cx.is_open(rule) => cx.raise(rule, p.severity, now, details),
            _ => cx.update(rule, p.severity, now, details),
        }
    }
}
