use std::net::SocketAddr;

/// Why ingest could not start, publish or stop cleanly.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("Ingest::start must be called from inside a tokio runtime")]
    NoRuntime,
    #[error(
        "refusing a plain-TCP MQTT listener on non-loopback address {addr}: device secrets would cross the network \
         unencrypted; bind to 127.0.0.1 or set allow_public_plain = true"
    )]
    PublicPlainListener { addr: SocketAddr },
    #[error("cannot listen for MQTT on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the embedded MQTT broker failed ({stage}): {why}")]
    Broker { stage: &'static str, why: String },
    #[error("cannot start thread {name}: {source}")]
    Thread {
        name: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot register metric {name}: {source}")]
    Metrics {
        name: &'static str,
        #[source]
        source: prometheus::Error,
    },
    #[error("cannot publish on {topic}: {why}")]
    Publish { topic: String, why: String },
    #[error("ingest did not stop cleanly ({stage}): {why}")]
    Shutdown { stage: &'static str, why: String },
    #[error("TLS or certificate problem ({what}): {why}")]
    Tls { what: &'static str, why: String },
    #[error("cannot read or write the device CA file {path}: {source}")]
    CaFile {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}
