//! 2-D heat diffusion by region actors that exchange halo rows through a tuple space and
//! synchronize on a tuple-space [`Barrier`] after every step.
//!
//! The grid is split into horizontal strips, one region actor per strip. Each step a region
//! writes its first and last rows for its neighbours, takes theirs for the same step,
//! applies the explicit 5-point stencil to the rows it owns, then waits on the barrier. A
//! coordinator actor hands out the initial rows and gathers the final ones, also through
//! the space; regions and coordinator never message each other.
//!
//! Tuples in the space `heat` (rows are nested tuples of floats):
//! - `("init", i, row)` / `("final", i, row)`: grid row `i` before the first / after the
//!   last step;
//! - `("halo", step, region, "up" | "down", row)`: the region's first row (for the region
//!   above) or last row (for the region below) at the start of `step`;
//! - the barrier's own `("__barrier", ...)` tuples.
//!
//! Prints `heat diffusion 32x32 with 4 regions over 50 steps: OK` when the gathered grid
//! equals, bit for bit, a sequential run of the same stencil, and exits non-zero otherwise.

use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context as _};
use plexspaces_core::{Actor, BoxError, Context, Node, SpawnOptions};
use plexspaces_tuplespace::{
    template, tuple, Barrier, SpaceId, Spaces, Tuple, TupleSpace, TupleSpaceContext,
    TupleSpaceFacet, Value,
};
use tokio::task::JoinSet;

type Grid = Vec<Vec<f64>>;

/// Grid side, boundary rows and columns included.
const N: usize = 32;
const REGIONS: usize = 4;
const STEPS: i64 = 50;
/// Diffusion number `D * dt / dx^2`; the explicit scheme is stable for values up to 0.25.
const ALPHA: f64 = 0.2;
const SPACE: &str = "heat";
/// How long any single blocking tuple-space operation may wait before the run is declared
/// stuck; generous because a debug build on a loaded CI machine can be slow.
const WAIT_TIMEOUT: Duration = Duration::from_secs(20);
/// Bounds the whole run as seen from `main`, so a lost tuple fails the example instead of
/// hanging CI.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// The new values of one row from the rows above and below it; the first and last cells
/// are boundary and keep their values. Regions and the sequential reference both call this,
/// so every cell sees the same floating-point operations in the same order and the two
/// results can be compared exactly.
fn stencil_row(above: &[f64], row: &[f64], below: &[f64]) -> Vec<f64> {
    let mut next = row.to_vec();
    for j in 1..row.len().saturating_sub(1) {
        next[j] = row[j] + ALPHA * (above[j] + below[j] + row[j - 1] + row[j + 1] - 4.0 * row[j]);
    }
    next
}

/// The whole grid, one step at a time, on one thread.
fn sequential(mut grid: Grid, steps: i64) -> Grid {
    let rows = grid.len();
    for _ in 0..steps {
        let mut next = grid.clone();
        for i in 1..rows - 1 {
            next[i] = stencil_row(&grid[i - 1], &grid[i], &grid[i + 1]);
        }
        grid = next;
    }
    grid
}

/// Hot top edge, warm left edge, cool right edge, cold bottom edge, and an uneven interior
/// so that every region has something to diffuse from the first step.
fn initial_grid() -> Grid {
    (0..N)
        .map(|i| {
            (0..N)
                .map(|j| match (i, j) {
                    (0, _) => 100.0,
                    (i, _) if i == N - 1 => 0.0,
                    (_, 0) => 75.0,
                    (_, j) if j == N - 1 => 25.0,
                    _ => ((i * j) % 7) as f64 * 0.5,
                })
                .collect()
        })
        .collect()
}

/// The rows `first..end` of region `r`.
fn strip(r: usize) -> (usize, usize) {
    (r * N / REGIONS, (r + 1) * N / REGIONS)
}

/// One horizontal strip of the grid.
struct Region {
    index: usize,
}

impl Actor for Region {
    type Msg = ();
    type Reply = ();

    async fn handle_call(
        &mut self,
        _run: (),
        ctx: &mut Context<Self>,
    ) -> Result<Option<()>, BoxError> {
        let space = ctx.tuple_space(SPACE)?;
        let (first, end) = strip(self.index);
        let r = self.index as i64;
        let has_above = self.index > 0;
        let has_below = self.index + 1 < REGIONS;

        let mut rows = Vec::with_capacity(end - first);
        for i in first..end {
            let t = space
                .take(&template!("init", i as i64, ?Tuple), WAIT_TIMEOUT)
                .await?;
            rows.push(row_field(&t, 2)?);
        }
        if rows.is_empty() {
            return Err(format!("region {r} owns no rows").into());
        }

        // Halo tuples carry their step, so the data would be right without the barrier;
        // the barrier keeps every region in the same step, so that no region runs ahead
        // and at most one step's halos are ever in the space.
        let mut barrier = Barrier::new(space.clone(), "heat-step", REGIONS)?;
        for step in 0..STEPS {
            if has_above {
                space
                    .write(tuple!("halo", step, r, "up", row_tuple(&rows[0])))
                    .await?;
            }
            if has_below {
                space
                    .write(tuple!(
                        "halo",
                        step,
                        r,
                        "down",
                        row_tuple(&rows[rows.len() - 1])
                    ))
                    .await?;
            }
            let above = if has_above {
                Some(halo(&space, step, r - 1, "down").await?)
            } else {
                None
            };
            let below = if has_below {
                Some(halo(&space, step, r + 1, "up").await?)
            } else {
                None
            };

            let mut next = rows.clone();
            for (local, slot) in next.iter_mut().enumerate() {
                let global = first + local;
                if global == 0 || global == N - 1 {
                    continue;
                }
                let up = match local {
                    0 => above.as_deref(),
                    _ => rows.get(local - 1).map(Vec::as_slice),
                };
                let down = match rows.get(local + 1) {
                    Some(row) => Some(row.as_slice()),
                    None => below.as_deref(),
                };
                let (Some(up), Some(down)) = (up, down) else {
                    return Err(format!("region {r}: no neighbour rows for row {global}").into());
                };
                *slot = stencil_row(up, &rows[local], down);
            }
            rows = next;

            barrier.wait(WAIT_TIMEOUT).await?;
        }

        let finals = rows
            .iter()
            .enumerate()
            .map(|(local, row)| tuple!("final", (first + local) as i64, row_tuple(row)))
            .collect();
        space.write_all(finals).await?;
        Ok(Some(()))
    }
}

/// Takes the halo row `region` wrote for `step` in direction `dir`.
async fn halo(space: &TupleSpace, step: i64, region: i64, dir: &str) -> anyhow::Result<Vec<f64>> {
    let t = space
        .take(&template!("halo", step, region, dir, ?Tuple), WAIT_TIMEOUT)
        .await
        .with_context(|| format!("halo {dir} of region {region} at step {step}"))?;
    row_field(&t, 4)
}

/// Hands out the initial grid and gathers the final one.
struct Coordinator {
    initial: Grid,
}

impl Actor for Coordinator {
    type Msg = ();
    type Reply = Grid;

    async fn handle_call(
        &mut self,
        _run: (),
        ctx: &mut Context<Self>,
    ) -> Result<Option<Grid>, BoxError> {
        let space = ctx.tuple_space(SPACE)?;
        let rows = self.initial.len();
        let init = self
            .initial
            .iter()
            .enumerate()
            .map(|(i, row)| tuple!("init", i as i64, row_tuple(row)))
            .collect();
        space.write_all(init).await?;

        let mut grid: Vec<Option<Vec<f64>>> = vec![None; rows];
        for _ in 0..rows {
            let t = space
                .take(&template!("final", ?Int, ?Tuple), WAIT_TIMEOUT)
                .await?;
            let i = usize::try_from(int_field(&t, 1)?)?;
            let slot = grid
                .get_mut(i)
                .ok_or_else(|| anyhow!("final row {i} of a {rows}-row grid"))?;
            // Two regions claiming one row would mean the strips overlap.
            if slot.is_some() {
                return Err(format!("final row {i} written twice").into());
            }
            *slot = Some(row_field(&t, 2)?);
        }
        let grid = grid
            .into_iter()
            .enumerate()
            .map(|(i, row)| row.ok_or_else(|| anyhow!("final row {i} missing")))
            .collect::<anyhow::Result<Grid>>()?;
        Ok(Some(grid))
    }
}

fn row_tuple(row: &[f64]) -> Tuple {
    Tuple::new(row.iter().copied().map(Value::Float).collect())
}

fn int_field(t: &Tuple, field: usize) -> anyhow::Result<i64> {
    t.get(field)
        .and_then(Value::as_int)
        .ok_or_else(|| anyhow!("field {field} of {t} is not an integer"))
}

fn row_field(t: &Tuple, field: usize) -> anyhow::Result<Vec<f64>> {
    let row = t
        .get(field)
        .and_then(Value::as_tuple)
        .ok_or_else(|| anyhow!("field {field} of {t} is not a row"))?;
    row.fields()
        .iter()
        .map(|v| {
            v.as_float()
                .ok_or_else(|| anyhow!("{v} in a row is not a float"))
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let initial = initial_grid();
    let expected = sequential(initial.clone(), STEPS);

    let spaces = Spaces::memory();
    let facet = TupleSpaceFacet::new(spaces.clone(), "default", "examples")?;
    let node = Node::builder("heat").build().await?;

    // Regions start first and block on `init` rows that do not exist yet.
    let mut regions = JoinSet::new();
    for index in 0..REGIONS {
        let region = node.spawn_with(
            Region { index },
            SpawnOptions::named(format!("region-{index}")).facet(facet.clone()),
        )?;
        regions.spawn(async move {
            region
                .ask_timeout((), RUN_TIMEOUT)
                .await
                .with_context(|| format!("region {index}"))
        });
    }
    let coordinator = node.spawn_with(
        Coordinator { initial },
        SpawnOptions::named("coordinator").facet(facet.clone()),
    )?;

    let grid = coordinator
        .ask_timeout((), RUN_TIMEOUT)
        .await
        .context("coordinator")?;
    while let Some(joined) = regions.join_next().await {
        joined??;
    }
    node.shutdown().await;

    // Every halo was taken by the one neighbour it was for.
    let space = spaces.space(SpaceId::new("default", "examples", SPACE)?);
    let halos = space.count(&template!("halo", _, _, _, _)).await?;
    ensure!(halos == 0, "{halos} halo rows left in the space");

    let mut worst: Option<(usize, usize, f64)> = None;
    for (i, (got, want)) in grid.iter().zip(&expected).enumerate() {
        ensure!(got.len() == want.len(), "row {i} has {} cells", got.len());
        for (j, (g, w)) in got.iter().zip(want).enumerate() {
            let diff = (g - w).abs();
            // `!=` rather than a tolerance: both sides do identical arithmetic per cell, so
            // any difference at all means a halo from the wrong step or region.
            if g.to_bits() != w.to_bits() && worst.is_none_or(|(_, _, d)| diff > d) {
                worst = Some((i, j, diff));
            }
        }
    }
    if let Some((i, j, diff)) = worst {
        bail!(
            "cell ({i}, {j}) is {} but the sequential run has {} (off by {diff:e})",
            grid[i][j],
            expected[i][j]
        );
    }
    println!("heat diffusion {N}x{N} with {REGIONS} regions over {STEPS} steps: OK");
    Ok(())
}
