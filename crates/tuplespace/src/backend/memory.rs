//! The in-memory backend, the default.
//!
//! Per space: entries by id (a B-tree, so oldest first), an index by arity and one by
//! arity and first-field key, and a deadline queue that drops expired entries as time
//! passes. A template with an exact first field scans only tuples with that arity and first
//! field; any other template scans only tuples of its arity.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use async_trait::async_trait;
use parking_lot::Mutex;

use super::{Backend, Capabilities};
use crate::codec::{template_key, tuple_key};
use crate::{Entry, NewTuple, Result, SpaceId, Template, Timestamp, TupleId};

/// Tuples in process memory; gone when the process exits.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    inner: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    next_id: u64,
    spaces: HashMap<SpaceId, SpaceData>,
}

#[derive(Debug, Default)]
struct SpaceData {
    entries: BTreeMap<TupleId, Entry>,
    by_arity: HashMap<usize, BTreeSet<TupleId>>,
    by_key: HashMap<(usize, String), BTreeSet<TupleId>>,
    deadlines: BTreeSet<(Timestamp, TupleId)>,
}

impl SpaceData {
    fn add(&mut self, e: Entry) {
        let arity = e.tuple.arity();
        self.by_arity.entry(arity).or_default().insert(e.id);
        if let Some(k) = tuple_key(&e.tuple) {
            self.by_key.entry((arity, k)).or_default().insert(e.id);
        }
        if let Some(d) = e.expires_at {
            self.deadlines.insert((d, e.id));
        }
        self.entries.insert(e.id, e);
    }

    fn remove(&mut self, id: TupleId) -> Option<Entry> {
        let e = self.entries.remove(&id)?;
        let arity = e.tuple.arity();
        if let Some(set) = self.by_arity.get_mut(&arity) {
            set.remove(&id);
            if set.is_empty() {
                self.by_arity.remove(&arity);
            }
        }
        if let Some(k) = tuple_key(&e.tuple) {
            let key = (arity, k);
            if let Some(set) = self.by_key.get_mut(&key) {
                set.remove(&id);
                if set.is_empty() {
                    self.by_key.remove(&key);
                }
            }
        }
        if let Some(d) = e.expires_at {
            self.deadlines.remove(&(d, id));
        }
        Some(e)
    }

    fn purge(&mut self, now: Timestamp) {
        while let Some(&(d, id)) = self.deadlines.first() {
            if d > now {
                break;
            }
            self.remove(id);
        }
    }

    /// Ids of candidates for the template, oldest first.
    fn candidates<'a>(&'a self, template: &Template) -> Box<dyn Iterator<Item = TupleId> + 'a> {
        let arity = template.arity();
        let set = match template_key(template) {
            Some(k) => self.by_key.get(&(arity, k)),
            None => self.by_arity.get(&arity),
        };
        match set {
            Some(s) => Box::new(s.iter().copied()),
            None => Box::new(std::iter::empty()),
        }
    }

    fn matching<'a>(
        &'a self,
        template: &'a Template,
        exclude: &'a HashSet<TupleId>,
    ) -> impl Iterator<Item = &'a Entry> + 'a {
        self.candidates(template)
            .filter(|id| !exclude.contains(id))
            .filter_map(|id| self.entries.get(&id))
            .filter(|e| template.matches(&e.tuple))
    }
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with_space<R>(
        &self,
        space: &SpaceId,
        now: Timestamp,
        f: impl FnOnce(&mut SpaceData) -> R,
    ) -> R {
        let mut st = self.inner.lock();
        let Some(data) = st.spaces.get_mut(space) else {
            return f(&mut SpaceData::default());
        };
        data.purge(now);
        let r = f(data);
        if data.entries.is_empty() {
            st.spaces.remove(space);
        }
        r
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            durable: false,
            cross_process_wakeups: false,
        }
    }

    fn cancel_safe(&self) -> bool {
        true
    }

    async fn insert(&self, space: &SpaceId, tuples: &[NewTuple]) -> Result<Vec<TupleId>> {
        let mut st = self.inner.lock();
        let mut ids = Vec::with_capacity(tuples.len());
        let first = st.next_id;
        st.next_id += tuples.len() as u64;
        if !st.spaces.contains_key(space) {
            st.spaces.insert(space.clone(), SpaceData::default());
        }
        let Some(data) = st.spaces.get_mut(space) else {
            return Ok(Vec::new());
        };
        for (i, t) in tuples.iter().enumerate() {
            let id = TupleId(first + 1 + i as u64);
            data.add(Entry {
                id,
                tuple: t.tuple.clone(),
                expires_at: t.expires_at,
            });
            ids.push(id);
        }
        Ok(ids)
    }

    async fn restore(&self, space: &SpaceId, entries: &[Entry]) -> Result<()> {
        let mut st = self.inner.lock();
        let data = st.spaces.entry(space.clone()).or_default();
        for e in entries {
            if !data.entries.contains_key(&e.id) {
                data.add(e.clone());
            }
        }
        Ok(())
    }

    async fn get(&self, space: &SpaceId, id: TupleId, now: Timestamp) -> Result<Option<Entry>> {
        Ok(self.with_space(space, now, |d| d.entries.get(&id).cloned()))
    }

    async fn find(
        &self,
        space: &SpaceId,
        template: &Template,
        now: Timestamp,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let none = HashSet::new();
        Ok(self.with_space(space, now, |d| {
            d.matching(template, &none).take(limit).cloned().collect()
        }))
    }

    async fn take(
        &self,
        space: &SpaceId,
        template: &Template,
        now: Timestamp,
        exclude: &HashSet<TupleId>,
    ) -> Result<Option<Entry>> {
        Ok(self.with_space(space, now, |d| {
            let id = d.matching(template, exclude).next().map(|e| e.id)?;
            d.remove(id)
        }))
    }

    async fn take_by_id(
        &self,
        space: &SpaceId,
        id: TupleId,
        now: Timestamp,
    ) -> Result<Option<Entry>> {
        Ok(self.with_space(space, now, |d| d.remove(id)))
    }

    async fn take_all(
        &self,
        space: &SpaceId,
        template: &Template,
        now: Timestamp,
        exclude: &HashSet<TupleId>,
    ) -> Result<Vec<Entry>> {
        Ok(self.with_space(space, now, |d| {
            let ids: Vec<TupleId> = d.matching(template, exclude).map(|e| e.id).collect();
            ids.into_iter().filter_map(|id| d.remove(id)).collect()
        }))
    }

    async fn count(&self, space: &SpaceId, template: &Template, now: Timestamp) -> Result<u64> {
        let none = HashSet::new();
        Ok(self.with_space(space, now, |d| d.matching(template, &none).count() as u64))
    }

    async fn renew(
        &self,
        space: &SpaceId,
        id: TupleId,
        expires_at: Option<Timestamp>,
        now: Timestamp,
    ) -> Result<bool> {
        Ok(self.with_space(space, now, |d| match d.remove(id) {
            Some(mut e) => {
                e.expires_at = expires_at;
                d.add(e);
                true
            }
            None => false,
        }))
    }
}
