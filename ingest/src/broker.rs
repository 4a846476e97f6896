//! The embedded rumqttd: router, the in-process ingest link, and the two
//! listeners (plain MQTT, mutual-TLS MQTT) whose accept loops are ours.
//!
//! We assemble what rumqttd's `Broker` would ourselves and accept every
//! connection in our own loop (vendored patch: `Server::connection`):
//! - sockets get `TCP_NODELAY` (a PUBACK is not held back by Nagle);
//! - the TLS handshake runs in the connection's own task with our rustls
//!   config, so a slow client cannot stall the listener, and the client
//!   certificate is read once, here;
//! - each connection runs to its end in a task we spawned, so every
//!   disconnect is known (`sessions`), and the engine can close one;
//! - the listeners run on a runtime we own: dropping it on shutdown closes
//!   the ports and every connection (`Broker::start` joins forever);
//! - alarm-feed readers (people's screens) are served on a thread of their
//!   own once their CONNECT is accepted, so an alarm for them does not
//!   queue behind the socket thread's thousands of device connections;
//! - device publishes (under `/tenants/`) and their acks pass the socket
//!   tasks only, not the router (vendored patches 7 and 13).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rumqttd::local::{LinkBuilder, LinkRx, LinkTx};
use rumqttd::{
    ConnectionSettings, DirectIngest, DirectPublish, Mailboxes, Router, RouterConfig,
    SegmentConfig, Server, ServerSettings,
};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::runtime::Handle;
use tokio::sync::{Semaphore, oneshot};
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};
use vigil_model::DeviceId;
use vigil_model::codec::ack_topic;
use vigil_model::log_limit::LogLimit;

use crate::guard::{ENGINE_OUTPUT, GuardShared, TopicGuard};
use crate::sessions::{Conn, Metered, Refusal};
use crate::tls::{CertIdentity, handshake_refusal};
use crate::{IngestConfig, IngestError};

/// What the ingest link subscribes to. Wider than the five streams so that
/// a device publishing on a wrong `/tenants/…` topic gets a `bad_topic` dead
/// letter instead of vanishing. The engine's own output under `/tenants/`
/// (acks, the alarm feed: [`ENGINE_OUTPUT`]) is excluded from its log
/// (vendored patch 18): alarms are published through the router, and in
/// that lossless log they made the feed wait whenever ingest did (with the
/// store stalled and the log full, supervisors got no alarm until the
/// store moved).
pub(crate) const INGEST_FILTER: &str = "/tenants/#";

/// The ingest link's client id: reserved (`vigil-…`), so no login can take
/// it over.
const LINK_CLIENT_ID: &str = "vigil-ingest";

/// Router log of the ingest filter, the buffer between devices and the
/// ingest thread. It is lossless (vendored patch): when the ingest thread
/// falls this far behind, the router stops taking device publishes (and
/// sends no PUBACK for them) until it catches up, instead of dropping the
/// oldest. 4 MiB × 4 ≈ 16 MiB of payload, ~3 s at 10k devices × 1 msg/s ×
/// 500 B before devices are slowed down.
const INGEST_SEGMENT: SegmentConfig = SegmentConfig {
    max_segment_size: 4 << 20,
    max_segment_count: 4,
};

/// Device publishes under `/tenants/` (every publish a login may make) do
/// not pass the router: the socket task hands them to the ingest thread on
/// a channel and writes the PUBACK itself (vendored patch 7). This many
/// bytes of them may wait for the ingest thread, as many as the lossless
/// log holds; past that, connections stop being read and PUBACKed until
/// ingest takes what waits.
const DIRECT_PREFIX: &str = "/tenants/";
const DIRECT_BUDGET: usize = INGEST_SEGMENT.max_segment_size * INGEST_SEGMENT.max_segment_count;

/// Acks do not pass the router either: each device's ack topic
/// (`/tenants/{id}/v1/ack`) is its mailbox (vendored patch 13). The socket
/// task answers the device's SUBSCRIBE to it, the ack task puts each new
/// watermark there, and the socket task writes the newest one (a watermark
/// not yet written is replaced by the next) and takes the device's PUBACK.
/// Through the router an ack cost a router hand-off each way and a log of
/// its own per device, kept for the engine's life.
fn ack_mailbox(client_id: &str) -> Option<String> {
    DeviceId::new(client_id).ok().map(|id| ack_topic(&id))
}

/// Every other filter: the alarm-feed readers' (devices subscribe only to
/// their mailbox, which is not a log). The router can append most of a
/// burst of alarms to a filter's log before a reader gets its turn, and
/// drops the oldest segment when the log is full: at 8 KiB × 2 a district's devices
/// going offline together (1 000 alarms, each on three topics) lost most
/// of the burst even for a reader on loopback. 1 MiB × 4 keeps at least
/// 3 MiB: with its topic an alarm is about 600 bytes, so some 5 000 alarms
/// of one region's filter (1 700 of the admin's `+` filter, which gets all
/// three topics). rumqttd keeps each filter's log for the engine's life,
/// so each distinct filter a reader uses can come to hold 4 MiB. A reader
/// further behind loses the oldest: counted in
/// `vigil_alarm_feed_skipped_total` (vendored patch 14); it sees the gap
/// in `version` and re-reads the open alarms.
const OTHER_SEGMENT: SegmentConfig = SegmentConfig {
    max_segment_size: 1 << 20,
    max_segment_count: 4,
};

/// rumqttd refuses larger packets by closing the connection. Set well above
/// the protocol's 64 KiB so an oversize payload reaches ingest and becomes an
/// `oversize` dead letter while the device stays connected.
const MAX_PACKET: usize = 1 << 20;

/// A TCP connection must finish its TLS handshake, and then send CONNECT,
/// within this time (idle sockets must not hold connection slots).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// QoS 1 messages in flight towards one device (acks when it subscribes
/// with QoS 1); also how many packets a connection may have read that the
/// router has not taken yet before its socket is not read.
const MAX_INFLIGHT: usize = 100;

/// Accept errors and refused handshakes a scanner could multiply.
static ACCEPT_LOG: LogLimit = LogLimit::per_second(5);

/// Makes the engine's ingest link (again): a persistent session, so that if
/// rumqttd ever drops it, the new link resumes where the old one stopped.
pub(crate) type Relink = Arc<dyn Fn() -> Result<(LinkTx, LinkRx), IngestError> + Send + Sync>;

pub(crate) struct Broker {
    pub addr: SocketAddr,
    pub tls_addr: Option<SocketAddr>,
    pub link_tx: LinkTx,
    pub link_rx: LinkRx,
    pub relink: Relink,
    /// Device publishes from the socket tasks, past the router.
    pub direct: flume::Receiver<DirectPublish>,
    /// Devices' ack topics, past the router.
    pub mailboxes: Mailboxes,
    pub server: ServerHandle,
}

/// The listener thread; stopping it closes the ports and every connection.
pub(crate) struct ServerHandle {
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    pub(crate) fn signal_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Stops the listeners and waits for their thread (blocking; call from
    /// `spawn_blocking`).
    pub(crate) fn stop_and_join(mut self) -> Result<(), IngestError> {
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

/// What every accepted connection needs.
struct Accepting {
    server: Server<TopicGuard>,
    guard: TopicGuard,
    shared: Arc<GuardShared>,
    /// One permit per open connection (TLS handshakes included), at most
    /// `max_connections`: past that a new socket is closed at once.
    slots: Arc<Semaphore>,
}

pub(crate) fn start(
    config: &IngestConfig,
    shared: Arc<GuardShared>,
) -> Result<Broker, IngestError> {
    let plain = bind(config.mqtt_addr, !config.allow_public_plain)?;
    let addr = local_addr(&plain, config.mqtt_addr)?;
    if !addr.ip().is_loopback() {
        warn!(%addr, "MQTT listener is plain TCP on a public address: device secrets cross the network unencrypted.");
    }
    let tls = match &config.mqtts {
        Some(mqtts) => {
            let listener = bind(mqtts.addr, false)?;
            let tls_addr = local_addr(&listener, mqtts.addr)?;
            Some((listener, tls_addr, crate::tls::acceptor(&mqtts.material)?))
        }
        None => None,
    };

    let router = RouterConfig {
        // Room for the in-process links next to the device connections.
        max_connections: config.max_connections.max(1) + 8,
        max_outgoing_packet_count: 200,
        max_segment_size: OTHER_SEGMENT.max_segment_size,
        max_segment_count: OTHER_SEGMENT.max_segment_count,
        custom_segment: None,
        lossless: HashMap::from([(INGEST_FILTER.to_owned(), INGEST_SEGMENT)]),
        excluded: HashMap::from([(
            INGEST_FILTER.to_owned(),
            ENGINE_OUTPUT.map(str::to_owned).to_vec(),
        )]),
        skipped: Arc::clone(&shared.metrics.feed_skipped),
        filter_logs: Arc::clone(&shared.metrics.feed_filter_logs),
        sessions_away: Arc::clone(&shared.metrics.sessions_away),
        initialized_filters: None,
        shared_subscriptions_strategy: Default::default(),
    };
    let router_tx = Router::new(0, router).spawn();

    // Subscribe before the listeners open, so the first device message is ours.
    let link_router = router_tx.clone();
    let relink: Relink = Arc::new(move || {
        let (mut tx, rx, _connack) = LinkBuilder::new(LINK_CLIENT_ID, link_router.clone())
            .clean_session(false)
            .build()
            .map_err(|e| IngestError::Broker {
                stage: "ingest link",
                why: e.to_string(),
            })?;
        tx.subscribe(INGEST_FILTER)
            .map_err(|e| IngestError::Broker {
                stage: "ingest subscription",
                why: e.to_string(),
            })?;
        Ok((tx, rx))
    });
    let (link_tx, link_rx) = relink()?;
    let (direct, direct_rx) = DirectIngest::new(DIRECT_PREFIX, DIRECT_BUDGET);
    // A device subscribed to its acks has its PUBACKs held until its next
    // ack is written (`puback_hold_ms` at most): the ack usually follows
    // within a few ms (the group commit), and then one segment carries both,
    // one wake-up of the device instead of two. A PUBACK still means what it
    // meant (the publish is in ingest's channel); it may only come later.
    let mailboxes =
        Mailboxes::new(ack_mailbox).hold_pubacks(Duration::from_millis(config.puback_hold_ms));

    let settings = ServerSettings {
        name: "vigil-mqtt".to_owned(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 0,
        connections: ConnectionSettings {
            connection_timeout_ms: CONNECT_TIMEOUT.as_millis() as u16,
            max_payload_size: MAX_PACKET,
            max_inflight_count: MAX_INFLIGHT,
            // Logins are judged by the guard, for both listeners.
            auth: None,
            external_auth: None,
            dynamic_filters: false,
            direct: Some(direct),
            mailboxes: Some(mailboxes.clone()),
        },
    };
    let guard = TopicGuard::template(Arc::clone(&shared));
    let accepting = Arc::new(Accepting {
        server: Server::new(settings, router_tx, guard.clone()),
        guard,
        shared,
        slots: Arc::new(Semaphore::new(config.max_connections.max(1))),
    });

    let tls_addr = tls.as_ref().map(|(_, a, _)| *a);
    let workers = config.io_workers();
    let (stop_tx, stop_rx) = oneshot::channel();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let thread = std::thread::Builder::new()
        .name("vigil-mqtt".to_owned())
        .spawn(move || {
            let tls = tls.map(|(listener, _, acceptor)| (listener, acceptor));
            serve(plain, tls, accepting, workers, stop_rx, ready_tx)
        })
        .map_err(|source| IngestError::Thread {
            name: "vigil-mqtt",
            source,
        })?;
    let server = ServerHandle {
        stop: Some(stop_tx),
        thread: Some(thread),
    };
    match ready_rx.recv_timeout(Duration::from_secs(10)) {
        Ok(Ok(())) => {}
        Ok(Err(why)) => {
            return Err(IngestError::Broker {
                stage: "listener",
                why,
            });
        }
        Err(_) => {
            return Err(IngestError::Broker {
                stage: "listener",
                why: "the listener thread did not start".into(),
            });
        }
    }
    info!(%addr, "MQTT listener ready (plain TCP; devices log in with device_id and secret).");
    if let Some(tls_addr) = tls_addr {
        info!(addr = %tls_addr, "MQTT TLS listener ready (client certificates from the device CA).");
    }
    Ok(Broker {
        addr,
        tls_addr,
        link_tx,
        link_rx,
        relink,
        direct: direct_rx,
        mailboxes,
        server,
    })
}

/// Connections the kernel queues for the accept loop. Rust's std binds
/// with 128: a fleet coming back after an outage (thousands of CONNECTs in
/// a second) overflows that, and each dropped SYN costs its device a 1–3 s
/// retransmit or a failed connect. The kernel caps it at `net.core.somaxconn`.
const ACCEPT_BACKLOG: i32 = 4096;

/// Binds `asked`; `loopback_only` refuses a public address (the plain
/// listener sends secrets in clear). Port 0 picks a free port.
fn bind(asked: SocketAddr, loopback_only: bool) -> Result<TcpListener, IngestError> {
    if loopback_only && !asked.ip().is_loopback() {
        return Err(IngestError::PublicPlainListener { addr: asked });
    }
    let failed = |source| IngestError::Bind {
        addr: asked,
        source,
    };
    let socket = Socket::new(
        Domain::for_address(asked),
        Type::STREAM,
        Some(Protocol::TCP),
    )
    .map_err(failed)?;
    // As std does: a restarted engine re-binds while old sockets linger in TIME_WAIT.
    socket.set_reuse_address(true).map_err(failed)?;
    socket.bind(&asked.into()).map_err(failed)?;
    socket.listen(ACCEPT_BACKLOG).map_err(failed)?;
    socket.set_nonblocking(true).map_err(failed)?;
    Ok(socket.into())
}

fn local_addr(listener: &TcpListener, asked: SocketAddr) -> Result<SocketAddr, IngestError> {
    listener.local_addr().map_err(|source| IngestError::Bind {
        addr: asked,
        source,
    })
}

/// Body of the listener thread: a runtime we own, so dropping it closes the
/// listeners and every connection task.
fn serve(
    plain: TcpListener,
    tls: Option<(TcpListener, TlsAcceptor)>,
    accepting: Arc<Accepting>,
    workers: usize,
    stop: oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let runtimes = runtime(workers, "vigil-mqtt-io").and_then(|io| {
        // One thread: a region's screens are few, and mostly wait.
        Ok((io, runtime(1, "vigil-mqtt-feed")?))
    });
    let (runtime, feeds) = match runtimes {
        Ok(runtimes) => runtimes,
        Err(e) => {
            let _ = ready.send(Err(format!("cannot build the listener runtime: {e}")));
            return;
        }
    };
    let feed_handle = feeds.handle().clone();
    runtime.block_on(async move {
        let listeners = tokio::net::TcpListener::from_std(plain).and_then(|plain| {
            let tls = tls
                .map(|(l, acceptor)| tokio::net::TcpListener::from_std(l).map(|l| (l, acceptor)))
                .transpose()?;
            Ok((plain, tls))
        });
        let (plain, tls) = match listeners {
            Ok(l) => l,
            Err(e) => {
                let _ = ready.send(Err(format!("cannot listen: {e}")));
                return;
            }
        };
        let feeds = feed_handle.clone();
        tokio::spawn(accept_loop(plain, None, Arc::clone(&accepting), feeds));
        if let Some((listener, tls)) = tls {
            tokio::spawn(accept_loop(listener, Some(tls), accepting, feed_handle));
        }
        let _ = ready.send(Ok(()));
        let _ = stop.await;
    });
    // Cancels the connection tasks: their sockets close now. The feed
    // sessions first, while the I/O driver their sockets use still runs.
    feeds.shutdown_timeout(Duration::from_secs(1));
    runtime.shutdown_timeout(Duration::from_secs(1));
    debug!("MQTT listeners closed.");
}

fn runtime(workers: usize, name: &str) -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name(name)
        .enable_all()
        .build()
}

async fn accept_loop(
    listener: tokio::net::TcpListener,
    acceptor: Option<TlsAcceptor>,
    accepting: Arc<Accepting>,
    feeds: Handle,
) {
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors, say: back off instead of spinning.
                if let Some(held_back) = ACCEPT_LOG.allow() {
                    error!(error = %e, held_back, "Cannot accept an MQTT connection.");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&accepting.slots).try_acquire_owned() else {
            accepting
                .shared
                .metrics
                .refused(Refusal::TooManyConnections)
                .inc();
            if let Some(held_back) = ACCEPT_LOG.allow() {
                warn!(%peer, held_back, "MQTT connection refused: max_connections reached.");
            }
            continue;
        };
        // A PUBACK must not wait for the client's delayed ACK (Nagle).
        if let Err(e) = tcp.set_nodelay(true) {
            debug!(%peer, error = %e, "Cannot set TCP_NODELAY.");
        }
        let accepting = Arc::clone(&accepting);
        let acceptor = acceptor.clone();
        let feeds = feeds.clone();
        tokio::spawn(async move {
            connection(tcp, peer, acceptor, &accepting, feeds).await;
            drop(slot);
        });
    }
}

/// A connection's MQTT session, from CONNECT to its end.
type Session = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

/// One connection from accept to its end.
///
/// The session and the TLS handshake are futures in boxes of their own: an
/// async fn keeps room for every local it ever held for as long as it
/// lives, and the task of each of tens of thousands of connections would
/// otherwise carry both the plain and the TLS session and a TLS stream
/// mid-handshake (10 KiB, where a session needs 4).
async fn connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: Option<TlsAcceptor>,
    accepting: &Accepting,
    feeds: Handle,
) {
    let sessions = &accepting.shared.sessions;
    let conn = sessions.new_conn(peer);
    let session = match acceptor {
        None => Some(plain_session(tcp, &conn, accepting, feeds)),
        Some(acceptor) => Box::pin(tls_session(tcp, peer, acceptor, &conn, accepting, feeds)).await,
    };
    if let Some(session) = session {
        session.await;
    }
    sessions.release(&conn);
}

/// Where a session runs once its CONNECT is accepted: an alarm-feed
/// reader's on `feeds`, a device's where it was accepted.
fn placement(conn: &Arc<Conn>, feeds: Handle) -> impl FnOnce() -> Option<Handle> + Send + 'static {
    let conn = Arc::clone(conn);
    move || conn.is_feed().then_some(feeds)
}

fn plain_session(
    tcp: tokio::net::TcpStream,
    conn: &Arc<Conn>,
    accepting: &Accepting,
    feeds: Handle,
) -> Session {
    let guard = accepting.guard.for_connection(Arc::clone(conn), None);
    let stream = Metered::new(tcp, Arc::clone(conn));
    Box::pin(accepting.server.connection(
        stream,
        None,
        guard,
        conn.closed(),
        placement(conn, feeds),
    ))
}

/// The TLS handshake and the device its certificate names; `None` (counted
/// and logged) when either fails.
async fn tls_session(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    conn: &Arc<Conn>,
    accepting: &Accepting,
    feeds: Handle,
) -> Option<Session> {
    let refuse = |refusal: Refusal, why: &str| {
        accepting.shared.metrics.refused(refusal).inc();
        if let Some(held_back) = ACCEPT_LOG.allow() {
            info!(%peer, reason = refusal.as_str(), why, held_back, "MQTT TLS connection refused.");
        }
        None
    };
    let tls = match tokio::time::timeout(CONNECT_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => return refuse(handshake_refusal(&e), &e.to_string()),
        Err(_) => return refuse(Refusal::TlsHandshake, "no handshake within 5 s"),
    };
    let identity = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or_else(|| "no client certificate".to_owned())
        .and_then(CertIdentity::of);
    let identity = match identity {
        Ok(identity) => identity,
        Err(why) => return refuse(Refusal::BadCertificate, &why),
    };
    let tenant = identity.tenant();
    let guard = accepting
        .guard
        .for_connection(Arc::clone(conn), Some(identity));
    let stream = Metered::new(tls, Arc::clone(conn));
    Some(Box::pin(accepting.server.connection(
        stream,
        Some(tenant),
        guard,
        conn.closed(),
        placement(conn, feeds),
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ingest_links_client_id_is_reserved() {
        assert!(LINK_CLIENT_ID.starts_with(crate::guard::RESERVED_CLIENT_PREFIX));
    }
}
