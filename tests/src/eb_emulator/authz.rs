//! IAM enforcement: a caller whose access key has a policy (see [`EbEmulator::enforce`]) is
//! held to it, as AWS would.
//!
//! - Each EB action is evaluated against the resource ARN AWS documents for it, with the
//!   `elasticbeanstalk:InApplication` condition key; a denial is EB's `AccessDenied` (HTTP 403).
//! - `CreateApplicationVersion` reads the source bundle with the caller's permissions
//!   (`s3:GetObject`).
//! - `UpdateEnvironment` acts with the caller's permissions: every update writes the
//!   environment's state under `resources/environments/<id>/` of EB's bucket and suspends the
//!   Auto Scaling group's processes; a bundle whose `.ebextensions` option settings differ from
//!   the environment's also updates the CloudFormation stack, the launch template (passing the
//!   instance profile's role, launching from the template), the Auto Scaling group and the
//!   target group. The call itself succeeds; what the caller may not do fails the update later,
//!   with the events real EB writes ("Service:AmazonCloudFormation, Message:User: … is not
//!   authorized to perform: …", then "Failed to deploy application.").
//!
//! Callers without a policy are not checked (the rest of the suite).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::iam::{denied_message, evaluate, Decision, Request};
use super::script::Script;
use super::{ApiError, EbEmulator, Params, State};

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "us-west-2";
/// The instance profile's role the emulated environments run with.
pub const INSTANCE_ROLE: &str = "aws-elasticbeanstalk-ec2-role";

/// One option setting: (namespace, option, value).
pub(crate) type Setting = (String, String, String);

/// Who is calling, and what they may do.
#[derive(Debug, Clone)]
pub(crate) struct Identity {
    pub principal: String,
    pub policy: Value,
}

impl EbEmulator {
    /// From now on, requests signed with `access_key` are held to `policy`; `principal` is the
    /// ARN named in denials (`arn:aws:iam::123456789012:user/deployer`).
    pub fn enforce(&self, access_key: &str, principal: &str, policy: Value) {
        self.with(|s| {
            s.identities.insert(
                access_key.to_string(),
                Identity {
                    principal: principal.to_string(),
                    policy,
                },
            )
        });
    }
}

/// The access key id of a SigV4 `Authorization` header.
pub(crate) fn access_key(authorization: &str) -> Option<String> {
    let credential = authorization.split("Credential=").nth(1)?;
    let key = credential.split('/').next()?;
    (!key.is_empty()).then(|| key.to_string())
}

fn eb_arn(resource: &str) -> String {
    format!("arn:aws:elasticbeanstalk:{REGION}:{ACCOUNT}:{resource}")
}

fn denied(message: String) -> ApiError {
    ApiError {
        status: 403,
        kind: "Sender",
        code: "AccessDenied",
        message,
    }
}

impl State {
    fn identity(&self, key: Option<&str>) -> Option<&Identity> {
        self.identities.get(key?)
    }

    /// `Err(message)` when `identity` may not make `req`.
    fn check(identity: &Identity, req: &Request) -> Result<(), String> {
        match evaluate(&identity.policy, req) {
            Ok(Decision::Allow) => Ok(()),
            Ok(decision) => Err(denied_message(&identity.principal, req, &decision)),
            Err(unreadable) => Err(format!(
                "the emulator cannot evaluate the caller's policy: {unreadable}"
            )),
        }
    }

    /// The IAM request an EB action makes.
    fn eb_request(&self, action: &str, p: &Params) -> Request {
        let env_app = |name: Option<&String>| {
            name.and_then(|n| self.environments.get(n))
                .map(|e| (e.application.clone(), e.name.clone()))
        };
        let app_of = |p: &Params| {
            p.get("ApplicationName")
                .cloned()
                .or_else(|| env_app(p.get("EnvironmentName")).map(|(a, _)| a))
        };
        let resource = match action {
            "CreateApplicationVersion"
            | "DeleteApplicationVersion"
            | "UpdateApplicationVersion" => {
                match (p.get("ApplicationName"), p.get("VersionLabel")) {
                    (Some(a), Some(l)) => eb_arn(&format!("applicationversion/{a}/{l}")),
                    _ => "*".into(),
                }
            }
            "CreateApplication" | "UpdateApplicationResourceLifecycle" => {
                match p.get("ApplicationName") {
                    Some(a) => eb_arn(&format!("application/{a}")),
                    None => "*".into(),
                }
            }
            "UpdateEnvironment"
            | "DescribeEnvironmentHealth"
            | "DescribeInstancesHealth"
            | "DescribeConfigurationSettings"
            | "DescribeEnvironmentResources"
            | "RequestEnvironmentInfo"
            | "RetrieveEnvironmentInfo"
            | "RestartAppServer"
            | "AbortEnvironmentUpdate" => match env_app(p.get("EnvironmentName")) {
                Some((a, e)) => eb_arn(&format!("environment/{a}/{e}")),
                None => match (app_of(p), p.get("EnvironmentName")) {
                    (Some(a), Some(e)) => eb_arn(&format!("environment/{a}/{e}")),
                    _ => "*".into(),
                },
            },
            // List calls and CreateStorageLocation have no single resource.
            _ => "*".into(),
        };
        let mut req = Request::new(&format!("elasticbeanstalk:{action}"), &resource);
        if let Some(app) = app_of(p) {
            req = req.with(
                "elasticbeanstalk:InApplication",
                &eb_arn(&format!("application/{app}")),
            );
        }
        req
    }

    /// Checks the call itself; callers without a policy pass.
    pub(crate) fn authorize(
        &self,
        key: Option<&str>,
        action: &str,
        p: &Params,
    ) -> Result<(), ApiError> {
        let Some(identity) = self.identity(key) else {
            return Ok(());
        };
        Self::check(identity, &self.eb_request(action, p)).map_err(denied)?;
        if action == "CreateApplicationVersion" {
            let (bucket, object) = (p.get("SourceBundle.S3Bucket"), p.get("SourceBundle.S3Key"));
            if let (Some(bucket), Some(object)) = (bucket, object) {
                let read = Request::new("s3:GetObject", &format!("arn:aws:s3:::{bucket}/{object}"));
                if let Err(why) = Self::check(identity, &read) {
                    return Err(ApiError {
                        status: 400,
                        kind: "Sender",
                        code: "InsufficientPrivilegesException",
                        message: format!(
                            "Unable to download from S3 location (Bucket: {bucket} Key: {object}). Reason: Access Denied ({why})"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// What `UpdateEnvironment` of `env` does with the caller's permissions; the first thing
    /// the caller may not do becomes the update's failure (a script that fails as real EB
    /// does). `changes_configuration`: the option settings differ from the environment's.
    pub(crate) fn on_behalf(
        &self,
        key: Option<&str>,
        env: &str,
        changes_configuration: bool,
    ) -> Option<Script> {
        let identity = self.identity(key)?;
        let e = self.environments.get(env)?;
        let id = &e.id;
        let tag = "aws:ResourceTag/elasticbeanstalk:environment-name";
        let stack = format!(
            "arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/awseb-{id}-stack/6a0b5c30-0000-11ef-0000-{}",
            id[2..].chars().chain(std::iter::repeat('0')).take(12).collect::<String>()
        );
        let asg = format!(
            "arn:aws:autoscaling:{REGION}:{ACCOUNT}:autoScalingGroup:0f1e2d3c-0000-4000-8000-000000000000:autoScalingGroupName/awseb-{id}-AWSEBAutoScalingGroup-1ABCDEF"
        );
        let template = format!(
            "arn:aws:ec2:{REGION}:{ACCOUNT}:launch-template/{}",
            super::actions::launch_template_id(e)
        );
        let target_group = format!(
            "arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/awseb-AWSEB-1ABCDEFGH/0123456789abcdef"
        );
        let state = |o: &str| {
            format!(
                "arn:aws:s3:::{}/resources/environments/{id}/_runtime/{o}",
                self.storage_bucket
            )
        };
        let tagged =
            |action: &str, resource: &str| Request::new(action, resource).with(tag, &e.name);
        let mut needs: Vec<(&str, Request)> = vec![
            (
                "AmazonS3",
                Request::new("s3:PutObject", &state("_versions/app_source_bundle")),
            ),
            (
                "AmazonS3",
                Request::new("s3:GetObject", &state("_versions/app_source_bundle")),
            ),
            (
                "AmazonS3",
                Request::new("s3:DeleteObject", &state("_versions/previous")),
            ),
            (
                "AmazonCloudFormation",
                tagged("cloudformation:DescribeStackResources", &stack),
            ),
            (
                "AutoScaling",
                Request::new("autoscaling:DescribeAutoScalingGroups", "*"),
            ),
            ("AutoScaling", tagged("autoscaling:SuspendProcesses", &asg)),
            ("AutoScaling", tagged("autoscaling:ResumeProcesses", &asg)),
            ("AmazonEC2", Request::new("ec2:DescribeInstances", "*")),
        ];
        if changes_configuration {
            needs.extend([
                (
                    "AmazonCloudFormation",
                    tagged("cloudformation:UpdateStack", &stack),
                ),
                (
                    "AmazonEC2",
                    tagged("ec2:CreateLaunchTemplateVersion", &template),
                ),
                // RunInstances is authorized on each resource it touches: the launch template
                // (which carries EB's tag) and the instance launched from it.
                (
                    "AmazonEC2",
                    tagged("ec2:RunInstances", &template).with("ec2:LaunchTemplate", &template),
                ),
                (
                    "AmazonEC2",
                    Request::new(
                        "ec2:RunInstances",
                        &format!("arn:aws:ec2:{REGION}:{ACCOUNT}:instance/i-0{}", &id[2..]),
                    )
                    .with("ec2:LaunchTemplate", &template),
                ),
                (
                    "AmazonIdentityManagement",
                    Request::new(
                        "iam:PassRole",
                        &format!("arn:aws:iam::{ACCOUNT}:role/{INSTANCE_ROLE}"),
                    )
                    .with("iam:PassedToService", "ec2.amazonaws.com"),
                ),
                (
                    "AutoScaling",
                    tagged("autoscaling:UpdateAutoScalingGroup", &asg),
                ),
                (
                    "ElasticLoadBalancingV2",
                    tagged("elasticloadbalancing:ModifyTargetGroup", &target_group),
                ),
            ]);
        }
        let (service, why) = needs
            .iter()
            .find_map(|(service, req)| Self::check(identity, req).err().map(|w| (*service, w)))?;
        Some(Script::failure(
            Duration::from_millis(60),
            &format!("Service:{service}, Message:{why}"),
        ))
    }
}

/// The option settings a bundle's `.ebextensions/*.config` files set:
/// (namespace, option, value), in file order. Both YAML shapes EB accepts are read.
pub(crate) fn bundle_option_settings(zip: &[u8]) -> Vec<Setting> {
    let mut out = Vec::new();
    let Ok(mut archive) = zip::ZipArchive::new(std::io::Cursor::new(zip)) else {
        return out;
    };
    let mut names: Vec<String> = archive
        .file_names()
        .filter_map(Result::ok)
        .filter(|n| n.starts_with(".ebextensions/") && n.ends_with(".config"))
        .map(|n| n.to_string())
        .collect();
    names.sort();
    for name in names {
        let mut text = String::new();
        let Ok(mut file) = archive.by_name(&name) else {
            continue;
        };
        if std::io::Read::read_to_string(&mut file, &mut text).is_err() {
            continue;
        }
        let Ok(doc) = serde_yaml_ng::from_str::<serde_yaml_ng::Value>(&text) else {
            continue;
        };
        let scalar = |v: &serde_yaml_ng::Value| match v {
            serde_yaml_ng::Value::String(s) => Some(s.clone()),
            serde_yaml_ng::Value::Number(n) => Some(n.to_string()),
            serde_yaml_ng::Value::Bool(b) => Some(b.to_string()),
            _ => None,
        };
        match doc.get("option_settings") {
            // namespace: {option: value}
            Some(serde_yaml_ng::Value::Mapping(namespaces)) => {
                for (ns, options) in namespaces {
                    let (Some(ns), Some(options)) = (ns.as_str(), options.as_mapping()) else {
                        continue;
                    };
                    for (o, v) in options {
                        if let (Some(o), Some(v)) = (o.as_str(), scalar(v)) {
                            out.push((ns.to_string(), o.to_string(), v));
                        }
                    }
                }
            }
            // - namespace: …, option_name: …, value: …
            Some(serde_yaml_ng::Value::Sequence(list)) => {
                for item in list {
                    let field = |k: &str| item.get(k).and_then(scalar);
                    if let (Some(ns), Some(o), Some(v)) =
                        (field("namespace"), field("option_name"), field("value"))
                    {
                        out.push((ns, o, v));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// The settings of `bundle` that differ from `deployed` (namespace → option → value).
pub(crate) fn differing(
    bundle: &[Setting],
    mut deployed: impl FnMut(&str) -> BTreeMap<String, String>,
) -> Vec<Setting> {
    bundle
        .iter()
        .filter(|(ns, o, v)| deployed(ns).get(o) != Some(v))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_key_from_a_sigv4_header() {
        let h = "AWS4-HMAC-SHA256 Credential=AKIADEPLOYER/20261129/us-west-2/elasticbeanstalk/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(access_key(h).as_deref(), Some("AKIADEPLOYER"));
        assert_eq!(access_key("Basic dXNlcg=="), None);
    }

    #[test]
    fn both_option_settings_shapes_are_read() {
        let mut buf = std::io::Cursor::new(Vec::new());
        {
            let mut z = zip::ZipWriter::new(&mut buf);
            let o = zip::write::SimpleFileOptions::default();
            z.start_file(".ebextensions/00_setup.config", o).unwrap();
            std::io::Write::write_all(
                &mut z,
                b"option_settings:\n  aws:autoscaling:launchconfiguration:\n    RootVolumeSize: 30\n",
            )
            .unwrap();
            z.start_file(".ebextensions/10_list.config", o).unwrap();
            std::io::Write::write_all(
                &mut z,
                b"option_settings:\n  - namespace: aws:elasticbeanstalk:environment:process:default\n    option_name: HealthCheckPath\n    value: /api/v2/\n",
            )
            .unwrap();
            z.finish().unwrap();
        }
        let settings = bundle_option_settings(buf.get_ref());
        assert_eq!(
            settings,
            vec![
                (
                    "aws:autoscaling:launchconfiguration".into(),
                    "RootVolumeSize".into(),
                    "30".into()
                ),
                (
                    "aws:elasticbeanstalk:environment:process:default".into(),
                    "HealthCheckPath".into(),
                    "/api/v2/".into()
                ),
            ]
        );
        let same = |ns: &str| {
            let mut m = BTreeMap::new();
            if ns == "aws:autoscaling:launchconfiguration" {
                m.insert("RootVolumeSize".to_string(), "30".to_string());
            }
            m
        };
        assert_eq!(differing(&settings, same).len(), 1);
    }
}
