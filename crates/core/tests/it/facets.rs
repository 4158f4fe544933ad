//! The facet chain: metrics, tracing, ordering, rejection, runtime attach.

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use plexspaces_core::facet::{ActorInfo, Intercept, MessageMeta, MessageOutcome, Recovery};
use plexspaces_core::{
    Envelope, Error, ExitReason, Facet, MetricsFacet, Node, SpawnOptions, TracingFacet,
};
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context as LayerContext, SubscriberExt};

use crate::common::{Cmd, Log, Worker};

/// Logs its hooks; refuses messages of type `refuse_type`.
struct Probe {
    name: &'static str,
    priority: i32,
    log: Log,
}

#[async_trait]
impl Facet for Probe {
    fn name(&self) -> &'static str {
        self.name
    }

    fn priority(&self) -> i32 {
        self.priority
    }

    async fn on_attach(&self, _actor: &ActorInfo) -> plexspaces_core::Result<()> {
        self.log.push(format!("{}:attach", self.name));
        Ok(())
    }

    async fn on_activate(&self, _actor: &ActorInfo) -> plexspaces_core::Result<()> {
        self.log.push(format!("{}:activate", self.name));
        Ok(())
    }

    async fn before_message(
        &self,
        _actor: &ActorInfo,
        msg: &MessageMeta,
    ) -> plexspaces_core::Result<Intercept> {
        self.log.push(format!("{}:before", self.name));
        if self.name == "guard" && msg.msg_type == "forbidden" {
            return Err(Error::Rejected {
                facet: self.name.into(),
                reason: "not allowed".into(),
            });
        }
        Ok(Intercept::Continue)
    }

    async fn after_message(
        &self,
        _actor: &ActorInfo,
        _msg: &MessageMeta,
        outcome: &MessageOutcome,
    ) -> plexspaces_core::Result<()> {
        self.log
            .push(format!("{}:after:{}", self.name, outcome.failed));
        if self.name == "failer" {
            return Err(Error::Transport("journal unreachable".into()));
        }
        Ok(())
    }

    async fn on_deactivate(&self, _actor: &ActorInfo, reason: &ExitReason) {
        self.log.push(format!("{}:deactivate:{reason}", self.name));
    }

    async fn on_detach(&self, _actor: &ActorInfo) {
        self.log.push(format!("{}:detach", self.name));
    }
}

fn probe(name: &'static str, priority: i32, log: &Log) -> Arc<dyn Facet> {
    Arc::new(Probe {
        name,
        priority,
        log: log.clone(),
    })
}

#[tokio::test]
async fn facets_run_in_priority_order_around_messages_and_lifecycle() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let worker_log = Log::default();
    let options = SpawnOptions::default()
        .facet(probe("inner", 1, &log))
        .facet(probe("outer", 10, &log));
    let w = node
        .spawn_with(Worker::new("w", &worker_log), options)
        .unwrap();
    w.ask(Cmd::Ping).await.unwrap();
    w.stop(ExitReason::Shutdown);
    w.wait().await.unwrap();
    assert_eq!(
        log.entries(),
        vec![
            "inner:attach",
            "inner:activate",
            "outer:attach",
            "outer:activate",
            "outer:before",
            "inner:before",
            "inner:after:false",
            "outer:after:false",
            "inner:deactivate:shutdown",
            "outer:deactivate:shutdown",
        ]
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_facet_can_refuse_a_message_without_stopping_the_actor_and_can_be_attached_later() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let w = node.spawn(Worker::new("w", &Log::default())).unwrap();
    w.ask(Cmd::Ping).await.unwrap();
    assert!(log.entries().is_empty());
    w.attach_facet(probe("guard", 0, &log));
    w.ask(Cmd::Ping).await.unwrap();
    assert_eq!(
        log.entries(),
        vec![
            "guard:attach",
            "guard:activate",
            "guard:before",
            "guard:after:false"
        ]
    );
    w.detach_facet("guard");
    w.ask(Cmd::Ping).await.unwrap();
    assert_eq!(
        log.entries().last().map(String::as_str),
        Some("guard:detach")
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_refused_message_gets_a_typed_error_and_the_actor_keeps_serving() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let echo = node
        .spawn_with(
            crate::common::Echo,
            SpawnOptions::default().facet(probe("guard", 0, &log)),
        )
        .unwrap();
    let t = std::time::Duration::from_secs(1);
    let err = echo
        .ask_envelope(Envelope::json("forbidden", &"x").unwrap(), t)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Rejected { facet, .. } if facet == "guard"),
        "{err:?}"
    );
    let reply = echo
        .ask_envelope(Envelope::json("fine", &"x").unwrap(), t)
        .await
        .unwrap();
    assert_eq!(reply.decode_json::<String>().unwrap(), "echo:x");
    assert!(echo.is_alive());
    node.shutdown().await;
}

#[tokio::test]
async fn a_facet_failing_after_the_handler_withholds_the_reply_and_stops_the_actor() {
    let node = Node::builder("n1").build().await.unwrap();
    let log = Log::default();
    let w = node
        .spawn_with(
            Worker::new("w", &Log::default()),
            SpawnOptions::default().facet(probe("failer", 0, &log)),
        )
        .unwrap();
    let err = w.ask(Cmd::Ping).await.unwrap_err();
    assert_eq!(err, Error::Transport("journal unreachable".into()));
    assert!(matches!(w.wait().await.unwrap(), ExitReason::Error(_)));
    node.shutdown().await;
}

#[tokio::test]
async fn metrics_facet_counts_messages_errors_and_renders_prometheus_text() {
    let registry = prometheus::Registry::new();
    let metrics = MetricsFacet::new(&registry).unwrap();
    let node = Node::builder("n1")
        .facet(metrics.clone())
        .build()
        .await
        .unwrap();
    let log = Log::default();
    let w = node.spawn(Worker::new("w", &log)).unwrap();
    for _ in 0..5 {
        w.ask(Cmd::Ping).await.unwrap();
    }
    let _ = w.ask(Cmd::Fail).await;
    w.wait().await.unwrap();
    assert_eq!(metrics.messages("Worker"), 6);
    assert_eq!(metrics.errors("Worker"), 1);
    let text = metrics.render();
    assert!(
        text.contains("plexspaces_actor_messages_total{actor_type=\"Worker\"} 6"),
        "{text}"
    );
    assert!(
        text.contains("plexspaces_actor_handler_seconds_count{actor_type=\"Worker\"} 6"),
        "{text}"
    );
    assert!(text.contains("plexspaces_actor_mailbox_depth"), "{text}");
    node.shutdown().await;
}

/// Collects the fields of `actor.message` spans.
#[derive(Clone, Default)]
struct SpanCollector(Arc<Mutex<Vec<SpanFields>>>);

type SpanFields = Vec<(String, String)>;

struct FieldVisitor<'a>(&'a mut Vec<(String, String)>);

impl Visit for FieldVisitor<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push((field.name().to_owned(), format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.push((field.name().to_owned(), value.to_owned()));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for SpanCollector {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: LayerContext<'_, S>,
    ) {
        if attrs.metadata().name() == "actor.message" {
            let mut fields = Vec::new();
            attrs.record(&mut FieldVisitor(&mut fields));
            self.0.lock().push(fields);
        }
    }
}

#[test]
fn tracing_facet_opens_one_span_per_message_with_the_correlation_id() {
    let collector = SpanCollector::default();
    let subscriber = tracing_subscriber::registry().with(collector.clone());
    let _guard = tracing::subscriber::set_default(subscriber);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let node = Node::builder("n1").build().await.unwrap();
        let w = node
            .spawn_with(
                crate::common::Echo,
                SpawnOptions::named("echo").facet(TracingFacet::new()),
            )
            .unwrap();
        let env = Envelope::json("echo", &"hi")
            .unwrap()
            .with_correlation_id("req-42");
        w.ask_envelope(env, std::time::Duration::from_secs(1))
            .await
            .unwrap();
        w.ask("local".to_string()).await.unwrap();
        node.shutdown().await;
    });
    let spans = collector.0.lock().clone();
    assert_eq!(spans.len(), 2, "{spans:?}");
    let field = |span: &Vec<(String, String)>, name: &str| {
        span.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    assert_eq!(field(&spans[0], "correlation_id"), "req-42");
    assert_eq!(field(&spans[0], "msg_type"), "echo");
    assert_eq!(field(&spans[0], "actor"), "echo@n1");
    assert!(
        !field(&spans[1], "correlation_id").is_empty(),
        "local messages get a generated id"
    );
}

/// A toy journal: records each message and reply as the facet sees them, answers
/// duplicates (same `idem` header) with the recorded reply, checkpoints every 3 messages,
/// and on recovery hands back the last snapshot plus the messages after it.
#[derive(Default)]
struct ToyJournal {
    entries: Mutex<Vec<Envelope>>,
    replies: Mutex<Vec<(String, Envelope)>>,
    snapshot: Mutex<Option<(usize, Vec<u8>)>>,
    replayed: Mutex<Vec<bool>>,
}

#[async_trait]
impl Facet for ToyJournal {
    fn name(&self) -> &'static str {
        "toy-journal"
    }

    fn needs_payload(&self) -> bool {
        true
    }

    async fn recover(&self, _actor: &ActorInfo) -> plexspaces_core::Result<Option<Recovery>> {
        let snapshot = self.snapshot.lock().clone();
        let from = snapshot.as_ref().map_or(0, |(at, _)| *at);
        let replay = self.entries.lock()[from..].to_vec();
        Ok(Some(Recovery {
            snapshot: snapshot.map(|(_, bytes)| bytes),
            replay,
        }))
    }

    async fn before_message(
        &self,
        _actor: &ActorInfo,
        msg: &MessageMeta,
    ) -> plexspaces_core::Result<Intercept> {
        self.replayed.lock().push(msg.replaying);
        if msg.replaying {
            return Ok(Intercept::Continue);
        }
        let payload = msg.payload.clone().expect("payload requested");
        if let Some(key) = payload.headers.get("idem") {
            if let Some((_, reply)) = self.replies.lock().iter().find(|(k, _)| k == key) {
                return Ok(Intercept::Reply(reply.clone()));
            }
        }
        self.entries.lock().push(payload);
        Ok(Intercept::Continue)
    }

    async fn after_message(
        &self,
        _actor: &ActorInfo,
        msg: &MessageMeta,
        outcome: &MessageOutcome,
    ) -> plexspaces_core::Result<()> {
        if let (Some(key), Some(reply)) = (
            msg.payload.as_ref().and_then(|p| p.headers.get("idem")),
            outcome.reply.clone(),
        ) {
            self.replies.lock().push((key.clone(), reply));
        }
        Ok(())
    }

    fn checkpoint_due(&self, _actor: &ActorInfo) -> bool {
        self.entries.lock().len() % 3 == 0
    }

    async fn save_checkpoint(
        &self,
        _actor: &ActorInfo,
        snapshot: Vec<u8>,
    ) -> plexspaces_core::Result<()> {
        let at = self.entries.lock().len();
        *self.snapshot.lock() = Some((at, snapshot));
        Ok(())
    }
}

/// A counter whose state survives through the toy journal; it snapshots as JSON.
#[derive(Default)]
struct Tally {
    total: i64,
    applied: Vec<i64>,
}

impl plexspaces_core::Actor for Tally {
    type Msg = i64;
    type Reply = i64;

    async fn handle_call(
        &mut self,
        n: i64,
        _ctx: &mut plexspaces_core::Context<Self>,
    ) -> Result<Option<i64>, plexspaces_core::BoxError> {
        self.total += n;
        self.applied.push(n);
        Ok(Some(self.total))
    }

    fn decode(env: &Envelope) -> plexspaces_core::Result<i64> {
        env.decode_json()
    }

    fn encode(n: &i64) -> plexspaces_core::Result<Envelope> {
        Envelope::json("add", n)
    }

    fn encode_reply(request_type: &str, n: &i64) -> plexspaces_core::Result<Envelope> {
        Envelope::json(request_type, n)
    }

    fn decode_reply(env: &Envelope) -> plexspaces_core::Result<i64> {
        env.decode_json()
    }

    fn snapshot(&self) -> plexspaces_core::Result<Option<Vec<u8>>> {
        serde_json::to_vec(&self.total)
            .map(Some)
            .map_err(|e| Error::Encode(e.to_string()))
    }

    fn restore(&mut self, snapshot: &[u8]) -> plexspaces_core::Result<()> {
        self.total = serde_json::from_slice(snapshot).map_err(|e| Error::Decode {
            msg_type: "snapshot".into(),
            detail: e.to_string(),
        })?;
        Ok(())
    }
}

#[tokio::test]
async fn payload_facets_see_encoded_messages_answer_duplicates_checkpoint_and_recover() {
    let node = Node::builder("n1").build().await.unwrap();
    let journal = Arc::new(ToyJournal::default());
    let tally = node
        .spawn_with(
            Tally::default(),
            SpawnOptions::named("tally").facet(journal.clone()),
        )
        .unwrap();
    for n in 1..=4 {
        tally.ask(n).await.unwrap();
    }
    tally.tell(5i64).await.unwrap();
    let t = std::time::Duration::from_secs(1);
    let keyed = Envelope::json("add", &100)
        .unwrap()
        .with_header("idem", "k1");
    let first = tally.ask_envelope(keyed.clone(), t).await.unwrap();
    let second = tally.ask_envelope(keyed, t).await.unwrap();
    assert_eq!(first, second, "a duplicate gets the recorded reply");
    assert_eq!(
        tally.ask(0).await.unwrap(),
        115,
        "the duplicate was not applied twice"
    );
    let kinds: Vec<String> = journal
        .entries
        .lock()
        .iter()
        .map(|e| {
            e.headers
                .get("plexspaces-kind")
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(
        kinds,
        vec!["call", "call", "call", "call", "cast", "call", "call"]
    );
    let (snapshot_at, _) = journal
        .snapshot
        .lock()
        .clone()
        .expect("a checkpoint was taken");
    assert_eq!(snapshot_at, 6);

    // "Crash" and reactivate with the same journal: snapshot + replay of the suffix.
    tally.kill();
    tally.wait().await.unwrap();
    journal.replayed.lock().clear();
    let revived = node
        .spawn_with(
            Tally::default(),
            SpawnOptions::named("tally").facet(journal.clone()),
        )
        .unwrap();
    assert_eq!(
        revived.ask(0).await.unwrap(),
        115,
        "state rebuilt from snapshot + replay"
    );
    assert_eq!(
        *journal.replayed.lock(),
        vec![true, false],
        "one replayed entry, then live"
    );
    node.shutdown().await;
}
