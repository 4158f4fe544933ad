//! A PlexSpaces node: what `plexspaces start` runs.
//!
//! It holds the node's configuration ([`NodeConfig`], in layers), its actor types
//! ([`Registry`]: virtual actors addressed by key and stateless worker pools), the HTTP
//! FaaS API (axum) and the gRPC API (tonic), authentication and tenancy ([`auth`]),
//! metrics, and graceful shutdown ([`ServerHandle::shutdown`]).
//!
//! Virtual actor state is kept by `plexspaces-journal`'s durability facet, one per
//! activation, in one journal per node (SQLite under the data dir, or PostgreSQL): see
//! [`state`]. A durable actor whose handler keeps failing is retried after a backoff, then
//! paused (`journal.retry_*`); [`actors`] serves its state and resume/abandon at
//! `/api/v1/durable/...`. Timer and reminder lateness are histograms ([`lateness`]). The
//! node serves a web dashboard at `/dashboard` ([`dashboard`]).
//!
//! Each node runs a durable workflow engine (`plexspaces-workflow`, see [`workflows`]):
//! history in the same journal, records in `<data_dir>/workflows.db` (or the journal's
//! PostgreSQL schema), served at `/api/v1/workflows/...` and as gRPC `WorkflowService`.
//! Register your own workflow types with [`NodeServer::builder`].
//!
//! # Layout
//! One service per feature, with thin transports over it: [`actors`], [`workflows`] and
//! [`tuplespace`] each hold the feature's service (`mod.rs`) and its `http.rs` / `grpc.rs`
//! adapters; [`service`] holds what they share (the caller, the gate, id checks); [`http`]
//! and [`grpc`] hold the routers, the one extractor of caller and path
//! ([`http::Scoped`]) and the node's own endpoints. A new API starts as a folder of that
//! shape.
//!
//! With `[cluster]` it joins other nodes through `plexspaces-cluster` ([`cluster`]):
//! membership, status, and invocations forwarded to the node hosting the actor. It is not
//! the runtime (that is `plexspaces-core`) and not the journal (`plexspaces-journal`).
//!
//! # Invariants
//! - At most one activation per (tenant, namespace, actor type, key) on a node.
//! - Every request acts for exactly one tenant, taken from a verified token (or `default`
//!   with auth disabled); no API reads or writes another tenant's actors.
//! - One mapping from error kind to HTTP status and gRPC code: [`error::status_of`].
//! - Secrets never appear in config dumps, API errors or logs ([`secret`]).
//!
//! # Example
//! ```no_run
//! use plexspaces_node::{ConfigSources, NodeConfig, NodeServer};
//!
//! # async fn run() -> Result<(), plexspaces_node::Error> {
//! let config = NodeConfig::load(ConfigSources {
//!     env: std::env::vars().collect(),
//!     ..ConfigSources::default()
//! })?;
//! let handle = NodeServer::start(config, vec![]).await?;
//! // curl -X POST 'http://127.0.0.1:8094/api/v1/actors/default/counter/invoke?msg_type=increment' -d '{"amount": 5}'
//! handle.run_until_signal().await?;
//! # Ok(())
//! # }
//! ```

pub mod actors;
pub mod auth;
pub mod blobs;
pub mod builtin;
pub mod channels;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod deploy;
pub mod error;
pub mod facets;
pub mod grpc;
pub mod http;
pub mod inboxes;
pub mod kv;
pub mod lateness;
pub mod locks;
pub mod registry;
pub mod reminders;
pub mod secret;
pub mod server;
pub mod service;
pub mod shards;
pub mod state;
pub mod tuplespace;
pub mod virtual_actors;
pub mod workflows;

pub use config::{ConfigSources, NodeConfig, OtlpConfig, DEFAULT_GRPC_ADDR, DEFAULT_HTTP_ADDR};
pub use error::{status_of, Error, Result};
pub use registry::{
    ActivationKey, ActorType, ClaimBinder, DirectoryBinding, FacetFactory, Registry,
    RegistryOptions, TypeKind,
};
pub use secret::{mask_secrets, Secret};
pub use server::{NodeServer, NodeServerBuilder, ServerHandle};
pub use state::{durability_facets, stream_id, NodeJournal};
pub use workflows::WorkflowType;
