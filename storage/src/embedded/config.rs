//! Settings of the embedded store: plain data, defaults for a single node.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Where the embedded store keeps its files and how it batches work.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmbeddedConfig {
    /// Root directory: `wal/` (write-ahead log) and `tables/` (Parquet).
    pub dir: PathBuf,
    /// Records queued but not yet committed; `write` waits while it is full.
    pub queue_capacity: usize,
    /// Records per WAL frame (one `fsync`) at most.
    pub group_commit_max: usize,
    /// Least time between the starts of two commits: a write that comes
    /// sooner waits for it (with what comes meanwhile), so that under load
    /// a commit takes more records per `fsync`. A write after a quiet
    /// spell commits at once.
    #[serde(rename = "commit_interval_ms", deserialize_with = "milliseconds")]
    pub commit_interval: Duration,
    /// Rows held in memory before they are written to Parquet.
    pub flush_rows: usize,
    /// Age of the oldest row in memory before it is written to Parquet.
    #[serde(rename = "flush_interval_s", deserialize_with = "seconds")]
    pub flush_interval: Duration,
    /// What people's SQL may use (threads, memory, concurrency, shape).
    pub sql: crate::SqlLimits,
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("vigil-data"),
            queue_capacity: 16_384,
            group_commit_max: 4_096,
            commit_interval: Duration::from_millis(1),
            flush_rows: 250_000,
            flush_interval: Duration::from_secs(300),
            sql: crate::SqlLimits::default(),
        }
    }
}

impl EmbeddedConfig {
    /// A config with defaults rooted at `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self {
            dir: dir.into(),
            ..Self::default()
        }
    }

    /// Zero sizes would stall the writer; clamp them to something that works.
    pub(crate) fn normalized(mut self) -> Self {
        self.queue_capacity = self.queue_capacity.clamp(1, u32::MAX as usize);
        self.group_commit_max = self.group_commit_max.max(1);
        self.flush_rows = self.flush_rows.max(1);
        if self.flush_interval.is_zero() {
            self.flush_interval = Duration::from_secs(1);
        }
        self
    }
}

fn milliseconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let ms = f64::deserialize(d)?;
    Duration::try_from_secs_f64(ms / 1000.0).map_err(serde::de::Error::custom)
}

fn seconds<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let secs = f64::deserialize(d)?;
    Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_flush_interval_in_seconds_and_defaults_the_rest() {
        let c: EmbeddedConfig =
            serde_json::from_str(r#"{"dir": "/var/lib/vigil", "flush_interval_s": 30}"#).unwrap();
        assert_eq!(c.dir, PathBuf::from("/var/lib/vigil"));
        assert_eq!(c.flush_interval, Duration::from_secs(30));
        assert_eq!(c.queue_capacity, 16_384);
        assert_eq!(c.group_commit_max, 4_096);
        assert_eq!(c.flush_rows, 250_000);
        assert_eq!(c.commit_interval, Duration::from_millis(1));
        let c: EmbeddedConfig = serde_json::from_str(r#"{"commit_interval_ms": 0.5}"#).unwrap();
        assert_eq!(c.commit_interval, Duration::from_micros(500));
        assert!(serde_json::from_str::<EmbeddedConfig>(r#"{"flush_interval_s": -1}"#).is_err());
        assert!(serde_json::from_str::<EmbeddedConfig>(r#"{"flush_rows_typo": 1}"#).is_err());
    }
}
