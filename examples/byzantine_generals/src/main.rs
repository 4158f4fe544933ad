//! The Byzantine generals problem: Lamport, Shostak and Pease's oral messages algorithm
//! OM(m), one actor per general.
//!
//! General 0 is the commander; the others are lieutenants. OM(m) runs as m+1 rounds of
//! messages (the "exponential information gathering" form of the recursion): in round r
//! every general relays each value it received along a path of r generals to every general
//! not yet on that path, appending itself. After the last round each loyal lieutenant
//! decides bottom-up: the value for path p is the majority of what it received for p and of
//! the decisions for every one-general extension of p (a tie is RETREAT, the default order).
//!
//! Traitors lie: a traitorous commander tells even lieutenants ATTACK and odd ones RETREAT;
//! a traitorous lieutenant relays the opposite of what it received.
//!
//! The program checks, for every case:
//! - IC1 agreement: all loyal lieutenants decide the same order;
//! - IC2 validity: if the commander is loyal, every loyal lieutenant obeys its order;
//!
//! and shows that both hold with n >= 3m+1 generals (n=4, m=1 and n=7, m=2, traitorous
//! commander or lieutenants), while with n = 3m (n=3, m=1, a traitorous lieutenant) a loyal
//! lieutenant disobeys a loyal commander.
//!
//! Prints `byzantine generals: OM(m) held in 4 cases with n >= 3m+1 and failed with n = 3m: OK`.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{bail, ensure};
use plexspaces_core::{Actor, ActorRef, BoxError, Context, Node};

type Path = Vec<usize>;

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Order {
    Attack,
    Retreat,
}

impl Order {
    fn opposite(self) -> Order {
        match self {
            Order::Attack => Order::Retreat,
            Order::Retreat => Order::Attack,
        }
    }
}

enum Msg {
    /// Everyone's address (index = general id).
    Peers(Vec<ActorRef<General>>),
    /// `value` came along `path` (the last entry is the sender).
    Receive { path: Path, value: Order },
    /// Relay every value received along a path of `round` generals.
    Relay { round: usize },
    /// The lieutenant's decision.
    Decide,
}

struct General {
    id: usize,
    m: usize,
    loyal: bool,
    /// The commander's order (commander only).
    order: Option<Order>,
    peers: Vec<ActorRef<General>>,
    /// What arrived along each path.
    received: HashMap<Path, Order>,
}

impl General {
    /// What this general tells `to` about `value` (loyal: the truth).
    fn say(&self, value: Order, to: usize) -> Order {
        match (self.loyal, self.id) {
            (true, _) => value,
            (false, 0) if to.is_multiple_of(2) => Order::Attack,
            (false, 0) => Order::Retreat,
            (false, _) => value.opposite(),
        }
    }

    /// The decision for `path` (OM's recursive majority).
    fn vote(&self, path: &Path) -> Order {
        let own = self.received.get(path).copied().unwrap_or(Order::Retreat);
        if path.len() == self.m + 1 {
            return own;
        }
        let mut attack = usize::from(own == Order::Attack);
        let mut total = 1;
        for j in 0..self.peers.len() {
            if j == self.id || path.contains(&j) {
                continue;
            }
            let mut longer = path.clone();
            longer.push(j);
            total += 1;
            attack += usize::from(self.vote(&longer) == Order::Attack);
        }
        if attack * 2 > total {
            Order::Attack
        } else {
            Order::Retreat
        }
    }
}

impl Actor for General {
    type Msg = Msg;
    type Reply = Option<Order>;

    async fn handle_call(
        &mut self,
        msg: Msg,
        _ctx: &mut Context<Self>,
    ) -> Result<Option<Option<Order>>, BoxError> {
        match msg {
            Msg::Peers(peers) => self.peers = peers,
            Msg::Receive { path, value } => {
                self.received.insert(path, value);
            }
            Msg::Relay { round } => {
                // Round 0: the commander sends its order; later rounds: lieutenants relay.
                let sources: Vec<(Path, Order)> = if round == 0 {
                    self.order.map(|o| (Vec::new(), o)).into_iter().collect()
                } else {
                    self.received
                        .iter()
                        .filter(|(p, _)| p.len() == round && !p.contains(&self.id))
                        .map(|(p, v)| (p.clone(), *v))
                        .collect()
                };
                for (path, value) in sources {
                    for (to, peer) in self.peers.iter().enumerate() {
                        if to == self.id || to == 0 || path.contains(&to) {
                            continue;
                        }
                        let mut next = path.clone();
                        next.push(self.id);
                        peer.tell(Msg::Receive {
                            path: next,
                            value: self.say(value, to),
                        })
                        .await
                        .map_err(|_| "a general is gone")?;
                    }
                }
            }
            Msg::Decide => return Ok(Some(Some(self.vote(&vec![0])))),
        }
        Ok(Some(None))
    }
}

/// Runs OM(m) with `n` generals, `traitors` being traitors and the commander ordering
/// `order`. Returns the loyal lieutenants' decisions.
async fn run(
    node: &Node,
    n: usize,
    m: usize,
    traitors: &[usize],
    order: Order,
) -> anyhow::Result<Vec<(usize, Order)>> {
    let mut generals = Vec::new();
    for id in 0..n {
        generals.push(node.spawn(General {
            id,
            m,
            loyal: !traitors.contains(&id),
            order: (id == 0).then_some(order),
            peers: Vec::new(),
            received: HashMap::new(),
        })?);
    }
    for g in &generals {
        g.ask_timeout(Msg::Peers(generals.clone()), TIMEOUT).await?;
    }
    // A round ends when every general has relayed; the tells of round r are in every
    // mailbox before the driver's round r+1 request (one mailbox per actor, in order).
    for round in 0..=m {
        let relays = generals
            .iter()
            .map(|g| g.ask_timeout(Msg::Relay { round }, TIMEOUT));
        for r in futures::future::join_all(relays).await {
            r?;
        }
    }
    let mut decisions = Vec::new();
    for (id, g) in generals.iter().enumerate().skip(1) {
        if !traitors.contains(&id) {
            match g.ask_timeout(Msg::Decide, TIMEOUT).await? {
                Some(d) => decisions.push((id, d)),
                None => bail!("general {id} did not decide"),
            }
        }
    }
    for g in generals {
        g.stop(plexspaces_core::ExitReason::Normal);
    }
    Ok(decisions)
}

/// (IC1 agreement, IC2 validity) of one run.
fn check(decisions: &[(usize, Order)], commander_loyal: bool, order: Order) -> (bool, bool) {
    let agreement = decisions.windows(2).all(|w| w[0].1 == w[1].1);
    let validity = !commander_loyal || decisions.iter().all(|(_, d)| *d == order);
    (agreement, validity)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let node = Node::builder("generals").build().await?;
    let cases: [(usize, usize, &[usize]); 4] = [
        (4, 1, &[2]),    // a traitorous lieutenant
        (4, 1, &[0]),    // a traitorous commander
        (7, 2, &[3, 5]), // two traitorous lieutenants
        (7, 2, &[0, 4]), // a traitorous commander and lieutenant
    ];
    for (n, m, traitors) in cases {
        ensure!(n > 3 * m, "a case with n >= 3m+1");
        let order = Order::Attack;
        let decisions = run(&node, n, m, traitors, order).await?;
        let (agreement, validity) = check(&decisions, !traitors.contains(&0), order);
        println!("OM({m}) n={n} traitors={traitors:?}: decisions {decisions:?}, agreement {agreement}, validity {validity}");
        ensure!(agreement && validity, "OM({m}) failed with n={n}");
    }
    // n = 3m: a loyal commander says ATTACK, the traitor tells lieutenant 1 RETREAT: a tie.
    let (n, m, traitors) = (3, 1, [2]);
    let decisions = run(&node, n, m, &traitors, Order::Attack).await?;
    let (agreement, validity) = check(&decisions, true, Order::Attack);
    println!("OM({m}) n={n} traitors={traitors:?}: decisions {decisions:?}, agreement {agreement}, validity {validity}");
    ensure!(!validity, "with n = 3m the traitor should have won");
    println!("byzantine generals: OM(m) held in 4 cases with n >= 3m+1 and failed with n = 3m: OK");
    node.shutdown().await;
    Ok(())
}
