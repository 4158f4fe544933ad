//! MPI collectives written with actors and a tuple space, over 4 ranks:
//!
//! - **broadcast** (actors): every rank joins the process group `world`; the root sends the
//!   scale factor to the group with one `ProcessGroups::broadcast`;
//! - **scatter** (tuple space): the root writes one `("chunk", rank, [ints])` tuple per rank;
//!   each rank takes its own;
//! - **reduce** (tuple space): each rank writes `("partial", rank, sum)`; the root takes all
//!   of them and adds them up;
//! - **barrier** (tuple space `Barrier`): ranks wait for each other after writing their
//!   partial, so that afterwards every rank can read all partials (an **allreduce**);
//! - **gather** (actors): the root asks every rank to run; the replies, in rank order, are
//!   the scaled chunks, concatenated into the result vector.
//!
//! Prints `mpi patterns: broadcast, scatter, barrier, reduce, allreduce, gather over 4 ranks: OK`
//! when the gathered vector, the reduced sum and every rank's allreduce equal a sequential
//! computation, and exits non-zero otherwise.

use std::time::Duration;

use anyhow::{anyhow, ensure, Context as _};
use plexspaces_core::{Actor, BoxError, Context, Node, SpawnOptions};
use plexspaces_tuplespace::{
    template, tuple, Barrier, Spaces, Tuple, TupleSpaceContext, TupleSpaceFacet, Value,
};

const RANKS: usize = 4;
/// 60 values per rank: a tuple holds at most 64 fields.
const N: i64 = 240;
const FACTOR: i64 = 3;
const SPACE: &str = "mpi";
const WAIT: Duration = Duration::from_secs(20);

#[derive(Clone, Debug)]
enum Msg {
    /// The broadcast value.
    Scale(i64),
    /// Take the chunk, compute, reduce, wait on the barrier, allreduce, reply.
    Run,
}

#[derive(Debug, Default)]
struct RankResult {
    /// This rank's scaled chunk (gathered by the root).
    chunk: Vec<i64>,
    /// The global sum this rank computed from every partial after the barrier.
    allreduce: i64,
}

struct Rank {
    rank: usize,
    factor: Option<i64>,
}

impl Actor for Rank {
    type Msg = Msg;
    type Reply = RankResult;

    async fn on_start(&mut self, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        ctx.node().groups().join("world", &ctx.pid())?;
        Ok(())
    }

    async fn handle_call(
        &mut self,
        msg: Msg,
        ctx: &mut Context<Self>,
    ) -> Result<Option<RankResult>, BoxError> {
        match msg {
            Msg::Scale(factor) => {
                self.factor = Some(factor);
                Ok(None)
            }
            Msg::Run => {
                let factor = self.factor.ok_or("run before the broadcast")?;
                let space = ctx.tuple_space(SPACE)?;
                let r = self.rank as i64;
                // scatter: take my chunk
                let t = space.take(&template!("chunk", r, ?Tuple), WAIT).await?;
                let chunk: Vec<i64> = t
                    .get(2)
                    .and_then(Value::as_tuple)
                    .ok_or("chunk field")?
                    .fields()
                    .iter()
                    .map(|v| v.as_int().ok_or("chunk element"))
                    .collect::<Result<_, _>>()?;
                let scaled: Vec<i64> = chunk.iter().map(|x| x * factor).collect();
                // reduce: my partial sum
                space
                    .write(tuple!("partial", r, scaled.iter().sum::<i64>()))
                    .await?;
                // barrier: nobody reads the partials before all are written
                let mut barrier = Barrier::new(space.clone(), "partials-written", RANKS)?;
                barrier.wait(WAIT).await?;
                // allreduce: every rank reads (not takes) every partial
                let partials = space.read_all(&template!("partial", ?Int, ?Int)).await?;
                if partials.len() != RANKS {
                    return Err(format!(
                        "rank {r} saw {} partials after the barrier",
                        partials.len()
                    )
                    .into());
                }
                let allreduce = partials
                    .iter()
                    .map(|t| t.get(2).and_then(Value::as_int).ok_or("partial"))
                    .sum::<Result<i64, _>>()?;
                Ok(Some(RankResult {
                    chunk: scaled,
                    allreduce,
                }))
            }
        }
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let spaces = Spaces::memory();
    let facet = TupleSpaceFacet::new(spaces.clone(), "default", "examples")?;
    let node = Node::builder("mpi").build().await?;
    let mut ranks = Vec::new();
    for rank in 0..RANKS {
        ranks.push(
            node.start(
                Rank { rank, factor: None },
                SpawnOptions::named(format!("rank-{rank}")).facet(facet.clone()),
            )
            .await?,
        );
    }
    let root_space = spaces.space(plexspaces_tuplespace::SpaceId::new(
        "default", "examples", SPACE,
    )?);

    // broadcast
    let reached = node
        .groups()
        .broadcast::<Rank>("world", Msg::Scale(FACTOR))
        .await;
    ensure!(reached == RANKS, "broadcast reached {reached} ranks");

    // scatter
    let data: Vec<i64> = (1..=N).collect();
    let per = data.len().div_ceil(RANKS);
    for (rank, chunk) in data.chunks(per).enumerate() {
        let chunk = Tuple::new(chunk.iter().copied().map(Value::Int).collect());
        root_space
            .write(tuple!("chunk", rank as i64, chunk))
            .await?;
    }

    // run every rank; the replies are the gather
    // (concurrently: every rank waits on the barrier for the others)
    let runs = ranks.iter().map(|r| r.ask_timeout(Msg::Run, WAIT));
    let results = futures::future::join_all(runs)
        .await
        .into_iter()
        .enumerate()
        .map(|(rank, r)| r.with_context(|| format!("rank {rank}")))
        .collect::<anyhow::Result<Vec<RankResult>>>()?;

    // reduce at the root
    let partials = root_space
        .take_all(&template!("partial", ?Int, ?Int))
        .await?;
    let reduced: i64 = partials
        .iter()
        .map(|t| {
            t.get(2)
                .and_then(Value::as_int)
                .ok_or_else(|| anyhow!("partial"))
        })
        .sum::<anyhow::Result<i64>>()?;
    let gathered: Vec<i64> = results
        .iter()
        .flat_map(|r| r.chunk.iter().copied())
        .collect();

    let expected: Vec<i64> = data.iter().map(|x| x * FACTOR).collect();
    let expected_sum: i64 = expected.iter().sum();
    println!("reduce: {reduced} (expected {expected_sum})");
    println!(
        "allreduce per rank: {:?}",
        results.iter().map(|r| r.allreduce).collect::<Vec<_>>()
    );
    ensure!(gathered == expected, "gathered vector differs");
    ensure!(reduced == expected_sum, "reduce differs");
    ensure!(
        results.iter().all(|r| r.allreduce == expected_sum),
        "an allreduce differs"
    );
    ensure!(
        root_space.count(&template!("chunk", _, _)).await? == 0,
        "a chunk was not taken"
    );
    println!("mpi patterns: broadcast, scatter, barrier, reduce, allreduce, gather over {RANKS} ranks: OK");
    node.shutdown().await;
    Ok(())
}
