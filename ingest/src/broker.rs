//! The embedded rumqttd: router, the in-process ingest link, and the plain
//! v4 listener with device authentication.
//!
//! We assemble the pieces rumqttd's `Broker` would (router thread, server)
//! ourselves so that the listener runs on a runtime we own: dropping it on
//! shutdown closes the port and every device connection, which
//! `Broker::start` (it joins its server threads forever) cannot do.

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus::IntCounterVec;
use rumqttd::local::{LinkBuilder, LinkRx, LinkTx};
use rumqttd::{
    ConnectionSettings, LinkType, Router, RouterConfig, SegmentConfig, Server, ServerSettings,
};
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};
use vigil_model::DeviceId;

use crate::guard::{FEED_USER_PREFIX, TopicGuard};
use crate::{Directory, IngestConfig, IngestError};

/// What the ingest link subscribes to. Wider than the five streams so that
/// a device publishing on a wrong `/tenants/…` topic gets a `bad_topic` dead
/// letter instead of vanishing; the engine's own output under `/tenants/`
/// (acks, the alarm feed) comes back on this filter and is skipped.
pub(crate) const INGEST_FILTER: &str = "/tenants/#";

/// The ingest link's client id. Device ids are letters and digits only, so
/// no device can take this id over (a duplicate id would drop our link).
const LINK_CLIENT_ID: &str = "vigil-ingest";

/// Router log of the ingest filter: the only buffer between devices and the
/// ingest thread. rumqttd PUBACKs on append and skips a reader that falls
/// more than this far behind, so it must absorb a stall of the ingest thread
/// (store back-pressure, a full rules queue): 4 MiB × 4 ≈ 16 MiB of payload,
/// ~3 s at 10k devices × 1 msg/s × 500 B.
const INGEST_SEGMENT: SegmentConfig = SegmentConfig {
    max_segment_size: 4 << 20,
    max_segment_count: 4,
};

/// Every other filter: one per device ack topic (`/tenants/{id}/v1/ack`)
/// plus the alarm-feed subscriptions. rumqttd keeps each filter's log
/// forever, even after its subscriber left, so with 10k devices this size is
/// paid 10k times; a few KiB still buffers a burst of alarms for a slow
/// supervisor, and an ack needs no history (the next covers the previous).
const OTHER_SEGMENT: SegmentConfig = SegmentConfig {
    max_segment_size: 8 << 10,
    max_segment_count: 2,
};

/// rumqttd refuses larger packets by closing the connection. Set well above
/// the protocol's 64 KiB so an oversize payload reaches ingest and becomes an
/// `oversize` dead letter while the device stays connected.
const MAX_PACKET: usize = 1 << 20;

/// A TCP connection must send CONNECT within this time (rumqttd's guard
/// against idle sockets exhausting connection slots).
const CONNECT_TIMEOUT_MS: u16 = 5_000;

/// QoS 1 messages in flight towards one device (acks when it subscribes
/// with QoS 1).
const MAX_INFLIGHT: usize = 100;

pub(crate) struct Broker {
    pub addr: SocketAddr,
    pub link_tx: LinkTx,
    pub link_rx: LinkRx,
    pub server: ServerHandle,
}

/// The listener thread; stopping it closes the port and every connection.
pub(crate) struct ServerHandle {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    pub fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops the listener and waits for its thread (blocking; call from
    /// `spawn_blocking`).
    pub fn stop_and_join(mut self) -> Result<(), IngestError> {
        self.signal_stop();
        match self.thread.take().map(JoinHandle::join) {
            Some(Err(_)) => Err(IngestError::Shutdown {
                stage: "mqtt listener",
                why: "its thread panicked".into(),
            }),
            _ => Ok(()),
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.signal_stop();
    }
}

pub(crate) fn start(
    config: &IngestConfig,
    directory: Arc<dyn Directory>,
    connects: IntCounterVec,
    refusals: IntCounterVec,
) -> Result<Broker, IngestError> {
    let addr = listen_addr(config)?;

    let router = RouterConfig {
        // Room for the in-process links next to the device connections.
        max_connections: config.max_connections.max(1) + 8,
        max_outgoing_packet_count: 200,
        max_segment_size: OTHER_SEGMENT.max_segment_size,
        max_segment_count: OTHER_SEGMENT.max_segment_count,
        custom_segment: Some(HashMap::from([(INGEST_FILTER.to_owned(), INGEST_SEGMENT)])),
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    let router_tx = Router::new(0, router).spawn();

    // Subscribe before the listener opens, so the first device message is ours.
    let (mut link_tx, link_rx, _connack) = LinkBuilder::new(LINK_CLIENT_ID, router_tx.clone())
        .build()
        .map_err(|e| IngestError::Broker {
            stage: "ingest link",
            why: e.to_string(),
        })?;
    link_tx
        .subscribe(INGEST_FILTER)
        .map_err(|e| IngestError::Broker {
            stage: "ingest subscription",
            why: e.to_string(),
        })?;

    let mut settings = ServerSettings {
        name: "vigil-mqtt-v4".to_owned(),
        listen: addr,
        tls: None,
        // rumqttd sleeps this long after every accept; 0 lets a reconnect
        // storm of a whole fleet in at once.
        next_connection_delay_ms: 0,
        connections: ConnectionSettings {
            connection_timeout_ms: CONNECT_TIMEOUT_MS,
            max_payload_size: MAX_PACKET,
            max_inflight_count: MAX_INFLIGHT,
            auth: None,
            external_auth: None,
            dynamic_filters: false,
        },
    };
    let guard = TopicGuard::new(directory.clone(), refusals);
    settings.set_auth_handler(
        move |client_id: String, username: String, password: String| {
            let directory = directory.clone();
            let connects = connects.clone();
            async move {
                let accepted = authenticate(directory, client_id, username, password).await;
                connects
                    .with_label_values(&[if accepted { "accepted" } else { "refused" }])
                    .inc();
                accepted
            }
        },
    );

    let (stop_tx, stop_rx) = oneshot::channel();
    let (failed_tx, failed_rx) = std::sync::mpsc::channel::<String>();
    let server = Server::new(settings, router_tx, guard);
    let thread = std::thread::Builder::new()
        .name("vigil-mqtt".to_owned())
        .spawn(move || serve(server, addr, stop_rx, failed_tx))
        .map_err(|source| IngestError::Thread {
            name: "vigil-mqtt",
            source,
        })?;
    let server = ServerHandle {
        stop: Some(stop_tx),
        thread: Some(thread),
    };

    wait_listening(addr, &failed_rx)?;
    info!(%addr, "MQTT listener ready (plain TCP; devices log in with device_id and secret).");
    Ok(Broker {
        addr,
        link_tx,
        link_rx,
        server,
    })
}

/// Checks the address policy and resolves port 0 (rumqttd never reports the
/// port it bound, so we pick a free one first).
fn listen_addr(config: &IngestConfig) -> Result<SocketAddr, IngestError> {
    let asked = config.mqtt_addr;
    if !asked.ip().is_loopback() && !config.allow_public_plain {
        return Err(IngestError::PublicPlainListener { addr: asked });
    }
    // Also reports an address in use as a clear error before rumqttd would
    // only log it from its thread.
    let probe = TcpListener::bind(asked).map_err(|source| IngestError::Bind {
        addr: asked,
        source,
    })?;
    let addr = probe.local_addr().map_err(|source| IngestError::Bind {
        addr: asked,
        source,
    })?;
    if !addr.ip().is_loopback() {
        warn!(%addr, "MQTT listener is plain TCP on a public address: device secrets cross the network unencrypted.");
    }
    Ok(addr)
}

/// A device logs in with `client_id = username = device_id` and its secret;
/// an alarm-feed reader with `username = token:…` and a bearer token.
async fn authenticate(
    directory: Arc<dyn Directory>,
    client_id: String,
    username: String,
    password: String,
) -> bool {
    if username.starts_with(FEED_USER_PREFIX) {
        return authenticate_feed(directory, client_id, username, password).await;
    }
    if client_id != username {
        info!(client_id = %client_id, username = %username, "MQTT CONNECT refused: client id must equal the device id.");
        return false;
    }
    if DeviceId::new(&username).is_err() {
        info!(username = %username, "MQTT CONNECT refused: not a device id.");
        return false;
    }
    // verify may hash a secret or take a lock: keep it off the I/O threads.
    let verified = tokio::task::spawn_blocking({
        let username = username.clone();
        move || directory.verify(&username, &password)
    })
    .await
    .unwrap_or(false);
    if verified {
        debug!(device = %username, "MQTT CONNECT accepted.");
    } else {
        info!(device = %username, "MQTT CONNECT refused: unknown device, disabled device or wrong secret.");
    }
    verified
}

/// A feed reader's client id must not be a device id, so that it can never
/// take over a device's session.
async fn authenticate_feed(
    directory: Arc<dyn Directory>,
    client_id: String,
    username: String,
    token: String,
) -> bool {
    if DeviceId::new(&client_id).is_ok() {
        info!(client_id = %client_id, username = %username, "MQTT CONNECT refused: a feed reader's client id must not look like a device id (use one with a '-', e.g. sup-alice).");
        return false;
    }
    let granted = tokio::task::spawn_blocking(move || directory.feed_grant(&token).is_some())
        .await
        .unwrap_or(false);
    if granted {
        debug!(client_id = %client_id, username = %username, "MQTT CONNECT accepted (alarm feed).");
    } else {
        info!(client_id = %client_id, username = %username, "MQTT CONNECT refused: the token is unknown or grants no alarm feed.");
    }
    granted
}

/// Body of the listener thread: a runtime we own, so dropping it closes the
/// listener and every connection task.
fn serve(
    mut server: Server<TopicGuard>,
    addr: SocketAddr,
    stop: oneshot::Receiver<()>,
    failed: std::sync::mpsc::Sender<String>,
) {
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("vigil-mqtt-io")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            let _ = failed.send(format!("cannot build the listener runtime: {e}"));
            return;
        }
    };
    runtime.block_on(async move {
        let started = Instant::now();
        tokio::pin!(stop);
        loop {
            tokio::select! {
                result = server.start(LinkType::Remote) => {
                    let why = match result {
                        Ok(()) => "the listener stopped".to_owned(),
                        Err(e) => e.to_string(),
                    };
                    // Our readiness probe may hold the port for a moment.
                    if started.elapsed() < Duration::from_secs(2) {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    error!(%addr, error = %why, "MQTT listener failed.");
                    let _ = failed.send(why);
                    return;
                }
                _ = &mut stop => return,
            }
        }
    });
    // Cancels the connection tasks: their sockets close now.
    runtime.shutdown_timeout(Duration::from_secs(1));
    debug!(%addr, "MQTT listener closed.");
}

/// Returns once the listener holds `addr`: binding it ourselves fails then.
fn wait_listening(
    addr: SocketAddr,
    failed: &std::sync::mpsc::Receiver<String>,
) -> Result<(), IngestError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Ok(why) = failed.try_recv() {
            return Err(IngestError::Broker {
                stage: "listener",
                why,
            });
        }
        match TcpListener::bind(addr) {
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => return Ok(()),
            Ok(probe) => drop(probe),
            Err(_) => {}
        }
        if Instant::now() > deadline {
            return Err(IngestError::Broker {
                stage: "listener",
                why: format!("not listening on {addr} after 5 s"),
            });
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}
