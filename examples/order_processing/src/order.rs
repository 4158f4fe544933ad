//! The order state machine, a GenFSM actor (one per order):
//!
//! ```text
//! event               allowed in        leads to
//! payment_charged     pending           paid
//! inventory_reserved  paid              reserved
//! shipped             reserved          shipped
//! inventory_released  reserved          cancelled
//! payment_refunded    paid, cancelled   refunded
//! ```
//!
//! `refunded` is where a compensated order ends. Any other event is rejected and leaves the
//! state as it was. An event that leads to the state the machine is already in is a repeat
//! (a retried request whose first answer was lost) and is accepted without a change.

use std::fmt;

use plexspaces_core::{BoxError, Context, FsmActor, GenFsm, Transition};
use serde::{Deserialize, Serialize};

/// The states of an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderState {
    /// Created, nothing done yet.
    Pending,
    /// The customer was charged.
    Paid,
    /// The goods are put aside.
    Reserved,
    /// Handed to the carrier: done.
    Shipped,
    /// Will not ship; the goods are back in stock, the money is still taken.
    Cancelled,
    /// The money is back too: the compensated end.
    Refunded,
}

impl fmt::Display for OrderState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pending => "pending",
            Self::Paid => "paid",
            Self::Reserved => "reserved",
            Self::Shipped => "shipped",
            Self::Cancelled => "cancelled",
            Self::Refunded => "refunded",
        })
    }
}

/// What happened to an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderEvent {
    /// Payment took the money.
    PaymentCharged,
    /// Inventory put the goods aside.
    InventoryReserved,
    /// The carrier has it.
    Shipped,
    /// The goods went back into stock.
    InventoryReleased,
    /// The money went back.
    PaymentRefunded,
}

impl fmt::Display for OrderEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PaymentCharged => "payment_charged",
            Self::InventoryReserved => "inventory_reserved",
            Self::Shipped => "shipped",
            Self::InventoryReleased => "inventory_released",
            Self::PaymentRefunded => "payment_refunded",
        })
    }
}

impl OrderEvent {
    /// The states the event is allowed in, and the state it leads to.
    fn transition(self) -> (&'static [OrderState], OrderState) {
        use OrderState::*;
        match self {
            Self::PaymentCharged => (&[Pending], Paid),
            Self::InventoryReserved => (&[Paid], Reserved),
            Self::Shipped => (&[Reserved], OrderState::Shipped),
            Self::InventoryReleased => (&[Reserved], Cancelled),
            Self::PaymentRefunded => (&[Paid, Cancelled], Refunded),
        }
    }
}

/// An event the order's state does not allow.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("order {order_id}: {event} is not allowed in state {state}")]
pub struct Rejected {
    /// The order.
    pub order_id: String,
    /// Its state, unchanged.
    pub state: OrderState,
    /// The event.
    pub event: OrderEvent,
}

/// The machine of one order.
#[derive(Debug)]
pub struct OrderFsm {
    order_id: String,
}

/// The actor an order's machine runs in.
pub type OrderActor = FsmActor<OrderFsm>;

impl OrderFsm {
    /// A new order, `pending`.
    pub fn new(order_id: &str) -> Self {
        Self {
            order_id: order_id.to_owned(),
        }
    }
}

impl GenFsm for OrderFsm {
    type State = OrderState;
    type Event = OrderEvent;
    type Reply = Result<OrderState, Rejected>;

    fn initial_state(&self) -> OrderState {
        OrderState::Pending
    }

    async fn handle_event(
        &mut self,
        state: &OrderState,
        event: OrderEvent,
        _ctx: &mut Context<OrderActor>,
    ) -> Result<Transition<Self>, BoxError> {
        let (from, to) = event.transition();
        Ok(if *state == to {
            Transition::keep().reply(Ok(to))
        } else if from.contains(state) {
            Transition::next(to).reply(Ok(to))
        } else {
            Transition::keep().reply(Err(Rejected {
                order_id: self.order_id.clone(),
                state: *state,
                event,
            }))
        })
    }
}
