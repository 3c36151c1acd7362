//! A filtered query's route: which path answers it (`plan::filtered_path`),
//! the partitions routing opens, and whether brute force over the matching
//! rows costs less after all (`plan::filter_exact`). Blueprint 11.3.
use super::plan::{filter_exact, filtered_path, scattered_need, FilteredPath, Opened, QueryPlan};
use super::router::Router;
use super::scratch::Scratch;
use super::stack::Stack;
use super::tier1::rows_in;

/// What a filtered query does next.
pub enum FilteredStep {
    /// Score every matching row exactly.
    Brute,
    /// Tier1 over the partitions in `s.route_order`, keeping `candidates`
    /// survivors; `rows` are the rows they hold, when routing counted them.
    Scan {
        candidates: usize,
        rows: Option<usize>,
    },
}

/// Routes the filtered query prepared in `s` over `stack` (its mask holds
/// the filter) into `s.route_order`, from the plan's `candidates`.
pub fn route(
    stack: &Stack<'_>,
    router: &Router<'_>,
    plan: &QueryPlan,
    s: &mut Scratch,
) -> FilteredStep {
    let view = stack.first();
    let (n, allowed) = (stack.len(), stack.allowed());
    let per_part = n.div_ceil(view.partitions().max(1));
    let candidates = plan.candidates;
    let widened = |far: f32| ((candidates as f32 * far).ceil() as usize).min(allowed);
    let blocks = || stack.allowed_blocks();
    let routed_rows = || {
        router.select(&s.query, plan, &mut s.route_order);
        rows_in(stack, plan, &s.route_order)
    };
    let most = plan.max_probes().saturating_mul(per_part);
    match filtered_path(allowed, blocks, routed_rows, most, candidates, view.dim) {
        FilteredPath::Exact => FilteredStep::Brute,
        FilteredPath::Scan => {
            let far = router.route_matching(&s.query, &mut s.route_order);
            FilteredStep::Scan {
                candidates: widened(far),
                rows: None,
            }
        }
        FilteredPath::Routed => {
            let route = router.route_filtered(&s.query, plan, &mut s.ranking, &mut s.route_order);
            let candidates = widened(route.far);
            if route.scattered {
                let need = scattered_need(plan, route.far, per_part);
                // It needs every match, and Tier1 over them would cost more
                // (costed as if the partitions holding them were every row,
                // one per match at most): brute force, without ranking.
                // Dense matches (half the rows, far away) stream through
                // Tier1 instead.
                let every = Opened {
                    partitions: allowed.min(view.partitions()),
                    rows: n,
                    matches: allowed,
                };
                if need >= allowed && filter_exact(allowed, every, candidates, view.dim) {
                    return FilteredStep::Brute;
                }
                router.route_scattered(&s.ranking, need, &mut s.route_order);
            }
            let rows = rows_in(stack, plan, &s.route_order);
            // Brute force over the matching rows when they cost less than
            // the partitions they lie in (a rare filter, or a scattered
            // query that needs most of them).
            let order = s.route_order.iter();
            let opened = Opened {
                partitions: s.route_order.len(),
                rows,
                matches: order.map(|r| router.matches_in(r.row as usize)).sum(),
            };
            if filter_exact(allowed, opened, candidates, view.dim) {
                return FilteredStep::Brute;
            }
            router.finish(&s.query, &mut s.route_order);
            FilteredStep::Scan {
                candidates,
                rows: Some(rows),
            }
        }
    }
}
