//! What can go wrong: a person acting on an alarm, or a configuration.

use vigil_model::AlarmId;

/// Why `acknowledge` or `resolve` did nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AlarmOpError {
    /// This engine (shard) has no open alarm with that id and does not
    /// remember clearing one.
    #[error("no open alarm {0}")]
    NotFound(AlarmId),
    /// The alarm is already cleared (by its rule or by a person).
    #[error("alarm {0} is already cleared")]
    AlreadyCleared(AlarmId),
}

/// A rule configuration the engine refuses; each names the table and key.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ConfigError {
    #[error("rule configuration is not valid TOML: {message}")]
    Parse { message: String },
    #[error("[{scope}]: unknown rule {rule:?}; the rules are: {known}")]
    UnknownRule {
        scope: String,
        rule: String,
        known: String,
    },
    #[error("[{scope}]: rule {rule} has no parameter {key:?}; its parameters are: {allowed}")]
    UnknownParam {
        scope: String,
        rule: String,
        key: String,
        allowed: String,
    },
    #[error("[{scope}]: {rule} parameter {key:?} must be {expected}, got {got}")]
    BadValue {
        scope: String,
        rule: String,
        key: String,
        expected: &'static str,
        got: String,
    },
    #[error("[category.{category}]: unknown equipment category; the categories are: {known}")]
    UnknownCategory { category: String, known: String },
    #[error("[equipment.{equipment:?}]: {reason}")]
    BadEquipment { equipment: String, reason: String },
    #[error("[{scope}]{}: {message}", if key.is_empty() { String::new() } else { format!(" {key}") })]
    BadDefinition {
        scope: String,
        key: String,
        message: String,
    },
    #[error(
        "[rule.\"{rule}\"]: {rule} is built in and its condition cannot be replaced; tune its parameters, or set `enabled = false` and define a rule of your own under another id"
    )]
    RedefinedBuiltin { rule: String },
}
