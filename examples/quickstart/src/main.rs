//! The product description's Rust quick start: start a node, spawn a counter actor, send it
//! "increment by 5" and print the count. Prints `Count: 5`.

use plexspaces::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Default)]
struct Counter {
    count: i64,
}

#[derive(Serialize, Deserialize)]
struct Increment {
    amount: i64,
}

#[derive(Serialize, Deserialize)]
struct Get;

#[derive(Debug, Serialize, Deserialize)]
struct Count {
    count: i64,
}

#[actor]
impl Counter {
    #[handler("increment")]
    async fn increment(&mut self, msg: Increment) -> Result<Count, BoxError> {
        self.count += msg.amount;
        Ok(Count { count: self.count })
    }

    #[handler("get")]
    async fn get(&mut self, _msg: Get) -> Result<Count, BoxError> {
        Ok(Count { count: self.count })
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let node = Node::builder("node1").build().await?;
    let counter = node.spawn_named("counter", Counter::default())?;

    // A local message: a Rust value, never serialized.
    let reply = counter.request(Increment { amount: 5 }).await?;
    println!("Count: {}", reply.count);

    // The same handler through an envelope, as HTTP, gRPC or another node would send it.
    let env = Envelope::json("get", &serde_json::json!(null))?;
    let reply = counter
        .ask_envelope(env, std::time::Duration::from_secs(5))
        .await?;
    let body: serde_json::Value = serde_json::from_slice(&reply.payload)?;
    assert_eq!(body["count"], 5, "the envelope path sees the same state");

    node.shutdown().await;
    Ok(())
}
