//! What goes into and comes out of the group coordinator: the requests and
//! responses of the group APIs in plain Rust (field names follow Kafka's
//! message schemas), the ticket a parked request waits under, and the
//! completions that answer parked requests later.
//!
//! These types carry no wire encoding; the API handlers translate between
//! them and `kafka-protocol`'s messages.

use bytes::Bytes;

use super::record::Record;

/// Names a request the coordinator parked (a JoinGroup waiting for the
/// rebalance, a SyncGroup waiting for the leader) or a group metadata
/// append waiting for the log. Unique per coordinator, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ticket(pub u64);

/// An answer now, or later through a [`Completion`] carrying this ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer<R> {
    Now(R),
    Later(Ticket),
}

/// The result of a call that can park its request: the caller's own answer
/// and the completions the call caused for others (and for itself, when it
/// both parked and completed; then `answer` is already `Now`).
#[derive(Debug, Clone)]
pub struct Handled<R> {
    pub answer: Answer<R>,
    pub completions: Vec<Completion>,
}

/// Work the coordinator hands back to its caller.
#[derive(Debug, Clone)]
pub enum Completion {
    /// The JoinGroup parked under `ticket` is answered.
    Join { ticket: Ticket, response: JoinResponse },
    /// The SyncGroup parked under `ticket` is answered.
    Sync { ticket: Ticket, response: SyncResponse },
    /// Append `record` to the group's `__consumer_offsets` partition, then
    /// report the append's error code (0 on success) through
    /// `GroupCoordinator::group_stored(group_id, ticket, code, now_ms)`.
    /// Members waiting on the write (the leader's SyncGroup, a static
    /// member's rejoin) are answered then, as Kafka answers after
    /// `storeGroup`; for the other writes the report is a no-op but harmless.
    /// Append records in the order they are handed out: the topic is
    /// compacted, so the last record of a group is the one a restart loads.
    StoreGroup { group_id: String, ticket: Ticket, record: Record },
}

/// One protocol a joining member supports, with its metadata (for a
/// consumer, the subscription of the assignor named `name`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinProtocol {
    pub name: String,
    pub metadata: Bytes,
}

/// A JoinGroup request (any version; see the field docs for old versions).
#[derive(Debug, Clone)]
pub struct JoinRequest {
    pub group_id: String,
    /// "" for a member joining for the first time.
    pub member_id: String,
    /// `group.instance.id` (v5+), making the member static.
    pub group_instance_id: Option<String>,
    pub protocol_type: String,
    /// In the member's order of preference; a repeated name keeps only its
    /// first entry.
    pub protocols: Vec<JoinProtocol>,
    pub session_timeout_ms: i32,
    /// v0 has none: pass the session timeout, as Kafka does.
    pub rebalance_timeout_ms: i32,
    /// True for JoinGroup v4+ (KIP-394): a new dynamic member first gets
    /// MEMBER_ID_REQUIRED with its id and must join again with it.
    pub require_known_member_id: bool,
    /// True for JoinGroup v9+: a static leader rejoining a Stable group is
    /// told it leads but should skip the assignment.
    pub supports_skipping_assignment: bool,
    /// The request header's client id.
    pub client_id: String,
    /// The client's address as Kafka prints it ("/127.0.0.1").
    pub client_host: String,
}

/// A member in the leader's JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponseMember {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub metadata: Bytes,
}

/// A JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    pub error_code: i16,
    /// -1 with an error.
    pub generation_id: i32,
    /// `None` with an error (Kafka sends null from v7, "" before).
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// "" with an error.
    pub leader: String,
    pub skip_assignment: bool,
    pub member_id: String,
    /// Every member with its metadata for the chosen protocol, for the
    /// leader only; empty for followers.
    pub members: Vec<JoinResponseMember>,
}

impl JoinResponse {
    /// Kafka's `JoinGroupResult(memberId, error)`.
    pub fn error(member_id: &str, error_code: i16) -> Self {
        Self {
            error_code,
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            skip_assignment: false,
            member_id: member_id.to_owned(),
            members: Vec::new(),
        }
    }
}

/// One member's assignment in the leader's SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncAssignment {
    pub member_id: String,
    pub assignment: Bytes,
}

/// A SyncGroup request.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    pub group_id: String,
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    /// v5+: checked against the group's (INCONSISTENT_GROUP_PROTOCOL).
    pub protocol_type: Option<String>,
    /// v5+: checked against the group's (INCONSISTENT_GROUP_PROTOCOL).
    pub protocol_name: Option<String>,
    /// Only the leader's are used; members it leaves out get an empty assignment.
    pub assignments: Vec<SyncAssignment>,
}

/// A SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    pub error_code: i16,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

impl SyncResponse {
    /// Kafka's `SyncGroupResult(error)`.
    pub fn error(error_code: i16) -> Self {
        Self { error_code, protocol_type: None, protocol_name: None, assignment: Bytes::new() }
    }
}

/// One member named in a LeaveGroup (v3+ carry a list; v0-v2 one member id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveMember {
    /// "" to remove a static member by instance id (admin removal).
    pub member_id: String,
    pub group_instance_id: Option<String>,
}

/// What became of one leaving member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveMemberResponse {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub error_code: i16,
}

/// A LeaveGroup response. For v0-v2 (one member, no member list in the
/// response) send the single member's code as the top-level code when
/// `error_code` is NONE, as Kafka does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaveResponse {
    pub error_code: i16,
    pub members: Vec<LeaveMemberResponse>,
}

/// The result of a LeaveGroup: the response, and the completions it caused
/// (parked joins finish when the last awaited member leaves).
#[derive(Debug, Clone)]
pub struct Left {
    pub response: LeaveResponse,
    pub completions: Vec<Completion>,
}

/// A group in ListGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupListing {
    pub group_id: String,
    /// "" for a group only used to store offsets.
    pub protocol_type: String,
    /// As Kafka prints it ([`super::GroupState::name`]); v4+ filter on it.
    pub state: &'static str,
}

/// A member in DescribeGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    /// Only in a Stable group, as in Kafka; empty otherwise.
    pub metadata: Bytes,
    /// Only in a Stable group, as in Kafka; empty otherwise.
    pub assignment: Bytes,
}

/// A group in DescribeGroups. An unknown group is described as Kafka does:
/// error NONE, state "Dead", nothing else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    pub group_id: String,
    pub error_code: i16,
    pub state: &'static str,
    pub protocol_type: String,
    /// The chosen protocol in a Stable group, "" otherwise (Kafka's rule).
    pub protocol_name: String,
    pub members: Vec<MemberDescription>,
    /// Not in the Kafka response: for logs, metrics and tests.
    pub generation_id: i32,
    /// Not in the Kafka response: for logs, metrics and tests.
    pub leader_id: Option<String>,
}
