//! The crate's one error type.

/// Why a simulation or load run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// `secrets` has no entry for a device of the fleet: it could never log in.
    #[error("no secret for device {device}; pass the secrets the registry import answered")]
    MissingSecret { device: String },

    /// A load run asked for more devices than there are secrets for.
    #[error("load run wants {wanted} devices but only {available} have secrets")]
    NotEnoughDevices { wanted: usize, available: usize },

    /// A configuration value is out of its range.
    #[error("invalid {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },

    /// A scenario file with a mistake: where it is and what is wrong.
    #[error("{file}:{line}:{column}: {message}")]
    Scenario {
        file: String,
        line: usize,
        column: usize,
        message: String,
    },

    /// A scenario file that cannot be read.
    #[error("cannot read {file}: {message}")]
    ScenarioIo { file: String, message: String },

    /// A device's task ended abnormally (a panic in the simulator itself).
    #[error("simulated device task failed: {message}")]
    TaskFailed { message: String },
}
