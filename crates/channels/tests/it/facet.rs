//! An actor emits events through its EventEmitterFacet, scoped to its tenant.

use std::time::Duration;

use plexspaces_channels::{ChannelId, Channels, EventEmitter, EventEmitterFacet, Outgoing};
use plexspaces_core::{Actor, BoxError, Context, Node, SpawnOptions};

struct Orders;

impl Actor for Orders {
    type Msg = String;
    type Reply = String;

    async fn handle_call(
        &mut self,
        order: String,
        ctx: &mut Context<Self>,
    ) -> Result<Option<String>, BoxError> {
        let events = ctx.service::<EventEmitter>().ok_or("no event emitter")?;
        let id = events
            .emit(
                "orders",
                Outgoing::new(order).header("type", "order_placed"),
            )
            .await?;
        Ok(Some(id))
    }
}

#[tokio::test]
async fn an_actor_emits_on_its_tenants_topic() {
    let channels = Channels::memory();
    let node = Node::builder("emitter").build().await.expect("node");
    let facet = EventEmitterFacet::new(channels.clone(), "acme", "shop").expect("facet");
    let actor = node
        .spawn_with(Orders, SpawnOptions::default().facet(facet))
        .expect("spawn");
    let mine = channels
        .topic(ChannelId::new("acme", "shop", "orders").expect("id"))
        .subscribe("billing", "b1")
        .await
        .expect("subscribe");
    let theirs = channels
        .topic(ChannelId::new("globex", "shop", "orders").expect("id"))
        .subscribe("billing", "b1")
        .await
        .expect("subscribe");
    actor.ask("book-42".to_owned()).await.expect("ask");
    let d = mine
        .receive_one(Duration::from_secs(5))
        .await
        .expect("receive")
        .expect("event");
    assert_eq!(d.message.payload, "book-42");
    assert_eq!(
        d.message.headers.get("type").map(String::as_str),
        Some("order_placed")
    );
    mine.ack(&d).await.expect("ack");
    assert!(theirs
        .receive_one(Duration::from_millis(50))
        .await
        .expect("receive")
        .is_none());
    node.shutdown().await;
}
