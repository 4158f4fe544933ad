//! Actor ids: `name@node`.

use std::fmt;
use std::sync::Arc;

use crate::error::{Error, Result};

/// An actor's address, `name@node`. Cheap to clone (one shared string).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ActorId {
    full: Arc<str>,
    at: usize,
}

impl ActorId {
    /// `name@node`. Neither part may be empty, and the name may not contain `@`.
    pub fn new(name: &str, node: &str) -> Result<ActorId> {
        if name.is_empty() || node.is_empty() || name.contains('@') || node.contains('@') {
            return Err(Error::InvalidId(format!("{name}@{node}")));
        }
        Ok(ActorId {
            full: joined(&[name, "@", node]),
            at: name.len(),
        })
    }

    /// `actor-<seq>@node`, the id of an actor spawned without a name: formatted once, on
    /// the stack, into its one shared allocation.
    pub(crate) fn generated(seq: u64, node: &str) -> Result<ActorId> {
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut n = seq;
        loop {
            at -= 1;
            digits[at] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let digits =
            std::str::from_utf8(&digits[at..]).map_err(|e| Error::InvalidId(e.to_string()))?;
        if node.is_empty() || node.contains('@') {
            return Err(Error::InvalidId(format!("actor-{digits}@{node}")));
        }
        Ok(ActorId {
            full: joined(&["actor-", digits, "@", node]),
            at: "actor-".len() + digits.len(),
        })
    }

    /// Parses `name@node`.
    pub fn parse(text: &str) -> Result<ActorId> {
        match text.split_once('@') {
            Some((name, node)) => ActorId::new(name, node),
            None => Err(Error::InvalidId(text.to_owned())),
        }
    }

    /// The part before `@`.
    pub fn name(&self) -> &str {
        &self.full[..self.at]
    }

    /// The node the actor lives on.
    pub fn node(&self) -> &str {
        &self.full[self.at + 1..]
    }

    /// `name@node`.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

/// Concatenates `parts` into one `Arc<str>`: one allocation (the `Arc`'s), where
/// `format!(..).into()` makes two and copies once more.
fn joined(parts: &[&str]) -> Arc<str> {
    const STACK: usize = 96;
    let len: usize = parts.iter().map(|p| p.len()).sum();
    if len > STACK {
        return Arc::from(parts.concat());
    }
    let mut buf = [0u8; STACK];
    let mut end = 0;
    for p in parts {
        buf[end..end + p.len()].copy_from_slice(p.as_bytes());
        end += p.len();
    }
    // Whole `str`s back to back are valid UTF-8.
    Arc::from(std::str::from_utf8(&buf[..end]).expect("whole strs back to back are valid UTF-8"))
}

impl fmt::Display for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for ActorId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ActorId({})", self.full)
    }
}

impl std::str::FromStr for ActorId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ActorId::parse(s)
    }
}

impl TryFrom<&str> for ActorId {
    type Error = Error;
    fn try_from(s: &str) -> Result<Self> {
        ActorId::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let id = ActorId::parse("counter@node1").expect("valid");
        assert_eq!(id.name(), "counter");
        assert_eq!(id.node(), "node1");
        assert_eq!(id.to_string(), "counter@node1");
        for bad in ["counter", "@node", "counter@", "a@b@c", ""] {
            assert!(
                matches!(ActorId::parse(bad), Err(Error::InvalidId(_))),
                "{bad}"
            );
        }
    }
}
