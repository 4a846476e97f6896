//! Who may log in, and where a logged-in connection may publish and
//! subscribe: one check on the broker's wire for both listeners.
//!
//! rumqttd has no subscribe or publish hook. Every packet a connection sends
//! is decoded by the `Protocol` it was given, one instance per connection,
//! so [`TopicGuard`] wraps the v4 codec. It judges the CONNECT (the login),
//! charges each packet to the connection's quota, and refuses a SUBSCRIBE or
//! PUBLISH outside the login's topics with a decode error: the router never
//! sees the packet and rumqttd closes the connection (no CONNACK for a
//! refused CONNECT). Every refusal is counted by reason.
//!
//! Logins:
//! - a device on the plain listener: `client id = username = device_id`,
//!   password = its secret; on the mTLS listener its certificate names it
//!   (`O = device_id`) and the client id must be the device id;
//! - an alarm-feed reader: `username = token:…` and a bearer token whose
//!   grant covers the feed, with a client id that starts with
//!   [`feed_client_prefix`] of that token; or a supervisor certificate
//!   (`O = r{region}`, `OU = alarm-feed`);
//! - client ids starting with `vigil-` are the engine's own: refused for
//!   anyone; an empty client id is refused; the client id of a live session
//!   is refused unless the same device logs in again (`sessions`).
//!
//! Topics:
//! - a device may subscribe only to its ack topic and may not publish on the
//!   engine's output topics (acks, alarm feed). On the plain listener what it
//!   publishes outside `/tenants/{its id}/` is moved under its own name
//!   (`codec::foreign_topic`) and dead-lettered; on the mTLS listener it is
//!   refused (rumqttd's tenant rule, enforced here so it is counted);
//! - a feed reader may only subscribe under `/tenants/r{region}/v1/alarms/`
//!   of the regions it is granted (any region for an admin token) and may
//!   not publish. A token login's token is checked again at every packet it
//!   sends and before every alarm it is sent, so a revoked or expired token
//!   gets nothing more even between the engine's session re-checks
//!   (`SessionControl::recheck`, which closes such sessions at once).

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use rumqttd::protocol::v4::V4;
use rumqttd::protocol::{Connect, Error, Login as Credentials, Packet, Protocol};
use tracing::{debug, info, warn};
use vigil_model::log_limit::LogLimit;
use vigil_model::{DeviceId, Grant, Region, Resolution};

use crate::Directory;
use crate::metrics::Metrics;
use crate::quota::{Bucket, Charge, QuotaConfig};
use crate::sessions::{Conn, Disconnect, Refusal, SessionLogin, Sessions, token_sha256};
use crate::tls::CertIdentity;

/// Usernames of alarm-feed logins start with this; the rest is a free label
/// for logs. A device id (letters and digits) can never look like it.
pub const FEED_USER_PREFIX: &str = "token:";

/// Client ids of the engine's in-process links start with this; nobody
/// else may use one. (A device id has no `-`.)
pub const RESERVED_CLIENT_PREFIX: &str = "vigil-";

/// What a feed login's bearer token lets it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedGrant {
    /// Every region (the admin token).
    All,
    /// These regions and their sub-regions.
    Regions(Vec<Region>),
}

impl FeedGrant {
    /// Whether the feed may carry `region`'s alarms: [`Grant::sees_region`],
    /// the rule REST, SSE and SQL follow too.
    pub fn covers(&self, region: &Region) -> bool {
        let grant = match self {
            FeedGrant::All => Grant::All,
            FeedGrant::Regions(grants) => Grant::Regions(grants),
        };
        grant.sees_region(region)
    }
}

/// The MQTT tenant of a region's alarm feed: `r` + the 6-digit code.
pub fn region_tenant(region: &Region) -> String {
    format!("r{region}")
}

/// Login lines a reconnect loop could multiply.
static LOGIN_LOG: LogLimit = LogLimit::per_second(5);
/// Topic refusals, quota and oversize lines.
static WIRE_LOG: LogLimit = LogLimit::per_second(5);

#[derive(Debug, Clone)]
enum Login {
    /// Before CONNECT.
    Unknown,
    /// `tenant`: a certificate login, kept under `/tenants/{id}/`.
    Device { id: DeviceId, tenant: bool },
    /// `tenant`: a certificate login's `r{region}`; `token`: a token
    /// login's bearer token, kept to be checked again (revocation, expiry).
    Feed {
        grant: FeedGrant,
        tenant: Option<String>,
        token: Option<String>,
    },
}

/// What every connection's guard shares.
pub(crate) struct GuardShared {
    pub directory: Arc<dyn Directory>,
    pub sessions: Arc<Sessions>,
    pub metrics: Metrics,
    pub quota: QuotaConfig,
}

/// The v4 codec plus the login and access checks. The server keeps a
/// template; each accepted connection gets its own with
/// [`TopicGuard::for_connection`].
#[derive(Clone)]
pub(crate) struct TopicGuard {
    codec: V4,
    shared: Arc<GuardShared>,
    conn: Option<Arc<Conn>>,
    /// The identity a verified client certificate gave (mTLS listener).
    cert: Option<CertIdentity>,
    login: Login,
}

/// A judged CONNECT.
struct Admitted {
    /// The client id as the router knows it.
    router_id: String,
    session: SessionLogin,
    login: Login,
    report_interval_s: Option<u32>,
}

type Refused = (Refusal, String);

impl TopicGuard {
    pub(crate) fn template(shared: Arc<GuardShared>) -> TopicGuard {
        TopicGuard {
            codec: V4,
            shared,
            conn: None,
            cert: None,
            login: Login::Unknown,
        }
    }

    pub(crate) fn for_connection(&self, conn: Arc<Conn>, cert: Option<CertIdentity>) -> TopicGuard {
        TopicGuard {
            conn: Some(conn),
            cert,
            login: Login::Unknown,
            ..self.clone()
        }
    }

    fn peer(&self) -> String {
        self.conn
            .as_ref()
            .map(|c| c.peer.to_string())
            .unwrap_or_default()
    }

    /// Judges a CONNECT and, when it is let in, claims its client id.
    fn connect(&mut self, connect: &mut Connect, credentials: Option<&Credentials>) -> bool {
        let judged = self
            .judge(connect, credentials)
            .and_then(|admitted| self.claim(admitted));
        let connects = &self.shared.metrics.connects;
        match judged {
            Ok(()) => {
                connects.with_label_values(&["accepted"]).inc();
                debug!(peer = %self.peer(), client_id = %connect.client_id, login = %self.who(), "MQTT CONNECT accepted.");
                true
            }
            Err((refusal, detail)) => {
                connects.with_label_values(&["refused"]).inc();
                self.shared.metrics.refused(refusal).inc();
                let (peer, client_id, reason) = (self.peer(), &connect.client_id, refusal.as_str());
                match LOGIN_LOG.allow() {
                    Some(held_back) => {
                        info!(%peer, %client_id, reason, %detail, held_back, "MQTT CONNECT refused.")
                    }
                    None => debug!(%peer, %client_id, reason, %detail, "MQTT CONNECT refused."),
                }
                false
            }
        }
    }

    fn claim(&mut self, admitted: Admitted) -> Result<(), Refused> {
        let Some(conn) = self.conn.clone() else {
            return Err((Refusal::BadClientId, "no connection".into()));
        };
        self.shared
            .sessions
            .claim(&admitted.router_id, admitted.session, &conn)
            .map_err(|r| {
                (
                    r,
                    format!("client id {} belongs to a live session", admitted.router_id),
                )
            })?;
        let limits = self.shared.quota.limits(admitted.report_interval_s);
        conn.set_quota(limits.map(|l| Bucket::new(l, Instant::now())));
        self.login = admitted.login;
        Ok(())
    }

    fn judge(
        &self,
        connect: &mut Connect,
        credentials: Option<&Credentials>,
    ) -> Result<Admitted, Refused> {
        let client_id = connect.client_id.clone();
        if client_id.is_empty() {
            return Err((Refusal::BadClientId, "an empty client id is refused".into()));
        }
        // rumqttd would drop such a client without an answer.
        if client_id.contains(['+', '#', '$', '/']) {
            return Err((
                Refusal::BadClientId,
                "a client id may not contain + # $ or /".into(),
            ));
        }
        if client_id
            .get(..RESERVED_CLIENT_PREFIX.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(RESERVED_CLIENT_PREFIX))
        {
            return Err((
                Refusal::ReservedClientId,
                format!("client ids starting with {RESERVED_CLIENT_PREFIX} are the engine's own"),
            ));
        }
        match &self.cert {
            Some(CertIdentity::Device(id)) => {
                if client_id != id.as_str() {
                    return Err((
                        Refusal::BadClientId,
                        format!("with the certificate of device {id} the client id must be {id}"),
                    ));
                }
                let interval = self.active(id)?;
                Ok(Admitted {
                    router_id: format!("{id}.{client_id}"),
                    session: SessionLogin::Device(id.clone()),
                    login: Login::Device {
                        id: id.clone(),
                        tenant: true,
                    },
                    report_interval_s: Some(interval),
                })
            }
            Some(CertIdentity::Feed(region)) => {
                // A feed session must not inherit another login's
                // subscriptions under a reused client id.
                connect.clean_session = true;
                let tenant = region_tenant(region);
                Ok(Admitted {
                    router_id: format!("{tenant}.{client_id}"),
                    session: SessionLogin::FeedCert(*region),
                    login: Login::Feed {
                        grant: FeedGrant::Regions(vec![*region]),
                        tenant: Some(tenant),
                        token: None,
                    },
                    report_interval_s: None,
                })
            }
            None => {
                let Some(credentials) = credentials else {
                    return Err((
                        Refusal::NoCredentials,
                        "the plain listener needs a username and password".into(),
                    ));
                };
                if credentials.username.starts_with(FEED_USER_PREFIX) {
                    self.judge_feed_token(connect, &credentials.password)
                } else {
                    self.judge_device(&client_id, credentials)
                }
            }
        }
    }

    fn judge_feed_token(&self, connect: &mut Connect, token: &str) -> Result<Admitted, Refused> {
        let directory = &self.shared.directory;
        let Some(grant) = directory.feed_grant(token) else {
            return Err((
                Refusal::BadToken,
                "the token is unknown or grants no alarm feed".into(),
            ));
        };
        let prefix = directory.feed_client_prefix(token);
        if !connect.client_id.starts_with(&prefix) {
            return Err((
                Refusal::BadClientId,
                format!("this token's client ids start with {prefix}"),
            ));
        }
        connect.clean_session = true;
        Ok(Admitted {
            router_id: connect.client_id.clone(),
            session: SessionLogin::FeedToken {
                token: token.to_owned(),
                token_sha256: token_sha256(token),
            },
            login: Login::Feed {
                grant,
                tenant: None,
                token: Some(token.to_owned()),
            },
            report_interval_s: None,
        })
    }

    fn judge_device(
        &self,
        client_id: &str,
        credentials: &Credentials,
    ) -> Result<Admitted, Refused> {
        let username = &credentials.username;
        if client_id != username {
            return Err((
                Refusal::BadClientId,
                "the client id must equal the username (the device id)".into(),
            ));
        }
        let id = DeviceId::new(username).map_err(|_| {
            (
                Refusal::UnknownDevice,
                format!("{username:?} is not a device id"),
            )
        })?;
        let interval = self.active(&id)?;
        if !self
            .shared
            .directory
            .verify(id.as_str(), &credentials.password)
        {
            return Err((Refusal::BadSecret, format!("wrong secret for device {id}")));
        }
        Ok(Admitted {
            router_id: client_id.to_owned(),
            session: SessionLogin::Device(id.clone()),
            login: Login::Device { id, tenant: false },
            report_interval_s: Some(interval),
        })
    }

    /// The report interval of a registered, enabled device.
    fn active(&self, id: &DeviceId) -> Result<u32, Refused> {
        match self.shared.directory.resolve(id) {
            Resolution::Active(ctx) => Ok(ctx.report_interval_s),
            Resolution::Disabled => {
                Err((Refusal::DisabledDevice, format!("device {id} is disabled")))
            }
            Resolution::Unknown => Err((
                Refusal::UnknownDevice,
                format!("device {id} is not registered"),
            )),
        }
    }

    /// Charges a packet to the quota; `false` ends the connection.
    fn charge(&self, packet: &Packet) -> bool {
        let Some(conn) = &self.conn else {
            return true;
        };
        let bytes = match packet {
            Packet::Publish(p, _) => p.topic.len() + p.payload.len(),
            Packet::Subscribe(..) | Packet::Unsubscribe(..) | Packet::PingReq(_) => 0,
            // Acks answer the engine's own publishes.
            _ => return true,
        };
        match conn.charge(bytes) {
            Charge::Within => true,
            Charge::Throttle { excess, first, .. } => {
                if first {
                    self.shared
                        .metrics
                        .throttled
                        .with_label_values(&[excess.as_str()])
                        .inc();
                    if let Some(held_back) = WIRE_LOG.allow() {
                        info!(peer = %conn.peer, login = %self.who(), excess = excess.as_str(), held_back,
                            "Connection over its quota: its socket is not read for a while.");
                    }
                }
                true
            }
            Charge::Disconnect(excess) => {
                self.shared.sessions.close_conn(conn, Disconnect::Quota);
                self.shared.sessions.release(conn);
                if let Some(held_back) = WIRE_LOG.allow() {
                    warn!(peer = %conn.peer, login = %self.who(), excess = excess.as_str(), held_back,
                        "Connection stayed over its quota; disconnected.");
                }
                false
            }
        }
    }

    /// Applies the topic rules to one packet after CONNECT; may move a
    /// plain device's foreign publish under its own name.
    fn check(&mut self, packet: &mut Packet) -> Result<(), TopicRefusal> {
        match packet {
            _ if !self.feed_token_valid() => Err(TopicRefusal::TokenInvalid),
            Packet::Subscribe(subscribe, _) => {
                for filter in &subscribe.filters {
                    let allowed = match &self.login {
                        Login::Device { id, .. } => is_ack_topic(&filter.path, id.as_str()),
                        Login::Feed { grant, tenant, .. } => {
                            feed_filter_allowed(&filter.path, grant)
                                && tenant.as_ref().is_none_or(|t| {
                                    filter
                                        .path
                                        .strip_prefix("/tenants/")
                                        .and_then(|rest| rest.strip_prefix(t.as_str()))
                                        .is_some_and(|rest| rest.starts_with('/'))
                                })
                        }
                        Login::Unknown => false,
                    };
                    if !allowed {
                        return Err(TopicRefusal::Subscribe(filter.path.clone()));
                    }
                }
                Ok(())
            }
            Packet::Publish(publish, _) => {
                let topic = String::from_utf8_lossy(&publish.topic).into_owned();
                let Login::Device { id, tenant } = &self.login else {
                    return Err(TopicRefusal::Publish(topic));
                };
                if is_engine_output(&topic) {
                    return Err(TopicRefusal::Publish(topic));
                }
                let own = topic
                    .strip_prefix("/tenants/")
                    .and_then(|rest| rest.strip_prefix(id.as_str()))
                    .is_some_and(|after| after.starts_with('/'));
                if !own {
                    if *tenant {
                        // rumqttd's tenant rule: outside its own topics, a
                        // certificate login is refused.
                        return Err(TopicRefusal::Publish(topic));
                    }
                    // Plain listener: the message stays this device's, as a
                    // `foreign_topic` dead letter, instead of being taken as
                    // a reading of the device it names or dropped unseen.
                    // Kept, not refused, so the mistake is counted and the
                    // session goes on.
                    publish.topic = vigil_model::codec::foreign_topic(id.as_str(), &topic).into();
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// False once a feed login's token is revoked or expired (or no
    /// longer grants an alarm feed); true for every other login.
    fn feed_token_valid(&self) -> bool {
        match &self.login {
            Login::Feed {
                token: Some(token), ..
            } => self.shared.directory.feed_grant(token).is_some(),
            _ => true,
        }
    }

    /// Counts and logs a feed session ended for its token, and frees its
    /// client id at once.
    fn token_refused(&self, when: &str) {
        self.shared
            .metrics
            .topic_refusals
            .with_label_values(&["token"])
            .inc();
        if let Some(held_back) = WIRE_LOG.allow() {
            info!(login = %self.who(), when, held_back, "MQTT feed session closed: its token was revoked or expired.");
        }
        if let Some(conn) = &self.conn {
            self.shared.sessions.release(conn);
        }
    }

    fn who(&self) -> String {
        match &self.login {
            Login::Unknown => "(before CONNECT)".to_owned(),
            Login::Device { id, tenant: false } => format!("device {id}"),
            Login::Device { id, tenant: true } => format!("device {id} (certificate)"),
            Login::Feed {
                grant: FeedGrant::All,
                ..
            } => "feed reader (all regions)".to_owned(),
            Login::Feed {
                grant: FeedGrant::Regions(rs),
                tenant,
                ..
            } => format!(
                "feed reader [{}]{}",
                rs.iter().map(Region::as_str).collect::<Vec<_>>().join(","),
                if tenant.is_some() {
                    " (certificate)"
                } else {
                    ""
                }
            ),
        }
    }
}

enum TopicRefusal {
    Subscribe(String),
    Publish(String),
    /// A feed login whose token was revoked or expired.
    TokenInvalid,
}

impl Protocol for TopicGuard {
    fn read_mut(&mut self, stream: &mut BytesMut, max_size: usize) -> Result<Packet, Error> {
        let mut packet = match self.codec.read_mut(stream, max_size) {
            Ok(packet) => packet,
            Err(Error::PayloadSizeLimitExceeded(size)) => {
                self.shared.metrics.refused(Refusal::OversizePacket).inc();
                if let Some(held_back) = WIRE_LOG.allow() {
                    info!(peer = %self.peer(), login = %self.who(), size, limit = max_size, held_back,
                        "MQTT packet over the size limit; closing the connection.");
                }
                return Err(Error::PayloadSizeLimitExceeded(size));
            }
            Err(e) => return Err(e),
        };
        if let Packet::Connect(connect, _, _, _, credentials) = &mut packet {
            // A second CONNECT on one connection is a protocol error.
            if !matches!(self.login, Login::Unknown) || !self.connect(connect, credentials.as_ref())
            {
                return Err(Error::InvalidProtocol);
            }
            return Ok(packet);
        }
        if !self.charge(&packet) {
            return Err(Error::InvalidProtocol);
        }
        match self.check(&mut packet) {
            Ok(()) => Ok(packet),
            Err(refusal) => {
                let who = self.who();
                let (kind, what) = match &refusal {
                    TopicRefusal::Subscribe(filter) => ("subscribe", filter),
                    TopicRefusal::Publish(topic) => ("publish", topic),
                    TopicRefusal::TokenInvalid => {
                        self.token_refused("at a packet it sent");
                        return Err(Error::InvalidProtocol);
                    }
                };
                self.shared
                    .metrics
                    .topic_refusals
                    .with_label_values(&[kind])
                    .inc();
                match WIRE_LOG.allow() {
                    Some(held_back) => info!(login = %who, packet = kind, topic = %what, held_back,
                        "MQTT packet refused: outside the login's topics; closing the connection."),
                    None => debug!(login = %who, packet = kind, topic = %what,
                        "MQTT packet refused: outside the login's topics; closing the connection."),
                }
                // The session is over: its client id is free at once, before
                // the client sees the connection close. Any decode error
                // makes rumqttd drop the connection.
                if let Some(conn) = &self.conn {
                    self.shared.sessions.release(conn);
                }
                Err(Error::InvalidProtocol)
            }
        }
    }

    fn write(&self, packet: Packet, write: &mut BytesMut) -> Result<usize, Error> {
        // No alarm goes out on a revoked token: the error ends the
        // connection before anything of this batch is written.
        if matches!(packet, Packet::Publish(..)) && !self.feed_token_valid() {
            self.token_refused("before a delivery");
            return Err(Error::InvalidProtocol);
        }
        self.codec.write(packet, write)
    }
}

fn is_ack_topic(filter: &str, device: &str) -> bool {
    filter
        .strip_prefix("/tenants/")
        .and_then(|rest| rest.strip_prefix(device))
        .is_some_and(|rest| rest == "/v1/ack")
}

/// Where only the engine writes: each device's acks and the alarm feed.
/// Devices may not publish there (the guard refuses it), and ingest's log
/// in the broker does not take it (broker.rs).
pub(crate) const ENGINE_OUTPUT: [&str; 2] = ["/tenants/+/v1/ack", "/tenants/+/v1/alarms/#"];

/// Whether `topic` is under one of [`ENGINE_OUTPUT`].
pub(crate) fn is_engine_output(topic: &str) -> bool {
    (ENGINE_OUTPUT.iter()).any(|filter| rumqttd::protocol::matches(topic, filter))
}

/// A feed filter must name a granted region's tenant literally (or `+` for
/// an all-regions grant) and stay under its `v1/alarms` level, so that it
/// can match nothing but alarms of that region.
fn feed_filter_allowed(filter: &str, grant: &FeedGrant) -> bool {
    let mut levels = filter.split('/');
    let (Some(""), Some("tenants"), Some(tenant), Some("v1"), Some("alarms")) = (
        levels.next(),
        levels.next(),
        levels.next(),
        levels.next(),
        levels.next(),
    ) else {
        return false;
    };
    if tenant == "+" {
        return *grant == FeedGrant::All;
    }
    tenant
        .strip_prefix('r')
        .and_then(|code| Region::new(code).ok())
        .is_some_and(|region| grant.covers(&region))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn city() -> FeedGrant {
        FeedGrant::Regions(vec![Region::new("440700").unwrap()])
    }

    #[test]
    fn a_feed_reader_subscribes_only_to_alarms_of_its_regions() {
        assert!(feed_filter_allowed("/tenants/r440700/v1/alarms/#", &city()));
        assert!(feed_filter_allowed(
            "/tenants/r440703/v1/alarms/+/EQ1",
            &city()
        ));
        assert!(!feed_filter_allowed(
            "/tenants/r440000/v1/alarms/#",
            &city()
        ));
        assert!(!feed_filter_allowed(
            "/tenants/r440100/v1/alarms/#",
            &city()
        ));
        assert!(!feed_filter_allowed("/tenants/+/v1/alarms/#", &city()));
        assert!(!feed_filter_allowed("/tenants/r440700/v1/#", &city()));
        assert!(!feed_filter_allowed("/tenants/r440700/#", &city()));
        assert!(!feed_filter_allowed("/tenants/#", &city()));
        assert!(!feed_filter_allowed("#", &city()));
        assert!(!feed_filter_allowed(
            "$share/g/tenants/r440700/v1/alarms/#",
            &city()
        ));
        assert!(feed_filter_allowed(
            "/tenants/+/v1/alarms/#",
            &FeedGrant::All
        ));
        assert!(!feed_filter_allowed(
            "/tenants/+/v1/elevator",
            &FeedGrant::All
        ));
    }

    #[test]
    fn a_device_subscribes_only_to_its_acks() {
        assert!(is_ack_topic("/tenants/EL1/v1/ack", "EL1"));
        assert!(!is_ack_topic("/tenants/EL12/v1/ack", "EL1"));
        assert!(!is_ack_topic("/tenants/EL1/v1/#", "EL1"));
        assert!(!is_ack_topic("/tenants/EL2/v1/ack", "EL1"));
    }

    #[test]
    fn recognises_only_the_engines_own_output() {
        assert!(is_engine_output("/tenants/EL1/v1/ack"));
        assert!(is_engine_output("/tenants/r440700/v1/alarms/elevator/EQ1"));
        assert!(!is_engine_output("/tenants/EL1/v1/ack/x"));
        assert!(!is_engine_output("/tenants/EL1/v1/elevator"));
        assert!(!is_engine_output("/tenants/EL1/v2/ack"));
    }
}
