//! The `order` workflow: charge the customer, reserve the goods, ship them, moving the
//! order's state machine after each step. Every step is an activity that asks an actor,
//! with a retry policy; each step that succeeded registers its undo with a [`Saga`]. When a
//! step fails for good, the saga undoes the earlier steps in reverse order (release the
//! goods, then refund the money), each exactly once, and the workflow fails with the
//! step's error.

use std::future::Future;
use std::time::Duration;

use plexspaces_core::{
    Actor, ActorId, ActorRef, ChildSpec, Error, FsmActor, Node, Restart, Supervisor,
};
use plexspaces_workflow::{
    ActivityFailure, ActivityOptions, Result, RetryPolicy, Saga, WorkflowBehavior, WorkflowContext,
    WorkflowError,
};
use serde::{Deserialize, Serialize};

use crate::order::{OrderActor, OrderEvent, OrderFsm, OrderState};
use crate::services::{
    Charge, ChargeReceipt, Inventory, InventoryError, InventoryReply, Payment, PaymentError,
    PaymentReply, Refund, Release, Reservation, Reserve, Ship, Shipment, Shipping, ShippingError,
    ShippingReply,
};

/// The workflow type clients start.
pub const WORKFLOW_TYPE: &str = "order";

/// The name of the query that answers the order's current state.
pub const STATE_QUERY: &str = "state";

/// The workflow's input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Also the workflow id and the name of the order's state machine actor.
    pub order_id: String,
    /// Who pays.
    pub customer: String,
    /// What.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// The price in cents.
    pub amount: i64,
    /// Where to.
    pub destination: String,
}

/// The workflow's result: the order shipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shipped {
    /// The order.
    pub order_id: String,
    /// The carrier's tracking number.
    pub tracking: String,
    /// The state machine's state at the end (`shipped`).
    pub state: OrderState,
}

/// Every step: half a second per attempt, at most five attempts, 100 ms, 200 ms, 400 ms,
/// 800 ms apart. Failures the services mark non-retryable (a declined card, an address
/// no carrier serves) are not retried whatever this says.
pub fn step_options() -> ActivityOptions {
    ActivityOptions::default()
        .with_start_to_close(Duration::from_millis(500))
        .with_retry(RetryPolicy {
            initial_interval: Duration::from_millis(100),
            backoff_coefficient: 2.0,
            maximum_interval: Duration::from_secs(2),
            maximum_attempts: 5,
            non_retryable: Vec::new(),
        })
}

/// The `order` workflow.
#[derive(Debug)]
pub struct OrderWorkflow {
    services: Services,
}

impl OrderWorkflow {
    /// The workflow, calling these services.
    pub fn new(services: Services) -> Self {
        Self { services }
    }
}

impl WorkflowBehavior for OrderWorkflow {
    type Input = Order;
    type Output = Shipped;

    fn workflow_type(&self) -> &str {
        WORKFLOW_TYPE
    }

    fn run(
        &self,
        ctx: WorkflowContext,
        order: Order,
    ) -> impl Future<Output = Result<Shipped>> + Send {
        let services = self.services.clone();
        async move { process(&ctx, &services, &order).await }
    }
}

async fn process(ctx: &WorkflowContext, services: &Services, order: &Order) -> Result<Shipped> {
    let id = order.order_id.as_str();
    let state = ctx
        .activity("open_order", &step_options(), |_| services.open_order(id))
        .await?;
    ctx.set_query(STATE_QUERY, &state)?;

    let mut saga = Saga::new();
    let failure = match forward(ctx, services, order, &mut saga).await {
        Ok(shipped) => return Ok(shipped),
        // A step failed for good, or the workflow was cancelled: undo what was done.
        Err(e @ (WorkflowError::Activity { .. } | WorkflowError::Cancelled { .. })) => e,
        // Anything else (storage, non-determinism) suspends the workflow; it resumes later.
        Err(e) => return Err(e),
    };
    let compensated = saga.compensate(ctx).await;
    let state = ctx
        .activity("read_order_state", &step_options(), |_| {
            services.order_state(id)
        })
        .await?;
    ctx.set_query(STATE_QUERY, &state)?;
    compensated?;
    Err(failure)
}

/// The steps, each adding its undo to `saga` once it succeeded.
async fn forward(
    ctx: &WorkflowContext,
    services: &Services,
    order: &Order,
    saga: &mut Saga,
) -> Result<Shipped> {
    let options = step_options();
    let id = order.order_id.as_str();

    let charge: ChargeReceipt = ctx
        .activity("charge_payment", &options, |actx| async move {
            services.charge(actx.idempotency_key(), order).await
        })
        .await?;
    saga.add_compensation("refund_payment", options.clone(), {
        let (services, id) = (services.clone(), id.to_owned());
        move |_| {
            let (services, id) = (services.clone(), id.clone());
            let charge_id = charge.charge_id.clone();
            async move {
                services.refund(&charge_id).await?;
                services.advance(&id, OrderEvent::PaymentRefunded).await
            }
        }
    });
    mark(ctx, services, id, "mark_paid", OrderEvent::PaymentCharged).await?;

    let reservation: Reservation = ctx
        .activity("reserve_inventory", &options, |actx| async move {
            services.reserve(actx.idempotency_key(), order).await
        })
        .await?;
    saga.add_compensation("release_inventory", options.clone(), {
        let (services, id) = (services.clone(), id.to_owned());
        move |_| {
            let (services, id) = (services.clone(), id.clone());
            let reservation_id = reservation.reservation_id.clone();
            async move {
                services.release(&reservation_id).await?;
                services.advance(&id, OrderEvent::InventoryReleased).await
            }
        }
    });
    mark(
        ctx,
        services,
        id,
        "mark_reserved",
        OrderEvent::InventoryReserved,
    )
    .await?;

    let shipment: Shipment = ctx
        .activity("ship_order", &options, |actx| async move {
            services.ship(actx.idempotency_key(), order).await
        })
        .await?;
    let state = mark(ctx, services, id, "mark_shipped", OrderEvent::Shipped).await?;
    Ok(Shipped {
        order_id: order.order_id.clone(),
        tracking: shipment.tracking,
        state,
    })
}

/// Sends `event` to the order's state machine (an activity named `step`) and publishes the
/// new state to the `state` query.
async fn mark(
    ctx: &WorkflowContext,
    services: &Services,
    order_id: &str,
    step: &str,
    event: OrderEvent,
) -> Result<OrderState> {
    let state = ctx
        .activity(step, &step_options(), |_| services.advance(order_id, event))
        .await?;
    ctx.set_query(STATE_QUERY, &state)?;
    Ok(state)
}

/// How activities reach the service actors: by name on the node, looked up on every
/// attempt, so a service the supervisor restarted is found under its new incarnation.
#[derive(Debug, Clone)]
pub struct Services {
    node: Node,
    supervisor: ActorRef<Supervisor>,
}

/// Names of the service actors on the node.
pub const PAYMENT: &str = "payment";
/// See [`PAYMENT`].
pub const INVENTORY: &str = "inventory";
/// See [`PAYMENT`].
pub const SHIPPING: &str = "shipping";

impl Services {
    /// Services on `node`; order state machines are started under `supervisor`.
    pub fn new(node: Node, supervisor: ActorRef<Supervisor>) -> Self {
        Self { node, supervisor }
    }

    /// The actor `name` on this node. Not running is retryable: its supervisor restarts it.
    fn actor<A: Actor>(&self, name: &str) -> Result<ActorRef<A>, ActivityFailure> {
        let id = ActorId::new(name, self.node.name())?;
        self.node.actor_ref::<A>(&id).map_err(|e| match e {
            Error::NoProc(_) => ActivityFailure::retryable("unavailable", e.to_string()),
            other => other.into(),
        })
    }

    /// Starts the order's state machine under the supervisor, unless it runs already.
    pub async fn open_order(&self, order_id: &str) -> Result<OrderState, ActivityFailure> {
        let id = order_id.to_owned();
        // Temporary: its state lives only in memory, so a restarted machine would say
        // `pending` for an order that is further along. Better gone than wrong.
        let spec = ChildSpec::worker(order_id, move || FsmActor::new(OrderFsm::new(&id)))
            .named(order_id)
            .restart(Restart::Temporary);
        match self.supervisor.start_child(spec).await {
            Ok(_) | Err(Error::AlreadyStarted { .. }) => self.order_state(order_id).await,
            Err(e) => Err(e.into()),
        }
    }

    /// The order's state.
    pub async fn order_state(&self, order_id: &str) -> Result<OrderState, ActivityFailure> {
        Ok(self.actor::<OrderActor>(order_id)?.state().await?)
    }

    /// Sends an event to the order's state machine; a rejected event is a non-retryable
    /// failure of kind `InvalidTransition`.
    pub async fn advance(
        &self,
        order_id: &str,
        event: OrderEvent,
    ) -> Result<OrderState, ActivityFailure> {
        match self
            .actor::<OrderActor>(order_id)?
            .call_event(event)
            .await?
        {
            Some(Ok(state)) => Ok(state),
            Some(Err(rejected)) => Err(ActivityFailure::non_retryable(
                "InvalidTransition",
                rejected.to_string(),
            )),
            None => Err(ActivityFailure::non_retryable(
                "no_reply",
                format!("order {order_id} did not answer {event}"),
            )),
        }
    }

    /// Charges the order's price, once per `key`.
    pub async fn charge(&self, key: &str, order: &Order) -> Result<ChargeReceipt, ActivityFailure> {
        let charge = Charge {
            idempotency_key: key.to_owned(),
            order_id: order.order_id.clone(),
            customer: order.customer.clone(),
            amount: order.amount,
        };
        match self.actor::<Payment>(PAYMENT)?.ask(charge).await? {
            PaymentReply::Charge(r) => Ok(r?),
            other => Err(unexpected(PAYMENT, &other)),
        }
    }

    /// Refunds a charge (a repeated refund changes nothing).
    pub async fn refund(&self, charge_id: &str) -> Result<ChargeReceipt, ActivityFailure> {
        let refund = Refund {
            charge_id: charge_id.to_owned(),
        };
        match self.actor::<Payment>(PAYMENT)?.ask(refund).await? {
            PaymentReply::Refund(r) => Ok(r?),
            other => Err(unexpected(PAYMENT, &other)),
        }
    }

    /// Reserves the order's goods, once per `key`.
    pub async fn reserve(&self, key: &str, order: &Order) -> Result<Reservation, ActivityFailure> {
        let reserve = Reserve {
            reservation_id: key.to_owned(),
            order_id: order.order_id.clone(),
            sku: order.sku.clone(),
            quantity: order.quantity,
        };
        match self.actor::<Inventory>(INVENTORY)?.ask(reserve).await? {
            InventoryReply::Reserve(r) => Ok(r?),
            other => Err(unexpected(INVENTORY, &other)),
        }
    }

    /// Puts a reservation back into stock (a repeated release changes nothing).
    pub async fn release(&self, reservation_id: &str) -> Result<Reservation, ActivityFailure> {
        let release = Release {
            reservation_id: reservation_id.to_owned(),
        };
        match self.actor::<Inventory>(INVENTORY)?.ask(release).await? {
            InventoryReply::Release(r) => Ok(r?),
            other => Err(unexpected(INVENTORY, &other)),
        }
    }

    /// Ships the order, once per `key`.
    pub async fn ship(&self, key: &str, order: &Order) -> Result<Shipment, ActivityFailure> {
        let ship = Ship {
            shipment_id: key.to_owned(),
            order_id: order.order_id.clone(),
            destination: order.destination.clone(),
        };
        match self.actor::<Shipping>(SHIPPING)?.ask(ship).await? {
            ShippingReply::Ship(r) => Ok(r?),
            other => Err(unexpected(SHIPPING, &other)),
        }
    }
}

fn unexpected(service: &str, reply: &dyn std::fmt::Debug) -> ActivityFailure {
    ActivityFailure::non_retryable("unexpected_reply", format!("{service} answered {reply:?}"))
}

// A service's "no" is a business answer: asking again gets the same answer, so it is never
// retried (the error decides that, not the call site).

impl From<PaymentError> for ActivityFailure {
    fn from(e: PaymentError) -> Self {
        ActivityFailure::non_retryable(e.kind(), e.to_string())
    }
}

impl From<InventoryError> for ActivityFailure {
    fn from(e: InventoryError) -> Self {
        ActivityFailure::non_retryable(e.kind(), e.to_string())
    }
}

impl From<ShippingError> for ActivityFailure {
    fn from(e: ShippingError) -> Self {
        ActivityFailure::non_retryable(e.kind(), e.to_string())
    }
}
