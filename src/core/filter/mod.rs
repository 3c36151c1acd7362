//! Filters: a Mongo-style JSON document (`{"tenant": 7}`, `{"price":
//! {"$gte": 10, "$lt": 20}}`, `{"$or": [...]}`) parsed once per call into a
//! [`Filter`], then evaluated against one file's attribute indexes
//! (`index::attributes`) into a [`RowMask`](super::RowMask) of its stored
//! rows. Every leaf is a binary search or a posting list, so a mask costs
//! the matching rows plus `n / 64` words per combining step, never a scan
//! of the values.
//!
//! Errors are [`Error::InvalidFilter`] and name the part of the filter that
//! is wrong (`filter["price"]["$gte"]`).
//!
//! Parsing lives here; `eval` type-checks a filter against a file and
//! evaluates it.
mod eval;

use serde_json::Value as Json;

use crate::error::{Error, Result};
use crate::index::attributes::Attributes;
use std::sync::OnceLock;

use crate::index::reader::rows_by_id;
use crate::index::IndexFile;

/// What a filter is evaluated against: one file's (or a collection's fresh
/// rows') attribute indexes and ids, rows numbered as stored.
#[derive(Clone, Copy)]
pub struct FilterSource<'a> {
    /// The attribute columns' header.
    pub attributes: &'a Attributes,
    /// The bytes `attributes` indexes into.
    pub bytes: &'a [u8],
    /// The id of each row.
    pub ids: &'a [i64],
    /// Rows in ascending id order, sorted when an id filter first needs them.
    pub id_order: &'a OnceLock<Vec<u32>>,
}

impl<'a> FilterSource<'a> {
    /// The rows of an index file.
    pub fn of(file: &'a IndexFile) -> Self {
        FilterSource {
            attributes: file.attributes(),
            bytes: file.attribute_bytes(),
            ids: file.section(crate::index::format::SectionKind::Ids),
            id_order: file.id_order(),
        }
    }

    fn len(&self) -> usize {
        self.ids.len()
    }

    /// Rows in ascending id order.
    fn rows_by_id(&self) -> &'a [u32] {
        self.id_order.get_or_init(|| rows_by_id(self.ids))
    }
}

/// The key that filters on row ids rather than on an attribute.
pub const ID_KEY: &str = "id";

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `$eq` (also a bare value); on `tags`, "holds".
    Eq,
    /// `$ne`; on `tags`, "does not hold".
    Ne,
    /// `$gt`.
    Gt,
    /// `$gte`.
    Gte,
    /// `$lt`.
    Lt,
    /// `$lte`.
    Lte,
    /// `$in`: equals one of a list (on `tags`: holds one of them).
    In,
    /// `$nin`: equals none of a list.
    Nin,
    /// `$contains`: a `tags` row holds the value; a `str` value contains it.
    Contains,
}

impl Op {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "$eq" => Op::Eq,
            "$ne" => Op::Ne,
            "$gt" => Op::Gt,
            "$gte" => Op::Gte,
            "$lt" => Op::Lt,
            "$lte" => Op::Lte,
            "$in" => Op::In,
            "$nin" => Op::Nin,
            "$contains" => Op::Contains,
            _ => return None,
        })
    }

    fn is_range(self) -> bool {
        matches!(self, Op::Gt | Op::Gte | Op::Lt | Op::Lte)
    }
}

/// A scalar in a filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Scalar {
    /// An integer.
    Int(i64),
    /// A number with a fraction (or beyond i64).
    Float(f64),
    /// `true` / `false`.
    Bool(bool),
    /// A string.
    Str(String),
}

impl Scalar {
    fn kind(&self) -> &'static str {
        match self {
            Scalar::Int(_) => "an integer",
            Scalar::Float(_) => "a number",
            Scalar::Bool(_) => "a boolean",
            Scalar::Str(_) => "a string",
        }
    }
}

/// One condition on one attribute.
#[derive(Debug, Clone, PartialEq)]
pub struct Leaf {
    /// Where it sits in the filter, for errors: `filter["price"]["$gte"]`.
    pub path: String,
    /// The attribute (or [`ID_KEY`]).
    pub attr: String,
    /// The operator.
    pub op: Op,
    /// One value, or the list of `$in` / `$nin`.
    pub values: Vec<Scalar>,
}

/// A parsed filter.
#[derive(Debug, Clone, PartialEq)]
pub enum Filter {
    /// Every one matches (`$and`, several keys, several operators).
    And(Vec<Filter>),
    /// At least one matches (`$or`).
    Or(Vec<Filter>),
    /// Does not match (`$not`).
    Not(Box<Filter>),
    /// A condition.
    Leaf(Leaf),
}

fn invalid(path: &str, reason: impl std::fmt::Display) -> Error {
    Error::InvalidFilter(format!("{path}: {reason}"))
}

impl Filter {
    /// Parses a filter from JSON text.
    pub fn parse(text: &str) -> Result<Self> {
        let json: Json = serde_json::from_str(text)
            .map_err(|e| invalid("filter", format!("is not valid JSON: {e}")))?;
        Self::from_json(&json, "filter")
    }

    fn from_json(json: &Json, path: &str) -> Result<Self> {
        let Json::Object(map) = json else {
            return Err(invalid(path, "must be a dict of conditions"));
        };
        if map.is_empty() {
            return Err(invalid(
                path,
                "is an empty dict (pass filter=None for no filter)",
            ));
        }
        let mut all = Vec::with_capacity(map.len());
        for (key, value) in map {
            let here = format!("{path}[{key:?}]");
            all.push(match key.as_str() {
                "$and" | "$or" => {
                    let Json::Array(items) = value else {
                        return Err(invalid(&here, "needs a non-empty list of filters"));
                    };
                    if items.is_empty() {
                        return Err(invalid(&here, "needs a non-empty list of filters"));
                    }
                    let parts = items
                        .iter()
                        .enumerate()
                        .map(|(i, f)| Self::from_json(f, &format!("{here}[{i}]")))
                        .collect::<Result<Vec<_>>>()?;
                    if key == "$and" {
                        Filter::And(parts)
                    } else {
                        Filter::Or(parts)
                    }
                }
                "$not" => Filter::Not(Box::new(Self::from_json(value, &here)?)),
                k if k.starts_with('$') => {
                    return Err(invalid(
                        &here,
                        "unknown operator (at the top level: $and, $or, $not)",
                    ))
                }
                _ => Self::condition(key, value, &here)?,
            });
        }
        Ok(if all.len() == 1 {
            all.pop().unwrap_or(Filter::And(vec![]))
        } else {
            Filter::And(all)
        })
    }

    /// The condition on attribute `attr`: a bare value or `{op: value}`.
    fn condition(attr: &str, value: &Json, path: &str) -> Result<Self> {
        let leaf = |op, values| {
            Filter::Leaf(Leaf {
                path: path.to_string(),
                attr: attr.to_string(),
                op,
                values,
            })
        };
        match value {
            Json::Object(ops) => {
                if ops.is_empty() {
                    return Err(invalid(path, "has no operator"));
                }
                let mut all = Vec::with_capacity(ops.len());
                for (name, v) in ops {
                    let here = format!("{path}[{name:?}]");
                    let op = Op::parse(name).ok_or_else(|| {
                        invalid(
                            &here,
                            "unknown operator (use $eq $ne $gt $gte $lt $lte $in $nin $contains)",
                        )
                    })?;
                    let values = match op {
                        Op::In | Op::Nin => {
                            let Json::Array(items) = v else {
                                return Err(invalid(&here, "needs a list of values"));
                            };
                            items
                                .iter()
                                .enumerate()
                                .map(|(i, x)| scalar(x, &format!("{here}[{i}]")))
                                .collect::<Result<Vec<_>>>()?
                        }
                        _ => vec![scalar(v, &here)?],
                    };
                    all.push(Filter::Leaf(Leaf {
                        path: here,
                        attr: attr.to_string(),
                        op,
                        values,
                    }));
                }
                Ok(if all.len() == 1 {
                    all.pop().unwrap_or(Filter::And(vec![]))
                } else {
                    Filter::And(all)
                })
            }
            Json::Array(_) => Err(invalid(
                path,
                "a list is not a value (for one of several values use {\"$in\": [...]})",
            )),
            v => Ok(leaf(Op::Eq, vec![scalar(v, path)?])),
        }
    }
}

fn scalar(v: &Json, path: &str) -> Result<Scalar> {
    Ok(match v {
        Json::Bool(b) => Scalar::Bool(*b),
        Json::String(s) => Scalar::Str(s.clone()),
        Json::Number(x) => match x.as_i64() {
            Some(i) => Scalar::Int(i),
            None => Scalar::Float(
                x.as_f64()
                    .filter(|f| f.is_finite())
                    .ok_or_else(|| invalid(path, "is not a finite number"))?,
            ),
        },
        Json::Null => return Err(invalid(path, "null is not a value")),
        Json::Array(_) | Json::Object(_) => {
            return Err(invalid(
                path,
                "needs a single value (a number, string or boolean)",
            ))
        }
    })
}
