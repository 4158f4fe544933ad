//! Test support, built with the `fault-injection` feature: the actor the failure tests and
//! the `cluster-test-node` binary share.

use std::time::Duration;

use plexspaces_core::{Actor, BoxError, Context, Envelope};

/// Echoes a string as `"echo:<text>"`. `"crash"` fails the handler; `"slow:<ms>"` sleeps
/// first. Its envelopes carry the string as JSON.
#[derive(Debug, Default)]
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

    fn decode(env: &Envelope) -> plexspaces_core::Result<String> {
        env.decode_json()
    }

    fn encode(msg: &String) -> plexspaces_core::Result<Envelope> {
        Envelope::json("echo", msg)
    }

    fn encode_reply(request_type: &str, reply: &String) -> plexspaces_core::Result<Envelope> {
        Envelope::json(request_type, reply)
    }

    fn decode_reply(env: &Envelope) -> plexspaces_core::Result<String> {
        env.decode_json()
    }
}
