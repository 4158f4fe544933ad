//! Process groups (Erlang's `pg`): named sets of actors to address together.

use dashmap::DashMap;

use crate::actor::Actor;
use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crate::pid::Pid;

/// A node's process groups. A member that dies leaves all its groups.
#[derive(Default)]
pub struct ProcessGroups {
    groups: DashMap<String, Vec<Pid>>,
}

impl std::fmt::Debug for ProcessGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroups")
            .field("groups", &self.groups.len())
            .finish()
    }
}

impl ProcessGroups {
    /// Adds `pid` to `group` (joining twice is a no-op). A dead local actor cannot join.
    pub fn join(&self, group: &str, pid: &Pid) -> Result<()> {
        if let Some(cell) = pid.cell() {
            let mut state = cell.core().state.lock();
            if state.exit.is_some() {
                return Err(Error::NoProc(pid.id().to_string()));
            }
            if !state.groups.iter().any(|g| g == group) {
                state.groups.push(group.to_owned());
            }
        }
        let mut members = self.groups.entry(group.to_owned()).or_default();
        if !members.iter().any(|m| m.same(pid)) {
            members.push(pid.clone());
        }
        Ok(())
    }

    /// Removes `pid` from `group`. Returns whether it was a member.
    pub fn leave(&self, group: &str, pid: &Pid) -> bool {
        if let Some(cell) = pid.cell() {
            cell.core().state.lock().groups.retain(|g| g != group);
        }
        self.remove_member(group, pid)
    }

    pub(crate) fn remove_member(&self, group: &str, pid: &Pid) -> bool {
        let mut removed = false;
        if let Some(mut members) = self.groups.get_mut(group) {
            let before = members.len();
            members.retain(|m| !m.same(pid));
            removed = members.len() != before;
        }
        self.groups
            .remove_if(group, |_, members| members.is_empty());
        removed
    }

    /// Removes every member that lives on `node` (a lost node). Returns how many left.
    pub(crate) fn remove_node(&self, node: &str) -> usize {
        let mut removed = 0;
        for mut members in self.groups.iter_mut() {
            let before = members.len();
            members.retain(|m| m.is_local() || m.id().node() != node);
            removed += before - members.len();
        }
        self.groups.retain(|_, members| !members.is_empty());
        removed
    }

    /// The members of `group`, in join order.
    pub fn members(&self, group: &str) -> Vec<Pid> {
        self.groups
            .get(group)
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// Names of all non-empty groups.
    pub fn which_groups(&self) -> Vec<String> {
        self.groups.iter().map(|e| e.key().clone()).collect()
    }

    /// Sends a copy of `env` to every member without waiting on full mailboxes. Returns how
    /// many accepted it.
    pub fn broadcast_envelope(&self, group: &str, env: &Envelope) -> usize {
        self.members(group)
            .iter()
            .filter(|m| m.try_tell_envelope(env.clone()).is_ok())
            .count()
    }

    /// Sends a clone of `msg` to every member of type `A` (waiting for mailbox space).
    /// Returns how many accepted it.
    pub async fn broadcast<A: Actor>(&self, group: &str, msg: A::Msg) -> usize
    where
        A::Msg: Clone,
    {
        let mut delivered = 0;
        for member in self.members(group) {
            if let Some(actor) = member.typed::<A>() {
                if actor.tell(msg.clone()).await.is_ok() {
                    delivered += 1;
                }
            }
        }
        delivered
    }
}
