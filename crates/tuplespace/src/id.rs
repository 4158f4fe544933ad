//! Space and tuple identities.

use std::fmt;

use crate::{Error, Result, Timestamp, Tuple};

/// The name of a space, scoped by tenant and namespace. No operation crosses spaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpaceId {
    tenant: String,
    namespace: String,
    name: String,
}

const MAX_PART: usize = 128;

fn check_part(what: &str, s: &str) -> Result<()> {
    if s.is_empty() {
        return Err(Error::InvalidSpaceId(format!("{what} is empty")));
    }
    if s.len() > MAX_PART {
        return Err(Error::InvalidSpaceId(format!(
            "{what} is longer than {MAX_PART} bytes"
        )));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::InvalidSpaceId(format!(
            "{what} contains control characters"
        )));
    }
    Ok(())
}

impl SpaceId {
    /// A space id; each part is 1 to 128 bytes without control characters.
    pub fn new(tenant: &str, namespace: &str, name: &str) -> Result<Self> {
        check_part("tenant", tenant)?;
        check_part("namespace", namespace)?;
        check_part("name", name)?;
        Ok(SpaceId {
            tenant: tenant.to_owned(),
            namespace: namespace.to_owned(),
            name: name.to_owned(),
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

    /// The space name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A single-string key, reversible with [`SpaceId::from_key`]: the three parts with `%`
    /// and `/` escaped, joined by `/`.
    pub fn key(&self) -> String {
        [&self.tenant, &self.namespace, &self.name]
            .iter()
            .map(|p| p.replace('%', "%25").replace('/', "%2F"))
            .collect::<Vec<_>>()
            .join("/")
    }

    /// Parse a key made by [`SpaceId::key`].
    pub fn from_key(key: &str) -> Result<Self> {
        let parts: Vec<String> = key
            .split('/')
            .map(|p| p.replace("%2F", "/").replace("%25", "%"))
            .collect();
        match parts.as_slice() {
            [t, n, s] => SpaceId::new(t, n, s),
            _ => Err(Error::InvalidSpaceId(format!(
                "malformed space key {key:?}"
            ))),
        }
    }
}

impl fmt::Display for SpaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// The identity of a written tuple, unique within its backend and never reused. Lower ids
/// were written earlier (within one writer).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TupleId(pub u64);

impl fmt::Display for TupleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// A stored tuple as a backend returns it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// its id
    pub id: TupleId,
    /// its fields
    pub tuple: Tuple,
    /// its lease deadline; `None` lives until taken
    pub expires_at: Option<Timestamp>,
}

impl Entry {
    /// Whether the lease has run out at `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        self.expires_at.is_some_and(|e| e <= now)
    }
}

/// A tuple to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct NewTuple {
    /// its fields
    pub tuple: Tuple,
    /// its lease deadline; `None` lives until taken
    pub expires_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_roundtrips_with_separators() {
        let id = SpaceId::new("a/b%", "ns", "x%2F").expect("valid");
        assert_eq!(SpaceId::from_key(&id.key()).expect("parses"), id);
        assert!(SpaceId::new("", "ns", "x").is_err());
        assert!(SpaceId::new("t", "n\u{0}", "x").is_err());
    }
}
