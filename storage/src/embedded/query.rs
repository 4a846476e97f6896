//! SQL over a snapshot: every stored table as one scan over its memory
//! chunks and its Parquet files, the `alarms` view, the reference tables.
//! Each query gets its own DataFusion context holding exactly the snapshot
//! taken for it, so concurrent flushes cannot make it see a row twice.
//!
//! ```text
//!  caller (engine runtime) ──▶ gate slot ──▶ spawn on the SQL runtime ──▶ shape check,
//!        │ waits at most the timeout          context of sealed tables, plan, node count,
//!        ▼                                    constants check, fences, stream ──▶ answer cut
//!  timeout / dropped: cancel flag + abort        at the row and byte caps
//! ```
//!
//! People's queries (`guarded`) draw on one memory pool and the capped
//! string functions; the engine's own do not.

use std::collections::HashSet;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, BooleanArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::TableReference;
use datafusion::common::pruning::PruningStatistics;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::common::{Column, DFSchema, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::datasource::object_store::ObjectStoreUrl;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::DataFusionError;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{GreedyMemoryPool, MemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, TableType};
use datafusion::object_store::ObjectMeta;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::Literal;
use datafusion::physical_optimizer::pruning::PruningPredicateBuilder;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::union::UnionExec;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use datafusion::sql::sqlparser::dialect::GenericDialect;
use futures::StreamExt;
use tracing::warn;

use super::capped;
use super::sealed::{Cancel, Grant, SealedTable, fence, is_cancelled};
use super::share::{Share, Slot};
use super::table::{ParquetFile, Snapshot};
use crate::limits::{self, AnswerBudget, Gate, SqlLimits};
use crate::schema::Table;
use crate::{QueryOptions, QueryOutput, StoreError};

/// Bytes of Parquet footers and page indexes kept between queries, for
/// every query of the store together (an LRU, keyed by path, checked
/// against the file's size and modification time). A query opens every
/// file of its table (the time filter skips row groups only after reading
/// the footer): without the cache each one read and parsed the footers and
/// page indexes of thousands of files again. Not part of the queries'
/// memory pool; a month of 600 elevators (≈ 12 000 files) fits.
const METADATA_CACHE_BYTES: usize = 256 << 20;

/// Parquet partitions of a scan per lane (`target_partitions`). A
/// partition's file stream has one read in flight at a time, and every read
/// of the local file system is a hand-off to tokio's blocking pool: with one
/// partition per lane, a query over thousands of small files (a month of
/// alarm changes is ≈ 3 000) waited on those hand-offs, and on the disk
/// when cold, one at a time per core. The partitions take their files from
/// one shared queue (DataFusion's work stealing), so more of them cost no
/// balance; the operators above repartition to the lanes.
const READS_PER_LANE: usize = 4;
/// At most this many in all (or one per lane, where there are more lanes):
/// `target_partitions` follows the machine's cores while the SQL runtime
/// has its own few threads, and each read in flight holds a thread of the
/// blocking pool (on 2 cores, 8 per lane did no better than 4).
const MAX_READS: usize = 16;

/// Stack of each SQL thread. Planning, optimising and evaluating walk
/// expressions recursively; the shape check bounds how deep they are, this
/// leaves ample room for that bound (only touched pages take memory).
const SQL_STACK_BYTES: usize = 64 << 20;

/// The SQL compartment: its own runtime, the memory pool of people's
/// queries and the gate in front of them. Shared by every query.
pub(crate) struct QueryEngine {
    /// `Some` until dropped; dropped without waiting for its threads, which
    /// stop at their next cancellation check.
    runtime: Option<tokio::runtime::Runtime>,
    /// The engine's own queries: no memory limit.
    trusted: Arc<RuntimeEnv>,
    /// People's queries: one pool of `limits.memory_bytes`, no spilling to disk.
    people: Arc<RuntimeEnv>,
    gate: Gate,
    limits: SqlLimits,
    /// Named in no message: file errors show `<store>` instead.
    root: PathBuf,
}

impl QueryEngine {
    pub(crate) fn new(root: &Path, limits: SqlLimits) -> Result<Self, StoreError> {
        let limits = limits.normalized();
        let nice = limits.nice;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(limits.threads)
            .thread_name("vigil-sql")
            .thread_stack_size(SQL_STACK_BYTES)
            // Below the alarm path (`SqlLimits::nice`), blocking threads too.
            .on_thread_start(move || limits::lower_this_thread(nice))
            .enable_all()
            .build()
            .map_err(|e| StoreError::Other(format!("cannot start the SQL runtime: {e}")))?;
        // First come, first served: nothing spills (no disk), so a fair
        // pool's cap on each spilling operator (the pool over their count)
        // only refused a sort of a day of readings at an eighth of the pool
        // while the rest stood idle.
        let pool: Arc<dyn MemoryPool> = Arc::new(TrackConsumersPool::new(
            GreedyMemoryPool::new(limits.memory_bytes),
            NonZeroUsize::new(3).expect("non-zero"),
        ));
        let people = RuntimeEnvBuilder::new()
            .with_memory_pool(pool)
            .with_metadata_cache_limit(METADATA_CACHE_BYTES)
            .with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
            )
            .build_arc()
            .map_err(|e| StoreError::Other(format!("cannot set up SQL memory: {e}")))?;
        Ok(Self {
            runtime: Some(runtime),
            // The same metadata cache for the engine's queries and people's.
            trusted: RuntimeEnvBuilder::new()
                .with_cache_manager(
                    CacheManagerConfig::default()
                        .with_file_metadata_cache(Some(
                            people.cache_manager.get_file_metadata_cache(),
                        ))
                        .with_metadata_cache_limit(METADATA_CACHE_BYTES),
                )
                .build_arc()
                .map_err(|e| StoreError::Other(format!("cannot set up SQL memory: {e}")))?,
            people,
            gate: Gate::new(limits.max_concurrent),
            limits,
            root: root.to_path_buf(),
        })
    }

    /// Runs one read-only statement over `snapshot` within `opts`, on the
    /// SQL runtime. The answer comes by the timeout at the latest; the work
    /// stops at its next batch after that.
    pub(crate) async fn run(
        &self,
        snapshot: Snapshot,
        sql: &str,
        opts: &QueryOptions,
    ) -> Result<QueryOutput, StoreError> {
        let started = Instant::now();
        // A people's query draws on the shared pool through its own share,
        // and keeps its slot until the share is empty again.
        let (slot, env) = match opts.guarded {
            true => {
                let permit = self.gate.enter(opts.timeout).await?;
                let share = Share::new(Arc::clone(&self.people.memory_pool));
                let mut env = (*self.people).clone();
                env.memory_pool = Arc::<Share>::clone(&share);
                (Some(Slot::new(permit, share)), Arc::new(env))
            }
            false => (None, Arc::clone(&self.trusted)),
        };
        let cancel = Arc::new(Cancel::default());
        let job = Job {
            snapshot,
            sql: sql.to_owned(),
            opts: opts.clone(),
            env,
            limits: self.limits.clone(),
            cancel: Arc::clone(&cancel),
            root: self.root.clone(),
        };
        let runtime = self.runtime.as_ref().ok_or(StoreError::Closed)?;
        let mut running = Running {
            handle: runtime.spawn(job.run(slot)),
            cancel,
        };
        let left = opts.timeout.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, &mut running.handle).await {
            Ok(Ok(answer)) => answer,
            // A panic inside DataFusion: this query's input found a bug; the
            // engine and other queries are unaffected, so it is the query's error.
            Ok(Err(e)) => {
                warn!(error = %e, "A SQL query stopped unexpectedly.");
                Err(StoreError::Query(
                    "the query stopped on an internal error of the SQL engine".into(),
                ))
            }
            Err(_) => Err(StoreError::QueryTimeout(opts.timeout)),
        }
    }
}

impl Drop for QueryEngine {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A query on the SQL runtime. Dropped (answered, timed out, or its caller
/// gone): its work is cancelled.
struct Running {
    handle: tokio::task::JoinHandle<Result<QueryOutput, StoreError>>,
    cancel: Arc<Cancel>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.cancel.set();
        self.handle.abort();
    }
}

/// Everything one query needs on the SQL runtime.
struct Job {
    snapshot: Snapshot,
    sql: String,
    opts: QueryOptions,
    env: Arc<RuntimeEnv>,
    limits: SqlLimits,
    cancel: Arc<Cancel>,
    root: PathBuf,
}

impl Job {
    /// `slot` is held until the work has really ended and its memory is back.
    async fn run(self, slot: Option<Slot>) -> Result<QueryOutput, StoreError> {
        let _slot = slot;
        let guarded = self.opts.guarded;
        if guarded {
            limits::check_shape(&self.sql, &GenericDialect {}, &self.limits)?;
        }
        let grant = self.opts.regions.as_deref().map(Grant::new);
        let ctx = context(self.snapshot, grant, self.env, guarded).await?;
        // Planning errors are the user's: bad SQL, unknown table, DDL/DML/SET refused.
        let df = ctx
            .sql_with_options(&self.sql, read_only())
            .await
            .map_err(plan_error)?;
        if guarded {
            let mut nodes = 0usize;
            df.logical_plan()
                .apply_with_subqueries(|_| {
                    nodes += 1;
                    Ok(TreeNodeRecursion::Continue)
                })
                .map_err(plan_error)?;
            if nodes > self.limits.max_plan_nodes {
                return Err(limits::plan_too_large(nodes, &self.limits));
            }
        }
        let task = Arc::new(df.task_ctx());
        let plan = df.create_physical_plan().await.map_err(plan_error)?;
        if guarded {
            let rows = task.session_config().batch_size();
            check_literals(&plan, rows, self.limits.memory_bytes)?;
        }
        let plan = fence(plan, &self.cancel).map_err(plan_error)?;
        let failed = |e| run_error(e, guarded, &self.root, &self.opts);
        let mut stream = datafusion::physical_plan::execute_stream(plan, task).map_err(failed)?;
        let schema = stream.schema();
        let mut budget = AnswerBudget::new(self.opts.max_rows, self.opts.max_bytes);
        let mut batches = Vec::new();
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(failed)?;
            if batch.num_rows() == 0 {
                continue;
            }
            match budget.take(batch) {
                Some(kept) => batches.push(kept),
                None => break,
            }
            if budget.truncated {
                break;
            }
        }
        Ok(QueryOutput {
            schema,
            batches,
            truncated: budget.truncated,
        })
    }
}

/// Refuses a plan whose constants, each repeated over a batch of `rows`
/// (as a projection does), would take more than `budget` bytes: such
/// copies are made outside the memory pool. Constants include what
/// planning computed from constants (`concat('…', '…')`).
fn check_literals(
    plan: &Arc<dyn ExecutionPlan>,
    rows: usize,
    budget: usize,
) -> Result<(), StoreError> {
    let mut bytes = 0usize;
    plan.apply(|node| {
        node.apply_expressions(&mut |root| {
            root.apply(|e| {
                if let Some(l) = e.downcast_ref::<Literal>() {
                    bytes = bytes.saturating_add(l.value().size());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })
    .map_err(plan_error)?;
    if bytes.saturating_mul(rows) > budget {
        return Err(StoreError::QueryMemory(format!(
            "the query's constants ({bytes} bytes), repeated over a batch of {rows} rows, \
             would take more than {budget} bytes"
        )));
    }
    Ok(())
}

/// The context of one query: every table as the principal may read it.
async fn context(
    snapshot: Snapshot,
    grant: Option<Arc<Grant>>,
    env: Arc<RuntimeEnv>,
    guarded: bool,
) -> Result<SessionContext, StoreError> {
    let config = SessionConfig::new().with_information_schema(true);
    let ctx = SessionContext::new_with_config_rt(config, Arc::clone(&env));
    if guarded {
        capped::register(&ctx, &env.memory_pool);
    }
    let register = |name: &str, table: Arc<dyn TableProvider>| -> Result<(), StoreError> {
        ctx.register_table(TableReference::bare(name), table)
            .map(|_| ())
            .map_err(query_err)
    };
    for (table, snap) in Table::ALL.into_iter().zip(snapshot.tables) {
        let mut memory = Vec::new();
        for rows in &snap.memory {
            memory.extend(
                rows.batches(table)
                    .map_err(|e| StoreError::Query(format!("{}: {e}", table.name())))?,
            );
        }
        let stored = Arc::new(SnapshotTable {
            schema: table.schema(),
            memory,
            files: snap.files,
            time: table.time_column(),
            // Under a grant the filters that reach the scan are the user's,
            // and must not meet a row before the grant has (see `sealed`).
            filter_rows: grant.is_none(),
        });
        // Every stored table has a region column, or none at all.
        if let Some(sealed) = SealedTable::new(table.name(), stored, grant.clone()) {
            register(
                table.name(),
                Arc::new(sealed.pruned_on(table.time_column())),
            )?;
        }
    }
    let alarms = ctx
        .sql(&alarms_view_sql())
        .await
        .map_err(query_err)?
        .into_view();
    register("alarms", alarms)?;
    // Reference tables and views of the engine are sealed only for a grant:
    // they show no files, and the engine's own queries keep view inlining.
    let seal = |name: &str, table: Arc<dyn TableProvider>| match &grant {
        None => Some(table),
        Some(_) => SealedTable::new(name, table, grant.clone())
            .map(|t| Arc::new(t) as Arc<dyn TableProvider>),
    };
    for (name, data) in snapshot.refs {
        let table = MemTable::try_new(data.schema, vec![vec![data.batch]]).map_err(query_err)?;
        if let Some(t) = seal(&name, Arc::new(table)) {
            register(&name, t)?;
        }
    }
    // Views read the tables as this principal sees them; an analyst's
    // view of rows outside its regions is empty, not an error.
    for (name, sql) in snapshot.views {
        let view = match ctx.sql(&sql).await {
            Ok(df) => df.into_view(),
            // A view over a table hidden from this principal is hidden too.
            Err(_) if grant.is_some() => continue,
            Err(e) => return Err(StoreError::Query(format!("view {name}: {e}"))),
        };
        if let Some(t) = seal(&name, view) {
            register(&name, t)?;
        }
    }
    Ok(ctx)
}

fn query_err(e: DataFusionError) -> StoreError {
    StoreError::Query(e.to_string())
}

/// An error before the query read anything: it can only quote the query
/// and the schema, so it is shown as it is.
fn plan_error(e: DataFusionError) -> StoreError {
    match e.find_root() {
        DataFusionError::ResourcesExhausted(m) => StoreError::QueryMemory(m.clone()),
        _ => StoreError::InvalidQuery(e.to_string()),
    }
}

/// An error while the query ran: for people, with values and paths taken out.
fn run_error(e: DataFusionError, guarded: bool, root: &Path, opts: &QueryOptions) -> StoreError {
    if is_cancelled(&e) {
        return StoreError::QueryTimeout(opts.timeout);
    }
    if let DataFusionError::ResourcesExhausted(m) = e.find_root() {
        return StoreError::QueryMemory(m.clone());
    }
    let message = e.to_string().replace(&*root.to_string_lossy(), "<store>");
    StoreError::Query(if guarded {
        limits::scrub(&message)
    } else {
        message
    })
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

/// The filters pushed to a scan as one predicate for Parquet's statistics
/// pruning (row groups, pages). `None` when they do not convert: the scan
/// then reads everything, which is slower but no less correct.
fn pruning_predicate(
    state: &dyn Session,
    schema: &SchemaRef,
    filters: &[Expr],
) -> Option<Arc<dyn PhysicalExpr>> {
    let expr = conjunction(filters.iter().cloned())?;
    let schema = DFSchema::try_from(schema.as_ref().clone()).ok()?;
    state.create_physical_expr(expr, &schema).ok()
}

/// One stored table as of one snapshot: memory chunks plus Parquet files.
#[derive(Debug)]
struct SnapshotTable {
    schema: SchemaRef,
    memory: Vec<RecordBatch>,
    files: Vec<ParquetFile>,
    /// The time column, whose range each file's name gives.
    time: &'static str,
    /// Whether the filters may also drop rows inside the Parquet decoder:
    /// the columns they read are decoded first, the others only for the
    /// rows that pass. Only when every row of the table may be read.
    filter_rows: bool,
}

impl SnapshotTable {
    /// The files that may hold rows `predicate` lets through, judged by the
    /// time range in their names alone: the others are not opened at all
    /// (not even their footers, which a fresh store has not cached yet).
    fn files_for(&self, predicate: Option<&Arc<dyn PhysicalExpr>>) -> Vec<&ParquetFile> {
        let all = || self.files.iter().collect();
        let Some(predicate) = predicate else {
            return all();
        };
        let Some(pruning) = PruningPredicateBuilder::new()
            .with_file_schema(Arc::clone(&self.schema))
            .build(Arc::clone(predicate))
        else {
            return all();
        };
        let Ok(field) = self.schema.field_with_name(self.time) else {
            return all();
        };
        let times = FileTimes {
            column: self.time,
            data_type: field.data_type(),
            files: &self.files,
        };
        match pruning.prune(&times) {
            Ok(keep) => self
                .files
                .iter()
                .zip(keep)
                .filter_map(|(f, keep)| keep.then_some(f))
                .collect(),
            Err(_) => all(),
        }
    }
}

/// The time range of each file, as statistics for a pruning predicate:
/// what the file names say of the time column, nothing of the others.
struct FileTimes<'a> {
    column: &'static str,
    data_type: &'a DataType,
    files: &'a [ParquetFile],
}

impl FileTimes<'_> {
    fn values(&self, column: &Column, end: fn((i64, i64)) -> i64) -> Option<ArrayRef> {
        let DataType::Timestamp(TimeUnit::Millisecond, zone) = self.data_type else {
            return None;
        };
        if column.name != self.column {
            return None;
        }
        let values: TimestampMillisecondArray =
            self.files.iter().map(|f| f.time.map(end)).collect();
        Some(Arc::new(values.with_timezone_opt(zone.clone())))
    }
}

impl PruningStatistics for FileTimes<'_> {
    fn min_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |(first, _)| first)
    }

    fn max_values(&self, column: &Column) -> Option<ArrayRef> {
        self.values(column, |(_, last)| last)
    }

    fn num_containers(&self) -> usize {
        self.files.len()
    }

    fn null_counts(&self, _column: &Column) -> Option<ArrayRef> {
        None
    }

    fn row_counts(&self) -> Option<ArrayRef> {
        None
    }

    fn contained(&self, _column: &Column, _values: &HashSet<ScalarValue>) -> Option<BooleanArray> {
        None
    }
}

#[async_trait]
impl TableProvider for SnapshotTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    // Filters only pick which Parquet row groups and pages to read, by
    // their statistics; every row read still passes the filter above.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> datafusion::error::Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let lanes = state.config().target_partitions().max(1);
        let mut partitions: Vec<Vec<RecordBatch>> =
            vec![Vec::new(); lanes.min(self.memory.len()).max(1)];
        let n = partitions.len();
        for (i, batch) in self.memory.iter().enumerate() {
            partitions[i % n].push(batch.clone());
        }
        let memory = MemorySourceConfig::try_new(
            &partitions,
            Arc::clone(&self.schema),
            projection.cloned(),
        )?
        .with_limit(limit);
        let mut plans: Vec<Arc<dyn ExecutionPlan>> = vec![DataSourceExec::from_data_source(memory)];

        let predicate = pruning_predicate(state, &self.schema, filters);
        let files = self.files_for(predicate.as_ref());
        // On time alone, the time ranges of files, row groups and pages
        // already skip what they can; decoding the time first would only
        // add work for the rows inside (a day's files, every row of them).
        let filter_rows = self.filter_rows
            && filters
                .iter()
                .any(|f| f.column_refs().iter().any(|c| c.name != self.time));
        if !files.is_empty() {
            let reads = (lanes * READS_PER_LANE).min(MAX_READS).max(lanes);
            let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); reads.min(files.len())];
            let n = groups.len();
            for (i, f) in files.iter().enumerate() {
                groups[i % n].push(PartitionedFile::new_from_meta(ObjectMeta {
                    location: f.location.clone(),
                    last_modified: f.modified,
                    size: f.size,
                    e_tag: None,
                    version: None,
                }));
            }
            // Footers and page indexes come from the store-wide cache.
            let env = state.runtime_env();
            let reader = CachedParquetFileReaderFactory::new(
                env.object_store(ObjectStoreUrl::local_filesystem())?,
                env.cache_manager.get_file_metadata_cache(),
            );
            let mut source = ParquetSource::new(Arc::clone(&self.schema))
                .with_parquet_file_reader_factory(Arc::new(reader))
                .with_pushdown_filters(filter_rows)
                .with_reorder_filters(filter_rows);
            if let Some(predicate) = predicate {
                source = source.with_predicate(predicate);
            }
            let source = Arc::new(source);
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
