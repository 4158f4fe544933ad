//! Helpers shared by the SQL backends.

use crate::{codec, Entry, Error, Timestamp, TupleId};

/// Rows fetched per page when scanning candidates.
pub(crate) const PAGE: i64 = 128;
/// Expired rows are purged once every this many inserts.
pub(crate) const PURGE_EVERY: u64 = 256;

pub(crate) fn entry(id: i64, data: &[u8], expires_at: Option<i64>) -> crate::Result<Entry> {
    Ok(Entry {
        id: TupleId(u64::try_from(id).map_err(|_| Error::Corrupt(format!("negative id {id}")))?),
        tuple: codec::decode(data)?,
        expires_at: expires_at.map(Timestamp),
    })
}

pub(crate) fn db_id(id: TupleId) -> crate::Result<i64> {
    i64::try_from(id.0).map_err(|_| Error::InvalidArgument(format!("tuple id {id} out of range")))
}

pub(crate) fn map_err(backend: &'static str, e: sqlx::Error) -> Error {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => Error::Unavailable {
            backend,
            message: e.to_string(),
        },
        sqlx::Error::Database(ref db)
            if matches!(
                db.code().as_deref(),
                // sqlite busy/locked; postgres serialization failure, deadlock, too many connections
                Some("5") | Some("6") | Some("40001") | Some("40P01") | Some("53300")
            ) =>
        {
            Error::Unavailable {
                backend,
                message: e.to_string(),
            }
        }
        other => Error::Backend {
            backend,
            message: other.to_string(),
        },
    }
}

pub(crate) fn arity(t: usize) -> crate::Result<i64> {
    i64::try_from(t).map_err(|_| Error::InvalidArgument("arity out of range".into()))
}
