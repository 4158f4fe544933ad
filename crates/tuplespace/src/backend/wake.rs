//! The cross-process wake-up message of the PostgreSQL (NOTIFY) and Redis (PUBLISH)
//! backends: `<origin instance>|<id>,<id>,...|<space key>`. The origin lets an engine skip
//! its own writes, whose waiters it already woke directly.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{SpaceId, TupleId};

/// Unique per backend instance, across processes and within one.
pub(crate) fn instance_id() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!(
        "{}-{nanos:x}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The wake-up messages for `ids` written to the space with key `space_key`, at most
/// `per_message` ids each.
pub(crate) fn payloads<'a>(
    origin: &str,
    space_key: &str,
    ids: &'a [u64],
    per_message: usize,
) -> impl Iterator<Item = String> + 'a {
    let origin = origin.to_owned();
    let space_key = space_key.to_owned();
    ids.chunks(per_message.max(1)).map(move |chunk| {
        let list = chunk
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        format!("{origin}|{list}|{space_key}")
    })
}

/// Reads a wake-up message: (origin, space, ids). `None` if it is not one.
pub(crate) fn parse(payload: &str) -> Option<(String, SpaceId, Vec<TupleId>)> {
    let mut parts = payload.splitn(3, '|');
    let origin = parts.next()?.to_owned();
    let ids = parts
        .next()?
        .split(',')
        .map(|s| s.parse().ok().map(TupleId))
        .collect::<Option<Vec<_>>>()?;
    let space = SpaceId::from_key(parts.next()?).ok()?;
    Some((origin, space, ids))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip_in_chunks() {
        let space = SpaceId::new("acme", "ns", "jobs").expect("valid");
        let all: Vec<String> = payloads("me", &space.key(), &[1, 2, 3], 2).collect();
        assert_eq!(all.len(), 2);
        let (origin, parsed, ids) = parse(&all[1]).expect("parses");
        assert_eq!(
            (origin.as_str(), parsed, ids),
            ("me", space, vec![TupleId(3)])
        );
        assert!(parse("no separators").is_none());
    }
}
