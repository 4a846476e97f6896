//! Tables as a principal may read them, and the guards on every query plan.
//!
//! ```text
//!  user query ─▶ … ─▶ FilterExec(user predicate) ─▶ StoreScanExec ─┐ sealed: no optimiser
//!                                                   region filter   │ rule, no row filter
//!                                                   (grant)         │ below it, no EXPLAIN
//!                                                      ▲            │ sees inside
//!                                                   inner scan ─────┘ (memory, Parquet, view)
//! ```
//!
//! [`SealedTable`] wraps every table of a query's context. Its scan is a
//! leaf, [`StoreScanExec`], that runs the real scan itself and drops the
//! rows outside the grant before anything above sees them. A user's
//! expression is planned above it and can never be evaluated on a row
//! outside the grant (and so never fail, or take time, because of one). It
//! also shows no file names in `EXPLAIN`. Filters reach the Parquet scan
//! only to skip row groups and pages by their statistics, and under a grant
//! only those on the time column ([`SealedTable::pruned_on`]).
//!
//! [`fence`] puts a [`FenceExec`] on every edge of a physical plan: on each
//! batch it checks the query's [`Cancel`] flag and spends tokio's
//! cooperative budget, so a cancelled query stops at the next batch of any
//! operator, and a busy one yields its thread regularly. Nested-loop joins,
//! which can work for minutes between two batches, check it on every
//! evaluation of their filter.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use arrow::array::{Array, ArrayRef, BooleanArray, Scalar, StringArray};
use arrow::datatypes::{DataType, FieldRef, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use async_trait::async_trait;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{ColumnarValue, Expr, TableProviderFilterPushDown, TableType};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::filter_pushdown::{
    ChildPushdownResult, FilterPushdownPhase, FilterPushdownPropagation,
};
use datafusion::physical_plan::joins::utils::JoinFilter;
use datafusion::physical_plan::joins::{NestedLoopJoinExec, NestedLoopJoinExecBuilder};
use datafusion::physical_plan::{
    ChildrenPropertiesMode, DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties,
    Partitioning, PlanProperties, RecordBatchStream, ReplaceChildrenOptions,
    SendableRecordBatchStream,
};
use futures::{Stream, StreamExt};
use vigil_model::Region;

/// The regions a principal may read: a row is inside when its `region`
/// starts with one of the prefixes (a grant of `440700` covers `4407…`).
#[derive(Debug)]
pub(crate) struct Grant {
    regions: Vec<String>,
    prefixes: Vec<Scalar<StringArray>>,
}

impl Grant {
    pub(crate) fn new(regions: &[Region]) -> Arc<Grant> {
        Arc::new(Grant {
            regions: regions.iter().map(|r| r.to_string()).collect(),
            prefixes: regions
                .iter()
                .map(|r| StringArray::new_scalar(r.prefix()))
                .collect(),
        })
    }

    /// Which rows of `region` are inside (null regions are not).
    fn inside(&self, region: &ArrayRef) -> Result<BooleanArray> {
        let region = match region.data_type() {
            DataType::Utf8 => Arc::clone(region),
            _ => arrow::compute::cast(region, &DataType::Utf8)?,
        };
        let mut mask = BooleanArray::from(vec![false; region.len()]);
        for prefix in &self.prefixes {
            let hit = arrow::compute::kernels::comparison::starts_with(&region, prefix)?;
            mask = arrow::compute::or(&mask, &hit)?;
        }
        Ok(mask)
    }
}

/// A table of one query's context as its principal may read it.
#[derive(Debug)]
pub(crate) struct SealedTable {
    name: String,
    inner: Arc<dyn TableProvider>,
    /// `None` reads every row.
    grant: Option<Arc<Grant>>,
    /// Where `region` is in `inner`'s schema (when there is a grant).
    region: usize,
    /// The time column, when `inner` may use filters to skip Parquet row
    /// groups (see [`SealedTable::pruned_on`]).
    prune_on: Option<&'static str>,
}

impl SealedTable {
    /// `None` when a grant applies and the table has no `region`: nothing
    /// says whose rows those are, so the principal does not see the table.
    pub(crate) fn new(
        name: &str,
        inner: Arc<dyn TableProvider>,
        grant: Option<Arc<Grant>>,
    ) -> Option<SealedTable> {
        let region = match &grant {
            Some(_) => inner.schema().index_of("region").ok()?,
            None => 0,
        };
        Some(SealedTable {
            name: name.to_owned(),
            inner,
            grant,
            region,
            prune_on: None,
        })
    }

    /// Lets `inner` skip Parquet row groups and pages by their statistics
    /// (it must treat filters as `Inexact`: every row still goes through
    /// the user's filter above the grant). Without a grant any filter may
    /// prune. With one, only filters on `time` alone: what pruning reads is
    /// statistics that cover rows outside the grant, and how long a query
    /// takes must not tell whether another region has a device or a value;
    /// that some rows exist at some time tells nothing of the kind.
    pub(crate) fn pruned_on(mut self, time: &'static str) -> SealedTable {
        self.prune_on = Some(time);
        self
    }
}

#[async_trait]
impl TableProvider for SealedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    // The user's filters are evaluated above the scan, on rows of the
    // grant; some are also handed to the inner scan to prune its reads.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        use TableProviderFilterPushDown::{Inexact, Unsupported};
        let Some(time) = self.prune_on else {
            return Ok(vec![Unsupported; filters.len()]);
        };
        let prunes =
            |f: &Expr| self.grant.is_none() || f.column_refs().iter().all(|c| c.name == time);
        Ok(filters
            .iter()
            .map(|f| if prunes(f) { Inexact } else { Unsupported })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let Some(grant) = &self.grant else {
            let inner = self.inner.scan(state, projection, filters, limit).await?;
            return StoreScanExec::plan(&self.name, inner, None, None, limit);
        };
        // Read the region too, filter on it, then hand out only what was asked.
        let (read, region, keep) = match projection {
            None => (None, self.region, None),
            Some(p) => {
                let mut read = p.clone();
                let region = match p.iter().position(|&i| i == self.region) {
                    Some(at) => at,
                    None => {
                        read.push(self.region);
                        read.len() - 1
                    }
                };
                (Some(read), region, Some((0..p.len()).collect()))
            }
        };
        let inner = self.inner.scan(state, read.as_ref(), filters, None).await?;
        StoreScanExec::plan(
            &self.name,
            inner,
            Some((Arc::clone(grant), region)),
            keep,
            limit,
        )
    }
}

/// The scan of one table: runs its inner plan out of the optimiser's reach,
/// keeps the rows of the grant, then projects and limits.
#[derive(Debug)]
pub(crate) struct StoreScanExec {
    table: String,
    inner: Arc<dyn ExecutionPlan>,
    /// The grant and where `region` is in the inner plan's output.
    grant: Option<(Arc<Grant>, usize)>,
    /// Columns of the inner output to hand out (all when `None`).
    keep: Option<Vec<usize>>,
    /// At most this many rows per partition (a hint; DataFusion limits too).
    limit: Option<usize>,
    properties: Arc<PlanProperties>,
}

impl StoreScanExec {
    fn plan(
        table: &str,
        inner: Arc<dyn ExecutionPlan>,
        grant: Option<(Arc<Grant>, usize)>,
        keep: Option<Vec<usize>>,
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = match &keep {
            Some(k) => Arc::new(inner.schema().project(k)?),
            None => inner.schema(),
        };
        let lanes = inner.output_partitioning().partition_count();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(lanes),
            EmissionType::Incremental,
            Boundedness::Bounded,
        );
        Ok(Arc::new(StoreScanExec {
            table: table.to_owned(),
            inner,
            grant,
            keep,
            limit,
            properties: Arc::new(properties),
        }))
    }
}

impl DisplayAs for StoreScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "StoreScanExec: table={}", self.table)?;
        if let Some((grant, _)) = &self.grant {
            write!(
                f,
                ", regions=[{}] (filtered first)",
                grant.regions.join(", ")
            )?;
        }
        let names: Vec<String> = self
            .properties
            .eq_properties
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        write!(f, ", projection=[{}]", names.join(", "))?;
        if let Some(n) = self.limit {
            write!(f, ", limit={n}")?;
        }
        Ok(())
    }
}

impl ExecutionPlan for StoreScanExec {
    fn name(&self) -> &'static str {
        "StoreScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    // Filters offered from above are refused: they stay above the grant.
    fn handle_child_pushdown_result(
        &self,
        _phase: FilterPushdownPhase,
        child_pushdown_result: ChildPushdownResult,
        _config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        Ok(FilterPushdownPropagation::all_unsupported(
            child_pushdown_result,
        ))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Ok(Box::pin(ScanStream {
            inner: self.inner.execute(partition, context)?,
            schema: self.schema(),
            grant: self.grant.clone(),
            keep: self.keep.clone(),
            left: self.limit.unwrap_or(usize::MAX),
        }))
    }
}

struct ScanStream {
    inner: SendableRecordBatchStream,
    schema: SchemaRef,
    grant: Option<(Arc<Grant>, usize)>,
    keep: Option<Vec<usize>>,
    left: usize,
}

impl ScanStream {
    fn shape(&mut self, batch: RecordBatch) -> Result<RecordBatch> {
        let batch = match &self.grant {
            Some((grant, region)) => {
                let inside = grant.inside(batch.column(*region))?;
                arrow::compute::filter_record_batch(&batch, &inside)?
            }
            None => batch,
        };
        let batch = match &self.keep {
            Some(k) => batch.project(k)?,
            None => batch,
        };
        let rows = batch.num_rows().min(self.left);
        self.left -= rows;
        Ok(if rows < batch.num_rows() {
            batch.slice(0, rows)
        } else {
            batch
        })
    }
}

impl Stream for ScanStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            if self.left == 0 {
                return Poll::Ready(None);
            }
            return match ready!(self.inner.poll_next_unpin(cx)) {
                Some(Ok(batch)) => {
                    let shaped = self.shape(batch);
                    match shaped {
                        Ok(b) if b.num_rows() == 0 => continue,
                        other => Poll::Ready(Some(other)),
                    }
                }
                other => Poll::Ready(other),
            };
        }
    }
}

impl RecordBatchStream for ScanStream {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

/// Set once a query is to stop: its answer is no longer wanted.
#[derive(Debug, Default)]
pub(crate) struct Cancel(AtomicBool);

impl Cancel {
    pub(crate) fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// What a fenced operator answers once its query is cancelled.
#[derive(Debug)]
pub(crate) struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the query was cancelled")
    }
}

impl std::error::Error for Cancelled {}

/// Whether `e` (or what it wraps) is a fence's cancellation.
pub(crate) fn is_cancelled(e: &DataFusionError) -> bool {
    match e.find_root() {
        DataFusionError::External(inner) => inner.is::<Cancelled>(),
        _ => false,
    }
}

/// `plan` with a [`FenceExec`] above every operator, and the filter of
/// every nested-loop join checking the flag too: such a join evaluates
/// its filter over the whole build side for each probe batch before it
/// returns, far too long to wait for the next batch.
pub(crate) fn fence(
    plan: Arc<dyn ExecutionPlan>,
    cancel: &Arc<Cancel>,
) -> Result<Arc<dyn ExecutionPlan>> {
    plan.transform_up(|node| {
        let node = match node.downcast_ref::<NestedLoopJoinExec>() {
            Some(join) if join.filter().is_some() => {
                let filter = join.filter().expect("checked");
                let checked = JoinFilter::new(
                    Arc::new(CancelExpr {
                        inner: Arc::clone(filter.expression()),
                        cancel: Arc::clone(cancel),
                    }),
                    filter.column_indices().to_vec(),
                    Arc::clone(filter.schema()),
                );
                Arc::new(
                    NestedLoopJoinExecBuilder::from(join)
                        .with_filter(Some(checked))
                        .build()?,
                )
            }
            _ => node,
        };
        Ok(Transformed::yes(Arc::new(FenceExec {
            properties: Arc::clone(node.properties()),
            input: node,
            cancel: Arc::clone(cancel),
        }) as Arc<dyn ExecutionPlan>))
    })
    .map(|t| t.data)
}

/// An expression that fails once its query is cancelled, else is `inner`.
#[derive(Debug)]
struct CancelExpr {
    inner: Arc<dyn PhysicalExpr>,
    cancel: Arc<Cancel>,
}

impl PartialEq for CancelExpr {
    fn eq(&self, other: &Self) -> bool {
        self.inner.as_ref() == other.inner.as_ref()
    }
}

impl Eq for CancelExpr {}

impl std::hash::Hash for CancelExpr {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.inner.as_ref().hash(state);
    }
}

impl fmt::Display for CancelExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt(f)
    }
}

impl PhysicalExpr for CancelExpr {
    fn return_field(&self, input_schema: &Schema) -> Result<FieldRef> {
        self.inner.return_field(input_schema)
    }

    fn evaluate(&self, batch: &RecordBatch) -> Result<ColumnarValue> {
        if self.cancel.is_set() {
            return Err(DataFusionError::External(Box::new(Cancelled)));
        }
        self.inner.evaluate(batch)
    }

    fn children(&self) -> Vec<&Arc<dyn PhysicalExpr>> {
        vec![&self.inner]
    }

    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn PhysicalExpr>>,
    ) -> Result<Arc<dyn PhysicalExpr>> {
        Ok(Arc::new(CancelExpr {
            inner: children.swap_remove(0),
            cancel: Arc::clone(&self.cancel),
        }))
    }

    fn fmt_sql(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.fmt_sql(f)
    }
}

/// Passes its input's batches through, checking the query's cancel flag
/// and spending cooperative budget on each.
#[derive(Debug)]
pub(crate) struct FenceExec {
    input: Arc<dyn ExecutionPlan>,
    cancel: Arc<Cancel>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for FenceExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("FenceExec")
    }
}

impl ExecutionPlan for FenceExec {
    fn name(&self) -> &'static str {
        "FenceExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn replace_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
        _options: ReplaceChildrenOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let input = children.swap_remove(0);
        Ok(Arc::new(FenceExec {
            properties: Arc::clone(input.properties()),
            input,
            cancel: Arc::clone(&self.cancel),
        }))
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.replace_children(
            children,
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Ok(Box::pin(FenceStream {
            inner: self.input.execute(partition, context)?,
            cancel: Arc::clone(&self.cancel),
            done: false,
        }))
    }
}

struct FenceStream {
    inner: SendableRecordBatchStream,
    cancel: Arc<Cancel>,
    done: bool,
}

impl Stream for FenceStream {
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        if self.cancel.is_set() {
            self.done = true;
            return Poll::Ready(Some(Err(DataFusionError::External(Box::new(Cancelled)))));
        }
        let coop = ready!(tokio::task::coop::poll_proceed(cx));
        let next = self.inner.poll_next_unpin(cx);
        if next.is_ready() {
            coop.made_progress();
        }
        next
    }
}

impl RecordBatchStream for FenceStream {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}
