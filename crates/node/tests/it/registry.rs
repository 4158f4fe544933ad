//! The activation registry on its own (no listeners): the live count under failed
//! re-activation, reads of a busy slot, and deactivation waiting for in-flight requests.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use plexspaces_core::{Actor, BoxError, Context, Node};
use plexspaces_node::{ActivationKey, ActorType, Registry, RegistryOptions};

/// Refuses to start when its start number (counted in `starts`) is in `fail_starts`; its
/// one message fails (the actor dies) when it is `true`.
struct Flaky {
    starts: Arc<AtomicUsize>,
    fail_starts: std::ops::Range<usize>,
}

impl Actor for Flaky {
    type Msg = bool;
    type Reply = ();

    async fn on_start(&mut self, _ctx: &mut Context<Self>) -> Result<(), BoxError> {
        let n = self.starts.fetch_add(1, Ordering::SeqCst);
        if self.fail_starts.contains(&n) {
            return Err("refusing to start".into());
        }
        Ok(())
    }

    async fn handle_call(
        &mut self,
        die: bool,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<()>, BoxError> {
        if die {
            return Err("asked to die".into());
        }
        Ok(Some(()))
    }
}

async fn registry(max_activations: usize, fail_starts: std::ops::Range<usize>) -> Registry {
    let node = Node::builder("registry-test").build().await.expect("node");
    let registry = Registry::new(
        node,
        RegistryOptions {
            max_activations,
            idle_timeout: Duration::from_secs(3600),
            ..RegistryOptions::default()
        },
    );
    let starts = Arc::new(AtomicUsize::new(0));
    registry.register(ActorType::virtual_actor("flaky", move |_| Flaky {
        starts: starts.clone(),
        fail_starts: fail_starts.clone(),
    }));
    registry
}

fn key(k: &str) -> ActivationKey {
    ActivationKey::new("t", "ns", "flaky", k)
}

async fn kill(registry: &Registry, key: &ActivationKey) {
    let lease = registry.lease(key).await.expect("lease");
    let pid = lease.pid().clone();
    let actor = pid.typed::<Flaky>().expect("a local Flaky");
    assert!(actor.ask(true).await.is_err(), "the handler fails");
    drop(lease);
    let _ = pid.wait().await;
}

#[tokio::test]
async fn a_failed_reactivation_releases_the_dead_activation_once() {
    // Start 0 succeeds; starts 1 and 2 (the re-activations after the death) fail.
    let registry = registry(1, 1..3).await;
    let a = key("a");
    kill(&registry, &a).await;
    assert_eq!(
        registry.live_count(),
        1,
        "the dead activation is still counted"
    );

    let first = registry.lease(&a).await.err().expect("re-activation fails");
    assert_ne!(first.kind(), "overloaded", "{first}");
    assert_eq!(registry.live_count(), 0);
    assert!(registry.get(&a).is_none());

    // Neither another failed attempt nor a sweep takes the count below zero (it used to
    // wrap around, and max_activations stopped holding).
    assert!(registry.lease(&a).await.is_err());
    registry.sweep().await;
    assert_eq!(registry.live_count(), 0);

    // The limit still holds: one activation fits, a second is refused.
    let lease = registry.lease(&a).await.expect("third start succeeds");
    assert_eq!(registry.live_count(), 1);
    let refused = registry.lease(&key("b")).await.err().expect("limit 1");
    assert_eq!(refused.kind(), "overloaded");
    drop(lease);
    assert!(registry.deactivate(&a).await);
    assert_eq!(registry.live_count(), 0);
}

#[tokio::test]
async fn a_busy_slot_still_reads_as_active_and_deactivation_waits_for_the_lease() {
    let registry = registry(10, 0..0).await;
    let a = key("a");
    let lease = registry.lease(&a).await.expect("lease");

    // The deactivation takes the slot's lock and waits for the in-flight lease.
    let deactivation = tokio::spawn({
        let registry = registry.clone();
        let a = a.clone();
        async move { registry.deactivate(&a).await }
    });
    for _ in 0..10 {
        tokio::task::yield_now().await;
        assert!(
            !deactivation.is_finished(),
            "deactivation waits for the lease"
        );
        assert!(
            registry.get(&a).is_some(),
            "a live actor must not read as absent while its slot is busy"
        );
        assert_eq!(registry.activations(Some("t")).len(), 1);
    }

    drop(lease);
    // Dropping the lease wakes the deactivation (no polling).
    assert!(deactivation.await.expect("task"));
    assert!(registry.get(&a).is_none());
    assert_eq!(registry.live_count(), 0);
}

#[tokio::test]
async fn a_scoped_type_takes_precedence_in_its_tenant_and_namespace_only() {
    use plexspaces_node::builtin::Echo;
    let reg = registry(10, 0..0).await;
    let echo = std::any::type_name::<Echo>();
    reg.register_scoped("acme", "apps", ActorType::virtual_actor("flaky", |_| Echo));
    assert_eq!(
        reg.type_in("acme", "apps", "flaky").unwrap().rust_type(),
        echo
    );
    assert_ne!(
        reg.type_in("acme", "default", "flaky").unwrap().rust_type(),
        echo
    );
    assert_ne!(
        reg.type_in("globex", "apps", "flaky").unwrap().rust_type(),
        echo
    );

    reg.register_scoped(
        "acme",
        "apps",
        ActorType::virtual_actor("only-here", |_| Echo),
    );
    let k = reg.resolve("acme", "apps", "only-here", "k").unwrap();
    assert_eq!(
        reg.resolve("globex", "apps", "only-here", "k")
            .unwrap_err()
            .kind(),
        "unknown_actor_type"
    );
    drop(reg.lease(&k).await.unwrap());
    assert!(reg.get(&k).is_some());
    assert_eq!(reg.deactivate_type("acme", "apps", "only-here").await, 1);
    assert!(reg.get(&k).is_none());
    assert!(reg.unregister_scoped("acme", "apps", "only-here"));
    assert!(!reg.unregister_scoped("acme", "apps", "only-here"));
    assert_eq!(
        reg.type_in("acme", "apps", "only-here").unwrap_err().kind(),
        "unknown_actor_type"
    );
    // The node-wide type is back where the scoped one is removed.
    assert!(reg.unregister_scoped("acme", "apps", "flaky"));
    assert_ne!(
        reg.type_in("acme", "apps", "flaky").unwrap().rust_type(),
        echo
    );
}
