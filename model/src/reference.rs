//! Reference tables: small tables one stage owns (the registry) and the
//! store shows to SQL beside the readings, replaced whole on each change.

/// Column types of reference tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Text,
    Int,
    Float,
    Bool,
    /// `YYYY-MM-DD` text in the rows, a SQL date in the table.
    Date,
    /// Epoch milliseconds in the rows, a SQL timestamp in the table.
    Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefColumn {
    pub name: String,
    pub ty: ColumnType,
    pub nullable: bool,
}

/// A small table owned by someone else (the registry), replaced whole.
/// Rows are JSON values in column order; `null` where absent.
#[derive(Debug, Clone, PartialEq)]
pub struct RefTable {
    pub name: String,
    pub columns: Vec<RefColumn>,
    pub rows: Vec<Vec<serde_json::Value>>,
}
