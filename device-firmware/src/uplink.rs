//! One device's MQTT session: publishes its durable spooled messages at
//! QoS 1 in `seq` order, feeds the engine's acks back to the spool, and
//! re-sends from the watermark after a reconnect or when acks stall.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, EventLoop, MqttOptions, Outgoing, Packet, QoS};
use tokio::sync::watch;
use tokio::time::{MissedTickBehavior, interval, sleep};
use tracing::{debug, info, warn};
use vigil_model::EpochMs;

use crate::gateway::{Shared, mono_ms, wall_ms};
use crate::sampler::{Message, SPOOL_FULL_CODE};

/// Requests between this task and its event loop; publishing never waits
/// on it: what does not fit stays in the spool for the next round.
const REQUEST_CHANNEL: usize = 64;
const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// One device's link to the broker.
pub(crate) struct Uplink {
    pub index: usize,
    pub id: String,
    pub options: MqttOptions,
    pub stall_ms: EpochMs,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Link {
    generation: u64,
    connected: bool,
}

pub(crate) async fn run(
    up: Uplink,
    shared: Arc<Shared>,
    mut durable: watch::Receiver<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let (client, eventloop) = AsyncClient::new(up.options.clone(), REQUEST_CHANNEL);
    let (link_tx, mut link_rx) = watch::channel(Link::default());
    let (ack_tx, mut ack_rx) = watch::channel(0u64);
    let poller = tokio::spawn(poll(
        eventloop,
        up.id.clone(),
        link_tx,
        ack_tx,
        shutdown.clone(),
    ));
    let ack_topic = format!("/tenants/{}/v1/ack", up.id);
    let mut link = Link::default();
    let mut ticks = interval(Duration::from_millis(500));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                if link.connected {
                    let stalled = shared.spool.lock().stalled(up.index, mono_ms(), up.stall_ms);
                    if stalled {
                        debug!(device = %up.id, "Acks stalled: re-sending from the watermark.");
                        shared.spool.lock().rewind(up.index, mono_ms());
                    }
                    pump(&up, &shared, &client);
                }
            }
            Ok(()) = durable.changed() => {
                durable.borrow_and_update();
                if link.connected {
                    pump(&up, &shared, &client);
                }
            }
            Ok(()) = ack_rx.changed() => {
                let seq = *ack_rx.borrow_and_update();
                on_ack(&up, &shared, seq);
            }
            Ok(()) = link_rx.changed() => {
                let new = *link_rx.borrow_and_update();
                if new.connected && new.generation != link.generation {
                    // A new session: subscribe again, re-send all not covered.
                    if let Err(e) = client.try_subscribe(ack_topic.clone(), QoS::AtLeastOnce) {
                        warn!(device = %up.id, error = %e, "Could not subscribe to acks.");
                    }
                    shared.spool.lock().rewind(up.index, mono_ms());
                    pump(&up, &shared, &client);
                }
                link = new;
            }
            Ok(()) = shutdown.changed() => {
                if *shutdown.borrow() {
                    break;
                }
            }
        }
    }
    let _ = client.try_disconnect();
    drop(client);
    if tokio::time::timeout(Duration::from_secs(3), poller)
        .await
        .is_err()
    {
        debug!(device = %up.id, "Event loop did not stop in time.");
    }
}

fn on_ack(up: &Uplink, shared: &Shared, seq: u64) {
    let mut spool = shared.spool.lock();
    match spool.ack(up.index, seq, mono_ms()) {
        Ok(true) => {
            shared.stats.acks.fetch_add(1, Ordering::Relaxed);
            // The end of a "spool full" episode: below half the bound again.
            let (used, max) = spool.usage();
            let mut full = shared.full.lock();
            if full[up.index] && used < max / 2 {
                full[up.index] = false;
                let msg = Message::event(
                    wall_ms(),
                    SPOOL_FULL_CODE,
                    Some("Spool has room again".into()),
                    false,
                );
                if let Err(e) = spool.append(up.index, msg.stream, msg.class, |seq| msg.json(seq)) {
                    warn!(device = %up.id, error = %e, "Could not spool an event.");
                }
            }
        }
        Ok(false) => {}
        Err(e) => warn!(device = %up.id, error = %e, "Spool could not release acked messages."),
    }
}

/// Hands the broker every durable message the cursor has, until the
/// request channel is full.
fn pump(up: &Uplink, shared: &Shared, client: &AsyncClient) {
    let mut spool = shared.spool.lock();
    while let Some(rec) = spool.next_to_send(up.index) {
        let topic = format!("/tenants/{}/v1/{}", up.id, rec.stream.as_str());
        if client
            .try_publish(topic, QoS::AtLeastOnce, false, rec.payload.clone())
            .is_err()
        {
            break;
        }
        shared.stats.published.fetch_add(1, Ordering::Relaxed);
        if spool.mark_sent(up.index, &rec) {
            shared.stats.resent.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Polls the event loop (polling again reconnects) and reports the link
/// and acks; back-off grows with failures, with jitter.
async fn poll(
    mut eventloop: EventLoop,
    device: String,
    link: watch::Sender<Link>,
    acks: watch::Sender<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let ack_topic = format!("/tenants/{device}/v1/ack");
    let mut generation = 0;
    let mut failures: u32 = 0;
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Packet::ConnAck(_))) => {
                generation += 1;
                if failures > 0 {
                    info!(device = %device, after_failures = failures, "Connected to the broker again.");
                } else {
                    info!(device = %device, "Connected to the broker.");
                }
                failures = 0;
                link.send_replace(Link {
                    generation,
                    connected: true,
                });
            }
            Ok(Event::Incoming(Packet::Publish(p))) if p.topic == ack_topic => {
                #[derive(serde::Deserialize)]
                struct Ack {
                    seq: u64,
                }
                match serde_json::from_slice::<Ack>(&p.payload) {
                    Ok(a) => {
                        acks.send_if_modified(|cur| {
                            let newer = a.seq > *cur;
                            if newer {
                                *cur = a.seq;
                            }
                            newer
                        });
                    }
                    Err(_) => {
                        debug!(device = %device, "Ignoring an ack that is not {{\"seq\": N}}.")
                    }
                }
            }
            Ok(Event::Outgoing(Outgoing::Disconnect)) => break,
            Ok(_) => {}
            Err(ConnectionError::RequestsDone) => break,
            Err(e) => {
                link.send_if_modified(|l| std::mem::replace(&mut l.connected, false));
                if *shutdown.borrow() {
                    break;
                }
                failures += 1;
                if failures == 1 || failures.is_multiple_of(20) {
                    warn!(device = %device, error = %e, failures, "MQTT connection lost or refused; retrying with back-off.");
                }
                let backoff = (Duration::from_millis(250) * 2u32.saturating_pow(failures.min(8)))
                    .min(MAX_BACKOFF)
                    + Duration::from_millis(rand::random::<u64>() % 500);
                tokio::select! {
                    _ = sleep(backoff) => {}
                    _ = shutdown.wait_for(|s| *s) => break,
                }
            }
        }
    }
    link.send_if_modified(|l| std::mem::replace(&mut l.connected, false));
}
