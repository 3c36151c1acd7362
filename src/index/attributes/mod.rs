//! Row attributes (format version 3): the `ATTR` section, a columnar,
//! write-once store that filters read (`core::filter`). Every column is
//! stored as an index, in the file's row numbering (rows sorted by
//! partition), so a predicate turns into row ranges without a scan:
//!
//! - **numeric** columns (`int`, `float`, `bool`): the values sorted
//!   (`keys`, i64 or f64; bools as 0/1) and the row of each (`rows`, u32):
//!   `=`, `<`, `in` are binary searches, their rows a slice of `rows`;
//! - **categorical** columns (`str`, `tags`): a sorted string dictionary
//!   and, per dictionary entry, the rows holding it (`starts` into `rows`):
//!   a posting list per value. A `tags` row holds any number of values.
//!
//! Layout of the section (bytes): `u64` length `J` of a JSON header, the
//! header (`{"n", "columns": [{"name", "type", "dict"?, "keys"?,
//! "starts"?, "rows"}]}`, each array an `[offset, count]` into the section),
//! zero padding to 8, then the arrays, each 8-aligned. The header and every
//! array are validated at open ([`Attributes::decode`]), so a filter never
//! indexes out of bounds.
//!
//! The types a build receives and the checks on them live here; [`encode()`]
//! writes the section, [`Attributes`] reads it back.
mod encode;
mod layout;
mod read;

use serde::{Deserialize, Serialize};

pub use encode::encode;
pub use read::{Attributes, Column, Keys, Rows};

/// The type of an attribute column, as `engine.info()` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttrType {
    /// 64-bit integers.
    Int,
    /// Floating point numbers (stored as f64).
    Float,
    /// Booleans.
    Bool,
    /// One string per row.
    Str,
    /// Any number of strings per row.
    Tags,
}

impl AttrType {
    /// The name users write and `info()` shows.
    pub fn name(self) -> &'static str {
        match self {
            AttrType::Int => "int",
            AttrType::Float => "float",
            AttrType::Bool => "bool",
            AttrType::Str => "str",
            AttrType::Tags => "tags",
        }
    }
}

/// One column as a build receives it, in input row order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ColumnInput {
    /// One integer per row.
    Int(Vec<i64>),
    /// One finite number per row.
    Float(Vec<f64>),
    /// One boolean per row.
    Bool(Vec<bool>),
    /// One string per row: `codes[r]` indexes `dict`.
    Str { dict: Vec<String>, codes: Vec<u32> },
    /// Strings per row: row `r` holds `codes[offsets[r]..offsets[r + 1]]`.
    Tags {
        dict: Vec<String>,
        offsets: Vec<u64>,
        codes: Vec<u32>,
    },
}

/// Named columns of `n` rows each, in input row order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AttributesInput {
    /// `(name, column)`, names unique.
    pub columns: Vec<(String, ColumnInput)>,
}

impl ColumnInput {
    /// The column's type.
    pub fn ty(&self) -> AttrType {
        match self {
            ColumnInput::Int(_) => AttrType::Int,
            ColumnInput::Float(_) => AttrType::Float,
            ColumnInput::Bool(_) => AttrType::Bool,
            ColumnInput::Str { .. } => AttrType::Str,
            ColumnInput::Tags { .. } => AttrType::Tags,
        }
    }

    /// Rows held.
    pub fn len(&self) -> usize {
        match self {
            ColumnInput::Int(v) => v.len(),
            ColumnInput::Float(v) => v.len(),
            ColumnInput::Bool(v) => v.len(),
            ColumnInput::Str { codes, .. } => codes.len(),
            ColumnInput::Tags { offsets, .. } => offsets.len().saturating_sub(1),
        }
    }

    /// True without rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// An empty column of type `ty`.
    pub fn empty(ty: AttrType) -> Self {
        match ty {
            AttrType::Int => ColumnInput::Int(vec![]),
            AttrType::Float => ColumnInput::Float(vec![]),
            AttrType::Bool => ColumnInput::Bool(vec![]),
            AttrType::Str => ColumnInput::Str {
                dict: vec![],
                codes: vec![],
            },
            AttrType::Tags => ColumnInput::Tags {
                dict: vec![],
                offsets: vec![0],
                codes: vec![],
            },
        }
    }

    /// Rows `rows` of this column, in that order.
    pub fn select(&self, rows: &[usize]) -> Self {
        match self {
            ColumnInput::Int(v) => ColumnInput::Int(rows.iter().map(|&r| v[r]).collect()),
            ColumnInput::Float(v) => ColumnInput::Float(rows.iter().map(|&r| v[r]).collect()),
            ColumnInput::Bool(v) => ColumnInput::Bool(rows.iter().map(|&r| v[r]).collect()),
            ColumnInput::Str { dict, codes } => ColumnInput::Str {
                dict: dict.clone(),
                codes: rows.iter().map(|&r| codes[r]).collect(),
            },
            ColumnInput::Tags {
                dict,
                offsets,
                codes,
            } => {
                let mut out = vec![0u64];
                let mut picked = Vec::new();
                for &r in rows {
                    picked.extend_from_slice(&codes[offsets[r] as usize..offsets[r + 1] as usize]);
                    out.push(picked.len() as u64);
                }
                ColumnInput::Tags {
                    dict: dict.clone(),
                    offsets: out,
                    codes: picked,
                }
            }
        }
    }

    /// Appends `other`'s rows. An `int` column joins a `float` one as
    /// floats; other types must match (the error says what differs).
    pub fn extend(&mut self, other: &ColumnInput) -> Result<(), String> {
        // Codes of `other`'s dictionary in `dict`, which grows as needed.
        fn remap(dict: &mut Vec<String>, other: &[String]) -> Vec<u32> {
            let mut at: std::collections::HashMap<String, u32> = dict
                .iter()
                .enumerate()
                .map(|(i, s)| (s.clone(), i as u32))
                .collect();
            other
                .iter()
                .map(|s| {
                    *at.entry(s.clone()).or_insert_with(|| {
                        dict.push(s.clone());
                        (dict.len() - 1) as u32
                    })
                })
                .collect()
        }
        match (self, other) {
            (ColumnInput::Int(a), ColumnInput::Int(b)) => a.extend_from_slice(b),
            (ColumnInput::Float(a), ColumnInput::Float(b)) => a.extend_from_slice(b),
            (ColumnInput::Float(a), ColumnInput::Int(b)) => a.extend(b.iter().map(|&x| x as f64)),
            (ColumnInput::Bool(a), ColumnInput::Bool(b)) => a.extend_from_slice(b),
            (
                ColumnInput::Str { dict, codes },
                ColumnInput::Str {
                    dict: d2,
                    codes: c2,
                },
            ) => {
                let map = remap(dict, d2);
                codes.extend(c2.iter().map(|&c| map[c as usize]));
            }
            (
                ColumnInput::Tags {
                    dict,
                    offsets,
                    codes,
                },
                ColumnInput::Tags {
                    dict: d2,
                    offsets: o2,
                    codes: c2,
                },
            ) => {
                let map = remap(dict, d2);
                let base = codes.len() as u64;
                codes.extend(c2.iter().map(|&c| map[c as usize]));
                offsets.extend(o2.iter().skip(1).map(|&o| o + base));
            }
            (a, b) => {
                return Err(format!(
                    "is {} here but {} in the collection",
                    b.ty().name(),
                    a.ty().name()
                ))
            }
        }
        Ok(())
    }
}

impl AttributesInput {
    /// `(name, type)` of every column.
    pub fn schema(&self) -> Vec<(String, AttrType)> {
        self.columns
            .iter()
            .map(|(n, c)| (n.clone(), c.ty()))
            .collect()
    }

    /// Empty columns of `schema`.
    pub fn empty(schema: &[(String, AttrType)]) -> Self {
        AttributesInput {
            columns: schema
                .iter()
                .map(|(n, t)| (n.clone(), ColumnInput::empty(*t)))
                .collect(),
        }
    }

    /// Rows `rows` of every column, in that order.
    pub fn select(&self, rows: &[usize]) -> Self {
        AttributesInput {
            columns: self
                .columns
                .iter()
                .map(|(n, c)| (n.clone(), c.select(rows)))
                .collect(),
        }
    }

    /// Appends `other`'s rows: the same column names (in any order), types
    /// as [`ColumnInput::extend`] allows.
    pub fn extend(&mut self, other: &AttributesInput) -> Result<(), String> {
        let mine: Vec<&String> = self.columns.iter().map(|(n, _)| n).collect();
        let theirs: Vec<&String> = other.columns.iter().map(|(n, _)| n).collect();
        let missing: Vec<&&String> = mine.iter().filter(|n| !theirs.contains(n)).collect();
        let extra: Vec<&&String> = theirs.iter().filter(|n| !mine.contains(n)).collect();
        if !missing.is_empty() || !extra.is_empty() {
            return Err(format!(
                "the collection's attributes are {mine:?}; these rows have {theirs:?} (every row needs the same attributes)"
            ));
        }
        for (name, col) in &mut self.columns {
            let Some((_, theirs)) = other.columns.iter().find(|(n, _)| n == name) else {
                continue;
            };
            col.extend(theirs)
                .map_err(|why| format!("attribute {name:?} {why}"))?;
        }
        Ok(())
    }
}

/// A value held by at least this share of the rows (and [`DENSE_MIN_ROWS`])
/// also gets a bitmap: its `n / 8` bytes are no more than its rows' `4`
/// bytes each, and a filter on it then costs `n / 64` word ORs instead of
/// a bit set per row (30k rows of debian-minilm-384: ~40 us of a 118 us
/// query at selectivity 0.5).
pub const DENSE_SHARE: usize = 32;

/// Values held by fewer rows never get a bitmap.
pub const DENSE_MIN_ROWS: usize = 2048;

/// Names users may not give a column: `id` filters on the row ids.
pub const RESERVED: &[&str] = &["id"];

/// Checks names, lengths, codes and values; the error names the column.
pub fn check_input(a: &AttributesInput, n: usize) -> Result<(), String> {
    let mut names = std::collections::HashSet::new();
    for (name, col) in &a.columns {
        if name.is_empty() || name.starts_with('$') || RESERVED.contains(&name.as_str()) {
            return Err(format!(
                "attribute name {name:?} is not allowed (empty, starting with $, or reserved)"
            ));
        }
        if !names.insert(name) {
            return Err(format!("attribute {name:?} is given twice"));
        }
        let bad = |what: String| Err(format!("attribute {name:?}: {what}"));
        let rows = match col {
            ColumnInput::Int(v) => v.len(),
            ColumnInput::Bool(v) => v.len(),
            ColumnInput::Float(v) => {
                if let Some(r) = v.iter().position(|x| !x.is_finite()) {
                    return bad(format!("value at row {r} is not finite"));
                }
                v.len()
            }
            ColumnInput::Str { dict, codes } => {
                if codes.iter().any(|&c| c as usize >= dict.len()) {
                    return bad("a code is outside the dictionary".into());
                }
                codes.len()
            }
            ColumnInput::Tags {
                dict,
                offsets,
                codes,
            } => {
                let ok = offsets.first() == Some(&0)
                    && offsets.last() == Some(&(codes.len() as u64))
                    && offsets.windows(2).all(|w| w[0] <= w[1]);
                if !ok {
                    return bad("tag offsets do not run from 0 to the number of tags".into());
                }
                if codes.iter().any(|&c| c as usize >= dict.len()) {
                    return bad("a code is outside the dictionary".into());
                }
                offsets.len() - 1
            }
        };
        if rows != n {
            return bad(format!("{rows} values for {n} vectors"));
        }
    }
    Ok(())
}
