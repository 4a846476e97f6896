//! Reference tables from the registry: set, query, join, replace.

use serde_json::json;
use vigil_storage::{ColumnType, RefColumn, RefTable, Store, StoreError};

use crate::fixtures::*;

fn col(name: &str, ty: ColumnType, nullable: bool) -> RefColumn {
    RefColumn {
        name: name.into(),
        ty,
        nullable,
    }
}

fn equipment(rows: Vec<Vec<serde_json::Value>>) -> RefTable {
    RefTable {
        name: "equipment".into(),
        columns: vec![
            col("equipment_id", ColumnType::Text, false),
            col("name", ColumnType::Text, true),
            col("floors", ColumnType::Int, true),
            col("rated_speed_mps", ColumnType::Float, true),
            col("enabled", ColumnType::Bool, false),
            col("next_inspection", ColumnType::Date, true),
            col("registered_at", ColumnType::Timestamp, true),
        ],
        rows,
    }
}

#[tokio::test]
async fn reference_tables_are_queried_joined_and_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _tokens) = open(dir.path()).await;
    store
        .write(ws([
            elevator("EL1", 1),
            elevator("EL1", 2),
            elevator("EL2", 1),
        ]))
        .await
        .unwrap();
    store.flush().await.unwrap();

    store
        .set_reference_table(equipment(vec![
            vec![
                json!("EQ-EL1"),
                json!("Tower A lift 1"),
                json!(18),
                json!(2.5),
                json!(true),
                json!("2025-03-01"),
                json!(T0),
            ],
            vec![
                json!("EQ-EL2"),
                json!(null),
                json!(null),
                json!(null),
                json!(false),
                json!(null),
                json!(null),
            ],
        ]))
        .await
        .unwrap();
    let r = rows(&store, "SELECT * FROM equipment ORDER BY equipment_id").await;
    assert_eq!(r.len(), 2);
    assert_eq!(r[0]["name"], "Tower A lift 1");
    assert_eq!(r[0]["floors"], 18);
    assert_eq!(r[0]["next_inspection"], "2025-03-01");
    assert_eq!(r[0]["registered_at"], "2024-11-22T18:26:40Z");
    assert!(r[1]["name"].is_null());

    let joined = rows(
        &store,
        "SELECT e.name, count(*) AS n FROM elevator_readings r JOIN equipment e ON r.equipment_id = e.equipment_id \
         WHERE e.enabled GROUP BY e.name",
    )
    .await;
    assert_eq!(joined.len(), 1);
    assert_eq!(
        (joined[0]["name"].as_str(), joined[0]["n"].as_i64()),
        (Some("Tower A lift 1"), Some(2))
    );

    // Replaced whole: the new shape and rows, nothing of the old.
    store
        .set_reference_table(RefTable {
            name: "equipment".into(),
            columns: vec![
                col("equipment_id", ColumnType::Text, false),
                col("owner", ColumnType::Text, false),
            ],
            rows: vec![vec![json!("EQ-EL2"), json!("OWN9")]],
        })
        .await
        .unwrap();
    let r = rows(&store, "SELECT * FROM equipment").await;
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].keys().collect::<Vec<_>>(), ["equipment_id", "owner"]);
    assert!(matches!(
        store
            .query("SELECT name FROM equipment", &Default::default())
            .await,
        Err(StoreError::InvalidQuery(_))
    ));

    // A stored table's name cannot be taken, and bad cells are refused with the place.
    let mut clash = equipment(vec![]);
    clash.name = "alarms".into();
    assert!(matches!(
        store.set_reference_table(clash).await,
        Err(StoreError::InvalidReferenceTable { .. })
    ));
    let bad = equipment(vec![vec![
        json!("EQ-EL3"),
        json!(1),
        json!(null),
        json!(null),
        json!(true),
        json!(null),
        json!(null),
    ]]);
    let err = store
        .set_reference_table(bad)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("name") && err.contains("row 0"), "{err}");
    store.close().await.unwrap();
}
