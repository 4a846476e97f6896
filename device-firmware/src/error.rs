//! The crate's one error type.

use std::path::PathBuf;

/// What went wrong in the gateway, with where.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// A register map or gateway config with a mistake: file, line, column.
    #[error("{file}:{line}:{column}: {message}")]
    Config {
        file: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },

    /// A file of the gateway (config, map, certificate, spool) could not be
    /// read or written.
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The TLS material (certificate, key, CA) is not usable.
    #[error("TLS: {0}")]
    Tls(String),

    /// The engine's HTTP API refused or failed a request (the emulator's
    /// registry import).
    #[error("engine: {0}")]
    Engine(String),

    /// A Modbus request failed: a transport error or timeout (`exception`
    /// is `None`) or the controller's exception response.
    #[error("Modbus {op} at {controller}: {message}")]
    Modbus {
        controller: String,
        op: String,
        exception: Option<String>,
        message: String,
    },
}

impl EdgeError {
    pub(crate) fn io(what: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        EdgeError::Io {
            what,
            path: path.into(),
            source,
        }
    }
}

/// Line and column (1-based) of byte `offset` in `text`.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}
