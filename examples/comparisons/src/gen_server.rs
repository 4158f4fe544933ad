//! Erlang/OTP: a key-value `gen_server` under a one_for_one `supervisor`.
//!
//! ```erlang
//! -module(kv).
//! -behaviour(gen_server).
//! init([]) -> {ok, #{}}.
//! handle_call({get, K}, _From, S) -> {reply, maps:get(K, S, undefined), S};
//! handle_call(crash, _From, _S) -> exit(boom).
//! handle_cast({put, K, V}, S) -> {noreply, S#{K => V}}.
//! %% supervisor: {one_for_one, 3, 5}, child kv registered as kv
//! ```

use std::collections::HashMap;
use std::time::Duration;

use anyhow::ensure;
use plexspaces_core::{
    Actor, BoxError, ChildSpec, Context, Node, SpawnOptions, Strategy, Supervisor, SupervisorSpec,
};

/// `gen_server` callbacks: `handle_call` answers, `handle_cast` does not.
#[derive(Default)]
pub struct Kv {
    map: HashMap<String, String>,
}

/// The messages (Erlang's call and cast terms).
pub enum KvMsg {
    /// `{get, K}` (a call).
    Get(String),
    /// `{put, K, V}` (a cast).
    Put(String, String),
    /// `crash`: the handler fails, the actor exits, the supervisor restarts it.
    Crash,
}

impl Actor for Kv {
    type Msg = KvMsg;
    type Reply = Option<String>;

    async fn handle_call(
        &mut self,
        msg: KvMsg,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<Option<String>>, BoxError> {
        match msg {
            KvMsg::Get(k) => Ok(Some(self.map.get(&k).cloned())),
            KvMsg::Put(k, v) => {
                self.map.insert(k, v);
                Ok(Some(None))
            }
            KvMsg::Crash => Err("boom".into()),
        }
    }

    async fn handle_cast(&mut self, msg: KvMsg, ctx: &mut Context<Self>) -> Result<(), BoxError> {
        self.handle_call(msg, ctx).await.map(drop)
    }
}

/// Starts the supervised `kv`, puts, gets, crashes it and finds it restarted under its name.
pub async fn demo() -> anyhow::Result<String> {
    let node = Node::builder("otp").build().await?;
    let spec = SupervisorSpec::new(Strategy::OneForOne)
        .intensity(3, Duration::from_secs(5))
        .child(ChildSpec::worker("kv", Kv::default).named("kv"));
    node.start(Supervisor::new(spec), SpawnOptions::named("kv_sup"))
        .await?;

    let id = plexspaces_core::ActorId::new("kv", node.name())?;
    let kv = node.actor_ref::<Kv>(&id)?;
    kv.tell(KvMsg::Put("lang".into(), "erlang".into()))
        .await
        .map_err(|_| anyhow::anyhow!("cast"))?;
    ensure!(kv.ask(KvMsg::Get("lang".into())).await? == Some("erlang".into()));

    ensure!(
        kv.ask(KvMsg::Crash).await.is_err(),
        "crash is an error to the caller"
    );
    // The supervisor restarts it under the same name, with fresh state (init/1 again).
    let mut restarted = None;
    for _ in 0..200 {
        if let Ok(again) = node.actor_ref::<Kv>(&id) {
            if again.pid() != kv.pid() {
                restarted = Some(again);
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let kv2 = restarted.ok_or_else(|| anyhow::anyhow!("kv was not restarted"))?;
    ensure!(
        kv2.ask(KvMsg::Get("lang".into())).await?.is_none(),
        "fresh state after restart"
    );
    node.shutdown().await;
    Ok("gen_server: call/cast, crash, restarted by its supervisor under its name".into())
}
