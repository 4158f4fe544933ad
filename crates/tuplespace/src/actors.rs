//! Tuple spaces from inside actors.
//!
//! Attach a [`TupleSpaceFacet`] to an actor (or insert a [`Spaces`] engine as a node
//! service) and call [`TupleSpaceContext::tuple_space`] on its context. The facet scopes
//! every space it hands out to its tenant and namespace, so an actor cannot name a space of
//! another tenant.

use std::any::Any;
use std::sync::Arc;

use async_trait::async_trait;
use plexspaces_core::{Actor, Context, Facet};

use crate::{Error, Result, SpaceId, Spaces, TupleSpace};

/// The spaces of one tenant and namespace.
#[derive(Clone)]
pub struct ScopedSpaces {
    spaces: Spaces,
    tenant: String,
    namespace: String,
}

impl std::fmt::Debug for ScopedSpaces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopedSpaces")
            .field("tenant", &self.tenant)
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl ScopedSpaces {
    /// The spaces of `tenant`/`namespace` in `spaces`.
    pub fn new(spaces: Spaces, tenant: &str, namespace: &str) -> Result<Self> {
        // Validate the scope once, with a placeholder name.
        SpaceId::new(tenant, namespace, "_")?;
        Ok(ScopedSpaces {
            spaces,
            tenant: tenant.to_owned(),
            namespace: namespace.to_owned(),
        })
    }

    /// The space `name` in this scope.
    pub fn space(&self, name: &str) -> Result<TupleSpace> {
        Ok(self
            .spaces
            .space(SpaceId::new(&self.tenant, &self.namespace, name)?))
    }
}

/// Offers an actor the spaces of one tenant and namespace.
#[derive(Debug)]
pub struct TupleSpaceFacet {
    scoped: Arc<ScopedSpaces>,
}

impl TupleSpaceFacet {
    /// A facet handing out the spaces of `tenant`/`namespace`.
    pub fn new(spaces: Spaces, tenant: &str, namespace: &str) -> Result<Arc<Self>> {
        Ok(Arc::new(TupleSpaceFacet {
            scoped: Arc::new(ScopedSpaces::new(spaces, tenant, namespace)?),
        }))
    }
}

#[async_trait]
impl Facet for TupleSpaceFacet {
    fn name(&self) -> &'static str {
        "tuplespace"
    }

    fn service(&self) -> Option<Arc<dyn Any + Send + Sync>> {
        Some(self.scoped.clone())
    }
}

/// `ctx.tuple_space(name)` for actors.
pub trait TupleSpaceContext {
    /// The space `name`: scoped by the actor's [`TupleSpaceFacet`] if it has one, else in
    /// tenant and namespace `default` of the node's [`Spaces`] service.
    fn tuple_space(&self, name: &str) -> Result<TupleSpace>;
}

impl<A: Actor> TupleSpaceContext for Context<A> {
    fn tuple_space(&self, name: &str) -> Result<TupleSpace> {
        if let Some(scoped) = self.service::<ScopedSpaces>() {
            return scoped.space(name);
        }
        if let Some(spaces) = self.service::<Spaces>() {
            return Ok(spaces.space(SpaceId::new("default", "default", name)?));
        }
        Err(Error::InvalidArgument(
            "no tuple space here: attach a TupleSpaceFacet or insert Spaces as a node service"
                .into(),
        ))
    }
}
