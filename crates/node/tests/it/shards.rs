//! Shard groups served by the node, over HTTP and over gRPC: create, bulk update, map and
//! scatter-gather queries, tenant scoping, bad input.

use plexspaces_proto::v1 as pb;
use plexspaces_proto::v1::shard_service_client::ShardServiceClient;
use serde_json::json;
use tonic::Code;

use crate::common::{send, token, Setup, TestNode};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_groups_over_http_are_tenant_scoped() {
    let n = TestNode::start(Setup {
        auth: true,
        ..Setup::default()
    })
    .await;
    let a = format!("Bearer {}", token("acme", 300));
    let b = format!("Bearer {}", token("other", 300));
    let c = &n.client;

    let (status, info) = send(
        c.post(n.url("/api/v1/shards/sales"))
            .header("authorization", &a)
            .json(&json!({"name": "orders", "shards": 4,
                          "strategy": {"kind": "range", "bounds": ["g", "n", "t"]}})),
    )
    .await;
    assert_eq!(status, 201, "{info}");
    assert_eq!(info["shard_ids"].as_array().map(Vec::len), Some(4));
    assert_eq!(info["strategy"]["kind"], "range");

    // Same name again: 409. Another tenant may use the name: it is its own group.
    let (status, body) = send(
        c.post(n.url("/api/v1/shards/sales"))
            .header("authorization", &a)
            .json(&json!({"name": "orders", "shards": 2})),
    )
    .await;
    assert_eq!(status, 409, "{body}");

    let items: Vec<_> = ["apple", "grape", "melon", "nut", "peach", "tea", "zucchini"]
        .iter()
        .enumerate()
        .map(|(i, k)| json!({"key": k, "value": i + 1}))
        .collect();
    let (status, report) = send(
        c.post(n.url("/api/v1/shards/sales/orders/bulk"))
            .header("authorization", &a)
            .json(&json!({ "items": items })),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["applied"], 7);
    assert_eq!(report["failed"], 0);
    let per: Vec<u64> = report["shards"]
        .as_array()
        .expect("shards")
        .iter()
        .map(|s| s["applied"].as_u64().expect("applied"))
        .collect();
    // [.., g) apple; [g, n) grape melon; [n, t) nut peach; [t, ..) tea zucchini
    assert_eq!(per, vec![1, 2, 2, 2]);

    let (status, sum) = send(
        c.post(n.url("/api/v1/shards/sales/orders/query"))
            .header("authorization", &a)
            .json(&json!({"query": {"op": "sum"}, "mode": "map"})),
    )
    .await;
    assert_eq!(status, 200, "{sum}");
    assert_eq!(sum["result"]["sum"], 28.0);
    assert_eq!(sum["answered"], json!([0, 1, 2, 3]));
    assert_eq!(sum["failed"], json!([]));

    let (status, scan) = send(
        c.post(n.url("/api/v1/shards/sales/orders/query"))
            .header("authorization", &a)
            .json(
                &json!({"query": {"op": "scan", "prefix": "", "limit": 100}, "timeout_ms": 2000}),
            ),
    )
    .await;
    assert_eq!(status, 200, "{scan}");
    let keys: Vec<&str> = scan["result"]["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|e| e[0].as_str().expect("key"))
        .collect();
    assert_eq!(
        keys,
        vec!["apple", "grape", "melon", "nut", "peach", "tea", "zucchini"]
    );

    // Another tenant does not see acme's group.
    let (status, _) = send(
        c.get(n.url("/api/v1/shards/sales/orders"))
            .header("authorization", &b),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = send(
        c.post(n.url("/api/v1/shards/sales/orders/query"))
            .header("authorization", &b)
            .json(&json!({"query": {"op": "count"}})),
    )
    .await;
    assert_eq!(status, 404);
    // No token: 401.
    let (status, _) = send(c.get(n.url("/api/v1/shards/sales/orders"))).await;
    assert_eq!(status, 401);

    // Bad input: 400 with a JSON body, never a panic.
    for bad in [
        json!({"name": "x y", "shards": 2}),
        json!({"name": "ok", "shards": 0}),
        json!({"name": "ok", "shards": 65}),
        json!({"name": "ok", "shards": 3, "strategy": {"kind": "range", "bounds": ["b", "a"]}}),
        json!({"name": "ok", "shards": 3, "strategy": {"kind": "consistent_hash", "vnodes": 0}}),
        json!({"name": "ok", "shards": 3, "strategy": {"kind": "nope"}}),
        json!({"name": "ok"}),
        json!({"name": "ok", "shards": 2, "strategy": {"kind": "hash", "extra": 1}}),
    ] {
        let (status, body) = send(
            c.post(n.url("/api/v1/shards/sales"))
                .header("authorization", &a)
                .json(&bad),
        )
        .await;
        assert_eq!(status, 400, "{bad} -> {body}");
        assert_eq!(body["code"], "bad_request", "{body}");
    }
    for bad in [
        json!({"query": {"op": "nope"}}),
        json!({"query": {"op": "count"}, "mode": "all"}),
        json!({}),
    ] {
        let (status, body) = send(
            c.post(n.url("/api/v1/shards/sales/orders/query"))
                .header("authorization", &a)
                .json(&bad),
        )
        .await;
        assert_eq!(status, 400, "{bad} -> {body}");
    }

    let (status, _) = send(
        c.delete(n.url("/api/v1/shards/sales/orders"))
            .header("authorization", &a),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = send(
        c.get(n.url("/api/v1/shards/sales/orders"))
            .header("authorization", &a),
    )
    .await;
    assert_eq!(status, 404);
    n.handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shard_groups_over_grpc() {
    let n = TestNode::start(Setup::default()).await;
    let mut c = ShardServiceClient::connect(n.grpc_endpoint())
        .await
        .expect("connect");
    let info = c
        .create_group(pb::CreateShardGroupRequest {
            namespace: String::new(),
            name: "users".into(),
            shards: 8,
            strategy: "consistent_hash".into(),
            vnodes: 0,
            bounds: vec![],
        })
        .await
        .expect("create")
        .into_inner();
    assert_eq!(info.shard_ids.len(), 8);
    assert_eq!(
        (info.strategy.as_str(), info.vnodes),
        ("consistent_hash", 64)
    );
    assert_eq!(info.namespace, "default");

    let items = (0..5000)
        .map(|i| pb::ShardItem {
            key: format!("user-{i}"),
            value_json: "2".into(),
        })
        .collect();
    let report = c
        .bulk_update(pb::BulkUpdateRequest {
            namespace: "default".into(),
            name: "users".into(),
            items,
        })
        .await
        .expect("bulk")
        .into_inner();
    assert_eq!(
        (report.submitted, report.applied, report.failed),
        (5000, 5000, 0)
    );
    assert_eq!(report.shards.len(), 8);

    let answer = c
        .query(pb::ShardQueryRequest {
            namespace: String::new(),
            name: "users".into(),
            query_json: r#"{"op":"count"}"#.into(),
            timeout_ms: 0,
            mode: "map".into(),
        })
        .await
        .expect("query")
        .into_inner();
    assert_eq!(answer.result_json, r#"{"count":5000}"#);
    assert_eq!(answer.answered.len(), 8);
    assert!(answer.failed.is_empty());

    let get = c
        .query(pb::ShardQueryRequest {
            namespace: String::new(),
            name: "users".into(),
            query_json: r#"{"op":"get","keys":["user-7","missing"]}"#.into(),
            timeout_ms: 1000,
            mode: String::new(),
        })
        .await
        .expect("get")
        .into_inner();
    assert_eq!(get.result_json, r#"{"entries":[["user-7",2]]}"#);

    let err = c
        .query(pb::ShardQueryRequest {
            namespace: String::new(),
            name: "users".into(),
            query_json: "{".into(),
            timeout_ms: 0,
            mode: String::new(),
        })
        .await
        .expect_err("bad json");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c
        .bulk_update(pb::BulkUpdateRequest {
            namespace: String::new(),
            name: "users".into(),
            items: vec![pb::ShardItem {
                key: "k".into(),
                value_json: "not json".into(),
            }],
        })
        .await
        .expect_err("bad value");
    assert_eq!(err.code(), Code::InvalidArgument);
    let err = c
        .get_group(pb::ShardGroupRef {
            namespace: String::new(),
            name: "nobody".into(),
        })
        .await
        .expect_err("unknown");
    assert_eq!(err.code(), Code::NotFound);
    let err = c
        .create_group(pb::CreateShardGroupRequest {
            namespace: String::new(),
            name: "users".into(),
            shards: 2,
            strategy: "weird".into(),
            vnodes: 0,
            bounds: vec![],
        })
        .await
        .expect_err("bad strategy");
    assert_eq!(err.code(), Code::InvalidArgument);
    c.delete_group(pb::ShardGroupRef {
        namespace: String::new(),
        name: "users".into(),
    })
    .await
    .expect("delete");
    n.handle.shutdown().await;
}
