//! The typed reads (`Store::alarms`, `Store::readings`) on any backend:
//! what was written comes back as the same values, filtered as asked.

use vigil_model::{
    Alarm, AlarmFilter, AlarmId, AlarmState, Grant, OwnerId, Reading, Region, Stream,
};
use vigil_storage::{AlarmQuery, QueryOptions, Record, Store, Write};

use crate::fixtures::{T0, Tokens, alarm, one_of_each, take_tokens, ws};

fn elsewhere(mut a: Alarm) -> Alarm {
    a.owner_id = OwnerId::new("OWN2").unwrap();
    a.region = Region::new("440106").unwrap();
    a
}

/// Writes one record of every kind and three alarms (one in two versions),
/// then reads them back through the typed queries.
pub(crate) async fn check(store: &dyn Store, tokens: &mut Tokens) {
    let records = one_of_each();
    let readings: Vec<Reading> = records
        .iter()
        .filter_map(|r| match r {
            Record::Reading(s) => Some(s.reading.clone()),
            _ => None,
        })
        .collect();
    store.write(ws(records)).await.unwrap();
    take_tokens(tokens, readings.len()).await;
    let latest_a1 = alarm("alarm-1", 2, AlarmState::Acknowledged, T0);
    let a2 = elsewhere(alarm("alarm-2", 1, AlarmState::Active, T0 + 10_000));
    let a3 = alarm("alarm-3", 3, AlarmState::Cleared, T0 - 10_000);
    let alarms = [latest_a1.clone(), a2.clone(), a3.clone()];
    store
        .write(
            alarms
                .iter()
                .map(|a| Write {
                    record: Record::Alarm(a.clone()),
                    ack: None,
                })
                .collect(),
        )
        .await
        .unwrap();
    store.flush().await.unwrap();
    let opts = QueryOptions::default();

    // The latest version of each, newest change first, exactly as written.
    let all = AlarmQuery {
        limit: 10,
        ..AlarmQuery::default()
    };
    let mut expected = alarms.to_vec();
    expected.sort_by_key(|a| std::cmp::Reverse(a.updated_at));
    assert_eq!(store.alarms(&all, &opts).await.unwrap(), expected);

    let ask = |q| async move {
        let found = store.alarms(&q, &QueryOptions::default()).await.unwrap();
        found
            .into_iter()
            .map(|a| a.alarm_id.to_string())
            .collect::<Vec<_>>()
    };
    let cleared = AlarmQuery {
        filter: AlarmFilter {
            states: Some(vec![AlarmState::Cleared]),
            ..AlarmFilter::default()
        },
        limit: 10,
        ..AlarmQuery::default()
    };
    assert_eq!(ask(cleared).await, ["alarm-3"]);
    let guangzhou_region = [Region::new("440100").unwrap()];
    let guangzhou = AlarmQuery {
        grant: Grant::Regions(&guangzhou_region),
        limit: 10,
        ..AlarmQuery::default()
    };
    assert_eq!(ask(guangzhou).await, ["alarm-2"]);
    let own1_id = OwnerId::new("OWN1").unwrap();
    let own1 = AlarmQuery {
        grant: Grant::Owner(&own1_id),
        limit: 10,
        ..AlarmQuery::default()
    };
    assert_eq!(ask(own1).await, ["alarm-1", "alarm-3"]);
    let one = AlarmQuery {
        alarm_id: Some(AlarmId::new("alarm-1").unwrap()),
        limit: 1,
        ..AlarmQuery::default()
    };
    assert_eq!(
        store.alarms(&one, &opts).await.unwrap(),
        vec![latest_a1.clone()]
    );
    let since = AlarmQuery {
        filter: AlarmFilter {
            since: Some(a2.updated_at),
            ..AlarmFilter::default()
        },
        limit: 10,
        ..AlarmQuery::default()
    };
    assert_eq!(ask(since).await, ["alarm-2"]);

    // Readings of every stream come back as the devices sent them (unknown
    // extra fields are not part of a replayed reading).
    for stream in Stream::ALL {
        let mut want: Vec<Reading> = readings
            .iter()
            .filter(|r| r.payload.stream() == stream)
            .cloned()
            .collect();
        for r in &mut want {
            r.extra = None;
        }
        let got = store
            .readings(stream, T0, T0 + 60_000, 100, &opts)
            .await
            .unwrap();
        assert_eq!(got, want, "{stream:?}");
        // `to` is exclusive, `from` inclusive.
        let ts = want[0].ts;
        let none = store.readings(stream, T0, ts, 100, &opts).await.unwrap();
        assert!(none.is_empty(), "{stream:?}: {none:?}");
        let from = store
            .readings(stream, ts, ts + 1, 100, &opts)
            .await
            .unwrap();
        assert_eq!(from.len(), 1, "{stream:?}");
    }
}
