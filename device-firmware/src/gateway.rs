//! The running gateway: one poller and one uplink per configured device,
//! one spool for all of them, one flusher that groups the spool's fsyncs.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{info, warn};
use vigil_model::EpochMs;

use crate::config::{Device, GatewayConfig, Login, MqttConfig};
use crate::error::EdgeError;
use crate::modbus::Poller;
use crate::sampler::{Message, SPOOL_FULL_CODE, Sampler};
use crate::spool::{Dropped, Spool, SpoolLimits, SpoolStats};
use crate::uplink::{self, Uplink};

/// What the pollers, uplinks and flusher share. The spool's lock is held
/// for appends, reads and acks only (page-cache work, microseconds); the
/// fsync runs outside it.
pub(crate) struct Shared {
    pub spool: Mutex<Spool>,
    /// Per device: a "spool full" event is active.
    pub full: Mutex<Vec<bool>>,
    pub stats: Counters,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub published: AtomicU64,
    pub resent: AtomicU64,
    pub acks: AtomicU64,
    pub polls: AtomicU64,
    pub poll_errors: AtomicU64,
}

/// Milliseconds on a monotonic clock (cadence, stall detection).
pub(crate) fn mono_ms() -> EpochMs {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as EpochMs
}

/// Wall-clock milliseconds since the epoch (message `ts`).
pub(crate) fn wall_ms() -> EpochMs {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as EpochMs)
}

/// What a gateway run did, reported when it stops.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Report {
    pub polls: u64,
    pub poll_errors: u64,
    pub published: u64,
    pub resent: u64,
    pub spool: SpoolStats,
}

/// Runs the gateway until `shutdown` turns true; then every task stops,
/// the spool is synced and its state saved, and the sessions close.
pub async fn run(
    cfg: GatewayConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<Report, EdgeError> {
    let ids: Vec<String> = cfg.devices.iter().map(|d| d.id.clone()).collect();
    let limits = SpoolLimits {
        max_bytes: cfg.spool.max_mb * 1024 * 1024,
        segment_bytes: cfg.spool.segment_kb * 1024,
    };
    let spool = Spool::open(&cfg.spool.dir, limits, &ids, wall_ms())?;
    let shared = Arc::new(Shared {
        spool: Mutex::new(spool),
        full: Mutex::new(vec![false; ids.len()]),
        stats: Counters::default(),
    });
    // Bumped after every fsync: uplinks then publish what became durable.
    let (durable_tx, durable_rx) = watch::channel(0u64);
    let mut tasks = JoinSet::new();
    for (i, dev) in cfg.devices.iter().enumerate() {
        let options = mqtt_options(&cfg.mqtt, dev)?;
        tasks.spawn(uplink::run(
            Uplink {
                index: i,
                id: dev.id.clone(),
                options,
                stall_ms: (cfg.mqtt.ack_stall_s * 1000) as EpochMs,
            },
            Arc::clone(&shared),
            durable_rx.clone(),
            shutdown.clone(),
        ));
        tasks.spawn(poll_device(
            i,
            dev.clone(),
            Arc::clone(&shared),
            shutdown.clone(),
        ));
        info!(device = %dev.id, controller = %dev.controller, map = %dev.map.name, "Device configured.");
    }
    let flusher = tokio::spawn(flush(
        Arc::clone(&shared),
        Duration::from_millis(cfg.spool.sync_ms.max(1)),
        durable_tx,
        shutdown.clone(),
    ));
    let _ = shutdown.wait_for(|s| *s).await;
    info!("Stopping.");
    let _ = flusher.await;
    while tasks.join_next().await.is_some() {}
    let mut spool = shared.spool.lock();
    spool.sync_now()?;
    spool.save_state()?;
    let report = Report {
        polls: shared.stats.polls.load(Ordering::Relaxed),
        poll_errors: shared.stats.poll_errors.load(Ordering::Relaxed),
        published: shared.stats.published.load(Ordering::Relaxed),
        resent: shared.stats.resent.load(Ordering::Relaxed),
        spool: spool.stats(),
    };
    info!(
        appended = report.spool.appended,
        payload_bytes = report.spool.payload_bytes,
        file_bytes = report.spool.file_bytes,
        fsyncs = report.spool.fsyncs,
        published = report.published,
        resent = report.resent,
        polls = report.polls,
        poll_errors = report.poll_errors,
        "Gateway stopped."
    );
    Ok(report)
}

/// Groups fsyncs: at most one per `every`, only when something was written.
async fn flush(
    shared: Arc<Shared>,
    every: Duration,
    durable: watch::Sender<u64>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_report = Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        let job = shared.spool.lock().sync_job();
        if let Some((file, seg, off)) = job {
            match tokio::task::spawn_blocking(move || file.sync_data()).await {
                Ok(Ok(())) => {
                    shared.spool.lock().synced(seg, off);
                    durable.send_modify(|n| *n += 1);
                }
                Ok(Err(e)) => warn!(error = %e, "Spool fsync failed; retrying."),
                Err(e) => warn!(error = %e, "Spool fsync task failed."),
            }
        }
        if last_report.elapsed() >= Duration::from_secs(60) {
            last_report = Instant::now();
            let spool = shared.spool.lock();
            let (used, max) = spool.usage();
            info!(
                spool_bytes = used,
                spool_max = max,
                published = shared.stats.published.load(Ordering::Relaxed),
                resent = shared.stats.resent.load(Ordering::Relaxed),
                polls = shared.stats.polls.load(Ordering::Relaxed),
                poll_errors = shared.stats.poll_errors.load(Ordering::Relaxed),
                "Gateway running."
            );
        }
    }
}

/// Appends `msg` for device `d`, turning what the bound dropped into a
/// "spool full" event for each device that lost messages.
pub(crate) fn spool_message(shared: &Shared, d: usize, msg: &Message) -> Result<u64, EdgeError> {
    let mut spool = shared.spool.lock();
    let (seq, dropped) = spool.append(d, msg.stream, msg.class, |seq| msg.json(seq))?;
    for (dev, Dropped { periodic, other }) in dropped {
        let mut full = shared.full.lock();
        warn!(
            device = dev,
            periodic, other, "Spool full: dropped the oldest periodic samples."
        );
        if !full[dev] {
            full[dev] = true;
            let text = format!(
                "Spool full: dropped {periodic} periodic samples and {other} state changes or events; faults and state changes are kept first"
            );
            let ev = Message::event(wall_ms(), SPOOL_FULL_CODE, Some(text), true);
            spool.append(dev, ev.stream, ev.class, |seq| ev.json(seq))?;
        }
    }
    Ok(seq)
}

/// Polls one controller forever: samples into the spool, a failing
/// controller into an event and a growing pause (never a busy loop).
async fn poll_device(
    d: usize,
    dev: Device,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut poller = Poller::new(dev.controller.clone(), dev.unit, dev.timeout, &dev.map);
    let mut sampler = Sampler::new(dev.map.clone());
    let mut failures: u32 = 0;
    let mut tick = tokio::time::interval(dev.poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
        shared.stats.polls.fetch_add(1, Ordering::Relaxed);
        let messages = match poller.poll().await {
            Ok(image) => {
                if failures > 0 {
                    info!(device = %dev.id, after_failures = failures, "Controller answers again.");
                }
                failures = 0;
                let ts = wall_ms();
                let mut out = sampler.on_poll(&image, ts, mono_ms());
                if let Some(rec) = sampler.ready_record(&image, ts) {
                    match take_record(d, &dev, &shared, &mut poller, rec).await {
                        Ok(()) => {}
                        Err(e) => {
                            warn!(device = %dev.id, error = %e, "Filling record not taken yet.")
                        }
                    }
                }
                std::mem::take(&mut out)
            }
            Err(e) => {
                failures += 1;
                shared.stats.poll_errors.fetch_add(1, Ordering::Relaxed);
                if failures == 1 || failures.is_multiple_of(20) {
                    warn!(device = %dev.id, error = %e, failures, "Controller poll failed.");
                }
                let out: Vec<Message> = sampler
                    .on_error(wall_ms(), &e.to_string())
                    .into_iter()
                    .collect();
                for msg in &out {
                    if let Err(e) = spool_message(&shared, d, msg) {
                        warn!(device = %dev.id, error = %e, "Could not spool a message.");
                    }
                }
                // Back off: 0.5 s doubling to 30 s, on top of the poll period.
                let pause = (Duration::from_millis(250) * 2u32.saturating_pow(failures.min(7)))
                    .min(Duration::from_secs(30));
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.wait_for(|s| *s) => return,
                }
                continue;
            }
        };
        for msg in &messages {
            if let Err(e) = spool_message(&shared, d, msg) {
                warn!(device = %dev.id, error = %e, "Could not spool a message.");
            }
        }
    }
}

/// A filling record: spooled and fsynced before the scale is told it may
/// forget it; a record the spool already has (the gateway crashed before
/// its ack reached the scale) is only acknowledged again.
async fn take_record(
    d: usize,
    dev: &Device,
    shared: &Shared,
    poller: &mut Poller,
    rec: crate::sampler::ReadyRecord,
) -> Result<(), EdgeError> {
    let known = shared.spool.lock().record_id(d) == Some(rec.id);
    if !known {
        spool_message(shared, d, &rec.message)?;
        // fsync now (rare: one per filling), outside the async thread.
        let job = shared.spool.lock().sync_job();
        if let Some((file, seg, off)) = job {
            tokio::task::spawn_blocking(move || file.sync_data())
                .await
                .map_err(|e| EdgeError::io("cannot sync spool", "spool", std::io::Error::other(e)))?
                .map_err(|e| EdgeError::io("cannot sync spool", "spool", e))?;
            shared.spool.lock().synced(seg, off);
        }
        info!(device = %dev.id, record = rec.id, "Filling record spooled.");
    }
    let ack = dev
        .map
        .record
        .as_ref()
        .map(|h| h.ack.address)
        .unwrap_or_default();
    poller.write_coil(ack, true).await
}

/// MQTT options of one device: plain with its secret, or mutual TLS with
/// its certificate.
fn mqtt_options(mqtt: &MqttConfig, dev: &Device) -> Result<MqttOptions, EdgeError> {
    let (host, port) = split_host_port(&mqtt.broker)?;
    let mut opts = MqttOptions::new(dev.id.clone(), host.clone(), port);
    opts.set_keep_alive(Duration::from_secs(mqtt.keep_alive_s.max(5)))
        .set_clean_session(true)
        .set_max_packet_size(
            vigil_model::MAX_PAYLOAD_BYTES + 1024,
            vigil_model::MAX_PAYLOAD_BYTES + 1024,
        );
    match &dev.login {
        Login::Secret(secret) => {
            opts.set_credentials(dev.id.clone(), secret.clone());
        }
        Login::Certificate { cert, key } => {
            let ca = mqtt
                .ca
                .as_ref()
                .ok_or_else(|| EdgeError::Tls("a certificate login needs [mqtt] ca".into()))?;
            let config = crate::tls::client_config(ca, cert, key)?;
            opts.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(config),
            )));
            if let Some(name) = &mqtt.server_name {
                // rumqttc takes the TLS server name from the broker host.
                opts = rebuild_with_host(opts, dev, name, port);
            }
        }
    }
    Ok(opts)
}

/// The same options towards `host` (the certificate's name) at `port`.
/// rumqttc resolves the host for the TCP connection too, so `server_name`
/// must also resolve to the broker (e.g. through /etc/hosts).
fn rebuild_with_host(opts: MqttOptions, dev: &Device, host: &str, port: u16) -> MqttOptions {
    let mut new = MqttOptions::new(dev.id.clone(), host, port);
    new.set_keep_alive(opts.keep_alive())
        .set_clean_session(true)
        .set_max_packet_size(
            vigil_model::MAX_PAYLOAD_BYTES + 1024,
            vigil_model::MAX_PAYLOAD_BYTES + 1024,
        )
        .set_transport(opts.transport());
    new
}

fn split_host_port(s: &str) -> Result<(String, u16), EdgeError> {
    let bad = || EdgeError::Tls(format!("[mqtt] broker {s:?} is not host:port"));
    let (host, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let port = port.parse().map_err(|_| bad())?;
    Ok((host.trim_matches(['[', ']']).to_owned(), port))
}
