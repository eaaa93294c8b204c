//! cairnctl's errors and etcdctl's exit codes: every failure ends as `Error: <message>` on stderr and the exit
//! code etcdctl uses for that kind of failure.

use cairn_client::ClientError;
use tonic::Code;

/// etcdctl's exit codes (etcdctl/ctlv3/command/error.go).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    Error = 1,
    BadConnection = 2,
    InvalidInput = 3,
    BadFeature = 4,
    Interrupted = 5,
    BadArgs = 128,
}

#[derive(Debug, thiserror::Error)]
pub enum CtlError {
    /// Printed as `Error: {message}`, exits with `code`.
    #[error("{message}")]
    Exit { code: ExitCode, message: String },
    /// Printed verbatim (already formatted like cobra's own errors), exits with `code`.
    #[error("{stderr}")]
    Verbatim { code: i32, stdout: String, stderr: String },
}

pub type Result<T> = std::result::Result<T, CtlError>;

impl CtlError {
    pub fn new(code: ExitCode, message: impl Into<String>) -> Self {
        CtlError::Exit { code, message: message.into() }
    }

    /// Text for stderr as it is, and the exit code.
    pub fn verbatim(code: i32, stderr: impl Into<String>) -> Self {
        CtlError::Verbatim { code, stdout: String::new(), stderr: stderr.into() }
    }

    pub fn bad_args(message: impl Into<String>) -> Self {
        Self::new(ExitCode::BadArgs, message)
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ExitCode::InvalidInput, message)
    }

    /// `-w <format>` where the command has no printer for it.
    pub fn unsupported_format(format: &str) -> Self {
        Self::new(ExitCode::BadFeature, format!("{format} not supported as output format"))
    }

    pub fn code(&self) -> i32 {
        match self {
            CtlError::Exit { code, .. } => *code as i32,
            CtlError::Verbatim { code, .. } => *code,
        }
    }
}

/// The text clientv3 gives for an error: etcd's message for server errors, gRPC's `rpc error: ...` form for
/// other statuses, "context deadline exceeded" when no endpoint answered in time.
pub fn client_message(e: &ClientError) -> String {
    match e {
        ClientError::Etcd(e) => e.to_string(),
        ClientError::Unreachable { .. } => "context deadline exceeded".into(),
        // clientv3 retries transport failures until the deadline.
        ClientError::Status(s)
            if matches!(s.code(), Code::DeadlineExceeded | Code::Cancelled | Code::Unavailable)
                || (s.code() == Code::Unknown && s.message().starts_with("transport error")) =>
        {
            "context deadline exceeded".into()
        }
        ClientError::Status(s) => format!("rpc error: code = {} desc = {}", go_code(s.code()), s.message()),
        ClientError::InvalidEndpoint(_) | ClientError::NoEndpoints => e.to_string(),
    }
}

/// grpc-go's name of a status code.
pub fn go_code(c: Code) -> &'static str {
    match c {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

impl From<ClientError> for CtlError {
    fn from(e: ClientError) -> Self {
        CtlError::new(ExitCode::Error, client_message(&e))
    }
}

/// Wraps a client error's message, e.g. "failed to revoke lease (...)".
pub fn wrap(e: &ClientError, f: impl FnOnce(&str) -> String) -> CtlError {
    CtlError::new(ExitCode::Error, f(&client_message(e)))
}
