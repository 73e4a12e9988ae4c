//! Making a relation distinct at logical times that are totally ordered (every scope but the
//! iterative one of a recursive stratum).
//!
//! Differential's `distinct` arranges its input and reduces the arrangement into a second
//! one: two operators that each wait for the frontier, and two traces of the relation. A
//! relation of a non-recursive stratum needs neither trace once it is distinct (what reads it
//! arranges it as it needs), and with one totally ordered time the set it is at each time
//! follows from a count per row: this operator keeps that count, and at each time the frontier
//! completes, emits the rows whose count became positive and retracts those whose count
//! dropped to zero. One operator waits for the frontier, so a time is complete one worker
//! step sooner, and the relation is held once, in a hash map.

use super::build::Time;
use super::row::Row;
use differential_dataflow::hashable::Hashable;
use differential_dataflow::{AsCollection, VecCollection};
use rustc_hash::FxHashMap;
use std::collections::BTreeMap;
use timely::container::CapacityContainerBuilder;
use timely::dataflow::channels::pact::{Exchange, ParallelizationContract, Pipeline};
use timely::dataflow::operators::Capability;
use timely::dataflow::operators::generic::operator::Operator;

type Update<R> = (R, Time, isize);
/// The updates of a time not complete yet, with a capability to answer at it.
type Pending<R> = (Capability<Time>, Vec<(R, isize)>);

/// `collection` as a set: each row present once while its count is positive.
pub fn distinct<'s, R: Row>(collection: VecCollection<'s, Time, R>) -> VecCollection<'s, Time, R> {
    if collection.inner.scope().peers() == 1 {
        render(collection, Pipeline)
    } else {
        // A row's updates meet at one worker, which alone knows its count.
        let by_row = Exchange::new(|(row, _, _): &Update<R>| row.hashed());
        render(collection, by_row)
    }
}

fn render<'s, R: Row, P>(
    collection: VecCollection<'s, Time, R>,
    pact: P,
) -> VecCollection<'s, Time, R>
where
    P: ParallelizationContract<Time, Vec<Update<R>>>,
{
    collection
        .inner
        .unary_frontier::<CapacityContainerBuilder<Vec<Update<R>>>, _, _, _>(
            pact,
            "Distinct",
            |_capability, _info| {
                // The count of every row whose count is not zero, as of the last completed time.
                let mut counts: FxHashMap<R, isize> = FxHashMap::default();
                let mut pending: BTreeMap<Time, Pending<R>> = BTreeMap::new();
                move |(input, frontier), output| {
                    input.for_each(|capability, data| {
                        for (row, time, diff) in data.drain(..) {
                            pending
                                .entry(time)
                                .or_insert_with(|| (capability.delayed(&time, 0), Vec::new()))
                                .1
                                .push((row, diff));
                        }
                    });
                    while let Some(entry) = pending.first_entry() {
                        let time = *entry.key();
                        if frontier.less_equal(&time) {
                            break;
                        }
                        let (capability, mut updates) = entry.remove();
                        updates.sort_unstable_by(|a, b| a.0.cmp(&b.0));
                        let mut session = output.session(&capability);
                        let mut updates = updates.into_iter().peekable();
                        while let Some((row, mut diff)) = updates.next() {
                            while let Some((_, more)) = updates.next_if(|(next, _)| *next == row) {
                                diff += more;
                            }
                            if diff == 0 {
                                continue;
                            }
                            let (before, after) = match counts.get_mut(&row) {
                                Some(count) => {
                                    let before = *count;
                                    *count += diff;
                                    let after = *count;
                                    if after == 0 {
                                        counts.remove(&row);
                                    }
                                    (before, after)
                                }
                                None => {
                                    counts.insert(row.clone(), diff);
                                    (0, diff)
                                }
                            };
                            match (before > 0, after > 0) {
                                (false, true) => session.give((row, time, 1)),
                                (true, false) => session.give((row, time, -1)),
                                _ => {}
                            }
                        }
                    }
                }
            },
        )
        .as_collection()
}
