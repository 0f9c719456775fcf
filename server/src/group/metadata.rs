//! One group's state (Kafka's `GroupMetadata`): its lifecycle state, its
//! generation, its members and the protocol they agreed on, and the timers
//! the coordinator runs for it.
//!
//! ```text
//! Empty ──join──► PreparingRebalance ──all rejoined or timeout──► CompletingRebalance
//!   ▲              │        ▲                                       │         │
//!   └─ none left ──┘        ├────── join, leave, failure ───────────┘         │ assignment
//!                           └────── join, leave, failure ◄── Stable ◄─────────┘ stored
//! ```
//!
//! Dead is the state of a group that is gone (deleted, or its offsets all
//! expired): the coordinator drops it from its table, so Dead is only ever
//! reported for unknown groups. This type holds data and small queries; the
//! transitions that answer members live in the coordinator.

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;

use super::member::MemberMetadata;
use super::messages::{JoinProtocol, JoinResponseMember, Ticket};
use super::record::{GroupMetadataValue, MemberMetadataValue};
use super::subscription::{subscribed_topics, CONSUMER_PROTOCOL_TYPE};

/// A group's place in the rebalance protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GroupState {
    /// No members. A group used only to store offsets stays here.
    Empty,
    /// Waiting for members to (re)join; heartbeats answer REBALANCE_IN_PROGRESS.
    PreparingRebalance,
    /// Joins answered, waiting for the leader's SyncGroup.
    CompletingRebalance,
    /// Every member has its assignment.
    Stable,
    /// Gone; only reported for groups the coordinator does not know.
    Dead,
}

impl GroupState {
    /// The name Kafka prints (DescribeGroups, ListGroups, kafka-consumer-groups).
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
            Self::Stable => "Stable",
            Self::Dead => "Dead",
        }
    }

    /// Kafka's `validPreviousStates`.
    fn can_follow(self, previous: GroupState) -> bool {
        use GroupState::*;
        match self {
            PreparingRebalance => matches!(previous, Stable | CompletingRebalance | Empty),
            CompletingRebalance => previous == PreparingRebalance,
            Stable => previous == CompletingRebalance,
            Empty => previous == PreparingRebalance,
            Dead => true,
        }
    }
}

/// The timer that ends the join phase of a rebalance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum JoinTimer {
    /// Kafka's `DelayedJoin`: completes as soon as every member has
    /// rejoined, or at the deadline (the largest rebalance timeout of the
    /// members) without those that did not.
    Rebalance { deadline_ms: i64 },
    /// Kafka's `InitialDelayedJoin` for a group that was Empty: waits
    /// `delay_ms` so consumers starting together land in one generation,
    /// and waits again (within `remaining_ms`) while new members keep
    /// arriving in generation 0.
    Initial { deadline_ms: i64, delay_ms: i64, remaining_ms: i64 },
}

impl JoinTimer {
    pub fn deadline_ms(self) -> i64 {
        match self {
            Self::Rebalance { deadline_ms } | Self::Initial { deadline_ms, .. } => deadline_ms,
        }
    }
}

/// A group metadata append in flight, and what to do when it is reported.
#[derive(Debug, Clone)]
pub(super) enum PendingStore {
    /// The leader's assignment for `generation_id`: answer the SyncGroups
    /// and go Stable on success; on failure answer them with the error and
    /// rebalance.
    Assignment { ticket: Ticket, generation_id: i32, assignment: BTreeMap<String, Bytes> },
    /// A static member replaced in a Stable group without a rebalance:
    /// answer its JoinGroup on success; undo the replacement on failure.
    StaticMember(Box<StaticReplacement>),
}

impl PendingStore {
    pub fn ticket(&self) -> Ticket {
        match self {
            Self::Assignment { ticket, .. } => *ticket,
            Self::StaticMember(replacement) => replacement.ticket,
        }
    }
}

/// What is needed to answer, or undo, a static member's replacement.
#[derive(Debug, Clone)]
pub(super) struct StaticReplacement {
    pub ticket: Ticket,
    pub join_ticket: Ticket,
    pub group_instance_id: String,
    pub old_member_id: String,
    pub new_member_id: String,
    pub old_protocols: Vec<JoinProtocol>,
    pub old_rebalance_timeout_ms: i32,
    pub old_session_timeout_ms: i32,
    /// The leader before the replacement: a pre-v9 static leader must not
    /// believe it leads, or it would compute an assignment a Stable group
    /// never distributes.
    pub leader_before: Option<String>,
    pub supports_skipping_assignment: bool,
}

#[derive(Debug, Clone)]
pub(super) struct GroupMetadata {
    pub group_id: String,
    pub state: GroupState,
    /// When the group last changed state (offset retention of an Empty
    /// group counts from here); `None` when loaded from a record without it.
    pub current_state_timestamp_ms: Option<i64>,
    /// Set by the first member; `None` for a group used only for offsets.
    pub protocol_type: Option<String>,
    /// The protocol chosen for the current generation.
    pub protocol_name: Option<String>,
    pub generation_id: i32,
    pub leader_id: Option<String>,
    /// Ordered by member id, which makes every walk over them deterministic.
    pub members: BTreeMap<String, MemberMetadata>,
    /// `group.instance.id` → member id.
    pub static_members: BTreeMap<String, String>,
    /// Members told MEMBER_ID_REQUIRED, with the deadline to come back by.
    pub pending_members: BTreeMap<String, i64>,
    /// Members that have not sent SyncGroup since the join phase ended.
    pub pending_sync_members: BTreeSet<String>,
    /// For a consumer group, the topics its members subscribe to, computed
    /// at each new generation and at load (Kafka's `subscribedTopics`).
    pub subscribed_topics: Option<BTreeSet<String>>,
    /// A member joined during the initial delay of generation 0.
    pub new_member_added: bool,
    pub join_timer: Option<JoinTimer>,
    /// Kafka's `DelayedSync`: members still in `pending_sync_members` at
    /// this deadline are removed and the group rebalances.
    pub sync_deadline_ms: Option<i64>,
    pub pending_stores: Vec<PendingStore>,
    /// The deadline under which the coordinator's timer index holds this group.
    pub indexed_deadline_ms: Option<i64>,
}

impl GroupMetadata {
    pub fn new(group_id: &str, now_ms: i64) -> Self {
        Self {
            group_id: group_id.to_owned(),
            state: GroupState::Empty,
            current_state_timestamp_ms: Some(now_ms),
            protocol_type: None,
            protocol_name: None,
            generation_id: 0,
            leader_id: None,
            members: BTreeMap::new(),
            static_members: BTreeMap::new(),
            pending_members: BTreeMap::new(),
            pending_sync_members: BTreeSet::new(),
            subscribed_topics: None,
            new_member_added: false,
            join_timer: None,
            sync_deadline_ms: None,
            pending_stores: Vec::new(),
            indexed_deadline_ms: None,
        }
    }

    pub fn is(&self, state: GroupState) -> bool {
        self.state == state
    }

    /// Moves to `state`. A transition Kafka forbids is a coordinator bug,
    /// so it stops the process rather than corrupt the group.
    pub fn transition_to(&mut self, state: GroupState, now_ms: i64) {
        assert!(
            state.can_follow(self.state),
            "group {}: invalid transition {:?} -> {:?}",
            self.group_id,
            self.state,
            state
        );
        self.state = state;
        self.current_state_timestamp_ms = Some(now_ms);
    }

    pub fn can_rebalance(&self) -> bool {
        GroupState::PreparingRebalance.can_follow(self.state)
    }

    pub fn is_leader(&self, member_id: &str) -> bool {
        self.leader_id.as_deref() == Some(member_id)
    }

    pub fn is_consumer_group(&self) -> bool {
        self.protocol_type.as_deref() == Some(CONSUMER_PROTOCOL_TYPE)
    }

    /// The largest rebalance timeout of the members: how long a rebalance waits.
    pub fn rebalance_timeout_ms(&self) -> i64 {
        self.members.values().map(|m| i64::from(m.rebalance_timeout_ms)).max().unwrap_or(0)
    }

    pub fn awaiting_join_count(&self) -> usize {
        self.members.values().filter(|m| m.awaiting_join.is_some()).count()
    }

    /// Kafka's `hasAllMembersJoined`: every member is waiting in JoinGroup
    /// and no MEMBER_ID_REQUIRED member is still expected.
    pub fn has_all_members_joined(&self) -> bool {
        self.members.values().all(|m| m.awaiting_join.is_some()) && self.pending_members.is_empty()
    }

    /// The member id `group_instance_id` currently maps to.
    pub fn static_member_id(&self, group_instance_id: &str) -> Option<&str> {
        self.static_members.get(group_instance_id).map(String::as_str)
    }

    /// Kafka's `supportsProtocols`: a first member needs a protocol type
    /// and at least one protocol; later ones the group's protocol type and
    /// one protocol every current member supports.
    pub fn supports_protocols(&self, protocol_type: &str, protocols: &[JoinProtocol]) -> bool {
        if self.is(GroupState::Empty) {
            !protocol_type.is_empty() && !protocols.is_empty()
        } else {
            self.protocol_type.as_deref() == Some(protocol_type)
                && protocols.iter().any(|p| self.members.values().all(|m| m.supports(&p.name)))
        }
    }

    /// The protocols every member supports.
    fn candidate_protocols(&self) -> Vec<&str> {
        let Some(first) = self.members.values().next() else {
            return Vec::new();
        };
        first
            .supported_protocols
            .iter()
            .map(|p| p.name.as_str())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect()
    }

    /// Kafka's `selectProtocol`: each member votes for its most preferred
    /// candidate and the most votes win. Kafka breaks ties arbitrarily (a
    /// hash map); here the candidate earliest in the preference of the
    /// member with the smallest id wins, so the choice is reproducible.
    /// `None` only for a group without members.
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols();
        let mut votes: Vec<(&str, usize)> = candidates.iter().map(|c| (*c, 0)).collect();
        for member in self.members.values() {
            if let Some(vote) = member.vote(&candidates) {
                if let Some(entry) = votes.iter_mut().find(|(name, _)| *name == vote) {
                    entry.1 += 1;
                }
            }
        }
        let mut best: Option<(&str, usize)> = None;
        for (name, count) in votes {
            if best.is_none_or(|(_, most)| count > most) {
                best = Some((name, count));
            }
        }
        best.map(|(name, _)| name.to_owned())
    }

    /// Kafka's `computeSubscribedTopics`.
    pub fn compute_subscribed_topics(&self) -> Option<BTreeSet<String>> {
        if !self.is_consumer_group() {
            return None;
        }
        if self.members.is_empty() {
            return Some(BTreeSet::new());
        }
        let protocol_name = self.protocol_name.as_deref()?;
        let mut topics = BTreeSet::new();
        for member in self.members.values() {
            topics.extend(subscribed_topics(&member.metadata(protocol_name))?);
        }
        Some(topics)
    }

    /// Kafka's `isSubscribedToTopic`: when unknown, assume subscribed.
    pub fn is_subscribed_to_topic(&self, topic: &str) -> bool {
        self.subscribed_topics.as_ref().is_none_or(|topics| topics.contains(topic))
    }

    /// Every member with its metadata for the chosen protocol: the leader's
    /// JoinGroup response.
    pub fn current_member_metadata(&self) -> Vec<JoinResponseMember> {
        let protocol_name = self.protocol_name.as_deref().unwrap_or_default();
        self.members
            .values()
            .map(|m| JoinResponseMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(protocol_name),
            })
            .collect()
    }

    /// Kafka's `GroupMetadata.remove`: drops the member and what refers to
    /// it; a departing leader is replaced by the first remaining member.
    pub fn remove(&mut self, member_id: &str) {
        if let Some(member) = self.members.remove(member_id) {
            if let Some(instance_id) = &member.group_instance_id {
                self.static_members.remove(instance_id);
            }
        }
        if self.is_leader(member_id) {
            self.leader_id = self.members.keys().next().cloned();
        }
        self.pending_members.remove(member_id);
        self.pending_sync_members.remove(member_id);
    }

    /// The group metadata record Kafka's `storeGroup` writes: the members
    /// with their metadata for the chosen protocol and the given assignment.
    pub fn metadata_value(&self, assignment: &BTreeMap<String, Bytes>) -> GroupMetadataValue {
        let protocol_name = self.protocol_name.as_deref().unwrap_or_default();
        GroupMetadataValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation_id: self.generation_id,
            protocol_name: self.protocol_name.clone(),
            leader_id: self.leader_id.clone(),
            current_state_timestamp_ms: self.current_state_timestamp_ms.unwrap_or(-1),
            members: self
                .members
                .values()
                .map(|m| MemberMetadataValue {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(protocol_name),
                    assignment: assignment.get(&m.member_id).cloned().unwrap_or_default(),
                })
                .collect(),
        }
    }

    /// The current assignment of every member.
    pub fn current_assignment(&self) -> BTreeMap<String, Bytes> {
        self.members.values().map(|m| (m.member_id.clone(), m.assignment.clone())).collect()
    }

    /// The earliest timer of this group, if any.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        let members = self.members.values().filter_map(|m| m.session_deadline_ms);
        let pending = self.pending_members.values().copied();
        let group = self.join_timer.map(JoinTimer::deadline_ms).into_iter().chain(self.sync_deadline_ms);
        members.chain(pending).chain(group).min()
    }
}
