//! Actors reach tuple spaces through their context, scoped by tenant and namespace.

use std::time::Duration;

use plexspaces_core::{Actor, BoxError, Context, Node, SpawnOptions};
use plexspaces_tuplespace::{template, tuple, SpaceId, Spaces, TupleSpaceContext, TupleSpaceFacet};

/// Squares the numbers it takes from "jobs" and writes the results back.
struct Squarer;

impl Actor for Squarer {
    type Msg = ();
    type Reply = i64;

    async fn handle_call(
        &mut self,
        _: (),
        ctx: &mut Context<Self>,
    ) -> Result<Option<i64>, BoxError> {
        let jobs = ctx.tuple_space("jobs")?;
        let job = jobs
            .take(&template!("job", ?Int), Duration::from_secs(5))
            .await?;
        let n = job
            .get(1)
            .and_then(|v| v.as_int())
            .ok_or("job without a number")?;
        jobs.write(tuple!("done", n, n * n)).await?;
        Ok(Some(n * n))
    }
}

#[tokio::test]
async fn an_actor_uses_the_space_of_its_facets_tenant() {
    let spaces = Spaces::memory();
    let node = Node::builder("ts").build().await.unwrap();
    let facet = TupleSpaceFacet::new(spaces.clone(), "acme", "math").unwrap();
    let squarer = node
        .spawn_with(Squarer, SpawnOptions::default().facet(facet))
        .unwrap();
    let acme = spaces.space(SpaceId::new("acme", "math", "jobs").unwrap());
    let other = spaces.space(SpaceId::new("globex", "math", "jobs").unwrap());
    other.write(tuple!("job", 3)).await.unwrap();
    acme.write(tuple!("job", 7)).await.unwrap();
    assert_eq!(squarer.ask(()).await.unwrap(), 49);
    assert_eq!(
        acme.take_if_exists(&template!("done", 7, ?Int))
            .await
            .unwrap(),
        Some(tuple!("done", 7, 49))
    );
    assert_eq!(
        other.count(&template!("job", ?Int)).await.unwrap(),
        1,
        "another tenant's job untouched"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn without_a_facet_the_node_service_is_used_and_without_either_a_typed_error() {
    let node = Node::builder("ts2").build().await.unwrap();
    let squarer = node.spawn(Squarer).unwrap();
    let err = squarer.ask(()).await.unwrap_err();
    assert!(err.to_string().contains("no tuple space"), "{err}");

    let spaces = Spaces::memory();
    node.insert_service(std::sync::Arc::new(spaces.clone()));
    let squarer = node.spawn(Squarer).unwrap();
    spaces
        .space(SpaceId::new("default", "default", "jobs").unwrap())
        .write(tuple!("job", 5))
        .await
        .unwrap();
    assert_eq!(squarer.ask(()).await.unwrap(), 25);
    node.shutdown().await;
}
