//! Keeps the registry visible to SQL: whenever the registry changes, its
//! reference tables (`owners`, `equipment`, `devices`, …; the registry
//! defines their columns: `vigil_registry::sql`) are handed to the store.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::warn;
use vigil_registry::Registry;
use vigil_storage::Store;

/// Hands the registry to the store whenever its version moves. SQL calls
/// [`RegistrySync::ensure`] before each query, so a query right after an
/// import sees it; a background loop keeps the tables fresh otherwise.
pub(crate) struct RegistrySync {
    registry: Arc<Registry>,
    store: Arc<dyn Store>,
    /// Serialises refreshes; holds the version the store has.
    synced: tokio::sync::Mutex<Option<u64>>,
}

impl RegistrySync {
    pub(crate) fn new(registry: Arc<Registry>, store: Arc<dyn Store>) -> Self {
        Self {
            registry,
            store,
            synced: tokio::sync::Mutex::new(None),
        }
    }

    pub(crate) async fn ensure(&self) {
        let mut synced = self.synced.lock().await;
        let version = self.registry.version();
        if *synced == Some(version) {
            return;
        }
        let mut ok = true;
        for table in vigil_registry::sql::tables(&self.registry) {
            let name = table.name.clone();
            if let Err(e) = self.store.set_reference_table(table).await {
                warn!(table = %name, error = %e, "Registry table not refreshed for SQL.");
                ok = false;
            }
        }
        if ok {
            *synced = Some(version);
        }
    }

    pub(crate) async fn run(self: Arc<Self>, mut stopping: watch::Receiver<bool>) {
        let mut interval = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = interval.tick() => self.ensure().await,
                // The guard `wait_for` returns is not Send: drop it in place.
                _ = async { stopping.wait_for(|s| *s).await.map(|_| ()) } => return,
            }
        }
    }
}
