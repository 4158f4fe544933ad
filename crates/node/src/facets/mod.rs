//! Capability facets an actor attaches (`ActorType::facets`) and reaches through
//! `ctx.service::<T>()`:
//! - [`HttpClientFacet`] ([`HttpClient`]): outbound HTTP with timeouts, retries and a
//!   per-actor allow-list of hosts;
//! - [`LoggingFacet`]: one `tracing` event per handled message, with the actor, message
//!   type, outcome and time, at a level of the actor's choosing;
//! - [`AuthenticationFacet`] ([`CurrentCaller`], [`caller_of`]): the verified caller of
//!   each message (tenant, subject, roles) in the handler;
//! - [`AuthorizationFacet`]: a [`Policy`] of rules per message type and role, checked
//!   before the handler runs (refused: error kind `rejected`, HTTP 403, gRPC
//!   `PERMISSION_DENIED`);
//! - [`TimerFacet`] ([`Timers`]): non-durable one-shot and interval timers that send the
//!   actor an envelope.
//!
//! The node itself attaches a reminder facet ([`crate::reminders::ReminderFacet`]), a
//! timer facet, and key-value, blob and event-emitter facets to every activation (see
//! [`crate::NodeServer::start`]).

mod auth;
mod http_client;
mod logging;
mod timer;

pub use auth::{
    caller_of, Allow, AuthenticationFacet, AuthorizationFacet, CurrentCaller, Policy, Rule,
};
pub use http_client::{HttpClient, HttpClientFacet, HttpClientOptions, HttpError, HttpResponse};
pub use logging::LoggingFacet;
pub use timer::{TimerError, TimerFacet, TimerId, Timers, DEFAULT_MAX_TIMERS, TIMER_HEADER};
