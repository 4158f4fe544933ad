//! A reusable barrier built only from tuple-space operations.

use std::time::Duration;

use crate::{template, tuple, Error, Result, TupleSpace};

/// N parties wait until all have arrived, then all go on; the same barrier serves round
/// after round (generations).
///
/// Each party makes its own `Barrier` with the same space, name and party count; parties
/// may live in different processes when the backend wakes waiters across processes. Per
/// generation `g`, an arriving party writes `("__barrier", name, g, "arrive")`, counts the
/// arrivals, and the party that sees all `parties` of them writes
/// `("__barrier", name, g, "open")` and removes generation `g - 1`, which every party has
/// left by then. Everyone then blocks reading the `open` tuple.
///
/// A party that times out leaves its arrival behind, so the other parties of that
/// generation still get through once the remaining ones arrive.
#[derive(Debug, Clone)]
pub struct Barrier {
    space: TupleSpace,
    name: String,
    parties: u64,
    generation: i64,
}

/// What [`Barrier::wait`] tells a party.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarrierWaitResult {
    /// the generation just completed, counting from 0
    pub generation: i64,
    /// whether this party opened the barrier (at least one party does)
    pub is_leader: bool,
}

const TAG: &str = "__barrier";

impl Barrier {
    /// A barrier for `parties` parties named `name` in `space`.
    pub fn new(space: TupleSpace, name: &str, parties: usize) -> Result<Self> {
        if parties == 0 {
            return Err(Error::InvalidArgument(
                "a barrier needs at least one party".into(),
            ));
        }
        if name.is_empty() {
            return Err(Error::InvalidArgument("a barrier needs a name".into()));
        }
        Ok(Barrier {
            space,
            name: name.to_owned(),
            parties: parties as u64,
            generation: 0,
        })
    }

    /// The generation the next `wait` joins.
    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// Arrive and wait up to `timeout` for the other parties.
    pub async fn wait(&mut self, timeout: Duration) -> Result<BarrierWaitResult> {
        let g = self.generation;
        let name = self.name.as_str();
        self.space.write(tuple!(TAG, name, g, "arrive")).await?;
        let arrived = self.space.count(&template!(TAG, name, g, "arrive")).await?;
        let is_leader = arrived >= self.parties;
        if is_leader {
            self.space.write(tuple!(TAG, name, g, "open")).await?;
            if g > 0 {
                self.space.take_all(&template!(TAG, name, g - 1, _)).await?;
            }
        }
        self.space
            .read(&template!(TAG, name, g, "open"), timeout)
            .await?;
        self.generation += 1;
        Ok(BarrierWaitResult {
            generation: g,
            is_leader,
        })
    }
}
