//! Coarse deadlines for `ask`: every local ask is bounded without a tokio timer of its own.
//!
//! Why: wrapping each ask in `tokio::time::timeout` registers a timer entry in tokio's wheel
//! and removes it again (two locks, a clock read and the entry's state in every ask future)
//! for a deadline that is almost never reached. Here a waiting ask puts its waker into one
//! shard of a process-wide table, keyed by the worker thread, and every node's timer
//! heartbeat (100 ms, see `Node::start_timer_heartbeat`) sweeps the table and wakes the asks
//! whose deadline has passed. An ask answered before its first wait registers nothing.
//!
//! The grain is the heartbeat: a deadline is noticed up to 100 ms late, which is why only
//! timeouts of at least [`COARSE_FROM`] (the default 5 s among them) take this path; shorter
//! ones keep a precise tokio timer. Expiry is always judged by the waiting ask against its
//! own tokio clock (so paused test clocks keep working): a sweep by a node on another
//! runtime whose clock disagrees only causes a re-check and a new registration.
//!
//! Architecture invariant: every local ask is bounded. An ask waiting on a local actor
//! always has a sweeper, because that actor holds its node (whose heartbeat sweeps), and if
//! the actor's task is dropped instead, its reply slot is dropped and the ask wakes.

use std::future::Future;
use std::pin::pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Poll, Waker};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::time::Instant;

use crate::error::{Error, Result};

/// Timeouts at least this long use the coarse table; shorter ones a tokio timer.
pub(crate) const COARSE_FROM: Duration = Duration::from_secs(1);

const SHARDS: usize = 16;

static TABLE: [Mutex<Shard>; SHARDS] = [const { Mutex::new(Shard::new()) }; SHARDS];

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard: threads are spread round robin, so the workers of a runtime do
    /// not share a lock.
    static MY_SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

struct Entry {
    deadline: Instant,
    waker: Waker,
    /// Which registration holds the slot (a slot is reused after it is freed).
    generation: u64,
}

struct Shard {
    slots: Vec<Option<Entry>>,
    free: Vec<usize>,
    generation: u64,
    /// No entry expires before this (a sweep skips the shard until then).
    earliest: Option<Instant>,
}

impl Shard {
    const fn new() -> Shard {
        Shard {
            slots: Vec::new(),
            free: Vec::new(),
            generation: 0,
            earliest: None,
        }
    }

    fn insert(&mut self, deadline: Instant, waker: Waker) -> (usize, u64) {
        self.generation += 1;
        let entry = Entry {
            deadline,
            waker,
            generation: self.generation,
        };
        let index = match self.free.pop() {
            Some(index) => {
                self.slots[index] = Some(entry);
                index
            }
            None => {
                self.slots.push(Some(entry));
                self.slots.len() - 1
            }
        };
        self.earliest = Some(self.earliest.map_or(deadline, |e| e.min(deadline)));
        (index, self.generation)
    }

    /// The entry of this registration, if the sweep has not taken it.
    fn get_mut(&mut self, index: usize, generation: u64) -> Option<&mut Entry> {
        self.slots
            .get_mut(index)
            .and_then(Option::as_mut)
            .filter(|e| e.generation == generation)
    }

    fn remove(&mut self, index: usize, generation: u64) {
        if self.get_mut(index, generation).is_some() {
            self.slots[index] = None;
            self.free.push(index);
            if self.free.len() == self.slots.len() {
                self.slots.clear();
                self.free.clear();
                self.earliest = None;
            }
        }
    }

    /// Takes the wakers of every entry due at `now`.
    fn expire(&mut self, now: Instant, due: &mut Vec<Waker>) {
        if self.earliest.is_none_or(|e| e > now) {
            return;
        }
        let mut earliest = None::<Instant>;
        for (index, slot) in self.slots.iter_mut().enumerate() {
            let Some(entry) = slot else { continue };
            if entry.deadline <= now {
                if let Some(entry) = slot.take() {
                    due.push(entry.waker);
                    self.free.push(index);
                }
            } else {
                earliest = Some(earliest.map_or(entry.deadline, |e| e.min(entry.deadline)));
            }
        }
        self.earliest = earliest;
    }
}

/// Wakes every ask whose deadline has passed (called by each node's heartbeat).
pub(crate) fn sweep() {
    let now = Instant::now();
    let mut due = Vec::new();
    for shard in &TABLE {
        shard.lock().expire(now, &mut due);
    }
    for waker in due {
        waker.wake();
    }
}

/// Runs `work` until it finishes or `timeout` passes, then fails with [`Error::Timeout`].
pub(crate) async fn within<T>(
    timeout: Duration,
    work: impl Future<Output = Result<T>>,
) -> Result<T> {
    if timeout < COARSE_FROM {
        return tokio::time::timeout(timeout, work)
            .await
            .unwrap_or(Err(Error::Timeout(timeout)));
    }
    let Some(deadline) = Instant::now().checked_add(timeout) else {
        // Too far away to represent: no deadline can be reached.
        return work.await;
    };
    let mut work = pin!(work);
    let mut registration = Registration::default();
    std::future::poll_fn(|cx| {
        if let Poll::Ready(done) = work.as_mut().poll(cx) {
            return Poll::Ready(done);
        }
        if registration.wait(deadline, cx.waker()) {
            Poll::Pending
        } else {
            Poll::Ready(Err(Error::Timeout(timeout)))
        }
    })
    .await
}

/// One ask's place in the table; removed when the ask ends, however it ends.
#[derive(Default)]
struct Registration {
    place: Option<(usize, usize, u64)>,
}

impl Registration {
    /// Keeps the ask registered with `waker`; `false` once `deadline` has passed.
    fn wait(&mut self, deadline: Instant, waker: &Waker) -> bool {
        if let Some((shard, index, generation)) = self.place {
            let mut table = TABLE[shard].lock();
            if let Some(entry) = table.get_mut(index, generation) {
                if !entry.waker.will_wake(waker) {
                    entry.waker = waker.clone();
                }
                return true;
            }
            // The sweep took the entry: the deadline has passed by the sweeper's clock.
            drop(table);
            self.place = None;
            if Instant::now() >= deadline {
                return false;
            }
        }
        let shard = MY_SHARD.with(|s| *s);
        let (index, generation) = TABLE[shard].lock().insert(deadline, waker.clone());
        self.place = Some((shard, index, generation));
        true
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Some((shard, index, generation)) = self.place.take() {
            TABLE[shard].lock().remove(index, generation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registered(registration: &Registration) -> bool {
        registration
            .place
            .is_some_and(|(shard, index, generation)| {
                TABLE[shard].lock().get_mut(index, generation).is_some()
            })
    }

    #[tokio::test(start_paused = true)]
    async fn a_swept_ask_times_out_and_an_ended_one_leaves_no_entry() {
        let timeout = Duration::from_secs(2);
        let waiting = tokio::spawn(within(timeout, std::future::pending::<Result<()>>()));
        tokio::task::yield_now().await;
        // A sweep before the deadline wakes nobody.
        sweep();
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        tokio::time::advance(Duration::from_millis(2_001)).await;
        sweep();
        let result = waiting.await.expect("joined");
        assert!(matches!(result, Err(Error::Timeout(t)) if t == timeout));

        let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
        let answered = tokio::spawn(within(timeout, async move {
            rx.await.map_err(|_| Error::NoReply)
        }));
        tokio::task::yield_now().await;
        tx.send(7).expect("receiver waits");
        assert_eq!(answered.await.expect("joined").expect("answered"), 7);
    }

    #[tokio::test(start_paused = true)]
    async fn a_registration_is_removed_when_dropped_and_taken_by_a_due_sweep() {
        let waker = Waker::noop();
        let mut registration = Registration::default();
        let deadline = Instant::now() + Duration::from_secs(3);
        assert!(registration.wait(deadline, waker));
        assert!(registered(&registration));
        let place = registration.place;
        drop(registration);
        let (shard, index, generation) = place.expect("was registered");
        assert!(TABLE[shard].lock().get_mut(index, generation).is_none());

        let mut registration = Registration::default();
        assert!(registration.wait(deadline, waker));
        tokio::time::advance(Duration::from_secs(3)).await;
        sweep();
        assert!(!registered(&registration));
        // Its own clock agrees the deadline has passed.
        assert!(!registration.wait(deadline, waker));
    }
}
