//! A typed model of `Dockerrun.aws.json` version 2, as Elastic Beanstalk's ECS platform takes it.
//!
//! Every field EB passes on to ECS that we check is typed; other known ECS fields are kept as
//! raw JSON; fields nobody knows are kept too (`unknown`) so that output loses nothing, and the
//! linter reports them as warnings. Serialising gives a stable key order: the declaration order
//! below, then unknown keys sorted.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dockerrun {
    /// Must be the integer 2; kept raw so that the linter can say what it got instead.
    #[serde(rename = "AWSEBDockerrunVersion", default)]
    pub version: Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub execution_role_arn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_role_arn: Option<String>,
    /// Private registry credentials in S3 (`{"bucket": …, "key": …}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication: Option<Authentication>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<Volume>,
    #[serde(default)]
    pub container_definitions: Vec<Container>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Authentication {
    pub bucket: String,
    pub key: String,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Volume {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<VolumeHost>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeHost {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_path: Option<String>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

/// One container definition.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Container {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// ECS treats a missing `essential` as true.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub essential: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_reservation: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry_point: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_mappings: Vec<PortMapping>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<DependsOn>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<EnvVar>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<Secret>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mount_points: Vec<MountPoint>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub volumes_from: Vec<VolumeFrom>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_configuration: Option<LogConfiguration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ulimits: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_hosts: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linux_parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privileged: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readonly_root_filesystem: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_networking: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_servers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dns_search_domains: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_security_options: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_controls: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interactive: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pseudo_terminal: Option<bool>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

impl Container {
    /// The name, or `#INDEX` for a container without one (for messages).
    pub fn display_name(&self, index: usize) -> String {
        match self.name.as_deref() {
            Some(n) if !n.is_empty() => n.to_string(),
            _ => format!("#{index}"),
        }
    }

    /// ECS's default: essential unless said otherwise.
    pub fn is_essential(&self) -> bool {
        self.essential.unwrap_or(true)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortMapping {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_port: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DependsOn {
    pub container_name: String,
    pub condition: String,
    #[serde(flatten)]
    pub unknown: BTreeMap<String, Value>,
}

/// The conditions ECS accepts in `dependsOn`.
pub const DEPENDS_ON_CONDITIONS: [&str; 4] = ["START", "COMPLETE", "SUCCESS", "HEALTHY"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnvVar {
    pub name: String,
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub name: String,
    pub value_from: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountPoint {
    pub source_volume: String,
    pub container_path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VolumeFrom {
    pub source_container: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_only: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LogConfiguration {
    pub log_driver: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_options: Option<Vec<Secret>>,
}

/// A file that is not a valid Dockerrun v2 document, with the JSON path of the bad field.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ModelError {
    /// JSON path such as `containerDefinitions[2].memory`.
    pub path: String,
    pub message: String,
}

impl Dockerrun {
    /// Reads the model from a JSON value, naming the field that does not fit.
    pub fn from_value(value: Value) -> Result<Self, ModelError> {
        serde_path_to_error::deserialize(value).map_err(|e| ModelError {
            path: e.path().to_string(),
            message: e.inner().to_string(),
        })
    }

    /// Pretty JSON with a final newline.
    pub fn to_pretty_json(&self) -> String {
        // Invariant: every map of the model has string keys and every value is plain data, so
        // serde_json cannot fail on it.
        let mut s = serde_json::to_string_pretty(self).expect("a Dockerrun always serialises");
        s.push('\n');
        s
    }

    /// Container names as written (containers without a name are skipped).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.container_definitions
            .iter()
            .filter_map(|c| c.name.as_deref())
    }

    /// Every image reference, with the container that uses it.
    pub fn images(&self) -> impl Iterator<Item = (&str, &str)> {
        self.container_definitions
            .iter()
            .filter_map(|c| Some((c.name.as_deref().unwrap_or("?"), c.image.as_deref()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trip_keeps_unknown_fields_in_stable_order() {
        let v = json!({
            "zeta": 1,
            "containerDefinitions": [{"name": "a", "image": "x:1", "memory": 128, "zz": true, "aa": false}],
            "AWSEBDockerrunVersion": 2,
            "alpha": "k",
        });
        let d = Dockerrun::from_value(v).unwrap();
        assert_eq!(d.unknown.keys().collect::<Vec<_>>(), ["alpha", "zeta"]);
        let out = d.to_pretty_json();
        let version_at = out.find("AWSEBDockerrunVersion").unwrap();
        let containers_at = out.find("containerDefinitions").unwrap();
        assert!(version_at < containers_at);
        assert!(out.find("\"alpha\"").unwrap() < out.find("\"zeta\"").unwrap());
        let again = Dockerrun::from_value(serde_json::from_str(&out).unwrap()).unwrap();
        assert_eq!(again, d);
    }

    #[test]
    fn wrong_type_names_the_field() {
        let v = json!({"AWSEBDockerrunVersion": 2, "containerDefinitions": [{"name": "a"}, {"name": "b", "memory": "lots"}]});
        let err = Dockerrun::from_value(v).unwrap_err();
        assert_eq!(err.path, "containerDefinitions[1].memory");
        assert!(
            err.message.contains("invalid type: string \"lots\""),
            "{}",
            err.message
        );
    }

    #[test]
    fn newer_variant_fields_are_typed() {
        let v = json!({
            "AWSEBDockerrunVersion": 2,
            "executionRoleArn": "arn:aws:iam::1:role/x",
            "containerDefinitions": [{
                "name": "django", "image": "i:1", "memory": 512, "entryPoint": ["/entrypoint"],
                "secrets": [{"name": "DATABASE_URL", "valueFrom": "arn:aws:secretsmanager:us-west-2:1:secret:db"}],
                "dependsOn": [{"containerName": "redis", "condition": "START"}]
            }]
        });
        let d = Dockerrun::from_value(v).unwrap();
        let c = &d.container_definitions[0];
        assert_eq!(
            c.secrets[0].value_from,
            "arn:aws:secretsmanager:us-west-2:1:secret:db"
        );
        assert_eq!(c.depends_on[0].condition, "START");
        assert_eq!(
            c.entry_point.as_deref(),
            Some(&["/entrypoint".to_string()][..])
        );
        assert!(d.unknown.is_empty() && c.unknown.is_empty());
    }
}
