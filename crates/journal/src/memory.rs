//! In-memory journal and reminder store (the default; nothing survives the process).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use crate::journal::check_contiguous;
use crate::reminders::{Reminder, ReminderStore};
use crate::{Entry, Epoch, Error, Journal, Result, Seq, Snapshot, StreamId};

#[derive(Debug, Default)]
struct Stream {
    epoch: u64,
    next_seq: Seq,
    entries: BTreeMap<Seq, Entry>,
    snapshot: Option<Snapshot>,
}

/// An in-memory [`Journal`]. Clones share the same streams.
#[derive(Debug, Clone, Default)]
pub struct MemoryJournal {
    streams: Arc<Mutex<HashMap<StreamId, Stream>>>,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<StreamId, Stream>> {
        // A poisoned lock only means another thread panicked while holding it; the map is
        // still structurally valid, so keep serving.
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Applies `f` to a stored entry in place, bypassing checksums, to simulate a torn or
    /// corrupt write in tests. Returns whether the entry existed.
    #[doc(hidden)]
    pub fn tamper(&self, stream: &StreamId, seq: Seq, f: impl FnOnce(&mut Entry)) -> bool {
        let mut map = self.lock();
        match map.get_mut(stream).and_then(|s| s.entries.get_mut(&seq)) {
            Some(e) => {
                f(e);
                true
            }
            None => false,
        }
    }
}

fn fence(stream: &StreamId, s: &Stream, epoch: Epoch) -> Result<()> {
    if epoch.0 == s.epoch && s.epoch > 0 {
        Ok(())
    } else if epoch.0 < s.epoch {
        Err(Error::Fenced {
            stream: stream.to_string(),
            epoch: epoch.0,
            current: s.epoch,
        })
    } else {
        Err(Error::InvalidArgument(format!(
            "epoch {epoch} was never acquired for stream {stream}"
        )))
    }
}

fn new_stream() -> Stream {
    Stream {
        next_seq: 1,
        ..Stream::default()
    }
}

#[async_trait]
impl Journal for MemoryJournal {
    async fn acquire_epoch(&self, stream: &StreamId) -> Result<Epoch> {
        let mut map = self.lock();
        let s = map.entry(stream.clone()).or_insert_with(new_stream);
        s.epoch += 1;
        Ok(Epoch(s.epoch))
    }

    async fn append(&self, stream: &StreamId, epoch: Epoch, entries: Vec<Entry>) -> Result<()> {
        let mut map = self.lock();
        let s = map.entry(stream.clone()).or_insert_with(new_stream);
        fence(stream, s, epoch)?;
        let next = check_contiguous(stream, s.next_seq, &entries)?;
        for e in entries {
            s.entries.insert(e.seq, e);
        }
        s.next_seq = next;
        Ok(())
    }

    async fn read(&self, stream: &StreamId, from_seq: Seq, to_seq: Seq) -> Result<Vec<Entry>> {
        if from_seq > to_seq {
            return Ok(Vec::new());
        }
        let map = self.lock();
        Ok(map
            .get(stream)
            .map(|s| {
                s.entries
                    .range(from_seq..=to_seq)
                    .map(|(_, e)| e.clone())
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn next_seq(&self, stream: &StreamId) -> Result<Seq> {
        Ok(self.lock().get(stream).map(|s| s.next_seq).unwrap_or(1))
    }

    async fn save_snapshot(
        &self,
        stream: &StreamId,
        epoch: Epoch,
        seq: Seq,
        data: Vec<u8>,
    ) -> Result<()> {
        let mut map = self.lock();
        let s = map.entry(stream.clone()).or_insert_with(new_stream);
        fence(stream, s, epoch)?;
        s.snapshot = Some(Snapshot::new(seq, epoch, data));
        Ok(())
    }

    async fn latest_snapshot(&self, stream: &StreamId) -> Result<Option<Snapshot>> {
        Ok(self.lock().get(stream).and_then(|s| s.snapshot.clone()))
    }

    async fn truncate_before(&self, stream: &StreamId, seq: Seq) -> Result<u64> {
        let mut map = self.lock();
        let Some(s) = map.get_mut(stream) else {
            return Ok(0);
        };
        let Some(snap_seq) = s.snapshot.as_ref().map(|sn| sn.seq) else {
            return Ok(0);
        };
        let limit = seq.min(snap_seq.saturating_add(1));
        let keep = s.entries.split_off(&limit);
        let removed = s.entries.len() as u64;
        s.entries = keep;
        Ok(removed)
    }

    async fn truncate_from(&self, stream: &StreamId, epoch: Epoch, seq: Seq) -> Result<u64> {
        let mut map = self.lock();
        let s = map.entry(stream.clone()).or_insert_with(new_stream);
        fence(stream, s, epoch)?;
        let removed = s.entries.split_off(&seq).len() as u64;
        s.next_seq = seq.max(1);
        Ok(removed)
    }

    async fn history_len(&self, stream: &StreamId) -> Result<u64> {
        Ok(self
            .lock()
            .get(stream)
            .map(|s| s.entries.len() as u64)
            .unwrap_or(0))
    }
}

/// An in-memory [`ReminderStore`]. Clones share the same reminders.
#[derive(Debug, Clone, Default)]
pub struct MemoryReminderStore {
    reminders: Arc<Mutex<BTreeMap<(StreamId, String), Reminder>>>,
}

impl MemoryReminderStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<(StreamId, String), Reminder>> {
        self.reminders.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl ReminderStore for MemoryReminderStore {
    async fn upsert(&self, reminder: &Reminder) -> Result<()> {
        reminder.validate()?;
        self.lock().insert(
            (reminder.owner.clone(), reminder.name.clone()),
            reminder.clone(),
        );
        Ok(())
    }

    async fn cancel(&self, owner: &StreamId, name: &str) -> Result<bool> {
        Ok(self
            .lock()
            .remove(&(owner.clone(), name.to_owned()))
            .is_some())
    }

    async fn get(&self, owner: &StreamId, name: &str) -> Result<Option<Reminder>> {
        Ok(self.lock().get(&(owner.clone(), name.to_owned())).cloned())
    }

    async fn list(&self, owner: &StreamId) -> Result<Vec<Reminder>> {
        Ok(self
            .lock()
            .values()
            .filter(|r| &r.owner == owner)
            .cloned()
            .collect())
    }

    async fn due(&self, now_ms: u64, limit: usize) -> Result<Vec<Reminder>> {
        let mut due: Vec<Reminder> = self
            .lock()
            .values()
            .filter(|r| r.due_at_ms <= now_ms)
            .cloned()
            .collect();
        due.sort_by_key(|r| r.due_at_ms);
        due.truncate(limit);
        Ok(due)
    }

    async fn reschedule(&self, fired: &Reminder, next_due_ms: Option<u64>) -> Result<bool> {
        let mut map = self.lock();
        let key = (fired.owner.clone(), fired.name.clone());
        match map.get_mut(&key) {
            Some(current) if current.due_at_ms == fired.due_at_ms => {
                match next_due_ms {
                    Some(next) => current.due_at_ms = next,
                    None => {
                        map.remove(&key);
                    }
                }
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}
