//! The node's key-value, blob and channel services over HTTP and gRPC, tenant-scoped, and
//! the facets the node gives its actors.

use plexspaces_proto::v1 as pb;
use plexspaces_proto::v1::blob_service_client::BlobServiceClient;
use plexspaces_proto::v1::channel_service_client::ChannelServiceClient;
use plexspaces_proto::v1::key_value_service_client::KeyValueServiceClient;
use serde_json::json;

use crate::common::{send, token, Setup, TestNode};

#[tokio::test]
async fn kv_over_http_put_get_cas_increment_ttl_list_delete() {
    let n = TestNode::start(Setup::default()).await;
    let c = &n.client;
    let (s, b) = send(c.put(n.url("/api/v1/kv/app/users/1")).body("alice")).await;
    assert_eq!((s, b["version"].as_u64()), (200, Some(1)), "{b}");

    let resp = c.get(n.url("/api/v1/kv/app/users/1")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-plexspaces-version"], "1");
    assert_eq!(resp.bytes().await.unwrap(), "alice");

    // compare-and-swap: right version wins, stale version is a 409 with the current one
    let (s, b) = send(
        c.put(n.url("/api/v1/kv/app/users/1?if_version=1"))
            .body("bob"),
    )
    .await;
    assert_eq!((s, b["version"].as_u64()), (200, Some(2)), "{b}");
    let (s, b) = send(
        c.put(n.url("/api/v1/kv/app/users/1?if_version=1"))
            .body("eve"),
    )
    .await;
    assert_eq!(s, 409, "{b}");
    assert_eq!(
        (b["code"].as_str(), b["current_version"].as_u64()),
        (Some("conflict"), Some(2))
    );
    let (s, _) = send(
        c.put(n.url("/api/v1/kv/app/users/1?if_version=0"))
            .body("x"),
    )
    .await;
    assert_eq!(s, 409, "if_version=0 only creates");

    // increment
    for want in [5, 3] {
        let delta = if want == 5 { 5 } else { -2 };
        let (s, b) = send(
            c.post(n.url("/api/v1/kv/app/hits"))
                .json(&json!({ "delta": delta })),
        )
        .await;
        assert_eq!((s, b["value"].as_i64()), (200, Some(want)), "{b}");
    }
    let (s, b) = send(
        c.post(n.url("/api/v1/kv/app/users/1"))
            .json(&json!({ "delta": 1 })),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (409, Some("not_an_integer")),
        "{b}"
    );

    // list by prefix: text values as text, bytes as hex
    let (s, _) = send(
        c.put(n.url("/api/v1/kv/app/users/2"))
            .body(vec![0xff_u8, 0x00]),
    )
    .await;
    assert_eq!(s, 200);
    let (s, b) = send(c.get(n.url("/api/v1/kv/app?prefix=users/"))).await;
    assert_eq!(s, 200, "{b}");
    let entries = b["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0]["value"], "bob");
    assert_eq!(entries[1]["value_hex"], "ff00");

    // ttl
    let (s, _) = send(c.put(n.url("/api/v1/kv/app/session?ttl_ms=150")).body("s")).await;
    assert_eq!(s, 200);
    let gone = crate::common::eventually(|| async {
        c.get(n.url("/api/v1/kv/app/session"))
            .send()
            .await
            .unwrap()
            .status()
            == 404
    })
    .await;
    assert!(gone, "the key expires");

    let (s, b) = send(c.delete(n.url("/api/v1/kv/app/users/1"))).await;
    assert_eq!((s, b["deleted"].as_bool()), (200, Some(true)));
    let (s, b) = send(c.get(n.url("/api/v1/kv/app/users/1"))).await;
    assert_eq!((s, b["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn kv_bad_input_is_a_typed_4xx() {
    let n = TestNode::start(Setup::default()).await;
    let c = &n.client;
    for (req, status) in [
        (c.put(n.url("/api/v1/kv/a%20b/k")).body("v"), 400),
        (c.put(n.url("/api/v1/kv/ns/k?ttl_ms=abc")).body("v"), 400),
        (
            c.put(n.url("/api/v1/kv/ns/k?ttl_ms=999999999999999"))
                .body("v"),
            400,
        ),
        (
            c.put(n.url("/api/v1/kv/ns/k?if_version=1&fence=2"))
                .body("v"),
            400,
        ),
        (
            c.put(n.url("/api/v1/kv/ns/k?fence=18446744073709551615"))
                .body("v"),
            400,
        ),
        (
            c.post(n.url("/api/v1/kv/ns/k")).body("{\"delta\": \"x\"}"),
            400,
        ),
        (c.post(n.url("/api/v1/kv/ns/k")).body(""), 400),
        (c.get(n.url("/api/v1/kv/ns?limit=10001")), 400),
        (c.get(n.url("/api/v1/kv/ns/%01")), 400),
        (c.patch(n.url("/api/v1/kv/ns/k")), 405),
    ] {
        let (s, b) = send(req).await;
        assert_eq!(s, status, "{b}");
        assert!(b["code"].is_string(), "{b}");
    }
}

#[tokio::test]
async fn tenants_never_see_each_others_keys_blobs_or_messages() {
    let n = TestNode::start(Setup {
        auth: true,
        ..Setup::default()
    })
    .await;
    let c = &n.client;
    let (a, b) = (token("acme", 300), token("globex", 300));
    let (s, _) = send(
        c.put(n.url("/api/v1/kv/ns/secret"))
            .bearer_auth(&a)
            .body("a"),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = send(c.get(n.url("/api/v1/kv/ns/secret")).bearer_auth(&b)).await;
    assert_eq!(s, 404);
    let (s, _) = send(c.get(n.url("/api/v1/kv/ns/secret"))).await;
    assert_eq!(s, 401);

    let (s, _) = send(
        c.put(n.url("/api/v1/blobs/ns/f.txt"))
            .bearer_auth(&a)
            .body("x"),
    )
    .await;
    assert_eq!(s, 200);
    let (s, body) = send(c.get(n.url("/api/v1/blobs/ns")).bearer_auth(&b)).await;
    assert_eq!((s, body["blobs"].as_array().map(Vec::len)), (200, Some(0)));

    let (s, _) = send(
        c.post(n.url("/api/v1/channels/ns/queues/jobs"))
            .bearer_auth(&a)
            .json(&json!({ "payload": "a's job" })),
    )
    .await;
    assert_eq!(s, 200);
    let (s, body) = send(
        c.post(n.url("/api/v1/channels/ns/queues/jobs/receive"))
            .bearer_auth(&b)
            .json(&json!({ "consumer": "w" })),
    )
    .await;
    assert_eq!(
        (s, body["deliveries"].as_array().map(Vec::len)),
        (200, Some(0))
    );
    let (s, body) = send(
        c.post(n.url("/api/v1/channels/ns/queues/jobs/receive"))
            .bearer_auth(&a)
            .json(&json!({ "consumer": "w" })),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(body["deliveries"][0]["payload"], "a's job");
}

#[tokio::test]
async fn blobs_stream_up_and_down_and_refuse_oversize_uploads() {
    let dir = tempfile::tempdir().unwrap();
    let n = TestNode::start(Setup {
        data_dir: Some(dir.path().to_owned()),
        ..Setup::default()
    })
    .await;
    let c = &n.client;
    // 3 MiB in 64 KiB chunks, as a streamed body
    let data: Vec<u8> = (0..3 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(64 * 1024).map(|c| Ok(c.to_vec())).collect();
    let body = reqwest::Body::wrap_stream(futures::stream::iter(chunks));
    let (s, b) = send(c.put(n.url("/api/v1/blobs/media/a/big.bin")).body(body)).await;
    assert_eq!(
        (s, b["size"].as_u64()),
        (200, Some(data.len() as u64)),
        "{b}"
    );
    // on disk under the data dir, scoped by tenant and namespace
    assert!(dir.path().join("blobs/default/media/a/big.bin").exists());
    let got = c
        .get(n.url("/api/v1/blobs/media/a/big.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap(), data);

    let (s, b) = send(c.get(n.url("/api/v1/blobs/media?prefix=a/"))).await;
    assert_eq!((s, b["blobs"][0]["key"].as_str()), (200, Some("a/big.bin")));
    // (`..` segments never reach the node from an HTTP client: URLs normalise them away;
    // the storage conformance suite refuses traversal keys.)
    for bad in ["/api/v1/blobs/media/a//b", "/api/v1/blobs/media/a/b/"] {
        let (s, b) = send(c.put(n.url(bad)).body("x")).await;
        assert_eq!(s, 400, "{bad}: {b}");
    }
    let (s, _) = send(c.delete(n.url("/api/v1/blobs/media/a/big.bin"))).await;
    assert_eq!(s, 200);
    let (s, b) = send(c.get(n.url("/api/v1/blobs/media/a/big.bin"))).await;
    assert_eq!((s, b["code"].as_str()), (404, Some("not_found")));
}

#[tokio::test]
async fn oversize_blob_upload_is_413_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = plexspaces_node::NodeConfig::default();
    config.http.addr = "127.0.0.1:0".into();
    config.grpc.addr = "127.0.0.1:0".into();
    config.auth.disabled = true;
    config.data_dir = dir.path().to_owned();
    config.blobs.max_blob_bytes = 1024;
    let handle = plexspaces_node::NodeServer::start(config, vec![])
        .await
        .unwrap();
    let url = format!("http://{}/api/v1/blobs/ns/big", handle.http_addr());
    let (s, b) = send(reqwest::Client::new().put(&url).body(vec![7u8; 4096])).await;
    assert_eq!(
        (s, b["code"].as_str()),
        (413, Some("payload_too_large")),
        "{b}"
    );
    let (s, _) = send(reqwest::Client::new().get(&url)).await;
    assert_eq!(s, 404, "nothing stored");
    handle.shutdown().await;
}

#[tokio::test]
async fn channels_over_http_queue_topic_ack_nack_dead_letters() {
    let n = TestNode::start(Setup::default()).await;
    let c = &n.client;
    let q = |p: &str| n.url(&format!("/api/v1/channels/app/queues/jobs{p}"));
    let (s, b) = send(
        c.post(q(""))
            .json(&json!({ "payload": "one", "headers": { "k": "v" } })),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = send(c.post(q("")).json(&json!({ "payload_hex": "00ff" }))).await;
    assert_eq!(s, 200, "{b}");

    let (s, b) = send(
        c.post(q("/receive"))
            .json(&json!({ "consumer": "w1", "max": 10 })),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let d = b["deliveries"].as_array().unwrap().clone();
    assert_eq!(d.len(), 2);
    assert_eq!(
        (d[0]["payload"].as_str(), d[0]["headers"]["k"].as_str()),
        (Some("one"), Some("v"))
    );
    assert_eq!(d[1]["payload_hex"], "00ff");
    assert_eq!(d[0]["attempt"], 1);

    // ack the first; nack the second, which comes back with attempt 2
    let (s, _) = send(
        c.post(q("/ack"))
            .json(&json!({ "receipt": d[0]["receipt"] })),
    )
    .await;
    assert_eq!(s, 200);
    let (s, b) = send(
        c.post(q("/ack"))
            .json(&json!({ "receipt": d[0]["receipt"] })),
    )
    .await;
    assert_eq!(
        (s, b["code"].as_str()),
        (404, Some("unknown_receipt")),
        "acked twice"
    );
    let (s, _) = send(
        c.post(q("/nack"))
            .json(&json!({ "receipt": d[1]["receipt"], "delay_ms": 0 })),
    )
    .await;
    assert_eq!(s, 200);
    let (s, b) = send(
        c.post(q("/receive"))
            .json(&json!({ "consumer": "w2", "wait_ms": 2000 })),
    )
    .await;
    assert_eq!(
        (s, b["deliveries"][0]["attempt"].as_u64()),
        (200, Some(2)),
        "{b}"
    );
    let receipt = b["deliveries"][0]["receipt"].clone();

    // nack until the limit (5 deliveries by default): then it is a dead letter
    let mut receipt = receipt;
    for _ in 0..3 {
        let (s, _) = send(c.post(q("/nack")).json(&json!({ "receipt": receipt }))).await;
        assert_eq!(s, 200);
        let (_, b) = send(
            c.post(q("/receive"))
                .json(&json!({ "consumer": "w2", "wait_ms": 2000 })),
        )
        .await;
        receipt = b["deliveries"][0]["receipt"].clone();
    }
    let (s, _) = send(c.post(q("/nack")).json(&json!({ "receipt": receipt }))).await;
    assert_eq!(s, 200);
    let (_, b) = send(
        c.post(q("/receive"))
            .json(&json!({ "consumer": "w2", "wait_ms": 300 })),
    )
    .await;
    assert_eq!(b["deliveries"].as_array().map(Vec::len), Some(0), "{b}");
    let (s, b) = send(c.get(q("/dead-letters"))).await;
    assert_eq!(s, 200);
    assert_eq!(
        (
            b["dead_letters"][0]["payload_hex"].as_str(),
            b["dead_letters"][0]["deliveries"].as_u64()
        ),
        (Some("00ff"), Some(5)),
        "{b}"
    );

    // topics: every group gets each message published after it subscribed
    let g = |group: &str, p: &str| {
        n.url(&format!(
            "/api/v1/channels/app/topics/news/groups/{group}{p}"
        ))
    };
    for group in ["mail", "sms"] {
        let (s, b) = send(
            c.post(g(group, "/receive"))
                .json(&json!({ "consumer": "c" })),
        )
        .await;
        assert_eq!(
            (s, b["deliveries"].as_array().map(Vec::len)),
            (200, Some(0))
        );
    }
    let (s, _) = send(
        c.post(n.url("/api/v1/channels/app/topics/news"))
            .json(&json!({ "payload": "hi" })),
    )
    .await;
    assert_eq!(s, 200);
    for group in ["mail", "sms"] {
        let (_, b) = send(
            c.post(g(group, "/receive"))
                .json(&json!({ "consumer": "c", "wait_ms": 2000 })),
        )
        .await;
        assert_eq!(b["deliveries"][0]["payload"], "hi", "{group}: {b}");
    }

    // bad input
    for (req, status) in [
        (
            c.post(q(""))
                .json(&json!({ "payload": "a", "payload_hex": "00" })),
            400,
        ),
        (c.post(q("")).json(&json!({ "payload_hex": "0g" })), 400),
        (
            c.post(q("/receive")).json(&json!({ "consumer": "a b" })),
            400,
        ),
        (
            c.post(q("/receive"))
                .json(&json!({ "consumer": "c", "wait_ms": 10001 })),
            400,
        ),
        (
            c.post(q("/receive"))
                .json(&json!({ "consumer": "c", "max": 1001 })),
            400,
        ),
        (
            c.post(q("/ack")).json(&json!({ "receipt": "made-up" })),
            404,
        ),
        (
            c.post(q("/ack"))
                .json(&json!({ "receipt": "1", "delay_ms": 5 })),
            400,
        ),
        (
            c.post(g("queue", "/receive"))
                .json(&json!({ "consumer": "c" })),
            400,
        ),
        (
            c.post(n.url("/api/v1/channels/app/queues/bad.name"))
                .json(&json!({ "payload": "x" })),
            400,
        ),
    ] {
        let (s, b) = send(req).await;
        assert_eq!(s, status, "{b}");
    }
}

#[tokio::test]
async fn grpc_serves_kv_blobs_and_channels() {
    let n = TestNode::start(Setup::default()).await;
    let ep = n.grpc_endpoint();
    let mut kv = KeyValueServiceClient::connect(ep.clone()).await.unwrap();
    let put = |if_version| pb::KvPutRequest {
        namespace: "g".into(),
        key: "k".into(),
        value: b"v".to_vec().into(),
        if_version,
        ..Default::default()
    };
    let r = kv.put(put(Some(0))).await.unwrap().into_inner();
    assert!(r.written);
    let r = kv.put(put(Some(0))).await.unwrap().into_inner();
    assert_eq!((r.written, r.current_version), (false, 1));
    let r = kv
        .get(pb::KvGetRequest {
            namespace: "g".into(),
            key: "k".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((r.found, &r.value[..], r.version), (true, &b"v"[..], 1));
    let err = kv
        .get(pb::KvGetRequest {
            namespace: "bad ns".into(),
            key: "k".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let mut blobs = BlobServiceClient::connect(ep.clone()).await.unwrap();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i % 13) as u8).collect();
    let chunks: Vec<pb::BlobChunk> = data
        .chunks(30_000)
        .enumerate()
        .map(|(i, c)| pb::BlobChunk {
            namespace: if i == 0 { "g".into() } else { String::new() },
            key: if i == 0 {
                "f.bin".into()
            } else {
                String::new()
            },
            data: c.to_vec().into(),
        })
        .collect();
    let m = blobs
        .put(futures::stream::iter(chunks))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(m.size, data.len() as u64);
    let mut stream = blobs
        .get(pb::BlobKeyRequest {
            namespace: "g".into(),
            key: "f.bin".into(),
        })
        .await
        .unwrap()
        .into_inner();
    let mut got = Vec::new();
    while let Some(c) = stream.message().await.unwrap() {
        got.extend_from_slice(&c.data);
    }
    assert_eq!(got, data);
    let err = blobs
        .head(pb::BlobKeyRequest {
            namespace: "g".into(),
            key: "missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    let mut ch = ChannelServiceClient::connect(ep).await.unwrap();
    ch.publish(pb::PublishRequest {
        namespace: "g".into(),
        channel: "q".into(),
        payload: b"\x00\x01".to_vec().into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let target = Some(pb::ChannelTarget {
        namespace: "g".into(),
        channel: "q".into(),
        group: String::new(),
    });
    let r = ch
        .receive(pb::ReceiveRequest {
            target: target.clone(),
            consumer: "c".into(),
            max: 5,
            wait_ms: 1000,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(r.deliveries.len(), 1);
    let d = &r.deliveries[0];
    assert_eq!(&d.message.as_ref().unwrap().payload[..], b"\x00\x01");
    ch.ack(pb::AckRequest {
        target: target.clone(),
        receipt: d.receipt.clone(),
        delay_ms: 0,
    })
    .await
    .unwrap();
    let err = ch
        .ack(pb::AckRequest {
            target,
            receipt: d.receipt.clone(),
            delay_ms: 0,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

/// An actor that uses the facets the node attaches: `save` writes its payload under its
/// key in the key-value store, `blob` stores it as a blob, `emit` publishes it on the
/// topic `events`.
struct Notes;

impl plexspaces_core::Actor for Notes {
    type Msg = (String, Vec<u8>);
    type Reply = serde_json::Value;

    async fn handle_call(
        &mut self,
        (kind, body): (String, Vec<u8>),
        ctx: &mut plexspaces_core::Context<Self>,
    ) -> Result<Option<serde_json::Value>, plexspaces_core::BoxError> {
        let key = "n1";
        match kind.as_str() {
            "save" => {
                let kv = ctx
                    .service::<plexspaces_storage::ScopedKeyValue>()
                    .ok_or("no key-value facet")?;
                let version = kv.put(key, &body).await?;
                Ok(Some(json!({ "version": version })))
            }
            "blob" => {
                let blobs = ctx
                    .service::<plexspaces_storage::ScopedBlobs>()
                    .ok_or("no blob facet")?;
                let meta = blobs.put("note.txt", body.into()).await?;
                Ok(Some(json!({ "size": meta.size })))
            }
            _ => {
                let events = ctx
                    .service::<plexspaces_channels::EventEmitter>()
                    .ok_or("no event emitter")?;
                let id = events
                    .emit("events", plexspaces_channels::Outgoing::new(body))
                    .await?;
                Ok(Some(json!({ "id": id })))
            }
        }
    }

    fn decode(env: &plexspaces_core::Envelope) -> plexspaces_core::Result<(String, Vec<u8>)> {
        Ok((env.msg_type.clone(), env.payload.to_vec()))
    }

    fn encode_reply(
        request_type: &str,
        reply: &serde_json::Value,
    ) -> plexspaces_core::Result<plexspaces_core::Envelope> {
        plexspaces_core::Envelope::json(request_type, reply)
    }
}

#[tokio::test]
async fn actors_reach_the_node_stores_through_their_facets() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = plexspaces_node::NodeConfig::default();
    config.http.addr = "127.0.0.1:0".into();
    config.grpc.addr = "127.0.0.1:0".into();
    config.auth.disabled = true;
    config.data_dir = dir.path().to_owned();
    let handle = plexspaces_node::NodeServer::builder(config)
        .actor_type(plexspaces_node::ActorType::virtual_actor("notes", |_| {
            Notes
        }))
        .start()
        .await
        .unwrap();
    let base = format!("http://{}", handle.http_addr());
    let c = reqwest::Client::new();
    let call = |msg: &str, body: &'static str| {
        c.post(format!(
            "{base}/api/v1/actors/acme/work/notes/invoke?msg_type={msg}&key=n1"
        ))
        .body(body)
    };
    // acme's group `audit` on the topic exists before the actor emits
    let storage = handle
        .node()
        .service::<plexspaces_node::kv::NodeStorage>()
        .unwrap();
    let id = plexspaces_channels::ChannelId::new("acme", "work", "events").unwrap();
    let consumer = storage
        .channels
        .topic(id)
        .subscribe("audit", "c")
        .await
        .unwrap();
    let (s, b) = send(call("save", "\"hello\"")).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = send(call("blob", "\"file\"")).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = send(call("emit", "\"evt\"")).await;
    assert_eq!(s, 200, "{b}");

    // scoped to the actor's tenant (`acme`, from the path with auth off) and namespace
    let got = c
        .get(format!("{base}/api/v1/kv/work/n1"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 404, "tenant default does not see acme's key");
    assert!(dir.path().join("blobs/acme/work/note.txt").exists());
    // with auth off, a request's tenant is `default`: read acme's key through the store
    let scope = plexspaces_storage::Scope::new("acme", "work").unwrap();
    let v = storage.kv.kv.get(&scope, "n1").await.unwrap().unwrap();
    assert_eq!(v.value, b"\"hello\"");
    let d = consumer
        .receive_one(std::time::Duration::from_secs(2))
        .await
        .unwrap()
        .expect("the actor's event");
    assert_eq!(d.message.payload, "\"evt\"");
    handle.shutdown().await;
}
