//! Making a relation distinct at logical times that are totally ordered (every scope but the
//! iterative one of a recursive stratum).
//!
//! Differential's `distinct` arranges its input and reduces the arrangement into a second
//! one: two operators that each wait for the frontier, and two traces of the relation. A
//! relation of a non-recursive stratum needs neither trace once it is distinct (what reads it
//! arranges it as it needs), and with one totally ordered time the set it is at each time
//! follows from a count per row ([`Settling`]): at each time the frontier completes, the rows
//! whose count became positive are inserted and those whose count dropped to zero retracted.
//!
//! [`distinct`] is that count as an operator, for a relation that other operators of its
//! dataflow read. Where nothing in the dataflow reads the relation but the operator that
//! captures its changes, the capture keeps the count itself (see the runtime's `construct`),
//! which saves the worker step that the capture would otherwise wait for this operator's
//! output to be complete.

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

/// A relation made a set as its times complete: the count of every row whose count is not
/// zero as of the last completed time, and the updates of the times not complete yet.
pub struct Settling<R: Row> {
    counts: FxHashMap<R, isize>,
    pending: BTreeMap<Time, Vec<(R, isize)>>,
}

impl<R: Row> Default for Settling<R> {
    fn default() -> Self {
        Settling {
            counts: FxHashMap::default(),
            pending: BTreeMap::new(),
        }
    }
}

impl<R: Row> Settling<R> {
    /// Takes in an update of the relation as a multiset.
    pub fn stash(&mut self, row: R, time: Time, diff: isize) {
        self.pending.entry(time).or_default().push((row, diff));
    }

    /// Settles, in time order, every time with updates before `least` (the least time at which
    /// the input may still change; `None` when it never will): calls `settled` once per such
    /// time with the changes of the set at it (`+1` for a row that appears, `-1` for one that
    /// goes), which may be none.
    pub fn settle(&mut self, least: Option<Time>, mut settled: impl FnMut(Time, Vec<(R, isize)>)) {
        while let Some(entry) = self.pending.first_entry() {
            let time = *entry.key();
            if least.is_some_and(|least| least <= time) {
                break;
            }
            let mut updates = entry.remove();
            updates.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            let mut changes = Vec::new();
            let mut updates = updates.into_iter().peekable();
            while let Some((row, mut diff)) = updates.next() {
                while let Some((_, more)) = updates.next_if(|(next, _)| *next == row) {
                    diff += more;
                }
                if diff == 0 {
                    continue;
                }
                let (before, after) = match self.counts.get_mut(&row) {
                    Some(count) => {
                        let before = *count;
                        *count += diff;
                        let after = *count;
                        if after == 0 {
                            self.counts.remove(&row);
                        }
                        (before, after)
                    }
                    None => {
                        self.counts.insert(row.clone(), diff);
                        (0, diff)
                    }
                };
                match (before > 0, after > 0) {
                    (false, true) => changes.push((row, 1)),
                    (true, false) => changes.push((row, -1)),
                    _ => {}
                }
            }
            settled(time, changes);
        }
    }
}

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
                let mut settling = Settling::default();
                // A capability for every time with updates still to settle, to answer at it.
                let mut capabilities: BTreeMap<Time, Capability<Time>> = BTreeMap::new();
                move |(input, frontier), output| {
                    input.for_each(|capability, data| {
                        for (row, time, diff) in data.drain(..) {
                            capabilities
                                .entry(time)
                                .or_insert_with(|| capability.delayed(&time, 0));
                            settling.stash(row, time, diff);
                        }
                    });
                    let least = frontier.frontier().first().copied();
                    settling.settle(least, |time, changes| {
                        let capability = capabilities
                            .remove(&time)
                            .expect("a capability is kept for every time with updates");
                        let mut session = output.session(&capability);
                        for (row, diff) in changes {
                            session.give((row, time, diff));
                        }
                    });
                }
            },
        )
        .as_collection()
}
