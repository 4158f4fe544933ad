//! [`KvShard`]: a ready-made shard of JSON values by string key, the one the node serves
//! over HTTP and gRPC.

use std::collections::BTreeMap;

use plexspaces_core::BoxError;
use serde::{Deserialize, Serialize};

use crate::group::Shard;

/// The most entries a `get` or `scan` query returns per shard.
pub const MAX_ENTRIES: usize = 10_000;

/// A shard of `key -> JSON value`. A `null` value deletes its key.
#[derive(Debug, Default)]
pub struct KvShard {
    data: BTreeMap<String, serde_json::Value>,
}

/// A query over [`KvShard`]s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum KvQuery {
    /// How many keys.
    Count,
    /// The sum of the numeric values (others are skipped).
    Sum,
    /// The values of these keys (those present).
    Get {
        /// The keys.
        keys: Vec<String>,
    },
    /// Up to `limit` entries whose key starts with `prefix`, in key order.
    Scan {
        /// The key prefix ("" for all).
        #[serde(default)]
        prefix: String,
        /// At most this many per shard (at most [`MAX_ENTRIES`]).
        limit: usize,
    },
}

/// One shard's, or the merged, answer to a [`KvQuery`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KvAnswer {
    /// For `count`.
    Count(u64),
    /// For `sum`.
    Sum(f64),
    /// For `get` and `scan`: entries in key order.
    Entries(Vec<(String, serde_json::Value)>),
}

impl KvAnswer {
    /// The empty answer to `query`, to merge answers into.
    pub fn empty(query: &KvQuery) -> KvAnswer {
        match query {
            KvQuery::Count => KvAnswer::Count(0),
            KvQuery::Sum => KvAnswer::Sum(0.0),
            KvQuery::Get { .. } | KvQuery::Scan { .. } => KvAnswer::Entries(Vec::new()),
        }
    }

    /// Merges another shard's answer into this one (counts and sums add, entries join in
    /// key order). Answers of different kinds leave `self` as it is.
    pub fn merge(self, other: KvAnswer) -> KvAnswer {
        match (self, other) {
            (KvAnswer::Count(a), KvAnswer::Count(b)) => KvAnswer::Count(a + b),
            (KvAnswer::Sum(a), KvAnswer::Sum(b)) => KvAnswer::Sum(a + b),
            (KvAnswer::Entries(mut a), KvAnswer::Entries(b)) => {
                a.extend(b);
                a.sort_by(|x, y| x.0.cmp(&y.0));
                KvAnswer::Entries(a)
            }
            (this, _) => this,
        }
    }
}

impl Shard for KvShard {
    type Key = String;
    type Value = serde_json::Value;
    type Query = KvQuery;
    type Answer = KvAnswer;

    fn update(&mut self, key: String, value: serde_json::Value) -> Result<(), BoxError> {
        if value.is_null() {
            self.data.remove(&key);
        } else {
            self.data.insert(key, value);
        }
        Ok(())
    }

    async fn query(&mut self, query: &KvQuery) -> Result<KvAnswer, BoxError> {
        Ok(match query {
            KvQuery::Count => KvAnswer::Count(self.data.len() as u64),
            KvQuery::Sum => KvAnswer::Sum(self.data.values().filter_map(|v| v.as_f64()).sum()),
            KvQuery::Get { keys } => KvAnswer::Entries(
                keys.iter()
                    .filter_map(|k| self.data.get(k).map(|v| (k.clone(), v.clone())))
                    .take(MAX_ENTRIES)
                    .collect(),
            ),
            KvQuery::Scan { prefix, limit } => KvAnswer::Entries(
                self.data
                    .range(prefix.clone()..)
                    .take_while(|(k, _)| k.starts_with(prefix.as_str()))
                    .take((*limit).min(MAX_ENTRIES))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
        })
    }
}
