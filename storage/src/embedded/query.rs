//! SQL over a snapshot: every stored table as one scan over its memory
//! chunks and its Parquet files, the `alarms` view, the reference tables.
//! Each query gets its own DataFusion context holding exactly the snapshot
//! taken for it, so concurrent flushes cannot make it see a row twice.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::TableReference;
use datafusion::datasource::MemTable;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::functions::string::expr_fn::starts_with;
use datafusion::logical_expr::{Expr, TableType};
use datafusion::object_store::ObjectMeta;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::prelude::{col, lit};
use futures::StreamExt;
use vigil_model::Region;

use super::schema::Table;
use super::table::{ParquetFile, Snapshot};
use crate::{QueryOptions, QueryOutput, StoreError};

/// Shared by every query: object stores, memory pool, disk manager.
pub(crate) struct QueryEngine {
    runtime: Arc<RuntimeEnv>,
}

impl QueryEngine {
    pub(crate) fn new() -> Self {
        Self {
            runtime: Arc::new(RuntimeEnv::default()),
        }
    }

    /// Runs one read-only statement over `snapshot` within `opts`.
    pub(crate) async fn run(
        &self,
        snapshot: Snapshot,
        sql: &str,
        opts: &QueryOptions,
    ) -> Result<QueryOutput, StoreError> {
        let work = async {
            let ctx = self.context(snapshot, opts.regions.as_deref()).await?;
            // Planning errors are the user's: bad SQL, unknown table, DDL/DML/SET refused.
            let df = ctx
                .sql_with_options(sql, read_only())
                .await
                .map_err(|e| StoreError::InvalidQuery(e.to_string()))?;
            let mut stream = df.execute_stream().await.map_err(query_err)?;
            let schema = stream.schema();
            let mut batches = Vec::new();
            let mut rows = 0usize;
            let mut truncated = false;
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(query_err)?;
                if batch.num_rows() == 0 {
                    continue;
                }
                let room = opts.max_rows - rows;
                if batch.num_rows() > room {
                    truncated = true;
                    if room > 0 {
                        batches.push(batch.slice(0, room));
                    }
                    break;
                }
                rows += batch.num_rows();
                batches.push(batch);
            }
            Ok(QueryOutput {
                schema,
                batches,
                truncated,
            })
        };
        // Dropping the future on timeout cancels the plan and its tasks.
        tokio::time::timeout(opts.timeout, work)
            .await
            .map_err(|_| StoreError::QueryTimeout(opts.timeout))?
    }

    async fn context(
        &self,
        snapshot: Snapshot,
        regions: Option<&[Region]>,
    ) -> Result<SessionContext, StoreError> {
        let config = SessionConfig::new().with_information_schema(true);
        let ctx = SessionContext::new_with_config_rt(config, self.runtime.clone());
        let scope = Scope { ctx: &ctx, regions };
        for (table, snap) in Table::ALL.into_iter().zip(snapshot.tables) {
            let mut memory = Vec::new();
            for rows in &snap.memory {
                memory.extend(
                    rows.batches(table)
                        .map_err(|e| StoreError::Query(format!("{}: {e}", table.name())))?,
                );
            }
            let provider = SnapshotTable {
                schema: table.schema(),
                memory,
                files: snap.files,
            };
            scope.register(table.name(), Arc::new(provider))?;
        }
        let alarms = ctx
            .sql(&alarms_view_sql())
            .await
            .map_err(query_err)?
            .into_view();
        ctx.register_table(TableReference::bare("alarms"), alarms)
            .map_err(query_err)?;
        for (name, data) in snapshot.refs {
            let table =
                MemTable::try_new(data.schema, vec![vec![data.batch]]).map_err(query_err)?;
            scope.register(&name, Arc::new(table))?;
        }
        // Views read the tables as this principal sees them; an analyst's
        // view of rows outside its regions is empty, not an error.
        for (name, sql) in snapshot.views {
            let view = match ctx.sql(&sql).await {
                Ok(df) => df.into_view(),
                // A view over a table hidden from this principal is hidden too.
                Err(_) if regions.is_some() => continue,
                Err(e) => return Err(StoreError::Query(format!("view {name}: {e}"))),
            };
            scope.register(&name, view)?;
        }
        Ok(ctx)
    }
}

/// Registers tables as a principal may see them.
struct Scope<'a> {
    ctx: &'a SessionContext,
    regions: Option<&'a [Region]>,
}

impl Scope<'_> {
    fn register(&self, name: &str, table: Arc<dyn TableProvider>) -> Result<(), StoreError> {
        let table = match self.regions {
            None => table,
            // Without a region column nothing says whose rows these are: hidden.
            Some(_) if table.schema().column_with_name("region").is_none() => return Ok(()),
            Some(regions) => {
                // A grant of `440700` covers every region starting with `4407`.
                let inside = regions
                    .iter()
                    .map(|r| starts_with(col("region"), lit(r.prefix())))
                    .reduce(Expr::or)
                    .unwrap_or(lit(false));
                self.ctx
                    .read_table(table)
                    .and_then(|df| df.filter(inside))
                    .map_err(query_err)?
                    .into_view()
            }
        };
        self.ctx
            .register_table(TableReference::bare(name), table)
            .map_err(query_err)?;
        Ok(())
    }
}

fn query_err(e: DataFusionError) -> StoreError {
    StoreError::Query(e.to_string())
}

/// Queries only: no DDL, no DML or `COPY`, no `SET` or transactions.
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// The latest version of each alarm.
fn alarms_view_sql() -> String {
    let schema = Table::AlarmChanges.schema();
    let columns: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| format!("\"{}\"", f.name()))
        .collect();
    format!(
        "SELECT {} FROM (SELECT *, row_number() OVER (PARTITION BY alarm_id ORDER BY version DESC) AS vigil_rank \
         FROM alarm_changes) WHERE vigil_rank = 1",
        columns.join(", ")
    )
}

/// One stored table as of one snapshot: memory chunks plus Parquet files.
#[derive(Debug)]
struct SnapshotTable {
    schema: SchemaRef,
    memory: Vec<RecordBatch>,
    files: Vec<ParquetFile>,
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let lanes = state.config().target_partitions().max(1);
        let mut partitions: Vec<Vec<RecordBatch>> =
            vec![Vec::new(); lanes.min(self.memory.len()).max(1)];
        let n = partitions.len();
        for (i, batch) in self.memory.iter().enumerate() {
            partitions[i % n].push(batch.clone());
        }
        let memory =
            MemorySourceConfig::try_new(&partitions, self.schema.clone(), projection.cloned())?
                .with_limit(limit);
        let mut plans: Vec<Arc<dyn ExecutionPlan>> = vec![DataSourceExec::from_data_source(memory)];

        if !self.files.is_empty() {
            let mut groups: Vec<Vec<PartitionedFile>> =
                vec![Vec::new(); lanes.min(self.files.len())];
            let n = groups.len();
            for (i, f) in self.files.iter().enumerate() {
                groups[i % n].push(PartitionedFile::new_from_meta(ObjectMeta {
                    location: f.location.clone(),
                    last_modified: chrono::DateTime::UNIX_EPOCH,
                    size: f.size,
                    e_tag: None,
                    version: None,
                }));
            }
            let source = Arc::new(ParquetSource::new(self.schema.clone()));
            let config = FileScanConfigBuilder::new(ObjectStoreUrl::local_filesystem(), source)
                .with_file_groups(groups.into_iter().map(FileGroup::new).collect())
                .with_projection_indices(projection.cloned())?
                .with_limit(limit)
                .build();
            plans.push(DataSourceExec::from_data_source(config));
        }
        UnionExec::try_new(plans)
    }
}
