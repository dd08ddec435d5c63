//! CHECK_CLIENT_CONFIG (46): a Java push consumer subscribing with SQL92 asks every broker of
//! the topic, before it starts, whether the broker filters by property and whether the
//! expression compiles (Java `ClientManageProcessor.checkClientConfig`).
//!
//! Answers: SUCCESS for TAG subscriptions and for an expression that compiles; SYSTEM_ERROR
//! "does not support" when `enablePropertyFilter` is off; SUBSCRIPTION_PARSE_FAILED with the
//! parser's message otherwise. What it leaves out: the namespace member of the body, which only
//! the proxy uses.

use serde::{Deserialize, Serialize};

use super::{compile, is_tag_type};
use crate::body::{decode_json, encode_json, SubscriptionData};
use crate::reply::{body_error, reply, success, RequestError};
use crate::{RemotingCommand, ResponseCode};

/// Java `CheckClientRequestBody`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct CheckClientRequestBody {
    pub client_id: String,
    pub group: String,
    /// Absent in a body that only pings; then the answer is SUCCESS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subscription_data: Option<SubscriptionData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl CheckClientRequestBody {
    /// Decodes the body from a peer's bytes, fastjson quirks included.
    ///
    /// # Errors
    /// [`crate::body::BodyError`] when the bytes are not such a body.
    pub fn decode(bytes: &[u8]) -> Result<CheckClientRequestBody, crate::body::BodyError> {
        decode_json(bytes, "CheckClientRequestBody")
    }

    /// Encodes the body as standard JSON.
    pub fn encode(&self) -> Vec<u8> {
        encode_json(self)
    }
}

/// Answers CHECK_CLIENT_CONFIG.
pub(crate) fn check_client_config(
    cmd: &RemotingCommand,
    enable_property_filter: bool,
) -> Result<RemotingCommand, RequestError> {
    let body =
        CheckClientRequestBody::decode(&cmd.body).map_err(body_error("CheckClientRequestBody"))?;
    let Some(sub) = body.subscription_data else {
        return Ok(success(cmd));
    };
    if is_tag_type(Some(&sub.expression_type)) {
        return Ok(success(cmd));
    }
    if !enable_property_filter {
        let remark = format!(
            "The broker does not support consumer to filter message by {}",
            sub.expression_type
        );
        return Ok(reply(cmd, ResponseCode::SystemError, remark));
    }
    match compile(&sub.expression_type, &sub.sub_string) {
        Ok(_) => Ok(success(cmd)),
        Err(e) => {
            tracing::warn!(client = %body.client_id, group = %body.group, expression = %sub.sub_string, error = %e, "consumer filter does not compile");
            Ok(reply(
                cmd,
                ResponseCode::SubscriptionParseFailed,
                e.to_string(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::EXPRESSION_TYPE_SQL92;
    use crate::RequestCode;

    fn request(sub: Option<(&str, &str)>) -> RemotingCommand {
        let body = CheckClientRequestBody {
            client_id: "10.0.0.1@1".into(),
            group: "g".into(),
            subscription_data: sub.map(|(kind, expression)| SubscriptionData {
                topic: "T".into(),
                sub_string: expression.into(),
                expression_type: kind.into(),
                ..SubscriptionData::default()
            }),
            namespace: None,
        };
        RemotingCommand::request(RequestCode::CheckClientConfig.value(), 3).with_body(body.encode())
    }

    fn code(cmd: &RemotingCommand, enabled: bool) -> ResponseCode {
        let response = check_client_config(cmd, enabled).unwrap();
        assert_eq!(response.opaque, 3);
        ResponseCode::from_value(response.code)
    }

    #[test]
    fn answers_like_java() {
        let sql = |e| request(Some((EXPRESSION_TYPE_SQL92, e)));
        assert_eq!(code(&request(None), false), ResponseCode::Success);
        assert_eq!(
            code(&request(Some(("TAG", "a||b"))), false),
            ResponseCode::Success
        );
        assert_eq!(code(&sql("a > 1"), false), ResponseCode::SystemError);
        assert_eq!(code(&sql("a > 1"), true), ResponseCode::Success);
        assert_eq!(
            code(&sql("a >"), true),
            ResponseCode::SubscriptionParseFailed
        );
        let remark = check_client_config(&sql("a >"), true).unwrap().remark;
        assert!(remark.is_some_and(|r| r.starts_with("Invalid MessageSelector.")));
        let unreadable = RemotingCommand::request(RequestCode::CheckClientConfig.value(), 3)
            .with_body(&b"{"[..]);
        assert!(check_client_config(&unreadable, true).is_err());
    }
}
