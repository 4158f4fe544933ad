//! Orleans: a virtual actor (grain) addressed by key, activated on first use.
//!
//! ```csharp
//! public interface IPlayerGrain : IGrainWithStringKey {
//!     Task<int> AddScore(int points);
//! }
//! public class PlayerGrain : Grain, IPlayerGrain {
//!     int score;
//!     public Task<int> AddScore(int points) { score += points; return Task.FromResult(score); }
//! }
//! var alice = client.GetGrain<IPlayerGrain>("alice");
//! await alice.AddScore(10);
//! ```

use anyhow::{ensure, Context as _};
use plexspaces_core::{Actor, BoxError, Context, Node};
use plexspaces_node::{ActivationKey, ActorType, Registry, RegistryOptions};

/// The grain class.
#[derive(Default)]
pub struct Player {
    score: i64,
}

/// `AddScore(points)`: returns the new score.
pub struct AddScore(pub i64);

impl Actor for Player {
    type Msg = AddScore;
    type Reply = i64;

    async fn handle_call(
        &mut self,
        AddScore(points): AddScore,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<i64>, BoxError> {
        self.score += points;
        Ok(Some(self.score))
    }
}

/// `GetGrain<IPlayerGrain>(key).AddScore(points)`: the activation for `key`, created on
/// first use, asked. Returns (new score, whether this call activated it).
async fn add_score(registry: &Registry, key: &str, points: i64) -> anyhow::Result<(i64, bool)> {
    let lease = registry
        .lease(&ActivationKey::new("default", "game", "player", key))
        .await?;
    let player = lease
        .pid()
        .typed::<Player>()
        .context("a player activation")?;
    Ok((player.ask(AddScore(points)).await?, lease.activated))
}

/// Two players by key; one activation each; deactivation and reactivation on next use.
pub async fn demo() -> anyhow::Result<String> {
    let node = Node::builder("silo").build().await?;
    let registry = Registry::new(node.clone(), RegistryOptions::default());
    registry.register(ActorType::virtual_actor(
        "player",
        |_key: &ActivationKey| Player::default(),
    ));
    ensure!(
        add_score(&registry, "alice", 10).await? == (10, true),
        "first call activates"
    );
    ensure!(
        add_score(&registry, "alice", 5).await? == (15, false),
        "same activation"
    );
    ensure!(
        add_score(&registry, "bob", 7).await? == (7, true),
        "another key, another grain"
    );
    // Orleans deactivates idle grains (here on demand; the registry also does it after the
    // type's idle timeout). The next call activates the grain again. Its in-memory state
    // starts over: keep it with the node's durability (a durable actor type) as Orleans
    // keeps it with IPersistentState.
    ensure!(
        registry
            .deactivate(&ActivationKey::new("default", "game", "player", "alice"))
            .await
    );
    ensure!(
        add_score(&registry, "alice", 1).await? == (1, true),
        "reactivated"
    );
    node.shutdown().await;
    Ok("grain: activated by key on first call, one activation per key, reactivated after deactivation".into())
}
