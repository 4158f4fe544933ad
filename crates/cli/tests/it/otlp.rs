//! `[otlp]`: the real binary exports spans to a (fake) OTLP/HTTP collector and flushes them
//! on SIGTERM.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::Uri;

use super::Node;

type Received = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

async fn record(State(received): State<Received>, uri: Uri, body: Bytes) -> &'static str {
    received
        .lock()
        .unwrap()
        .push((uri.path().to_owned(), body.to_vec()));
    ""
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn spans_are_exported_to_the_otlp_endpoint() {
    let received: Received = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new()
        .fallback(axum::routing::post(record))
        .with_state(received.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let service = "plexspaces-otlp-test";
    let node = Node::start(&[
        ("PLEXSPACES_OTLP_ENDPOINT", collector.as_str()),
        ("PLEXSPACES_OTLP_SERVICE_NAME", service),
    ])
    .await;
    let resp = reqwest::Client::new()
        .post(format!(
            "{}/api/v1/actors/default/counter/invoke?msg_type=increment",
            node.http
        ))
        .body(r#"{"amount": 1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (status, log) = node.terminate();
    assert!(status.success(), "exit after SIGTERM: {status:?}\n{log}");
    assert!(log.contains("OTLP span export on"), "{log}");

    let exported = |needle: &'static [u8]| {
        let received = received.clone();
        move || {
            let received = received.clone();
            async move {
                received.lock().unwrap().iter().any(|(path, body)| {
                    path == "/v1/traces" && !body.is_empty() && contains(body, needle)
                })
            }
        }
    };
    let limit = Duration::from_secs(20);
    assert!(
        plexspaces_test_util::eventually(limit, exported(service.as_bytes())).await,
        "no /v1/traces export naming the service; got paths {:?}\n{log}",
        received
            .lock()
            .unwrap()
            .iter()
            .map(|(p, b)| (p.clone(), b.len()))
            .collect::<Vec<_>>()
    );
    assert!(plexspaces_test_util::eventually(limit, exported(b"actor.message")).await);
    assert!(plexspaces_test_util::eventually(limit, exported(b"http.request")).await);
}
