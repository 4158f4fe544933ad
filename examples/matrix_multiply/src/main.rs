//! Matrix multiplication by a master and workers that coordinate only through a tuple space.
//!
//! The master writes the input matrices and one task tuple per block of rows; each worker
//! blocks on `take` of a task, computes those rows of `C = A * B` and writes them back as
//! result tuples; the master takes every result row and assembles `C`. Master and workers
//! never send each other a message: neither knows how many of the others there are or
//! whether they are running yet. A poison-pill task per worker ends the workers.
//!
//! Tuples in the space `matmul` (rows are nested tuples of integers):
//! - `("A", i, row)` and `("B", k, row)`: the inputs, read (not taken) by the workers;
//! - `("task", start, end)`: rows `start..end` of `C` to compute; `("task", -1, -1)` stops a
//!   worker;
//! - `("C", i, row)`: one computed row.
//!
//! Prints `matrix multiply 64x64 with 4 workers: OK` when `C` equals a direct sequential
//! multiplication, and exits non-zero otherwise.

use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context as _};
use plexspaces_core::{Actor, BoxError, Context, Node, SpawnOptions};
use plexspaces_tuplespace::{
    template, tuple, SpaceId, Spaces, Tuple, TupleSpaceContext, TupleSpaceFacet, Value,
};
use tokio::task::JoinSet;

type Matrix = Vec<Vec<i64>>;

const N: usize = 64;
const WORKERS: usize = 4;
const ROWS_PER_TASK: usize = 4;
const SPACE: &str = "matmul";
/// How long any single blocking tuple-space operation may wait before the run is declared
/// stuck; generous because a debug build on a loaded CI machine can be slow.
const TAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// Bounds the whole run as seen from `main`, so a lost tuple fails the example instead of
/// hanging CI.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// Publishes the job, then collects the result rows.
struct Master {
    a: Matrix,
    b: Matrix,
    workers: usize,
}

impl Actor for Master {
    type Msg = ();
    type Reply = Matrix;

    async fn handle_call(
        &mut self,
        _run: (),
        ctx: &mut Context<Self>,
    ) -> Result<Option<Matrix>, BoxError> {
        let space = ctx.tuple_space(SPACE)?;

        // Inputs go in before the tasks so that a worker holding a task finds them at once;
        // workers read them blocking all the same, so nothing depends on this order.
        let inputs = self
            .b
            .iter()
            .enumerate()
            .map(|(k, row)| tuple!("B", k as i64, row_tuple(row)))
            .chain(
                self.a
                    .iter()
                    .enumerate()
                    .map(|(i, row)| tuple!("A", i as i64, row_tuple(row))),
            )
            .collect::<Vec<_>>();
        space.write_all(inputs).await?;

        let rows = self.a.len();
        let tasks = (0..rows)
            .step_by(ROWS_PER_TASK)
            .map(|start| {
                tuple!(
                    "task",
                    start as i64,
                    (start + ROWS_PER_TASK).min(rows) as i64
                )
            })
            .collect::<Vec<_>>();
        space.write_all(tasks).await?;

        let mut c: Vec<Option<Vec<i64>>> = vec![None; rows];
        for _ in 0..rows {
            let result = space
                .take(&template!("C", ?Int, ?Tuple), TAKE_TIMEOUT)
                .await?;
            let i = usize::try_from(int_field(&result, 1)?)?;
            let slot = c
                .get_mut(i)
                .ok_or_else(|| anyhow!("result for row {i} of a {rows}-row matrix"))?;
            // A duplicate would mean a task was handed to two workers.
            if slot.is_some() {
                return Err(format!("row {i} computed twice").into());
            }
            *slot = Some(row_field(&result, 2)?);
        }

        // Pills go in only once every row is back, so stopping the workers does not rely on
        // `take` handing out older tuples first. One per worker: each is taken exactly once.
        let pills = (0..self.workers)
            .map(|_| tuple!("task", -1, -1))
            .collect::<Vec<_>>();
        space.write_all(pills).await?;

        // Every result is in, so no worker reads the inputs any more.
        space.take_all(&template!("A", ?Int, ?Tuple)).await?;
        space.take_all(&template!("B", ?Int, ?Tuple)).await?;

        let c = c
            .into_iter()
            .enumerate()
            .map(|(i, row)| row.ok_or_else(|| anyhow!("row {i} missing")))
            .collect::<anyhow::Result<Matrix>>()?;
        Ok(Some(c))
    }
}

/// Takes tasks until it takes a poison pill; replies with the number of tasks it did.
#[derive(Default)]
struct Worker {
    /// B is the same for every task, so a worker reads it once.
    b: Option<Matrix>,
}

impl Actor for Worker {
    type Msg = ();
    type Reply = usize;

    async fn handle_call(
        &mut self,
        _run: (),
        ctx: &mut Context<Self>,
    ) -> Result<Option<usize>, BoxError> {
        let space = ctx.tuple_space(SPACE)?;
        let mut done = 0;
        loop {
            let task = space
                .take(&template!("task", ?Int, ?Int), TAKE_TIMEOUT)
                .await?;
            let (start, end) = (int_field(&task, 1)?, int_field(&task, 2)?);
            if start < 0 {
                return Ok(Some(done));
            }
            for i in start..end {
                let a_row = space.read(&template!("A", i, ?Tuple), TAKE_TIMEOUT).await?;
                let a_row = row_field(&a_row, 2)?;
                let b = match &mut self.b {
                    Some(b) => b,
                    slot @ None => {
                        // B has as many rows as A has columns; read blocking, by index,
                        // so a worker does not depend on when the master wrote them.
                        let mut b = Vec::with_capacity(a_row.len());
                        for k in 0..a_row.len() {
                            let row = space
                                .read(&template!("B", k as i64, ?Tuple), TAKE_TIMEOUT)
                                .await?;
                            b.push(row_field(&row, 2)?);
                        }
                        slot.insert(b)
                    }
                };
                let c_row = multiply_row(&a_row, b)?;
                space.write(tuple!("C", i, row_tuple(&c_row))).await?;
            }
            done += 1;
        }
    }
}

/// Row `a_row` of A times B.
fn multiply_row(a_row: &[i64], b: &Matrix) -> anyhow::Result<Vec<i64>> {
    ensure!(a_row.len() == b.len(), "A row and B do not conform");
    let cols = b.first().map_or(0, Vec::len);
    Ok((0..cols)
        .map(|j| a_row.iter().zip(b).map(|(a, b_row)| a * b_row[j]).sum())
        .collect())
}

/// The reference: the textbook triple loop, on one thread, sharing no code with the actors.
fn multiply(a: &Matrix, b: &Matrix) -> Matrix {
    let (rows, inner, cols) = (a.len(), b.len(), b[0].len());
    let mut c = vec![vec![0i64; cols]; rows];
    for i in 0..rows {
        for j in 0..cols {
            for k in 0..inner {
                c[i][j] += a[i][k] * b[k][j];
            }
        }
    }
    c
}

/// A deterministic matrix with small positive and negative entries, so that a misplaced
/// row or column changes the product.
fn matrix(rows: usize, cols: usize, seed: usize) -> Matrix {
    (0..rows)
        .map(|i| {
            (0..cols)
                .map(|j| ((i * seed + j * (seed + 2) + i * j) % 17) as i64 - 8)
                .collect()
        })
        .collect()
}

fn row_tuple(row: &[i64]) -> Tuple {
    Tuple::new(row.iter().copied().map(Value::Int).collect())
}

fn int_field(t: &Tuple, field: usize) -> anyhow::Result<i64> {
    t.get(field)
        .and_then(Value::as_int)
        .ok_or_else(|| anyhow!("field {field} of {t} is not an integer"))
}

fn row_field(t: &Tuple, field: usize) -> anyhow::Result<Vec<i64>> {
    let row = t
        .get(field)
        .and_then(Value::as_tuple)
        .ok_or_else(|| anyhow!("field {field} of {t} is not a row"))?;
    row.fields()
        .iter()
        .map(|v| {
            v.as_int()
                .ok_or_else(|| anyhow!("{v} in a row is not an integer"))
        })
        .collect()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = matrix(N, N, 3);
    let b = matrix(N, N, 5);
    let expected = multiply(&a, &b);

    let spaces = Spaces::memory();
    let facet = TupleSpaceFacet::new(spaces.clone(), "default", "examples")?;
    let node = Node::builder("matmul").build().await?;

    // Workers start first and block on an empty space: the master need not exist yet.
    let mut workers = JoinSet::new();
    for w in 0..WORKERS {
        let worker = node.spawn_with(
            Worker::default(),
            SpawnOptions::named(format!("worker-{w}")).facet(facet.clone()),
        )?;
        workers.spawn(async move { worker.ask_timeout((), RUN_TIMEOUT).await });
    }
    let master = node.spawn_with(
        Master {
            a,
            b,
            workers: WORKERS,
        },
        SpawnOptions::named("master").facet(facet.clone()),
    )?;

    let c = master
        .ask_timeout((), RUN_TIMEOUT)
        .await
        .context("master")?;
    let mut tasks_done = 0;
    while let Some(joined) = workers.join_next().await {
        tasks_done += joined?.context("worker")?;
    }
    node.shutdown().await;

    ensure!(
        tasks_done == N.div_ceil(ROWS_PER_TASK),
        "workers report {tasks_done} tasks"
    );
    // Every pill was taken by exactly one worker and nothing else was left behind.
    let space = spaces.space(SpaceId::new("default", "examples", SPACE)?);
    let left = space.read_all(&template!(_, _, _)).await?;
    ensure!(left.is_empty(), "tuples left in the space: {left:?}");

    if let Some((i, j)) = (0..N)
        .flat_map(|i| (0..N).map(move |j| (i, j)))
        .find(|&(i, j)| c[i][j] != expected[i][j])
    {
        bail!(
            "C[{i}][{j}] = {} but the sequential product has {}",
            c[i][j],
            expected[i][j]
        );
    }
    println!("matrix multiply {N}x{N} with {WORKERS} workers: OK");
    Ok(())
}
