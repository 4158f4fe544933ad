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

use plexspaces_core::Facet;
use plexspaces_journal::{
    CheckpointPolicy, DurabilityFacet, DurableOptions, Journal, PostgresJournal, PostgresOptions,
    SqliteJournal, SqliteOptions, StreamId,
};

use crate::config::NodeConfig;
use crate::error::{Error, Result};
use crate::registry::ActivationKey;

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
        })
    }

    /// A facet factory for [`crate::ActorType::facets`]: a [`DurabilityFacet`] per
    /// activation, on the activation's stream ([`stream_id`]).
    pub fn facets(&self) -> impl Fn(&ActivationKey) -> Vec<Arc<dyn Facet>> + Send + Sync + 'static {
        durability_facets(self.journal.clone(), self.options.clone())
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
        // A failed message is aborted and skipped, as before: the node has no view of a
        // paused stream nor a resume/abandon operation on this branch yet.
        retry: plexspaces_journal::RetryPolicy::disabled(),
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
