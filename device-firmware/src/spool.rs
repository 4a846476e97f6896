//! The on-disk spool: every message is appended here (and fsynced) before
//! it is published, and stays until the engine's ack watermark covers it.
//!
//! ```text
//!  append ─▶ active segment file (write) ─▶ flusher: fsync (grouped) ─▶ durable end
//!                                                                        │
//!  per device: send cursor (seq, file position) ─▶ next_to_send ─────────┘ (durable only)
//!  ack(seq) ─▶ watermark ─▶ segments every device has acked: state.json, then delete
//! ```
//!
//! - **Files.** `{id:016x}.seg` segment files of framed records
//!   (`len u32 | crc32 u32 | seq u64 | stream u8 | class u8 | id_len u8 |
//!   device id | JSON payload`), appended in order; `state.json` (written
//!   atomically) keeps each device's acked watermark and highest `seq`.
//! - **seq.** Assigned at append, strictly increasing per device. A
//!   message is published only once it is durable, so a `seq` the world has
//!   seen is always on disk or below a persisted watermark: after any crash
//!   the next `seq` is above both. A gateway without any state starts at
//!   the wall clock in milliseconds, above what an earlier installation sent.
//! - **Crash safety.** At open, every segment is scanned; a torn or corrupt
//!   tail (a write cut short by SIGKILL or power loss) is cut off, and what
//!   remains is fsynced before anything is sent.
//! - **Bound and priority.** Over `max_bytes`, the oldest segments are
//!   rewritten without their periodic samples (idle repeats and the 1 Hz
//!   samples of motion); only when nothing but state changes and events is
//!   left does the oldest segment go entirely. The caller turns what was
//!   dropped into an `event` for each device.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use vigil_model::{EpochMs, Stream};

use crate::error::EdgeError;

const HEADER: usize = 8;
/// seq, stream, class, id length.
const BODY_FIXED: usize = 11;
/// A record larger than this is corruption, not data (payloads are ≤ 64 KiB).
const MAX_RECORD: u32 = 256 * 1024;
const STATE_FILE: &str = "state.json";

/// How much a message matters when the spool is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// A periodic sample: an idle repeat or a 1 Hz sample of motion.
    Periodic = 0,
    /// A sample because something changed.
    Change = 1,
    /// A controller fault event, a filling record, the gateway's own events.
    Event = 2,
}

impl Class {
    fn from_u8(b: u8) -> Class {
        match b {
            0 => Class::Periodic,
            1 => Class::Change,
            _ => Class::Event,
        }
    }
}

fn stream_byte(s: Stream) -> u8 {
    match s {
        Stream::Elevator => 0,
        Stream::Ride => 1,
        Stream::Video => 2,
        Stream::Filling => 3,
        Stream::Event => 4,
    }
}

fn byte_stream(b: u8) -> Option<Stream> {
    Some(match b {
        0 => Stream::Elevator,
        1 => Stream::Ride,
        2 => Stream::Video,
        3 => Stream::Filling,
        4 => Stream::Event,
        _ => return None,
    })
}

/// Spool sizes and limits.
#[derive(Debug, Clone, Copy)]
pub struct SpoolLimits {
    pub max_bytes: u64,
    pub segment_bytes: u64,
}

/// One message as read back for sending.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub seq: u64,
    pub stream: Stream,
    pub class: Class,
    pub payload: Vec<u8>,
    /// Where the record after this one starts.
    next: Pos,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
struct Pos {
    seg: u64,
    off: u64,
}

/// What the bound dropped, per device, for the caller to report.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dropped {
    pub periodic: u64,
    /// State changes and events: lost only when nothing else was left.
    pub other: u64,
}

/// Counters of the spool's life so far (this process).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct SpoolStats {
    pub appended: u64,
    /// JSON payload bytes appended.
    pub payload_bytes: u64,
    /// Bytes this process wrote to spool files (records, compaction, state).
    pub file_bytes: u64,
    pub fsyncs: u64,
    pub dropped_periodic: u64,
    pub dropped_other: u64,
    pub segments_deleted: u64,
}

struct Segment {
    id: u64,
    path: PathBuf,
    file: File,
    bytes: u64,
    /// Per device index: lowest and highest seq in this segment.
    ranges: Vec<Option<(u64, u64)>>,
    /// Periodic samples were already dropped from it.
    compacted: bool,
}

struct Dev {
    id: String,
    next_seq: u64,
    acked: u64,
    /// Next seq to hand out for sending, and where to look for it.
    cursor_seq: u64,
    cursor: Pos,
    /// Highest seq handed out: a send at or below it is a re-send.
    max_sent: u64,
    /// When the watermark last advanced or a re-send began (monotonic ms).
    last_progress: EpochMs,
    /// The last filling-scale record id spooled for this device.
    record_id: Option<u64>,
    dropped: Dropped,
}

#[derive(Serialize, Deserialize, Default)]
struct State {
    devices: HashMap<String, DevState>,
}

#[derive(Serialize, Deserialize, Default, Clone, Copy)]
struct DevState {
    acked: u64,
    last_seq: u64,
    record_id: Option<u64>,
}

/// The gateway's spool. Not thread-safe by itself: the gateway keeps it
/// behind one mutex; only the flusher's fsync runs outside it.
pub struct Spool {
    dir: PathBuf,
    limits: SpoolLimits,
    segments: Vec<Segment>,
    next_segment: u64,
    devices: Vec<Dev>,
    /// Everything before this is fsynced.
    durable: Pos,
    stats: SpoolStats,
    /// Device indexes of records found for devices no longer configured.
    orphans: u64,
}

impl Spool {
    /// Opens (or creates) the spool in `dir` for these devices, recovering
    /// what a previous run left; `now_ms` seeds new devices' seq.
    pub fn open(
        dir: &Path,
        limits: SpoolLimits,
        device_ids: &[String],
        now_ms: EpochMs,
    ) -> Result<Spool, EdgeError> {
        std::fs::create_dir_all(dir).map_err(|e| EdgeError::io("cannot create spool", dir, e))?;
        let state: State = match std::fs::read(dir.join(STATE_FILE)) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                warn!(error = %e, "Spool state file unreadable; recovering from the segments alone.");
                State::default()
            }),
            Err(_) => State::default(),
        };
        let mut spool = Spool {
            dir: dir.to_path_buf(),
            limits,
            segments: Vec::new(),
            next_segment: 1,
            devices: device_ids
                .iter()
                .map(|id| Dev {
                    id: id.clone(),
                    next_seq: 0,
                    acked: 0,
                    cursor_seq: 0,
                    cursor: Pos::default(),
                    max_sent: 0,
                    last_progress: 0,
                    record_id: None,
                    dropped: Dropped::default(),
                })
                .collect(),
            durable: Pos::default(),
            stats: SpoolStats::default(),
            orphans: 0,
        };
        let mut ids: Vec<u64> = std::fs::read_dir(dir)
            .map_err(|e| EdgeError::io("cannot list spool", dir, e))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                u64::from_str_radix(name.strip_suffix(".seg")?, 16).ok()
            })
            .collect();
        ids.sort_unstable();
        let mut last_seq = vec![0u64; spool.devices.len()];
        for id in ids {
            let seg = spool.recover_segment(id, &mut last_seq)?;
            spool.next_segment = id + 1;
            spool.segments.push(seg);
        }
        for (i, dev) in spool.devices.iter_mut().enumerate() {
            let saved = state.devices.get(&dev.id).copied().unwrap_or_default();
            let top = last_seq[i].max(saved.last_seq).max(saved.acked);
            dev.acked = saved.acked;
            dev.record_id = dev.record_id.or(saved.record_id);
            // Nothing known at all: the wall clock in ms is above any seq an
            // earlier installation can have used at ≤ 1 message per ms.
            dev.next_seq = if top == 0 {
                now_ms.max(1) as u64
            } else {
                top + 1
            };
            dev.cursor_seq = dev.acked + 1;
            dev.max_sent = dev.acked;
        }
        if spool.orphans > 0 {
            warn!(
                records = spool.orphans,
                "Spool holds messages of devices no longer configured; they are not sent."
            );
        }
        if spool.segments.is_empty() {
            spool.new_segment()?;
        }
        // What survived a crash may sit in the page cache only: make it
        // durable before any of it is published.
        for seg in &spool.segments {
            seg.file
                .sync_data()
                .map_err(|e| EdgeError::io("cannot sync spool", &seg.path, e))?;
        }
        spool.stats.fsyncs += spool.segments.len() as u64;
        spool.durable = spool.end();
        for d in 0..spool.devices.len() {
            spool.rewind(d, 0);
        }
        let pending: u64 = spool.segments.iter().map(|s| s.bytes).sum();
        info!(dir = %dir.display(), segments = spool.segments.len(), bytes = pending, "Spool opened.");
        Ok(spool)
    }

    /// Scans one segment, cutting off a torn or corrupt tail.
    fn recover_segment(&mut self, id: u64, last_seq: &mut [u64]) -> Result<Segment, EdgeError> {
        let path = self.dir.join(format!("{id:016x}.seg"));
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| EdgeError::io("cannot open spool segment", &path, e))?;
        let len = file
            .metadata()
            .map_err(|e| EdgeError::io("cannot stat spool segment", &path, e))?
            .len();
        let mut seg = Segment {
            id,
            path: path.clone(),
            file,
            bytes: 0,
            ranges: vec![None; self.devices.len()],
            compacted: false,
        };
        let mut off = 0u64;
        while off < len {
            match read_at(&seg.file, off, true) {
                Some((rec, dev_id, size)) if off + size <= len => {
                    match self.devices.iter().position(|d| d.id == dev_id) {
                        Some(d) => {
                            extend(&mut seg.ranges[d], rec.seq);
                            last_seq[d] = last_seq[d].max(rec.seq);
                            if rec.stream == Stream::Filling
                                && let Some(id) = record_id(&rec.payload)
                            {
                                self.devices[d].record_id = Some(id);
                            }
                        }
                        None => self.orphans += 1,
                    }
                    off += size;
                }
                _ => {
                    warn!(segment = %path.display(), at = off, cut = len - off, "Spool segment has a torn or corrupt tail (a write cut short); cutting it off.");
                    seg.file
                        .set_len(off)
                        .and_then(|()| seg.file.sync_all())
                        .map_err(|e| EdgeError::io("cannot repair spool segment", &path, e))?;
                    break;
                }
            }
        }
        seg.bytes = off;
        Ok(seg)
    }

    fn new_segment(&mut self) -> Result<(), EdgeError> {
        let id = self.next_segment;
        self.next_segment += 1;
        let path = self.dir.join(format!("{id:016x}.seg"));
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| EdgeError::io("cannot create spool segment", &path, e))?;
        sync_dir(&self.dir)?;
        self.segments.push(Segment {
            id,
            path,
            file,
            bytes: 0,
            ranges: vec![None; self.devices.len()],
            compacted: false,
        });
        Ok(())
    }

    fn end(&self) -> Pos {
        self.segments.last().map_or(Pos::default(), |s| Pos {
            seg: s.id,
            off: s.bytes,
        })
    }

    pub fn device_index(&self, id: &str) -> Option<usize> {
        self.devices.iter().position(|d| d.id == id)
    }

    /// Appends one message for device `d`; `payload(seq)` builds its JSON
    /// with the `seq` it was given. Returns the seq and what the bound had
    /// to drop to make room (per device index).
    pub fn append(
        &mut self,
        d: usize,
        stream: Stream,
        class: Class,
        payload: impl FnOnce(u64) -> Vec<u8>,
    ) -> Result<(u64, Vec<(usize, Dropped)>), EdgeError> {
        let seq = self.devices[d].next_seq;
        let payload = payload(seq);
        let bytes = encode(seq, stream, class, &self.devices[d].id, &payload);
        let needs_roll = self.segments.last().is_some_and(|s| {
            s.bytes > 0 && s.bytes + bytes.len() as u64 > self.limits.segment_bytes
        });
        if needs_roll {
            self.roll()?;
        }
        let seg = self.segments.last_mut().ok_or_else(|| {
            EdgeError::io(
                "no spool segment",
                &self.dir,
                std::io::ErrorKind::NotFound.into(),
            )
        })?;
        (&seg.file)
            .write_all(&bytes)
            .map_err(|e| EdgeError::io("cannot append to spool", &seg.path, e))?;
        seg.bytes += bytes.len() as u64;
        extend(&mut seg.ranges[d], seq);
        let dev = &mut self.devices[d];
        dev.next_seq = seq + 1;
        if stream == Stream::Filling
            && let Some(id) = record_id(&payload)
        {
            dev.record_id = Some(id);
        }
        self.stats.appended += 1;
        self.stats.payload_bytes += payload.len() as u64;
        self.stats.file_bytes += bytes.len() as u64;
        let dropped = self.enforce_bound()?;
        Ok((seq, dropped))
    }

    /// Closes the active segment (fsynced) and starts a new one.
    fn roll(&mut self) -> Result<(), EdgeError> {
        if let Some(seg) = self.segments.last() {
            seg.file
                .sync_data()
                .map_err(|e| EdgeError::io("cannot sync spool", &seg.path, e))?;
            self.stats.fsyncs += 1;
            self.durable = self.durable.max(Pos {
                seg: seg.id,
                off: seg.bytes,
            });
        }
        self.new_segment()
    }

    /// What the flusher should fsync to make everything written durable:
    /// a handle of the active segment and the end it will cover.
    pub fn sync_job(&self) -> Option<(File, u64, u64)> {
        let end = self.end();
        if end <= self.durable {
            return None;
        }
        let seg = self.segments.last()?;
        let file = seg.file.try_clone().ok()?;
        Some((file, end.seg, end.off))
    }

    /// The flusher's fsync of `sync_job` finished.
    pub fn synced(&mut self, seg: u64, off: u64) {
        self.stats.fsyncs += 1;
        self.durable = self.durable.max(Pos { seg, off });
    }

    /// fsyncs the active segment now (for a filling record, which the
    /// scale forgets once the gateway acknowledges it).
    pub fn sync_now(&mut self) -> Result<(), EdgeError> {
        if let Some((file, seg, off)) = self.sync_job() {
            file.sync_data()
                .map_err(|e| EdgeError::io("cannot sync spool", &self.dir, e))?;
            self.synced(seg, off);
        }
        Ok(())
    }

    /// The seq of device `d`'s newest message, durable or not.
    pub fn last_seq(&self, d: usize) -> u64 {
        self.devices[d].next_seq.saturating_sub(1)
    }

    /// The last filling-scale record id spooled for device `d`.
    pub fn record_id(&self, d: usize) -> Option<u64> {
        self.devices[d].record_id
    }

    /// The next durable message of device `d` to publish, if any.
    pub fn next_to_send(&mut self, d: usize) -> Option<Record> {
        let (want, acked) = (self.devices[d].cursor_seq, self.devices[d].acked);
        let mut pos = self.devices[d].cursor;
        let start = self.segments.iter().position(|s| s.id >= pos.seg)?;
        if self.segments[start].id != pos.seg {
            pos = Pos {
                seg: self.segments[start].id,
                off: 0,
            };
        }
        for seg in &self.segments[start..] {
            if seg.id > self.durable.seg {
                break;
            }
            if seg.id != pos.seg {
                pos = Pos {
                    seg: seg.id,
                    off: 0,
                };
            }
            // Skip a segment that has nothing for this device.
            if seg.ranges[d].is_none_or(|(_, hi)| hi < want.max(acked + 1)) {
                pos.off = seg.bytes;
                continue;
            }
            let limit = if seg.id == self.durable.seg {
                self.durable.off
            } else {
                seg.bytes
            };
            while pos.off < limit {
                let Some((mut rec, dev_id, size)) = read_at(&seg.file, pos.off, false) else {
                    break;
                };
                let here = pos;
                pos.off += size;
                if dev_id == self.devices[d].id && rec.seq >= want && rec.seq > acked {
                    let Some((full, _, _)) = read_at(&seg.file, here.off, true) else {
                        break;
                    };
                    rec = full;
                    rec.next = pos;
                    self.devices[d].cursor = here;
                    return Some(rec);
                }
            }
        }
        self.devices[d].cursor = pos;
        None
    }

    /// `rec` (from `next_to_send`) went out; true if it was a re-send.
    pub fn mark_sent(&mut self, d: usize, rec: &Record) -> bool {
        let dev = &mut self.devices[d];
        dev.cursor = rec.next;
        dev.cursor_seq = rec.seq + 1;
        let resend = rec.seq <= dev.max_sent;
        dev.max_sent = dev.max_sent.max(rec.seq);
        resend
    }

    /// Sends again from the watermark: everything of `d` not covered.
    pub fn rewind(&mut self, d: usize, now: EpochMs) {
        let dev = &self.devices[d];
        let from = dev.acked + 1;
        let seg = self
            .segments
            .iter()
            .find(|s| s.ranges[d].is_some_and(|(_, hi)| hi >= from))
            .map_or(self.end().seg, |s| s.id);
        let dev = &mut self.devices[d];
        dev.cursor_seq = from;
        dev.cursor = Pos { seg, off: 0 };
        dev.last_progress = now;
    }

    /// Messages of `d` were sent and no ack advanced for `stall_ms`.
    pub fn stalled(&self, d: usize, now: EpochMs, stall_ms: EpochMs) -> bool {
        let dev = &self.devices[d];
        dev.max_sent > dev.acked && now - dev.last_progress >= stall_ms
    }

    /// The engine's ack `{"seq": N}` for device `d`: releases what it
    /// covers; segments no device needs any more are deleted (after the
    /// watermarks are saved). Stale acks change nothing. Returns whether
    /// the watermark moved.
    pub fn ack(&mut self, d: usize, seq: u64, now: EpochMs) -> Result<bool, EdgeError> {
        let dev = &mut self.devices[d];
        // An ack above anything this device ever spooled is not ours to
        // believe (another installation's history): cap it.
        let seq = seq.min(dev.next_seq.saturating_sub(1));
        if seq <= dev.acked {
            return Ok(false);
        }
        dev.acked = seq;
        dev.cursor_seq = dev.cursor_seq.max(seq + 1);
        dev.last_progress = now;
        self.release()?;
        Ok(true)
    }

    /// Deletes the oldest segments that every device has fully acked.
    fn release(&mut self) -> Result<(), EdgeError> {
        let n = self.segments.len();
        let done = self.segments[..n.saturating_sub(1)]
            .iter()
            .take_while(|s| {
                s.ranges
                    .iter()
                    .zip(&self.devices)
                    .all(|(r, dev)| r.is_none_or(|(_, hi)| hi <= dev.acked))
            })
            .count();
        if done == 0 {
            return Ok(());
        }
        // The watermarks first: a deleted segment's seqs must stay known.
        self.save_state()?;
        for seg in self.segments.drain(..done) {
            std::fs::remove_file(&seg.path)
                .map_err(|e| EdgeError::io("cannot delete spool segment", &seg.path, e))?;
            self.stats.segments_deleted += 1;
        }
        Ok(())
    }

    /// Writes `state.json` atomically (write, fsync, rename, fsync dir).
    pub fn save_state(&mut self) -> Result<(), EdgeError> {
        let state = State {
            devices: self
                .devices
                .iter()
                .map(|d| {
                    (
                        d.id.clone(),
                        DevState {
                            acked: d.acked,
                            last_seq: d.next_seq.saturating_sub(1),
                            record_id: d.record_id,
                        },
                    )
                })
                .collect(),
        };
        let bytes = serde_json::to_vec(&state).unwrap_or_default();
        let tmp = self.dir.join("state.json.tmp");
        let path = self.dir.join(STATE_FILE);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)
        };
        write().map_err(|e| EdgeError::io("cannot write spool state", &path, e))?;
        sync_dir(&self.dir)?;
        self.stats.fsyncs += 2;
        self.stats.file_bytes += bytes.len() as u64;
        Ok(())
    }

    fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.bytes).sum()
    }

    /// Keeps the spool under `max_bytes`: periodic samples of the oldest
    /// segments go first, then (only if that is not enough) the oldest
    /// segment whole.
    fn enforce_bound(&mut self) -> Result<Vec<(usize, Dropped)>, EdgeError> {
        let mut dropped: Vec<Dropped> = vec![Dropped::default(); self.devices.len()];
        while self.total_bytes() > self.limits.max_bytes {
            let last = self.segments.len().saturating_sub(1);
            if let Some(i) = (0..last).find(|&i| !self.segments[i].compacted) {
                self.compact(i, &mut dropped)?;
                continue;
            }
            if last == 0 {
                // Only the active segment: start a new one so it can go.
                self.roll()?;
                continue;
            }
            let seg = self.segments.remove(0);
            let mut off = 0;
            while let Some((rec, dev_id, size)) = read_at(&seg.file, off, false) {
                if let Some(d) = self.device_index(&dev_id)
                    && rec.seq > self.devices[d].acked
                {
                    if rec.class == Class::Periodic {
                        dropped[d].periodic += 1;
                    } else {
                        dropped[d].other += 1;
                    }
                }
                off += size;
            }
            std::fs::remove_file(&seg.path)
                .map_err(|e| EdgeError::io("cannot delete spool segment", &seg.path, e))?;
            self.stats.segments_deleted += 1;
            warn!(segment = %seg.path.display(), "Spool full of state changes and events: dropped its oldest segment.");
        }
        let mut out = Vec::new();
        for (d, drop) in dropped.into_iter().enumerate() {
            if drop != Dropped::default() {
                self.stats.dropped_periodic += drop.periodic;
                self.stats.dropped_other += drop.other;
                self.devices[d].dropped.periodic += drop.periodic;
                self.devices[d].dropped.other += drop.other;
                out.push((d, drop));
            }
        }
        if !out.is_empty() {
            // Seqs of dropped messages must not be reused either.
            self.save_state()?;
        }
        Ok(out)
    }

    /// Rewrites segment `i` without its periodic samples and acked messages.
    fn compact(&mut self, i: usize, dropped: &mut [Dropped]) -> Result<(), EdgeError> {
        let (id, path) = (self.segments[i].id, self.segments[i].path.clone());
        let tmp = self.dir.join(format!("{id:016x}.tmp"));
        let mut kept = Vec::new();
        let mut ranges = vec![None; self.devices.len()];
        let mut off = 0;
        while let Some((rec, dev_id, size)) = read_at(&self.segments[i].file, off, true) {
            off += size;
            let Some(d) = self.device_index(&dev_id) else {
                continue;
            };
            if rec.seq <= self.devices[d].acked {
                continue;
            }
            if rec.class == Class::Periodic {
                dropped[d].periodic += 1;
                continue;
            }
            extend(&mut ranges[d], rec.seq);
            kept.extend(encode(
                rec.seq,
                rec.stream,
                rec.class,
                &dev_id,
                &rec.payload,
            ));
        }
        let write = || -> std::io::Result<File> {
            let mut f = File::create(&tmp)?;
            f.write_all(&kept)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            OpenOptions::new().read(true).append(true).open(&path)
        };
        let file = write().map_err(|e| EdgeError::io("cannot compact spool segment", &path, e))?;
        sync_dir(&self.dir)?;
        self.stats.fsyncs += 2;
        self.stats.file_bytes += kept.len() as u64;
        let seg = &mut self.segments[i];
        seg.file = file;
        seg.bytes = kept.len() as u64;
        seg.ranges = ranges;
        seg.compacted = true;
        // Cursors into the rewritten file start over at its beginning; their
        // seq still says what was sent.
        for dev in &mut self.devices {
            if dev.cursor.seg == id {
                dev.cursor.off = 0;
            }
        }
        Ok(())
    }

    pub fn stats(&self) -> SpoolStats {
        self.stats
    }

    /// Bytes in the spool and its bound.
    pub fn usage(&self) -> (u64, u64) {
        (self.total_bytes(), self.limits.max_bytes)
    }

    pub fn acked(&self, d: usize) -> u64 {
        self.devices[d].acked
    }
}

fn extend(range: &mut Option<(u64, u64)>, seq: u64) {
    *range = Some(match *range {
        None => (seq, seq),
        Some((lo, hi)) => (lo.min(seq), hi.max(seq)),
    });
}

fn encode(seq: u64, stream: Stream, class: Class, device: &str, payload: &[u8]) -> Vec<u8> {
    let id = &device.as_bytes()[..device.len().min(255)];
    let mut body = Vec::with_capacity(BODY_FIXED + id.len() + payload.len());
    body.extend_from_slice(&seq.to_le_bytes());
    body.push(stream_byte(stream));
    body.push(class as u8);
    body.push(id.len() as u8);
    body.extend_from_slice(id);
    body.extend_from_slice(payload);
    let mut out = Vec::with_capacity(HEADER + body.len());
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

/// The record at `off`: with its payload and a checked CRC when `full`,
/// otherwise only its header fields (payload empty). Also the device id and
/// the record's size on disk. `None` at the end or on a torn record.
fn read_at(file: &File, off: u64, full: bool) -> Option<(Record, String, u64)> {
    let mut head = [0u8; HEADER + BODY_FIXED + 255];
    let n = read_some(file, off, &mut head)?;
    if n < HEADER + BODY_FIXED {
        return None;
    }
    let len = u32::from_le_bytes(head[0..4].try_into().ok()?);
    let crc = u32::from_le_bytes(head[4..8].try_into().ok()?);
    if !(BODY_FIXED as u32..=MAX_RECORD).contains(&len) {
        return None;
    }
    let size = HEADER as u64 + u64::from(len);
    let (body, owned);
    if full {
        let mut buf = vec![0u8; len as usize];
        file.read_exact_at(&mut buf, off + HEADER as u64).ok()?;
        if crc32fast::hash(&buf) != crc {
            return None;
        }
        owned = buf;
        body = &owned[..];
    } else {
        body = &head[HEADER..n];
    }
    let seq = u64::from_le_bytes(body[0..8].try_into().ok()?);
    let stream = byte_stream(body[8])?;
    let class = Class::from_u8(body[9]);
    let id_len = usize::from(body[10]);
    let id = std::str::from_utf8(body.get(BODY_FIXED..BODY_FIXED + id_len)?)
        .ok()?
        .to_owned();
    let payload = if full {
        body[BODY_FIXED + id_len..].to_vec()
    } else {
        Vec::new()
    };
    Some((
        Record {
            seq,
            stream,
            class,
            payload,
            next: Pos::default(),
        },
        id,
        size,
    ))
}

/// Reads as much of `buf` as the file has at `off`.
fn read_some(file: &File, off: u64, buf: &mut [u8]) -> Option<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], off + n as u64) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(n)
}

/// The `record_id` of a filling record's JSON.
fn record_id(payload: &[u8]) -> Option<u64> {
    serde_json::from_slice::<serde_json::Value>(payload)
        .ok()?
        .get("record_id")?
        .as_u64()
}

fn sync_dir(dir: &Path) -> Result<(), EdgeError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| EdgeError::io("cannot sync spool directory", dir, e))
}

#[cfg(test)]
mod tests;
