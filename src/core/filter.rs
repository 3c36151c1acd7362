//! Filters: a Mongo-style JSON document (`{"tenant": 7}`, `{"price":
//! {"$gte": 10, "$lt": 20}}`, `{"$or": [...]}`) parsed once per call into a
//! [`Filter`], then evaluated against one file's attribute indexes
//! (`index::attributes`) into a [`RowMask`] of its stored rows. Every leaf
//! is a binary search or a posting list, so a mask costs the matching rows
//! plus `n / 64` words per combining step, never a scan of the values.
//!
//! Errors are [`Error::InvalidFilter`] and name the part of the filter that
//! is wrong (`filter["price"]["$gte"]`).
use serde_json::Value as Json;

use super::mask::{set_bits, RowMask};
use crate::error::{Error, Result};
use crate::index::attributes::{AttrType, Attributes, Column, Keys, Rows};
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
    /// Rows in ascending id order.
    pub id_order: &'a [u32],
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

    /// The rows of `file` this filter matches.
    pub fn mask(&self, file: &IndexFile) -> Result<RowMask> {
        self.mask_of(&FilterSource::of(file))
    }

    /// The rows of `file` this filter matches.
    pub fn mask_of(&self, file: &FilterSource<'_>) -> Result<RowMask> {
        let n = file.len();
        Ok(match self {
            Filter::And(parts) => {
                let mut acc = RowMask::all(n);
                for p in parts {
                    if acc.allowed() == 0 {
                        // Still check the rest: an error must not depend
                        // on the data.
                        p.check_in(file)?;
                        continue;
                    }
                    acc.and_with(&p.mask_of(file)?);
                }
                acc
            }
            Filter::Or(parts) => {
                let mut acc = RowMask::none(n);
                for p in parts {
                    acc.or_with(&p.mask_of(file)?);
                }
                acc
            }
            Filter::Not(inner) => {
                let mut m = inner.mask_of(file)?;
                m.invert();
                m
            }
            Filter::Leaf(leaf) => leaf.mask_of(file)?,
        })
    }

    /// Type-checks the filter against `file`'s attributes.
    pub fn check(&self, file: &IndexFile) -> Result<()> {
        self.check_in(&FilterSource::of(file))
    }

    /// Type-checks the filter against `file`'s attributes.
    pub fn check_in(&self, file: &FilterSource<'_>) -> Result<()> {
        match self {
            Filter::And(p) | Filter::Or(p) => p.iter().try_for_each(|f| f.check_in(file)),
            Filter::Not(f) => f.check_in(file),
            Filter::Leaf(l) => l.column_type(file).and_then(|t| l.check(t)),
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

/// The type a leaf filters on: an attribute's, or `Int` for row ids.
enum Target {
    Id,
    Attr(AttrType),
}

impl Leaf {
    fn column_type(&self, file: &FilterSource<'_>) -> Result<Target> {
        if self.attr == ID_KEY {
            return Ok(Target::Id);
        }
        let attrs = file.attributes;
        match attrs.type_of(&self.attr) {
            Some(t) => Ok(Target::Attr(t)),
            None => {
                let known: Vec<String> = attrs.schema().into_iter().map(|(n, _)| n).collect();
                Err(invalid(
                    &self.path,
                    if known.is_empty() {
                        format!("unknown attribute {:?}: the index has no attributes (only \"id\" can be filtered)", self.attr)
                    } else {
                        format!(
                            "unknown attribute {:?} (the index has: id, {})",
                            self.attr,
                            known.join(", ")
                        )
                    },
                ))
            }
        }
    }

    /// Whether the operator and values fit the column's type.
    fn check(&self, target: Target) -> Result<()> {
        // What the column holds, and the kind of value it compares with.
        let (name, expected) = match target {
            Target::Id => ("the row id (int)", "a number"),
            Target::Attr(t @ (AttrType::Int | AttrType::Float)) => (t.name(), "a number"),
            Target::Attr(AttrType::Bool) => ("bool", "a boolean"),
            Target::Attr(t @ (AttrType::Str | AttrType::Tags)) => (t.name(), "a string"),
        };
        let accepts = |v: &Scalar| {
            matches!(
                (expected, v),
                ("a number", Scalar::Int(_) | Scalar::Float(_))
                    | ("a boolean", Scalar::Bool(_))
                    | ("a string", Scalar::Str(_))
            )
        };
        let wrong = |why: String| {
            Err(invalid(
                &self.path,
                format!("{:?} is {name}: {why}", self.attr),
            ))
        };
        if self.op.is_range() && expected != "a number" {
            return wrong("range operators need a number attribute".into());
        }
        if self.op == Op::Contains && expected != "a string" {
            return wrong("$contains needs a tags or str attribute".into());
        }
        if let Some(bad) = self.values.iter().find(|v| !accepts(v)) {
            return wrong(format!("expected {expected}, got {}", bad.kind()));
        }
        Ok(())
    }

    fn mask_of(&self, file: &FilterSource<'_>) -> Result<RowMask> {
        let target = self.column_type(file)?;
        let is_tags = matches!(target, Target::Attr(AttrType::Tags));
        self.check(target)?;
        let n = file.len();
        let bytes = file.bytes;
        // `Ne` and `Nin` are complements of `Eq` and `In` (on tags: rows
        // holding none of the values).
        let (op, negate) = match self.op {
            Op::Ne => (Op::Eq, true),
            Op::Nin => (Op::In, true),
            op => (op, false),
        };
        let mut m = RowMask::none(n);
        if self.attr == ID_KEY {
            let (ids, order) = (file.ids, file.id_order);
            let key = |i: usize| ids[order[i] as usize];
            numeric(
                &mut m,
                IdRows::Ids(order),
                |i| Num::Int(key(i)),
                op,
                &self.values,
            );
        } else {
            match file.attributes.column(bytes, &self.attr) {
                Some(Column::Numeric { keys, rows }) => {
                    let key = |i: usize| match keys {
                        Keys::Int(k) => Num::Int(k[i]),
                        Keys::Float(k) => Num::Float(k[i]),
                    };
                    numeric(&mut m, IdRows::Column(rows), key, op, &self.values);
                }
                Some(Column::Categorical { dict, starts, rows }) => {
                    let set = |m: &mut RowMask, code: usize| {
                        let (lo, hi) = (starts[code] as usize, starts[code + 1] as usize);
                        m.fill(|w| rows.set_into(lo, hi, w));
                    };
                    for v in &self.values {
                        let Scalar::Str(s) = v else { continue };
                        if op == Op::Contains && !is_tags {
                            // A substring of a str value: every dictionary
                            // entry that contains it.
                            for (code, d) in dict.iter().enumerate() {
                                if d.contains(s.as_str()) {
                                    set(&mut m, code);
                                }
                            }
                        } else if let Ok(code) = dict.binary_search(s) {
                            set(&mut m, code);
                        }
                    }
                }
                None => return Err(invalid(&self.path, "attribute column is unreadable")),
            }
        }
        if negate {
            m.invert();
        }
        Ok(m)
    }
}

/// The rows of a sorted numeric column: an attribute's (with dense
/// bitmaps) or the ids' order.
#[derive(Clone, Copy)]
enum IdRows<'a> {
    Ids(&'a [u32]),
    Column(Rows<'a>),
}

impl IdRows<'_> {
    fn len(&self) -> usize {
        match self {
            IdRows::Ids(r) => r.len(),
            IdRows::Column(r) => r.rows.len(),
        }
    }
}

/// A numeric key.
#[derive(Clone, Copy)]
enum Num {
    Int(i64),
    Float(f64),
}

/// `key` compared with `value` (both numeric; checked by [`Leaf::check`]).
fn compare(key: Num, value: &Scalar) -> std::cmp::Ordering {
    use std::cmp::Ordering::Equal;
    match (key, value) {
        (Num::Int(k), Scalar::Int(v)) => k.cmp(v),
        (Num::Int(k), Scalar::Float(v)) => (k as f64).partial_cmp(v).unwrap_or(Equal),
        (Num::Float(k), Scalar::Int(v)) => k.partial_cmp(&(*v as f64)).unwrap_or(Equal),
        (Num::Float(k), Scalar::Float(v)) => k.partial_cmp(v).unwrap_or(Equal),
        (Num::Int(k), Scalar::Bool(v)) => k.cmp(&i64::from(*v)),
        _ => Equal,
    }
}

/// Sets in `m` the rows of a sorted numeric column (`key(i)` is the `i`-th
/// smallest key, `rows[i]` its row) that satisfy `op` against `values`.
fn numeric(
    m: &mut RowMask,
    rows: IdRows<'_>,
    key: impl Fn(usize) -> Num,
    op: Op,
    values: &[Scalar],
) {
    use std::cmp::Ordering::{Greater, Less};
    let n = rows.len();
    // First index whose key is not below / above `v`.
    let first = |pred: &dyn Fn(usize) -> bool| {
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if pred(mid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    };
    let lower = |v: &Scalar| first(&|i| compare(key(i), v) == Less);
    let upper = |v: &Scalar| first(&|i| compare(key(i), v) != Greater);
    let mut set = |a: usize, b: usize| {
        m.fill(|w| match rows {
            IdRows::Ids(r) => set_bits(w, &r[a..b.max(a)]),
            IdRows::Column(r) => r.set_into(a, b.max(a), w),
        })
    };
    for v in values {
        match op {
            Op::Eq | Op::In | Op::Contains => set(lower(v), upper(v)),
            Op::Gt => set(upper(v), n),
            Op::Gte => set(lower(v), n),
            Op::Lt => set(0, lower(v)),
            Op::Lte => set(0, upper(v)),
            // Rewritten as complements of `Eq` / `In` by the caller.
            Op::Ne | Op::Nin => {}
        }
    }
}
