//! Ray: stateful actors called through futures, gathered with `ray.get`.
//!
//! ```python
//! @ray.remote
//! class Counter:
//!     def __init__(self): self.n = 0
//!     def incr(self, k): self.n += k; return self.n
//!
//! counters = [Counter.remote() for _ in range(4)]
//! refs = [c.incr.remote(i) for i, c in enumerate(counters)]
//! print(ray.get(refs))  # [0, 1, 2, 3]
//! ```

use anyhow::ensure;
use futures::future::try_join_all;
use plexspaces_core::{Actor, BoxError, Context, Node};

/// The actor class.
#[derive(Default)]
pub struct Counter {
    n: i64,
}

impl Actor for Counter {
    type Msg = i64;
    type Reply = i64;

    async fn handle_call(
        &mut self,
        k: i64,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<i64>, BoxError> {
        self.n += k;
        Ok(Some(self.n))
    }
}

/// Four counters, one call each in parallel, gathered; then a second round.
pub async fn demo() -> anyhow::Result<String> {
    let node = Node::builder("ray").build().await?;
    let counters = (0..4)
        .map(|_| node.spawn(Counter::default()))
        .collect::<Result<Vec<_>, _>>()?;
    // `c.incr.remote(i)` is `c.ask(i)`: a future; `ray.get(refs)` is joining them.
    let first = try_join_all(counters.iter().zip(0..).map(|(c, i)| c.ask(i))).await?;
    ensure!(first == vec![0, 1, 2, 3]);
    let second = try_join_all(counters.iter().map(|c| c.ask(10))).await?;
    ensure!(second == vec![10, 11, 12, 13], "each actor kept its state");
    node.shutdown().await;
    Ok("ray actor: four stateful actors, parallel calls gathered, state kept between calls".into())
}
