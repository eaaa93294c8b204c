//! The server's errors, and the one place other crates' errors become etcd's.

use cairn_api::EtcdError;
use cairn_mvcc::MvccError;

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("cannot start: {0}")]
    Startup(String),
    /// The member cannot go on without risking an acknowledged write: it stops.
    #[error("fatal: {0}")]
    Fatal(String),
    #[error(transparent)]
    Wal(#[from] cairn_storage::WalError),
    #[error(transparent)]
    Backend(#[from] cairn_storage::BackendError),
    #[error(transparent)]
    Mvcc(#[from] MvccError),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
}

/// etcd's answer for an mvcc failure.
pub fn mvcc_to_etcd(e: &MvccError) -> EtcdError {
    match e {
        MvccError::Compacted => EtcdError::Compacted,
        MvccError::FutureRevision => EtcdError::FutureRev,
        MvccError::KeyNotFound => EtcdError::KeyNotFound,
        MvccError::LeaseNotFound => EtcdError::LeaseNotFound,
        MvccError::Corrupt(_) => EtcdError::Corrupt,
        MvccError::Backend(_) | MvccError::Io(_) => EtcdError::Stopped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mvcc_errors_become_etcds() {
        assert_eq!(
            mvcc_to_etcd(&MvccError::Compacted).message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        assert_eq!(
            mvcc_to_etcd(&MvccError::FutureRevision).message(),
            "etcdserver: mvcc: required revision is a future revision"
        );
        assert_eq!(mvcc_to_etcd(&MvccError::KeyNotFound).message(), "etcdserver: key not found");
        assert_eq!(
            mvcc_to_etcd(&MvccError::LeaseNotFound).message(),
            "etcdserver: requested lease not found"
        );
    }
}
