use plexspaces_proto::v1::actor_service_client::ActorServiceClient;
use plexspaces_proto::v1::node_service_client::NodeServiceClient;
use plexspaces_proto::v1::{
    ActorAddress, AskRequest, CapacityRequest, DescribeRequest, HealthRequest, ListRequest,
    MetricsSummaryRequest, SpawnRequest, StopRequest, TellRequest,
};
use serde_json::json;
use tonic::Code;

use crate::common::{eventually, token, Setup, TestNode};

fn addr(actor_type: &str, key: &str) -> Option<ActorAddress> {
    Some(ActorAddress {
        tenant: String::new(),
        namespace: "ns".into(),
        actor_type: actor_type.into(),
        key: key.into(),
    })
}

fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    req
}

#[tokio::test]
async fn actor_service_serves_every_rpc() {
    let n = TestNode::start(Setup::default()).await;
    let mut client = ActorServiceClient::connect(n.grpc_endpoint())
        .await
        .unwrap();
    let spawned = client
        .spawn(SpawnRequest {
            address: addr("counter", "g"),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(spawned.activated);
    assert!(spawned.actor_id.ends_with("@node1"), "{}", spawned.actor_id);
    let again = client
        .spawn(SpawnRequest {
            address: addr("counter", "g"),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(!again.activated);
    client
        .tell(TellRequest {
            address: addr("counter", "g"),
            msg_type: "increment".into(),
            payload: br#"{"amount": 2}"#.to_vec().into(),
            content_type: String::new(),
        })
        .await
        .unwrap();
    let ask = |amount: i64| AskRequest {
        address: addr("counter", "g"),
        msg_type: "increment".into(),
        payload: serde_json::to_vec(&json!({ "amount": amount }))
            .unwrap()
            .into(),
        content_type: "application/json".into(),
        timeout_ms: 0,
    };
    let reply = client.ask(ask(3)).await.unwrap().into_inner();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&reply.payload).unwrap(),
        json!({"count": 5})
    );
    let list = client
        .list(ListRequest {
            tenant: String::new(),
            namespace: "ns".into(),
            actor_type: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(list.actors.len(), 1);
    assert_eq!(list.actors[0].actor_id, spawned.actor_id);
    assert_eq!(list.actors[0].kind, "virtual");
    let described = client
        .describe(DescribeRequest {
            address: addr("counter", "g"),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(described.actor.unwrap().lifecycle, "active");
    assert!(
        client
            .stop(StopRequest {
                address: addr("counter", "g")
            })
            .await
            .unwrap()
            .into_inner()
            .stopped
    );
    let err = client
        .describe(DescribeRequest {
            address: addr("counter", "g"),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    // State is intact after the stop.
    let reply = client.ask(ask(0)).await.unwrap().into_inner();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&reply.payload).unwrap(),
        json!({"count": 5})
    );
    // Errors map through the same table as HTTP.
    let mut bad = ask(1);
    bad.msg_type = "explode".into();
    assert_eq!(
        client.ask(bad).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let mut unknown = ask(1);
    unknown.address = addr("nosuch", "");
    assert_eq!(
        client.ask(unknown).await.unwrap_err().code(),
        Code::NotFound
    );
    let mut slow = ask(1);
    slow.address = addr("probe", "slow");
    slow.msg_type = "block".into();
    slow.timeout_ms = 50;
    assert_eq!(
        client.ask(slow).await.unwrap_err().code(),
        Code::DeadlineExceeded
    );
    n.gate.add_permits(1);
    n.handle.shutdown().await;
}

#[tokio::test]
async fn node_service_health_and_reflection() {
    let n = TestNode::start(Setup::default()).await;
    let mut node = NodeServiceClient::connect(n.grpc_endpoint()).await.unwrap();
    let health = node.health(HealthRequest {}).await.unwrap().into_inner();
    assert_eq!(
        (health.status.as_str(), health.node_id.as_str()),
        ("serving", "node1")
    );
    let mut actors = ActorServiceClient::connect(n.grpc_endpoint())
        .await
        .unwrap();
    actors
        .spawn(SpawnRequest {
            address: addr("counter", "a"),
        })
        .await
        .unwrap();
    let capacity = node
        .capacity(CapacityRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(capacity.activation_count, 1);
    assert!(capacity.actor_types.contains(&"counter".to_owned()));
    assert!(capacity.cpus >= 1);
    let summary = node
        .metrics_summary(MetricsSummaryRequest {})
        .await
        .unwrap()
        .into_inner();
    let counter = summary
        .types
        .iter()
        .find(|t| t.actor_type == "counter")
        .unwrap();
    assert_eq!(counter.activations, 1);
    assert!(summary.grpc_requests >= 2);

    // grpc.health.v1
    let channel = tonic::transport::Channel::from_shared(n.grpc_endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let status = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "plexspaces.v1.ActorService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        status.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    // reflection lists our services
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    let mut reflection = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = reflection
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await
        .unwrap()
        .into_inner();
    let resp = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = resp.message_response else {
        panic!("unexpected reflection response");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for svc in [
        "plexspaces.v1.ActorService",
        "plexspaces.v1.NodeService",
        "plexspaces.v1.WorkflowService",
        "grpc.health.v1.Health",
    ] {
        assert!(names.contains(&svc.to_owned()), "{svc} not in {names:?}");
    }
    // Every served service has a health status, the tuple space included.
    let mut health = tonic_health::pb::health_client::HealthClient::new(
        tonic::transport::Channel::from_shared(n.grpc_endpoint())
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    for svc in names.iter().filter(|s| s.starts_with("plexspaces.")) {
        let status = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: svc.clone(),
            })
            .await
            .unwrap_or_else(|e| panic!("no health status for {svc}: {e}"))
            .into_inner();
        assert_eq!(
            status.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "{svc}"
        );
    }
    assert!(names.contains(&"plexspaces.v1.TupleSpaceService".to_owned()));
    n.handle.shutdown().await;
}

/// `MetricsSummary` with a tenant's token counts that tenant's messages only; node-wide
/// request counts need the operator claim.
#[tokio::test]
async fn metrics_summary_is_scoped_to_the_callers_tenant() {
    let n = TestNode::start(Setup {
        auth: true,
        ..Setup::default()
    })
    .await;
    let mut actors = ActorServiceClient::connect(n.grpc_endpoint())
        .await
        .unwrap();
    for (tenant, times) in [("tenant-a", 1), ("tenant-b", 3)] {
        for _ in 0..times {
            actors
                .ask(with_token(
                    AskRequest {
                        address: addr("counter", "k"),
                        msg_type: "increment".into(),
                        payload: br#"{"amount": 1}"#.to_vec().into(),
                        content_type: String::new(),
                        timeout_ms: 0,
                    },
                    &token(tenant, 300),
                ))
                .await
                .unwrap();
        }
    }
    let mut node = NodeServiceClient::connect(n.grpc_endpoint()).await.unwrap();
    let counter = |s: &plexspaces_proto::v1::MetricsSummaryResponse| {
        s.types
            .iter()
            .find(|t| t.actor_type == "counter")
            .cloned()
            .unwrap()
    };
    let seen_by_a = node
        .metrics_summary(with_token(
            MetricsSummaryRequest {},
            &token("tenant-a", 300),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(counter(&seen_by_a).messages, 1);
    assert_eq!(counter(&seen_by_a).activations, 1);
    assert_eq!((seen_by_a.http_requests, seen_by_a.grpc_requests), (0, 0));
    let seen_by_operator = node
        .metrics_summary(with_token(
            MetricsSummaryRequest {},
            &crate::common::operator_token("tenant-a"),
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(counter(&seen_by_operator).messages >= 4);
    assert_eq!(counter(&seen_by_operator).activations, 2);
    assert!(seen_by_operator.grpc_requests >= 5);
    n.handle.shutdown().await;
}

#[tokio::test]
async fn grpc_tenants_are_isolated_and_tokens_checked() {
    let n = TestNode::start(Setup {
        auth: true,
        ..Setup::default()
    })
    .await;
    let mut client = ActorServiceClient::connect(n.grpc_endpoint())
        .await
        .unwrap();
    let acme = token("acme", 300);
    let globex = token("globex", 300);
    client
        .spawn(with_token(
            SpawnRequest {
                address: addr("counter", "x"),
            },
            &acme,
        ))
        .await
        .unwrap();
    let list = |t: &str| {
        with_token(
            ListRequest {
                tenant: String::new(),
                namespace: String::new(),
                actor_type: String::new(),
            },
            t,
        )
    };
    assert_eq!(
        client
            .list(list(&acme))
            .await
            .unwrap()
            .into_inner()
            .actors
            .len(),
        1
    );
    assert_eq!(
        client
            .list(list(&globex))
            .await
            .unwrap()
            .into_inner()
            .actors
            .len(),
        0
    );
    // globex cannot name acme's tenant, nor describe acme's actor through its own.
    let mut foreign = addr("counter", "x");
    if let Some(a) = foreign.as_mut() {
        a.tenant = "acme".into();
    }
    let err = client
        .describe(with_token(DescribeRequest { address: foreign }, &globex))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let err = client
        .describe(with_token(
            DescribeRequest {
                address: addr("counter", "x"),
            },
            &globex,
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    let err = client.list(ListRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = client.list(list(&token("acme", -60))).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let registry = n.handle.registry().clone();
    assert!(eventually(|| async { registry.live_count() == 1 }).await);
    n.handle.shutdown().await;
}

#[tokio::test]
async fn workflow_service_start_signal_result_describe() {
    use plexspaces_proto::v1::workflow_service_client::WorkflowServiceClient;
    use plexspaces_proto::v1::{
        DescribeWorkflowRequest, QueryWorkflowRequest, SignalWorkflowRequest, StartWorkflowRequest,
        UpdateWorkflowRequest, WorkflowResultRequest,
    };
    let n = TestNode::start(Setup::default()).await;
    let mut client = WorkflowServiceClient::connect(n.grpc_endpoint())
        .await
        .unwrap();
    let start = StartWorkflowRequest {
        namespace: String::new(),
        workflow_id: "g-1".into(),
        workflow_type: "approval".into(),
        input_json: r#"{"subject": "grpc", "require_comment": true}"#.into(),
    };
    let started = client.start(start.clone()).await.unwrap().into_inner();
    assert_eq!(
        (started.namespace.as_str(), started.status.as_str()),
        ("default", "running")
    );
    assert!(!started.already_started);
    assert!(
        client
            .start(start)
            .await
            .unwrap()
            .into_inner()
            .already_started
    );

    let status = |client: WorkflowServiceClient<tonic::transport::Channel>| async move {
        let mut client = client;
        client
            .query(QueryWorkflowRequest {
                namespace: "default".into(),
                workflow_id: "g-1".into(),
                name: "status".into(),
            })
            .await
            .map(|r| r.into_inner().value_json)
            .unwrap_or_default()
    };
    assert!(
        eventually(|| {
            let c = client.clone();
            async move { status(c).await == r#""awaiting_comment""# }
        })
        .await
    );
    let update = |payload: &str| UpdateWorkflowRequest {
        namespace: String::new(),
        workflow_id: "g-1".into(),
        name: "comment".into(),
        payload_json: payload.into(),
        update_id: "c-1".into(),
        wait_ms: 0,
    };
    let rejected = client.update(update(r#""""#)).await.unwrap_err();
    assert_eq!(rejected.code(), Code::InvalidArgument, "{rejected:?}");
    let bad_json = client.update(update("{nope")).await.unwrap_err();
    assert_eq!(bad_json.code(), Code::InvalidArgument);
    let answer = client.update(update(r#""ok""#)).await.unwrap().into_inner();
    assert_eq!(answer.update_id, "c-1");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&answer.value_json).unwrap(),
        json!({"accepted": true, "comment": "ok"})
    );

    let signal = SignalWorkflowRequest {
        namespace: String::new(),
        workflow_id: "g-1".into(),
        name: "approve".into(),
        payload_json: r#"{"by": "grpc"}"#.into(),
        dedupe_id: String::new(),
    };
    let seq = client
        .signal(signal.clone())
        .await
        .unwrap()
        .into_inner()
        .seq;
    assert_eq!(seq, 2, "the update was inbox item 1");
    let result = client
        .get_result(WorkflowResultRequest {
            namespace: String::new(),
            workflow_id: "g-1".into(),
            wait_ms: 10_000,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(result.status, "completed");
    let value: serde_json::Value = serde_json::from_str(&result.result_json).unwrap();
    assert_eq!(value["approval"], json!({"by": "grpc"}));
    assert_eq!(value["comment"], "ok");

    let described = client
        .describe(DescribeWorkflowRequest {
            namespace: String::new(),
            workflow_id: "g-1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let info = described.workflow.unwrap();
    assert_eq!(
        (info.workflow_type.as_str(), info.status.as_str(), info.run),
        ("approval", "completed", 1)
    );
    assert_eq!(info.tenant, "default");
    assert!(info.failure.is_none());
    assert_eq!(described.history_events, 6);

    // Error codes: closed, unknown, bad id.
    let closed = client.signal(signal).await.unwrap_err();
    assert_eq!(closed.code(), Code::FailedPrecondition, "{closed:?}");
    let missing = client
        .describe(DescribeWorkflowRequest {
            namespace: String::new(),
            workflow_id: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::NotFound);
    let bad_id = client
        .describe(DescribeWorkflowRequest {
            namespace: String::new(),
            workflow_id: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_id.code(), Code::InvalidArgument);
    n.handle.shutdown().await;
}
