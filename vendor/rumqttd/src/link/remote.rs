use crate::link::direct::DirectIngest;
use crate::link::local::{LinkError, LinkRx, LinkTx};
use crate::link::mailbox::{self, Mailboxes};
use crate::link::network;
use crate::link::network::Network;
use crate::local::LinkBuilder;
use crate::protocol::{
    ConnAck, Connect, ConnectReturnCode, Login, Packet, Protocol, PubAck, PubAckReason, Publish,
    QoS, SubAck, SubscribeReasonCode, UnsubAck, UnsubAckReason,
};
use crate::router::{Event, Notification};
use crate::{ConnectionId, ConnectionSettings};

use flume::{RecvError, SendError, Sender, TrySendError};
use std::cmp::min;
use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::time::Duration;
use subtle::ConstantTimeEq;
use tokio::time::error::Elapsed;
use tokio::{select, time};
use tracing::{trace, Span};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("I/O")]
    Io(#[from] io::Error),
    #[error("Zero keep alive")]
    ZeroKeepAlive,
    #[error("Not connect packet")]
    NotConnectPacket(Packet),
    #[error("Network {0}")]
    Network(#[from] network::Error),
    #[error("Timeout")]
    Timeout(#[from] Elapsed),
    #[error("Channel send error")]
    Send(#[from] SendError<(ConnectionId, Event)>),
    #[error("Channel recv error")]
    Recv(#[from] RecvError),
    #[error("Got new session, disconnecting old one")]
    SessionEnd,
    #[error("Persistent session requires valid client id")]
    InvalidClientId,
    #[error("Unexpected router message")]
    NotConnectionAck,
    #[error("ConnAck error {0}")]
    ConnectionAck(String),
    #[error("Authentication error")]
    InvalidAuth,
    #[error("Channel try send error")]
    TrySend(#[from] TrySendError<(ConnectionId, Event)>),
    #[error("Link error = {0}")]
    Link(#[from] LinkError),
    /// Vigil patch: the embedder no longer takes direct publishes.
    #[error("Direct ingest is gone")]
    DirectGone,
}

/// Orchestrates between Router and Network.
pub struct RemoteLink<P> {
    connect: Connect,
    pub(crate) connection_id: ConnectionId,
    network: Network<P>,
    link_tx: LinkTx,
    link_rx: LinkRx,
    notifications: VecDeque<Notification>,
    pub(crate) will_delay_interval: u32,
    /// Vigil patch: publishes taken past the router (`link/direct.rs`),
    /// those read but still waiting for budget (in order), and the packet
    /// ids to PUBACK for those handed over (ids, not `Packet`s of ~400 B
    /// each: the queue keeps its room for the connection's life).
    direct: Option<DirectIngest>,
    waiting: VecDeque<Publish>,
    pubacks: VecDeque<u16>,
    /// Vigil patch: this client's mailbox (`link/mailbox.rs`), and when
    /// the PUBACKs held for its next write are due.
    mail: Option<mailbox::Reader>,
    pubacks_due: Option<time::Instant>,
}

impl<P: Protocol> RemoteLink<P> {
    pub async fn new(
        router_tx: Sender<(ConnectionId, Event)>,
        tenant_id: Option<String>,
        mut network: Network<P>,
        connect_packet: Packet,
        dynamic_filters: bool,
        assigned_client_id: Option<String>,
        direct: Option<DirectIngest>,
        mailboxes: Option<Mailboxes>,
    ) -> Result<RemoteLink<P>, Error> {
        let Packet::Connect(connect, props, lastwill, lastwill_props, _) = connect_packet else {
            return Err(Error::NotConnectPacket(connect_packet));
        };

        // Register this connection with the router. Router replys with ack which if ok will
        // start the link. Router can sometimes reject the connection (ex max connection limit)
        let client_id = assigned_client_id.as_ref().unwrap_or(&connect.client_id);
        let clean_session = connect.clean_session;

        let topic_alias_max = props.as_ref().and_then(|p| p.topic_alias_max);
        let session_expiry = props
            .as_ref()
            .and_then(|p| p.session_expiry_interval)
            .unwrap_or(0);

        let delay_interval = lastwill_props
            .as_ref()
            .and_then(|f| f.delay_interval)
            .unwrap_or(0);

        // The Server delays publishing the Client’s Will Message until
        // the Will Delay Interval has passed or the Session ends, whichever happens first
        let will_delay_interval = min(session_expiry, delay_interval);

        let (link_tx, link_rx, notification) = LinkBuilder::new(client_id, router_tx)
            .tenant_id(tenant_id)
            .clean_session(clean_session)
            .last_will(lastwill)
            .last_will_properties(lastwill_props)
            .dynamic_filters(dynamic_filters)
            .topic_alias_max(topic_alias_max.unwrap_or(0))
            // Vigil patch: awaits the router's answer instead of blocking
            // the socket thread (`LinkBuilder::build_async`).
            .build_async()
            .await?;

        let id = link_rx.id();
        Span::current().record("connection_id", id);
        // Vigil patch: once the router took the connection, so that a
        // refused one does not end the session's mailbox subscription.
        let mail = mailboxes.and_then(|m| m.reader(&connect.client_id, clean_session));

        if let Some(mut packet) = notification.into() {
            if let Packet::ConnAck(_ack, props) = &mut packet {
                let mut new_props = props.clone().unwrap_or_default();
                new_props.assigned_client_identifier = assigned_client_id;
                *props = Some(new_props);
                network.write(packet).await?;
            }
        }

        Ok(RemoteLink {
            connect,
            connection_id: id,
            network,
            link_tx,
            link_rx,
            // Vigil patch: small at first, grown on demand.
            notifications: VecDeque::with_capacity(crate::router::INITIAL_CHANNEL_CAPACITY),
            will_delay_interval,
            direct,
            waiting: VecDeque::new(),
            pubacks: VecDeque::new(),
            mail,
            pubacks_due: None,
        })
    }

    pub async fn start(&mut self) -> Result<(), Error> {
        self.network.set_keepalive(self.connect.keep_alive);

        // Note:
        // Shouldn't result in bounded queue deadlocks because of blocking n/w send
        loop {
            // Vigil patch: while the router has not taken what was read (it
            // holds publishes for a full lossless log), the socket is not
            // read; the router wakes this link when it drains the buffer.
            // Nor is it while direct publishes wait for budget.
            let room = self.link_tx.buffer().len() < self.network.max_connection_buffer_len
                && self.waiting.is_empty();
            let budget = self
                .waiting
                .front()
                .zip(self.direct.as_ref())
                .map(|(head, direct)| direct.budget(head));
            let budget = async move {
                match budget {
                    Some(budget) => budget.await,
                    None => std::future::pending().await,
                }
            };
            // Vigil patch: a value was put into this client's mailbox.
            let mail = self.mail.as_ref().map(mailbox::Reader::notify);
            let mail = async move {
                match mail {
                    Some(notify) => notify.notified().await,
                    None => std::future::pending().await,
                }
            };
            let pubacks_due = self.pubacks_due;
            select! {
                o = self.network.read(), if room => {
                    let packet = o?;
                    // Vigil patch: direct publishes are kept apart from what
                    // goes to the router. The packets read after the first
                    // go in a queue made for them: most reads hold one, and
                    // a queue kept for the next read kept 1.5 KiB or more
                    // for the connection's life.
                    let mut more = VecDeque::new();
                    self.network.readv(&mut more)?;
                    let mut routed = 0;
                    let mut replies = Vec::new();
                    {
                        let mut buffer = self.link_tx.buffer();
                        for packet in std::iter::once(packet).chain(more) {
                            match packet {
                                Packet::Publish(publish, _)
                                    if self.direct.as_ref().is_some_and(|d| d.takes(&publish)) =>
                                {
                                    self.waiting.push_back(publish)
                                }
                                packet => {
                                    if let Some(packet) = mail_packet(
                                        &mut self.mail,
                                        self.connect.clean_session,
                                        packet,
                                        &mut replies,
                                    ) {
                                        buffer.push_back(packet);
                                        routed += 1;
                                    }
                                }
                            }
                        }
                    }
                    trace!("Packets read from network, routed = {}", routed);
                    self.hand_over(None)?;
                    self.write_replies(replies, false).await?;
                    if routed > 0 {
                        self.link_tx.notify().await?;
                    }
                }
                // Vigil patch: the budget came back for the first waiting publish.
                permit = budget, if !self.waiting.is_empty() => {
                    self.hand_over(Some(permit))?;
                    self.write_replies(Vec::new(), false).await?;
                }
                () = mail => self.write_replies(Vec::new(), true).await?,
                // Vigil patch: no mailbox write came for the held PUBACKs.
                () = time::sleep_until(pubacks_due.unwrap_or_else(time::Instant::now)),
                    if pubacks_due.is_some() => self.write_replies(Vec::new(), true).await?,
                // Receive from router when previous when state isn't in collision
                // due to previously received data request
                o = self.link_rx.exchange(&mut self.notifications) => {
                    o?;
                    let mut packets = VecDeque::new();
                    let mut unscheduled = false;

                    for notif in self.notifications.drain(..) {
                        if let Some(packet) = notif.into() {
                            packets.push_back(packet);
                        } else {
                            unscheduled = true;
                        }

                    }
                    self.network.writev(packets).await?;
                    if unscheduled {
                        self.link_rx.wake().await?;
                    }
                }
            }
        }
    }

    /// Vigil patch: hands waiting publishes over in order, the first with
    /// `first` if given, the rest while budget is there, and queues the
    /// PUBACK of each QoS 1 publish handed over.
    fn hand_over(
        &mut self,
        mut first: Option<tokio::sync::OwnedSemaphorePermit>,
    ) -> Result<(), Error> {
        let Some(direct) = &self.direct else {
            return Ok(());
        };
        while let Some(head) = self.waiting.front() {
            let Some(budget) = first.take().or_else(|| direct.try_budget(head)) else {
                break;
            };
            let Some(publish) = self.waiting.pop_front() else {
                break;
            };
            let (qos, pkid) = (publish.qos, publish.pkid);
            direct
                .give(publish, budget)
                .map_err(|_| Error::DirectGone)?;
            if qos == QoS::AtLeastOnce {
                self.pubacks.push_back(pkid);
            }
        }
        Ok(())
    }

    /// Writes, in one go, the PUBACKs of the publishes handed over,
    /// `replies`, and the mailbox's new value if there is one. A client
    /// subscribed to its mailbox has its PUBACKs held (unless `flush`) until
    /// the mailbox's next write, at most `Mailboxes::hold_pubacks`: one
    /// segment then carries both (Vigil's ack usually follows a device's
    /// publish within a few ms).
    async fn write_replies(&mut self, replies: Vec<Packet>, flush: bool) -> Result<(), Error> {
        let mail = self.mail.as_mut().and_then(mailbox::Reader::take);
        let hold = match &self.mail {
            Some(reader) if !flush && mail.is_none() => reader.holds_pubacks(),
            _ => None,
        };
        if let Some(hold) = hold.filter(|_| !self.pubacks.is_empty()) {
            self.pubacks_due
                .get_or_insert_with(|| time::Instant::now() + hold);
            if replies.is_empty() {
                return Ok(());
            }
            return Ok(self.network.writev(replies).await?);
        }
        self.pubacks_due = None;
        if self.pubacks.is_empty() && replies.is_empty() && mail.is_none() {
            return Ok(());
        }
        let acks = self.pubacks.drain(..).map(|pkid| {
            let ack = PubAck {
                pkid,
                reason: PubAckReason::Success,
            };
            Packet::PubAck(ack, None)
        });
        let mail = mail.map(|publish| Packet::Publish(publish, None));
        self.network.writev(acks.chain(replies).chain(mail)).await?;
        Ok(())
    }
}

/// Vigil patch: a SUBSCRIBE or UNSUBSCRIBE of the client's mailbox topic
/// alone, and a PUBACK of a mailbox delivery, end here (their answers go to
/// `replies`); any other packet is returned, for the router.
fn mail_packet(
    mail: &mut Option<mailbox::Reader>,
    clean_session: bool,
    packet: Packet,
    replies: &mut Vec<Packet>,
) -> Option<Packet> {
    let Some(mail) = mail else {
        return Some(packet);
    };
    match packet {
        Packet::Subscribe(subscribe, _)
            if mail.takes(subscribe.filters.iter().map(|f| f.path.as_str())) =>
        {
            let persistent = !clean_session;
            let return_codes = subscribe
                .filters
                .iter()
                .map(|f| match mail.subscribe(f.qos, persistent) {
                    QoS::AtMostOnce => SubscribeReasonCode::QoS0,
                    _ => SubscribeReasonCode::QoS1,
                })
                .collect();
            let pkid = subscribe.pkid;
            replies.push(Packet::SubAck(SubAck { pkid, return_codes }, None));
            None
        }
        Packet::Unsubscribe(unsubscribe, _)
            if mail.takes(unsubscribe.filters.iter().map(String::as_str)) =>
        {
            let reason = if mail.unsubscribe() {
                UnsubAckReason::Success
            } else {
                UnsubAckReason::NoSubscriptionExisted
            };
            let reasons = vec![reason; unsubscribe.filters.len()];
            let pkid = unsubscribe.pkid;
            replies.push(Packet::UnsubAck(UnsubAck { pkid, reasons }, None));
            None
        }
        Packet::PubAck(ack, _) if ack.pkid >= mailbox::FIRST_PKID => {
            mail.acked(ack.pkid);
            None
        }
        packet => Some(packet),
    }
}

/// Read MQTT connect packet from network and verify it.
/// authentication and checks are done here.
pub async fn mqtt_connect<P>(
    config: Arc<ConnectionSettings>,
    network: &mut Network<P>,
) -> Result<Packet, Error>
where
    P: Protocol,
{
    // Wait for MQTT connect packet and error out if it's not received in time to prevent
    // DOS attacks by filling total connections that the server can handle with idle open
    // connections which results in server rejecting new connections
    let connection_timeout_ms = config.connection_timeout_ms.into();
    let packet = time::timeout(Duration::from_millis(connection_timeout_ms), async {
        let packet = network.read().await?;
        Ok::<_, network::Error>(packet)
    })
    .await??;

    let (connect, _props, login) = match packet {
        Packet::Connect(ref connect, ref props, _, _, ref login) => (connect, props, login),
        packet => return Err(Error::NotConnectPacket(packet)),
    };

    Span::current().record("client_id", &connect.client_id);

    handle_auth(config.clone(), login.as_ref(), &connect.client_id).await?;

    // When keep_alive feature is disabled client can live forever, which is not good in
    // distributed broker context so currenlty we don't allow it.
    if connect.keep_alive == 0 {
        return Err(Error::ZeroKeepAlive);
    }

    let empty_client_id = connect.client_id.is_empty();
    let clean_session = connect.clean_session;

    if empty_client_id && !clean_session {
        let ack = ConnAck {
            session_present: false,
            code: ConnectReturnCode::ClientIdentifierNotValid,
        };

        let packet = Packet::ConnAck(ack, None);
        network.write(packet).await?;

        return Err(Error::InvalidClientId);
    }

    // Ok((connect, props, lastwill, lastwill_props))
    Ok(packet)
}

async fn handle_auth(
    config: Arc<ConnectionSettings>,
    login: Option<&Login>,
    client_id: &str,
) -> Result<(), Error> {
    if config.auth.is_none() && config.external_auth.is_none() {
        return Ok(());
    }

    // if authentication is configured and connect packet doesn't have login details
    // return an error
    let Some(login) = login else {
        return Err(Error::InvalidAuth);
    };

    let username = &login.username;
    let password = &login.password;

    if let Some(auth) = &config.external_auth {
        if !auth(
            client_id.to_owned(),
            username.to_owned(),
            password.to_owned(),
        )
        .await
        {
            return Err(Error::InvalidAuth);
        }

        return Ok(());
    }

    if let Some(pairs) = &config.auth {
        if let Some(stored_password) = pairs.get(username) {
            if stored_password.as_bytes().ct_eq(password.as_bytes()).into() {
                return Ok(());
            }
        }

        return Err(Error::InvalidAuth);
    }

    Err(Error::InvalidAuth)
}

#[cfg(test)]
mod tests {
    use std::{collections::HashMap, sync::Arc};

    use crate::{protocol::Login, ConnectionSettings};

    use super::handle_auth;

    fn config() -> ConnectionSettings {
        ConnectionSettings {
            connection_timeout_ms: 0,
            max_payload_size: 0,
            max_inflight_count: 0,
            auth: None,
            external_auth: None,
            dynamic_filters: false,
            direct: None,
            mailboxes: None,
        }
    }

    fn login() -> Login {
        Login {
            username: "u".to_owned(),
            password: "p".to_owned(),
        }
    }

    #[tokio::test]
    async fn no_login_no_auth() {
        let cfg = Arc::new(config());
        let r = handle_auth(cfg, None, "").await;
        assert!(r.is_ok());
    }

    #[tokio::test]
    async fn some_login_no_auth() {
        let cfg = Arc::new(config());
        let login = login();
        let r = handle_auth(cfg, Some(&login), "").await;
        assert!(r.is_ok());
    }

    #[tokio::test]
    async fn login_matches_static_auth() {
        let login = login();
        let mut map = HashMap::<String, String>::new();
        map.insert(login.username.clone(), login.password.clone());

        let mut cfg = config();
        cfg.auth = Some(map);

        let r = handle_auth(Arc::new(cfg), Some(&login), "").await;
        assert!(r.is_ok());
    }

    #[tokio::test]
    async fn login_fails_static_no_external() {
        let login = login();
        let mut map = HashMap::<String, String>::new();
        map.insert("wrong".to_owned(), "wrong".to_owned());

        let mut cfg = config();
        cfg.auth = Some(map);

        let r = handle_auth(Arc::new(cfg), Some(&login), "").await;
        assert!(r.is_err());
    }

    #[tokio::test]
    async fn login_fails_static_matches_external() {
        let login = login();

        let mut map = HashMap::<String, String>::new();
        map.insert("wrong".to_owned(), "wrong".to_owned());

        let dynamic = |_: String, _: String, _: String| async { true };

        let mut cfg = config();
        cfg.auth = Some(map);
        cfg.set_auth_handler(dynamic);

        let r = handle_auth(Arc::new(cfg), Some(&login), "").await;
        assert!(r.is_ok());
    }

    #[tokio::test]
    async fn login_fails_static_fails_external() {
        let login = login();

        let mut map = HashMap::<String, String>::new();
        map.insert("wrong".to_owned(), "wrong".to_owned());

        let dynamic = |_: String, _: String, _: String| async { false };

        let mut cfg = config();
        cfg.auth = Some(map);
        cfg.set_auth_handler(dynamic);

        let r = handle_auth(Arc::new(cfg), Some(&login), "").await;
        assert!(r.is_err());
    }

    #[tokio::test]
    async fn external_auth_clousre_or_fnptr_type_check_or_fail_compile() {
        let closure = |_: String, _: String, _: String| async { false };
        async fn fnptr(_: String, _: String, _: String) -> bool {
            true
        }

        let mut cfg = config();
        cfg.set_auth_handler(closure);
        cfg.set_auth_handler(fnptr);
    }
}
