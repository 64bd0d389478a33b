//! Celery's remote-control ("pidbox") messages, over a Redis broker and over AMQP.
//!
//! Over AMQP (RabbitMQ) a request is published on the fanout exchange `celery.pidbox` with the
//! request itself as the JSON body; each worker publishes its reply, `{"<worker>": <result>}`,
//! on the direct exchange `reply.celery.pidbox` with the reply key as routing key and the
//! ticket in a `ticket` header (kombu's `pidbox.py`). Over Redis:
//!
//! A request is PUBLISHed on the fanout channel `/<db>.celery.pidbox`: a kombu envelope
//! (JSON) whose `body` is the base64 of `{"method", "arguments", "destination", "reply_to",
//! "ticket"}`. Each worker LPUSHes its reply, `{"<worker>": <result>}` in the same kind of
//! envelope, to `<reply key>.reply.celery.pidbox`, but only if that queue is bound to the
//! `reply.celery.pidbox` exchange (a member of `_kombu.binding.reply.celery.pidbox`).

use base64::Engine as _;
use serde_json::{json, Map, Value};

/// The fanout exchange of Celery's control mailbox.
pub const EXCHANGE: &str = "celery.pidbox";
/// The direct exchange replies are published to.
pub const REPLY_EXCHANGE: &str = "reply.celery.pidbox";
/// kombu's separator between the fields of a binding.
const SEP: &str = "\x06\x16";

/// The channel a broadcast is PUBLISHed on, for broker database `db`.
pub fn channel(db: u32) -> String {
    format!("/{db}.{EXCHANGE}")
}

/// The key of the set that binds queues to the reply exchange.
pub fn binding_key() -> String {
    format!("_kombu.binding.{REPLY_EXCHANGE}")
}

/// The list the workers push their replies to.
pub fn reply_queue(reply_key: &str) -> String {
    format!("{reply_key}.{REPLY_EXCHANGE}")
}

/// The member of [`binding_key`] that routes `reply_key` to [`reply_queue`]:
/// routing key, pattern (empty) and queue, joined by kombu's separator.
pub fn binding_member(reply_key: &str) -> String {
    format!("{reply_key}{SEP}{SEP}{}", reply_queue(reply_key))
}

/// A control request, ready to PUBLISH.
pub struct Request<'a> {
    pub method: &'a str,
    /// `None` asks every worker; else the named workers (`w1@host`).
    pub destination: Option<&'a [String]>,
    pub reply_key: &'a str,
    pub ticket: &'a str,
    pub delivery_tag: &'a str,
}

impl Request<'_> {
    /// The request itself: what AMQP carries as the message body, and what the Redis
    /// envelope carries in base64.
    pub fn body(&self) -> Value {
        json!({
            "method": self.method,
            "arguments": {},
            "destination": self.destination,
            "pattern": null,
            "matcher": null,
            "ticket": self.ticket,
            "reply_to": {"exchange": REPLY_EXCHANGE, "routing_key": self.reply_key},
        })
    }

    /// The kombu envelope (JSON text) carrying this request over Redis.
    pub fn encode(&self) -> String {
        let body = self.body();
        json!({
            "body": base64::engine::general_purpose::STANDARD.encode(body.to_string()),
            "content-encoding": "utf-8",
            "content-type": "application/json",
            "headers": {},
            "properties": {
                "delivery_tag": self.delivery_tag,
                "body_encoding": "base64",
                "delivery_mode": 2,
                "priority": 0,
                "delivery_info": {"exchange": EXCHANGE, "routing_key": ""},
            },
        })
        .to_string()
    }
}

/// Why a message from a reply queue could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unreadable pidbox reply: {0}")]
pub struct DecodeError(String);

/// Reads a reply envelope: the workers' answers by worker name, or `None` when the reply
/// belongs to another request (its `ticket` header differs from `ticket`).
pub fn decode_reply(raw: &[u8], ticket: &str) -> Result<Option<Map<String, Value>>, DecodeError> {
    let envelope: Value = serde_json::from_slice(raw)
        .map_err(|e| DecodeError(format!("the envelope is not JSON ({e})")))?;
    if let Some(t) = envelope.pointer("/headers/ticket").and_then(Value::as_str) {
        if t != ticket {
            return Ok(None);
        }
    }
    let content_type = envelope
        .get("content-type")
        .and_then(Value::as_str)
        .unwrap_or("application/json");
    check_content_type(content_type)?;
    let body = envelope
        .get("body")
        .ok_or_else(|| DecodeError("the envelope has no body".into()))?;
    let body: Value = match (
        envelope
            .pointer("/properties/body_encoding")
            .and_then(Value::as_str),
        body,
    ) {
        (Some("base64"), Value::String(b64)) => {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| DecodeError(format!("the body is not base64 ({e})")))?;
            serde_json::from_slice(&bytes)
                .map_err(|e| DecodeError(format!("the body is not JSON ({e})")))?
        }
        (_, Value::String(text)) => serde_json::from_str(text)
            .map_err(|e| DecodeError(format!("the body is not JSON ({e})")))?,
        (_, other) => other.clone(),
    };
    answers(body).map(Some)
}

fn check_content_type(content_type: &str) -> Result<(), DecodeError> {
    if content_type != "application/json" {
        return Err(DecodeError(format!("content-type {content_type:?}; only application/json is understood (the workers' result_serializer/accept_content)")));
    }
    Ok(())
}

/// Reads the body of a reply as AMQP delivers it (the JSON itself, no envelope).
pub fn decode_body(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Map<String, Value>, DecodeError> {
    check_content_type(content_type.unwrap_or("application/json"))?;
    let body: Value = serde_json::from_slice(body)
        .map_err(|e| DecodeError(format!("the body is not JSON ({e})")))?;
    answers(body)
}

fn answers(body: Value) -> Result<Map<String, Value>, DecodeError> {
    match body {
        Value::Object(map) => Ok(map),
        other => Err(DecodeError(format!(
            "expected {{\"worker\": result}}, got {other}"
        ))),
    }
}

/// The queue names in one worker's `active_queues` answer.
pub fn queue_names(active_queues: &Value) -> Vec<String> {
    active_queues
        .as_array()
        .map(|qs| {
            qs.iter()
                .filter_map(|q| q.get("name").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_envelope_carries_the_body_in_base64() {
        let dest = vec!["w1@host".to_string()];
        let req = Request {
            method: "ping",
            destination: Some(&dest),
            reply_key: "rk-1",
            ticket: "t-1",
            delivery_tag: "d-1",
        };
        let env: Value = serde_json::from_str(&req.encode()).unwrap();
        assert_eq!(env["content-type"], "application/json");
        assert_eq!(env["properties"]["body_encoding"], "base64");
        assert_eq!(
            env["properties"]["delivery_info"]["exchange"],
            "celery.pidbox"
        );
        assert_eq!(env["properties"]["delivery_tag"], "d-1");
        let body = base64::engine::general_purpose::STANDARD
            .decode(env["body"].as_str().unwrap())
            .unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["method"], "ping");
        assert_eq!(body["destination"], json!(["w1@host"]));
        assert_eq!(body["ticket"], "t-1");
        assert_eq!(
            body["reply_to"],
            json!({"exchange": "reply.celery.pidbox", "routing_key": "rk-1"})
        );
        let all = Request {
            destination: None,
            ..req
        };
        let env: Value = serde_json::from_str(&all.encode()).unwrap();
        let body = base64::engine::general_purpose::STANDARD
            .decode(env["body"].as_str().unwrap())
            .unwrap();
        assert_eq!(
            serde_json::from_slice::<Value>(&body).unwrap()["destination"],
            Value::Null
        );
    }

    #[test]
    fn names_match_kombu() {
        assert_eq!(channel(1), "/1.celery.pidbox");
        assert_eq!(binding_key(), "_kombu.binding.reply.celery.pidbox");
        assert_eq!(
            binding_member("rk"),
            "rk\x06\x16\x06\x16rk.reply.celery.pidbox"
        );
    }

    /// A reply as a Celery 5 worker LPUSHes it (captured with `redis-cli MONITOR`).
    const PONG: &str = r#"{"body": "eyJ3MUB2ZXJpZnkiOiB7Im9rIjogInBvbmcifX0=", "content-encoding": "utf-8", "content-type": "application/json", "headers": {"ticket": "t-1", "clock": 12}, "properties": {"delivery_mode": 1, "delivery_info": {"exchange": "reply.celery.pidbox", "routing_key": "rk"}, "priority": 0, "body_encoding": "base64", "delivery_tag": "x"}}"#;

    #[test]
    fn decodes_a_worker_reply() {
        let reply = decode_reply(PONG.as_bytes(), "t-1").unwrap().unwrap();
        assert_eq!(reply["w1@verify"], json!({"ok": "pong"}));
        assert_eq!(decode_reply(PONG.as_bytes(), "another").unwrap(), None);
    }

    #[test]
    fn decode_errors_say_what_is_wrong() {
        assert!(decode_reply(b"nope", "t")
            .unwrap_err()
            .to_string()
            .contains("the envelope is not JSON"));
        let bad = PONG.replace("eyJ3MUB2", "!!!!");
        assert!(decode_reply(bad.as_bytes(), "t-1")
            .unwrap_err()
            .to_string()
            .contains("not base64"));
        let pickle = PONG.replace("application/json", "application/x-python-serialize");
        assert!(decode_reply(pickle.as_bytes(), "t-1")
            .unwrap_err()
            .to_string()
            .contains("only application/json"));
    }

    #[test]
    fn reads_queue_names() {
        let q = json!([{"name": "antenna", "exchange": {}}, {"name": "jobs"}]);
        assert_eq!(queue_names(&q), vec!["antenna", "jobs"]);
        assert!(queue_names(&json!({"error": "x"})).is_empty());
    }
}
