//! Behaviour tests of the group coordinator, driven through its public API
//! with a fake clock (plain numbers) and a [`Harness`] that plays the
//! broker: it delivers completions, appends the records it is asked to
//! (into `log`) and reports them stored.

mod model;
mod offsets;
mod rebalance;
mod records;
mod static_membership;

use std::collections::BTreeMap;

use bytes::Bytes;

use super::error_code::{self, NONE};
use super::subscription::encode_subscription;
use super::*;

pub(super) const GROUP: &str = "orders-app";
pub(super) const SESSION_TIMEOUT_MS: i32 = 10_000;
pub(super) const REBALANCE_TIMEOUT_MS: i32 = 30_000;

pub(super) fn test_config() -> GroupConfig {
    GroupConfig {
        group_min_session_timeout_ms: 1_000,
        group_max_session_timeout_ms: 600_000,
        group_initial_rebalance_delay_ms: 0,
        ..GroupConfig::default()
    }
}

pub(super) fn subscription(topics: &[&str]) -> Bytes {
    Bytes::from(encode_subscription(topics))
}

pub(super) fn protocol(name: &str, topics: &[&str]) -> JoinProtocol {
    JoinProtocol { name: name.to_owned(), metadata: subscription(topics) }
}

/// A JoinGroup of a consumer subscribed to "orders" with the range assignor.
pub(super) fn join_request(member_id: &str, client_id: &str) -> JoinRequest {
    JoinRequest {
        group_id: GROUP.to_owned(),
        member_id: member_id.to_owned(),
        group_instance_id: None,
        protocol_type: "consumer".to_owned(),
        protocols: vec![protocol("range", &["orders"])],
        session_timeout_ms: SESSION_TIMEOUT_MS,
        rebalance_timeout_ms: REBALANCE_TIMEOUT_MS,
        require_known_member_id: false,
        supports_skipping_assignment: false,
        client_id: client_id.to_owned(),
        client_host: "/127.0.0.1".to_owned(),
    }
}

pub(super) fn static_join_request(member_id: &str, instance_id: &str) -> JoinRequest {
    JoinRequest { group_instance_id: Some(instance_id.to_owned()), ..join_request(member_id, instance_id) }
}

pub(super) fn sync_request(generation_id: i32, member_id: &str, assignments: &[(&str, &str)]) -> SyncRequest {
    SyncRequest {
        group_id: GROUP.to_owned(),
        generation_id,
        member_id: member_id.to_owned(),
        group_instance_id: None,
        protocol_type: Some("consumer".to_owned()),
        protocol_name: Some("range".to_owned()),
        assignments: assignments
            .iter()
            .map(|(member_id, assignment)| SyncAssignment {
                member_id: (*member_id).to_owned(),
                assignment: Bytes::copy_from_slice(assignment.as_bytes()),
            })
            .collect(),
    }
}

pub(super) fn assert_code(actual: i16, expected: i16) {
    assert_eq!(
        actual,
        expected,
        "got {} ({actual}), expected {} ({expected})",
        error_code::name(actual),
        error_code::name(expected)
    );
}

/// xorshift64*: deterministic randomness for the randomized tests.
pub(super) struct Random(pub u64);

impl Random {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Plays the broker around a coordinator.
pub(super) struct Harness {
    pub coordinator: GroupCoordinator,
    pub now_ms: i64,
    /// JoinGroup answers delivered through completions, by ticket.
    pub joins: BTreeMap<Ticket, JoinResponse>,
    /// SyncGroup answers delivered through completions, by ticket.
    pub syncs: BTreeMap<Ticket, SyncResponse>,
    /// Every record appended to `__consumer_offsets`, in order.
    pub log: Vec<Record>,
    /// When false, StoreGroup appends are held in `held_stores`.
    pub auto_store: bool,
    pub held_stores: Vec<(String, Ticket)>,
}

impl Harness {
    pub fn new() -> Self {
        Self::with_config(test_config())
    }

    pub fn with_config(config: GroupConfig) -> Self {
        Self {
            coordinator: GroupCoordinator::new(config, 42),
            now_ms: 1_000_000,
            joins: BTreeMap::new(),
            syncs: BTreeMap::new(),
            log: Vec::new(),
            auto_store: true,
            held_stores: Vec::new(),
        }
    }

    pub fn deliver(&mut self, completions: Vec<Completion>) {
        for completion in completions {
            match completion {
                Completion::Join { ticket, response } => {
                    assert!(self.joins.insert(ticket, response).is_none(), "join {ticket:?} answered twice");
                }
                Completion::Sync { ticket, response } => {
                    assert!(self.syncs.insert(ticket, response).is_none(), "sync {ticket:?} answered twice");
                }
                Completion::StoreGroup { group_id, ticket, record } => {
                    self.log.push(record);
                    if self.auto_store {
                        let more = self.coordinator.group_stored(&group_id, ticket, NONE, self.now_ms);
                        self.deliver(more);
                    } else {
                        self.held_stores.push((group_id, ticket));
                    }
                }
            }
        }
    }

    /// Reports every held store with `append_error_code`.
    pub fn release_stores(&mut self, append_error_code: i16) {
        for (group_id, ticket) in std::mem::take(&mut self.held_stores) {
            let more = self.coordinator.group_stored(&group_id, ticket, append_error_code, self.now_ms);
            self.deliver(more);
        }
    }

    pub fn join(&mut self, request: JoinRequest) -> Answer<JoinResponse> {
        let handled = self.coordinator.join(request, self.now_ms);
        self.deliver(handled.completions);
        handled.answer
    }

    pub fn sync(&mut self, request: SyncRequest) -> Answer<SyncResponse> {
        let handled = self.coordinator.sync(request, self.now_ms);
        self.deliver(handled.completions);
        handled.answer
    }

    pub fn heartbeat(&mut self, generation_id: i32, member_id: &str) -> i16 {
        self.coordinator.heartbeat(GROUP, generation_id, member_id, None, self.now_ms)
    }

    pub fn leave(&mut self, member_id: &str) -> LeaveResponse {
        let members = [LeaveMember { member_id: member_id.to_owned(), group_instance_id: None }];
        let left = self.coordinator.leave(GROUP, &members, self.now_ms);
        self.deliver(left.completions);
        left.response
    }

    /// Moves the clock and fires what is due.
    pub fn advance(&mut self, ms: i64) {
        self.now_ms += ms;
        self.tick();
    }

    pub fn tick(&mut self) {
        let completions = self.coordinator.tick(self.now_ms);
        self.deliver(completions);
    }

    /// The JoinGroup answer, now or delivered; `None` while parked.
    pub fn join_answer(&mut self, answer: &Answer<JoinResponse>) -> Option<JoinResponse> {
        match answer {
            Answer::Now(response) => Some(response.clone()),
            Answer::Later(ticket) => self.joins.get(ticket).cloned(),
        }
    }

    pub fn sync_answer(&mut self, answer: &Answer<SyncResponse>) -> Option<SyncResponse> {
        match answer {
            Answer::Now(response) => Some(response.clone()),
            Answer::Later(ticket) => self.syncs.get(ticket).cloned(),
        }
    }

    pub fn joined(&mut self, answer: &Answer<JoinResponse>) -> JoinResponse {
        self.join_answer(answer).expect("the JoinGroup has been answered")
    }

    pub fn synced(&mut self, answer: &Answer<SyncResponse>) -> SyncResponse {
        self.sync_answer(answer).expect("the SyncGroup has been answered")
    }

    pub fn state(&self) -> Option<GroupState> {
        self.coordinator.group_state(GROUP)
    }

    pub fn describe(&self) -> GroupDescription {
        self.coordinator.describe(&[GROUP.to_owned()]).remove(0)
    }

    /// New dynamic members join (JoinGroup v3 style, no MEMBER_ID_REQUIRED)
    /// and the join phase completes: their answers, in `clients` order.
    pub fn join_new_members(&mut self, clients: &[&str]) -> Vec<JoinResponse> {
        let answers: Vec<_> = clients.iter().map(|client| self.join(join_request("", client))).collect();
        self.tick();
        answers.iter().map(|answer| self.joined(answer)).collect()
    }

    /// Every member of `joined` syncs (followers first, then the leader,
    /// which assigns "p-{client position}"), returning the assignments.
    pub fn sync_members(&mut self, joined: &[JoinResponse]) -> Vec<SyncResponse> {
        let leader_id = joined[0].leader.clone();
        let generation_id = joined[0].generation_id;
        let assignments: Vec<(String, String)> =
            joined.iter().enumerate().map(|(i, j)| (j.member_id.clone(), format!("p-{i}"))).collect();
        let pairs: Vec<(&str, &str)> = assignments.iter().map(|(m, a)| (m.as_str(), a.as_str())).collect();
        let mut answers = Vec::new();
        for member in joined.iter().filter(|j| j.member_id != leader_id) {
            answers.push((member.member_id.clone(), self.sync(sync_request(generation_id, &member.member_id, &[]))));
        }
        answers.push((leader_id.clone(), self.sync(sync_request(generation_id, &leader_id, &pairs))));
        joined
            .iter()
            .map(|j| {
                let (_, answer) = answers.iter().find(|(id, _)| *id == j.member_id).expect("every member synced");
                let answer = answer.clone();
                self.synced(&answer)
            })
            .collect()
    }

    /// A Stable group of new members: their JoinGroup answers.
    pub fn stable_group(&mut self, clients: &[&str]) -> Vec<JoinResponse> {
        let joined = self.join_new_members(clients);
        self.sync_members(&joined);
        assert_eq!(self.state(), Some(GroupState::Stable));
        joined
    }
}
