//! Data-parallel actors (DPA-inspired): a [`ShardGroup`] partitions keyed data over shard
//! actors by hash, consistent hash or range ([`Strategy`]), and runs bulk updates
//! ([`ShardGroup::bulk_update`]), parallel queries merged into one answer
//! ([`ShardGroup::map`]) and fault-tolerant aggregations that return partial results
//! ([`ShardGroup::scatter_gather`]).
//!
//! This crate depends only on `plexspaces-core`: it is not a cluster and pulls in no
//! network code. Shards are plain actors addressed by their [`plexspaces_core::ActorId`]s
//! and resolved through the node on every call, so the operations are written against
//! location-transparent addresses; spreading shards over several nodes is placement, not
//! an API change (see "Not yet" in `docs/shard-groups.md`).
//!
//! # Invariants
//! - Routing is a pure function of the key and the group's [`Strategy`]
//!   ([`Partitioner::shard_of`]), stable across processes (FNV-1a, not std's hasher).
//! - Writes to one shard apply in the order given; a write is reported applied only after
//!   the shard incarnation that received it acknowledged it ([`BulkReport`]).
//! - A scatter-gather never fails as a whole: every shard is either in
//!   [`Gathered::answers`] or in [`Gathered::failed`].
//! - Shards are supervised one_for_one: a crashed shard restarts (from the factory, so
//!   with the factory's initial state) and the others keep serving.
//!
//! # Example
//! ```
//! use plexspaces_core::Node;
//! use plexspaces_shard::{KvAnswer, KvQuery, KvShard, ShardGroup, ShardGroupOptions, Strategy};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> anyhow::Result<()> {
//! let node = Node::builder("node1").build().await?;
//! let group = ShardGroup::start(
//!     &node,
//!     ShardGroupOptions::new("users", 4, Strategy::Hash),
//!     |_| KvShard::default(),
//! )
//! .await?;
//! let report = group
//!     .bulk_update((0..1000).map(|i| (format!("user-{i}"), serde_json::json!(1))))
//!     .await;
//! assert!(report.is_complete());
//! let total = group
//!     .map(KvQuery::Sum, KvAnswer::Sum(0.0), |acc, _shard, answer| acc.merge(answer))
//!     .await?;
//! assert_eq!(total, KvAnswer::Sum(1000.0));
//! node.shutdown().await;
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs)]

pub mod error;
pub mod group;
pub mod kv;
pub mod partition;

pub use error::{Error, Result};
pub use group::{
    check_name, BulkReport, Gathered, Shard, ShardActor, ShardBulk, ShardFailure, ShardGroup,
    ShardGroupOptions, ShardMsg, ShardReply, MAX_NAME_LEN,
};
pub use kv::{KvAnswer, KvQuery, KvShard};
pub use partition::{hash_of, Partitioner, Strategy, MAX_SHARDS, MAX_VNODES};
