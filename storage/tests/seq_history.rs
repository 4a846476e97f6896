//! What ingest's de-duplication gets back from a store, the same for every
//! backend: per device the stored seqs, exact from a floor up (`recover`),
//! and an exact answer below it (`stored_seqs`).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use vigil_model::{DeadLetter, DeviceId, RejectReason};
use vigil_storage::{AckToken, MAX_RUNS, Record, SeqKey, Store, Write};

use crate::fixtures::*;

pub(crate) fn id(device: &str) -> DeviceId {
    DeviceId::new(device).unwrap()
}

/// A dead letter of `device` that took `seq` (as ingest writes it).
pub(crate) fn letter_with_seq(device: &str, seq: u64) -> Write {
    Write {
        record: Record::DeadLetter(DeadLetter {
            received_at: T0 + 9,
            topic: format!("/tenants/{device}/v1/elevator"),
            device_id: Some(device.into()),
            reason: RejectReason::WrongType,
            detail: "`floor` is not an integer".into(),
            payload: br#"{"seq": 5, "floor": "x"}"#.to_vec(),
            payload_size: 24,
            seq: Some(seq),
        }),
        ack: Some(AckToken {
            device_id: id(device),
            seq,
        }),
    }
}

/// Stored seqs per device, and the writes that store them (plus a dead
/// letter that took no seq, which is nobody's history).
pub(crate) fn history() -> (BTreeMap<&'static str, BTreeSet<u64>>, Vec<Vec<Write>>) {
    let mut stored: BTreeMap<&'static str, BTreeSet<u64>> = BTreeMap::new();
    // A hole at 11.
    stored.insert("EL1", (1..=10).chain([12]).collect());
    // Skips every other seq: more runs than a device keeps.
    stored.insert("EL2", (0..(MAX_RUNS as u64 + 10)).map(|i| i * 2).collect());
    // Long and consecutive.
    stored.insert("EL5", (1..=100).collect());
    let mut first = Vec::new();
    let mut second = Vec::new();
    for (device, seqs) in &stored {
        for &seq in seqs {
            // Half of each history in the first batch, the rest later.
            let target = if seq % 3 == 0 {
                &mut second
            } else {
                &mut first
            };
            target.push(w(elevator(device, seq)));
        }
    }
    stored.insert("EL3", BTreeSet::from([5]));
    second.push(letter_with_seq("EL3", 5));
    second.push(w(dead_letter(b"{not json")));
    (stored, vec![first, second])
}

/// Checks a store holding [`history`] against what it should say.
pub(crate) async fn check_history(
    store: &dyn Store,
    stored: &BTreeMap<&'static str, BTreeSet<u64>>,
) {
    let rec = store.recover().await.unwrap();
    for (device, seqs) in stored {
        let known = rec
            .seqs
            .get(&id(device))
            .unwrap_or_else(|| panic!("{device} has history"));
        let top = *seqs.last().unwrap();
        assert_eq!(known.highest(), Some(top), "{device}");
        for s in known.from()..=top + 3 {
            assert_eq!(
                known.contains(s),
                Some(seqs.contains(&s)),
                "{device} seq {s}: {known:?}"
            );
        }
        assert!(known.runs().len() <= MAX_RUNS);
        // Below the floor the store itself answers, exactly.
        let below: Vec<SeqKey> = (0..known.from()).map(|s| (id(device), s)).collect();
        let want: HashSet<SeqKey> = below
            .iter()
            .filter(|k| seqs.contains(&k.1))
            .cloned()
            .collect();
        assert_eq!(store.stored_seqs(&below).await.unwrap(), want, "{device}");
    }
    assert!(
        rec.seqs.get(&id("EL2")).unwrap().from() > 0,
        "EL2 has more runs than are kept"
    );
    assert!(
        !rec.seqs.contains_key(&id("EL9")),
        "a dead letter that took no seq is nobody's history"
    );
    assert_eq!(
        rec.last_seen.get(&id("EL1")),
        Some(&(T0 + 12 * 1000 + 40)),
        "received_at of its newest reading"
    );
    assert!(
        !rec.last_seen.contains_key(&id("EL3")),
        "dead letters are not readings"
    );
    // Every kind of key at once: stored readings and dead letters, holes,
    // other devices, seqs never used.
    let keys: Vec<SeqKey> = [
        ("EL1", 11),
        ("EL1", 12),
        ("EL3", 5),
        ("EL3", 6),
        ("EL2", 4),
        ("EL2", 5),
        ("EL9", 1),
        ("EL5", 100),
        ("EL5", 101),
    ]
    .iter()
    .map(|&(d, s)| (id(d), s))
    .collect();
    let found = store.stored_seqs(&keys).await.unwrap();
    let mut found: Vec<(String, u64)> =
        found.into_iter().map(|(d, s)| (d.to_string(), s)).collect();
    found.sort();
    assert_eq!(
        found,
        [
            ("EL1".to_owned(), 12),
            ("EL2".to_owned(), 4),
            ("EL3".to_owned(), 5),
            ("EL5".to_owned(), 100)
        ]
    );
    assert!(store.stored_seqs(&[]).await.unwrap().is_empty());
}
