//! N-body simulation (gravity, velocity Verlet) with the bodies split over shard actors.
//!
//! 32 bodies, 4 shards of 8. Every step each shard half-kicks and drifts its own bodies,
//! writes their new positions to the tuple space as `("pos", step, shard, [x y z ...])`,
//! reads every shard's positions for that step, computes its bodies' accelerations, kicks
//! again, and waits on the tuple space's `Barrier`; after the barrier it takes its own
//! position tuple back out (everyone has read it by then), so the space holds at most one
//! step's positions.
//!
//! Checks: the final state equals, bit for bit, a sequential run of the same arithmetic
//! (each acceleration sums over all bodies in the same order), and the total energy drifts
//! by less than 1e-3 (relative) over the run. The drift is printed.
//!
//! Prints `n-body: 32 bodies in 4 shards over 400 steps, energy drift <value>: OK`.

// Arithmetic over the x, y, z components reads clearest with one index for all arrays.
#![allow(clippy::needless_range_loop)]

use std::time::Duration;

use anyhow::{anyhow, ensure, Context as _};
use plexspaces_core::{Actor, BoxError, Context, Node, SpawnOptions};
use plexspaces_tuplespace::{
    template, tuple, Barrier, Spaces, Tuple, TupleSpace, TupleSpaceContext, TupleSpaceFacet, Value,
};

const BODIES: usize = 32;
const SHARDS: usize = 4;
const PER: usize = BODIES / SHARDS;
const STEPS: i64 = 400;
const DT: f64 = 0.0005;
/// Plummer softening: keeps close encounters finite.
const EPS2: f64 = 0.05 * 0.05;
const SPACE: &str = "nbody";
const WAIT: Duration = Duration::from_secs(20);

#[derive(Clone, Copy, Debug, PartialEq)]
struct Body {
    mass: f64,
    pos: [f64; 3],
    vel: [f64; 3],
}

/// A fixed pseudo-random cluster with zero total momentum.
fn initial_bodies() -> Vec<Body> {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((seed >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
    };
    let mut bodies: Vec<Body> = (0..BODIES)
        .map(|_| Body {
            mass: 1.0 / BODIES as f64 * (1.0 + 0.5 * next()),
            pos: [next(), next(), next()],
            vel: [0.1 * next(), 0.1 * next(), 0.1 * next()],
        })
        .collect();
    let total: f64 = bodies.iter().map(|b| b.mass).sum();
    for k in 0..3 {
        let p: f64 = bodies.iter().map(|b| b.mass * b.vel[k]).sum();
        for b in &mut bodies {
            b.vel[k] -= p / total;
        }
    }
    bodies
}

/// The acceleration of body `i` from all positions, summed over bodies in index order.
fn accel(i: usize, pos: &[[f64; 3]], mass: &[f64]) -> [f64; 3] {
    let mut a = [0.0; 3];
    for j in 0..pos.len() {
        if j == i {
            continue;
        }
        let d = [
            pos[j][0] - pos[i][0],
            pos[j][1] - pos[i][1],
            pos[j][2] - pos[i][2],
        ];
        let r2 = d[0] * d[0] + d[1] * d[1] + d[2] * d[2] + EPS2;
        let f = mass[j] / (r2 * r2.sqrt());
        for k in 0..3 {
            a[k] += f * d[k];
        }
    }
    a
}

fn energy(bodies: &[Body]) -> f64 {
    let mut e = 0.0;
    for (i, b) in bodies.iter().enumerate() {
        e += 0.5 * b.mass * b.vel.iter().map(|v| v * v).sum::<f64>();
        for c in &bodies[i + 1..] {
            let r2: f64 = (0..3).map(|k| (b.pos[k] - c.pos[k]).powi(2)).sum::<f64>() + EPS2;
            e -= b.mass * c.mass / r2.sqrt();
        }
    }
    e
}

fn kick(b: &mut Body, a: &[f64; 3]) {
    for k in 0..3 {
        b.vel[k] += 0.5 * DT * a[k];
    }
}

fn drift(b: &mut Body) {
    for k in 0..3 {
        b.pos[k] += DT * b.vel[k];
    }
}

fn sequential(mut bodies: Vec<Body>) -> Vec<Body> {
    let mass: Vec<f64> = bodies.iter().map(|b| b.mass).collect();
    let pos = |bs: &[Body]| bs.iter().map(|b| b.pos).collect::<Vec<_>>();
    let mut acc: Vec<[f64; 3]> = (0..BODIES)
        .map(|i| accel(i, &pos(&bodies), &mass))
        .collect();
    for _ in 0..STEPS {
        for (b, a) in bodies.iter_mut().zip(&acc) {
            kick(b, a);
            drift(b);
        }
        let p = pos(&bodies);
        acc = (0..BODIES).map(|i| accel(i, &p, &mass)).collect();
        for (b, a) in bodies.iter_mut().zip(&acc) {
            kick(b, a);
        }
    }
    bodies
}

/// A shard of `PER` consecutive bodies.
struct Shard {
    index: usize,
    bodies: Vec<Body>,
    mass: Vec<f64>,
}

impl Shard {
    /// Publishes this shard's positions for `step` and reads everyone's.
    async fn exchange(&self, space: &TupleSpace, step: i64) -> anyhow::Result<Vec<[f64; 3]>> {
        let mine = Tuple::new(
            self.bodies
                .iter()
                .flat_map(|b| b.pos)
                .map(Value::Float)
                .collect(),
        );
        space
            .write(tuple!("pos", step, self.index as i64, mine))
            .await?;
        let mut all = Vec::with_capacity(BODIES);
        for s in 0..SHARDS as i64 {
            let t = space
                .read(&template!("pos", step, s, ?Tuple), WAIT)
                .await
                .with_context(|| format!("positions of shard {s} at step {step}"))?;
            let flat: Vec<f64> = t
                .get(3)
                .and_then(Value::as_tuple)
                .ok_or_else(|| anyhow!("positions field"))?
                .fields()
                .iter()
                .map(|v| v.as_float().ok_or_else(|| anyhow!("position")))
                .collect::<anyhow::Result<_>>()?;
            all.extend(flat.chunks(3).map(|c| [c[0], c[1], c[2]]));
        }
        Ok(all)
    }

    fn accelerations(&self, all: &[[f64; 3]]) -> Vec<[f64; 3]> {
        (0..PER)
            .map(|l| accel(self.index * PER + l, all, &self.mass))
            .collect()
    }

    async fn finish_step(
        &self,
        space: &TupleSpace,
        barrier: &mut Barrier,
        step: i64,
    ) -> anyhow::Result<()> {
        barrier.wait(WAIT).await?;
        // Everyone has read this step's positions: take ours out.
        space
            .take(&template!("pos", step, self.index as i64, ?Tuple), WAIT)
            .await?;
        Ok(())
    }
}

impl Actor for Shard {
    type Msg = ();
    type Reply = Vec<Body>;

    async fn handle_call(
        &mut self,
        _run: (),
        ctx: &mut Context<Self>,
    ) -> Result<Option<Vec<Body>>, BoxError> {
        let space = ctx.tuple_space(SPACE)?;
        let mut barrier = Barrier::new(space.clone(), "nbody-step", SHARDS)?;
        let all = self.exchange(&space, 0).await?;
        let mut acc = self.accelerations(&all);
        self.finish_step(&space, &mut barrier, 0).await?;
        for step in 1..=STEPS {
            for (b, a) in self.bodies.iter_mut().zip(&acc) {
                kick(b, a);
                drift(b);
            }
            let all = self.exchange(&space, step).await?;
            acc = self.accelerations(&all);
            for (b, a) in self.bodies.iter_mut().zip(&acc) {
                kick(b, a);
            }
            self.finish_step(&space, &mut barrier, step).await?;
        }
        Ok(Some(self.bodies.clone()))
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bodies = initial_bodies();
    let expected = sequential(bodies.clone());
    let e0 = energy(&bodies);

    let spaces = Spaces::memory();
    let facet = TupleSpaceFacet::new(spaces.clone(), "default", "examples")?;
    let node = Node::builder("nbody").build().await?;
    let mass: Vec<f64> = bodies.iter().map(|b| b.mass).collect();
    let mut shards = Vec::new();
    for (index, chunk) in bodies.chunks(PER).enumerate() {
        shards.push(node.spawn_with(
            Shard {
                index,
                bodies: chunk.to_vec(),
                mass: mass.clone(),
            },
            SpawnOptions::named(format!("bodies-{index}")).facet(facet.clone()),
        )?);
    }
    let runs = shards
        .iter()
        .map(|s| s.ask_timeout((), Duration::from_secs(120)));
    let mut result = Vec::with_capacity(BODIES);
    for (i, r) in futures::future::join_all(runs)
        .await
        .into_iter()
        .enumerate()
    {
        result.extend(r.with_context(|| format!("shard {i}"))?);
    }
    node.shutdown().await;

    let left = spaces
        .space(plexspaces_tuplespace::SpaceId::new(
            "default", "examples", SPACE,
        )?)
        .count(&template!("pos", _, _, _))
        .await?;
    ensure!(left == 0, "{left} position tuples left in the space");
    ensure!(
        result == expected,
        "the sharded run differs from the sequential run"
    );
    let e1 = energy(&result);
    let drift = ((e1 - e0) / e0).abs();
    println!("energy: {e0:.9} -> {e1:.9}");
    ensure!(drift < 1e-3, "energy drift {drift:e} too large");
    println!("n-body: {BODIES} bodies in {SHARDS} shards over {STEPS} steps, energy drift {drift:.2e}: OK");
    Ok(())
}
