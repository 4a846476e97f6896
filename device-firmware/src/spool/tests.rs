//! The spool on a real directory: durability gating, crash recovery,
//! seq continuity, acks, the bound and its priorities.

use std::io::Write;

use super::*;

const NOW: EpochMs = 1_750_000_000_000;

fn limits() -> SpoolLimits {
    SpoolLimits {
        max_bytes: 64 * 1024 * 1024,
        segment_bytes: 1024 * 1024,
    }
}

fn open(dir: &Path, limits: SpoolLimits) -> Spool {
    Spool::open(dir, limits, &["EL1".to_owned(), "EL2".to_owned()], NOW).unwrap()
}

fn json(seq: u64, note: &str) -> Vec<u8> {
    format!("{{\"seq\":{seq},\"ts\":{NOW},\"note\":\"{note}\"}}").into_bytes()
}

fn add(spool: &mut Spool, d: usize, class: Class, note: &str) -> u64 {
    spool
        .append(d, Stream::Elevator, class, |seq| json(seq, note))
        .unwrap()
        .0
}

/// Everything `next_to_send` hands out for `d`, marking it sent.
fn drain(spool: &mut Spool, d: usize) -> Vec<u64> {
    let mut out = Vec::new();
    while let Some(rec) = spool.next_to_send(d) {
        spool.mark_sent(d, &rec);
        out.push(rec.seq);
    }
    out
}

#[test]
fn nothing_goes_out_before_it_is_durable_and_acks_release_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path(), limits());
    let first = add(&mut spool, 0, Class::Change, "a");
    assert_eq!(
        first, NOW as u64,
        "a fresh spool starts at the wall clock in ms"
    );
    let second = add(&mut spool, 0, Class::Periodic, "b");
    add(&mut spool, 1, Class::Change, "other device");
    assert_eq!(second, first + 1);
    assert_eq!(drain(&mut spool, 0), Vec::<u64>::new(), "not fsynced yet");
    spool.sync_now().unwrap();
    let rec = spool.next_to_send(0).unwrap();
    assert_eq!(rec.payload, json(first, "a"));
    assert_eq!(rec.stream, Stream::Elevator);
    assert!(!spool.mark_sent(0, &rec));
    assert_eq!(drain(&mut spool, 0), vec![second]);
    assert_eq!(drain(&mut spool, 1), vec![NOW as u64]);

    // A re-send after the ack covers the first: only the second, flagged.
    assert!(spool.ack(0, first, NOW).unwrap());
    assert!(
        !spool.ack(0, first, NOW).unwrap(),
        "a repeated ack changes nothing"
    );
    spool.rewind(0, NOW);
    let rec = spool.next_to_send(0).unwrap();
    assert_eq!(rec.seq, second);
    assert!(spool.mark_sent(0, &rec), "a re-send");
    // An ack beyond anything spooled is capped.
    assert!(spool.ack(0, u64::MAX, NOW).unwrap());
    assert_eq!(spool.acked(0), second);
}

#[test]
fn stalls_only_when_sent_messages_wait_too_long() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path(), limits());
    assert!(!spool.stalled(0, 1_000_000, 10_000));
    let seq = add(&mut spool, 0, Class::Change, "a");
    spool.sync_now().unwrap();
    spool.rewind(0, 100_000);
    assert!(!spool.stalled(0, 200_000, 10_000), "unsent is not a stall");
    drain(&mut spool, 0);
    assert!(!spool.stalled(0, 109_999, 10_000));
    assert!(spool.stalled(0, 110_000, 10_000));
    spool.ack(0, seq, 111_000).unwrap();
    assert!(!spool.stalled(0, 500_000, 10_000));
}

#[test]
fn a_restart_resends_what_is_not_acked_and_never_reuses_a_seq() {
    let dir = tempfile::tempdir().unwrap();
    let small = SpoolLimits {
        max_bytes: 64 * 1024 * 1024,
        segment_bytes: 16 * 1024,
    };
    let mut spool = open(dir.path(), small);
    let seqs: Vec<u64> = (0..400)
        .map(|i| add(&mut spool, 0, Class::Change, &format!("m{i}")))
        .collect();
    spool.sync_now().unwrap();
    assert_eq!(drain(&mut spool, 0), seqs);
    // The engine acked the first 300: the segments holding only those go.
    spool.ack(0, seqs[299], NOW).unwrap();
    assert!(spool.stats().segments_deleted > 0);
    drop(spool);

    let mut spool = open(dir.path(), small);
    assert_eq!(
        drain(&mut spool, 0),
        seqs[300..].to_vec(),
        "exactly the unacked, in order"
    );
    let next = add(&mut spool, 0, Class::Change, "after restart");
    assert_eq!(next, seqs[399] + 1);

    // Everything acked and deleted: the state file still carries the seq.
    spool.sync_now().unwrap();
    drain(&mut spool, 0);
    spool.ack(0, next, NOW).unwrap();
    for i in 0..200 {
        add(&mut spool, 0, Class::Change, &format!("n{i}"));
    }
    let last = spool.last_seq(0);
    spool.sync_now().unwrap();
    drain(&mut spool, 0);
    spool.ack(0, last, NOW).unwrap();
    drop(spool);
    let mut spool = open(dir.path(), small);
    assert_eq!(drain(&mut spool, 0), Vec::<u64>::new());
    assert_eq!(add(&mut spool, 0, Class::Change, "x"), last + 1);
    // The other device never sent anything: it starts at the clock.
    assert_eq!(add(&mut spool, 1, Class::Change, "y"), NOW as u64);
}

#[test]
fn a_torn_tail_is_cut_off_and_what_was_whole_survives() {
    let dir = tempfile::tempdir().unwrap();
    let mut spool = open(dir.path(), limits());
    let seqs: Vec<u64> = (0..5)
        .map(|i| add(&mut spool, 0, Class::Change, &format!("m{i}")))
        .collect();
    spool.sync_now().unwrap();
    drop(spool);
    let seg = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "seg"))
        .unwrap();
    // A crash in the middle of the next append: a header and half a body.
    let whole = encode(
        seqs[4] + 1,
        Stream::Elevator,
        Class::Change,
        "EL1",
        &json(seqs[4] + 1, "torn"),
    );
    std::fs::OpenOptions::new()
        .append(true)
        .open(&seg)
        .unwrap()
        .write_all(&whole[..whole.len() / 2])
        .unwrap();
    let torn_len = std::fs::metadata(&seg).unwrap().len();

    let mut spool = open(dir.path(), limits());
    assert!(std::fs::metadata(&seg).unwrap().len() < torn_len, "cut off");
    assert_eq!(drain(&mut spool, 0), seqs);
    // The torn message was never durable, so never sent: its seq may be
    // used again, and nothing below it is.
    assert_eq!(add(&mut spool, 0, Class::Change, "next"), seqs[4] + 1);

    // A flipped bit in a whole record is corruption: cut there too.
    drop(spool);
    let mut bytes = std::fs::read(&seg).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x55;
    std::fs::write(&seg, &bytes).unwrap();
    let mut spool = open(dir.path(), limits());
    assert_eq!(drain(&mut spool, 0), seqs);
}

#[test]
fn a_full_spool_drops_periodic_samples_first_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let tight = SpoolLimits {
        max_bytes: 64 * 1024,
        segment_bytes: 16 * 1024,
    };
    let mut spool = open(dir.path(), tight);
    let mut changes = Vec::new();
    let mut dropped = Dropped::default();
    // A long outage: nothing is acked. One change in ten samples.
    for i in 0..1500 {
        let class = if i % 10 == 0 {
            Class::Change
        } else {
            Class::Periodic
        };
        let (seq, drops) = spool
            .append(0, Stream::Elevator, class, |seq| {
                json(
                    seq,
                    "an elevator sample of about this size, padded out a little",
                )
            })
            .unwrap();
        if class == Class::Change {
            changes.push(seq);
        }
        for (d, drop) in drops {
            assert_eq!(d, 0);
            dropped.periodic += drop.periodic;
            dropped.other += drop.other;
        }
        assert!(spool.usage().0 <= spool.usage().1, "over the bound");
    }
    assert!(dropped.periodic > 0, "{dropped:?}");
    assert_eq!(
        dropped.other, 0,
        "state changes stay while periodic samples can go"
    );
    spool.sync_now().unwrap();
    let kept = drain(&mut spool, 0);
    for seq in &changes {
        assert!(kept.contains(seq), "change {seq} lost");
    }
    assert!(kept.windows(2).all(|w| w[0] < w[1]), "in order");
    assert_eq!(spool.stats().dropped_periodic, dropped.periodic);

    // Nothing but changes: then the oldest go, and are counted as such.
    for _ in 0..2000 {
        let (_, drops) = spool
            .append(0, Stream::Event, Class::Event, |seq| {
                json(seq, "an event of roughly the same size as a sample, padded")
            })
            .unwrap();
        for (_, drop) in drops {
            dropped.other += drop.other;
        }
    }
    assert!(dropped.other > 0);
    assert!(spool.usage().0 <= spool.usage().1);
    drop(spool);
    // Dropped seqs are never reused either.
    let mut spool = open(dir.path(), tight);
    let before = spool.last_seq(0);
    assert!(add(&mut spool, 0, Class::Change, "z") > before);
}

#[test]
fn the_last_filling_record_id_survives_restarts_and_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let small = SpoolLimits {
        max_bytes: 64 * 1024 * 1024,
        segment_bytes: 16 * 1024,
    };
    let mut spool = open(dir.path(), small);
    assert_eq!(spool.record_id(0), None);
    spool
        .append(0, Stream::Filling, Class::Event, |seq| {
            format!("{{\"seq\":{seq},\"ts\":{NOW},\"record_id\":7}}").into_bytes()
        })
        .unwrap();
    assert_eq!(spool.record_id(0), Some(7));
    drop(spool);
    // Found again in the segment (a crash before the scale got its ack).
    let mut spool = open(dir.path(), small);
    assert_eq!(spool.record_id(0), Some(7));
    // Acked and its segment deleted: the state file keeps it.
    for i in 0..300 {
        add(&mut spool, 0, Class::Change, &format!("m{i}"));
    }
    spool.sync_now().unwrap();
    let last = spool.last_seq(0);
    spool.ack(0, last, NOW).unwrap();
    assert!(spool.stats().segments_deleted > 0);
    drop(spool);
    let spool = open(dir.path(), small);
    assert_eq!(spool.record_id(0), Some(7));
}
