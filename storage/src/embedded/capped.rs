//! String functions that can make a large value out of a small one
//! (`repeat('x', 1e9)`), wrapped so that what they are about to allocate is
//! taken from the query's memory pool first, and refused when it does not
//! fit; `levenshtein`, quadratic in its arguments, is refused above a fixed
//! amount of work per batch. Everything else about the function (name,
//! types, simplification) is the built-in's.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryPool};
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{
    ColumnarValue, Documentation, Expr, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF,
    ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;

/// Character-by-character comparisons one `levenshtein` call may make per batch.
const LEVENSHTEIN_WORK: u128 = 100_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Cost {
    Repeat,
    Pad,
    Replace,
    RegexpReplace,
    Levenshtein,
}

const CAPPED: &[(&str, Cost)] = &[
    ("repeat", Cost::Repeat),
    ("lpad", Cost::Pad),
    ("rpad", Cost::Pad),
    ("replace", Cost::Replace),
    ("regexp_replace", Cost::RegexpReplace),
    ("levenshtein", Cost::Levenshtein),
];

/// Replaces the amplifying functions of `ctx` by capped ones drawing on `pool`.
pub(crate) fn register(ctx: &SessionContext, pool: &Arc<dyn MemoryPool>) {
    let state = ctx.state();
    let builtins = state.scalar_functions();
    for (name, cost) in CAPPED {
        if let Some(inner) = builtins.get(*name) {
            // Volatile: never computed once at planning and then copied to
            // every row; each batch's call is counted.
            let mut signature = inner.signature().clone();
            signature.volatility = Volatility::Volatile;
            ctx.register_udf(ScalarUDF::new_from_impl(Capped {
                inner: Arc::clone(inner.inner()),
                signature,
                cost: *cost,
                pool: Arc::clone(pool),
            }));
        }
    }
}

#[derive(Debug)]
struct Capped {
    inner: Arc<dyn ScalarUDFImpl>,
    signature: Signature,
    cost: Cost,
    pool: Arc<dyn MemoryPool>,
}

impl PartialEq for Capped {
    fn eq(&self, other: &Self) -> bool {
        self.cost == other.cost && self.inner.name() == other.inner.name()
    }
}

impl Eq for Capped {}

impl Hash for Capped {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.name().hash(state);
        self.cost.hash(state);
    }
}

impl ScalarUDFImpl for Capped {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn display_name(&self, args: &[Expr]) -> Result<String> {
        #[allow(deprecated)]
        self.inner.display_name(args)
    }

    fn schema_name(&self, args: &[Expr]) -> Result<String> {
        self.inner.schema_name(args)
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<arrow::datatypes::FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn is_nullable(&self, args: &[Expr], schema: &dyn datafusion::common::ExprSchema) -> bool {
        #[allow(deprecated)]
        self.inner.is_nullable(args, schema)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn simplify(
        &self,
        args: Vec<Expr>,
        info: &SimplifyContext,
    ) -> Result<datafusion::logical_expr::simplify::ExprSimplifyResult> {
        self.inner.simplify(args, info)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows.max(1);
        let need = estimate(self.cost, &args.args, rows)?;
        if self.cost == Cost::Levenshtein {
            if need > LEVENSHTEIN_WORK {
                return Err(DataFusionError::ResourcesExhausted(format!(
                    "levenshtein over strings this long takes more than {LEVENSHTEIN_WORK} \
                     steps per batch; compare shorter strings"
                )));
            }
            return self.inner.invoke_with_args(args);
        }
        let bytes = usize::try_from(need).map_err(|_| {
            DataFusionError::ResourcesExhausted(format!(
                "{}() would make {need} bytes",
                self.name()
            ))
        })?;
        // Held while the function runs: what it allocates is in the pool's count.
        let reservation = MemoryConsumer::new(format!("{}()", self.name())).register(&self.pool);
        reservation.try_grow(bytes)?;
        self.inner.invoke_with_args(args)
    }
}

/// An upper bound of the bytes (or, for levenshtein, the steps) the call
/// will need.
fn estimate(cost: Cost, args: &[ColumnarValue], rows: usize) -> Result<u128> {
    let len = |i: usize| args.get(i).map(|a| lengths(a, rows)).transpose();
    let total = match cost {
        Cost::Repeat => {
            let (s, n) = (len(0)?.unwrap_or_default(), counts(args.get(1), rows)?);
            s.iter().zip(&n).map(|(l, n)| l * n).sum()
        }
        // Up to four bytes per character of the padded length.
        Cost::Pad => counts(args.get(1), rows)?.iter().map(|n| n * 4).sum(),
        Cost::Replace => {
            let (s, from, to) = (len(0)?, len(1)?, len(2)?);
            let (s, from, to) = (
                s.unwrap_or_default(),
                from.unwrap_or_default(),
                to.unwrap_or_default(),
            );
            (0..s.len().min(from.len()).min(to.len()))
                .map(|i| {
                    let grown = match s[i].checked_div(from[i]) {
                        Some(matches) => s[i] + matches * to[i],
                        // An empty pattern matches between every two bytes.
                        None => (s[i] + 1) * to[i] + s[i],
                    };
                    grown.max(s[i])
                })
                .sum()
        }
        // Every match (the empty one too) may copy the replacement and,
        // through group references, the matched text again.
        Cost::RegexpReplace => {
            let (s, r) = (len(0)?.unwrap_or_default(), len(2)?.unwrap_or_default());
            s.iter().zip(&r).map(|(s, r)| (s + 1) * (r + 1) * 2).sum()
        }
        Cost::Levenshtein => {
            let (a, b) = (len(0)?.unwrap_or_default(), len(1)?.unwrap_or_default());
            a.iter().zip(&b).map(|(a, b)| a * b).sum()
        }
    };
    Ok(total)
}

/// Byte length of each row's value (0 for null or a non-string).
fn lengths(arg: &ColumnarValue, rows: usize) -> Result<Vec<u128>> {
    Ok(match arg {
        ColumnarValue::Scalar(s) => {
            let n = match s {
                ScalarValue::Utf8(Some(v))
                | ScalarValue::LargeUtf8(Some(v))
                | ScalarValue::Utf8View(Some(v)) => v.len(),
                ScalarValue::Binary(Some(v))
                | ScalarValue::LargeBinary(Some(v))
                | ScalarValue::BinaryView(Some(v)) => v.len(),
                _ => 0,
            };
            vec![n as u128; rows]
        }
        ColumnarValue::Array(a) => {
            let each = |v: Option<usize>| v.unwrap_or(0) as u128;
            match a.data_type() {
                DataType::Utf8 => a
                    .as_string::<i32>()
                    .iter()
                    .map(|v| each(v.map(str::len)))
                    .collect(),
                DataType::LargeUtf8 => a
                    .as_string::<i64>()
                    .iter()
                    .map(|v| each(v.map(str::len)))
                    .collect(),
                DataType::Utf8View => a
                    .as_string_view()
                    .iter()
                    .map(|v| each(v.map(str::len)))
                    .collect(),
                DataType::Binary => a
                    .as_binary::<i32>()
                    .iter()
                    .map(|v| each(v.map(<[u8]>::len)))
                    .collect(),
                DataType::LargeBinary => a
                    .as_binary::<i64>()
                    .iter()
                    .map(|v| each(v.map(<[u8]>::len)))
                    .collect(),
                DataType::BinaryView => a
                    .as_binary_view()
                    .iter()
                    .map(|v| each(v.map(<[u8]>::len)))
                    .collect(),
                // Not a string: its whole size, spread over its rows, bounds each value.
                _ => vec![(a.get_array_memory_size() / a.len().max(1)) as u128; a.len()],
            }
        }
    })
}

/// Each row's count argument as a non-negative number (null counts 0).
fn counts(arg: Option<&ColumnarValue>, rows: usize) -> Result<Vec<u128>> {
    let Some(arg) = arg else {
        return Ok(vec![0; rows]);
    };
    let clamp = |v: Option<i64>| v.unwrap_or(0).max(0) as u128;
    Ok(match arg {
        ColumnarValue::Scalar(s) => {
            let n = match s.cast_to(&DataType::Int64)? {
                ScalarValue::Int64(v) => clamp(v),
                _ => 0,
            };
            vec![n; rows]
        }
        ColumnarValue::Array(a) => {
            let a = arrow::compute::cast(a, &DataType::Int64)?;
            a.as_primitive::<arrow::datatypes::Int64Type>()
                .iter()
                .map(clamp)
                .collect()
        }
    })
}
