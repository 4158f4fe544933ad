//! What every feature's service shares, whatever the transport: who is calling
//! ([`Caller`], from [`Gate::caller`]), whether the node still takes work
//! ([`Gate::check_open`]), and the checks of caller-chosen ids.
//!
//! Each feature (actors, workflows, tuple space) is one service in its own folder
//! (`actors/`, `workflows/`, `tuplespace/`): the service takes a [`Caller`] and plain
//! values and does the work; `http.rs` and `grpc.rs` beside it only turn requests into those
//! values and results into responses. A transport reads the credentials (a header, gRPC
//! metadata) and hands them to [`Gate::caller`]; nothing else about tenancy lives in a
//! transport.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::watch;

use crate::actors::Actors;
use crate::auth::Authenticator;
use crate::error::{Error, Result};
use crate::shards::Shards;
use crate::tuplespace::TupleSpaces;
use crate::workflows::Workflows;

/// The longest caller-chosen id (idempotency key, update id, dedupe id), in bytes.
pub const MAX_ID_LEN: usize = 256;

/// Who a request acts for: the tenant of its verified token (or the path's tenant, or
/// `default`, with auth disabled), whether the token carries the operator claim, and the
/// token's subject and roles.
///
/// An actor invocation carries its caller to the actor as envelope headers
/// ([`Caller::write_headers`], read back with [`Caller::from_headers`]); the node's front
/// doors set them from the verified token and overwrite whatever a client sent, so a
/// handler (through `AuthenticationFacet`) and a policy (`AuthorizationFacet`) can trust
/// them. Actors on the node and members of the cluster are trusted to pass them on as
/// they got them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Caller {
    /// The tenant every address of the request is scoped to.
    pub tenant: String,
    /// Whether the caller may see node-wide figures (auth disabled, or an operator token).
    pub operator: bool,
    /// The token's `sub` (none with auth disabled).
    pub subject: Option<String>,
    /// The token's roles (claim [`crate::auth::ROLES_CLAIM`]; none with auth disabled).
    pub roles: Vec<String>,
}

/// Envelope header: the caller's tenant.
pub const CALLER_TENANT_HEADER: &str = "x-plexspaces-caller-tenant";
/// Envelope header: the caller's subject (absent when the token has none).
pub const CALLER_SUBJECT_HEADER: &str = "x-plexspaces-caller-subject";
/// Envelope header: the caller's roles, comma-separated (absent when none).
pub const CALLER_ROLES_HEADER: &str = "x-plexspaces-caller-roles";
/// Envelope header: `true` for an operator.
pub const CALLER_OPERATOR_HEADER: &str = "x-plexspaces-caller-operator";

impl Caller {
    /// Whether the caller holds `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// Writes this caller into `headers`, replacing any caller headers already there.
    pub fn write_headers(&self, headers: &mut std::collections::BTreeMap<String, String>) {
        Caller::clear_headers(headers);
        headers.insert(CALLER_TENANT_HEADER.to_owned(), self.tenant.clone());
        if let Some(subject) = &self.subject {
            headers.insert(CALLER_SUBJECT_HEADER.to_owned(), subject.clone());
        }
        if !self.roles.is_empty() {
            headers.insert(CALLER_ROLES_HEADER.to_owned(), self.roles.join(","));
        }
        if self.operator {
            headers.insert(CALLER_OPERATOR_HEADER.to_owned(), "true".to_owned());
        }
    }

    /// Removes every caller header from `headers`.
    pub fn clear_headers(headers: &mut std::collections::BTreeMap<String, String>) {
        for h in [
            CALLER_TENANT_HEADER,
            CALLER_SUBJECT_HEADER,
            CALLER_ROLES_HEADER,
            CALLER_OPERATOR_HEADER,
        ] {
            headers.remove(h);
        }
    }

    /// The caller written into `headers` by [`Caller::write_headers`]; `None` when the
    /// message carries no caller (sent by an actor on its own account, a timer, a local
    /// `tell`).
    pub fn from_headers(headers: &std::collections::BTreeMap<String, String>) -> Option<Caller> {
        let tenant = headers.get(CALLER_TENANT_HEADER)?.clone();
        Some(Caller {
            tenant,
            operator: headers
                .get(CALLER_OPERATOR_HEADER)
                .is_some_and(|v| v == "true"),
            subject: headers.get(CALLER_SUBJECT_HEADER).cloned(),
            roles: headers
                .get(CALLER_ROLES_HEADER)
                .map(|r| {
                    r.split(',')
                        .filter(|r| !r.is_empty())
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default(),
        })
    }
}

/// Authentication and the node's open/draining state: the prologue of every request.
#[derive(Clone)]
pub struct Gate {
    auth: Authenticator,
    draining: Arc<AtomicBool>,
    stopped: watch::Receiver<bool>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("auth", &self.auth)
            .field("draining", &self.is_draining())
            .finish()
    }
}

impl Gate {
    /// A gate over `auth`; `draining` turns true when shutdown begins, `stopped` when
    /// in-flight waits must end.
    pub fn new(
        auth: Authenticator,
        draining: Arc<AtomicBool>,
        stopped: watch::Receiver<bool>,
    ) -> Self {
        Gate {
            auth,
            draining,
            stopped,
        }
    }

    /// The caller of a request carrying `authorization` (the `Authorization` header or
    /// `authorization` metadata, `None` when absent) that names `named_tenant` in its path
    /// or address (see [`Authenticator::tenant_for`]).
    pub fn caller(
        &self,
        authorization: Option<&[u8]>,
        named_tenant: Option<&str>,
    ) -> Result<Caller> {
        let authorization = authorization
            .map(|raw| {
                std::str::from_utf8(raw)
                    .ok()
                    .filter(|text| {
                        text.bytes()
                            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b))
                    })
                    .ok_or_else(|| Error::Unauthenticated("authorization is not text".into()))
            })
            .transpose()?;
        let identity = self.auth.identify(authorization, named_tenant)?;
        Ok(Caller {
            tenant: identity.tenant,
            operator: identity.operator,
            subject: identity.subject,
            roles: identity.roles,
        })
    }

    /// [`Gate::caller`], then [`Gate::check_open`]: the prologue of a request for new work.
    pub fn open_caller(
        &self,
        authorization: Option<&[u8]>,
        named_tenant: Option<&str>,
    ) -> Result<Caller> {
        let caller = self.caller(authorization, named_tenant)?;
        self.check_open()?;
        Ok(caller)
    }

    /// Whether shutdown has begun.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// `shutting_down` (503) once shutdown has begun.
    pub fn check_open(&self) -> Result<()> {
        if self.is_draining() {
            return Err(plexspaces_core::Error::ShuttingDown.into());
        }
        Ok(())
    }

    /// Runs `work` unless the node begins to shut down first (then: `shutting_down`), so
    /// that graceful shutdown does not wait on long waits.
    pub async fn until_stopped<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        let mut stopped = self.stopped.clone();
        tokio::select! {
            r = work => r,
            _ = stopped.wait_for(|s| *s) => Err(plexspaces_core::Error::ShuttingDown.into()),
        }
    }

    /// A receiver that turns true when in-flight waits must end (streams end with it).
    pub fn stopped(&self) -> watch::Receiver<bool> {
        self.stopped.clone()
    }

    /// Whether authentication is off.
    pub fn auth_disabled(&self) -> bool {
        self.auth.is_disabled()
    }
}

/// A caller-chosen id sent as a header or metadata value (`Idempotency-Key`): printable
/// text (as HTTP headers allow it) of 1 to [`MAX_ID_LEN`] bytes. `name` is how the
/// transport spells it, for the message.
pub fn header_id(name: &str, raw: Option<&[u8]>) -> Result<Option<String>> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let text = std::str::from_utf8(raw)
        .ok()
        .filter(|t| t.bytes().all(|b| b == b'\t' || (0x20..0x7f).contains(&b)))
        .ok_or_else(|| Error::BadRequest(format!("{name} must be visible ASCII")))?;
    if text.is_empty() || text.len() > MAX_ID_LEN {
        return Err(Error::BadRequest(format!(
            "{name} must be 1 to {MAX_ID_LEN} bytes"
        )));
    }
    Ok(Some(text.to_owned()))
}

/// A caller-chosen id sent in a message field (update id, dedupe id): visible ASCII, 1 to
/// [`MAX_ID_LEN`] bytes.
pub fn field_id(what: &str, id: &str) -> Result<()> {
    let visible = id.bytes().all(|b| (0x21..=0x7e).contains(&b));
    if id.is_empty() || id.len() > MAX_ID_LEN || !visible {
        return Err(Error::BadRequest(format!(
            "{what} must be 1 to {MAX_ID_LEN} bytes of visible ASCII"
        )));
    }
    Ok(())
}

/// Everything the transports serve: one service per feature, the gate in front of them,
/// and the node's observability. Cheap to clone.
#[derive(Clone)]
pub struct NodeServices {
    /// Authentication and draining.
    pub gate: Gate,
    /// Virtual actors and worker pools.
    pub actors: Actors,
    /// Durable workflows.
    pub workflows: Workflows,
    /// The tuple space.
    pub spaces: TupleSpaces,
    /// Shard groups (data-parallel actors).
    pub shards: Shards,
    /// The key-value store.
    pub kv: crate::kv::KvService,
    /// Locks with leases and fencing tokens (on the key-value store's backend).
    pub locks: crate::locks::LockService,
    /// The blob store.
    pub blobs: crate::blobs::BlobService,
    /// Queues and topics.
    pub channels: crate::channels::ChannelService,
    /// The node's numbers (request counters, start time, Prometheus registry).
    pub telemetry: Telemetry,
    /// The largest HTTP request body.
    pub max_body_bytes: usize,
    /// The cluster membership view (a node alone lists only itself).
    pub cluster: crate::cluster::NodeCluster,
    /// Deployed WASM actor types.
    pub deployments: crate::deploy::Deployments,
}

impl std::fmt::Debug for NodeServices {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeServices")
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

/// The node's own numbers, shared by `/metrics`, the dashboard and `MetricsSummary`.
#[derive(Clone)]
pub struct Telemetry {
    /// The Prometheus registry `/metrics` renders.
    pub prometheus: prometheus::Registry,
    /// HTTP request metrics.
    pub http: crate::http::HttpMetrics,
    /// gRPC requests served.
    pub grpc_requests: Arc<AtomicU64>,
    /// The runtime's per-type message counters.
    pub actor_metrics: Arc<plexspaces_core::MetricsFacet>,
    /// When the node started.
    pub started: tokio::time::Instant,
    /// The journal backend (`"SQLite"`, `"PostgreSQL"`).
    pub journal_backend: String,
    /// Runs each request in a span (on when spans are exported).
    pub request_spans: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_the_same_way_for_every_transport() {
        assert_eq!(header_id("Idempotency-Key", None).unwrap(), None);
        assert_eq!(
            header_id("Idempotency-Key", Some(b"k 1")).unwrap(),
            Some("k 1".to_owned())
        );
        for bad in [&b""[..], &[0xff][..], &[b'a'; 257][..], &b"a\x01"[..]] {
            assert_eq!(
                header_id("Idempotency-Key", Some(bad)).unwrap_err().kind(),
                "bad_request"
            );
        }
        assert!(field_id("update_id", "u-1").is_ok());
        assert!(field_id("update_id", "u 1").is_err());
        assert!(field_id("update_id", "").is_err());
    }

    #[test]
    fn a_caller_survives_its_headers_and_replaces_forged_ones() {
        let mut headers = std::collections::BTreeMap::new();
        assert_eq!(Caller::from_headers(&headers), None);
        headers.insert(CALLER_ROLES_HEADER.to_owned(), "admin".to_owned());
        headers.insert(CALLER_OPERATOR_HEADER.to_owned(), "true".to_owned());
        let caller = Caller {
            tenant: "acme".into(),
            operator: false,
            subject: Some("alice".into()),
            roles: vec!["reader".into(), "writer".into()],
        };
        caller.write_headers(&mut headers);
        assert_eq!(Caller::from_headers(&headers), Some(caller.clone()));
        let plain = Caller {
            tenant: "acme".into(),
            ..Caller::default()
        };
        plain.write_headers(&mut headers);
        assert_eq!(Caller::from_headers(&headers), Some(plain));
    }
}
