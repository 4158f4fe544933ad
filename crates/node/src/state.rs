//! Virtual actor state: one journal per node and, per activation, a
//! [`DurabilityFacet`] of `plexspaces-journal` bound to the activation's stream.
//!
//! The journal is SQLite at `<data_dir>/journal.db` by default, PostgreSQL when
//! `journal.url` is set. Each activation's stream is (tenant, namespace,
//! `"<actor_type>/<key>"`); on activation the facet restores the latest snapshot
//! (`Actor::restore`) and replays the journal after it through the actor's own handlers, so
//! state survives idle deactivation and a node restart. Every accepted message is journaled
//! before its reply leaves; a request carrying an idempotency key
//! ([`plexspaces_journal::IDEMPOTENCY_KEY_HEADER`]) runs once.

use std::sync::Arc;

use async_trait::async_trait;
use plexspaces_core::Facet;
use plexspaces_journal::{
    CheckpointPolicy, Committing, DurabilityFacet, DurableOptions, Entry, Epoch, Journal,
    PostgresJournal, PostgresOptions, RetryPolicy, Seq, Snapshot, SqliteJournal, SqliteOptions,
    StreamId,
};

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::registry::{ActivationKey, ClaimBinder};

/// The node's journal and how to describe it in logs.
#[derive(Clone)]
pub struct NodeJournal {
    /// The journal every durable activation writes to.
    pub journal: Arc<dyn Journal>,
    /// `"SQLite"` or `"PostgreSQL"`.
    pub backend: &'static str,
    /// The SQLite file, or the PostgreSQL URL with its password masked.
    pub location: String,
    /// Options of each activation's durable execution.
    pub options: DurableOptions,
    /// In a cluster with an activation directory: binds each activation's journal epoch to
    /// its directory claim ([`NodeJournal::bind_claims`]).
    binder: Option<ClaimBinder>,
}

impl std::fmt::Debug for NodeJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeJournal")
            .field("backend", &self.backend)
            .field("location", &self.location)
            .finish()
    }
}

impl NodeJournal {
    /// Opens the journal `config` names: PostgreSQL if `journal.url` is set, else SQLite
    /// at [`NodeConfig::journal_path`] (the data dir must exist).
    pub async fn open(config: &NodeConfig) -> Result<NodeJournal> {
        let options = durable_options(config);
        if let Some(url) = &config.journal.url {
            let location = mask_url_password(url.expose());
            let journal = PostgresJournal::open(
                PostgresOptions::new(url.expose()).with_schema(&config.journal.schema),
            )
            .await
            .map_err(|e| {
                Error::Config(format!(
                    "cannot open the PostgreSQL journal at {location}: {}",
                    crate::secret::mask_secrets(&e.to_string())
                ))
            })?;
            return Ok(NodeJournal {
                journal: Arc::new(journal),
                backend: "PostgreSQL",
                location: format!("{location} schema={}", config.journal.schema),
                options,
                binder: None,
            });
        }
        let path = config.journal_path();
        let journal = SqliteJournal::open(SqliteOptions::new(&path))
            .await
            .map_err(|e| {
                Error::Config(format!(
                    "cannot open the SQLite journal {}: {e}",
                    path.display()
                ))
            })?;
        Ok(NodeJournal {
            journal: Arc::new(journal),
            backend: "SQLite",
            location: path.display().to_string(),
            options,
            binder: None,
        })
    }

    /// From now on, the facets made by [`NodeJournal::facets`] bind each activation's
    /// journal epoch to its directory claim through `binder` as soon as they acquire it
    /// (see [`ClaimBinder`]): an activation whose claim is no longer current fails before
    /// it recovers or writes.
    pub fn bind_claims(&mut self, binder: ClaimBinder) {
        self.binder = Some(binder);
    }

    /// A facet factory for [`crate::ActorType::facets`]: a [`DurabilityFacet`] per
    /// activation, on the activation's stream ([`stream_id`]).
    pub fn facets(&self) -> impl Fn(&ActivationKey) -> Vec<Arc<dyn Facet>> + Send + Sync + 'static {
        let (journal, options, binder) = (
            self.journal.clone(),
            self.options.clone(),
            self.binder.clone(),
        );
        move |key: &ActivationKey| {
            let journal: Arc<dyn Journal> = match &binder {
                Some(binder) => Arc::new(BoundJournal {
                    inner: journal.clone(),
                    key: key.clone(),
                    binder: binder.clone(),
                }),
                None => journal.clone(),
            };
            vec![DurabilityFacet::new(journal, stream_id(key), options.clone()) as Arc<dyn Facet>]
        }
    }
}

/// The durable execution options a node uses: checkpoints after
/// `journal.checkpoint_every_messages` messages (truncating what the snapshot covers).
pub fn durable_options(config: &NodeConfig) -> DurableOptions {
    let every = config.journal.checkpoint_every_messages;
    DurableOptions {
        checkpoint: CheckpointPolicy {
            every_messages: (every > 0).then_some(every),
            every: None,
            truncate: every > 0,
        },
        output_gate: config.journal.output_gate,
        idempotency_retention: config.journal.idempotency_retention,
        // journaled `now()` and retry backoffs: immune to wall-clock jumps while the node runs
        clock: plexspaces_journal::SteadyClock::shared(),
        retry: RetryPolicy {
            max_attempts: config.journal.retry_max_attempts,
            backoff: std::time::Duration::from_millis(config.journal.retry_backoff_ms),
            max_backoff: std::time::Duration::from_millis(
                config
                    .journal
                    .retry_max_backoff_ms
                    .max(config.journal.retry_backoff_ms),
            ),
        },
        ..DurableOptions::default()
    }
}

/// The journal stream of an activation: (tenant, namespace, `"<actor_type>/<key>"`), the
/// type and key percent-escaped (`%`, `/`, `@`) so that the id is unambiguous.
pub fn stream_id(key: &ActivationKey) -> StreamId {
    StreamId::new(
        &key.tenant,
        &key.namespace,
        &format!(
            "{}/{}",
            crate::registry::escape(&key.actor_type),
            crate::registry::escape(&key.key)
        ),
    )
}

/// A facet factory: one [`DurabilityFacet`] per activation, on its [`stream_id`].
pub fn durability_facets(
    journal: Arc<dyn Journal>,
    options: DurableOptions,
) -> impl Fn(&ActivationKey) -> Vec<Arc<dyn Facet>> + Send + Sync + 'static {
    move |key| {
        vec![
            DurabilityFacet::new(journal.clone(), stream_id(key), options.clone())
                as Arc<dyn Facet>,
        ]
    }
}

/// One activation's view of the node journal that binds every epoch it acquires to the
/// activation's directory claim before handing it out; everything else passes through.
struct BoundJournal {
    inner: Arc<dyn Journal>,
    key: ActivationKey,
    binder: ClaimBinder,
}

#[async_trait]
impl Journal for BoundJournal {
    async fn acquire_epoch(&self, stream: &StreamId) -> plexspaces_journal::Result<Epoch> {
        let epoch = self.inner.acquire_epoch(stream).await?;
        // Refused: this node's claim was reclaimed (a partition, a missed heartbeat). The
        // epoch just taken fences whichever activation held the stream; its owner's next
        // activation takes a newer one.
        self.binder.bind(&self.key, epoch.0).await.map_err(|e| {
            plexspaces_journal::Error::InvalidState(format!(
                "activation {} is fenced by the activation directory: {e}",
                self.key
            ))
        })?;
        Ok(epoch)
    }

    async fn append(
        &self,
        stream: &StreamId,
        epoch: Epoch,
        entries: Vec<Entry>,
    ) -> plexspaces_journal::Result<()> {
        self.inner.append(stream, epoch, entries).await
    }

    async fn start_append(
        &self,
        stream: &StreamId,
        epoch: Epoch,
        entries: Vec<Entry>,
    ) -> plexspaces_journal::Result<Committing> {
        self.inner.start_append(stream, epoch, entries).await
    }

    async fn read(
        &self,
        stream: &StreamId,
        from_seq: Seq,
        to_seq: Seq,
    ) -> plexspaces_journal::Result<Vec<Entry>> {
        self.inner.read(stream, from_seq, to_seq).await
    }

    async fn next_seq(&self, stream: &StreamId) -> plexspaces_journal::Result<Seq> {
        self.inner.next_seq(stream).await
    }

    async fn save_snapshot(
        &self,
        stream: &StreamId,
        epoch: Epoch,
        seq: Seq,
        data: Vec<u8>,
    ) -> plexspaces_journal::Result<()> {
        self.inner.save_snapshot(stream, epoch, seq, data).await
    }

    async fn latest_snapshot(
        &self,
        stream: &StreamId,
    ) -> plexspaces_journal::Result<Option<Snapshot>> {
        self.inner.latest_snapshot(stream).await
    }

    async fn truncate_before(
        &self,
        stream: &StreamId,
        seq: Seq,
    ) -> plexspaces_journal::Result<u64> {
        self.inner.truncate_before(stream, seq).await
    }

    async fn truncate_from(
        &self,
        stream: &StreamId,
        epoch: Epoch,
        seq: Seq,
    ) -> plexspaces_journal::Result<u64> {
        self.inner.truncate_from(stream, epoch, seq).await
    }

    async fn history_len(&self, stream: &StreamId) -> plexspaces_journal::Result<u64> {
        self.inner.history_len(stream).await
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:********@host/db`.
pub fn mask_url_password(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    let userinfo = &authority[..at];
    match userinfo.find(':') {
        Some(colon) => format!(
            "{}{}:{}{}",
            &url[..scheme_end],
            &userinfo[..colon],
            crate::secret::MASK,
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            mask_url_password("postgres://u:hunter2@h:5432/db?x=1"),
            "postgres://u:********@h:5432/db?x=1"
        );
        assert_eq!(
            mask_url_password("postgres://postgres@127.0.0.1:5432/test"),
            "postgres://postgres@127.0.0.1:5432/test"
        );
        assert_eq!(mask_url_password("nonsense"), "nonsense");
    }

    #[test]
    fn streams_are_unambiguous() {
        let a = stream_id(&ActivationKey::new("t", "ns", "counter", "a/b"));
        let b = stream_id(&ActivationKey::new("t", "ns", "counter/a", "b"));
        assert_ne!(a, b);
        assert_eq!(a.actor_id, "counter/a%2Fb");
        assert_eq!((a.tenant.as_str(), a.namespace.as_str()), ("t", "ns"));
    }
}
