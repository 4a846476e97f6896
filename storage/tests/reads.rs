//! Typed reads on the embedded store.

use crate::fixtures::open;

#[tokio::test]
async fn typed_reads_give_back_alarms_and_readings_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let (store, mut tokens) = open(dir.path()).await;
    crate::typed_reads::check(&*store, &mut tokens).await;
    store.close().await.unwrap();
}
