//! Wall-clock jumps of ±30 s on a running node (C1), caused for real with libfaketime
//! (Debian `libfaketime`, installed by `scripts/ci-deps`): the `plexspaces` process runs with
//! `LD_PRELOAD=libfaketimeMT.so.1` and `FAKETIME_TIMESTAMP_FILE`, whose offset the test
//! rewrites (`FAKETIME_NO_CACHE=1`: read on every clock call). Only the wall clock moves
//! (`FAKETIME_DONT_FAKE_MONOTONIC=1`), as with an NTP step or an operator setting the date.
//! The jump is checked to be real: the node's HTTP `Date` header moves with it (a backward
//! jump shows there only when hyper's cached date expires, so it is first checked on a
//! process under the same preload and file).
//!
//! A durable workflow timer and a reminder pending across a +30 s jump fire no earlier than
//! their delay (measured on the test's monotonic clock); across a -30 s jump they fire on
//! time, not 30 s late. The documented skew is zero: the node's timers run on a clock that
//! reads the wall clock once at start and then the monotonic clock.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::json;

use super::Node;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1";

/// Seconds since the Unix epoch of an HTTP date (`Wed, 02 Dec 2026 14:45:43 GMT`).
fn http_date_secs(date: &str) -> Option<i64> {
    let mut parts = date.split_whitespace().skip(1);
    let day: i64 = parts.next()?.parse().ok()?;
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .position(|m| Some(*m) == parts.clone().next())? as i64
        + 1;
    parts.next()?;
    let year: i64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|p| p.parse::<i64>());
    let (h, m, s) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
    // days from civil (proleptic Gregorian), Howard Hinnant's algorithm
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3_600 + m * 60 + s)
}

/// How far the node's wall clock is ahead of ours, in seconds (from its `Date` header).
async fn node_offset(client: &reqwest::Client, node: &Node) -> i64 {
    let resp = client
        .get(format!("{}/health", node.http))
        .send()
        .await
        .expect("health");
    let date = resp
        .headers()
        .get("date")
        .and_then(|v| v.to_str().ok())
        .expect("a Date header")
        .to_owned();
    let ours = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    http_date_secs(&date).expect("an HTTP date") - ours
}

/// How far the wall clock that libfaketime gives a process reading `file` is ahead of ours,
/// in seconds: `date +%s` under the same preload and settings as the node.
fn faked_offset(file: &str) -> i64 {
    let out = std::process::Command::new("date")
        .arg("+%s")
        .env("LD_PRELOAD", LIBFAKETIME)
        .env("FAKETIME_TIMESTAMP_FILE", file)
        .env("FAKETIME_NO_CACHE", "1")
        .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
        .output()
        .expect("run date under libfaketime");
    let faked: i64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("date +%s prints seconds");
    let ours = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    faked - ours
}

fn set_offset(file: &Path, offset: &str) {
    std::fs::write(file, format!("{offset}\n")).expect("write the faketime file");
}

/// Starts a countdown workflow of `ms` and a counter reminder adding `amount` after `ms`.
async fn arm(client: &reqwest::Client, node: &Node, id: &str, ms: u64, amount: i64) {
    let resp = client
        .post(format!("{}/api/v1/workflows/default", node.http))
        .json(&json!({"workflow_type": "countdown", "workflow_id": id, "input": ms}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let resp = client
        .post(format!(
            "{}/api/v1/actors/default/counter/invoke?msg_type=remind&key=clock",
            node.http
        ))
        .json(&json!({"name": id, "after_ms": ms, "amount": amount}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

async fn workflow_done(client: &reqwest::Client, node: &Node, id: &str) -> bool {
    let Ok(resp) = client
        .get(format!(
            "{}/api/v1/workflows/default/{id}/result",
            node.http
        ))
        .send()
        .await
    else {
        return false;
    };
    resp.status().as_u16() == 200
}

async fn count(client: &reqwest::Client, node: &Node) -> i64 {
    let url = format!("{}/api/v1/actors/default/counter?key=clock", node.http);
    let body = super::get_json(client, &url).await;
    body["count"].as_i64().unwrap()
}

/// Polls until both the workflow `id` completed and the counter reached `want`; returns
/// when each was first seen done (since `armed`), or `None` past `limit`.
async fn fired_after(
    client: &reqwest::Client,
    node: &Node,
    id: &str,
    want: i64,
    armed: Instant,
    limit: Duration,
) -> (Option<Duration>, Option<Duration>) {
    let (mut timer, mut reminder) = (None, None);
    while armed.elapsed() < limit && (timer.is_none() || reminder.is_none()) {
        if timer.is_none() && workflow_done(client, node, id).await {
            timer = Some(armed.elapsed());
        }
        if reminder.is_none() && count(client, node).await >= want {
            reminder = Some(armed.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (timer, reminder)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timers_and_reminders_never_fire_early_across_wall_clock_jumps() {
    assert!(
        Path::new(LIBFAKETIME).exists(),
        "{LIBFAKETIME} is missing: install the Debian package libfaketime (scripts/ci-deps)"
    );
    let dir = tempfile::tempdir().unwrap();
    let faketime = dir.path().join("faketime");
    set_offset(&faketime, "+0");
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let file = faketime.to_str().unwrap().to_owned();
    let node = Node::start_in(
        &data,
        &[
            ("PLEXSPACES_DISABLE_AUTH", "1"),
            ("LD_PRELOAD", LIBFAKETIME),
            ("FAKETIME_TIMESTAMP_FILE", file.as_str()),
            ("FAKETIME_NO_CACHE", "1"),
            ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
        ],
    )
    .await;
    let client = reqwest::Client::new();
    let offset = node_offset(&client, &node).await;
    assert!(offset.abs() <= 2, "no offset yet: {offset} s");

    // +30 s while a 10 s timer and a 10 s reminder are pending.
    const FIRST: Duration = Duration::from_secs(10);
    let armed = Instant::now();
    arm(&client, &node, "jump-forward", FIRST.as_millis() as u64, 1).await;
    set_offset(&faketime, "+30");
    let jumped = plexspaces_test_util::eventually(Duration::from_secs(10), || async {
        (28..=32).contains(&node_offset(&client, &node).await)
    })
    .await;
    assert!(jumped, "libfaketime moved the node's wall clock 30 s ahead");
    assert!(
        armed.elapsed() < FIRST,
        "the jump happened while the timers were pending"
    );
    let (timer, reminder) = fired_after(
        &client,
        &node,
        "jump-forward",
        1,
        armed,
        Duration::from_secs(60),
    )
    .await;
    let (timer, reminder) = (
        timer.expect("the timer fired"),
        reminder.expect("the reminder fired"),
    );
    assert!(
        timer >= FIRST,
        "the workflow timer fired early: after {timer:?}"
    );
    assert!(
        reminder >= FIRST,
        "the reminder fired early: after {reminder:?}"
    );

    // -30 s (back to real time) while a 6 s timer and a 6 s reminder are pending: they fire
    // on time, not 30 s late (a wall-clock timer would wait 36 s).
    const SECOND: Duration = Duration::from_secs(6);
    let armed = Instant::now();
    arm(&client, &node, "jump-back", SECOND.as_millis() as u64, 10).await;
    set_offset(&faketime, "+0");
    // The node's `Date` header cannot show a backward jump at once: hyper caches it until
    // the wall clock passes the next second it computed, now 30 s ahead. A process under
    // the same preload and file shows the jump at once; the node's header follows below.
    let offset = faked_offset(&file);
    assert!(
        offset.abs() <= 2,
        "libfaketime moved the clock 30 s back: {offset} s"
    );
    let (timer, reminder) = fired_after(
        &client,
        &node,
        "jump-back",
        11,
        armed,
        Duration::from_secs(30),
    )
    .await;
    let timer = timer.expect("the timer fired within 30 s after a -30 s jump (not 30 s late)");
    let reminder =
        reminder.expect("the reminder fired within 30 s after a -30 s jump (not 30 s late)");
    assert!(
        timer >= SECOND,
        "the workflow timer fired early: after {timer:?}"
    );
    assert!(
        reminder >= SECOND,
        "the reminder fired early: after {reminder:?}"
    );
    assert_eq!(count(&client, &node).await, 11, "each reminder fired once");
    // The node itself went back too: its `Date` header returns to real time once hyper's
    // cache expires (about 30 s after the jump); without the jump it would stay 30 s ahead.
    let back = plexspaces_test_util::eventually(Duration::from_secs(45), || async {
        node_offset(&client, &node).await.abs() <= 2
    })
    .await;
    assert!(back, "the node's wall clock went 30 s back");
    let (status, _) = node.terminate();
    assert!(status.success());
}
