//! etcd's server errors (etcd `api/v3rpc/rpctypes/error.go`): each with the gRPC code and the exact message etcd
//! sends, written once in the table below. Every crate's own error enum is converted into one of these at the gRPC
//! edge, so no other code builds an etcd message string by hand; clients decode a `Status` back with
//! [`EtcdError::from_status`].

use tonic::{Code, Status};

macro_rules! etcd_errors {
    ($($variant:ident => $code:ident, $message:literal;)*) => {
        /// An error as etcd's server returns it.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
        pub enum EtcdError {
            $(#[error($message)] $variant,)*
        }

        impl EtcdError {
            /// Every error, in the table's order.
            pub const ALL: &'static [EtcdError] = &[$(EtcdError::$variant,)*];

            /// The gRPC status code etcd answers with.
            #[must_use]
            pub fn code(self) -> Code {
                match self {
                    $(EtcdError::$variant => Code::$code,)*
                }
            }

            /// The status message, byte for byte as etcd's.
            #[must_use]
            pub fn message(self) -> &'static str {
                match self {
                    $(EtcdError::$variant => $message,)*
                }
            }
        }
    };
}

etcd_errors! {
    EmptyKey => InvalidArgument, "etcdserver: key is not provided";
    KeyNotFound => InvalidArgument, "etcdserver: key not found";
    ValueProvided => InvalidArgument, "etcdserver: value is provided";
    LeaseProvided => InvalidArgument, "etcdserver: lease is provided";
    TooManyOps => InvalidArgument, "etcdserver: too many operations in txn request";
    DuplicateKey => InvalidArgument, "etcdserver: duplicate key given in txn request";
    Compacted => OutOfRange, "etcdserver: mvcc: required revision has been compacted";
    FutureRev => OutOfRange, "etcdserver: mvcc: required revision is a future revision";
    NoSpace => ResourceExhausted, "etcdserver: mvcc: database space exceeded";

    LeaseNotFound => NotFound, "etcdserver: requested lease not found";
    LeaseExist => FailedPrecondition, "etcdserver: lease already exists";
    LeaseTtlTooLarge => OutOfRange, "etcdserver: too large lease TTL";

    WatchCanceled => Cancelled, "etcdserver: watch canceled";

    MemberExist => FailedPrecondition, "etcdserver: member ID already exist";
    PeerUrlExist => FailedPrecondition, "etcdserver: Peer URLs already exists";
    // Unknown, as etcd answers: its server maps this error to rpctypes' client-side error value, not to a gRPC
    // status, so gRPC sends it as Unknown.
    MemberNotEnoughStarted => Unknown,
        "etcdserver: re-configuration failed due to not enough started members";
    MemberBadUrls => InvalidArgument, "etcdserver: given member URLs are invalid";
    MemberNotFound => NotFound, "etcdserver: member not found";
    MemberNotLearner => FailedPrecondition, "etcdserver: can only promote a learner member";
    LearnerNotReady => FailedPrecondition,
        "etcdserver: can only promote a learner member which is in sync with leader";
    TooManyLearners => FailedPrecondition, "etcdserver: too many learner members in cluster";

    RequestTooLarge => InvalidArgument, "etcdserver: request is too large";
    TooManyRequests => ResourceExhausted, "etcdserver: too many requests";

    RootUserNotExist => FailedPrecondition, "etcdserver: root user does not exist";
    RootRoleNotExist => FailedPrecondition, "etcdserver: root user does not have root role";
    UserAlreadyExist => FailedPrecondition, "etcdserver: user name already exists";
    UserEmpty => InvalidArgument, "etcdserver: user name is empty";
    UserNotFound => FailedPrecondition, "etcdserver: user name not found";
    RoleAlreadyExist => FailedPrecondition, "etcdserver: role name already exists";
    RoleNotFound => FailedPrecondition, "etcdserver: role name not found";
    RoleEmpty => InvalidArgument, "etcdserver: role name is empty";
    AuthFailed => InvalidArgument, "etcdserver: authentication failed, invalid user ID or password";
    PermissionDenied => PermissionDenied, "etcdserver: permission denied";
    RoleNotGranted => FailedPrecondition, "etcdserver: role is not granted to the user";
    PermissionNotGranted => FailedPrecondition, "etcdserver: permission is not granted to the role";
    AuthNotEnabled => FailedPrecondition, "etcdserver: authentication is not enabled";
    InvalidAuthToken => Unauthenticated, "etcdserver: invalid auth token";
    InvalidAuthMgmt => InvalidArgument, "etcdserver: invalid auth management";

    NoLeader => Unavailable, "etcdserver: no leader";
    NotLeader => FailedPrecondition, "etcdserver: not leader";
    LeaderChanged => Unavailable, "etcdserver: leader changed";
    NotCapable => Unavailable, "etcdserver: not capable";
    Stopped => Unavailable, "etcdserver: server stopped";
    Timeout => Unavailable, "etcdserver: request timed out";
    TimeoutDueToLeaderFail => Unavailable,
        "etcdserver: request timed out, possibly due to previous leader failure";
    TimeoutDueToConnectionLost => Unavailable,
        "etcdserver: request timed out, possibly due to connection lost";
    Unhealthy => Unavailable, "etcdserver: unhealthy cluster";
    Corrupt => DataLoss, "etcdserver: corrupt cluster";
    NotSupportedForLearner => Unavailable, "etcdserver: rpc not supported for learner";
    BadLeaderTransferee => FailedPrecondition, "etcdserver: bad leader transferee";

    ClusterVersionUnavailable => Unavailable, "etcdserver: cluster version not found during downgrade";
    WrongDowngradeVersionFormat => InvalidArgument, "etcdserver: wrong downgrade target version format";
    InvalidDowngradeTargetVersion => InvalidArgument, "etcdserver: invalid downgrade target version";
    DowngradeInProcess => FailedPrecondition, "etcdserver: cluster has a downgrade job in progress";
    NoInflightDowngrade => FailedPrecondition, "etcdserver: no inflight downgrade job";

    Canceled => Cancelled, "etcdserver: request canceled";
    DeadlineExceeded => DeadlineExceeded, "etcdserver: context deadline exceeded";
}

impl EtcdError {
    /// The etcd error a status carries, recognised by its message as etcd's clientv3 does.
    #[must_use]
    pub fn from_status(status: &Status) -> Option<EtcdError> {
        EtcdError::ALL.iter().copied().find(|e| e.message() == status.message())
    }
}

impl From<EtcdError> for Status {
    fn from(e: EtcdError) -> Status {
        Status::new(e.code(), e.message())
    }
}

/// tonic's refusal of a message over a size limit, reworded as grpc-go's (what etcd answers and its clients
/// print): "Error, decoded message length too large: found N bytes, the limit is: M bytes" (OutOfRange) becomes
/// "grpc: received message larger than max (N vs. M)" (ResourceExhausted), and the encoded one "grpc: trying to
/// send message larger than max (N vs. M)". Any other status gives None.
#[must_use]
pub fn go_size_limit(status: &Status) -> Option<Status> {
    if status.code() != Code::OutOfRange {
        return None;
    }
    let message = status.message();
    let (verb, rest) =
        if let Some(rest) = message.strip_prefix("Error, decoded message length too large: found ") {
            ("received", rest)
        } else {
            ("trying to send", message.strip_prefix("Error, encoded message length too large: found ")?)
        };
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    Some(Status::resource_exhausted(format!("grpc: {verb} message larger than max ({found} vs. {limit})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// etcd 3.4's answer to a put of a 3,000,000-byte value (over --max-request-bytes plus gRPC's 512 KiB).
    #[test]
    fn size_limits_read_as_grpc_gos() {
        let tonic = Status::out_of_range(
            "Error, decoded message length too large: found 3000015 bytes, the limit is: 2097152 bytes",
        );
        let go = go_size_limit(&tonic).expect("a size limit");
        assert_eq!(go.code(), Code::ResourceExhausted);
        assert_eq!(go.message(), "grpc: received message larger than max (3000015 vs. 2097152)");
        let sent = Status::out_of_range(
            "Error, encoded message length too large: found 9 bytes, the limit is: 4 bytes",
        );
        assert_eq!(
            go_size_limit(&sent).map(|s| s.message().to_owned()).as_deref(),
            Some("grpc: trying to send message larger than max (9 vs. 4)")
        );
        assert!(go_size_limit(&Status::out_of_range(
            "etcdserver: mvcc: required revision is a future revision"
        ))
        .is_none());
        assert!(go_size_limit(&Status::internal(
            "Error, decoded message length too large: found 1 bytes, the limit is: 0 bytes"
        ))
        .is_none());
    }

    /// The errors etcd clients match on most, checked against etcd 3.4's wire answers one by one.
    #[test]
    fn common_errors_are_etcds_byte_for_byte() {
        let cases = [
            (EtcdError::EmptyKey, Code::InvalidArgument, "etcdserver: key is not provided"),
            (EtcdError::TooManyOps, Code::InvalidArgument, "etcdserver: too many operations in txn request"),
            (
                EtcdError::DuplicateKey,
                Code::InvalidArgument,
                "etcdserver: duplicate key given in txn request",
            ),
            (
                EtcdError::Compacted,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision has been compacted",
            ),
            (
                EtcdError::FutureRev,
                Code::OutOfRange,
                "etcdserver: mvcc: required revision is a future revision",
            ),
            (EtcdError::LeaseNotFound, Code::NotFound, "etcdserver: requested lease not found"),
            (EtcdError::RequestTooLarge, Code::InvalidArgument, "etcdserver: request is too large"),
            (EtcdError::NoLeader, Code::Unavailable, "etcdserver: no leader"),
            (EtcdError::NotCapable, Code::Unavailable, "etcdserver: not capable"),
            (EtcdError::Corrupt, Code::DataLoss, "etcdserver: corrupt cluster"),
            (
                EtcdError::MemberNotEnoughStarted,
                Code::Unknown,
                "etcdserver: re-configuration failed due to not enough started members",
            ),
            (EtcdError::Unhealthy, Code::Unavailable, "etcdserver: unhealthy cluster"),
        ];
        for (error, code, message) in cases {
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{error:?}");
            assert_eq!(status.message(), message, "{error:?}");
            assert_eq!(error.to_string(), message, "Display is the wire message for {error:?}");
        }
    }

    #[test]
    fn every_entry_is_an_etcdserver_message_with_an_error_code() {
        for &error in EtcdError::ALL {
            assert!(error.message().starts_with("etcdserver: "), "{error:?}");
            assert_ne!(error.code(), Code::Ok, "{error:?}");
            if error != EtcdError::MemberNotEnoughStarted {
                assert_ne!(error.code(), Code::Unknown, "{error:?}");
            }
        }
    }

    #[test]
    fn every_entry_round_trips_through_a_status() {
        for &error in EtcdError::ALL {
            assert_eq!(EtcdError::from_status(&Status::from(error)), Some(error));
        }
    }

    #[test]
    fn messages_are_unique_so_clients_can_decode_them() {
        let mut seen = std::collections::HashSet::new();
        for &error in EtcdError::ALL {
            assert!(seen.insert(error.message()), "duplicate message for {error:?}");
        }
    }

    #[test]
    fn a_foreign_status_is_not_an_etcd_error() {
        assert_eq!(EtcdError::from_status(&Status::unavailable("connection refused")), None);
    }
}
