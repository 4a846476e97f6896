//! Vigil's rule engine: pure evaluation of readings into alarm changes, with
//! injected time.
//!
//! Accepted readings (with their registry [`DeviceContext`]), clock ticks,
//! the registry's facts and people's actions come in; new versions of
//! [`Alarm`]s come out. Nothing here does I/O or reads a clock: the caller
//! passes `now`, shards engines by equipment, publishes and stores what
//! comes back. The engine notes each device's place in it in the
//! device's context ([`DeviceContext`]`::engine_slot`), so a caller that
//! hands the same context again saves the lookup by device id.
//!
//! ```text
//!  Reading + DeviceContext ─▶ on_reading, on_filling ─┐
//!  wall clock ──────────────▶ tick ───────────────────┤  RuleEngine (engine.rs): devices and
//!  RegistryFacts ───────────▶ registry_check ─────────┤  equipment by index, the alarm book,
//!  person ──────────────────▶ acknowledge, resolve ───┤  parameters resolved per category
//!  stored alarms, last seen ▶ restore, last_heard ────┘  (RuleConfig ─▶ Params, typed)
//!                                                          │ every hook to each family in turn,
//!                                                          ▼ with a Cx (book, equipment, device, time)
//!    family/: elevator · controller · frequent · rides · daily · video · liveness
//!             filling · registry · anomaly · defined (rule files)
//!                                                          │ fire, update, release, clear
//!                                                          ▼
//!                    Vec<Alarm>: raised, repeated, updated, cleared; open_alarms()
//! ```
//!
//! # Modules
//! - `family.rs`: the `Family` trait every group of rules implements (on a
//!   message, on a tick, on resolve, on device release, …) with the hooks
//!   each family says it implements (the engine calls no others), the
//!   context its hooks get, and the list of families in calling order.
//!   `family/*.rs`: one file per family, holding its rules' declarations,
//!   their evaluation and the family's own state per device and equipment.
//! - `catalogue.rs`: what a rule declaration is (id, severity, description,
//!   basis, parameters with kind, meaning and defaults per category), the
//!   catalogue of every built-in rule ([`catalogue()`], `vigil rules list`)
//!   and the resolved, typed parameters the engine reads.
//!   `catalogue/docs.rs`: the test that generates docs/rules.md's tables.
//! - `config.rs`: [`RuleConfig`], the overrides per rule, category and
//!   equipment, and rule files laid over it, checked with file:line:column
//!   (`locate.rs`).
//! - `define.rs`: rules a configuration defines (`[rule."site.x"]` with a
//!   `when`), and the stream fields conditions read; `expr.rs` + `expr/`:
//!   the condition language (lex, parse, eval); `builtin.rs`: the built-in
//!   sample rules' conditions, compiled from `catalogue.toml`.
//! - `engine.rs`: [`RuleEngine`]; `engine/book.rs` the alarm lifecycle,
//!   `engine/state.rs` what every family shares of a device and a piece of
//!   equipment, `engine/restore.rs` the restart, `engine/escalation.rs`
//!   unacknowledged alarms.
//! - [`anomaly`]: the detector the anomaly rules feed; `error.rs` the
//!   errors.
//!
//! # Adding a built-in rule
//! One place: its family's file, `family/<family>.rs`. Add a variant to the
//! family's `rules!` declaration with its `Decl` (id, severity, description,
//! basis, parameters) and evaluate it in the family's hooks; a sample rule without memory may instead write its
//! condition in `catalogue.toml`. The configuration checks, `vigil rules
//! list` and docs/rules.md's tables (`VIGIL_UPDATE_DOCS=1 cargo test -p
//! vigil-rules docs_rules_md`) follow from the declaration. A new family is
//! a new file in `family/` and a line in `family::all`.
//!
//! # Semantics
//! - **Time.** A rule's `for` and clear periods run on device time
//!   (`reading.ts`), so replaying stored history raises the same alarms, at
//!   the same `raised_at`, as live evaluation: `raised_at` is the moment
//!   the condition qualified (start + `for`), `cleared_at` the moment its
//!   clear period ended, not when the engine noticed. `tick(now)` advances
//!   a silent device's clock to `last_ts + (now − last_received)` and
//!   re-evaluates its last sample, so a pending `for` fires on time.
//! - **Order.** A reading older than the latest `ts` already evaluated on
//!   its stream (elevator samples, events, ride samples, video events) is
//!   not evaluated: its moment has
//!   passed and evaluating it would rewind the rules' state. It still proves
//!   the device alive. Exception: a reading with a *newer* `seq` whose `ts`
//!   is more than 1 s behind the device's latest is a device clock that
//!   stepped back (reboot, NTP): it is evaluated and running periods are
//!   re-based onto the new clock.
//! - **One alarm per (equipment, rule).** A rule *fires* when its
//!   condition has held for `for`. The first firing raises (`count` 1,
//!   `version` 1). Firing again while the alarm is open — a new true run
//!   after the condition went false for less than the clear period — is a
//!   repeat: `count` + 1, `updated_at`, `details`, `version` + 1, same
//!   `alarm_id`. A condition that stays true is one occurrence. The alarm
//!   clears when the condition has been false for `clear_s` (10 s).
//!   Several devices of one equipment share the alarm; it clears when none
//!   of them holds it.
//! - **People.** `acknowledge`: active → acknowledged; acknowledging again
//!   returns the alarm unchanged (same version). A repeat keeps the state
//!   acknowledged (count and `updated_at` show the recurrence). `resolve`:
//!   cleared with a note (and acknowledged if nobody had). A condition still
//!   true after a resolve raises a *fresh* alarm (new id) once it qualifies
//!   again from the next reading — a person cannot make a live hazard
//!   disappear; `frequent_faults` waits for a new fault occurrence,
//!   `device.offline` for the device to be heard from and fall silent again,
//!   `controller_fault` for the next active code.
//! - **Restore.** Restored open alarms are the open alarms again. The first
//!   evaluation of that equipment adopts each one: a condition still true
//!   continues it (no repeat, no duplicate), a false one starts its clear
//!   period. Later repeats keep counting from the restored `count`.
//!   `last_heard` tells when each device was last heard, so liveness too
//!   carries on across the restart.
//! - **Config changes.** Take effect at the next evaluation; open alarms
//!   keep their severity until their next change; a disabled rule's open
//!   alarm clears at the next tick.
//!
//! `docs/rules.md` describes every rule, default and parameter; its rule
//! tables are generated from the declarations.

pub mod anomaly;
mod builtin;
mod catalogue;
mod config;
mod define;
mod engine;
mod error;
mod expr;
mod family;
mod locate;

pub use catalogue::{ParamInfo, RuleInfo, catalogue};
pub use config::{DefinedRule, RuleConfig, RuleFileError};
pub use engine::RuleEngine;
pub use error::{AlarmOpError, ConfigError};
pub use family::{
    CertificateFacts, CylinderFacts, FillingFacts, MaintenanceFacts, OperatorFacts, RegistryFacts,
    Telemetry, UNVERIFIED_WINDOW_MS,
};

// Re-exported so callers need not name the model crate for these.
pub use vigil_model::{Alarm, DeviceContext, EpochMs, Reading};
