//! Stream ids, epochs, entries, snapshots, checksums and the clock.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::{Error, Result};

/// A sequence number inside one stream. The first entry of a stream has seq 1.
pub type Seq = u64;

/// Identifies one actor's journal stream: tenant, namespace and actor id.
///
/// Streams of different tenants or namespaces never share entries, epochs or snapshots.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct StreamId {
    /// The tenant that owns the actor.
    pub tenant: String,
    /// The namespace (application) of the actor.
    pub namespace: String,
    /// The actor id (`name@node` or a virtual actor key).
    pub actor_id: String,
}

impl StreamId {
    /// Builds a stream id.
    pub fn new(tenant: &str, namespace: &str, actor_id: &str) -> Self {
        Self {
            tenant: tenant.to_owned(),
            namespace: namespace.to_owned(),
            actor_id: actor_id.to_owned(),
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.tenant, self.namespace, self.actor_id)
    }
}

/// A fencing epoch. Each activation of a stream acquires a strictly greater one.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What a journal entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// A message was accepted (payload: optional idempotency key and the message bytes).
    MessageReceived,
    /// The result of a named side effect.
    SideEffect,
    /// A clock read (`now()`).
    ClockRead,
    /// A random value.
    RandomValue,
    /// A persisted domain event (event sourcing).
    Event,
    /// The message completed; payload: optional idempotency key and the reply bytes.
    Reply,
    /// The handler failed; the message's effects on state are rolled back on replay.
    Aborted,
    /// One attempt of the open message failed (payload: failure time in ms and the error);
    /// the message stays open and is retried on the next activation (see
    /// [`crate::RetryPolicy`]).
    Failed,
    /// An operator resumed a paused message (payload: time in ms): its failed attempts
    /// start counting again.
    Resumed,
    /// A kind code this version does not know (always fails verification).
    Unknown(u8),
}

impl EntryKind {
    /// The stable storage code of the kind.
    pub fn code(self) -> u8 {
        match self {
            EntryKind::MessageReceived => 1,
            EntryKind::SideEffect => 2,
            EntryKind::ClockRead => 3,
            EntryKind::RandomValue => 4,
            EntryKind::Event => 5,
            EntryKind::Reply => 6,
            EntryKind::Aborted => 7,
            EntryKind::Failed => 8,
            EntryKind::Resumed => 9,
            EntryKind::Unknown(c) => c,
        }
    }

    /// The kind for a storage code.
    pub fn from_code(code: u8) -> Self {
        match code {
            1 => EntryKind::MessageReceived,
            2 => EntryKind::SideEffect,
            3 => EntryKind::ClockRead,
            4 => EntryKind::RandomValue,
            5 => EntryKind::Event,
            6 => EntryKind::Reply,
            7 => EntryKind::Aborted,
            8 => EntryKind::Failed,
            9 => EntryKind::Resumed,
            c => EntryKind::Unknown(c),
        }
    }

    /// A short lowercase name, used in mismatch errors.
    pub fn name(self) -> &'static str {
        match self {
            EntryKind::MessageReceived => "message",
            EntryKind::SideEffect => "side effect",
            EntryKind::ClockRead => "clock read",
            EntryKind::RandomValue => "random value",
            EntryKind::Event => "event",
            EntryKind::Reply => "reply",
            EntryKind::Aborted => "aborted",
            EntryKind::Failed => "failed attempt",
            EntryKind::Resumed => "resumed",
            EntryKind::Unknown(_) => "unknown",
        }
    }
}

/// One journal entry: a sequence number, a kind, opaque payload bytes and a CRC-32 checksum
/// over all three.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Position in the stream (contiguous, starting at 1).
    pub seq: Seq,
    /// What the entry records.
    pub kind: EntryKind,
    /// Encoded payload (the engine's encoding; opaque to the journal).
    pub payload: Vec<u8>,
    /// CRC-32 of seq, kind and payload, computed when the entry was made.
    pub checksum: u32,
}

impl Entry {
    /// Makes an entry and computes its checksum.
    pub fn new(seq: Seq, kind: EntryKind, payload: Vec<u8>) -> Self {
        let checksum = entry_checksum(seq, kind.code(), &payload);
        Self {
            seq,
            kind,
            payload,
            checksum,
        }
    }

    /// Rebuilds an entry read from storage (the checksum is the stored one, not recomputed).
    pub fn from_stored(seq: Seq, kind_code: u8, payload: Vec<u8>, checksum: u32) -> Self {
        Self {
            seq,
            kind: EntryKind::from_code(kind_code),
            payload,
            checksum,
        }
    }

    /// Whether the stored checksum matches the content and the kind is known.
    pub fn is_valid(&self) -> bool {
        !matches!(self.kind, EntryKind::Unknown(_))
            && entry_checksum(self.seq, self.kind.code(), &self.payload) == self.checksum
    }
}

/// The latest snapshot of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The snapshot covers every entry with a seq up to and including this one.
    pub seq: Seq,
    /// The epoch that wrote it.
    pub epoch: Epoch,
    /// Snapshot bytes (opaque to the journal).
    pub data: Vec<u8>,
    /// CRC-32 of seq and data.
    pub checksum: u32,
}

impl Snapshot {
    /// Makes a snapshot and computes its checksum.
    pub fn new(seq: Seq, epoch: Epoch, data: Vec<u8>) -> Self {
        let checksum = entry_checksum(seq, 0, &data);
        Self {
            seq,
            epoch,
            data,
            checksum,
        }
    }

    /// Whether the stored checksum matches.
    pub fn is_valid(&self) -> bool {
        entry_checksum(self.seq, 0, &self.data) == self.checksum
    }

    /// Returns the data if the checksum matches, a `Corrupt` error otherwise.
    pub fn verified(self, stream: &StreamId) -> Result<Self> {
        if self.is_valid() {
            Ok(self)
        } else {
            Err(Error::Corrupt {
                stream: stream.to_string(),
                seq: self.seq,
                reason: "snapshot checksum mismatch".into(),
            })
        }
    }
}

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC_TABLE: [u32; 256] = crc_table();

fn crc_update(mut crc: u32, bytes: &[u8]) -> u32 {
    for &b in bytes {
        crc = CRC_TABLE[((crc ^ u32::from(b)) & 0xFF) as usize] ^ (crc >> 8);
    }
    crc
}

/// CRC-32 (IEEE) of a byte slice.
pub fn crc32(bytes: &[u8]) -> u32 {
    !crc_update(!0, bytes)
}

fn entry_checksum(seq: Seq, kind: u8, payload: &[u8]) -> u32 {
    let mut crc = !0u32;
    crc = crc_update(crc, &seq.to_le_bytes());
    crc = crc_update(crc, &[kind]);
    crc = crc_update(crc, payload);
    !crc
}

/// The one source of time for the engine and the reminder scheduler, so tests can control it
/// and replay stays deterministic.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Milliseconds since the Unix epoch.
    fn now_ms(&self) -> u64;
}

/// The system wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }
}

/// The wall clock read once, then advanced by the monotonic clock: a running process is
/// immune to wall-clock jumps (an NTP step, an operator setting the date); only a new
/// process re-reads the wall clock. [`SteadyClock::shared`] is one anchor for the whole
/// process, so every user of it agrees on the time.
#[derive(Debug, Clone, Copy)]
pub struct SteadyClock {
    base_ms: u64,
    base: std::time::Instant,
}

impl SteadyClock {
    /// A clock anchored at the wall clock now.
    pub fn new() -> Self {
        SteadyClock {
            base_ms: SystemClock.now_ms(),
            base: std::time::Instant::now(),
        }
    }

    /// The process-wide clock (anchored at its first use).
    pub fn shared() -> std::sync::Arc<SteadyClock> {
        static SHARED: std::sync::OnceLock<std::sync::Arc<SteadyClock>> =
            std::sync::OnceLock::new();
        SHARED
            .get_or_init(|| std::sync::Arc::new(SteadyClock::new()))
            .clone()
    }
}

impl Default for SteadyClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SteadyClock {
    fn now_ms(&self) -> u64 {
        self.base_ms
            .saturating_add(u64::try_from(self.base.elapsed().as_millis()).unwrap_or(u64::MAX))
    }
}

/// A clock that only moves when told to (for tests).
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A manual clock reading `now_ms`.
    pub fn new(now_ms: u64) -> Arc<Self> {
        Arc::new(Self {
            now: AtomicU64::new(now_ms),
        })
    }

    /// Sets the time.
    pub fn set(&self, now_ms: u64) {
        self.now.store(now_ms, Ordering::SeqCst);
    }

    /// Moves the time forward.
    pub fn advance(&self, ms: u64) {
        self.now.fetch_add(ms, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_reference_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn entry_checksum_detects_changes() {
        let e = Entry::new(7, EntryKind::SideEffect, b"hello".to_vec());
        assert!(e.is_valid());
        let mut bad = e.clone();
        bad.payload[0] ^= 1;
        assert!(!bad.is_valid());
        let mut bad = e.clone();
        bad.seq = 8;
        assert!(!bad.is_valid());
        let bad = Entry::from_stored(7, 99, e.payload.clone(), e.checksum);
        assert!(!bad.is_valid());
    }
}
