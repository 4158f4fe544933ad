//! Channel-backed mailboxes: an actor fed from a SQLite queue by [`ChannelInbox`], in a
//! child process stopped with SIGTERM mid-stream. Its graceful shutdown finishes and acks
//! the message in flight and gives the rest back, so a second inbox (in this process)
//! handles every remaining message: nothing is lost and nothing is handled twice. The child
//! is this test binary, run with one ignored test selected.

#![cfg(feature = "sqlite")]

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use plexspaces_channels::inbox::MESSAGE_ID_HEADER;
use plexspaces_channels::{
    ChannelId, ChannelInbox, Channels, DeliveryOptions, InboxOptions, Outgoing, SqliteBackend,
    SqliteOptions,
};
use plexspaces_core::{Actor, BoxError, Context, Envelope, SpawnOptions};
use tokio::io::{AsyncBufReadExt, BufReader};

/// Appends the id of each message it handles to a file (slowly, so that a stop often
/// lands mid-message).
struct Recorder {
    log: std::path::PathBuf,
}

impl Actor for Recorder {
    type Msg = String;
    type Reply = ();

    async fn handle_call(
        &mut self,
        id: String,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<()>, BoxError> {
        tokio::time::sleep(Duration::from_millis(15)).await;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        writeln!(f, "{id}")?;
        f.sync_data()?;
        Ok(Some(()))
    }

    fn decode(env: &Envelope) -> plexspaces_core::Result<String> {
        env.headers
            .get(MESSAGE_ID_HEADER)
            .cloned()
            .ok_or_else(|| plexspaces_core::Error::Decode {
                msg_type: env.msg_type.clone(),
                detail: "no message id".into(),
            })
    }

    fn encode_reply(request_type: &str, _reply: &()) -> plexspaces_core::Result<Envelope> {
        Envelope::json(request_type, &())
    }
}

async fn channels(db: &str) -> Channels {
    let mut o = SqliteOptions::new(db);
    // Long enough that a message the child took and did not ack would not come back
    // within the test: a loss shows as a missing id, a double handling as a duplicate.
    o.delivery = DeliveryOptions {
        visibility_timeout: Duration::from_secs(120),
        max_deliveries: 5,
    };
    Channels::new(Arc::new(SqliteBackend::open(o).await.expect("sqlite")))
}

async fn run_inbox(
    db: &str,
    channel: &str,
    log: &std::path::Path,
) -> plexspaces_channels::InboxHandle {
    let node = plexspaces_core::Node::builder("inbox-node")
        .build()
        .await
        .expect("node");
    let actor = node
        .start(
            Recorder {
                log: log.to_owned(),
            },
            SpawnOptions::default(),
        )
        .await
        .expect("actor");
    let q = channels(db)
        .await
        .queue(ChannelId::new("t", "ns", channel).expect("id"));
    ChannelInbox::start(
        &q,
        actor.pid(),
        InboxOptions {
            batch: 8,
            ..InboxOptions::default()
        },
    )
    .await
    .expect("inbox")
}

/// Child half: run an inbox until SIGTERM, then shut it down gracefully.
#[tokio::test]
#[ignore = "run as a child process by inbox_sigterm_loses_and_duplicates_nothing"]
async fn inbox_child() {
    let (Ok(db), Ok(channel), Ok(log)) = (
        std::env::var("INBOX_CHILD_DB"),
        std::env::var("INBOX_CHILD_CHANNEL"),
        std::env::var("INBOX_CHILD_LOG"),
    ) else {
        return;
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("sigterm handler");
    let inbox = run_inbox(&db, &channel, std::path::Path::new(&log)).await;
    println!("CHILD-READY");
    std::io::stdout().flush().expect("flush");
    term.recv().await;
    let stats = inbox.shutdown().await;
    println!(
        "CHILD-STATS handled={} returned={}",
        stats.handled, stats.returned
    );
    std::io::stdout().flush().expect("flush");
}

fn lines(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbox_sigterm_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("ch.db").display().to_string();
    let log = dir.path().join("handled.log");
    let channel = "work";
    let q = channels(&db)
        .await
        .queue(ChannelId::new("t", "ns", channel).expect("id"));
    let mut sent = Vec::new();
    for i in 0..120 {
        sent.push(
            q.publish(Outgoing::new(format!("job {i}")))
                .await
                .expect("publish"),
        );
    }

    let exe = std::env::current_exe().expect("test binary");
    let mut child = tokio::process::Command::new(exe)
        .args(["--ignored", "--exact", "inbox::inbox_child", "--nocapture"])
        .env("INBOX_CHILD_DB", &db)
        .env("INBOX_CHILD_CHANNEL", channel)
        .env("INBOX_CHILD_LOG", &log)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("child");
    let mut out = BufReader::new(child.stdout.take().expect("stdout")).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(60), out.next_line())
            .await
            .expect("child ready in time")
            .expect("read")
            .expect("child ready");
        if line.contains("CHILD-READY") {
            break;
        }
    }
    // Let it handle some, then SIGTERM it mid-stream.
    let some = plexspaces_test_util::eventually(Duration::from_secs(30), || {
        let n = lines(&log).len();
        async move { n >= 10 }
    })
    .await;
    assert!(some, "the child handles messages");
    let pid = child.id().expect("pid").to_string();
    let term = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(term.success());
    let mut stats = String::new();
    while let Ok(Some(line)) = out.next_line().await {
        if line.contains("CHILD-STATS") {
            stats = line;
        }
    }
    let status = child.wait().await.expect("child exit");
    assert!(status.success(), "graceful exit: {status:?}");
    assert!(stats.contains("handled="), "stats printed: {stats:?}");
    let by_child = lines(&log).len();
    assert!(
        by_child < sent.len(),
        "stopped mid-stream ({by_child} handled)"
    );

    // A second inbox takes over the same queue and handles the rest.
    let inbox = run_inbox(&db, channel, &log).await;
    let all = plexspaces_test_util::eventually(Duration::from_secs(60), || {
        let n = lines(&log).len();
        let want = sent.len();
        async move { n >= want }
    })
    .await;
    // A duplicate would show up as one more line: give it a moment to appear.
    tokio::time::sleep(Duration::from_millis(300)).await;
    inbox.shutdown().await;
    assert!(
        all,
        "every message handled: {} of {}",
        lines(&log).len(),
        sent.len()
    );
    let mut handled = lines(&log);
    handled.sort();
    let mut want = sent.clone();
    want.sort();
    assert_eq!(handled, want, "each message handled exactly once");
}
