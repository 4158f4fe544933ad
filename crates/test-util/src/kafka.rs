//! A Kafka-protocol broker for tests: `tansu` (installed by scripts/ci-deps), started as a
//! child process on a free 127.0.0.1 port with in-memory storage, one per test.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

/// The tansu release scripts/ci-deps installs.
pub const TANSU_VERSION: &str = "0.6.0";

/// The tansu binary: `PLEXSPACES_TANSU` if set, else where scripts/ci-deps installs it,
/// `$HOME/.local/share/plexspaces/tansu-<TANSU_VERSION>/bin/tansu`.
pub fn tansu_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("PLEXSPACES_TANSU") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(format!(
        ".local/share/plexspaces/tansu-{TANSU_VERSION}/bin/tansu"
    ))
}

/// A running broker; killed when dropped.
#[derive(Debug)]
pub struct KafkaBroker {
    child: Child,
    addr: String,
}

impl KafkaBroker {
    /// Start tansu (memory storage) on a free port and wait until it accepts connections.
    /// Fails with the reason when the binary is missing (run scripts/ci-deps) or the broker
    /// does not come up within 60 s.
    pub async fn start() -> std::io::Result<Self> {
        let bin = tansu_bin();
        if !bin.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "no Kafka-protocol broker at {} (scripts/ci-deps installs tansu {TANSU_VERSION}; \
                     or set PLEXSPACES_TANSU)",
                    bin.display()
                ),
            ));
        }
        let port = crate::free_port()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&bin)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
                "--storage-engine",
                "memory://tansu/",
            ])
            // no `.env` from the working directory, no telemetry
            .current_dir(std::env::temp_dir())
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()?;
        let mut broker = KafkaBroker {
            child,
            addr: format!("127.0.0.1:{port}"),
        };
        let addr = broker.addr.clone();
        let up = crate::eventually(Duration::from_secs(60), || {
            let addr = addr.clone();
            async move { tokio::net::TcpStream::connect(&addr).await.is_ok() }
        })
        .await;
        if !up {
            let _ = broker.child.start_kill();
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("tansu did not listen on {addr} within 60 s"),
            ));
        }
        if let Some(status) = broker.child.try_wait()? {
            return Err(std::io::Error::other(format!(
                "tansu exited at start: {status}"
            )));
        }
        Ok(broker)
    }

    /// `127.0.0.1:<port>`, a bootstrap broker address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The broker's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }
}
