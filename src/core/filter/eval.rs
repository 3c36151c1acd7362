//! Evaluating a [`Filter`]: type-checking it against one file's attributes
//! and turning it into a [`RowMask`] of the file's stored rows.
use super::{invalid, Filter, FilterSource, Leaf, Op, Scalar, ID_KEY};
use crate::core::mask::RowMask;
use crate::error::Result;
use crate::index::attributes::{AttrType, Column, Keys, Rows};
use crate::index::IndexFile;
use crate::math::bits::set_bits;

impl Filter {
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
            let (ids, order) = (file.ids, file.rows_by_id());
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
                    let mut codes = Vec::new();
                    for v in &self.values {
                        let Scalar::Str(s) = v else { continue };
                        if op == Op::Contains && !is_tags {
                            // A substring of a str value: every dictionary
                            // entry that contains it.
                            codes.extend((0..dict.len()).filter(|&c| dict[c].contains(s.as_str())));
                        } else if let Ok(code) = dict.binary_search(s) {
                            codes.push(code);
                        }
                    }
                    // One fill for every code (each fill recounts the mask).
                    codes.sort_unstable();
                    codes.dedup();
                    let span = |c: usize| (starts[c] as usize, starts[c + 1] as usize);
                    let set = |w: &mut [u64]| {
                        for &code in &codes {
                            let (lo, hi) = span(code);
                            rows.set_into(lo, hi, w);
                        }
                    };
                    if is_tags {
                        // A row holds several tags: count what is set.
                        m.fill(set);
                    } else {
                        // A row holds one value: distinct codes, disjoint rows.
                        let count = codes.iter().map(|&c| span(c).1 - span(c).0).sum();
                        m.fill_counted(count, set);
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
    // Every value's range first, then one fill: a fill recounts the whole
    // mask, and an allowlist of 1,000 ids on 1M rows took 11 ms filling
    // once per id.
    let mut ranges: Vec<(usize, usize)> = values
        .iter()
        .filter_map(|v| match op {
            Op::Eq | Op::In | Op::Contains => Some((lower(v), upper(v))),
            Op::Gt => Some((upper(v), n)),
            Op::Gte => Some((lower(v), n)),
            Op::Lt => Some((0, lower(v))),
            Op::Lte => Some((0, upper(v))),
            // Rewritten as complements of `Eq` / `In` by the caller.
            Op::Ne | Op::Nin => None,
        })
        .filter(|&(a, b)| a < b)
        .collect();
    // Merged into disjoint ranges: each index is one row (a row holds one
    // key, an id one row), so their lengths count the rows set.
    ranges.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(ranges.len());
    for (a, b) in ranges {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(b),
            _ => merged.push((a, b)),
        }
    }
    let count = merged.iter().map(|&(a, b)| b - a).sum();
    m.fill_counted(count, |w| {
        for &(a, b) in &merged {
            match rows {
                IdRows::Ids(r) => set_bits(w, &r[a..b]),
                IdRows::Column(r) => r.set_into(a, b, w),
            }
        }
    });
}
