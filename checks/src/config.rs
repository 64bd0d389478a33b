//! The checks' part of the configuration: [`CheckSpec`] (`[[environments.NAME.checks]]`),
//! [`Where`], and the duration format every setting uses. The pipeline's configuration
//! re-exports them; the verify agent reads the same specs from the bundle.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

fn yes() -> bool {
    true
}

/// A check of the verify stage (`[[environments.NAME.checks]]`), told apart by `kind`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(from = "FlatSpec", into = "FlatSpec")]
pub struct CheckSpec {
    /// What the check does, with the keys of its kind.
    pub kind: CheckKind,
    /// How long the check retries before its verdict is final (`timeout`).
    pub timeout: Duration,
    /// Whether a failure fails the verify (`required`).
    pub required: bool,
    /// Where the check runs (`where`).
    pub place: Where,
}

/// Declares [`CheckKind`] and, from the same list, `FlatSpec`: a check as the file writes
/// it, each kind's keys next to the keys every check has (`timeout`, `required`, `where`).
/// One tagged enum with `deny_unknown_fields` keeps serde's errors (an unknown key is
/// named, with the keys of that kind) and the schema of the configuration reference, which
/// `#[serde(flatten)]` of the shared keys would lose.
macro_rules! check_kinds {
    ($(
        $(#[doc = $vdoc:literal])*
        $name:literal => $variant:ident {
            $(
                $(#[doc = $fdoc:literal])*
                $(#[serde($($fserde:tt)*)])?
                $field:ident: $ty:ty,
            )*
        }
    )*) => {
        /// What a check does, by `kind`, with the keys of that kind.
        #[derive(Debug, Clone, PartialEq)]
        pub enum CheckKind {
            $($(#[doc = $vdoc])* $variant { $($(#[doc = $fdoc])* $field: $ty,)* },)*
        }

        impl CheckKind {
            /// The `kind` as written in the file.
            pub fn name(&self) -> &'static str {
                match self {
                    $(CheckKind::$variant { .. } => $name,)*
                }
            }
        }

        /// A check as the file writes it (see [`check_kinds`]).
        #[derive(Deserialize, Serialize)]
        #[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
        #[serde(tag = "kind", deny_unknown_fields)]
        enum FlatSpec {
            $(
                $(#[doc = $vdoc])*
                #[serde(rename = $name)]
                $variant {
                    $($(#[doc = $fdoc])* $(#[serde($($fserde)*)])? $field: $ty,)*
                    /// How long the check retries before its verdict is final.
                    #[serde(
                        default = "default_check_timeout",
                        deserialize_with = "de_positive_duration",
                        serialize_with = "ser_duration"
                    )]
                    #[cfg_attr(feature = "schema", schemars(with = "DurationText"))]
                    timeout: Duration,
                    /// A check with `required = false` is shown but does not fail the verify.
                    #[serde(default = "yes")]
                    required: bool,
                    /// Where the check runs: `runner` (where the pipeline runs, the default) or
                    /// `instance` (on the EB instance, by the postdeploy hook, inside the VPC).
                    #[serde(default, rename = "where")]
                    place: Where,
                },
            )*
        }

        impl From<FlatSpec> for CheckSpec {
            fn from(flat: FlatSpec) -> Self {
                match flat {
                    $(FlatSpec::$variant { $($field,)* timeout, required, place } => CheckSpec {
                        kind: CheckKind::$variant { $($field,)* },
                        timeout,
                        required,
                        place,
                    },)*
                }
            }
        }

        impl From<CheckSpec> for FlatSpec {
            fn from(spec: CheckSpec) -> Self {
                let CheckSpec { kind, timeout, required, place } = spec;
                match kind {
                    $(CheckKind::$variant { $($field,)* } => FlatSpec::$variant {
                        $($field,)*
                        timeout,
                        required,
                        place,
                    },)*
                }
            }
        }
    };
}

check_kinds! {
    /// GET a URL; expect a status and a JSON body.
    "http" => Http {
        /// Full URL; else the environment URL joined with `path`.
        #[serde(default)]
        url: Option<String>,
        /// Path under the environment URL (DRF's API root: anonymous, no database).
        #[serde(default = "default_health_path")]
        path: String,
        /// Headers sent with the request, e.g. `{ "X-Forwarded-Proto" = "https" }` where
        /// Django redirects plain HTTP to https (the load balancer sets it in production).
        #[serde(default)]
        headers: BTreeMap<String, String>,
        /// The HTTP status that passes (redirects are not followed).
        #[serde(default = "default_status")]
        expect_status: u16,
    }
    /// PING a Redis server (`redis://` or `rediss://…?ssl_cert_reqs=none`).
    "redis" => Redis {
        /// Name of the environment variable that holds the URL (it may carry a password).
        url_env: String,
    }
    /// Ping Celery workers through the broker (Redis or AMQP) and check their queues.
    "celery" => Celery {
        /// Name of the environment variable that holds the broker URL.
        broker_url_env: String,
        /// Fewest workers that must answer the ping.
        #[serde(default = "one")]
        min_workers: usize,
        /// Queues that need at least one consumer (Antenna: `["antenna", "jobs", "ml_results"]`).
        #[serde(default)]
        queues: Vec<String>,
    }
    /// Connect to NATS; report its version and JetStream; check that the named streams exist.
    "nats" => Nats {
        /// Name of the environment variable that holds the URL (`nats://…` or `tls://…`; it
        /// may carry a user and password, or a token).
        #[serde(default = "default_nats_url_env")]
        url_env: String,
        /// A credentials file (JWT and NKey seed) to log in with.
        #[serde(default)]
        creds_file: Option<PathBuf>,
        /// Extra trusted CA certificates (PEM) for `tls://`.
        #[serde(default)]
        ca_file: Option<PathBuf>,
        /// `false` accepts any server certificate (only for a test server).
        #[serde(default = "yes")]
        verify_certificate: bool,
        /// Fail when JetStream is off (implied by `streams`).
        #[serde(default)]
        jetstream: bool,
        /// JetStream streams that must exist (Antenna's ML job streams); their consumers
        /// are reported.
        #[serde(default)]
        streams: Vec<String>,
    }
    /// Ask Flower's API about the workers (for runners outside the VPC).
    "flower" => Flower {
        /// Flower's base URL; else `<environment URL>:5555`.
        #[serde(default)]
        url: Option<String>,
        /// Name of the environment variable that holds Flower's basic-auth user (the default
        /// is the name Antenna's `/start-flower` reads, so one secret feeds both).
        #[serde(default = "default_flower_user_env")]
        user_env: String,
        /// Name of the environment variable that holds Flower's basic-auth password.
        #[serde(default = "default_flower_password_env")]
        password_env: String,
        /// Fewest workers online.
        #[serde(default = "one")]
        min_workers: usize,
        /// Queues that need an online consumer.
        #[serde(default)]
        queues: Vec<String>,
    }
}

impl CheckKind {
    /// The environment variables the check reads, each with the key that names it
    /// (`url_env`, `broker_url_env`, `user_env`, `password_env`).
    pub fn variables(&self) -> Vec<(&'static str, &str)> {
        match self {
            CheckKind::Http { .. } => vec![],
            CheckKind::Redis { url_env } | CheckKind::Nats { url_env, .. } => {
                vec![("url_env", url_env)]
            }
            CheckKind::Celery { broker_url_env, .. } => vec![("broker_url_env", broker_url_env)],
            CheckKind::Flower {
                user_env,
                password_env,
                ..
            } => vec![("user_env", user_env), ("password_env", password_env)],
        }
    }
}

/// Where a check runs (`where = "runner"` or `"instance"`).
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum Where {
    /// Where the pipeline runs (a developer's machine, a CI runner): the default.
    #[default]
    Runner,
    /// On the EB instance, by the postdeploy hook: for servers only the VPC reaches
    /// (ElastiCache, Amazon MQ, NATS).
    Instance,
}

/// The path the verify stage checks when none is configured: DRF's API root.
pub const DEFAULT_HEALTH_PATH: &str = "/api/v2/";

fn default_health_path() -> String {
    DEFAULT_HEALTH_PATH.into()
}
fn default_status() -> u16 {
    200
}
fn default_check_timeout() -> Duration {
    Duration::from_secs(120)
}
fn one() -> usize {
    1
}
fn default_nats_url_env() -> String {
    "NATS_URL".into()
}
fn default_flower_user_env() -> String {
    "CELERY_FLOWER_USER".into()
}
fn default_flower_password_env() -> String {
    "CELERY_FLOWER_PASSWORD".into()
}

/// The longest duration any setting or option takes: a day. Longer values are mistakes
/// (`"300000000000y"`), and would overflow the clock.
pub const MAX_DURATION: Duration = Duration::from_secs(24 * 60 * 60);

/// Parses a duration such as `"90s"`, `"5m"` or `"1h 30m"`, at most [`MAX_DURATION`].
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text.trim()).map_err(|e| {
        format!("invalid duration {text:?} ({e}): expected a string such as \"90s\", \"5m\" or \"1h 30m\"")
    })?;
    if d > MAX_DURATION {
        return Err(format!(
            "duration {text:?} is too long: at most {} (\"24h\")",
            humantime::format_duration(MAX_DURATION)
        ));
    }
    Ok(d)
}

/// The instant `d` from now, without overflowing whatever `d` is.
pub fn instant_after(d: Duration) -> std::time::Instant {
    let now = std::time::Instant::now();
    now.checked_add(d.min(MAX_DURATION * 365)).unwrap_or(now)
}

/// How a duration is written in the file: a string such as `"90s"`, `"5m"` or `"1h 30m"`.
/// Fields read with [`de_duration`] declare `#[schemars(with = "DurationText")]`.
#[cfg(feature = "schema")]
pub struct DurationText;

#[cfg(feature = "schema")]
impl schemars::JsonSchema for DurationText {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", "format": "duration" })
    }
}

pub fn ser_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&humantime::format_duration(*d).to_string())
}

pub fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

pub fn de_positive_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let d = de_duration(d)?;
    if d.is_zero() {
        return Err(serde::de::Error::custom(
            "a zero duration would give up at once: expected a string such as \"90s\" or \"5m\"",
        ));
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(text: &str) -> Result<CheckSpec, String> {
        toml::from_str(text).map_err(|e| e.message().to_string())
    }

    #[test]
    fn every_kind_takes_the_shared_keys_and_their_defaults() {
        let redis = spec("kind = \"redis\"\nurl_env = \"REDIS_URL\"").unwrap();
        assert_eq!(
            redis,
            CheckSpec {
                kind: CheckKind::Redis {
                    url_env: "REDIS_URL".into()
                },
                timeout: Duration::from_secs(120),
                required: true,
                place: Where::Runner,
            }
        );
        for (kind, own_keys) in [
            ("http", ""),
            ("redis", "url_env = \"U\"\n"),
            ("celery", "broker_url_env = \"B\"\n"),
            ("nats", ""),
            ("flower", ""),
        ] {
            let text = format!(
                "kind = \"{kind}\"\n{own_keys}timeout = \"5s\"\nrequired = false\nwhere = \"instance\""
            );
            let s = spec(&text).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(s.kind.name(), kind);
            assert_eq!(
                (s.timeout, s.required, s.place),
                (Duration::from_secs(5), false, Where::Instance),
                "{kind}"
            );
        }
    }

    #[test]
    fn an_unknown_key_is_named_with_the_keys_of_its_kind() {
        let err = spec("kind = \"http\"\ntimout = \"5s\"").unwrap_err();
        assert_eq!(
            err,
            "unknown field `timout`, expected one of `url`, `path`, `headers`, `expect_status`, `timeout`, `required`, `where`"
        );
        let err = spec("kind = \"redis\"\nurl_env = \"R\"\nqueues = []").unwrap_err();
        assert!(err.starts_with("unknown field `queues`"), "{err}");
        let err = spec("kind = \"redis\"").unwrap_err();
        assert_eq!(err, "missing field `url_env`");
        let err = spec("kind = \"smtp\"").unwrap_err();
        assert!(err.starts_with("unknown variant `smtp`"), "{err}");
        let err = spec("kind = \"http\"\ntimeout = \"0s\"").unwrap_err();
        assert!(
            err.starts_with("a zero duration would give up at once"),
            "{err}"
        );
    }

    #[test]
    fn a_spec_is_written_as_the_file_writes_it() {
        let s = spec("kind = \"flower\"\nmin_workers = 2\nwhere = \"instance\"").unwrap();
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["kind"], "flower");
        assert_eq!(json["min_workers"], 2);
        assert_eq!(json["where"], "instance");
        assert_eq!(json["timeout"], "2m");
        let again: CheckSpec = serde_json::from_value(json).unwrap();
        assert_eq!(again, s);
    }
}
