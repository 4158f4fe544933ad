//! The Redis backend (feature `redis`): shared by many processes, as durable as the server
//! is configured to be.
//!
//! Keys, under a configurable prefix `P` and a space key `S`: `P:seq` (id counter),
//! `P:s:S:d` (hash id -> encoded tuple), `P:s:S:e` (hash id -> lease deadline, leased tuples
//! only), `P:s:S:a:<arity>` and `P:s:S:k:<arity>:<k1>` (sorted sets of ids, the indexes).
//! A write is one MULTI/EXEC that also PUBLISHes on `P:events`; a claim is one Lua script
//! that deletes the tuple and its index entries and returns it, so it is atomic across
//! processes. Engines subscribe to `P:events` to wake their waiters; after a lost
//! connection they resubscribe and tell every waiter to look again.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{BoxStream, StreamExt};
use redis::aio::MultiplexedConnection;
use redis::{Client, Script};
use tokio::sync::mpsc;

use super::wake;
use super::{Backend, Capabilities, External};
use crate::codec::{decode, encode, template_key, tuple_key};
use crate::{Entry, Error, NewTuple, Result, SpaceId, Template, Timestamp, Tuple, TupleId};

const NAME: &str = "redis";
const PAGE: usize = 128;

const CLAIM: &str = r"
local v = redis.call('HGET', KEYS[1], ARGV[1])
if not v then return false end
local e = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
if KEYS[4] then redis.call('ZREM', KEYS[4], ARGV[1]) end
if e and tonumber(e) <= tonumber(ARGV[2]) then return false end
return {v, e or ''}
";

const RENEW: &str = r"
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then return 0 end
local e = redis.call('HGET', KEYS[2], ARGV[1])
if e and tonumber(e) <= tonumber(ARGV[2]) then return 0 end
if ARGV[3] == '' then redis.call('HDEL', KEYS[2], ARGV[1]) else redis.call('HSET', KEYS[2], ARGV[1], ARGV[3]) end
return 1
";

fn map_err(e: redis::RedisError) -> Error {
    if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal() {
        Error::Unavailable {
            backend: NAME,
            message: e.to_string(),
        }
    } else {
        Error::Backend {
            backend: NAME,
            message: e.to_string(),
        }
    }
}

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct RedisOptions {
    /// a `redis://` URL, or `rediss://` for TLS (feature `tls-rustls`)
    pub url: String,
    /// prefix of every key and of the event channel
    pub prefix: String,
    /// PEM file of the CA that signed a `rediss://` server's certificate, when that is not a
    /// public root (feature `tls-rustls`)
    pub tls_root_cert: Option<std::path::PathBuf>,
}

impl RedisOptions {
    /// Defaults: prefix `plexspaces:ts`.
    pub fn new(url: &str) -> Self {
        RedisOptions {
            url: url.to_owned(),
            prefix: "plexspaces:ts".to_owned(),
            tls_root_cert: None,
        }
    }
}

/// Tuples in Redis.
pub struct RedisBackend {
    client: Client,
    conn: MultiplexedConnection,
    prefix: String,
    channel: String,
    instance: String,
    claim: Script,
    renew: Script,
}

impl std::fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackend")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

struct Keys {
    data: String,
    exp: String,
    base: String,
}

impl Keys {
    fn arity(&self, arity: usize) -> String {
        format!("{}:a:{arity}", self.base)
    }

    fn first(&self, arity: usize, k1: &str) -> String {
        format!("{}:k:{arity}:{k1}", self.base)
    }
}

/// The client for `options`: with a private CA, one that trusts it.
fn client(options: &RedisOptions) -> Result<Client> {
    let Some(ca) = &options.tls_root_cert else {
        return Client::open(options.url.as_str()).map_err(map_err);
    };
    #[cfg(feature = "tls-rustls")]
    {
        let root_cert = std::fs::read(ca).map_err(|e| {
            Error::InvalidArgument(format!("redis tls_root_cert {}: {e}", ca.display()))
        })?;
        let certificates = redis::TlsCertificates {
            client_tls: None,
            root_cert: Some(root_cert),
        };
        Client::build_with_tls(options.url.as_str(), certificates).map_err(map_err)
    }
    #[cfg(not(feature = "tls-rustls"))]
    {
        Err(Error::InvalidArgument(format!(
            "redis tls_root_cert {} needs the tls-rustls feature",
            ca.display()
        )))
    }
}

impl RedisBackend {
    /// Connect.
    pub async fn connect(options: RedisOptions) -> Result<Self> {
        let client = client(&options)?;
        let conn = client
            .get_multiplexed_async_connection()
            .await
            .map_err(map_err)?;
        Ok(RedisBackend {
            client,
            conn,
            channel: format!("{}:events", options.prefix),
            prefix: options.prefix,
            instance: wake::instance_id(),
            claim: Script::new(CLAIM),
            renew: Script::new(RENEW),
        })
    }

    fn keys(&self, space: &SpaceId) -> Keys {
        let base = format!("{}:s:{}", self.prefix, space.key());
        Keys {
            data: format!("{base}:d"),
            exp: format!("{base}:e"),
            base,
        }
    }

    fn add_to_pipe(
        pipe: &mut redis::Pipeline,
        keys: &Keys,
        id: u64,
        tuple: &Tuple,
        exp: Option<Timestamp>,
    ) {
        pipe.cmd("HSET")
            .arg(&keys.data)
            .arg(id)
            .arg(encode(tuple))
            .ignore();
        if let Some(e) = exp {
            pipe.cmd("HSET").arg(&keys.exp).arg(id).arg(e.0).ignore();
        }
        pipe.cmd("ZADD")
            .arg(keys.arity(tuple.arity()))
            .arg(id)
            .arg(id)
            .ignore();
        if let Some(k) = tuple_key(tuple) {
            pipe.cmd("ZADD")
                .arg(keys.first(tuple.arity(), &k))
                .arg(id)
                .arg(id)
                .ignore();
        }
    }

    fn publish(&self, pipe: &mut redis::Pipeline, space: &SpaceId, ids: &[u64]) {
        for payload in wake::payloads(&self.instance, &space.key(), ids, 500) {
            pipe.cmd("PUBLISH").arg(&self.channel).arg(payload).ignore();
        }
    }

    /// Candidate entries (ids after `after`, oldest first), with expired ones flagged.
    async fn page(
        &self,
        keys: &Keys,
        template: &Template,
        after: u64,
    ) -> Result<(Vec<(u64, Option<Vec<u8>>, Option<i64>)>, bool)> {
        let index = match template_key(template) {
            Some(k) => keys.first(template.arity(), &k),
            None => keys.arity(template.arity()),
        };
        let mut conn = self.conn.clone();
        let ids: Vec<u64> = redis::cmd("ZRANGEBYSCORE")
            .arg(&index)
            .arg(format!("({after}"))
            .arg("+inf")
            .arg("LIMIT")
            .arg(0)
            .arg(PAGE)
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        if ids.is_empty() {
            return Ok((Vec::new(), false));
        }
        let (data, exp): (Vec<Option<Vec<u8>>>, Vec<Option<i64>>) = redis::pipe()
            .cmd("HMGET")
            .arg(&keys.data)
            .arg(&ids)
            .cmd("HMGET")
            .arg(&keys.exp)
            .arg(&ids)
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        let full = ids.len() == PAGE;
        Ok((
            ids.into_iter()
                .zip(data)
                .zip(exp)
                .map(|((i, d), e)| (i, d, e))
                .collect(),
            full,
        ))
    }

    /// Up to `limit` matching live entries, oldest first.
    async fn scan(
        &self,
        space: &SpaceId,
        template: &Template,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let keys = self.keys(space);
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let (page, full) = self.page(&keys, template, after).await?;
            for (id, data, exp) in page {
                after = id;
                let (Some(data), live) = (data, exp.is_none_or(|e| e > now.0)) else {
                    continue;
                };
                if !live {
                    continue;
                }
                let tuple = decode(&data)?;
                if template.matches(&tuple) {
                    out.push(Entry {
                        id: TupleId(id),
                        tuple,
                        expires_at: exp.map(Timestamp),
                    });
                    if out.len() >= limit {
                        return Ok(out);
                    }
                }
            }
            if !full {
                return Ok(out);
            }
        }
    }

    async fn claim(
        &self,
        keys: &Keys,
        id: u64,
        tuple: &Tuple,
        now: Timestamp,
    ) -> Result<Option<Entry>> {
        let mut conn = self.conn.clone();
        let mut inv = self.claim.prepare_invoke();
        inv.key(&keys.data)
            .key(&keys.exp)
            .key(keys.arity(tuple.arity()));
        if let Some(k) = tuple_key(tuple) {
            inv.key(keys.first(tuple.arity(), &k));
        }
        inv.arg(id).arg(now.0);
        let got: Option<(Vec<u8>, String)> = inv.invoke_async(&mut conn).await.map_err(map_err)?;
        match got {
            None => Ok(None),
            Some((data, exp)) => Ok(Some(Entry {
                id: TupleId(id),
                tuple: decode(&data)?,
                expires_at: if exp.is_empty() {
                    None
                } else {
                    Some(Timestamp(exp.parse().map_err(|_| {
                        Error::Corrupt(format!("lease deadline {exp:?}"))
                    })?))
                },
            })),
        }
    }
}

#[async_trait]
impl Backend for RedisBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            durable: true,
            cross_process_wakeups: true,
        }
    }

    async fn insert(&self, space: &SpaceId, tuples: &[NewTuple]) -> Result<Vec<TupleId>> {
        let mut conn = self.conn.clone();
        let n = tuples.len() as u64;
        let last: u64 = redis::cmd("INCRBY")
            .arg(format!("{}:seq", self.prefix))
            .arg(n)
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        let first = last + 1 - n;
        let keys = self.keys(space);
        let mut pipe = redis::pipe();
        pipe.atomic();
        let ids: Vec<u64> = (first..=last).collect();
        for (id, t) in ids.iter().zip(tuples) {
            Self::add_to_pipe(&mut pipe, &keys, *id, &t.tuple, t.expires_at);
        }
        self.publish(&mut pipe, space, &ids);
        pipe.query_async::<()>(&mut conn).await.map_err(map_err)?;
        Ok(ids.into_iter().map(TupleId).collect())
    }

    async fn restore(&self, space: &SpaceId, entries: &[Entry]) -> Result<()> {
        let mut conn = self.conn.clone();
        let keys = self.keys(space);
        let mut pipe = redis::pipe();
        pipe.atomic();
        for e in entries {
            Self::add_to_pipe(&mut pipe, &keys, e.id.0, &e.tuple, e.expires_at);
        }
        let ids: Vec<u64> = entries.iter().map(|e| e.id.0).collect();
        self.publish(&mut pipe, space, &ids);
        pipe.query_async::<()>(&mut conn).await.map_err(map_err)
    }

    async fn get(&self, space: &SpaceId, id: TupleId, now: Timestamp) -> Result<Option<Entry>> {
        let keys = self.keys(space);
        let mut conn = self.conn.clone();
        let (data, exp): (Option<Vec<u8>>, Option<i64>) = redis::pipe()
            .cmd("HGET")
            .arg(&keys.data)
            .arg(id.0)
            .cmd("HGET")
            .arg(&keys.exp)
            .arg(id.0)
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        match data {
            Some(d) if exp.is_none_or(|e| e > now.0) => Ok(Some(Entry {
                id,
                tuple: decode(&d)?,
                expires_at: exp.map(Timestamp),
            })),
            _ => Ok(None),
        }
    }

    async fn find(
        &self,
        space: &SpaceId,
        template: &Template,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        self.scan(space, template, now, limit).await
    }

    async fn take(
        &self,
        space: &SpaceId,
        template: &Template,
        now: Timestamp,
        exclude: &HashSet<TupleId>,
    ) -> Result<Option<Entry>> {
        let keys = self.keys(space);
        let mut after = 0;
        loop {
            let (page, full) = self.page(&keys, template, after).await?;
            for (id, data, exp) in page {
                after = id;
                let Some(data) = data else { continue };
                if exclude.contains(&TupleId(id)) {
                    continue;
                }
                let tuple = decode(&data)?;
                if exp.is_some_and(|e| e <= now.0) {
                    // expired: the claim deletes it and returns nothing
                    self.claim(&keys, id, &tuple, now).await?;
                    continue;
                }
                if !template.matches(&tuple) {
                    continue;
                }
                if let Some(got) = self.claim(&keys, id, &tuple, now).await? {
                    return Ok(Some(got));
                }
            }
            if !full {
                return Ok(None);
            }
        }
    }

    async fn take_by_id(
        &self,
        space: &SpaceId,
        id: TupleId,
        now: Timestamp,
    ) -> Result<Option<Entry>> {
        let keys = self.keys(space);
        let mut conn = self.conn.clone();
        let data: Option<Vec<u8>> = redis::cmd("HGET")
            .arg(&keys.data)
            .arg(id.0)
            .query_async(&mut conn)
            .await
            .map_err(map_err)?;
        match data {
            Some(d) => self.claim(&keys, id.0, &decode(&d)?, now).await,
            None => Ok(None),
        }
    }

    async fn take_all(
        &self,
        space: &SpaceId,
        template: &Template,
        now: Timestamp,
        exclude: &HashSet<TupleId>,
    ) -> Result<Vec<Entry>> {
        let keys = self.keys(space);
        let mut out = Vec::new();
        for e in self.scan(space, template, now, usize::MAX).await? {
            if exclude.contains(&e.id) {
                continue;
            }
            if let Some(got) = self.claim(&keys, e.id.0, &e.tuple, now).await? {
                out.push(got);
            }
        }
        Ok(out)
    }

    async fn renew(
        &self,
        space: &SpaceId,
        id: TupleId,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<bool> {
        let keys = self.keys(space);
        let mut conn = self.conn.clone();
        let ok: i64 = self
            .renew
            .key(&keys.data)
            .key(&keys.exp)
            .arg(id.0)
            .arg(now.0)
            .arg(expires_at.map(|e| e.0.to_string()).unwrap_or_default())
            .invoke_async(&mut conn)
            .await
            .map_err(map_err)?;
        Ok(ok == 1)
    }

    async fn watch(&self) -> Result<Option<BoxStream<'static, External>>> {
        let client = self.client.clone();
        let channel = self.channel.clone();
        let instance = self.instance.clone();
        let mut pubsub = client.get_async_pubsub().await.map_err(map_err)?;
        pubsub.subscribe(&channel).await.map_err(map_err)?;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(async move {
            let mut messages = Some(pubsub.into_on_message());
            loop {
                let Some(stream) = messages.as_mut() else {
                    // reconnect, then tell waiters to look again for what they missed
                    tokio::select! {
                        _ = tx.closed() => break,
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    }
                    match client.get_async_pubsub().await {
                        Ok(mut p) => {
                            if p.subscribe(&channel).await.is_ok() {
                                messages = Some(p.into_on_message());
                                if tx.send(External::Resync).await.is_err() {
                                    break;
                                }
                            }
                        }
                        Err(error) => {
                            tracing::warn!(%error, "tuple space subscriber cannot reconnect")
                        }
                    }
                    continue;
                };
                let msg = tokio::select! {
                    _ = tx.closed() => break,
                    m = stream.next() => m,
                };
                let Some(msg) = msg else {
                    messages = None;
                    continue;
                };
                let payload: String = match msg.get_payload() {
                    Ok(p) => p,
                    Err(_) => continue,
                };
                match wake::parse(&payload) {
                    Some((origin, _, _)) if origin == instance => {}
                    Some((_, space, ids)) => {
                        if tx.send(External::Written { space, ids }).await.is_err() {
                            break;
                        }
                    }
                    None => tracing::warn!(%payload, "unparseable tuple space event"),
                }
            }
        });
        Ok(Some(
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
                .boxed(),
        ))
    }
}
