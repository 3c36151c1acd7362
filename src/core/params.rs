//! The search knobs: the one source of their names, types, bounds, defaults
//! and descriptions. [`search_params!`] writes the struct, its `Default`,
//! its validation and the table ([`SearchParams::spec`]) that the Python
//! package reads to build `svve_core.SearchParams`; nothing else lists them.
//! How a knob of 0 ("automatic": calibrated for `target_recall`) becomes a
//! number is the plan's business (`core::plan`).
use crate::error::{Error, Result};

/// A knob's value as the Python side sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ParamValue {
    /// A flag.
    Bool(bool),
    /// A non-negative integer.
    Int(u64),
    /// A finite float.
    Float(f64),
}

impl std::fmt::Display for ParamValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParamValue::Bool(b) => write!(f, "{b}"),
            ParamValue::Int(i) => write!(f, "{i}"),
            ParamValue::Float(x) => write!(f, "{x}"),
        }
    }
}

/// The Rust types a knob can have, and how each maps to a [`ParamValue`].
pub trait Knob: Copy {
    /// `"bool"`, `"int"` or `"float"`.
    const KIND: &'static str;
    /// The value, widened.
    fn to_value(self) -> ParamValue;
    /// The value, if it has this type and fits it.
    fn from_value(v: ParamValue) -> Option<Self>;
    /// `min <= self <= max` (and finite, for floats); checked per query, so
    /// in the native type, without widening.
    fn within(self, min: Self, max: Self) -> bool;
}

impl Knob for bool {
    const KIND: &'static str = "bool";
    fn to_value(self) -> ParamValue {
        ParamValue::Bool(self)
    }
    fn from_value(v: ParamValue) -> Option<Self> {
        match v {
            ParamValue::Bool(b) => Some(b),
            _ => None,
        }
    }
    fn within(self, _: Self, _: Self) -> bool {
        true
    }
}

macro_rules! int_knob {
    ($($t:ty),*) => {$(
        impl Knob for $t {
            const KIND: &'static str = "int";
            fn to_value(self) -> ParamValue {
                ParamValue::Int(self as u64)
            }
            fn from_value(v: ParamValue) -> Option<Self> {
                match v {
                    ParamValue::Int(i) => <$t>::try_from(i).ok(),
                    _ => None,
                }
            }
            fn within(self, min: Self, max: Self) -> bool {
                (min..=max).contains(&self)
            }
        }
    )*};
}
int_knob!(usize, u8);

impl Knob for f32 {
    const KIND: &'static str = "float";
    /// The shortest decimal that reads back as this `f32` (so 0.7 is shown
    /// to Python as 0.7, not 0.699999988079071).
    fn to_value(self) -> ParamValue {
        ParamValue::Float(self.to_string().parse().unwrap_or(f64::from(self)))
    }
    fn from_value(v: ParamValue) -> Option<Self> {
        match v {
            ParamValue::Float(x) if (x as f32).is_finite() => Some(x as f32),
            _ => None,
        }
    }
    fn within(self, min: Self, max: Self) -> bool {
        self.is_finite() && (min..=max).contains(&self)
    }
}

/// One knob's entry in [`SearchParams::spec`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ParamSpec {
    /// Field name, in Rust and Python.
    pub name: &'static str,
    /// `"bool"`, `"int"` or `"float"`.
    pub kind: &'static str,
    /// The default value.
    pub default: ParamValue,
    /// Smallest allowed value (`None` for flags).
    pub min: Option<ParamValue>,
    /// Largest allowed value (`None` for flags).
    pub max: Option<ParamValue>,
    /// One line for users (docstrings, `--help`).
    pub doc: &'static str,
}

/// Writes [`SearchParams`] from one table: per knob its type, default,
/// bounds (`min..=max`, or `flag`) and description.
macro_rules! search_params {
    ($($name:ident: $ty:ty = $default:expr, $bounds:tt, $doc:literal;)*) => {
        /// Knobs of one search. `exact` bypasses every approximate stage.
        #[derive(Debug, Clone, PartialEq)]
        pub struct SearchParams {
            /// Number of results wanted (clamped to the index size); given
            /// per call, not part of [`SearchParams::spec`].
            pub k: usize,
            $(#[doc = $doc] pub $name: $ty,)*
        }

        impl Default for SearchParams {
            fn default() -> Self {
                SearchParams { k: 10, $($name: $default,)* }
            }
        }

        impl SearchParams {
            /// Every knob but `k`: name, type, default, bounds, description.
            pub fn spec() -> Vec<ParamSpec> {
                vec![$({
                    let (min, max) = search_params!(@bounds $ty, $bounds);
                    ParamSpec {
                        name: stringify!($name),
                        kind: <$ty as Knob>::KIND,
                        default: Knob::to_value(($default) as $ty),
                        min,
                        max,
                        doc: $doc,
                    }
                },)*]
            }

            /// Sets the knob called `name`; a value of the wrong type is an
            /// error naming the knob. Bounds are checked by
            /// [`SearchParams::validate`], once all knobs are set.
            pub fn set(&mut self, name: &str, value: ParamValue) -> Result<()> {
                match name {
                    $(stringify!($name) => {
                        self.$name = Knob::from_value(value).ok_or_else(|| Error::InvalidParameter {
                            name: stringify!($name),
                            reason: format!("{value} is not a valid {}", <$ty as Knob>::KIND),
                        })?;
                    })*
                    _ => return Err(Error::param("params", format!("no search parameter `{name}`"))),
                }
                Ok(())
            }

            /// Rejects values outside their bounds, naming the knob.
            pub fn validate(&self) -> Result<()> {
                if self.k == 0 {
                    return Err(Error::param("k", "must be at least 1"));
                }
                $(search_params!(@check self, $name, $ty, $bounds);)*
                Ok(())
            }
        }
    };
    (@check $s:expr, $name:ident, $ty:ty, flag) => {};
    (@check $s:expr, $name:ident, $ty:ty, ($min:expr, $max:expr)) => {
        if !Knob::within($s.$name, ($min) as $ty, ($max) as $ty) {
            return Err(Error::param(
                stringify!($name),
                format!(
                    "{} is not in {}..={}",
                    Knob::to_value($s.$name),
                    Knob::to_value(($min) as $ty),
                    Knob::to_value(($max) as $ty),
                ),
            ));
        }
    };
    (@bounds $ty:ty, flag) => { (None, None) };
    (@bounds $ty:ty, ($min:expr, $max:expr)) => {
        (Some(Knob::to_value(($min) as $ty)), Some(Knob::to_value(($max) as $ty)))
    };
}

search_params! {
    target_recall: f32 = 0.95, (1e-6, 1.0),
        "Mean recall@k to reach: effort knobs left at 0 take the settings the index calibrated for this target (1.0 = exact).";
    exact: bool = false, flag,
        "Score every vector exactly in float32 (brute force).";
    candidates: usize = 0, (0, usize::MAX),
        "Tier1 survivors handed to Tier2; 0 = calibrated for target_recall.";
    nprobe: usize = 0, (0, usize::MAX),
        "Partitions Tier1 always scans; 0 = calibrated for target_recall.";
    expand_probes: usize = 0, (0, usize::MAX),
        "Most extra partitions expansion may open; 0 = calibrated for target_recall.";
    expand_ratio: f32 = 0.0, (0.0, f32::MAX),
        "Open an extra partition if its squared centroid distance is within (1 + expand_ratio) of the nearest centroid's; 0 = calibrated for target_recall.";
    query_bits: u8 = 4, (1, 8),
        "Bits per query level in the Tier1 estimate.";
    expansion: bool = true, flag,
        "Centroid expansion: open extra partitions near the query, and skip survivors whose error bound cannot win.";
    epsilon: f32 = 3.0, (0.0, f32::MAX),
        "Width of the expansion error bound, in standard deviations; with no effort knob set, also scaled by the calibrated target's error_scale.";
}
