//! Tenant and namespace scoping, and name checks shared by every store.

use crate::{Error, Result};

/// Longest tenant or namespace, in bytes.
pub const MAX_SCOPE_LEN: usize = 128;
/// Longest key, lock name or blob path, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

/// The tenant and namespace every key, lock and blob lives under. Two scopes never see
/// each other's data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scope {
    tenant: String,
    namespace: String,
}

fn check_part(what: &'static str, s: &str) -> Result<()> {
    if s.is_empty() || s.len() > MAX_SCOPE_LEN {
        return Err(Error::invalid(
            what,
            format!("must be 1..={MAX_SCOPE_LEN} bytes"),
        ));
    }
    // ':' and '/' separate scope parts in Redis keys and blob paths.
    if !s
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || s == "."
        || s == ".."
    {
        return Err(Error::invalid(
            what,
            format!("{s:?} may hold only ASCII letters, digits, '-', '_' and '.'"),
        ));
    }
    Ok(())
}

impl Scope {
    /// A scope; tenant and namespace are 1..=128 bytes of `[A-Za-z0-9._-]`.
    pub fn new(tenant: &str, namespace: &str) -> Result<Self> {
        check_part("tenant", tenant)?;
        check_part("namespace", namespace)?;
        Ok(Scope {
            tenant: tenant.to_owned(),
            namespace: namespace.to_owned(),
        })
    }

    /// The tenant.
    pub fn tenant(&self) -> &str {
        &self.tenant
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }
}

/// A key or lock name: 1..=1024 bytes without control characters.
pub(crate) fn check_key(what: &'static str, key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KEY_LEN {
        return Err(Error::invalid(
            what,
            format!("must be 1..={MAX_KEY_LEN} bytes"),
        ));
    }
    if key.chars().any(char::is_control) {
        return Err(Error::invalid(what, "must not contain control characters"));
    }
    Ok(())
}

/// A prefix for listing: may be empty, otherwise a valid key.
pub(crate) fn check_prefix(prefix: &str) -> Result<()> {
    if prefix.is_empty() {
        return Ok(());
    }
    check_key("prefix", prefix)
}
