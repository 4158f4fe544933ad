//! Order processing as a durable workflow.
//!
//! Payment, inventory and shipping are actors under a `one_for_one` supervisor; each order
//! has a GenFSM actor for its state; the `order` workflow charges, reserves and ships by
//! asking them, and a saga undoes the earlier steps when a later one fails.
//!
//! Two orders run at once. `order-1` ships to Berlin; payment answers its first charge
//! late, so the workflow's first attempt times out and the retry, with the same
//! idempotency key, must not charge twice. `order-2` goes to Atlantis, which no carrier
//! serves: shipping fails for good, the saga releases the goods and then refunds the money,
//! and the order's state machine ends in `refunded`.
//!
//! The program then asks the actors for their state and checks every outcome. It ends with
//! `order processing: OK`, or prints what differed and exits with status 1.

mod order;
mod services;
mod workflow;

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use plexspaces_core::{
    Actor, ActorId, ActorRef, Application, ChildSpec, Node, Strategy, Supervisor, SupervisorSpec,
};
use plexspaces_journal::MemoryJournal;
use plexspaces_workflow::{
    EngineOptions, HistoryEvent, MemoryWorkflowStore, WorkflowEngine, WorkflowError, WorkflowKey,
};

use crate::order::{OrderActor, OrderEvent, OrderState};
use crate::services::{
    GetLedger, GetShipments, GetStock, Inventory, InventoryReply, InventorySnapshot, LogEntry,
    Payment, PaymentLedger, PaymentOptions, PaymentReply, Shipping, ShippingReply,
    ShippingSnapshot,
};
use crate::workflow::{
    Order, OrderWorkflow, Services, Shipped, INVENTORY, PAYMENT, SHIPPING, STATE_QUERY,
    WORKFLOW_TYPE,
};

/// How long to wait for a workflow's result before calling it a failure.
const RESULT_TIMEOUT: Duration = Duration::from_secs(30);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let node = Node::builder("shop").build().await?;
    let supervisor = node
        .start_application(Application::new("orders", services_spec()))
        .await?
        .typed::<Supervisor>()
        .context("the orders application's top actor is a supervisor")?;
    let services = Services::new(node.clone(), supervisor);

    let engine = WorkflowEngine::new(
        Some(node.clone()),
        Arc::new(MemoryJournal::new()),
        Arc::new(MemoryWorkflowStore::new()),
        EngineOptions::default(),
    );
    engine.register(OrderWorkflow::new(services));

    let berlin = Order {
        order_id: "order-1".into(),
        customer: "alice".into(),
        sku: "widget".into(),
        quantity: 2,
        amount: 2_500,
        destination: "Berlin".into(),
    };
    let atlantis = Order {
        order_id: "order-2".into(),
        customer: "bob".into(),
        sku: "gadget".into(),
        quantity: 1,
        amount: 1_200,
        destination: "Atlantis".into(),
    };

    let before = State::read(&node).await?;
    let (k1, k2) = (key(&berlin), key(&atlantis));
    engine.start(&k1, WORKFLOW_TYPE, &berlin).await?;
    engine.start(&k2, WORKFLOW_TYPE, &atlantis).await?;
    let shipped = engine.result::<Shipped>(&k1, Some(RESULT_TIMEOUT)).await;
    let failed = engine.result::<Shipped>(&k2, Some(RESULT_TIMEOUT)).await;
    let after = State::read(&node).await?;

    let mut check = Checks::default();

    // ---- order-1: shipped, charged once although the charge was attempted twice ----
    let (tracking, outcome) = match &shipped {
        Ok(s) => (
            s.tracking.as_str(),
            format!("shipped, tracking {}", s.tracking),
        ),
        Err(e) => {
            check.fail(format!("order-1 should ship, but: {e}"));
            ("", format!("failed: {e}"))
        }
    };
    println!(
        "order-1: {} x {} to {} for {}: {outcome}",
        berlin.quantity,
        berlin.sku,
        berlin.destination,
        money(berlin.amount)
    );
    let charge_attempts = attempts(&engine, &k1, "charge_payment").await?;
    let order1_charges = after.payment.charges_of("order-1");
    println!(
        "  payment: {} charge(s) in {charge_attempts} attempt(s) (the first answer came late); {} {} -> {}",
        order1_charges.len(),
        berlin.customer,
        money(before.payment.balance(&berlin.customer)),
        money(after.payment.balance(&berlin.customer)),
    );
    check.eq("order-1 charges", order1_charges.len(), 1);
    check.that(
        "order-1 charge was retried",
        charge_attempts >= 2,
        format!("{charge_attempts} attempt(s)"),
    );
    check.eq(
        "alice's balance",
        after.payment.balance(&berlin.customer),
        before.payment.balance(&berlin.customer) - berlin.amount,
    );
    println!(
        "  inventory: {} {} -> {}",
        berlin.sku,
        before.inventory.stock(&berlin.sku),
        after.inventory.stock(&berlin.sku)
    );
    check.eq(
        "widget stock",
        after.inventory.stock(&berlin.sku),
        before.inventory.stock(&berlin.sku) - berlin.quantity,
    );
    check.eq(
        "order-1 reservations (released?)",
        after.inventory.released_of("order-1"),
        vec![false],
    );
    let shipments: Vec<_> = after
        .shipping
        .shipments
        .iter()
        .filter(|s| s.order_id == "order-1")
        .map(|s| (s.destination.as_str(), s.tracking.as_str()))
        .collect();
    check.eq(
        "order-1 shipments",
        shipments,
        vec![(berlin.destination.as_str(), tracking)],
    );
    let state1 = actor::<OrderActor>(&node, "order-1")?.state().await?;
    let query1: OrderState = serde_json::from_value(engine.query(&k1, STATE_QUERY).await?)?;
    println!("  order state machine: {state1}; query `{STATE_QUERY}`: {query1}");
    check.eq("order-1 state", state1, OrderState::Shipped);
    check.eq("order-1 query", query1, OrderState::Shipped);

    // ---- order-2: shipping refused, release then refund, each once ----
    let outcome = match &failed {
        Err(WorkflowError::Failed { failure, .. }) => {
            check.that(
                "order-2 failure",
                failure.message.contains("Undeliverable"),
                failure.to_string(),
            );
            format!("failed: {}", failure.message)
        }
        other => {
            check.fail(format!("order-2 should fail to ship, but: {other:?}"));
            format!("{other:?}")
        }
    };
    println!(
        "order-2: {} x {} to {} for {}: {outcome}",
        atlantis.quantity,
        atlantis.sku,
        atlantis.destination,
        money(atlantis.amount),
    );
    let ship_attempts = attempts(&engine, &k2, "ship_order").await?;
    check.eq("order-2 ship attempts (non-retryable)", ship_attempts, 1);
    let mut compensations: Vec<&LogEntry> = after
        .inventory
        .log
        .iter()
        .chain(&after.payment.log)
        .filter(|e| e.order_id == "order-2" && matches!(e.op, "release" | "refund"))
        .collect();
    compensations.sort_by_key(|e| e.at);
    let compensations: Vec<&str> = compensations.iter().map(|e| e.op).collect();
    println!(
        "  compensations, as the services logged them: {}",
        if compensations.is_empty() {
            "none".to_owned()
        } else {
            compensations.join(", then ")
        }
    );
    check.eq(
        "order-2 compensations",
        compensations,
        vec!["release", "refund"],
    );
    check.eq(
        "order-2 payment log",
        after.payment.ops_of("order-2"),
        vec!["charge", "refund"],
    );
    check.eq(
        "order-2 inventory log",
        after.inventory.ops_of("order-2"),
        vec!["reserve", "release"],
    );
    check.eq(
        "order-2 shipping log",
        after.shipping.ops_of("order-2"),
        vec!["reject"],
    );
    println!(
        "  payment: {} {} -> {}; inventory: {} {} -> {}",
        atlantis.customer,
        money(before.payment.balance(&atlantis.customer)),
        money(after.payment.balance(&atlantis.customer)),
        atlantis.sku,
        before.inventory.stock(&atlantis.sku),
        after.inventory.stock(&atlantis.sku),
    );
    check.eq(
        "bob's balance",
        after.payment.balance(&atlantis.customer),
        before.payment.balance(&atlantis.customer),
    );
    check.eq(
        "gadget stock",
        after.inventory.stock(&atlantis.sku),
        before.inventory.stock(&atlantis.sku),
    );
    check.eq(
        "order-2 reservations (released?)",
        after.inventory.released_of("order-2"),
        vec![true],
    );
    let state2 = actor::<OrderActor>(&node, "order-2")?.state().await?;
    let query2: OrderState = serde_json::from_value(engine.query(&k2, STATE_QUERY).await?)?;
    println!("  order state machine: {state2}; query `{STATE_QUERY}`: {query2}");
    check.eq("order-2 state", state2, OrderState::Refunded);
    check.eq("order-2 query", query2, OrderState::Refunded);

    // ---- the state machines refuse transitions their state does not allow ----
    println!("order state machines refuse what their state does not allow:");
    for (order_id, event, state) in [
        ("order-1", OrderEvent::PaymentRefunded, OrderState::Shipped),
        ("order-2", OrderEvent::Shipped, OrderState::Refunded),
    ] {
        let fsm = actor::<OrderActor>(&node, order_id)?;
        match fsm.call_event(event).await? {
            Some(Err(rejected)) => println!("  rejected: {rejected}"),
            other => check.fail(format!("{order_id}: {event} should be rejected: {other:?}")),
        }
        check.eq(
            &format!("{order_id} state after {event}"),
            fsm.state().await?,
            state,
        );
    }

    node.shutdown().await;
    if !check.mismatches.is_empty() {
        for m in &check.mismatches {
            eprintln!("mismatch: {m}");
        }
        eprintln!(
            "order processing: FAILED ({} mismatches)",
            check.mismatches.len()
        );
        std::process::exit(1);
    }
    println!("order processing: OK");
    Ok(())
}

/// The services under one `one_for_one` supervisor, with their opening state.
fn services_spec() -> SupervisorSpec {
    let payment = PaymentOptions {
        balances: BTreeMap::from([("alice".into(), 10_000), ("bob".into(), 5_000)]),
        slow_first_reply: vec!["order-1".into()],
        slow_reply: Duration::from_secs(1),
    };
    let stock = BTreeMap::from([("widget".into(), 10), ("gadget".into(), 5)]);
    SupervisorSpec::new(Strategy::OneForOne)
        .intensity(3, Duration::from_secs(10))
        .child(ChildSpec::worker(PAYMENT, move || Payment::new(payment.clone())).named(PAYMENT))
        .child(ChildSpec::worker(INVENTORY, move || Inventory::new(stock.clone())).named(INVENTORY))
        .child(
            ChildSpec::worker(SHIPPING, || Shipping::new(vec!["Atlantis".into()])).named(SHIPPING),
        )
}

/// The actor `name` on `node`, asked directly (not through an activity).
fn actor<A: Actor>(node: &Node, name: &str) -> anyhow::Result<ActorRef<A>> {
    Ok(node.actor_ref(&ActorId::new(name, node.name())?)?)
}

fn key(order: &Order) -> WorkflowKey {
    WorkflowKey::new("shop", "orders", &order.order_id)
}

/// How many attempts the workflow's activity `name` took, from its history.
async fn attempts(engine: &WorkflowEngine, key: &WorkflowKey, name: &str) -> anyhow::Result<u32> {
    engine
        .history(key, None)
        .await?
        .iter()
        .find_map(|e| match e {
            HistoryEvent::ActivityCompleted {
                name: n, attempts, ..
            } if n == name => Some(*attempts),
            _ => None,
        })
        .with_context(|| format!("no activity {name} in the history of {key}"))
}

fn money(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// What the three services hold, asked from the actors themselves.
struct State {
    payment: PaymentLedger,
    inventory: InventorySnapshot,
    shipping: ShippingSnapshot,
}

impl State {
    async fn read(node: &Node) -> anyhow::Result<Self> {
        let payment = match actor::<Payment>(node, PAYMENT)?.ask(GetLedger).await? {
            PaymentReply::Ledger(l) => l,
            other => anyhow::bail!("payment answered {other:?}"),
        };
        let inventory = match actor::<Inventory>(node, INVENTORY)?.ask(GetStock).await? {
            InventoryReply::Stock(s) => s,
            other => anyhow::bail!("inventory answered {other:?}"),
        };
        let shipping = match actor::<Shipping>(node, SHIPPING)?.ask(GetShipments).await? {
            ShippingReply::Shipments(s) => s,
            other => anyhow::bail!("shipping answered {other:?}"),
        };
        Ok(Self {
            payment,
            inventory,
            shipping,
        })
    }
}

fn ops_of<'a>(log: &'a [LogEntry], order_id: &str) -> Vec<&'a str> {
    log.iter()
        .filter(|e| e.order_id == order_id)
        .map(|e| e.op)
        .collect()
}

impl PaymentLedger {
    fn balance(&self, customer: &str) -> i64 {
        self.balances.get(customer).copied().unwrap_or_default()
    }

    fn charges_of(&self, order_id: &str) -> Vec<&services::ChargeRecord> {
        self.charges
            .iter()
            .filter(|c| c.order_id == order_id)
            .collect()
    }

    fn ops_of(&self, order_id: &str) -> Vec<&str> {
        ops_of(&self.log, order_id)
    }
}

impl InventorySnapshot {
    fn stock(&self, sku: &str) -> u32 {
        self.stock.get(sku).copied().unwrap_or_default()
    }

    fn ops_of(&self, order_id: &str) -> Vec<&str> {
        ops_of(&self.log, order_id)
    }

    /// Whether each of the order's reservations was released.
    fn released_of(&self, order_id: &str) -> Vec<bool> {
        self.reservations
            .iter()
            .filter(|r| r.order_id == order_id)
            .map(|r| r.released)
            .collect()
    }
}

impl ShippingSnapshot {
    fn ops_of(&self, order_id: &str) -> Vec<&str> {
        ops_of(&self.log, order_id)
    }
}

/// Collects what differed instead of stopping at the first difference.
#[derive(Default)]
struct Checks {
    mismatches: Vec<String>,
}

impl Checks {
    fn eq<T: PartialEq + Debug>(&mut self, what: &str, got: T, want: T) {
        if got != want {
            self.fail(format!("{what}: got {got:?}, want {want:?}"));
        }
    }

    fn that(&mut self, what: &str, ok: bool, detail: String) {
        if !ok {
            self.fail(format!("{what}: {detail}"));
        }
    }

    fn fail(&mut self, mismatch: String) {
        self.mismatches.push(mismatch);
    }
}
