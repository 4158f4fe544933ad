//! The web dashboard, end to end: a node with an application under its root supervisor,
//! a counter invoked over HTTP, then headless Chromium (Debian's `chromium`) renders
//! `/dashboard` and the DOM must show the real actor, its type and a non-zero message count.

use std::process::Command;

use plexspaces_core::{Actor, Application, BoxError, ChildSpec, Context, Strategy, SupervisorSpec};
use serde_json::json;

use crate::common::{send, Setup, TestNode};

struct Idle;

impl Actor for Idle {
    type Msg = ();
    type Reply = ();

    async fn handle_call(
        &mut self,
        _msg: (),
        _ctx: &mut Context<Self>,
    ) -> Result<Option<()>, BoxError> {
        Ok(Some(()))
    }
}

/// The browser: `$PLEXSPACES_CHROMIUM`, else `chromium` on the PATH. Missing is a failure
/// with instructions, never a silent skip (CI installs it: scripts/ci-deps).
fn chromium() -> String {
    let candidate = std::env::var("PLEXSPACES_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let found = Command::new(&candidate)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "headless Chromium is required for the dashboard test but `{candidate} --version` \
         failed: install Debian's chromium (`apt-get install -y chromium`, which \
         scripts/ci-deps does) or set PLEXSPACES_CHROMIUM to a Chromium binary"
    );
    candidate
}

/// Renders `url` in headless Chromium after the page has had 5 s of (virtual) time to
/// fetch, and returns the DOM.
async fn render(url: String) -> String {
    let browser = chromium();
    let profile = tempfile::tempdir().unwrap();
    let profile_arg = format!("--user-data-dir={}", profile.path().display());
    let out = tokio::task::spawn_blocking(move || {
        // `timeout` bounds a hung browser; the outcome is judged by the DOM, not by time.
        Command::new("timeout")
            .args([
                "120",
                &browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                &profile_arg,
                "--virtual-time-budget=5000",
                "--dump-dom",
                &url,
            ])
            .output()
    })
    .await
    .unwrap()
    .expect("chromium runs");
    let dom = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success() && !dom.is_empty(),
        "chromium failed ({:?}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    dom
}

/// The text of the first element after `marker` (`...marker...>TEXT<`).
fn text_after<'a>(dom: &'a str, marker: &str) -> Option<&'a str> {
    let at = dom.find(marker)?;
    let rest = &dom[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find('<')? + start;
    Some(&rest[start..end])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headless_chromium_shows_real_actors_rates_and_the_supervision_tree() {
    let n = TestNode::start(Setup::default()).await;
    let node = n.handle.node().clone();
    node.start_application(Application::new(
        "billing",
        SupervisorSpec::new(Strategy::OneForOne).child(ChildSpec::worker("invoicer", || Idle)),
    ))
    .await
    .unwrap();
    for _ in 0..3 {
        let (status, _) = send(
            n.client
                .post(n.url("/api/v1/actors/default/counter/invoke?msg_type=increment&key=dash"))
                .body(r#"{"amount": 2}"#),
        )
        .await;
        assert_eq!(status, 200);
    }
    assert_eq!(
        send(
            n.client
                .get(n.url("/api/v1/actors/default/counter?key=dash"))
        )
        .await,
        (200, json!({"count": 6}))
    );

    // The JSON the page polls.
    let (status, summary) = send(n.client.get(n.url("/api/v1/dashboard/summary"))).await;
    assert_eq!(status, 200, "{summary}");
    let counter = summary["types"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["actor_type"] == "counter")
        .unwrap()
        .clone();
    assert!(counter["messages"].as_u64().unwrap() >= 4, "{counter}");
    let actor_id = format!("v:default/default/counter/dash@{}", node.name());
    assert!(
        summary["actors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == actor_id.as_str() && a["lifecycle"] == "active"),
        "{summary}"
    );

    // The page, rendered by a real browser.
    let dom = render(n.url("/dashboard")).await;
    assert!(
        dom.contains("data-loaded=\"true\""),
        "the page never rendered a summary:\n{dom}"
    );
    assert!(
        dom.contains(&actor_id),
        "actor {actor_id} not shown:\n{dom}"
    );
    assert!(
        dom.contains("class=\"actor-type\">counter<"),
        "type not shown:\n{dom}"
    );
    let shown: u64 = text_after(&dom, "data-type=\"counter\"")
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no counter message count in:\n{dom}"));
    assert!(shown >= 4, "counter messages shown: {shown}");
    let total: u64 = text_after(&dom, "id=\"total-messages\"")
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or_else(|| panic!("no total in:\n{dom}"));
    assert!(total >= shown);
    // A rate was computed from two polls (the number itself depends on timing).
    let rate = text_after(&dom, "id=\"message-rate\"").unwrap_or_default();
    assert!(
        rate.trim().parse::<f64>().is_ok(),
        "message rate {rate:?}:\n{dom}"
    );
    // The supervision tree: root -> billing -> invoicer.
    for child in [">root<", ">billing<", ">invoicer<"] {
        assert!(dom.contains(child), "{child} missing from the tree:\n{dom}");
    }
    assert!(dom.contains("SQLite"), "journal backend not shown");
    n.handle.shutdown().await;
}
