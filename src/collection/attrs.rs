//! Attributes in a live collection. The schema (`(name, type)` of every
//! column) is fixed by the first `add` that gives attributes to an empty
//! collection, kept in every manifest, and every later `add` / `upsert`
//! must give the same columns ([`normalized`]). Fresh rows keep their
//! values in memory and are filtered through a small attribute index built
//! once per state ([`FreshIndex`]); segments carry theirs in their `ATTR`
//! section and hand them back when a checkpoint rewrites them
//! ([`segment_values`]).
use crate::core::filter::FilterSource;
use crate::core::Engine;
use crate::error::{Error, Result};
use crate::index::attributes::{self, AttrType, Attributes, AttributesInput};

/// Checks a call's attributes for `n` rows against `schema` (empty: the
/// collection has none yet; `empty` says it holds no rows, so a schema may
/// start) and returns them in the schema's column order and types.
pub fn normalized(
    schema: &[(String, AttrType)],
    empty: bool,
    given: Option<&AttributesInput>,
    n: usize,
) -> Result<Option<AttributesInput>> {
    let bad = |why: String| Error::param("attributes", why);
    let Some(given) = given.filter(|a| !a.columns.is_empty()) else {
        if schema.is_empty() {
            return Ok(None);
        }
        let names: Vec<&str> = schema.iter().map(|(n, _)| n.as_str()).collect();
        return Err(bad(format!(
            "the collection's rows have attributes {names:?}; give them for these rows too"
        )));
    };
    attributes::check_input(given, n).map_err(bad)?;
    if schema.is_empty() {
        if !empty {
            return Err(bad(
                "the collection already holds rows without attributes; attributes must be given from the first add"
                    .into(),
            ));
        }
        return Ok(Some(given.clone()));
    }
    let mut out = AttributesInput::empty(schema);
    out.extend(given).map_err(bad)?;
    Ok(Some(out))
}

/// The attribute values of every stored row of a segment, in stored order
/// (`None` without attributes).
pub fn segment_values(engine: &Engine) -> Option<AttributesInput> {
    let f = engine.file();
    let a = f.attributes();
    (!a.is_empty()).then(|| a.to_input(f.attribute_bytes(), f.len()))
}

/// The fresh rows' attributes as a filter reads them: encoded like a
/// file's `ATTR` section (rows in insertion order) and decoded.
pub struct FreshIndex {
    attributes: Attributes,
    bytes: Vec<u8>,
    ids: Vec<i64>,
    id_order: std::sync::OnceLock<Vec<u32>>,
}

impl FreshIndex {
    /// The index of rows `ids` with `values` (columns of `schema`).
    pub fn of(
        schema: &[(String, AttrType)],
        ids: &[i64],
        values: Option<&AttributesInput>,
    ) -> Result<Self> {
        let empty = AttributesInput::empty(schema);
        let values = values.unwrap_or(&empty);
        let (attributes, bytes) = if values.columns.is_empty() {
            (Attributes::default(), Vec::new())
        } else {
            let order: Vec<u32> = (0..ids.len() as u32).collect();
            let bytes =
                attributes::encode(values, &order).map_err(|r| Error::param("attributes", r))?;
            let decoded = Attributes::decode(&bytes, ids.len() as u64)
                .map_err(|r| Error::param("attributes", r))?;
            (decoded, bytes)
        };
        Ok(FreshIndex {
            attributes,
            bytes,
            ids: ids.to_vec(),
            id_order: std::sync::OnceLock::new(),
        })
    }

    /// What a filter evaluates against.
    pub fn source(&self) -> FilterSource<'_> {
        FilterSource {
            attributes: &self.attributes,
            bytes: &self.bytes,
            ids: &self.ids,
            id_order: &self.id_order,
        }
    }
}
