use std::sync::Arc;

use plexspaces_journal::event_sourcing::{self, persist_and_apply, EventSourced};
use plexspaces_journal::{
    CheckpointPolicy, DurableExecution, DurableOptions, Error, Journal, MemoryJournal, StreamId,
};

use crate::support::unique_name;

#[derive(Debug, Default, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Ledger {
    balance: i64,
    entries: Vec<i64>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
enum LedgerEvent {
    Deposited(i64),
    Withdrew(i64),
}

impl EventSourced for Ledger {
    type Event = LedgerEvent;
    fn apply(&mut self, e: &LedgerEvent) {
        match e {
            LedgerEvent::Deposited(n) => {
                self.balance += n;
                self.entries.push(*n);
            }
            LedgerEvent::Withdrew(n) => {
                self.balance -= n;
                self.entries.push(-n);
            }
        }
    }
}

async fn run(exec: &mut DurableExecution, state: &mut Ledger, amount: i64) -> u64 {
    exec.begin_message(amount.to_string().as_bytes(), None)
        .await
        .unwrap();
    let ev = if amount >= 0 {
        LedgerEvent::Deposited(amount)
    } else {
        LedgerEvent::Withdrew(-amount)
    };
    persist_and_apply(exec, state, ev).unwrap();
    exec.commit(state.balance.to_string().into_bytes())
        .await
        .unwrap();
    exec.next_seq() - 1
}

#[tokio::test]
async fn state_at_any_past_seq_is_rebuilt() {
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let s = StreamId::new("t", "ledger", &unique_name("l"));
    let opts = DurableOptions {
        checkpoint: CheckpointPolicy {
            every_messages: None,
            every: None,
            truncate: false,
        },
        ..DurableOptions::default()
    };
    let mut exec = DurableExecution::activate(journal.clone(), s.clone(), opts.clone())
        .await
        .unwrap();
    let mut state = Ledger::default();
    let mut history = vec![(0u64, state.clone())];
    for amount in [10, 20, -5, 7, -12] {
        let seq = run(&mut exec, &mut state, amount).await;
        history.push((seq, state.clone()));
    }
    // a checkpoint without truncation keeps the whole history
    event_sourcing::checkpoint_state(&mut exec, &state)
        .await
        .unwrap();
    for (seq, expected) in &history {
        let at: Ledger = event_sourcing::state_at(journal.as_ref(), &s, *seq)
            .await
            .unwrap();
        assert_eq!(&at, expected, "state at seq {seq}");
        // mid-message seqs give the state before that message
        if *seq > 0 {
            let before: Ledger = event_sourcing::state_at(journal.as_ref(), &s, seq - 1)
                .await
                .unwrap();
            let idx = history.iter().position(|(q, _)| q == seq).unwrap();
            assert_eq!(before, history[idx - 1].1);
        }
    }
    let evs: Vec<(u64, LedgerEvent)> = event_sourcing::events(journal.as_ref(), &s, 0, u64::MAX)
        .await
        .unwrap();
    assert_eq!(evs.len(), 5);

    // replay after restart folds the same events
    let mut exec = DurableExecution::activate(journal.clone(), s.clone(), opts)
        .await
        .unwrap();
    let mut rebuilt: Ledger = event_sourcing::restore_state(&exec).unwrap();
    assert_eq!(rebuilt, state, "restored from the snapshot");
    assert!(exec.next_replay().unwrap().is_none());
    let seq = run(&mut exec, &mut rebuilt, 1).await;
    assert_eq!(rebuilt.balance, 21);
    let at: Ledger = event_sourcing::state_at(journal.as_ref(), &s, seq)
        .await
        .unwrap();
    assert_eq!(at, rebuilt);
}

#[tokio::test]
async fn time_travel_before_a_truncated_snapshot_is_refused() {
    let journal: Arc<dyn Journal> = Arc::new(MemoryJournal::new());
    let s = StreamId::new("t", "ledger", &unique_name("l"));
    let mut exec =
        DurableExecution::activate(journal.clone(), s.clone(), DurableOptions::default())
            .await
            .unwrap();
    let mut state = Ledger::default();
    let s1 = run(&mut exec, &mut state, 10).await;
    let s2 = run(&mut exec, &mut state, 5).await;
    event_sourcing::checkpoint_state(&mut exec, &state)
        .await
        .unwrap();
    let s3 = run(&mut exec, &mut state, 1).await;
    assert_eq!(
        journal.history_len(&s).await.unwrap(),
        3,
        "entries up to the snapshot truncated"
    );
    match event_sourcing::state_at::<Ledger>(journal.as_ref(), &s, s1).await {
        Err(Error::HistoryTruncated {
            seq,
            first_available,
        }) => {
            assert_eq!(seq, s1);
            assert_eq!(first_available, s2 + 1);
        }
        other => panic!("expected HistoryTruncated, got {other:?}"),
    }
    let at2: Ledger = event_sourcing::state_at(journal.as_ref(), &s, s2)
        .await
        .unwrap();
    assert_eq!(at2.balance, 15);
    let at3: Ledger = event_sourcing::state_at(journal.as_ref(), &s, s3)
        .await
        .unwrap();
    assert_eq!(at3, state);
}
