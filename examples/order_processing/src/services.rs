//! The services the order workflow calls: payment, inventory and shipping. Each is an actor
//! with its own typed messages and its own in-memory state.
//!
//! Every request that changes state carries an idempotency key (the workflow activity's
//! key): a retried request changes nothing the first one already did and gets the first
//! one's answer. Every change is also written to the service's log with the time it
//! happened, so the program can check what ran, how often, and in which order.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use plexspaces_core::{Actor, BoxError, Context};
use serde::{Deserialize, Serialize};

/// One change a service made.
#[derive(Debug, Clone, PartialEq)]
pub struct LogEntry {
    /// What it did: `charge`, `refund`, `reserve`, `release`, `ship` or `reject`.
    pub op: &'static str,
    /// For which order.
    pub order_id: String,
    /// When.
    pub at: Instant,
}

impl LogEntry {
    fn now(op: &'static str, order_id: &str) -> Self {
        Self {
            op,
            order_id: order_id.to_owned(),
            at: Instant::now(),
        }
    }
}

// ---- payment ----

/// Takes `amount` from `customer` once per idempotency key.
#[derive(Debug, Clone)]
pub struct Charge {
    /// The same on every retry of one charge; also the charge's id.
    pub idempotency_key: String,
    /// The order paid for.
    pub order_id: String,
    /// Whose account.
    pub customer: String,
    /// In cents.
    pub amount: i64,
}

/// Gives a charge back (at most once, whatever the number of requests).
#[derive(Debug, Clone)]
pub struct Refund {
    /// The charge to refund.
    pub charge_id: String,
}

/// Asks for the balances, charges and log.
#[derive(Debug, Clone, Copy)]
pub struct GetLedger;

/// Messages of [`Payment`].
#[derive(Debug)]
pub enum PaymentMsg {
    /// A charge.
    Charge(Charge),
    /// A refund.
    Refund(Refund),
    /// The ledger.
    Ledger(GetLedger),
}

impl From<Charge> for PaymentMsg {
    fn from(m: Charge) -> Self {
        Self::Charge(m)
    }
}

impl From<Refund> for PaymentMsg {
    fn from(m: Refund) -> Self {
        Self::Refund(m)
    }
}

impl From<GetLedger> for PaymentMsg {
    fn from(m: GetLedger) -> Self {
        Self::Ledger(m)
    }
}

/// Replies of [`Payment`], one per message.
#[derive(Debug)]
pub enum PaymentReply {
    /// The charge (the first one's, for a retry).
    Charge(Result<ChargeReceipt, PaymentError>),
    /// The refund.
    Refund(Result<ChargeReceipt, PaymentError>),
    /// The ledger.
    Ledger(PaymentLedger),
}

/// A charge that was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChargeReceipt {
    /// The charge's id (its idempotency key).
    pub charge_id: String,
    /// In cents.
    pub amount: i64,
}

/// Why payment said no. None of these goes away by asking again.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PaymentError {
    /// No such account.
    #[error("no account for customer {0}")]
    UnknownCustomer(String),
    /// Not enough money.
    #[error("customer {customer} has {balance} cents, the charge is {amount}")]
    InsufficientFunds {
        /// Whose account.
        customer: String,
        /// What is there.
        balance: i64,
        /// What was asked.
        amount: i64,
    },
    /// A refund of a charge that was never made.
    #[error("no charge {0}")]
    UnknownCharge(String),
}

impl PaymentError {
    /// A stable kind for the workflow's failure records.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownCustomer(_) => "UnknownCustomer",
            Self::InsufficientFunds { .. } => "InsufficientFunds",
            Self::UnknownCharge(_) => "UnknownCharge",
        }
    }
}

/// One charge as payment keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct ChargeRecord {
    /// Its id (the idempotency key of the charge request).
    pub charge_id: String,
    /// The order.
    pub order_id: String,
    /// The customer.
    pub customer: String,
    /// In cents.
    pub amount: i64,
    /// Whether it was given back.
    pub refunded: bool,
}

/// Payment's state, as [`GetLedger`] returns it.
#[derive(Debug, Clone)]
pub struct PaymentLedger {
    /// Balances in cents by customer.
    pub balances: BTreeMap<String, i64>,
    /// Charges in the order they were made.
    pub charges: Vec<ChargeRecord>,
    /// Every change, in order.
    pub log: Vec<LogEntry>,
}

/// How payment starts.
#[derive(Debug, Clone)]
pub struct PaymentOptions {
    /// Opening balances in cents by customer.
    pub balances: BTreeMap<String, i64>,
    /// Orders whose first charge is answered late, after `slow_reply` (a slow gateway):
    /// the money is taken at once, but the caller has given up by the time the answer
    /// comes, so it asks again with the same idempotency key.
    pub slow_first_reply: Vec<String>,
    /// How late.
    pub slow_reply: Duration,
}

/// The payment service.
#[derive(Debug)]
pub struct Payment {
    balances: BTreeMap<String, i64>,
    charges: Vec<ChargeRecord>,
    slow_first_reply: Vec<String>,
    slow_reply: Duration,
    log: Vec<LogEntry>,
}

impl Payment {
    /// Payment with these accounts.
    pub fn new(options: PaymentOptions) -> Self {
        Self {
            balances: options.balances,
            charges: Vec::new(),
            slow_first_reply: options.slow_first_reply,
            slow_reply: options.slow_reply,
            log: Vec::new(),
        }
    }

    fn charge(&mut self, c: Charge) -> Result<ChargeReceipt, PaymentError> {
        if let Some(done) = self.charge_by_id(&c.idempotency_key) {
            return Ok(ChargeReceipt {
                charge_id: done.charge_id.clone(),
                amount: done.amount,
            });
        }
        let balance = self
            .balances
            .get_mut(&c.customer)
            .ok_or_else(|| PaymentError::UnknownCustomer(c.customer.clone()))?;
        if *balance < c.amount {
            return Err(PaymentError::InsufficientFunds {
                customer: c.customer,
                balance: *balance,
                amount: c.amount,
            });
        }
        *balance -= c.amount;
        self.log.push(LogEntry::now("charge", &c.order_id));
        let receipt = ChargeReceipt {
            charge_id: c.idempotency_key.clone(),
            amount: c.amount,
        };
        self.charges.push(ChargeRecord {
            charge_id: c.idempotency_key,
            order_id: c.order_id,
            customer: c.customer,
            amount: c.amount,
            refunded: false,
        });
        Ok(receipt)
    }

    fn refund(&mut self, r: &Refund) -> Result<ChargeReceipt, PaymentError> {
        let charge = self
            .charges
            .iter_mut()
            .find(|x| x.charge_id == r.charge_id)
            .ok_or_else(|| PaymentError::UnknownCharge(r.charge_id.clone()))?;
        if !charge.refunded {
            charge.refunded = true;
            *self.balances.entry(charge.customer.clone()).or_default() += charge.amount;
            self.log.push(LogEntry::now("refund", &charge.order_id));
        }
        Ok(ChargeReceipt {
            charge_id: charge.charge_id.clone(),
            amount: charge.amount,
        })
    }

    fn charge_by_id(&self, charge_id: &str) -> Option<&ChargeRecord> {
        self.charges.iter().find(|x| x.charge_id == charge_id)
    }

    /// Whether this order's charge is to be answered late (once per order).
    fn take_slow_reply(&mut self, order_id: &str) -> bool {
        let at = self.slow_first_reply.iter().position(|o| o == order_id);
        at.map(|at| self.slow_first_reply.swap_remove(at)).is_some()
    }

    fn ledger(&self) -> PaymentLedger {
        PaymentLedger {
            balances: self.balances.clone(),
            charges: self.charges.clone(),
            log: self.log.clone(),
        }
    }
}

impl Actor for Payment {
    type Msg = PaymentMsg;
    type Reply = PaymentReply;

    async fn handle_call(
        &mut self,
        msg: PaymentMsg,
        ctx: &mut Context<Self>,
    ) -> Result<Option<PaymentReply>, BoxError> {
        match msg {
            PaymentMsg::Charge(c) => {
                // Only a new charge is answered late; a retry is answered at once.
                let slow = self.charge_by_id(&c.idempotency_key).is_none()
                    && self.take_slow_reply(&c.order_id);
                let reply = PaymentReply::Charge(self.charge(c));
                let late = if slow { ctx.reply_handle() } else { None };
                if let Some(handle) = late {
                    let delay = self.slow_reply;
                    tokio::spawn(async move {
                        tokio::time::sleep(delay).await;
                        // By now the caller has timed out, so this answer is dropped; the
                        // caller's retry gets the same receipt from `charges`.
                        let _delivered = handle.send(reply);
                    });
                    return Ok(None);
                }
                Ok(Some(reply))
            }
            PaymentMsg::Refund(r) => Ok(Some(PaymentReply::Refund(self.refund(&r)))),
            PaymentMsg::Ledger(GetLedger) => Ok(Some(PaymentReply::Ledger(self.ledger()))),
        }
    }

    fn msg_name(msg: &PaymentMsg) -> &'static str {
        match msg {
            PaymentMsg::Charge(_) => "charge",
            PaymentMsg::Refund(_) => "refund",
            PaymentMsg::Ledger(_) => "ledger",
        }
    }
}

// ---- inventory ----

/// Holds `quantity` of `sku` for an order, once per reservation id.
#[derive(Debug, Clone)]
pub struct Reserve {
    /// The same on every retry of one reservation; also the reservation's id.
    pub reservation_id: String,
    /// The order.
    pub order_id: String,
    /// The item.
    pub sku: String,
    /// How many.
    pub quantity: u32,
}

/// Puts a reservation back into stock (at most once).
#[derive(Debug, Clone)]
pub struct Release {
    /// The reservation.
    pub reservation_id: String,
}

/// Asks for stock, reservations and log.
#[derive(Debug, Clone, Copy)]
pub struct GetStock;

/// Messages of [`Inventory`].
#[derive(Debug)]
pub enum InventoryMsg {
    /// A reservation.
    Reserve(Reserve),
    /// A release.
    Release(Release),
    /// The stock.
    Stock(GetStock),
}

impl From<Reserve> for InventoryMsg {
    fn from(m: Reserve) -> Self {
        Self::Reserve(m)
    }
}

impl From<Release> for InventoryMsg {
    fn from(m: Release) -> Self {
        Self::Release(m)
    }
}

impl From<GetStock> for InventoryMsg {
    fn from(m: GetStock) -> Self {
        Self::Stock(m)
    }
}

/// Replies of [`Inventory`], one per message.
#[derive(Debug)]
pub enum InventoryReply {
    /// The reservation (the first one's, for a retry).
    Reserve(Result<Reservation, InventoryError>),
    /// The released reservation.
    Release(Result<Reservation, InventoryError>),
    /// The stock.
    Stock(InventorySnapshot),
}

/// A reservation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reservation {
    /// Its id (the idempotency key of the reserve request).
    pub reservation_id: String,
    /// The order.
    pub order_id: String,
    /// The item.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// Whether it went back into stock.
    pub released: bool,
}

/// Why inventory said no. None of these goes away by asking again.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InventoryError {
    /// No such item.
    #[error("unknown item {0}")]
    UnknownSku(String),
    /// Not enough of it.
    #[error("{available} of {sku} in stock, {requested} requested")]
    OutOfStock {
        /// The item.
        sku: String,
        /// In stock.
        available: u32,
        /// Asked for.
        requested: u32,
    },
    /// A release of a reservation that was never made.
    #[error("no reservation {0}")]
    UnknownReservation(String),
}

impl InventoryError {
    /// A stable kind for the workflow's failure records.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::UnknownSku(_) => "UnknownSku",
            Self::OutOfStock { .. } => "OutOfStock",
            Self::UnknownReservation(_) => "UnknownReservation",
        }
    }
}

/// Inventory's state, as [`GetStock`] returns it.
#[derive(Debug, Clone)]
pub struct InventorySnapshot {
    /// Free stock by item.
    pub stock: BTreeMap<String, u32>,
    /// Reservations in the order they were made.
    pub reservations: Vec<Reservation>,
    /// Every change, in order.
    pub log: Vec<LogEntry>,
}

/// The inventory service.
#[derive(Debug)]
pub struct Inventory {
    stock: BTreeMap<String, u32>,
    reservations: Vec<Reservation>,
    log: Vec<LogEntry>,
}

impl Inventory {
    /// Inventory with this stock.
    pub fn new(stock: BTreeMap<String, u32>) -> Self {
        Self {
            stock,
            reservations: Vec::new(),
            log: Vec::new(),
        }
    }

    fn reserve(&mut self, r: Reserve) -> Result<Reservation, InventoryError> {
        if let Some(done) = self
            .reservations
            .iter()
            .find(|x| x.reservation_id == r.reservation_id)
        {
            return Ok(done.clone());
        }
        let available = self
            .stock
            .get_mut(&r.sku)
            .ok_or_else(|| InventoryError::UnknownSku(r.sku.clone()))?;
        if *available < r.quantity {
            return Err(InventoryError::OutOfStock {
                sku: r.sku,
                available: *available,
                requested: r.quantity,
            });
        }
        *available -= r.quantity;
        self.log.push(LogEntry::now("reserve", &r.order_id));
        let reservation = Reservation {
            reservation_id: r.reservation_id,
            order_id: r.order_id,
            sku: r.sku,
            quantity: r.quantity,
            released: false,
        };
        self.reservations.push(reservation.clone());
        Ok(reservation)
    }

    fn release(&mut self, r: &Release) -> Result<Reservation, InventoryError> {
        let reservation = self
            .reservations
            .iter_mut()
            .find(|x| x.reservation_id == r.reservation_id)
            .ok_or_else(|| InventoryError::UnknownReservation(r.reservation_id.clone()))?;
        if !reservation.released {
            reservation.released = true;
            *self.stock.entry(reservation.sku.clone()).or_default() += reservation.quantity;
            self.log
                .push(LogEntry::now("release", &reservation.order_id));
        }
        Ok(reservation.clone())
    }
}

impl Actor for Inventory {
    type Msg = InventoryMsg;
    type Reply = InventoryReply;

    async fn handle_call(
        &mut self,
        msg: InventoryMsg,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<InventoryReply>, BoxError> {
        Ok(Some(match msg {
            InventoryMsg::Reserve(r) => InventoryReply::Reserve(self.reserve(r)),
            InventoryMsg::Release(r) => InventoryReply::Release(self.release(&r)),
            InventoryMsg::Stock(GetStock) => InventoryReply::Stock(InventorySnapshot {
                stock: self.stock.clone(),
                reservations: self.reservations.clone(),
                log: self.log.clone(),
            }),
        }))
    }

    fn msg_name(msg: &InventoryMsg) -> &'static str {
        match msg {
            InventoryMsg::Reserve(_) => "reserve",
            InventoryMsg::Release(_) => "release",
            InventoryMsg::Stock(_) => "stock",
        }
    }
}

// ---- shipping ----

/// Hands an order to the carrier, once per shipment id.
#[derive(Debug, Clone)]
pub struct Ship {
    /// The same on every retry of one shipment; also the shipment's id.
    pub shipment_id: String,
    /// The order.
    pub order_id: String,
    /// Where to.
    pub destination: String,
}

/// Asks for the shipments and log.
#[derive(Debug, Clone, Copy)]
pub struct GetShipments;

/// Messages of [`Shipping`].
#[derive(Debug)]
pub enum ShippingMsg {
    /// A shipment.
    Ship(Ship),
    /// The shipments.
    Shipments(GetShipments),
}

impl From<Ship> for ShippingMsg {
    fn from(m: Ship) -> Self {
        Self::Ship(m)
    }
}

impl From<GetShipments> for ShippingMsg {
    fn from(m: GetShipments) -> Self {
        Self::Shipments(m)
    }
}

/// Replies of [`Shipping`], one per message.
#[derive(Debug)]
pub enum ShippingReply {
    /// The shipment (the first one's, for a retry).
    Ship(Result<Shipment, ShippingError>),
    /// The shipments.
    Shipments(ShippingSnapshot),
}

/// A shipment handed to the carrier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shipment {
    /// Its id (the idempotency key of the ship request).
    pub shipment_id: String,
    /// The order.
    pub order_id: String,
    /// Where to.
    pub destination: String,
    /// The carrier's tracking number.
    pub tracking: String,
}

/// Why shipping said no.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ShippingError {
    /// The carrier does not go there; asking again will not change that.
    #[error("no carrier delivers to {0}")]
    Undeliverable(String),
}

impl ShippingError {
    /// A stable kind for the workflow's failure records.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Undeliverable(_) => "Undeliverable",
        }
    }
}

/// Shipping's state, as [`GetShipments`] returns it.
#[derive(Debug, Clone)]
pub struct ShippingSnapshot {
    /// Shipments in the order they were made.
    pub shipments: Vec<Shipment>,
    /// Every shipment and every refusal, in order.
    pub log: Vec<LogEntry>,
}

/// The shipping service.
#[derive(Debug)]
pub struct Shipping {
    undeliverable: Vec<String>,
    shipments: Vec<Shipment>,
    log: Vec<LogEntry>,
}

impl Shipping {
    /// Shipping that refuses these destinations.
    pub fn new(undeliverable: Vec<String>) -> Self {
        Self {
            undeliverable,
            shipments: Vec::new(),
            log: Vec::new(),
        }
    }

    fn ship(&mut self, s: Ship) -> Result<Shipment, ShippingError> {
        if let Some(done) = self
            .shipments
            .iter()
            .find(|x| x.shipment_id == s.shipment_id)
        {
            return Ok(done.clone());
        }
        if self.undeliverable.contains(&s.destination) {
            self.log.push(LogEntry::now("reject", &s.order_id));
            return Err(ShippingError::Undeliverable(s.destination));
        }
        self.log.push(LogEntry::now("ship", &s.order_id));
        let shipment = Shipment {
            tracking: format!("TRK-{:04}", self.shipments.len() + 1),
            shipment_id: s.shipment_id,
            order_id: s.order_id,
            destination: s.destination,
        };
        self.shipments.push(shipment.clone());
        Ok(shipment)
    }
}

impl Actor for Shipping {
    type Msg = ShippingMsg;
    type Reply = ShippingReply;

    async fn handle_call(
        &mut self,
        msg: ShippingMsg,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<ShippingReply>, BoxError> {
        Ok(Some(match msg {
            ShippingMsg::Ship(s) => ShippingReply::Ship(self.ship(s)),
            ShippingMsg::Shipments(GetShipments) => ShippingReply::Shipments(ShippingSnapshot {
                shipments: self.shipments.clone(),
                log: self.log.clone(),
            }),
        }))
    }

    fn msg_name(msg: &ShippingMsg) -> &'static str {
        match msg {
            ShippingMsg::Ship(_) => "ship",
            ShippingMsg::Shipments(_) => "shipments",
        }
    }
}
