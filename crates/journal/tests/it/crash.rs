//! Real crash tests: the durable bank in `journal-crash-child` is paused at a named point,
//! killed with SIGKILL (`Child::kill`), restarted on the same database, and compared with a
//! fault-free run.

#![cfg(any(feature = "sqlite", feature = "postgres"))]

use std::collections::BTreeSet;

use crate::child::{effects, run_child, Reply, OPS};

/// `fresh()` returns a backend spec on empty storage plus a guard that cleans it up.
fn crash_case<G>(fresh: impl Fn() -> (String, G), pause: &str, paused_op: u64) {
    crash_case_with(fresh, pause, paused_op, Reply::Returned)
}

/// [`crash_case`] with the bank answering as `reply` says.
fn crash_case_with<G>(fresh: impl Fn() -> (String, G), pause: &str, paused_op: u64, reply: Reply) {
    let dir = tempfile::tempdir().unwrap();
    let (ref_backend, _g1) = fresh();
    let ref_effects = dir.path().join("ref-effects");
    let reference = run_child(&ref_backend, &ref_effects, None, reply, &[]);
    assert_eq!(reference.acks.len() as u64, OPS);
    let (ref_counts, _) = effects(&ref_effects);
    assert!(ref_counts.values().all(|&c| c == 1));

    let (backend, _g2) = fresh();
    let fx = dir.path().join("effects");
    let crashed = run_child(&backend, &fx, Some(pause), reply, &[]);
    let point = pause.split(':').next().unwrap_or_default();
    assert_eq!(
        crashed.paused.as_deref(),
        Some(point),
        "child must reach {pause}"
    );
    assert!(
        !crashed.acks.contains_key(&format!("op-{paused_op}")),
        "op {paused_op} was not acknowledged before the kill"
    );
    assert_eq!(crashed.acks.len() as u64, paused_op - 1);

    let restarted = run_child(&backend, &fx, None, reply, &[]);
    // the state equals a fault-free run
    assert_eq!(
        restarted.state, reference.state,
        "state after crash+restart differs"
    );
    // nothing acknowledged is lost, and duplicates get the first reply
    for (key, reply) in &crashed.acks {
        assert_eq!(
            restarted.acks.get(key),
            Some(reply),
            "acknowledged {key} changed or lost"
        );
    }
    assert_eq!(
        restarted.acks, reference.acks,
        "replies equal the fault-free run"
    );

    let (counts, ops) = effects(&fx);
    let keys: BTreeSet<_> = counts.keys().cloned().collect();
    let ref_keys: BTreeSet<_> = ref_counts.keys().cloned().collect();
    assert_eq!(
        keys, ref_keys,
        "same deterministic idempotency keys as the fault-free run"
    );
    for (key, n) in &counts {
        let op = ops[key];
        if point == "after_effect_before_journal" && op == paused_op {
            assert_eq!(
                *n, 2,
                "the effect cut off before its journal write re-runs with the same key {key}"
            );
        } else {
            assert_eq!(
                *n, 1,
                "effect {key} of op {op} ran {n} times (journaled effects never re-run)"
            );
        }
    }
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::{crash_case, crash_case_with, Reply};

    fn fresh() -> (String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let spec = format!("sqlite:{}", dir.path().join("bank.db").display());
        (spec, dir)
    }

    #[test]
    fn kill_mid_handler() {
        crash_case(fresh, "mid_handler:6", 6);
    }

    #[test]
    fn kill_after_effect_before_journal() {
        crash_case(fresh, "after_effect_before_journal:7", 7);
    }

    #[test]
    fn kill_after_journal_before_reply() {
        crash_case(fresh, "after_commit_before_reply:5", 5);
    }

    #[test]
    fn kill_mid_checkpoint() {
        // the second checkpoint follows op 8's commit, before its reply is released
        crash_case(fresh, "mid_checkpoint:2", 8);
    }

    /// A reply sent through `ctx.reply_handle()` is held until the message is journaled:
    /// killed right after the handler sent it, op 5 was never acknowledged, and the
    /// duplicates of ops 1 to 4 get their recorded replies (not empty ones).
    #[test]
    fn kill_after_a_reply_through_the_handle() {
        crash_case_with(fresh, "after_handle_reply:5", 5, Reply::Handle);
    }

    #[test]
    fn kill_mid_handler_replying_through_the_handle() {
        crash_case_with(fresh, "mid_handler:6", 6, Reply::Handle);
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::{crash_case, crash_case_with, Reply};
    use crate::support::PgSchema;

    fn fresh() -> (String, PgSchema) {
        let schema = PgSchema::new("crash");
        (format!("postgres:{}", schema.name), schema)
    }

    #[test]
    fn kill_mid_handler() {
        crash_case(fresh, "mid_handler:6", 6);
    }

    #[test]
    fn kill_after_effect_before_journal() {
        crash_case(fresh, "after_effect_before_journal:7", 7);
    }

    #[test]
    fn kill_after_journal_before_reply() {
        crash_case(fresh, "after_commit_before_reply:5", 5);
    }

    #[test]
    fn kill_mid_checkpoint() {
        crash_case(fresh, "mid_checkpoint:2", 8);
    }

    #[test]
    fn kill_after_a_reply_through_the_handle() {
        crash_case_with(fresh, "after_handle_reply:5", 5, Reply::Handle);
    }
}
