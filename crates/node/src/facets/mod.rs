//! Capability facets an actor attaches (`ActorType::facets`) and reaches through
//! `ctx.service::<T>()`:
//! - [`HttpClientFacet`] ([`HttpClient`]): outbound HTTP with timeouts, retries and a
//!   per-actor allow-list of hosts;
//! - [`LoggingFacet`]: one `tracing` event per handled message, with the actor, message
//!   type, outcome and time, at a level of the actor's choosing.
//!
//! The node itself attaches a reminder facet ([`crate::reminders::ReminderFacet`]) and
//! key-value, blob and event-emitter facets to every activation (see
//! [`crate::NodeServer::start`]).

mod http_client;
mod logging;

pub use http_client::{HttpClient, HttpClientFacet, HttpClientOptions, HttpError, HttpResponse};
pub use logging::LoggingFacet;
