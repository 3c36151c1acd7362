//! The query pipeline, in the order the spec gives it:
//! encode ([`query`]) -> Tier1 segmented scan ([`tier1`]) -> voting
//! ([`vote`]) -> centroid expansion and exact rescoring ([`expand`]) -> top-k.
//! [`engine::Engine`] ties the stages together over a loaded index.
pub mod engine;
pub mod expand;
pub mod params;
pub mod pool;
pub mod query;
pub mod router;
pub mod scratch;
pub mod tier1;
pub mod topk;
pub mod vote;

pub use engine::{Engine, SearchStats};
pub use params::{SearchParams, Tier1Mode};
