//! The write-ahead log: numbered segment files of checksummed frames.
//!
//! `dir/wal/NNNNNNNNNNNNNNNNNNNN.log` holds frames
//! `[u32 len LE][u32 crc32 LE][postcard(frame)]`, where a frame is its number
//! and the records of one group commit. Frame numbers grow by one per commit
//! across segments; they let replay recognise a batch that was retried in a
//! fresh segment after an I/O error (see [`replay`]).
//!
//! A segment is written with zeros ahead of its frames, 4 MiB at a time
//! ([`PREZERO`]), and a frame overwrites them: appending at the file's end
//! changed its size with every commit, and the fdatasync then wrote the
//! inode too. Replay reads the zeros as the end of the log; a frame torn by
//! a crash is one followed by zeros only. A closed segment is cut back to
//! its frames.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tracing::{debug, warn};
use vigil_model::{
    Alarm, AlarmId, AlarmState, DeadLetter, DeviceId, EpochMs, EquipmentId, OwnerId, Region,
    RuleId, Severity,
};

use crate::{Record, StoreError, StoredReading};

pub(crate) const HEADER_LEN: usize = 8;
/// Larger lengths are garbage, not frames (a group of 4096 readings is ~1 MiB).
const MAX_FRAME_LEN: usize = 256 << 20;

/// How much of a segment is written with zeros at a time, ahead of its
/// frames (see the module's doc).
const PREZERO: u64 = 4 << 20;

/// `Record` as the WAL spells it. Postcard is not self-describing, so the
/// free-form `details` of an alarm (a `serde_json::Value`) travels as JSON text.
#[derive(Serialize)]
enum RecordRef<'a> {
    Reading(&'a StoredReading),
    Alarm(Box<WalAlarm>),
    /// Read from older logs, never written: keeps the variant's number.
    #[allow(dead_code)]
    DeadLetterV1(&'a DeadLetterV1),
    DeadLetter(&'a DeadLetter),
}

/// Must list the same variants in the same order as [`RecordRef`].
#[derive(Deserialize)]
enum WalRecord {
    Reading(StoredReading),
    Alarm(WalAlarm),
    DeadLetterV1(DeadLetterV1),
    DeadLetter(DeadLetter),
}

/// A dead letter as logs wrote it before dead letters carried the `seq`
/// they took. Postcard is not self-describing, so a new field needs a new
/// variant; these come back with `seq: None`.
#[derive(Serialize, Deserialize)]
struct DeadLetterV1 {
    received_at: EpochMs,
    topic: String,
    device_id: Option<String>,
    reason: vigil_model::RejectReason,
    detail: String,
    payload: Vec<u8>,
    payload_size: u64,
}

impl From<DeadLetterV1> for DeadLetter {
    fn from(d: DeadLetterV1) -> Self {
        DeadLetter {
            received_at: d.received_at,
            topic: d.topic,
            device_id: d.device_id,
            reason: d.reason,
            detail: d.detail,
            payload: d.payload,
            payload_size: d.payload_size,
            seq: None,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct WalAlarm {
    alarm_id: AlarmId,
    rule: RuleId,
    severity: Severity,
    state: AlarmState,
    equipment_id: EquipmentId,
    device_id: Option<DeviceId>,
    category: String,
    owner_id: OwnerId,
    region: Region,
    raised_at: EpochMs,
    updated_at: EpochMs,
    cleared_at: Option<EpochMs>,
    count: u32,
    details: String,
    version: u32,
    acknowledged_at: Option<EpochMs>,
    acknowledged_by: Option<String>,
    note: Option<String>,
}

impl From<&Alarm> for WalAlarm {
    fn from(a: &Alarm) -> Self {
        WalAlarm {
            alarm_id: a.alarm_id.clone(),
            rule: a.rule.clone(),
            severity: a.severity,
            state: a.state,
            equipment_id: a.equipment_id.clone(),
            device_id: a.device_id.clone(),
            category: a.category.clone(),
            owner_id: a.owner_id.clone(),
            region: a.region,
            raised_at: a.raised_at,
            updated_at: a.updated_at,
            cleared_at: a.cleared_at,
            count: a.count,
            details: a.details.to_string(),
            version: a.version,
            acknowledged_at: a.acknowledged_at,
            acknowledged_by: a.acknowledged_by.clone(),
            note: a.note.clone(),
        }
    }
}

impl WalAlarm {
    fn into_alarm(self) -> Result<Alarm, serde_json::Error> {
        Ok(Alarm {
            details: serde_json::from_str(&self.details)?,
            alarm_id: self.alarm_id,
            rule: self.rule,
            severity: self.severity,
            state: self.state,
            equipment_id: self.equipment_id,
            device_id: self.device_id,
            category: self.category,
            owner_id: self.owner_id,
            region: self.region,
            raised_at: self.raised_at,
            updated_at: self.updated_at,
            cleared_at: self.cleared_at,
            count: self.count,
            version: self.version,
            acknowledged_at: self.acknowledged_at,
            acknowledged_by: self.acknowledged_by,
            note: self.note,
        })
    }
}

#[derive(Serialize)]
struct FrameRef<'a> {
    no: u64,
    records: Vec<RecordRef<'a>>,
}

#[derive(Deserialize)]
struct Frame {
    no: u64,
    records: Vec<WalRecord>,
}

/// Header and body of frame `no`, ready for one `write_all`.
pub(crate) fn encode_frame<'a>(
    no: u64,
    records: impl Iterator<Item = &'a Record>,
) -> Result<Vec<u8>, postcard::Error> {
    let records = records
        .map(|r| match r {
            Record::Reading(s) => RecordRef::Reading(s),
            Record::Alarm(a) => RecordRef::Alarm(Box::new(WalAlarm::from(a))),
            Record::DeadLetter(d) => RecordRef::DeadLetter(d),
        })
        .collect();
    let mut buf = postcard::to_extend(&FrameRef { no, records }, vec![0u8; HEADER_LEN])?;
    let body_len = buf.len() - HEADER_LEN;
    let crc = crc32fast::hash(&buf[HEADER_LEN..]);
    buf[..4].copy_from_slice(&(body_len as u32).to_le_bytes());
    buf[4..8].copy_from_slice(&crc.to_le_bytes());
    Ok(buf)
}

/// How many records a frame holds, from the first bytes of its body alone
/// (postcard: `no`, then the records' length, both varints), so a backlog can
/// be counted without reading it.
pub(crate) fn frame_record_count(body_head: &[u8]) -> Option<u64> {
    postcard::take_from_bytes::<(u64, u64)>(body_head)
        .ok()
        .map(|((_, n), _)| n)
}

fn decode_frame(body: &[u8]) -> Result<(u64, Vec<Record>), String> {
    let frame: Frame = postcard::from_bytes(body).map_err(|e| format!("undecodable frame: {e}"))?;
    let mut records = Vec::with_capacity(frame.records.len());
    for r in frame.records {
        records.push(match r {
            WalRecord::Reading(s) => Record::Reading(s),
            WalRecord::Alarm(a) => Record::Alarm(
                a.into_alarm()
                    .map_err(|e| format!("alarm details are not JSON: {e}"))?,
            ),
            WalRecord::DeadLetterV1(d) => Record::DeadLetter(d.into()),
            WalRecord::DeadLetter(d) => Record::DeadLetter(d),
        });
    }
    Ok((frame.no, records))
}

pub(crate) fn segment_path(wal_dir: &Path, no: u64) -> PathBuf {
    wal_dir.join(format!("{no:020}.log"))
}

/// Segment files in order; other files are left alone.
pub(crate) fn list_segments(wal_dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let io_err = |source| StoreError::Io {
        path: wal_dir.to_owned(),
        source,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(wal_dir).map_err(io_err)? {
        let path = entry.map_err(io_err)?.path();
        let no = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .filter(|n| n.len() == 20)
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(no) = no {
            out.push((no, path));
        }
    }
    out.sort();
    Ok(out)
}

/// `fsync` of a directory, so that a created, renamed or removed entry is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// The segment being appended to.
#[derive(Debug)]
struct Segment {
    no: u64,
    path: PathBuf,
    file: File,
    /// Bytes known good: everything up to the end of the last synced frame.
    len: u64,
    /// The file's size: zeros from `len` up to here.
    zeroed: u64,
}

/// The append side of the log, owned by the writer thread.
#[derive(Debug)]
pub(crate) struct WalWriter {
    dir: PathBuf,
    current: Option<Segment>,
    next_no: u64,
}

impl WalWriter {
    /// Starts a fresh segment numbered `first` (after replay: one past the last).
    pub(crate) fn open(dir: PathBuf, first: u64) -> io::Result<WalWriter> {
        let mut wal = WalWriter {
            dir,
            current: None,
            next_no: first,
        };
        wal.ensure_segment()?;
        Ok(wal)
    }

    /// The path of the segment being written, for error messages.
    pub(crate) fn current_path(&self) -> PathBuf {
        match &self.current {
            Some(s) => s.path.clone(),
            None => segment_path(&self.dir, self.next_no),
        }
    }

    fn ensure_segment(&mut self) -> io::Result<&mut Segment> {
        if self.current.is_none() {
            let no = self.next_no;
            let path = segment_path(&self.dir, no);
            let file = OpenOptions::new()
                .create_new(true)
                .write(true)
                .open(&path)?;
            sync_dir(&self.dir)?;
            self.next_no = no + 1;
            self.current = Some(Segment {
                no,
                path,
                file,
                len: 0,
                zeroed: 0,
            });
        }
        // Just set when it was empty.
        self.current
            .as_mut()
            .ok_or_else(|| io::Error::other("no WAL segment"))
    }

    /// Appends one encoded frame and waits until it is on disk.
    pub(crate) fn append(&mut self, frame: &[u8]) -> io::Result<()> {
        let seg = self.ensure_segment()?;
        let end = seg.len + frame.len() as u64;
        if end > seg.zeroed {
            let to = end.next_multiple_of(PREZERO);
            let zeros = vec![0u8; (to - seg.zeroed) as usize];
            seg.file.write_all_at(&zeros, seg.zeroed)?;
            seg.zeroed = to;
        }
        seg.file.write_all_at(frame, seg.len)?;
        seg.file.sync_data()?;
        seg.len = end;
        Ok(())
    }

    /// After a failed append the segment's tail is unknown: cut it back to
    /// the last good frame if the disk lets us, and continue in a new segment.
    pub(crate) fn abandon(&mut self) {
        if let Some(seg) = self.current.take()
            && let Err(e) = seg.file.set_len(seg.len).and_then(|()| seg.file.sync_all())
        {
            warn!(path = %seg.path.display(), error = %e, "Could not cut an abandoned WAL segment back; replay will skip its tail.");
        }
    }

    /// Closes the current segment and starts the next. Returns the number of
    /// the last closed segment: every committed record is in a segment `<=` it.
    pub(crate) fn rotate(&mut self) -> io::Result<u64> {
        let covered = match &self.current {
            Some(s) => s.no,
            None => self.next_no.saturating_sub(1),
        };
        // The closed segment loses its zeros (not synced: until that is on
        // disk, replay reads them as the segment's end, which they are).
        if let Some(seg) = self.current.take()
            && let Err(e) = seg.file.set_len(seg.len)
        {
            warn!(path = %seg.path.display(), error = %e, "Could not cut a closed WAL segment's zeros off; replay will skip them.");
        }
        self.ensure_segment()?;
        Ok(covered)
    }

    #[cfg(test)]
    pub(crate) fn segment_no(&self) -> Option<u64> {
        self.current.as_ref().map(|s| s.no)
    }
}

/// Where replay stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Replayed {
    /// Highest segment number seen (0 when the log is empty).
    pub(crate) last_segment: u64,
    /// Highest frame number applied (0 when none).
    pub(crate) last_frame: u64,
    pub(crate) frames: u64,
    pub(crate) records: u64,
}

struct Bad {
    offset: u64,
    why: String,
    /// A frame cut short by a crash, as opposed to damage in the middle.
    torn: bool,
    /// Only zeros from here: the space written ahead of the frames.
    zeros: bool,
}

struct Scan {
    no: u64,
    path: PathBuf,
    frames: Vec<(u64, Vec<Record>)>,
    bad: Option<Bad>,
}

fn scan_segment(no: u64, path: PathBuf) -> Result<Scan, StoreError> {
    let data = fs::read(&path).map_err(|source| StoreError::Io {
        path: path.clone(),
        source,
    })?;
    let mut frames = Vec::new();
    let mut at = 0usize;
    let bad = loop {
        let rest = &data[at..];
        if rest.is_empty() {
            break None;
        }
        let bad = |why: &str, torn: bool| {
            Some(Bad {
                offset: at as u64,
                why: why.to_owned(),
                torn,
                zeros: false,
            })
        };
        if rest.iter().all(|&b| b == 0) {
            // The space written ahead of the frames (or allocated by the
            // file system and never filled).
            break bad("zero-filled tail", true).map(|b| Bad { zeros: true, ..b });
        }
        if rest.len() < HEADER_LEN {
            break bad("incomplete frame header", true);
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len > MAX_FRAME_LEN {
            break bad(&format!("frame length {len} is implausible"), false);
        }
        if rest.len() < HEADER_LEN + len {
            break bad(
                &format!(
                    "frame of {len} bytes is cut short at {} bytes",
                    rest.len() - HEADER_LEN
                ),
                true,
            );
        }
        let body = &rest[HEADER_LEN..HEADER_LEN + len];
        if crc32fast::hash(body) != crc {
            // The last frame of a file may have been half written (then only
            // the zeros written ahead follow it); one followed by more data
            // is damage.
            let last = rest[HEADER_LEN + len..].iter().all(|&b| b == 0);
            break bad("checksum mismatch", last);
        }
        match decode_frame(body) {
            Ok(frame) => frames.push(frame),
            Err(why) => break bad(&why, false),
        }
        at += HEADER_LEN + len;
    };
    Ok(Scan {
        no,
        path,
        frames,
        bad,
    })
}

/// Reads every segment in order and hands each committed frame's records to
/// `apply` with the number of the segment they are in.
///
/// - A frame cut short (or failing its checksum) at the very end of the log
///   is a crash mid-write: it was never acknowledged, so it is cut off with a
///   warning. The same at the end of an earlier segment is an append that
///   failed and was retried in the next segment, which replay checks: the
///   next frame must carry the next number.
/// - A frame whose number was already applied is such a retry whose first
///   attempt reached the disk after all: skipped.
/// - Anything else is corruption, reported with file and offset.
pub(crate) fn replay(
    wal_dir: &Path,
    mut apply: impl FnMut(u64, Vec<Record>),
) -> Result<Replayed, StoreError> {
    let segments = list_segments(wal_dir)?;
    let mut scans = Vec::with_capacity(segments.len());
    for (no, path) in segments {
        scans.push(scan_segment(no, path)?);
    }
    let mut out = Replayed {
        last_segment: scans.last().map_or(0, |s| s.no),
        ..Replayed::default()
    };
    let mut last_frame: Option<u64> = None;
    for i in 0..scans.len() {
        let frames = std::mem::take(&mut scans[i].frames);
        let seg_no = scans[i].no;
        for (no, records) in frames {
            if let Some(last) = last_frame {
                if no <= last {
                    warn!(
                        segment = seg_no,
                        frame = no,
                        "WAL frame already applied (a retried commit); skipped."
                    );
                    continue;
                }
                if no != last + 1 {
                    warn!(
                        segment = seg_no,
                        frame = no,
                        expected = last + 1,
                        "WAL frame numbers skip ahead."
                    );
                }
            }
            out.records += records.len() as u64;
            out.frames += 1;
            apply(seg_no, records);
            last_frame = Some(no);
        }
        let scan = &scans[i];
        let Some(bad) = &scan.bad else { continue };
        let next_frame = scans[i + 1..]
            .iter()
            .find_map(|s| s.frames.first().map(|f| f.0));
        let retried = match (next_frame, last_frame) {
            (None, _) => true,
            (Some(_), None) => true,
            (Some(next), Some(last)) => next <= last + 1,
        };
        if !bad.torn || !retried {
            return Err(StoreError::CorruptWal {
                path: scan.path.clone(),
                offset: bad.offset,
                why: bad.why.clone(),
            });
        }
        if bad.zeros {
            debug!(path = %scan.path.display(), offset = bad.offset, "Cutting off a WAL segment's zeros.");
        } else {
            warn!(path = %scan.path.display(), offset = bad.offset, why = %bad.why, "Cutting off an unfinished WAL frame (a crash or failed write before it was acknowledged).");
        }
        OpenOptions::new()
            .write(true)
            .open(&scan.path)
            .and_then(|f| f.set_len(bad.offset).and_then(|()| f.sync_all()))
            .map_err(|source| StoreError::Io {
                path: scan.path.clone(),
                source,
            })?;
    }
    out.last_frame = last_frame.unwrap_or(0);
    Ok(out)
}

/// Every record of one segment that was written whole (renamed into place
/// after its fsync, as the PostgreSQL backend does): any damage is an error.
pub(crate) fn read_segment(no: u64, path: PathBuf) -> Result<Vec<Record>, StoreError> {
    let scan = scan_segment(no, path)?;
    if let Some(bad) = scan.bad {
        return Err(StoreError::CorruptWal {
            path: scan.path,
            offset: bad.offset,
            why: bad.why,
        });
    }
    Ok(scan
        .frames
        .into_iter()
        .flat_map(|(_, records)| records)
        .collect())
}

/// Removes segments `<= upto` (their records are in Parquet now).
pub(crate) fn remove_segments_upto(wal_dir: &Path, upto: u64) -> Result<usize, StoreError> {
    let mut removed = 0;
    for (no, path) in list_segments(wal_dir)? {
        if no > upto {
            break;
        }
        match fs::remove_file(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => return Err(StoreError::Io { path, source }),
        }
    }
    if removed > 0 {
        sync_dir(wal_dir).map_err(|source| StoreError::Io {
            path: wal_dir.to_owned(),
            source,
        })?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testdata;

    fn write_segment(dir: &Path, no: u64, frames: &[Vec<u8>]) -> PathBuf {
        let path = segment_path(dir, no);
        fs::write(&path, frames.concat()).unwrap();
        path
    }

    fn frame(no: u64, records: &[Record]) -> Vec<u8> {
        encode_frame(no, records.iter()).unwrap()
    }

    fn replay_all(dir: &Path) -> Result<Vec<(u64, Record)>, StoreError> {
        let mut out = Vec::new();
        replay(dir, |seg, records| {
            out.extend(records.into_iter().map(|r| (seg, r)))
        })?;
        Ok(out)
    }

    #[test]
    fn frames_round_trip_every_record_kind() {
        let dir = tempfile::tempdir().unwrap();
        let records = testdata::one_of_each(1);
        write_segment(
            dir.path(),
            1,
            &[frame(1, &records[..3]), frame(2, &records[3..])],
        );
        let back: Vec<Record> = replay_all(dir.path())
            .unwrap()
            .into_iter()
            .map(|(_, r)| r)
            .collect();
        assert_eq!(back, records);
    }

    #[test]
    fn dead_letters_of_older_logs_come_back_without_a_seq() {
        let dir = tempfile::tempdir().unwrap();
        let old = DeadLetterV1 {
            received_at: 1_732_300_000_000,
            topic: "/tenants/EL9/v1/elevator".into(),
            device_id: Some("EL9".into()),
            reason: vigil_model::RejectReason::MalformedJson,
            detail: "expected value".into(),
            payload: b"{x".to_vec(),
            payload_size: 2,
        };
        let old_frame = FrameRef {
            no: 1,
            records: vec![RecordRef::DeadLetterV1(&old)],
        };
        let mut buf = postcard::to_extend(&old_frame, vec![0u8; HEADER_LEN]).unwrap();
        let body_len = buf.len() - HEADER_LEN;
        let crc = crc32fast::hash(&buf[HEADER_LEN..]);
        buf[..4].copy_from_slice(&(body_len as u32).to_le_bytes());
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        let mut with_seq = testdata::one_of_each(1);
        with_seq.retain(|r| matches!(r, Record::DeadLetter(_)));
        if let Some(Record::DeadLetter(d)) = with_seq.first_mut() {
            d.seq = Some(77);
        }
        write_segment(dir.path(), 1, &[buf, frame(2, &with_seq)]);
        let back = replay_all(dir.path()).unwrap();
        let seqs: Vec<Option<u64>> = back
            .iter()
            .map(|(_, r)| match r {
                Record::DeadLetter(d) => d.seq,
                _ => panic!("only dead letters were written"),
            })
            .collect();
        assert_eq!(seqs, [None, Some(77)]);
        assert!(
            matches!(&back[0].1, Record::DeadLetter(d) if d.payload_size == 2 && d.detail == "expected value")
        );
    }

    #[test]
    fn a_frames_record_count_reads_from_its_head() {
        let records = testdata::one_of_each(1);
        let f = frame(u64::MAX, &records);
        let head = &f[HEADER_LEN..(HEADER_LEN + 20).min(f.len())];
        assert_eq!(frame_record_count(head), Some(records.len() as u64));
    }

    #[test]
    fn a_torn_last_frame_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let records = testdata::one_of_each(1);
        let f2 = frame(2, &records[1..2]);
        let path = write_segment(
            dir.path(),
            1,
            &[frame(1, &records[..1]), f2[..f2.len() - 3].to_vec()],
        );
        let back = replay_all(dir.path()).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            frame(1, &records[..1]).len() as u64
        );
    }

    #[test]
    fn damage_in_the_middle_names_file_and_offset() {
        let dir = tempfile::tempdir().unwrap();
        let records = testdata::one_of_each(1);
        let f1 = frame(1, &records[..1]);
        let mut f2 = frame(2, &records[1..2]);
        let last = f2.len() - 1;
        f2[last] ^= 0xff;
        let path = write_segment(dir.path(), 1, &[f1.clone(), f2, frame(3, &records[2..3])]);
        match replay_all(dir.path()) {
            Err(StoreError::CorruptWal {
                path: p, offset, ..
            }) => {
                assert_eq!(p, path);
                assert_eq!(offset, f1.len() as u64);
            }
            other => panic!("expected CorruptWal, got {other:?}"),
        }
        // A torn tail in an earlier segment not followed by its retry is damage too.
        let dir = tempfile::tempdir().unwrap();
        let f2 = frame(2, &records[1..2]);
        write_segment(dir.path(), 1, &[frame(1, &records[..1]), f2[..5].to_vec()]);
        write_segment(dir.path(), 2, &[frame(7, &records[2..3])]);
        assert!(
            matches!(replay_all(dir.path()), Err(StoreError::CorruptWal { offset, .. }) if offset == f1.len() as u64)
        );
    }

    #[test]
    fn a_commit_retried_in_the_next_segment_is_applied_once() {
        let records = testdata::one_of_each(1);
        // The first attempt left half a frame behind.
        let dir = tempfile::tempdir().unwrap();
        let f2 = frame(2, &records[1..2]);
        write_segment(
            dir.path(),
            1,
            &[frame(1, &records[..1]), f2[..f2.len() / 2].to_vec()],
        );
        write_segment(dir.path(), 2, &[f2.clone(), frame(3, &records[2..3])]);
        let back = replay_all(dir.path()).unwrap();
        assert_eq!(back.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 2, 2]);
        // The first attempt reached the disk after all.
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 1, &[frame(1, &records[..1]), f2.clone()]);
        write_segment(dir.path(), 2, &[f2, frame(3, &records[2..3])]);
        let back = replay_all(dir.path()).unwrap();
        assert_eq!(back.iter().map(|(s, _)| *s).collect::<Vec<_>>(), [1, 1, 2]);
    }

    #[test]
    fn writer_rotates_and_old_segments_can_be_removed() {
        let dir = tempfile::tempdir().unwrap();
        let records = testdata::one_of_each(1);
        let mut wal = WalWriter::open(dir.path().to_owned(), 5).unwrap();
        wal.append(&frame(1, &records[..2])).unwrap();
        assert_eq!(wal.rotate().unwrap(), 5);
        wal.append(&frame(2, &records[2..])).unwrap();
        assert_eq!(wal.segment_no(), Some(6));
        let back = replay_all(dir.path()).unwrap();
        assert_eq!(back.len(), records.len());
        assert_eq!(remove_segments_upto(dir.path(), 5).unwrap(), 1);
        assert_eq!(replay_all(dir.path()).unwrap().len(), records.len() - 2);
    }

    #[test]
    fn the_zeros_written_ahead_are_not_frames_and_a_frame_torn_into_them_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let records = testdata::one_of_each(1);
        let (f1, f2) = (frame(1, &records[..2]), frame(2, &records[2..]));
        let mut wal = WalWriter::open(dir.path().to_owned(), 1).unwrap();
        wal.append(&f1).unwrap();
        wal.append(&f2).unwrap();
        let path = segment_path(dir.path(), 1);
        assert_eq!(fs::metadata(&path).unwrap().len(), PREZERO);
        // A crash: the engine never rotated or closed the segment.
        drop(wal);
        assert_eq!(replay_all(dir.path()).unwrap().len(), records.len());
        let frames = (f1.len() + f2.len()) as u64;
        assert_eq!(fs::metadata(&path).unwrap().len(), frames, "zeros cut off");

        // A frame half on disk when the crash came, the zeros after it.
        let dir = tempfile::tempdir().unwrap();
        let mut torn = f2.clone();
        let n = torn.len();
        torn[n - 3..].fill(0);
        let path = write_segment(dir.path(), 1, &[f1.clone(), torn, vec![0; 1000]]);
        assert_eq!(replay_all(dir.path()).unwrap().len(), 2);
        assert_eq!(fs::metadata(&path).unwrap().len(), f1.len() as u64);
    }

    #[test]
    fn a_closed_segment_keeps_its_frames_only() {
        let dir = tempfile::tempdir().unwrap();
        let records = testdata::one_of_each(1);
        let f1 = frame(1, &records);
        let mut wal = WalWriter::open(dir.path().to_owned(), 1).unwrap();
        wal.append(&f1).unwrap();
        wal.rotate().unwrap();
        let closed = fs::metadata(segment_path(dir.path(), 1)).unwrap().len();
        assert_eq!(closed, f1.len() as u64);
    }
}
