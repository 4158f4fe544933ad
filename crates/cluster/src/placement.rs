//! Where a virtual actor's first activation goes (Orleans' placement strategies).
//!
//! A [`Placement`] is chosen per actor type, in code ([`PlacementTable::set`]) or in the node's
//! config (`[cluster.placement.<type>]`, deserialized into [`Placement`]). [`place`] picks one
//! node among the alive members ([`Candidate`], from the gossiped metadata):
//!
//! - [`Placement::ConsistentHash`] (the default): rendezvous hashing of the activation key
//!   over the candidates. Every node computes the same answer from the same member list, and
//!   a joining or leaving node moves only the keys it wins or held (about 1/N).
//! - [`Placement::PreferLocal`]: the node that received the call.
//! - [`Placement::ResourceAware`]: only candidates whose labels, CPUs, memory and I/O profile
//!   satisfy the type's [`ActorResourceRequirements`]; among them, rendezvous hashing
//!   weighted by CPUs, so bigger nodes take a proportionally bigger share.
//! - [`Placement::Pinned`]: one named node; an error when it is not alive.
//!
//! Placement only picks the node for a *first* activation: the directory
//! ([`crate::directory`]) decides ownership, so two nodes placing differently (their member
//! lists briefly disagree) still end with one activation.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::{Error, Member, MemberState, Result};

/// How much I/O an actor type does; matched against a node's `io` label
/// (`low`, `normal` or `high`; a node without the label counts as `normal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IoProfile {
    /// Any node.
    Low,
    /// A node labelled `io=normal` or `io=high` (or unlabelled).
    #[default]
    Normal,
    /// Only a node labelled `io=high`.
    High,
}

impl IoProfile {
    fn of_labels(labels: &BTreeMap<String, String>) -> IoProfile {
        match labels.get("io").map(String::as_str) {
            Some("low") => IoProfile::Low,
            Some("high") => IoProfile::High,
            _ => IoProfile::Normal,
        }
    }
}

/// What one activation of a type needs from its node (the product description's
/// `ActorResourceRequirements`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActorResourceRequirements {
    /// CPUs the node must have.
    pub cpu: f64,
    /// Memory (bytes) the node's host must have.
    pub memory_bytes: u64,
    /// I/O profile.
    pub io: IoProfile,
    /// Labels the node must carry with these exact values.
    pub labels: BTreeMap<String, String>,
}

impl ActorResourceRequirements {
    /// Whether `c` satisfies these requirements.
    pub fn admits(&self, c: &Candidate) -> bool {
        let labels = self.labels.iter().all(|(k, v)| c.labels.get(k) == Some(v));
        let cpu = self.cpu <= 0.0 || (c.cpus as f64) >= self.cpu;
        let memory = self.memory_bytes == 0 || c.memory_bytes >= self.memory_bytes;
        labels && cpu && memory && IoProfile::of_labels(&c.labels) >= self.io
    }
}

/// A placement strategy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case", deny_unknown_fields)]
pub enum Placement {
    /// Rendezvous hashing of the key over the alive nodes.
    #[default]
    ConsistentHash,
    /// The node that received the call.
    PreferLocal,
    /// Only nodes that satisfy the requirements; weighted by CPUs among them.
    ResourceAware(ActorResourceRequirements),
    /// Always this node.
    Pinned {
        /// The node's name.
        node: String,
    },
}

/// A node placement may choose, from its gossiped metadata.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Candidate {
    /// Node name.
    pub node: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// CPUs it can use.
    pub cpus: u64,
    /// Memory of its host (bytes).
    pub memory_bytes: u64,
    /// Live actors at its last refresh.
    pub live_actors: u64,
}

impl Candidate {
    /// A candidate with a name and the given CPUs, no labels.
    pub fn new(node: &str, cpus: u64) -> Self {
        Candidate {
            node: node.to_owned(),
            cpus,
            ..Candidate::default()
        }
    }

    /// The same candidate with a label.
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.to_owned(), value.to_owned());
        self
    }

    /// The alive members, as candidates, sorted by name.
    pub fn alive(members: &[Member]) -> Vec<Candidate> {
        let mut out: Vec<Candidate> = members
            .iter()
            .filter(|m| m.state == MemberState::Alive)
            .map(Candidate::from)
            .collect();
        out.sort_by(|a, b| a.node.cmp(&b.node));
        out
    }
}

impl From<&Member> for Candidate {
    fn from(m: &Member) -> Self {
        Candidate {
            node: m.node.clone(),
            labels: m.labels.clone(),
            cpus: m.cpus,
            memory_bytes: m.memory_bytes,
            live_actors: m.live_actors,
        }
    }
}

/// 64-bit FNV-1a: stable across processes, versions and platforms (unlike `std`'s hasher).
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0xff)) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// splitmix64's finalizer: spreads FNV's output over all 64 bits.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The rendezvous winner for `key` among `candidates`, each weighted (weight 1.0: plain
/// highest-random-weight hashing).
fn rendezvous<'a>(
    key: &str,
    candidates: impl Iterator<Item = (&'a Candidate, f64)>,
) -> Option<&'a Candidate> {
    let k = fnv1a(&[key]);
    candidates
        .map(|(c, weight)| {
            let h = mix(k ^ fnv1a(&[&c.node]));
            // u in (0, 1); score = w / -ln(u) is the weighted rendezvous score.
            let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
            (c, weight.max(f64::MIN_POSITIVE) / -u.ln())
        })
        .max_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.node.cmp(&a.0.node)))
        .map(|(c, _)| c)
}

/// The node that should host the first activation of `key` (any stable string form of the
/// activation key) under `placement`, called on node `local`, among `candidates` (the alive
/// members, `local` included).
pub fn place(
    placement: &Placement,
    key: &str,
    local: &str,
    candidates: &[Candidate],
) -> Result<String> {
    let none = || Error::Placement("no alive node to place on".into());
    match placement {
        Placement::ConsistentHash => rendezvous(key, candidates.iter().map(|c| (c, 1.0)))
            .map(|c| c.node.clone())
            .ok_or_else(none),
        Placement::PreferLocal => Ok(local.to_owned()),
        Placement::Pinned { node } => {
            if candidates.iter().any(|c| &c.node == node) {
                Ok(node.clone())
            } else {
                Err(Error::Placement(format!(
                    "pinned node {node:?} is not an alive member"
                )))
            }
        }
        Placement::ResourceAware(req) => rendezvous(
            key,
            candidates
                .iter()
                .filter(|c| req.admits(c))
                .map(|c| (c, c.cpus.max(1) as f64)),
        )
        .map(|c| c.node.clone())
        .ok_or_else(|| {
            Error::Placement(format!("no alive node satisfies the requirements {req:?}"))
        }),
    }
}

/// How many of `keys` each candidate gets under `placement` (a distribution report).
pub fn distribution<'a>(
    placement: &Placement,
    keys: impl IntoIterator<Item = &'a str>,
    local: &str,
    candidates: &[Candidate],
) -> Result<BTreeMap<String, usize>> {
    let mut out: BTreeMap<String, usize> = candidates.iter().map(|c| (c.node.clone(), 0)).collect();
    for key in keys {
        *out.entry(place(placement, key, local, candidates)?)
            .or_default() += 1;
    }
    Ok(out)
}

/// The placement of each actor type (the default for types not listed).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PlacementTable {
    /// Per type name.
    #[serde(flatten)]
    pub types: HashMap<String, Placement>,
}

impl PlacementTable {
    /// Sets the placement of `actor_type`.
    pub fn set(&mut self, actor_type: &str, placement: Placement) {
        self.types.insert(actor_type.to_owned(), placement);
    }

    /// The placement of `actor_type` ([`Placement::ConsistentHash`] when not set).
    pub fn get(&self, actor_type: &str) -> Placement {
        self.types.get(actor_type).cloned().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Vec<Candidate> {
        vec![
            Candidate::new("node0", 2),
            Candidate::new("node1", 2),
            Candidate::new("node2", 2),
        ]
    }

    fn keys(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("default/default/counter/k{i}"))
            .collect()
    }

    #[test]
    fn consistent_hash_spreads_keys_evenly_and_reports_the_distribution() {
        let ks = keys(30_000);
        let d = distribution(
            &Placement::ConsistentHash,
            ks.iter().map(String::as_str),
            "node0",
            &three(),
        )
        .unwrap();
        println!("distribution of 30000 keys over 3 nodes: {d:?}");
        for (node, n) in &d {
            assert!(
                (9_000..=11_000).contains(n),
                "{node} got {n} of 30000 keys: {d:?}"
            );
        }
    }

    #[test]
    fn consistent_hash_is_stable_and_moves_about_a_quarter_when_a_fourth_node_joins() {
        let ks = keys(20_000);
        let mut four = three();
        four.push(Candidate::new("node3", 2));
        let mut moved = 0;
        for k in &ks {
            let before = place(&Placement::ConsistentHash, k, "x", &three()).unwrap();
            assert_eq!(
                before,
                place(&Placement::ConsistentHash, k, "y", &three()).unwrap(),
                "every node computes the same owner"
            );
            let after = place(&Placement::ConsistentHash, k, "x", &four).unwrap();
            if after != before {
                assert_eq!(after, "node3", "a key only moves to the new node");
                moved += 1;
            }
        }
        println!("{moved} of 20000 keys moved to the fourth node");
        assert!((4_000..=6_000).contains(&moved), "moved {moved}");
    }

    #[test]
    fn prefer_local_and_pinned() {
        assert_eq!(
            place(&Placement::PreferLocal, "k", "node1", &three()).unwrap(),
            "node1"
        );
        let pinned = Placement::Pinned {
            node: "node2".into(),
        };
        for k in keys(100) {
            assert_eq!(place(&pinned, &k, "node0", &three()).unwrap(), "node2");
        }
        let gone = Placement::Pinned {
            node: "node9".into(),
        };
        assert!(matches!(
            place(&gone, "k", "node0", &three()),
            Err(Error::Placement(_))
        ));
        assert!(matches!(
            place(&Placement::ConsistentHash, "k", "node0", &[]),
            Err(Error::Placement(_))
        ));
    }

    #[test]
    fn resource_aware_lands_only_on_matching_nodes_weighted_by_cpus() {
        let nodes = vec![
            Candidate::new("small", 2),
            Candidate::new("gpu-a", 4)
                .label("gpu", "true")
                .label("io", "high"),
            Candidate::new("gpu-b", 12)
                .label("gpu", "true")
                .label("io", "high"),
            Candidate::new("gpu-slow", 16)
                .label("gpu", "true")
                .label("io", "low"),
        ];
        let req = ActorResourceRequirements {
            cpu: 4.0,
            io: IoProfile::High,
            labels: [("gpu".to_owned(), "true".to_owned())].into(),
            ..Default::default()
        };
        let ks = keys(8_000);
        let d = distribution(
            &Placement::ResourceAware(req.clone()),
            ks.iter().map(String::as_str),
            "small",
            &nodes,
        )
        .unwrap();
        println!("resource-aware distribution: {d:?}");
        assert_eq!(d["small"], 0, "no gpu label");
        assert_eq!(d["gpu-slow"], 0, "io profile too low");
        // 4 : 12 CPUs -> about 1/4 : 3/4.
        assert!((1_600..=2_400).contains(&d["gpu-a"]), "{d:?}");
        assert!((5_600..=6_400).contains(&d["gpu-b"]), "{d:?}");

        let too_big = ActorResourceRequirements {
            cpu: 64.0,
            ..Default::default()
        };
        assert!(matches!(
            place(&Placement::ResourceAware(too_big), "k", "small", &nodes),
            Err(Error::Placement(_))
        ));
        let memory = ActorResourceRequirements {
            memory_bytes: 1 << 30,
            ..Default::default()
        };
        let mut big = Candidate::new("big", 1);
        big.memory_bytes = 8 << 30;
        let mut tiny = Candidate::new("tiny", 8);
        tiny.memory_bytes = 512 << 20;
        for k in keys(200) {
            assert_eq!(
                place(
                    &Placement::ResourceAware(memory.clone()),
                    &k,
                    "tiny",
                    &[big.clone(), tiny.clone()]
                )
                .unwrap(),
                "big"
            );
        }
    }

    #[test]
    fn placement_reads_from_config() {
        let toml_like = serde_json::json!({
            "counter": {"strategy": "consistent_hash"},
            "session": {"strategy": "prefer_local"},
            "trainer": {"strategy": "resource_aware", "cpu": 4.0, "io": "high",
                        "labels": {"gpu": "true"}},
            "ledger": {"strategy": "pinned", "node": "node1"}
        });
        let table: PlacementTable = serde_json::from_value(toml_like).unwrap();
        assert_eq!(table.get("counter"), Placement::ConsistentHash);
        assert_eq!(table.get("session"), Placement::PreferLocal);
        assert_eq!(table.get("unlisted"), Placement::ConsistentHash);
        assert_eq!(
            table.get("ledger"),
            Placement::Pinned {
                node: "node1".into()
            }
        );
        let Placement::ResourceAware(req) = table.get("trainer") else {
            panic!("trainer is resource-aware");
        };
        assert_eq!(req.io, IoProfile::High);
        assert_eq!(req.cpu, 4.0);
        let bad = serde_json::json!({"x": {"strategy": "random"}});
        assert!(serde_json::from_value::<PlacementTable>(bad).is_err());
    }
}
