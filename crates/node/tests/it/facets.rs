//! The HTTP client facet against a local axum server on 127.0.0.1: allow-list (also for
//! redirects), retries of transient failures, timeouts, the response cap, and an actor
//! reaching the client through `ctx`.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use axum::Router;
use plexspaces_node::facets::{HttpClient, HttpClientFacet, HttpClientOptions, HttpError};

async fn server() -> (String, Arc<AtomicU32>) {
    let flaky = Arc::new(AtomicU32::new(0));
    let f = flaky.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = Router::new()
        .route("/ok", get(|| async { "hi" }))
        .route(
            "/flaky",
            get(move || {
                let f = f.clone();
                async move {
                    if f.fetch_add(1, Ordering::SeqCst) < 2 {
                        StatusCode::SERVICE_UNAVAILABLE.into_response()
                    } else {
                        "finally".into_response()
                    }
                }
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(3)).await;
                "late"
            }),
        )
        .route("/big", get(|| async { vec![b'x'; 4096] }))
        .route(
            "/away",
            get(move || async move { Redirect::temporary(&format!("http://localhost:{port}/ok")) }),
        )
        .route("/here", get(|| async { Redirect::temporary("/ok") }));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("127.0.0.1:{port}"), flaky)
}

fn client(host: &str, timeout: Duration) -> HttpClient {
    HttpClient::new(HttpClientOptions {
        allow_hosts: vec![host.to_owned()],
        timeout,
        retries: 2,
        retry_backoff: Duration::from_millis(10),
        max_response_bytes: 1024,
    })
    .unwrap()
}

#[tokio::test]
async fn http_client_allow_list_retries_timeouts_and_caps() {
    let (host, flaky) = server().await;
    let c = client(&host, Duration::from_millis(500));
    let r = c.get(&format!("http://{host}/ok")).await.unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"hi"[..]));

    // two 503s, then an answer: retried within the limit
    let r = c.get(&format!("http://{host}/flaky")).await.unwrap();
    assert_eq!((r.status, &r.body[..]), (200, &b"finally"[..]));
    assert_eq!(flaky.load(Ordering::SeqCst), 3);
    // POST is not retried
    flaky.store(0, Ordering::SeqCst);
    let r = c.post(&format!("http://{host}/flaky"), "x").await.unwrap();
    assert_eq!(r.status, 405, "no POST route: one attempt answered");

    let e = c.get(&format!("http://{host}/slow")).await.unwrap_err();
    assert!(matches!(e, HttpError::Timeout(_)), "{e:?}");
    let e = c.get(&format!("http://{host}/big")).await.unwrap_err();
    assert!(matches!(e, HttpError::TooLarge(1024)), "{e:?}");

    // not on the list: another port, another host name, a redirect to another host
    let port: u16 = host.rsplit(':').next().unwrap().parse().unwrap();
    let e = c
        .get(&format!("http://127.0.0.1:{}/ok", port.wrapping_add(1)))
        .await
        .unwrap_err();
    assert!(matches!(e, HttpError::NotAllowed(_)), "{e:?}");
    let e = c
        .get(&format!("http://localhost:{port}/ok"))
        .await
        .unwrap_err();
    assert!(matches!(e, HttpError::NotAllowed(_)), "{e:?}");
    let e = c.get(&format!("http://{host}/away")).await.unwrap_err();
    assert!(
        matches!(e, HttpError::NotAllowed(ref h) if h == "localhost"),
        "{e:?}"
    );
    // a redirect within the allowed host is followed
    let r = c.get(&format!("http://{host}/here")).await.unwrap();
    assert_eq!(&r.body[..], b"hi");
    for bad in ["not a url", "file:///etc/passwd", "ftp://127.0.0.1/"] {
        assert!(
            matches!(c.get(bad).await.unwrap_err(), HttpError::BadUrl(_)),
            "{bad}"
        );
    }
}

/// Fetches the URL it is sent, through its `HttpClient` facet.
struct Fetcher;

impl plexspaces_core::Actor for Fetcher {
    type Msg = String;
    type Reply = serde_json::Value;

    async fn handle_call(
        &mut self,
        url: String,
        ctx: &mut plexspaces_core::Context<Self>,
    ) -> Result<Option<serde_json::Value>, plexspaces_core::BoxError> {
        let http = ctx.service::<HttpClient>().ok_or("no http client facet")?;
        Ok(Some(match http.get(&url).await {
            Ok(r) => {
                serde_json::json!({ "status": r.status, "body": String::from_utf8_lossy(&r.body) })
            }
            Err(e) => serde_json::json!({ "error": e.to_string() }),
        }))
    }

    fn decode(env: &plexspaces_core::Envelope) -> plexspaces_core::Result<String> {
        env.decode_json()
    }

    fn encode_reply(
        request_type: &str,
        reply: &serde_json::Value,
    ) -> plexspaces_core::Result<plexspaces_core::Envelope> {
        plexspaces_core::Envelope::json(request_type, reply)
    }
}

#[tokio::test]
async fn an_actor_reaches_its_http_client_through_ctx() {
    let (host, _) = server().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = plexspaces_node::NodeConfig::default();
    config.http.addr = "127.0.0.1:0".into();
    config.grpc.addr = "127.0.0.1:0".into();
    config.auth.disabled = true;
    config.data_dir = dir.path().to_owned();
    let allow = host.clone();
    let fetcher =
        plexspaces_node::ActorType::virtual_actor("fetcher", |_| Fetcher).facets(move |_| {
            vec![HttpClientFacet::new(HttpClientOptions {
                allow_hosts: vec![allow.clone()],
                ..HttpClientOptions::default()
            })
            .expect("client") as Arc<dyn plexspaces_core::Facet>]
        });
    let handle = plexspaces_node::NodeServer::start(config, vec![fetcher])
        .await
        .unwrap();
    let url = format!(
        "http://{}/api/v1/actors/default/fetcher/invoke?msg_type=fetch&key=f",
        handle.http_addr()
    );
    let c = reqwest::Client::new();
    let (s, b) = crate::common::send(c.post(&url).json(&format!("http://{host}/ok"))).await;
    assert_eq!((s, b["body"].as_str()), (200, Some("hi")), "{b}");
    let (s, b) = crate::common::send(c.post(&url).json(&"http://192.0.2.1/")).await;
    assert_eq!(s, 200);
    assert!(b["error"].as_str().unwrap().contains("allow-list"), "{b}");
    handle.shutdown().await;
}
