//! Shared test actors and an event log.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use plexspaces_core::{Actor, BoxError, Context, ExitReason, Info};

/// The codec of an actor whose messages and replies are strings: JSON envelopes of type
/// `$msg_type`, replies typed as their request.
macro_rules! string_json_codec {
    ($msg_type:literal) => {
        fn decode(env: &plexspaces_core::Envelope) -> plexspaces_core::Result<String> {
            env.decode_json()
        }

        fn encode(msg: &String) -> plexspaces_core::Result<plexspaces_core::Envelope> {
            plexspaces_core::Envelope::json($msg_type, msg)
        }

        fn encode_reply(
            request_type: &str,
            reply: &String,
        ) -> plexspaces_core::Result<plexspaces_core::Envelope> {
            plexspaces_core::Envelope::json(request_type, reply)
        }

        fn decode_reply(env: &plexspaces_core::Envelope) -> plexspaces_core::Result<String> {
            env.decode_json()
        }
    };
}
pub(crate) use string_json_codec;

/// An ordered record of what happened, shared by test actors.
#[derive(Clone, Default)]
pub struct Log(Arc<Mutex<Vec<String>>>);

impl Log {
    pub fn push(&self, entry: impl Into<String>) {
        self.0.lock().push(entry.into());
    }

    pub fn entries(&self) -> Vec<String> {
        self.0.lock().clone()
    }

    pub fn clear(&self) {
        self.0.lock().clear();
    }

    pub fn count(&self, entry: &str) -> usize {
        self.0.lock().iter().filter(|e| *e == entry).count()
    }
}

/// What a test [`Worker`] can be told to do.
#[derive(Debug, Clone)]
pub enum Cmd {
    /// Reply with the worker's name.
    Ping,
    /// Return an error from the handler.
    Fail,
    /// Panic in the handler.
    Panic,
    /// Stop with this reason.
    Stop(ExitReason),
    /// Turn on exit trapping.
    Trap,
}

/// A worker that logs `start:<name>`, `stop:<name>` and what it is told.
pub struct Worker {
    pub name: String,
    pub log: Log,
    /// Sleep this long in `on_stop` (to test shutdown timeouts).
    pub stop_delay: Option<Duration>,
    pub fail_start: bool,
}

impl Worker {
    pub fn new(name: &str, log: &Log) -> Self {
        Worker {
            name: name.to_owned(),
            log: log.clone(),
            stop_delay: None,
            fail_start: false,
        }
    }
}

impl Actor for Worker {
    type Msg = Cmd;
    type Reply = String;

    async fn on_start(&mut self, _ctx: &mut Context<Self>) -> Result<(), BoxError> {
        if self.fail_start {
            self.log.push(format!("failstart:{}", self.name));
            return Err("refused to start".into());
        }
        self.log.push(format!("start:{}", self.name));
        Ok(())
    }

    async fn on_stop(&mut self, _ctx: &mut Context<Self>, reason: &ExitReason) {
        self.log.push(format!("stop:{}", self.name));
        if let Some(delay) = self.stop_delay {
            tokio::time::sleep(delay).await;
            self.log
                .push(format!("stopped-late:{}:{reason}", self.name));
        }
    }

    async fn handle_call(
        &mut self,
        cmd: Cmd,
        ctx: &mut Context<Self>,
    ) -> Result<Option<String>, BoxError> {
        match cmd {
            Cmd::Ping => Ok(Some(self.name.clone())),
            Cmd::Fail => Err(format!("{} failed on purpose", self.name).into()),
            Cmd::Panic => panic!("{} panicked on purpose", self.name),
            Cmd::Stop(reason) => {
                ctx.stop(reason);
                Ok(Some("stopping".into()))
            }
            Cmd::Trap => {
                ctx.trap_exit(true);
                Ok(Some("trapping".into()))
            }
        }
    }

    async fn handle_info(&mut self, info: Info, _ctx: &mut Context<Self>) -> Result<(), BoxError> {
        let entry = match info {
            Info::Exit { from, reason } => {
                format!("exit:{}:{}:{reason}", self.name, from.id().name())
            }
            Info::Down { id, reason, .. } => format!("down:{}:{}:{reason}", self.name, id.name()),
            Info::EventHandlerExit {
                handler, reason, ..
            } => {
                format!("handler-exit:{}:{handler}:{reason}", self.name)
            }
            Info::Timeout => format!("timeout:{}", self.name),
            Info::Message(msg) => format!(
                "info:{}:{}",
                self.name,
                msg.downcast_ref::<&'static str>().copied().unwrap_or("?")
            ),
        };
        self.log.push(entry);
        Ok(())
    }
}

/// Waits (on tokio's clock) until `check` holds, failing the test after 10 s.
pub async fn until(what: &str, check: impl Fn() -> bool) {
    let ok = plexspaces_test_util::eventually(Duration::from_secs(10), || {
        let value = check();
        async move { value }
    })
    .await;
    assert!(ok, "timed out waiting for: {what}");
}

/// Echoes a string; serves envelopes of any `msg_type` carrying a JSON string. `"crash"`
/// fails the handler; `"slow:<ms>"` sleeps first.
pub struct Echo;

impl Actor for Echo {
    type Msg = String;
    type Reply = String;

    async fn handle_call(
        &mut self,
        msg: String,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<String>, BoxError> {
        if msg == "crash" {
            return Err("echo crashed".into());
        }
        if let Some(ms) = msg.strip_prefix("slow:") {
            tokio::time::sleep(Duration::from_millis(ms.parse()?)).await;
        }
        Ok(Some(format!("echo:{msg}")))
    }

    fn msg_name(_msg: &String) -> &'static str {
        "echo"
    }

    string_json_codec!("echo");
}
