//! Topic access control on the broker's wire: who may subscribe and
//! publish where.
//!
//! rumqttd has no subscribe or publish hook, and its own tenant check needs
//! a TLS client certificate. Every packet a connection sends is decoded by
//! the `Protocol` the server was built with, one clone per connection, so
//! [`TopicGuard`] wraps the v4 codec: it learns who logged in from the
//! CONNECT packet and refuses a SUBSCRIBE or PUBLISH outside that login's
//! topics with a decode error. The router never sees the offending packet;
//! rumqttd closes the connection (as its own tenant check does).
//!
//! - A device (`username = device_id`) may subscribe only to its ack topic
//!   and may not publish on the engine's output topics (acks, alarm feed).
//!   What it publishes outside `/tenants/{its id}/` is moved under its own
//!   name (`codec::foreign_topic`): no device can forge another's readings,
//!   and nothing it sends is dropped unseen.
//! - A feed reader (`username = token:…`, password = bearer token) may only
//!   subscribe under `/tenants/r{region}/v1/alarms/` of the regions its
//!   token grants (any region for an admin token) and may not publish. Its
//!   token is checked again at every packet it sends and before every alarm
//!   it is sent: once the token is revoked or expired, the connection is
//!   closed at its next packet either way, and no alarm reaches it after.

use std::sync::Arc;

use bytes::BytesMut;
use prometheus::IntCounterVec;
use rumqttd::protocol::v4::V4;
use rumqttd::protocol::{Error, Packet, Protocol};
use tracing::info;
use vigil_model::Region;

use crate::Directory;

/// Usernames of alarm-feed logins start with this; the rest is a free label
/// for logs. A device id (letters and digits) can never look like it.
pub const FEED_USER_PREFIX: &str = "token:";

/// What a feed login's bearer token lets it read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedGrant {
    /// Every region (the admin token).
    All,
    /// These regions and their sub-regions.
    Regions(Vec<Region>),
}

impl FeedGrant {
    pub fn covers(&self, region: &Region) -> bool {
        match self {
            FeedGrant::All => true,
            FeedGrant::Regions(grants) => grants.iter().any(|g| g.covers(region)),
        }
    }
}

/// The MQTT tenant of a region's alarm feed: `r` + the 6-digit code.
pub fn region_tenant(region: &Region) -> String {
    format!("r{region}")
}

#[derive(Debug, Clone)]
enum Login {
    /// Before CONNECT.
    Unknown,
    Device(String),
    /// The bearer token is kept to be checked again (revocation, expiry).
    Feed {
        grant: FeedGrant,
        token: String,
    },
    /// A feed login whose token grants nothing; CONNECT auth refuses it too.
    Nobody,
}

/// The v4 codec plus the per-connection access check. The server keeps one
/// template (login unknown) and clones it for every connection.
#[derive(Clone)]
pub(crate) struct TopicGuard {
    codec: V4,
    directory: Arc<dyn Directory>,
    /// `vigil_mqtt_refused_total{packet}`.
    refusals: IntCounterVec,
    login: Login,
}

impl TopicGuard {
    pub fn new(directory: Arc<dyn Directory>, refusals: IntCounterVec) -> TopicGuard {
        TopicGuard {
            codec: V4,
            directory,
            refusals,
            login: Login::Unknown,
        }
    }

    /// Applies the access rules to one decoded packet; may adjust CONNECT.
    fn check(&mut self, packet: &mut Packet) -> Result<(), Refusal> {
        match packet {
            Packet::Connect(connect, _, _, _, login) => {
                let username = login.as_ref().map_or("", |l| l.username.as_str());
                self.login = if username.starts_with(FEED_USER_PREFIX) {
                    // A feed session must not inherit another login's
                    // subscriptions under a reused client id.
                    connect.clean_session = true;
                    let token = login.as_ref().map_or("", |l| l.password.as_str());
                    match self.directory.feed_grant(token) {
                        Some(grant) => Login::Feed {
                            grant,
                            token: token.to_owned(),
                        },
                        None => Login::Nobody,
                    }
                } else {
                    Login::Device(username.to_owned())
                };
                Ok(())
            }
            _ if !self.feed_token_valid() => Err(Refusal::TokenInvalid),
            Packet::Subscribe(subscribe, _) => {
                for filter in &subscribe.filters {
                    let allowed = match &self.login {
                        Login::Device(id) => is_ack_topic(&filter.path, id),
                        Login::Feed { grant, .. } => feed_filter_allowed(&filter.path, grant),
                        Login::Unknown | Login::Nobody => false,
                    };
                    if !allowed {
                        return Err(Refusal::Subscribe(filter.path.clone()));
                    }
                }
                Ok(())
            }
            Packet::Publish(publish, _) => {
                let topic = String::from_utf8_lossy(&publish.topic).into_owned();
                let Login::Device(id) = &self.login else {
                    return Err(Refusal::Publish(topic));
                };
                if is_engine_output(&topic) {
                    return Err(Refusal::Publish(topic));
                }
                // Outside its own topics (another device's, or none the
                // engine listens to): the message stays this device's, as a
                // `foreign_topic` dead letter, instead of being taken as a
                // reading of the device it names or dropped unseen. Kept,
                // not refused, so the mistake is counted and the session
                // goes on.
                let own = topic
                    .strip_prefix("/tenants/")
                    .and_then(|rest| rest.strip_prefix(id.as_str()))
                    .is_some_and(|after| after.starts_with('/'));
                if !own {
                    publish.topic = vigil_model::codec::foreign_topic(id, &topic).into();
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
            Login::Feed { token, .. } => self.directory.feed_grant(token).is_some(),
            _ => true,
        }
    }

    fn who(&self) -> String {
        match &self.login {
            Login::Unknown => "(before CONNECT)".to_owned(),
            Login::Device(id) => format!("device {id}"),
            Login::Feed {
                grant: FeedGrant::All,
                ..
            } => "feed reader (all regions)".to_owned(),
            Login::Feed {
                grant: FeedGrant::Regions(rs),
                ..
            } => format!(
                "feed reader [{}]",
                rs.iter().map(Region::as_str).collect::<Vec<_>>().join(",")
            ),
            Login::Nobody => "feed reader without a grant".to_owned(),
        }
    }
}

enum Refusal {
    Subscribe(String),
    Publish(String),
    /// A feed login whose token was revoked or expired.
    TokenInvalid,
}

impl Protocol for TopicGuard {
    fn read_mut(&mut self, stream: &mut BytesMut, max_size: usize) -> Result<Packet, Error> {
        let mut packet = self.codec.read_mut(stream, max_size)?;
        match self.check(&mut packet) {
            Ok(()) => Ok(packet),
            Err(refusal) => {
                let who = self.who();
                match refusal {
                    Refusal::Subscribe(filter) => {
                        self.refusals.with_label_values(&["subscribe"]).inc();
                        info!(login = %who, filter = %filter, "MQTT SUBSCRIBE refused: outside the login's topics; closing the connection.");
                    }
                    Refusal::Publish(topic) => {
                        self.refusals.with_label_values(&["publish"]).inc();
                        info!(login = %who, topic = %topic, "MQTT PUBLISH refused: not a topic this login may write; closing the connection.");
                    }
                    Refusal::TokenInvalid => {
                        self.refusals.with_label_values(&["token"]).inc();
                        info!(login = %who, "MQTT feed session closed: its token was revoked or expired.");
                    }
                }
                // Any decode error makes rumqttd drop the connection.
                Err(Error::InvalidProtocol)
            }
        }
    }

    fn write(&self, packet: Packet, write: &mut BytesMut) -> Result<usize, Error> {
        // No alarm goes out on a revoked token: the error ends the
        // connection before anything of this batch is written.
        if matches!(packet, Packet::Publish(..)) && !self.feed_token_valid() {
            self.refusals.with_label_values(&["token"]).inc();
            info!(login = %self.who(), "MQTT feed session closed before a delivery: its token was revoked or expired.");
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

/// `/tenants/+/v1/ack` and `/tenants/+/v1/alarms/…`: only the engine
/// writes there.
pub(crate) fn is_engine_output(topic: &str) -> bool {
    let mut parts = topic.split('/');
    let (Some(""), Some("tenants"), Some(_), Some("v1"), Some(leaf)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    match leaf {
        "ack" => parts.next().is_none(),
        "alarms" => true,
        _ => false,
    }
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
