//! The query pipeline. [`engine::Engine`] computes a [`plan::QueryPlan`]
//! once per query and hands it to the stages, in order:
//! encode ([`query`]) -> route ([`router`]: probes and centroid expansion)
//! -> Tier1 scan ([`tier1`]) -> exact rescoring with error bounds
//! ([`rescore`]) -> top-k ([`topk`]). [`exact`] is brute force; [`view`]
//! is the typed projection of the mapped file that every stage reads;
//! [`calibrate`] measures, at build, the settings each recall target needs;
//! [`calibrated`] writes calibrated files (builds and recalibrated copies);
//! a filtered query ([`filter`]) is routed by [`filtered_route`].
pub mod calibrate;
pub mod calibrated;
pub mod engine;
pub mod exact;
pub mod filter;
pub mod filtered_route;
pub mod mask;
pub mod params;
pub mod plan;
pub mod query;
pub mod rescore;
pub mod router;
pub mod scratch;
pub mod stack;
pub mod tier1;
pub mod topk;
pub mod view;

pub use engine::{search_batch_parts, search_parts, Engine, Part, SearchStats};
pub use filter::Filter;
pub use mask::RowMask;
pub use params::SearchParams;
pub use plan::QueryPlan;
