use serde_json::json;

use crate::common::{eventually, send, token, Setup, TestNode};

#[tokio::test]
async fn readme_counter_sequence_and_method_defaults() {
    let n = TestNode::start(Setup::default()).await;
    let c = &n.client;
    let (status, body) = send(
        c.post(n.url("/api/v1/actors/default/counter/invoke?msg_type=increment"))
            .body(r#"{"amount": 5}"#),
    )
    .await;
    assert_eq!((status, body), (200, json!({"count": 5})));
    // GET reads (default msg_type "get"); the 3-segment path with tenant `default` is the same actor.
    assert_eq!(
        send(c.get(n.url("/api/v1/actors/default/counter"))).await,
        (200, json!({"count": 5}))
    );
    assert_eq!(
        send(c.get(n.url("/api/v1/actors/default/default/counter"))).await,
        (200, json!({"count": 5}))
    );
    // POST and PUT default to "update"; DELETE to "delete".
    assert_eq!(
        send(
            c.put(n.url("/api/v1/actors/default/counter"))
                .body(r#"{"count": 10}"#)
        )
        .await,
        (200, json!({"count": 10}))
    );
    assert_eq!(
        send(
            c.post(n.url("/api/v1/actors/default/counter"))
                .body(r#"{"count": 11}"#)
        )
        .await,
        (200, json!({"count": 11}))
    );
    // msg_type as a parameter; GET query parameters become the payload.
    assert_eq!(
        send(c.get(n.url("/api/v1/actors/default/counter?msg_type=increment&amount=4"))).await,
        (200, json!({"count": 15}))
    );
    assert_eq!(
        send(c.delete(n.url("/api/v1/actors/default/counter"))).await,
        (200, json!({"count": 0}))
    );
    // Another key is another actor.
    assert_eq!(
        send(c.post(n.url("/api/v1/actors/default/counter/invoke?msg_type=increment&key=b"))).await,
        (200, json!({"count": 1}))
    );
    assert_eq!(
        send(c.get(n.url("/api/v1/actors/default/counter"))).await,
        (200, json!({"count": 0}))
    );
    n.handle.shutdown().await;
}

#[tokio::test]
async fn bad_input_is_400_with_a_json_error() {
    let n = TestNode::start(Setup::default()).await;
    let c = &n.client;
    let cases = [
        (
            c.post(n.url("/api/v1/actors/ns/counter/invoke?msg_type=increment"))
                .body("{nope"),
            "decode",
        ),
        (
            c.post(n.url("/api/v1/actors/ns/counter/invoke?msg_type=increment"))
                .body(r#"{"amount":"x"}"#),
            "decode",
        ),
        (
            c.post(n.url("/api/v1/actors/ns/counter/invoke?msg_type=explode"))
                .body("{}"),
            "unknown_msg_type",
        ),
        (
            c.post(n.url("/api/v1/actors/ns/counter/invoke")).body("{}"),
            "bad_request",
        ),
        (
            c.get(n.url("/api/v1/actors/ns/counter?timeout_ms=soon")),
            "bad_request",
        ),
        (
            c.get(n.url("/api/v1/actors/ns/counter?timeout_ms=5")),
            "bad_request",
        ),
        (
            c.get(n.url("/api/v1/actors/ns/counter?key=a%00b")),
            "bad_request",
        ),
        (
            c.post(n.url("/api/v1/actors/ns/counter/invoke?msg_type=increment"))
                .header("Idempotency-Key", ""),
            "bad_request",
        ),
        (
            c.get(n.url("/api/v1/actors/ns/counter?fire_and_forget=maybe")),
            "bad_request",
        ),
        (
            c.get(n.url("/api/v1/actors/ns/counter?msg_type=")),
            "bad_request",
        ),
    ];
    for (req, code) in cases {
        let (status, body) = send(req).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["code"], code, "{body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    // The actor was not disturbed by bad input.
    assert_eq!(
        send(c.get(n.url("/api/v1/actors/ns/counter"))).await,
        (200, json!({"count": 0}))
    );
    n.handle.shutdown().await;
}

#[tokio::test]
async fn unknown_types_and_routes_are_404_and_big_bodies_413() {
    let n = TestNode::start(Setup {
        max_body: Some(64),
        ..Setup::default()
    })
    .await;
    let c = &n.client;
    let (status, body) = send(c.get(n.url("/api/v1/actors/default/nosuchtype"))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (404, Some("unknown_actor_type"))
    );
    let (status, body) = send(c.get(n.url("/api/v2/whatever"))).await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
    let big = format!(r#"{{"amount": 1, "pad": "{}"}}"#, "x".repeat(200));
    let (status, body) = send(
        c.post(n.url("/api/v1/actors/default/counter/invoke?msg_type=increment"))
            .body(big),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large")),
        "{body}"
    );
    n.handle.shutdown().await;
}

#[tokio::test]
async fn fire_and_forget_is_202_and_is_delivered() {
    let n = TestNode::start(Setup::default()).await;
    let c = n.client.clone();
    let (status, body) = send(
        c.post(
            n.url("/api/v1/actors/default/counter/invoke?msg_type=increment&fire_and_forget=true"),
        )
        .body(r#"{"amount": 3}"#),
    )
    .await;
    assert_eq!((status, body), (202, json!({"accepted": true})));
    let url = n.url("/api/v1/actors/default/counter");
    assert!(eventually(|| async { send(c.get(&url)).await.1 == json!({"count": 3}) }).await);
    n.handle.shutdown().await;
}

#[tokio::test]
async fn full_mailbox_is_429_and_slow_actor_is_504() {
    let n = TestNode::start(Setup::default()).await;
    let c = n.client.clone();
    // The probe has a mailbox of 1: one request in the handler, one queued, the next refused.
    let first = tokio::spawn(send(
        c.post(n.url("/api/v1/actors/default/probe/invoke?msg_type=block")),
    ));
    let key = n
        .handle
        .registry()
        .resolve("default", "default", "probe", "default")
        .unwrap();
    let registry = n.handle.registry().clone();
    assert!(eventually(|| async { registry.get(&key).is_some() }).await);
    let pid = registry.get(&key).unwrap().pids()[0].clone();
    // Wait until the handler has taken the first message (the mailbox is empty again).
    let metrics_url = n.url("/metrics");
    assert!(
        eventually(|| async {
            pid.mailbox_len() == 0
                && send(c.get(&metrics_url))
                    .await
                    .1
                    .as_str()
                    .is_some_and(|m| m.contains("plexspaces_http_requests_total"))
        })
        .await
    );
    let second = tokio::spawn(send(
        c.post(n.url("/api/v1/actors/default/probe/invoke?msg_type=ping")),
    ));
    assert!(eventually(|| async { pid.mailbox_len() == 1 }).await);
    let (status, body) =
        send(c.post(n.url("/api/v1/actors/default/probe/invoke?msg_type=ping"))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("mailbox_full")),
        "{body}"
    );
    n.gate.add_permits(1);
    assert_eq!(first.await.unwrap(), (200, json!({"released": true})));
    assert_eq!(second.await.unwrap().0, 200);

    // A reply slower than timeout_ms is a 504.
    let (status, body) = send(
        c.post(n.url("/api/v1/actors/default/probe/invoke?msg_type=block&timeout_ms=100&key=slow")),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (504, Some("timeout")),
        "{body}"
    );
    n.gate.add_permits(1);
    n.handle.shutdown().await;
}

#[tokio::test]
async fn health_ready_metrics_and_openapi() {
    let n = TestNode::start(Setup::default()).await;
    let c = &n.client;
    assert_eq!(send(c.get(n.url("/health"))).await.0, 200);
    assert_eq!(
        send(c.get(n.url("/ready"))).await,
        (200, json!({"status": "ready"}))
    );
    send(c.post(n.url("/api/v1/actors/default/counter/invoke?msg_type=increment"))).await;
    let (status, text) = send(c.get(n.url("/metrics"))).await;
    assert_eq!(status, 200);
    let text = text.as_str().unwrap().to_owned();
    for metric in [
        "plexspaces_http_requests_total",
        "plexspaces_http_request_duration_seconds",
        "plexspaces_actor_messages_total",
        "route=\"/api/v1/actors/{p1}/{p2}/invoke\"",
    ] {
        assert!(text.contains(metric), "{metric} missing from /metrics");
    }
    let served = c
        .get(n.url("/api/v1/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let file = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/openapi.json"
    ))
    .unwrap();
    assert_eq!(served, file);
    let doc: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert!(doc["paths"]["/api/v1/actors/{tenant_id}/{namespace}/{actor_type}"]["get"].is_object());
    // Every GET route the router serves is described.
    for path in [
        "/health",
        "/ready",
        "/metrics",
        "/api/v1/openapi.json",
        "/dashboard",
        "/api/v1/dashboard/summary",
        "/api/v1/cluster/members",
    ] {
        assert!(
            doc["paths"][path]["get"].is_object(),
            "{path} not in openapi.json"
        );
        let status = c.get(n.url(path)).send().await.unwrap().status().as_u16();
        assert_eq!(status, 200, "{path}");
    }
    n.handle.shutdown().await;
}

#[tokio::test]
async fn shutting_down_is_503_and_in_flight_requests_finish() {
    let n = TestNode::start(Setup::default()).await;
    let c = n.client.clone();
    let in_flight = tokio::spawn(send(
        c.post(n.url("/api/v1/actors/default/probe/invoke?msg_type=block")),
    ));
    let key = n
        .handle
        .registry()
        .resolve("default", "default", "probe", "default")
        .unwrap();
    let registry = n.handle.registry().clone();
    assert!(
        eventually(|| async {
            registry
                .get(&key)
                .is_some_and(|a| a.pids()[0].mailbox_len() == 0)
        })
        .await
    );
    let handle = n.handle.clone();
    let shutdown = tokio::spawn(async move { handle.shutdown().await });
    // While the in-flight request runs, new work is refused: 503 on a kept-alive
    // connection, or no connection at all once the listener stopped accepting.
    let ready_url = n.url("/ready");
    let refused = eventually(|| async {
        match c.get(&ready_url).send().await {
            Ok(r) if r.status().as_u16() == 503 => {
                let body: serde_json::Value = r.json().await.unwrap();
                assert_eq!(body["code"], "shutting_down");
                true
            }
            Ok(_) => false,
            Err(_) => true,
        }
    })
    .await;
    assert!(refused, "new work was still accepted during shutdown");
    assert!(
        !shutdown.is_finished(),
        "shutdown waits for the in-flight request"
    );
    n.gate.add_permits(1);
    assert_eq!(in_flight.await.unwrap(), (200, json!({"released": true})));
    shutdown.await.unwrap();
    assert!(n.handle.node().is_shutting_down());
    // After shutdown nothing accepts.
    assert!(c.get(n.url("/health")).send().await.is_err());
}

#[tokio::test]
async fn a_node_that_is_stopping_answers_503() {
    let n = TestNode::start(Setup::default()).await;
    // The runtime is shutting down while the listeners are still up.
    n.handle.node().shutdown().await;
    let (status, body) = send(
        n.client
            .get(n.url("/api/v1/actors/default/counter?key=new")),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (503, Some("shutting_down")),
        "{body}"
    );
    let (status, _) = send(n.client.get(n.url("/ready"))).await;
    assert_eq!(status, 503);
    n.handle.shutdown().await;
}

#[tokio::test]
async fn tenants_are_isolated_without_auth() {
    let n = TestNode::start(Setup::default()).await;
    let c = &n.client;
    let inc = |tenant: &str| {
        c.post(n.url(&format!(
            "/api/v1/actors/{tenant}/shop/counter/invoke?msg_type=increment"
        )))
        .body(r#"{"amount": 7}"#)
    };
    assert_eq!(send(inc("acme")).await, (200, json!({"count": 7})));
    assert_eq!(
        send(c.get(n.url("/api/v1/actors/globex/shop/counter"))).await,
        (200, json!({"count": 0}))
    );
    assert_eq!(
        send(c.get(n.url("/api/v1/actors/shop/counter"))).await,
        (200, json!({"count": 0}))
    );
    // Namespaces separate too.
    assert_eq!(
        send(c.get(n.url("/api/v1/actors/acme/other/counter"))).await,
        (200, json!({"count": 0}))
    );
    assert_eq!(
        send(c.get(n.url("/api/v1/actors/acme/shop/counter"))).await,
        (200, json!({"count": 7}))
    );
    n.handle.shutdown().await;
}

#[tokio::test]
async fn jwt_auth_401_403_and_tenant_from_claim() {
    let n = TestNode::start(Setup {
        auth: true,
        rsa: true,
        ..Setup::default()
    })
    .await;
    let c = &n.client;
    let acme = token("acme", 300);
    let url = |p: &str| n.url(p);
    // The token's tenant: on the 3-segment path it must match; on the 2-segment path it is used.
    assert_eq!(
        send(
            c.post(url(
                "/api/v1/actors/acme/shop/counter/invoke?msg_type=increment"
            ))
            .bearer_auth(&acme)
            .body(r#"{"amount":2}"#)
        )
        .await,
        (200, json!({"count": 2}))
    );
    assert_eq!(
        send(c.get(url("/api/v1/actors/shop/counter")).bearer_auth(&acme)).await,
        (200, json!({"count": 2}))
    );
    let (status, body) = send(
        c.get(url("/api/v1/actors/globex/shop/counter"))
            .bearer_auth(&acme),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    // Another tenant's token sees its own, empty, counter.
    let globex = token("globex", 300);
    assert_eq!(
        send(
            c.get(url("/api/v1/actors/shop/counter"))
                .bearer_auth(&globex)
        )
        .await,
        (200, json!({"count": 0}))
    );
    // Missing, forged, expired, garbage: 401.
    let forged = plexspaces_node::auth::mint_hs256(
        &plexspaces_node::auth::TokenSpec {
            tenant: "acme",
            tenant_claim: "tenant_id",
            subject: "x",
            ttl_secs: 300,
            issuer: None,
            operator: false,
            roles: &[],
        },
        "not-the-secret",
    )
    .unwrap();
    let expired = token("acme", -60);
    for req in [
        c.get(url("/api/v1/actors/shop/counter")),
        c.get(url("/api/v1/actors/shop/counter"))
            .bearer_auth(&forged),
        c.get(url("/api/v1/actors/shop/counter"))
            .bearer_auth(&expired),
        c.get(url("/api/v1/actors/shop/counter"))
            .bearer_auth("a.b.c"),
        c.get(url("/api/v1/actors/shop/counter"))
            .header("authorization", "Basic YTpi"),
    ] {
        let (status, body) = send(req).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("unauthenticated")),
            "{body}"
        );
        assert!(!body["message"].as_str().unwrap_or("").contains(&acme));
    }
    // RS256 tokens verify with the configured public key.
    let pem = std::fs::read(crate::common::fixture("rsa_private.pem")).unwrap();
    let rs = plexspaces_node::auth::mint_rs256(
        &plexspaces_node::auth::TokenSpec {
            tenant: "acme",
            tenant_claim: "tenant_id",
            subject: "x",
            ttl_secs: 300,
            issuer: None,
            operator: false,
            roles: &[],
        },
        &pem,
    )
    .unwrap();
    assert_eq!(
        send(
            c.get(url("/api/v1/actors/acme/shop/counter"))
                .bearer_auth(&rs)
        )
        .await,
        (200, json!({"count": 2}))
    );
    n.handle.shutdown().await;
}

/// Errors axum or hyper would answer before a handler runs are JSON `{code, message}` too.
#[tokio::test]
async fn router_rejections_are_json_errors() {
    let n = TestNode::start(Setup::default()).await;
    let c = &n.client;
    // A path segment that is not UTF-8, on every actor route shape.
    for (method, path) in [
        ("POST", "/api/v1/actors/ns/%FF/invoke?msg_type=get"),
        ("POST", "/api/v1/actors/default/ns/%FF/invoke?msg_type=get"),
        ("POST", "/api/v1/actors/%FF/counter"),
        ("GET", "/api/v1/workflows/%FF/w1"),
    ] {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let (status, body) = send(c.request(method, n.url(path)).body("{}")).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["code"], "bad_request", "{path}: {body}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    // A wrong method on a known route: 405, JSON, and the Allow header kept.
    let resp = c.delete(n.url("/health")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert!(resp.headers().contains_key("allow"), "{:?}", resp.headers());
    let body: serde_json::Value = resp.json().await.expect("a JSON body");
    assert_eq!(body["code"], "method_not_allowed", "{body}");
    let (status, body) = send(c.get(n.url("/api/v1/actors/ns/counter/invoke"))).await;
    assert_eq!((status, &body["code"]), (405, &json!("method_not_allowed")));
    // A URI too long: 414, JSON.
    let long = format!("/api/v1/actors/ns/counter?key={}", "k".repeat(20_000));
    let (status, body) = send(c.get(n.url(&long))).await;
    assert_eq!(
        (status, &body["code"]),
        (414, &json!("uri_too_long")),
        "{body}"
    );
    n.handle.shutdown().await;
}

/// Requests with made-up methods, sent without credentials, add no series to /metrics.
#[tokio::test]
async fn metrics_labels_come_from_a_closed_set() {
    let n = TestNode::start(Setup {
        auth: true,
        ..Setup::default()
    })
    .await;
    let c = &n.client;
    let metrics = || async {
        c.get(n.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    for i in 0..50 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        let _ = c
            .request(method, n.url(&format!("/no/such/route/{i}")))
            .send()
            .await
            .unwrap();
        let _ = c
            .get(n.url(&format!("/api/v1/actors/ns/counter?key=k{i}")))
            .send()
            .await
            .unwrap();
    }
    let page = metrics().await;
    assert!(!page.contains("MADEUP"), "a raw method became a label");
    assert!(
        !page.contains("/no/such/route"),
        "a raw path became a label"
    );
    assert!(!page.contains("k17"), "a query value became a label");
    assert!(
        page.contains("method=\"other\""),
        "made-up methods count as other"
    );
    // Every label value is one of a small set: series do not grow with requests.
    let series = |page: &str| {
        page.lines()
            .filter(|l| l.starts_with("plexspaces_http_requests_total{"))
            .count()
    };
    let before = series(&page);
    for i in 50..100 {
        let method = reqwest::Method::from_bytes(format!("MADEUP{i}").as_bytes()).unwrap();
        let _ = c.request(method, n.url("/x")).send().await.unwrap();
    }
    assert_eq!(
        series(&metrics().await),
        before + 1,
        "only /metrics' own GET series may be new"
    );
    n.handle.shutdown().await;
}

/// The 401 message names the Bearer scheme intact: the masker hides values, not words.
#[tokio::test]
async fn the_missing_token_message_is_not_mangled() {
    let n = TestNode::start(Setup {
        auth: true,
        ..Setup::default()
    })
    .await;
    let (status, body) = send(n.client.get(n.url("/api/v1/actors/ns/counter"))).await;
    assert_eq!(status, 401);
    assert_eq!(
        body["message"],
        "unauthenticated: missing authorization header (Bearer token)"
    );
    n.handle.shutdown().await;
}

/// With tenant A's token, the dashboard shows A's numbers only; node-wide figures need the
/// operator claim.
#[tokio::test]
async fn a_tenant_sees_only_its_own_numbers() {
    let n = TestNode::start(Setup {
        auth: true,
        ..Setup::default()
    })
    .await;
    let c = &n.client;
    let (a, b) = (token("tenant-a", 300), token("tenant-b", 300));
    for _ in 0..2 {
        let (status, _) = send(
            c.post(n.url("/api/v1/actors/ns/counter/invoke?msg_type=increment"))
                .bearer_auth(&a)
                .body(r#"{"amount": 1}"#),
        )
        .await;
        assert_eq!(status, 200);
    }
    for _ in 0..5 {
        let (status, _) = send(
            c.post(n.url("/api/v1/actors/ns/counter/invoke?msg_type=increment"))
                .bearer_auth(&b)
                .body(r#"{"amount": 1}"#),
        )
        .await;
        assert_eq!(status, 200);
    }
    let summary = |token: String| {
        let req = c.get(n.url("/api/v1/dashboard/summary")).bearer_auth(token);
        async move {
            let (status, body) = send(req).await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let counter = |s: &serde_json::Value| {
        s["types"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["actor_type"] == "counter")
            .cloned()
            .unwrap()
    };
    let seen_by_a = summary(a.clone()).await;
    assert_eq!(counter(&seen_by_a)["messages"], 2, "{seen_by_a}");
    assert_eq!(seen_by_a["messages_total"], 2, "{seen_by_a}");
    assert_eq!(counter(&seen_by_a)["actors"], 1);
    assert_eq!(seen_by_a["node"]["activations"], 1);
    assert!(seen_by_a["node"]["http_requests"].is_null(), "{seen_by_a}");
    assert!(seen_by_a["node"]["actors_on_node"].is_null(), "{seen_by_a}");
    let ids: Vec<&str> = seen_by_a["actors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["tenant-a"]);

    let seen_by_operator = summary(crate::common::operator_token("tenant-a")).await;
    assert!(counter(&seen_by_operator)["messages"].as_u64().unwrap() >= 7);
    assert_eq!(counter(&seen_by_operator)["actors"], 2);
    assert!(seen_by_operator["node"]["http_requests"].as_u64().unwrap() >= 7);
    n.handle.shutdown().await;
}
