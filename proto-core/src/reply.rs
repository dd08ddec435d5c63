//! Building the responses a role machine (broker, name server) sends back to a request: plain
//! SUCCESS, a code with a remark, REQUEST_CODE_NOT_SUPPORTED for unknown codes, and
//! SYSTEM_ERROR for requests whose header or body does not decode ([`RequestError`]); and
//! queueing a response unless the request was oneway.
//!
//! What it leaves out: the per-request response headers and bodies, which each role's handlers
//! add to what these return.

use std::collections::VecDeque;

use crate::body::BodyError;
use crate::header::HeaderError;
use crate::role::{ConnId, Transmit};
use crate::{RemotingCommand, ResponseCode};

/// Why a request was refused before any state changed; the `Display` text is the
/// SYSTEM_ERROR remark.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RequestError {
    /// A required header field is missing or a number does not parse.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// The body does not decode as the request's body type.
    #[error("Failed to decode {body}: {source}")]
    Body {
        body: &'static str,
        #[source]
        source: BodyError,
    },
}

/// Wraps a body decode error with the name of the body type, for `map_err`.
pub(crate) fn body_error(body: &'static str) -> impl Fn(BodyError) -> RequestError {
    move |source| RequestError::Body { body, source }
}

/// SUCCESS with no remark.
pub(crate) fn success(request: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(request, ResponseCode::Success.value(), None)
}

/// `code` with `remark`.
pub(crate) fn reply(
    request: &RemotingCommand,
    code: ResponseCode,
    remark: impl Into<String>,
) -> RemotingCommand {
    RemotingCommand::response_to(request, code.value(), Some(remark.into()))
}

/// REQUEST_CODE_NOT_SUPPORTED with Java's remark (leading space included).
pub(crate) fn not_supported(request: &RemotingCommand) -> RemotingCommand {
    reply(
        request,
        ResponseCode::RequestCodeNotSupported,
        format!(" request type {} not supported", request.code),
    )
}

/// The response of a handler's result: the response itself, or SYSTEM_ERROR with the error's
/// text as remark (logged, since the peer sent something we cannot read).
pub(crate) fn or_system_error(
    handled: Result<RemotingCommand, RequestError>,
    conn: ConnId,
    request: &RemotingCommand,
) -> RemotingCommand {
    handled.unwrap_or_else(|err| {
        tracing::warn!(code = request.code, ?conn, %err, "request refused");
        reply(request, ResponseCode::SystemError, err.to_string())
    })
}

/// Queues `response` for `conn` unless the request was oneway (oneway requests are processed
/// but never answered).
pub(crate) fn respond(
    transmits: &mut VecDeque<Transmit>,
    conn: ConnId,
    request_oneway: bool,
    response: RemotingCommand,
) {
    if !request_oneway {
        transmits.push_back(Transmit::Send {
            conn,
            cmd: response,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(code: i32, opaque: i32) -> RemotingCommand {
        RemotingCommand::request(code, opaque)
    }

    #[test]
    fn responses_answer_the_request_opaque_with_code_and_remark() {
        let req = request(10, 42);
        let ok = success(&req);
        assert!(ok.is_response());
        assert_eq!((ok.opaque, ok.code, ok.remark.as_deref()), (42, 0, None));
        let refused = reply(&req, ResponseCode::TopicNotExist, "no topic");
        assert_eq!(
            (refused.opaque, refused.code, refused.remark.as_deref()),
            (42, ResponseCode::TopicNotExist.value(), Some("no topic"))
        );
        let unknown = not_supported(&request(9999, 3));
        assert_eq!(
            (unknown.code, unknown.remark.as_deref()),
            (
                ResponseCode::RequestCodeNotSupported.value(),
                Some(" request type 9999 not supported")
            )
        );
    }

    #[test]
    fn errors_become_system_error_with_their_text() {
        let req = request(10, 5);
        let bad = || BodyError::UnexpectedEnd { offset: 3 };
        let text = body_error("KVTable")(bad()).to_string();
        assert_eq!(
            text,
            "Failed to decode KVTable: JSON ends inside a value at offset 3"
        );
        let handled = Err(body_error("KVTable")(bad()));
        let response = or_system_error(handled, ConnId(1), &req);
        assert_eq!(
            (response.opaque, response.code, response.remark.as_deref()),
            (5, ResponseCode::SystemError.value(), Some(text.as_str()))
        );
        let passed = or_system_error(Ok(success(&req)), ConnId(1), &req);
        assert_eq!(passed.code, ResponseCode::Success.value());
    }

    #[test]
    fn oneway_requests_get_no_transmit() {
        let mut transmits = VecDeque::new();
        let mut oneway = request(10, 1);
        oneway.mark_oneway();
        respond(
            &mut transmits,
            ConnId(1),
            oneway.is_oneway(),
            success(&oneway),
        );
        assert!(transmits.is_empty());
        let req = request(10, 2);
        respond(&mut transmits, ConnId(2), req.is_oneway(), success(&req));
        assert!(matches!(
            transmits.pop_front(),
            Some(Transmit::Send { conn: ConnId(2), cmd }) if cmd.opaque == 2
        ));
    }
}
