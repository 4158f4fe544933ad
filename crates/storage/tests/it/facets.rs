//! Actors reach key-value and blob storage through their facets, scoped to one tenant.

use std::sync::Arc;

use bytes::Bytes;
use plexspaces_core::{Actor, BoxError, Context, Node, SpawnOptions};
use plexspaces_storage::{
    BlobStorageFacet, Blobs, KeyValue, KeyValueFacet, MemoryKeyValue, Scope, ScopedBlobs,
    ScopedKeyValue,
};

/// Counts visits in its key-value store and archives each visitor's name as a blob.
struct Visits;

impl Actor for Visits {
    type Msg = String;
    type Reply = i64;

    async fn handle_call(
        &mut self,
        who: String,
        ctx: &mut Context<Self>,
    ) -> Result<Option<i64>, BoxError> {
        let kv = ctx
            .service::<ScopedKeyValue>()
            .ok_or("no key-value facet")?;
        let n = kv.increment("visits", 1).await?;
        if let Some(blobs) = ctx.service::<ScopedBlobs>() {
            blobs
                .put(&format!("visitors/{n}"), Bytes::from(who.into_bytes()))
                .await?;
        }
        Ok(Some(n))
    }
}

#[tokio::test]
async fn an_actor_uses_the_stores_of_its_facets_scope() {
    let kv = Arc::new(MemoryKeyValue::new());
    let blobs = Blobs::memory();
    let acme = Scope::new("acme", "web").expect("scope");
    let globex = Scope::new("globex", "web").expect("scope");
    let node = Node::builder("storage-facets").build().await.expect("node");
    let actor = node
        .spawn_with(
            Visits,
            SpawnOptions::default()
                .facet(KeyValueFacet::new(kv.clone(), acme.clone()))
                .facet(BlobStorageFacet::new(blobs.clone(), acme.clone())),
        )
        .expect("spawn");
    kv.put(&globex, "visits", b"100", Default::default())
        .await
        .expect("other tenant");
    assert_eq!(actor.ask("ann".to_owned()).await.expect("ask"), 1);
    assert_eq!(actor.ask("bob".to_owned()).await.expect("ask"), 2);
    assert_eq!(
        kv.get(&acme, "visits").await.expect("get").map(|v| v.value),
        Some(b"2".to_vec())
    );
    assert_eq!(
        kv.get(&globex, "visits")
            .await
            .expect("get")
            .map(|v| v.value),
        Some(b"100".to_vec()),
        "another tenant's key untouched"
    );
    assert_eq!(blobs.get(&acme, "visitors/2").await.expect("blob"), "bob");
    assert!(blobs.list(&globex, "").await.expect("list").is_empty());
    node.shutdown().await;
}

#[tokio::test]
async fn without_the_facet_the_handler_gets_an_error() {
    let node = Node::builder("storage-nofacet")
        .build()
        .await
        .expect("node");
    let actor = node.spawn(Visits).expect("spawn");
    let err = actor.ask("x".to_owned()).await.expect_err("no facet");
    assert!(err.to_string().contains("no key-value facet"), "{err}");
    node.shutdown().await;
}
