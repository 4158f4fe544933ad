//! The node's tuple space: one [`Spaces`] engine per node, the tuple space service
//! ([`TupleSpaces`]) served over gRPC as `plexspaces.v1.TupleSpaceService` ([`grpc`]), and
//! offered to the node's actors as a node service
//! (`ctx.tuple_space(name)`, tenant and namespace `default`).
//!
//! The backend is in memory by default (tuples do not survive a restart);
//! `tuplespace.backend = "sqlite"` keeps them in `<data_dir>/tuplespace.db`.
//!
//! Every request acts for the tenant of its verified token (or `default` with auth
//! disabled): the space a request names is `(that tenant, namespace, space)`, so a tenant
//! cannot name another tenant's space. Errors map to gRPC codes through
//! [`crate::error::status_of`].

pub mod grpc;

use std::sync::Arc;
use std::time::Duration;

use plexspaces_tuplespace::{SpaceId, Spaces, TupleSpace};

use crate::config::NodeConfig;
pub use crate::config::{TupleSpaceBackend, TupleSpaceConfig};
use crate::error::{Error, Result};
use crate::service::Caller;

/// The longest a blocking `Read` or `Take` waits, whatever it asks for.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

/// The SQLite file of the tuple space (used with `tuplespace.backend = "sqlite"`).
pub fn sqlite_path(config: &NodeConfig) -> std::path::PathBuf {
    config.data_dir.join("tuplespace.db")
}

/// Opens the node's tuple space engine as `config` says (the data dir must exist).
pub async fn open_spaces(config: &NodeConfig) -> Result<Spaces> {
    match config.tuplespace.backend {
        TupleSpaceBackend::Memory => Ok(Spaces::memory()),
        TupleSpaceBackend::Sqlite => {
            let path = sqlite_path(config);
            let backend = plexspaces_tuplespace::SqliteBackend::open(
                plexspaces_tuplespace::SqliteOptions::new(&path),
            )
            .await
            .map_err(|e| {
                Error::Config(format!(
                    "cannot open the tuple space database {}: {e}",
                    path.display()
                ))
            })?;
            Spaces::start(Arc::new(backend), plexspaces_tuplespace::Config::default())
                .await
                .map_err(|e| Error::Config(format!("cannot start the tuple space: {e}")))
        }
    }
}

/// The tuple space service: the caller's spaces on the node's engine. Cheap to clone.
#[derive(Clone, Debug)]
pub struct TupleSpaces {
    spaces: Spaces,
    default_wait: Duration,
}

impl TupleSpaces {
    /// The service over `spaces`; a blocking call that names no wait waits `default_wait`
    /// (at most [`MAX_WAIT`]).
    pub fn new(spaces: Spaces, default_wait: Duration) -> Self {
        TupleSpaces {
            spaces,
            default_wait,
        }
    }

    /// The space (namespace, name) of the caller's tenant; an empty namespace is `default`.
    pub fn space(&self, caller: &Caller, namespace: &str, space: &str) -> Result<TupleSpace> {
        let namespace = if namespace.is_empty() {
            "default"
        } else {
            namespace
        };
        Ok(self
            .spaces
            .space(SpaceId::new(&caller.tenant, namespace, space)?))
    }

    /// The wait of a blocking read or take that asked for `ms` (0: the default), at most
    /// [`MAX_WAIT`].
    pub fn wait(&self, ms: u64) -> Duration {
        if ms == 0 {
            self.default_wait.min(MAX_WAIT)
        } else {
            Duration::from_millis(ms).min(MAX_WAIT)
        }
    }
}
