//! Live MQTT sessions, known exactly: Vigil accepts every connection itself
//! and runs it to its end, so it sees every disconnect, clean or not (which
//! rumqttd does not report). The table maps the client id the router uses
//! (`{tenant}.{client_id}` for certificate logins) to the login behind it.
//!
//! - A login whose client id belongs to a live session is refused, except a
//!   device logging in again as itself (MQTT's session take-over; nobody
//!   else can present that client id).
//! - [`SessionControl`] closes sessions by identity (a device disabled or
//!   deleted, a feed token revoked) at once: the connection task ends and
//!   the router is told, as for any disconnect.
//! - [`Metered`] is the stream every connection reads through: while its
//!   quota says so, the socket is not read.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Instant;

use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tracing::info;
use vigil_model::{DeviceId, Region, Resolution};

use crate::Directory;
use crate::metrics::Metrics;
use crate::quota::{Bucket, Charge};

/// Why a login (or a TLS handshake, or a packet) was refused: the labels of
/// `vigil_ingest_rejected_total` next to the dead-letter reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Refusal {
    /// A plain-listener CONNECT without username and password.
    NoCredentials,
    /// Empty, not bound to the login (device id, feed token prefix).
    BadClientId,
    /// A client id the engine keeps for its own links (`vigil-…`).
    ReservedClientId,
    /// The client id of a live session of another login.
    ClientIdInUse,
    UnknownDevice,
    DisabledDevice,
    BadSecret,
    /// A feed login whose token is unknown or grants no alarm feed.
    BadToken,
    /// TLS: no client certificate, one not from the device CA, expired, or
    /// without a usable subject.
    BadCertificate,
    /// TLS handshake failed otherwise (or timed out).
    TlsHandshake,
    /// A packet above the broker's limit (1 MiB); the connection is closed.
    OversizePacket,
    /// More connections than `max_connections`.
    TooManyConnections,
}

impl Refusal {
    pub(crate) const ALL: [Refusal; 12] = [
        Refusal::NoCredentials,
        Refusal::BadClientId,
        Refusal::ReservedClientId,
        Refusal::ClientIdInUse,
        Refusal::UnknownDevice,
        Refusal::DisabledDevice,
        Refusal::BadSecret,
        Refusal::BadToken,
        Refusal::BadCertificate,
        Refusal::TlsHandshake,
        Refusal::OversizePacket,
        Refusal::TooManyConnections,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refusal::NoCredentials => "connect_no_credentials",
            Refusal::BadClientId => "connect_bad_client_id",
            Refusal::ReservedClientId => "connect_reserved_client_id",
            Refusal::ClientIdInUse => "connect_client_id_in_use",
            Refusal::UnknownDevice => "connect_unknown_device",
            Refusal::DisabledDevice => "connect_disabled_device",
            Refusal::BadSecret => "connect_bad_secret",
            Refusal::BadToken => "connect_bad_token",
            Refusal::BadCertificate => "bad_certificate",
            Refusal::TlsHandshake => "tls_handshake",
            Refusal::OversizePacket => "oversize_packet",
            Refusal::TooManyConnections => "too_many_connections",
        }
    }
}

/// Why the engine ended a session (`vigil_ingest_disconnects_total{reason}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Disconnect {
    /// Over its quota for longer than `disconnect_after_s`.
    Quota,
    /// Its device was disabled or deleted in the registry.
    DeviceInactive,
    /// Its feed token no longer grants the alarm feed.
    FeedRevoked,
    /// Closed on request ([`SessionControl`]).
    Closed,
}

impl Disconnect {
    pub(crate) const ALL: [Disconnect; 4] = [
        Disconnect::Quota,
        Disconnect::DeviceInactive,
        Disconnect::FeedRevoked,
        Disconnect::Closed,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Disconnect::Quota => "quota",
            Disconnect::DeviceInactive => "device_inactive",
            Disconnect::FeedRevoked => "feed_revoked",
            Disconnect::Closed => "closed",
        }
    }
}

/// The client-id prefix a feed reader logging in with `token` must use:
/// `feed-` and the first 12 hex digits of the token's SHA-256 (the hash the
/// registry keeps of it), so one reader cannot pick another's client id.
/// `printf %s "$TOKEN" | sha256sum | cut -c1-12` gives the digits.
pub fn feed_client_prefix(token: &str) -> String {
    format!("feed-{}", &token_sha256(token)[..12])
}

pub(crate) fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Who a live session belongs to.
#[derive(Clone)]
pub(crate) enum SessionLogin {
    Device(DeviceId),
    /// Kept so a revoked token's sessions can be found and re-checked.
    FeedToken {
        token: String,
        token_sha256: String,
    },
    FeedCert(Region),
}

impl SessionLogin {
    fn kind(&self) -> &'static str {
        match self {
            SessionLogin::Device(_) => "device",
            SessionLogin::FeedToken { .. } | SessionLogin::FeedCert(_) => "feed",
        }
    }

    /// For logs: never the token itself.
    fn describe(&self) -> String {
        match self {
            SessionLogin::Device(d) => format!("device {d}"),
            SessionLogin::FeedToken { token_sha256, .. } => {
                format!("feed token {}", &token_sha256[..12])
            }
            SessionLogin::FeedCert(region) => format!("feed certificate r{region}"),
        }
    }
}

/// One accepted TCP connection, shared by its task, its codec (the guard)
/// and its stream.
pub(crate) struct Conn {
    pub id: u64,
    pub peer: SocketAddr,
    /// The table's shutdown switch (see [`Sessions::pause_reads`]).
    reads_paused: Arc<AtomicBool>,
    /// Flips to true to end the session (see `rumqttd::Server::connection`).
    close: watch::Sender<bool>,
    state: Mutex<ConnState>,
}

#[derive(Default)]
struct ConnState {
    bucket: Option<Bucket>,
    throttled_until: Option<Instant>,
    /// The router client id this connection holds in the table.
    claimed: Option<String>,
    /// It logged in as an alarm-feed reader (a person's screen).
    feed: bool,
}

impl Conn {
    /// Resolves once the session is to end.
    pub(crate) fn closed(&self) -> impl Future<Output = ()> + Send + 'static {
        let mut rx = self.close.subscribe();
        async move {
            let _ = rx.wait_for(|closed| *closed).await;
        }
    }

    /// Whether its login is an alarm-feed reader's (known once its CONNECT
    /// was accepted).
    pub(crate) fn is_feed(&self) -> bool {
        self.state.lock().feed
    }

    fn close(&self) -> bool {
        !self.close.send_replace(true)
    }

    pub(crate) fn set_quota(&self, bucket: Option<Bucket>) {
        self.state.lock().bucket = bucket;
    }

    /// Charges one packet of `bytes` to the quota; a throttle takes effect
    /// on the next read.
    pub(crate) fn charge(&self, bytes: usize) -> Charge {
        let mut state = self.state.lock();
        let now = Instant::now();
        let charge = match state.bucket.as_mut() {
            Some(bucket) => bucket.charge(now, bytes),
            None => Charge::Within,
        };
        if let Charge::Throttle { until, .. } = charge {
            state.throttled_until = Some(until);
        }
        charge
    }

    fn throttled_until(&self) -> Option<Instant> {
        self.state.lock().throttled_until
    }
}

struct Live {
    conn: Arc<Conn>,
    login: SessionLogin,
}

/// The table of live sessions.
pub(crate) struct Sessions {
    /// Router client id → session. Held briefly: a claim, a release, or
    /// picking the sessions to close.
    live: Mutex<HashMap<String, Live>>,
    next_conn: AtomicU64,
    metrics: Metrics,
    /// Set at shutdown: no connection reads its socket any more, so nothing
    /// new is PUBACKed while ingest takes what was.
    reads_paused: Arc<AtomicBool>,
}

impl Sessions {
    pub(crate) fn new(metrics: Metrics) -> Sessions {
        Sessions {
            live: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            metrics,
            reads_paused: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Stops reading every connection's socket, for good (shutdown).
    pub(crate) fn pause_reads(&self) {
        self.reads_paused.store(true, Ordering::Release);
    }

    pub(crate) fn new_conn(&self, peer: SocketAddr) -> Arc<Conn> {
        Arc::new(Conn {
            id: self.next_conn.fetch_add(1, Ordering::Relaxed),
            peer,
            reads_paused: Arc::clone(&self.reads_paused),
            close: watch::channel(false).0,
            state: Mutex::new(ConnState::default()),
        })
    }

    /// Takes `client_id` for `conn`'s session. A device may take over its
    /// own session (rumqttd then drops the old connection); anything else
    /// with a live session's client id is refused.
    pub(crate) fn claim(
        &self,
        client_id: &str,
        login: SessionLogin,
        conn: &Arc<Conn>,
    ) -> Result<(), Refusal> {
        let mut live = self.live.lock();
        if let Some(held) = live.get(client_id) {
            let same_device = matches!((&held.login, &login),
                (SessionLogin::Device(a), SessionLogin::Device(b)) if a == b);
            if !same_device {
                return Err(Refusal::ClientIdInUse);
            }
            info!(
                client_id,
                "A device logged in again; its old session is taken over."
            );
        } else {
            self.metrics
                .sessions
                .with_label_values(&[login.kind()])
                .inc();
        }
        let feed = !matches!(login, SessionLogin::Device(_));
        live.insert(
            client_id.to_owned(),
            Live {
                conn: Arc::clone(conn),
                login,
            },
        );
        let mut state = conn.state.lock();
        state.claimed = Some(client_id.to_owned());
        state.feed = feed;
        Ok(())
    }

    /// The connection ended: its client id is free again (unless another
    /// connection of the same device took it over meanwhile).
    pub(crate) fn release(&self, conn: &Conn) {
        let Some(client_id) = conn.state.lock().claimed.take() else {
            return;
        };
        let mut live = self.live.lock();
        if live.get(&client_id).is_some_and(|l| l.conn.id == conn.id)
            && let Some(gone) = live.remove(&client_id)
        {
            self.metrics
                .sessions
                .with_label_values(&[gone.login.kind()])
                .dec();
        }
    }

    /// Ends every live session whose login `pick` selects; returns how many.
    fn close_where(&self, reason: Disconnect, pick: impl Fn(&SessionLogin) -> bool) -> usize {
        let picked: Vec<(String, Arc<Conn>, String)> = self
            .live
            .lock()
            .iter()
            .filter(|(_, l)| pick(&l.login))
            .map(|(id, l)| (id.clone(), Arc::clone(&l.conn), l.login.describe()))
            .collect();
        let mut closed = 0;
        for (client_id, conn, login) in picked {
            if conn.close() {
                closed += 1;
                self.metrics
                    .disconnects
                    .with_label_values(&[reason.as_str()])
                    .inc();
                info!(client_id = %client_id, %login, peer = %conn.peer, reason = reason.as_str(), "MQTT session closed by the engine.");
            }
        }
        closed
    }

    /// Ends one connection (the guard's quota verdict).
    pub(crate) fn close_conn(&self, conn: &Conn, reason: Disconnect) {
        if conn.close() {
            self.metrics
                .disconnects
                .with_label_values(&[reason.as_str()])
                .inc();
        }
    }

    fn logins(&self) -> Vec<SessionLogin> {
        self.live.lock().values().map(|l| l.login.clone()).collect()
    }
}

/// Closes live MQTT sessions by identity. Cheap to clone; outlives
/// [`crate::Ingest`] harmlessly (there is nothing left to close then).
#[derive(Clone)]
pub struct SessionControl {
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) directory: Arc<dyn Directory>,
}

impl SessionControl {
    /// Closes every session of `device` (plain and certificate logins).
    pub fn close_device(&self, device: &DeviceId) -> usize {
        self.sessions.close_where(
            Disconnect::Closed,
            |l| matches!(l, SessionLogin::Device(d) if d == device),
        )
    }

    /// Closes every alarm-feed session that logged in with `token`.
    pub fn close_feed_token(&self, token: &str) -> usize {
        self.close_feed_token_sha256(&token_sha256(token))
    }

    /// The same by the token's SHA-256 (hex), which the registry keeps.
    pub fn close_feed_token_sha256(&self, sha256_hex: &str) -> usize {
        let wanted = sha256_hex.to_ascii_lowercase();
        self.sessions.close_where(Disconnect::Closed, |l| {
            matches!(l, SessionLogin::FeedToken { token_sha256, .. } if *token_sha256 == wanted)
        })
    }

    /// Closes the session whose client id (as the router knows it:
    /// `{tenant}.{client_id}` for certificate logins) is `client_id`.
    pub fn close_client(&self, client_id: &str) -> usize {
        let conn = self
            .sessions
            .live
            .lock()
            .get(client_id)
            .map(|l| Arc::clone(&l.conn));
        match conn {
            Some(conn) if conn.close() => {
                self.sessions
                    .metrics
                    .disconnects
                    .with_label_values(&[Disconnect::Closed.as_str()])
                    .inc();
                1
            }
            _ => 0,
        }
    }

    /// Asks the directory again about every live session and closes those
    /// it no longer lets in: devices disabled or deleted, feed tokens that
    /// grant nothing now. Call it after every registry or token change.
    pub fn recheck(&self) -> usize {
        let mut inactive = Vec::new();
        let mut revoked = Vec::new();
        for login in self.sessions.logins() {
            match &login {
                SessionLogin::Device(d) => {
                    if !matches!(self.directory.resolve(d), Resolution::Active(_)) {
                        inactive.push(d.clone());
                    }
                }
                SessionLogin::FeedToken {
                    token,
                    token_sha256,
                } => {
                    if self.directory.feed_grant(token).is_none() {
                        revoked.push(token_sha256.clone());
                    }
                }
                SessionLogin::FeedCert(_) => {}
            }
        }
        let mut closed = 0;
        if !inactive.is_empty() {
            closed += self.sessions.close_where(
                Disconnect::DeviceInactive,
                |l| matches!(l, SessionLogin::Device(d) if inactive.contains(d)),
            );
        }
        if !revoked.is_empty() {
            closed += self.sessions.close_where(Disconnect::FeedRevoked, |l| {
                matches!(l, SessionLogin::FeedToken { token_sha256, .. } if revoked.contains(token_sha256))
            });
        }
        closed
    }

    /// Whether `device` has a live session right now.
    pub fn is_connected(&self, device: &DeviceId) -> bool {
        self.sessions
            .live
            .lock()
            .values()
            .any(|l| matches!(&l.login, SessionLogin::Device(d) if d == device))
    }

    /// Live sessions: (devices, feed readers).
    pub fn counts(&self) -> (usize, usize) {
        let live = self.sessions.live.lock();
        let devices = live
            .values()
            .filter(|l| matches!(l.login, SessionLogin::Device(_)))
            .count();
        (devices, live.len() - devices)
    }
}

/// The stream every connection reads through. While its quota throttles it,
/// it is not read at all, so the client's TCP window closes and a flooding
/// device slows down instead of crowding out the others.
pub(crate) struct Metered<S> {
    inner: S,
    conn: Arc<Conn>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<S> Metered<S> {
    pub(crate) fn new(inner: S, conn: Arc<Conn>) -> Metered<S> {
        Metered {
            inner,
            conn,
            pause: None,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metered<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        // Shutdown: never read again. Nothing needs waking: the listener's
        // runtime drops this connection shortly.
        if self.conn.reads_paused.load(Ordering::Acquire) {
            return Poll::Pending;
        }
        if let Some(until) = self.conn.throttled_until()
            && until > Instant::now()
        {
            let until = tokio::time::Instant::from_std(until);
            let pause = self
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(until)));
            if pause.deadline() != until {
                pause.as_mut().reset(until);
            }
            ready!(pause.as_mut().poll(cx));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metered<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feed_prefix_is_the_start_of_the_tokens_sha256() {
        // `printf %s abc | sha256sum` = ba7816bf8f01cfea4141…
        assert_eq!(feed_client_prefix("abc"), "feed-ba7816bf8f01");
        assert_ne!(feed_client_prefix("abd"), feed_client_prefix("abc"));
    }
}
