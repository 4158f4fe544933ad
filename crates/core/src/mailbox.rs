//! The actor mailbox: user mail (bounded or unbounded) and a queue of system signals that
//! always goes first, behind one lock.
//!
//! Why not a channel crate: an actor waits for two kinds of message at once, and a channel
//! per kind means a select over two channels on every idle wait (which allocates in the
//! channels we tried) plus two allocations per actor. Here a wait stores one waker, a send
//! to a waiting actor wakes it, and an empty mailbox allocates nothing, so an idle actor
//! costs only this struct.
//!
//! The oldest queued message sits inline in the struct ([`Queue`]); a buffer is allocated
//! only when a second message waits behind it, and freed when the actor drains it and goes
//! idle. An actor that gets one message at a time (an ask, a ping-pong hop) never
//! allocates, and an idle actor holds no buffer whatever it received before (the buffer
//! was 128 B per actor for good after its first message: issue 17's memory row).

use std::collections::VecDeque;
use std::future::poll_fn;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Poll, Waker};

use parking_lot::Mutex;

use crate::pid::Signal;
use crate::runtime::MailboxConfig;

/// A message that could not be queued, handed back.
pub(crate) enum Refused<M> {
    /// Bounded and full.
    Full(M),
    /// The actor has terminated.
    Closed(M),
}

/// What the actor takes next.
pub(crate) enum Received<M> {
    /// Boxed: signals are rare and large; this keeps every actor's loop state small.
    Signal(Box<Signal>),
    Mail(M),
}

pub(crate) struct Mailbox<M> {
    capacity: usize,
    /// Set while signals are queued, so the actor can notice them between the messages of a
    /// batch without taking the lock.
    signals_pending: AtomicBool,
    inner: Mutex<Inner<M>>,
}

struct Inner<M> {
    mail: Queue<M>,
    closed: bool,
    /// The actor, when it waits for something to arrive.
    receiver: Option<Waker>,
    /// Signals and blocked senders: rare, so allocated on first use and freed when the
    /// actor goes idle without either.
    rare: Option<Box<Rare>>,
}

#[derive(Default)]
struct Rare {
    signals: VecDeque<Signal>,
    /// Senders waiting for space in a full bounded mailbox.
    senders: Vec<Waker>,
}

impl<M> Mailbox<M> {
    pub(crate) fn new(config: MailboxConfig) -> Self {
        let capacity = match config {
            MailboxConfig::Bounded(capacity) => capacity.max(1),
            MailboxConfig::Unbounded => usize::MAX,
        };
        Mailbox {
            capacity,
            signals_pending: AtomicBool::new(false),
            inner: Mutex::new(Inner {
                mail: Queue::new(),
                closed: false,
                receiver: None,
                rare: None,
            }),
        }
    }

    /// Queues `msg` if there is room.
    pub(crate) fn try_send(&self, msg: M) -> Result<(), Refused<M>> {
        let mut inner = self.inner.lock();
        if inner.closed {
            return Err(Refused::Closed(msg));
        }
        if inner.mail.len() >= self.capacity {
            return Err(Refused::Full(msg));
        }
        inner.mail.push_back(msg);
        let receiver = inner.receiver.take();
        drop(inner);
        if let Some(waker) = receiver {
            waker.wake();
        }
        Ok(())
    }

    /// Queues `msg`, waiting for room in a full bounded mailbox. Fails only if the actor
    /// has terminated, handing the message back.
    pub(crate) async fn send(&self, msg: M) -> Result<(), M> {
        let mut msg = Some(msg);
        poll_fn(|cx| {
            let mut inner = self.inner.lock();
            let Some(value) = msg.take() else {
                // Polled again after completing: nothing left to send.
                return Poll::Ready(Ok(()));
            };
            if inner.closed {
                return Poll::Ready(Err(value));
            }
            if inner.mail.len() >= self.capacity {
                msg = Some(value);
                let senders = &mut inner.rare().senders;
                if !senders.iter().any(|w| w.will_wake(cx.waker())) {
                    senders.push(cx.waker().clone());
                }
                return Poll::Pending;
            }
            inner.mail.push_back(value);
            let receiver = inner.receiver.take();
            drop(inner);
            if let Some(waker) = receiver {
                waker.wake();
            }
            Poll::Ready(Ok(()))
        })
        .await
    }

    /// Queues a system signal ahead of all user mail. Dropped if the actor has terminated.
    pub(crate) fn signal(&self, signal: Signal) {
        let mut inner = self.inner.lock();
        if inner.closed {
            return;
        }
        inner.rare().signals.push_back(signal);
        self.signals_pending.store(true, Ordering::Release);
        let receiver = inner.receiver.take();
        drop(inner);
        if let Some(waker) = receiver {
            waker.wake();
        }
    }

    fn take(&self, inner: &mut Inner<M>) -> (Option<Received<M>>, Vec<Waker>) {
        if let Some(rare) = inner.rare.as_mut() {
            if let Some(signal) = rare.signals.pop_front() {
                if rare.signals.is_empty() {
                    self.signals_pending.store(false, Ordering::Release);
                }
                return (Some(Received::Signal(Box::new(signal))), Vec::new());
            }
        }
        let was_full = inner.mail.len() >= self.capacity;
        match inner.mail.pop_front() {
            Some(mail) => {
                let senders = if was_full {
                    inner.take_senders()
                } else {
                    Vec::new()
                };
                (Some(Received::Mail(mail)), senders)
            }
            None => (None, Vec::new()),
        }
    }

    /// The next signal, else the next mail, without waiting.
    #[cfg(test)]
    pub(crate) fn try_recv(&self) -> Option<Received<M>> {
        let (received, senders) = self.take(&mut self.inner.lock());
        for waker in senders {
            waker.wake();
        }
        received
    }

    /// Whether signals are waiting (cheap; no lock).
    pub(crate) fn signals_pending(&self) -> bool {
        self.signals_pending.load(Ordering::Acquire)
    }

    /// Waits for the next signal or mail (signals first); when it is mail, also moves up to
    /// `more` further messages into `batch` under the same lock, so a busy actor takes the
    /// lock once per batch instead of once per message. The caller handles `batch` before
    /// asking again.
    pub(crate) async fn recv_batch(&self, batch: &mut VecDeque<M>, more: usize) -> Received<M> {
        poll_fn(|cx| {
            let mut inner = self.inner.lock();
            let (received, mut senders) = self.take(&mut inner);
            let Some(received) = received else {
                // Going idle: empty buffers are not worth keeping (see the module doc).
                inner.release();
                if batch.capacity() > 0 {
                    *batch = VecDeque::new();
                }
                match &mut inner.receiver {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    slot => *slot = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            };
            if matches!(received, Received::Mail(_)) {
                let was_full = inner.mail.len() >= self.capacity;
                let n = inner.mail.drain_into(batch, more);
                if was_full && n > 0 && senders.is_empty() {
                    senders = inner.take_senders();
                }
            }
            drop(inner);
            for waker in senders {
                waker.wake();
            }
            Poll::Ready(received)
        })
        .await
    }

    /// Waits for the next signal or mail (signals first).
    pub(crate) async fn recv(&self) -> Received<M> {
        poll_fn(|cx| {
            let mut inner = self.inner.lock();
            let (received, senders) = self.take(&mut inner);
            match received {
                Some(received) => {
                    drop(inner);
                    for waker in senders {
                        waker.wake();
                    }
                    Poll::Ready(received)
                }
                None => {
                    inner.release();
                    match &mut inner.receiver {
                        Some(waker) if waker.will_wake(cx.waker()) => {}
                        slot => *slot = Some(cx.waker().clone()),
                    }
                    Poll::Pending
                }
            }
        })
        .await
    }

    /// Refuses all further mail and signals, wakes waiting senders (they get their message
    /// back) and returns the mail that was never handled.
    pub(crate) fn close(&self) -> VecDeque<M> {
        let mut inner = self.inner.lock();
        inner.closed = true;
        inner.receiver = None;
        let senders = inner.take_senders();
        inner.rare = None;
        let rest = std::mem::replace(&mut inner.mail, Queue::new()).into_deque();
        drop(inner);
        for waker in senders {
            waker.wake();
        }
        rest
    }

    /// Queued user mail.
    pub(crate) fn len(&self) -> usize {
        self.inner.lock().mail.len()
    }
}

impl<M> Inner<M> {
    fn rare(&mut self) -> &mut Rare {
        self.rare.get_or_insert_with(Box::default)
    }

    fn take_senders(&mut self) -> Vec<Waker> {
        self.rare
            .as_mut()
            .map(|rare| std::mem::take(&mut rare.senders))
            .unwrap_or_default()
    }

    /// Frees the buffers of an empty mailbox.
    fn release(&mut self) {
        self.mail.release();
        if self
            .rare
            .as_ref()
            .is_some_and(|rare| rare.signals.is_empty() && rare.senders.is_empty())
        {
            self.rare = None;
        }
    }
}

/// FIFO mail: the oldest message inline, the rest in a buffer allocated only while more
/// than one message waits. The buffer is boxed so an idle mailbox holds one pointer for it,
/// not a `VecDeque`'s four words.
struct Queue<M> {
    head: Option<M>,
    // The extra allocation is the point: one pointer in every idle mailbox instead of four
    // words, paid only while more than one message waits.
    #[allow(clippy::box_collection)]
    rest: Option<Box<VecDeque<M>>>,
}

impl<M> Queue<M> {
    const fn new() -> Self {
        Queue {
            head: None,
            rest: None,
        }
    }

    fn len(&self) -> usize {
        usize::from(self.head.is_some()) + self.rest.as_ref().map_or(0, |rest| rest.len())
    }

    fn push_back(&mut self, msg: M) {
        if self.head.is_none() {
            // `rest` is empty whenever `head` is: `pop_front` refills `head` from it.
            self.head = Some(msg);
        } else {
            self.rest.get_or_insert_with(Box::default).push_back(msg);
        }
    }

    fn pop_front(&mut self) -> Option<M> {
        let head = self.head.take()?;
        self.head = self.rest.as_mut().and_then(|rest| rest.pop_front());
        Some(head)
    }

    /// Moves up to `max` messages, oldest first, to the end of `into`; returns how many.
    fn drain_into(&mut self, into: &mut VecDeque<M>, max: usize) -> usize {
        if max == 0 {
            return 0;
        }
        let Some(head) = self.head.take() else {
            return 0;
        };
        into.push_back(head);
        let Some(rest) = self.rest.as_mut() else {
            return 1;
        };
        let n = (max - 1).min(rest.len());
        into.extend(rest.drain(..n));
        self.head = rest.pop_front();
        n + 1
    }

    /// Frees the buffer if it is empty.
    fn release(&mut self) {
        if self.rest.as_ref().is_some_and(|rest| rest.is_empty()) {
            self.rest = None;
        }
    }

    /// Capacity of the buffer behind the head (0 when none is allocated).
    #[cfg(test)]
    fn buffered_capacity(&self) -> usize {
        self.rest.as_ref().map_or(0, |rest| rest.capacity())
    }

    fn into_deque(self) -> VecDeque<M> {
        let mut all = self.rest.map(|rest| *rest).unwrap_or_default();
        if let Some(head) = self.head {
            all.push_front(head);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::error::ExitReason;

    fn mail(r: Option<Received<u32>>) -> Option<u32> {
        match r {
            Some(Received::Mail(m)) => Some(m),
            _ => None,
        }
    }

    #[test]
    fn signals_go_before_mail_and_a_full_box_refuses() {
        let mb = Mailbox::new(MailboxConfig::Bounded(2));
        assert!(mb.try_send(1).is_ok());
        assert!(mb.try_send(2).is_ok());
        assert!(matches!(mb.try_send(3), Err(Refused::Full(3))));
        mb.signal(Signal::Stop(ExitReason::Normal));
        assert!(matches!(
            mb.try_recv(),
            Some(Received::Signal(signal)) if matches!(*signal, Signal::Stop(_))
        ));
        assert_eq!(mail(mb.try_recv()), Some(1));
        assert_eq!(mb.len(), 1);
        let rest = mb.close();
        assert_eq!(rest.into_iter().collect::<Vec<_>>(), vec![2]);
        assert!(matches!(mb.try_send(4), Err(Refused::Closed(4))));
    }

    #[tokio::test]
    async fn mail_keeps_its_order_across_the_inline_slot_and_an_idle_box_holds_no_buffer() {
        let mb = Mailbox::new(MailboxConfig::Unbounded);
        for n in 0..40u32 {
            mb.try_send(n).map_err(|_| "open").expect("unbounded");
        }
        assert_eq!(mb.len(), 40);
        let mut batch = VecDeque::new();
        let mut seen = Vec::new();
        while seen.len() < 40 {
            match mb.recv_batch(&mut batch, 7).await {
                Received::Mail(first) => seen.push(first),
                Received::Signal(_) => panic!("no signal was sent"),
            }
            seen.extend(batch.drain(..));
            // Mail sent between batches goes behind what is queued.
            if seen.len() == 8 {
                mb.try_send(40).map_err(|_| "open").expect("unbounded");
            }
        }
        assert!(matches!(mb.try_recv(), Some(Received::Mail(40))));
        seen.push(40);
        assert_eq!(seen, (0..=40).collect::<Vec<_>>());
        assert!(mb.inner.lock().mail.buffered_capacity() > 0);
        // Going idle frees the buffers of the box and of the batch.
        let waiting = futures::FutureExt::now_or_never(mb.recv_batch(&mut batch, 7));
        assert!(waiting.is_none());
        assert_eq!(mb.inner.lock().mail.buffered_capacity(), 0);
        assert_eq!(batch.capacity(), 0);
        // One message at a time never allocates a buffer.
        mb.try_send(41).map_err(|_| "open").expect("unbounded");
        assert!(matches!(
            mb.recv_batch(&mut batch, 7).await,
            Received::Mail(41)
        ));
        assert_eq!(mb.inner.lock().mail.buffered_capacity(), 0);
        assert_eq!(batch.capacity(), 0);
    }

    #[tokio::test]
    async fn a_waiting_sender_gets_room_and_a_closed_box_hands_the_message_back() {
        let mb = Arc::new(Mailbox::new(MailboxConfig::Bounded(1)));
        mb.try_send(1).map_err(|_| "room").expect("first fits");
        let waiting = {
            let mb = mb.clone();
            tokio::spawn(async move { mb.send(2).await })
        };
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        assert_eq!(mail(mb.try_recv()), Some(1));
        assert_eq!(waiting.await.expect("joined"), Ok(()));
        assert!(matches!(mb.recv().await, Received::Mail(2)));

        mb.try_send(3).map_err(|_| "room").expect("fits");
        let blocked = {
            let mb = mb.clone();
            tokio::spawn(async move { mb.send(4).await })
        };
        tokio::task::yield_now().await;
        mb.close();
        assert_eq!(blocked.await.expect("joined"), Err(4));
    }

    #[tokio::test]
    async fn a_waiting_receiver_is_woken_by_mail_or_signal() {
        let mb = Arc::new(Mailbox::<u32>::new(MailboxConfig::Unbounded));
        let receiver = {
            let mb = mb.clone();
            tokio::spawn(async move {
                let first = matches!(mb.recv().await, Received::Mail(7));
                let second = matches!(mb.recv().await, Received::Signal(_));
                first && second
            })
        };
        tokio::task::yield_now().await;
        mb.send(7).await.expect("open");
        tokio::task::yield_now().await;
        mb.signal(Signal::Stop(ExitReason::Shutdown));
        assert!(receiver.await.expect("joined"));
    }
}
