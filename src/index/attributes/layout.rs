//! The layout of the `ATTR` section's JSON header, as `encode` writes it
//! and `Attributes::decode` reads it back.
use serde::{Deserialize, Serialize};

use super::AttrType;

/// `[offset, count]` of one array in the section.
pub(super) type Span = [u64; 2];

/// One column's entry in the header: its type and the spans of its arrays.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ColumnHeader {
    pub(super) name: String,
    #[serde(rename = "type")]
    pub(super) ty: AttrType,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) dict: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) keys: Option<Span>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) starts: Option<Span>,
    pub(super) rows: Span,
    /// Values held by many rows: `[lo, hi, offset]`, the run `rows[lo..hi]`
    /// of one value (a key, or a dictionary entry) and, at `offset`, the
    /// same rows as a bitmap of `ceil(n / 64)` words. A filter ORs the
    /// bitmap instead of setting the rows one by one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) dense: Vec<[u64; 3]>,
}

/// The section's JSON header: the rows covered and every column.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Header {
    pub(super) n: u64,
    pub(super) columns: Vec<ColumnHeader>,
}
