//! The one mapping between the core's failures and gRPC statuses.

use tonic::Status;

use crate::core::cluster::PeerError;
use crate::core::error::{Code, RequestError};

impl From<RequestError> for Status {
    fn from(e: RequestError) -> Self {
        Status::new(grpc_code(e.code()), e.to_string())
    }
}

/// The gRPC code of a core failure class.
pub fn grpc_code(code: Code) -> tonic::Code {
    match code {
        Code::Ok => tonic::Code::Ok,
        Code::Cancelled => tonic::Code::Cancelled,
        Code::Unknown => tonic::Code::Unknown,
        Code::InvalidArgument => tonic::Code::InvalidArgument,
        Code::DeadlineExceeded => tonic::Code::DeadlineExceeded,
        Code::NotFound => tonic::Code::NotFound,
        Code::AlreadyExists => tonic::Code::AlreadyExists,
        Code::PermissionDenied => tonic::Code::PermissionDenied,
        Code::ResourceExhausted => tonic::Code::ResourceExhausted,
        Code::FailedPrecondition => tonic::Code::FailedPrecondition,
        Code::Aborted => tonic::Code::Aborted,
        Code::OutOfRange => tonic::Code::OutOfRange,
        Code::Unimplemented => tonic::Code::Unimplemented,
        Code::Internal => tonic::Code::Internal,
        Code::Unavailable => tonic::Code::Unavailable,
        Code::DataLoss => tonic::Code::DataLoss,
        Code::Unauthenticated => tonic::Code::Unauthenticated,
    }
}

/// The core's class of a gRPC code.
pub fn core_code(code: tonic::Code) -> Code {
    match code {
        tonic::Code::Ok => Code::Ok,
        tonic::Code::Cancelled => Code::Cancelled,
        tonic::Code::Unknown => Code::Unknown,
        tonic::Code::InvalidArgument => Code::InvalidArgument,
        tonic::Code::DeadlineExceeded => Code::DeadlineExceeded,
        tonic::Code::NotFound => Code::NotFound,
        tonic::Code::AlreadyExists => Code::AlreadyExists,
        tonic::Code::PermissionDenied => Code::PermissionDenied,
        tonic::Code::ResourceExhausted => Code::ResourceExhausted,
        tonic::Code::FailedPrecondition => Code::FailedPrecondition,
        tonic::Code::Aborted => Code::Aborted,
        tonic::Code::OutOfRange => Code::OutOfRange,
        tonic::Code::Unimplemented => Code::Unimplemented,
        tonic::Code::Internal => Code::Internal,
        tonic::Code::Unavailable => Code::Unavailable,
        tonic::Code::DataLoss => Code::DataLoss,
        tonic::Code::Unauthenticated => Code::Unauthenticated,
    }
}

/// A peer's answer: unreachable (it could not be reached or did not
/// answer in time, as opposed to answering with an error of its own,
/// which goes back to the client).
pub fn peer_error(status: Status) -> PeerError {
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded => {
            PeerError::Unreachable(status.message().to_string())
        }
        code => PeerError::Refused {
            code: core_code(code),
            message: status.message().to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_there_and_back() {
        for n in 0..=16 {
            let code = tonic::Code::from(n);
            assert_eq!(grpc_code(core_code(code)), code);
        }
    }

    #[test]
    fn only_an_unreachable_peer_sends_a_request_to_the_next_in_line() {
        for status in [
            Status::unavailable("down"),
            Status::deadline_exceeded("late"),
        ] {
            assert!(matches!(peer_error(status), PeerError::Unreachable(_)));
        }
        assert_eq!(
            peer_error(Status::invalid_argument("`key` is 300 bytes")),
            PeerError::Refused {
                code: Code::InvalidArgument,
                message: "`key` is 300 bytes".into()
            }
        );
    }
}
