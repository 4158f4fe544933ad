//! The `#[actor]` macro: typed requests, envelopes by msg_type, errors, and a remote call.

use std::time::Duration;

use plexspaces::prelude::*;
use plexspaces::LoopbackNetwork;
use serde::{Deserialize, Serialize};

#[derive(Default, Serialize, Deserialize)]
struct Account {
    balance: i64,
}

#[derive(Serialize, Deserialize)]
struct Deposit {
    amount: i64,
}

#[derive(Serialize, Deserialize)]
struct Withdraw {
    amount: i64,
}

#[derive(Serialize, Deserialize)]
struct Balance;

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Receipt {
    balance: i64,
}

#[actor(snapshot)]
impl Account {
    #[handler("deposit")]
    async fn deposit(&mut self, msg: Deposit) -> Result<Receipt, BoxError> {
        if msg.amount <= 0 {
            return Err("deposit must be positive".into());
        }
        self.balance += msg.amount;
        Ok(Receipt {
            balance: self.balance,
        })
    }

    #[handler("withdraw")]
    async fn withdraw(
        &mut self,
        ctx: &mut Context<Self>,
        msg: Withdraw,
    ) -> Result<Result<Receipt, String>, BoxError> {
        let _ = ctx.id();
        if msg.amount > self.balance {
            return Ok(Err(format!("insufficient funds: balance {}", self.balance)));
        }
        self.balance -= msg.amount;
        Ok(Ok(Receipt {
            balance: self.balance,
        }))
    }

    #[handler]
    fn balance(&mut self, _msg: Balance) -> i64 {
        self.balance
    }
}

#[tokio::test]
async fn typed_requests_reach_the_named_handlers_without_encoding() {
    let node = Node::builder("n1").build().await.unwrap();
    let account = node.spawn_named("acct", Account::default()).unwrap();
    assert_eq!(
        account.request(Deposit { amount: 50 }).await.unwrap(),
        Receipt { balance: 50 }
    );
    assert_eq!(
        account.request(Withdraw { amount: 80 }).await.unwrap(),
        Err("insufficient funds: balance 50".to_string())
    );
    assert_eq!(
        account.request(Withdraw { amount: 20 }).await.unwrap(),
        Ok(Receipt { balance: 30 })
    );
    assert_eq!(account.request(Balance).await.unwrap(), 30);
    // `ask` with a message converts it into the generated enum and returns the reply enum.
    assert!(matches!(
        account.ask(Balance).await.unwrap(),
        AccountReply::Balance(30)
    ));
    node.shutdown().await;
}

#[tokio::test]
async fn envelopes_reach_the_same_handlers_by_msg_type() {
    let node = Node::builder("n1").build().await.unwrap();
    let account = node.spawn(Account::default()).unwrap();
    let t = Duration::from_secs(5);
    let reply = account
        .ask_envelope(
            Envelope::json("deposit", &serde_json::json!({"amount": 7})).unwrap(),
            t,
        )
        .await
        .unwrap();
    assert_eq!(reply.msg_type, "deposit");
    assert_eq!(
        reply.decode_json::<serde_json::Value>().unwrap(),
        serde_json::json!({"balance": 7})
    );
    // A bodyless request for a unit message type works.
    let reply = account
        .ask_envelope(Envelope::new("balance", Vec::new(), "application/json"), t)
        .await
        .unwrap();
    assert_eq!(reply.decode_json::<i64>().unwrap(), 7);
    let err = account
        .ask_envelope(Envelope::json("close", &()).unwrap(), t)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnknownMsgType { msg_type, actor_type } if msg_type == "close" && actor_type == "Account")
    );
    let err = account
        .ask_envelope(
            Envelope::json("deposit", &serde_json::json!({"amount": "lots"})).unwrap(),
            t,
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Decode { .. }), "{err:?}");
    assert_eq!(
        account.request(Balance).await.unwrap(),
        7,
        "bad input changed nothing"
    );
    node.shutdown().await;
}

#[tokio::test]
async fn a_handler_error_crashes_the_actor_and_fails_the_caller() {
    let node = Node::builder("n1").build().await.unwrap();
    let account = node.spawn(Account::default()).unwrap();
    let err = account.request(Deposit { amount: -1 }).await.unwrap_err();
    assert!(
        matches!(err, Error::ActorFailed(ExitReason::Error(_))),
        "{err:?}"
    );
    assert!(matches!(
        account.wait().await.unwrap(),
        ExitReason::Error(_)
    ));
    node.shutdown().await;
}

#[tokio::test]
async fn macro_actors_work_across_nodes_through_the_generated_codec() {
    let net = LoopbackNetwork::new();
    let a = Node::builder("a")
        .transport(net.clone())
        .build()
        .await
        .unwrap();
    let b = Node::builder("b").transport(net).build().await.unwrap();
    a.spawn_named("acct", Account::default()).unwrap();
    let remote: ActorRef<Account> = b.actor_ref(&"acct@a".parse().unwrap()).unwrap();
    assert_eq!(
        remote.request(Deposit { amount: 9 }).await.unwrap(),
        Receipt { balance: 9 }
    );
    remote.tell(Deposit { amount: 1 }).await.unwrap();
    assert_eq!(remote.request(Balance).await.unwrap(), 10);
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn snapshot_option_round_trips_state_as_json() {
    let mut account = Account { balance: 42 };
    let bytes = Actor::snapshot(&account)
        .unwrap()
        .expect("snapshot enabled");
    account.balance = 0;
    Actor::restore(&mut account, &bytes).unwrap();
    assert_eq!(account.balance, 42);
    assert!(Actor::restore(&mut account, b"garbage").is_err());
    assert_eq!(account.balance, 42, "a bad snapshot changes nothing");
}
