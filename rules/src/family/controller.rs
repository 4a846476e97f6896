//! `elevator.controller_fault`: the fault codes an elevator controller
//! reports itself (`event` stream). One alarm per equipment lists every
//! active code; a code becoming active raises or repeats it, the last one
//! going inactive clears it after `clear_s` (at once by default).

use serde_json::{Map, Value, json};
use vigil_model::reading::ControllerEvent;
use vigil_model::{Alarm, EpochMs, Payload, Severity, Stream};

use super::{
    Cx, DevCx, DeviceTick, Family, Few, Hooks, Local, Msg, SmallMap, Streams, TickDue, rules,
};
use crate::catalogue::{Clear, Codes, Decl, Key, Kind, Lit, Param, Params};

rules! {
    pub(crate) enum Rule {
        ControllerFault = Decl {
            id: "elevator.controller_fault",
            severity: Severity::Major,
            description: "A fault code the controller reports itself; one alarm lists every active code.",
            basis: "controller's own code",
            severity_meaning: "severity of codes missing from `codes`",
            clear_s: Clear::own(0.0, "seconds without any active code before the alarm clears"),
            params: &[Param::new(
                "codes",
                Kind::Codes,
                Lit::Codes(DEFAULT_CODES),
                "controller code → severity table",
            )],
            counts_as_fault: true,
            ..Decl::BASE
        },
    }
}

const CODES: Codes = Codes::of(Rule::ControllerFault.decl(), "codes");

/// The default controller code table: the fault and event numbers of the
/// GB/T 24476 lists that rules.md cites, with the severity of the matching
/// built-in rule. Codes not listed get the rule's `severity` (major).
const DEFAULT_CODES: &[(&str, Severity, &str)] = &[
    (
        "01",
        Severity::Critical,
        "safety circuit open (安全回路断路)",
    ),
    ("02", Severity::Minor, "door fails to close (关门故障)"),
    ("03", Severity::Minor, "door fails to open (开门故障)"),
    (
        "04",
        Severity::Major,
        "car stopped outside the unlocking zone (非平层停梯)",
    ),
    (
        "05",
        Severity::Critical,
        "unintended car movement (轿厢意外移动)",
    ),
    ("06", Severity::Major, "motor run-time limiter tripped"),
    ("07", Severity::Minor, "floor position lost"),
    ("08", Severity::Major, "other fault preventing restart"),
    ("09", Severity::Critical, "overtravel at the top (冲顶)"),
    ("10", Severity::Critical, "overtravel at the bottom (蹲底)"),
    ("41", Severity::Major, "power failure (停电)"),
];

/// The active codes of each equipment.
#[derive(Default)]
pub(crate) struct Controller {
    equipment: Few<Active>,
}

#[derive(Debug, Default)]
struct Active {
    codes: SmallMap<ActiveCode>,
    /// Since when no code is active while the alarm is open.
    clear_since: Option<EpochMs>,
}

/// A controller code that is active.
#[derive(Debug, Clone)]
struct ActiveCode {
    text: Option<String>,
    severity: Severity,
    since: EpochMs,
}

impl Family for Controller {
    fn name(&self) -> &'static str {
        "controller"
    }

    fn rules(&self) -> &'static [Decl] {
        Rule::DECLS
    }

    fn hooks(&self) -> Hooks {
        Hooks {
            message: Streams::of(&[Stream::Event]),
            device_tick: true,
            ..Hooks::NONE
        }
    }

    fn on_message(&mut self, cx: &mut DevCx<'_>, msg: &Msg<'_>) {
        if let Payload::Event(ev) = msg.payload {
            self.timer(cx, msg.ts);
            // A ride's daily-check record is not a fault (ride.no_daily_check).
            if ev.code != vigil_model::reading::DAILY_CHECK_CODE {
                self.on_event(cx, ev, msg.ts);
            }
        }
    }

    fn on_device_tick(&mut self, cx: &mut DevCx<'_>, tick: &DeviceTick) {
        self.timer(cx, tick.device_now);
    }

    /// The timer acts where codes or a clear period are kept, or the alarm is open.
    fn tick_due(&self, base: usize, due: &mut TickDue) -> bool {
        due.equipment.union_with(self.equipment.kept());
        due.open(base, Rule::ControllerFault);
        true
    }

    fn on_resolve(&mut self, cx: &mut Cx<'_>, _rule: Local, _alarm: &Alarm) {
        // The next active code raises a new alarm.
        self.equipment.reset(cx.eq.ix());
    }

    fn on_restore(&mut self, cx: &mut Cx<'_>, key: Key, versions: &[Alarm]) {
        let Some(latest) = versions.last().filter(|a| a.state.is_open()) else {
            return;
        };
        if cx.local(key, Rule::ALL.len()).is_none() {
            return;
        }
        let active = self.equipment.at(cx.eq.ix());
        active.codes.clear();
        for c in latest
            .details
            .get("codes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(code) = c.get("code").and_then(Value::as_str) else {
                continue;
            };
            let severity = c
                .get("severity")
                .and_then(Value::as_str)
                .and_then(Severity::parse)
                .unwrap_or(latest.severity);
            let since = c
                .get("since")
                .and_then(Value::as_i64)
                .unwrap_or(latest.raised_at);
            let text = c.get("text").and_then(Value::as_str).map(str::to_owned);
            active.codes.insert(
                code,
                ActiveCode {
                    text,
                    severity,
                    since,
                },
            );
        }
    }
}

impl Controller {
    /// An `event` payload at device time `t`: a code becoming active raises
    /// (or repeats) the one controller-fault alarm; the last code going
    /// inactive clears it after `clear_s` (immediately by default).
    fn on_event(&mut self, cx: &mut DevCx<'_>, ev: &ControllerEvent, t: EpochMs) {
        let rule = Rule::ControllerFault;
        let tuning = cx.tuning();
        let p = tuning.of(rule);
        if !p.enabled {
            self.disable(cx, t);
            return;
        }
        let active = self.equipment.at(cx.eq.ix());
        if ev.active {
            if active.codes.contains_key(&ev.code) {
                // Controllers repeat an active code; it is one occurrence.
                return;
            }
            let severity = code_severity(p, &ev.code);
            active.codes.insert(
                &ev.code,
                ActiveCode {
                    text: ev.text.clone(),
                    severity,
                    since: t,
                },
            );
            active.clear_since = None;
            let details = active.details();
            cx.fire(rule, active.severity(severity), t, details);
            cx.count_fault(rule, severity, t);
        } else {
            let removed = active.codes.remove(&ev.code).is_some();
            if !cx.is_open(rule) {
                return;
            }
            if !active.codes.is_empty() {
                if removed {
                    let details = active.details();
                    cx.update(rule, active.severity(Severity::Warning), t, details);
                }
            } else if p.clear_ms == 0 {
                cx.clear(rule, t);
            } else if active.clear_since.is_none() {
                active.clear_since = Some(t);
            }
        }
    }

    /// Clears the alarm once no code has been active for its clear period
    /// (only when `clear_s` > 0), or when the rule is disabled.
    fn timer(&mut self, cx: &mut Cx<'_>, t: EpochMs) {
        let rule = Rule::ControllerFault;
        let idle = (self.equipment.get(cx.eq.ix()))
            .is_none_or(|a| a.codes.is_empty() && a.clear_since.is_none());
        if idle && !cx.is_open(rule) {
            // No code, no alarm: enabled or not, nothing to do.
            return;
        }
        let tuning = cx.tuning();
        let p = tuning.of(rule);
        if !p.enabled {
            self.disable(cx, t);
            return;
        }
        let Some(active) = self.equipment.get_mut(cx.eq.ix()) else {
            return;
        };
        if !cx.is_open(rule) {
            active.clear_since = None;
            return;
        }
        if let Some(since) = active.clear_since
            && active.codes.is_empty()
            && t.saturating_sub(since) >= p.clear_ms
        {
            active.clear_since = None;
            cx.clear(rule, since + p.clear_ms);
        }
    }

    fn disable(&mut self, cx: &mut Cx<'_>, t: EpochMs) {
        self.equipment.reset(cx.eq.ix());
        cx.clear(Rule::ControllerFault, t);
    }
}

impl Active {
    /// The alarm's severity: the highest of its active codes.
    fn severity(&self, at_least: Severity) -> Severity {
        self.codes
            .values()
            .map(|c| c.severity)
            .fold(at_least, Severity::max)
    }

    fn details(&self) -> Value {
        let codes: Vec<Value> = self
            .codes
            .iter()
            .map(|(code, c)| {
                let mut m = Map::new();
                m.insert("code".into(), json!(code));
                if let Some(text) = &c.text {
                    m.insert("text".into(), json!(text));
                }
                m.insert("severity".into(), json!(c.severity.as_str()));
                m.insert("since".into(), json!(c.since));
                Value::Object(m)
            })
            .collect();
        json!({ "codes": codes })
    }
}

/// Severity of a controller code: exact match first, then the same number
/// (`"1"` and `"01"` are one code), else the rule's severity.
fn code_severity(p: &Params, code: &str) -> Severity {
    let codes = p.codes(CODES);
    if let Some(sev) = codes.get(code) {
        return *sev;
    }
    let number = |c: &str| c.trim_start_matches('0').to_owned();
    if !code.is_empty() && code.bytes().all(|b| b.is_ascii_digit()) {
        let wanted = number(code);
        if let Some((_, sev)) = codes
            .iter()
            .find(|(c, _)| c.bytes().all(|b| b.is_ascii_digit()) && number(c) == wanted)
        {
            return *sev;
        }
    }
    p.severity
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controller_codes_match_by_number() {
        let p = Rule::ControllerFault.decl().defaults("elevator", None);
        assert_eq!(code_severity(&p, "01"), Severity::Critical);
        assert_eq!(code_severity(&p, "1"), Severity::Critical);
        assert_eq!(code_severity(&p, "E99"), Severity::Major);
        assert_eq!(code_severity(&p, ""), Severity::Major);
    }
}
