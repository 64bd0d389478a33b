//! The least-privilege IAM policy of the deploy role, and the trust policy that lets one GitHub
//! environment of one repository assume it through OIDC.
//!
//! Scoped by region, account, application, EB environment, bundle bucket and ECR repositories.
//! `UpdateEnvironment` runs with the caller's permissions: Elastic Beanstalk updates the
//! environment's CloudFormation stack (`awseb-e-*`), suspends and resumes its Auto Scaling
//! group's processes, registers instances with its load balancer and reads/writes its own
//! storage bucket (`elasticbeanstalk-REGION-ACCOUNT`), so those appear here, limited to the
//! resources EB names `awseb-*`. Describe calls that IAM cannot scope take `*`.

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::{Config, Target};

/// The OIDC provider of GitHub Actions.
pub const GITHUB_OIDC_HOST: &str = "token.actions.githubusercontent.com";

/// IAM's policy language version.
pub const POLICY_VERSION: &str = "2012-10-17";

/// An IAM policy document, its keys in the order people write them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Policy {
    pub version: &'static str,
    pub statement: Vec<Statement>,
}

/// One `Allow` statement.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    pub sid: String,
    pub effect: &'static str,
    pub action: Vec<String>,
    /// One resource is written as a string, several as a list.
    #[serde(serialize_with = "one_or_many")]
    pub resource: Vec<String>,
}

fn one_or_many<S: serde::Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
    match v {
        [one] => s.serialize_str(one),
        many => many.serialize(s),
    }
}

fn stmt(sid: &str, actions: &[&str], resource: Vec<String>) -> Statement {
    Statement {
        sid: sid.to_string(),
        effect: "Allow",
        action: actions.iter().map(|a| a.to_string()).collect(),
        resource,
    }
}

fn any() -> Vec<String> {
    vec!["*".to_string()]
}

/// What the policy is for.
#[derive(Debug, Clone)]
pub struct PolicyRequest<'a> {
    pub environment: &'a str,
    /// The AWS account id (else the configuration's).
    pub account: Option<&'a str>,
}

/// `iam-policy`: which policy to print.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IamPolicyRequest {
    pub environment: String,
    /// The AWS account id (else the configuration's, or DEPLOY_ACCOUNT).
    pub account: Option<String>,
    /// The trust policy for GitHub Actions of this repository (`owner/name`) instead.
    pub trust: Option<String>,
    /// The read-only policy of the preview role instead.
    pub preview: bool,
}

/// The policy document `req` asks for.
pub fn policy_document(config: &Config, req: &IamPolicyRequest) -> Result<Value> {
    let policy_req = PolicyRequest {
        environment: &req.environment,
        account: req.account.as_deref(),
    };
    let policy = if req.preview {
        preview_policy(config, &policy_req)?
    } else {
        deploy_policy(config, &policy_req)?
    };
    match &req.trust {
        None => Ok(serde_json::to_value(&policy)?),
        Some(repository) => {
            let account = req
                .account
                .as_deref()
                .or(config.account.as_deref())
                .context("the AWS account id is unknown: pass --account ID")?;
            trust_policy(account, repository, &req.environment)
        }
    }
}

/// The deploy role's permissions policy for `req.environment` of `config`.
pub fn deploy_policy(config: &Config, req: &PolicyRequest<'_>) -> Result<Policy> {
    let env = config.environment(req.environment)?;
    if env.target != Target::Aws {
        bail!(
            "environment {:?} in {} has target = \"{}\": it deploys to the local Docker Engine and needs no AWS policy",
            req.environment,
            config.path.display(),
            env.target
        );
    }
    let account = req
        .account
        .map(str::to_string)
        .or_else(|| config.account.clone())
        .context("the AWS account id is unknown: pass --account ID, set `account` in the configuration, or set DEPLOY_ACCOUNT")?;
    if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
        bail!("AWS account id {account:?} is not 12 digits: check --account, `account` or DEPLOY_ACCOUNT");
    }
    let region = &config.region;
    let app = &config.application;
    let eb_env = env
        .eb_environment
        .as_deref()
        .context("the environment has no `eb_environment`")?;
    let eb = |resource: &str| format!("arn:aws:elasticbeanstalk:{region}:{account}:{resource}");
    let eb_bucket = format!("elasticbeanstalk-{region}-{account}");

    let mut statements = vec![
        stmt(
            "ElasticBeanstalkRead",
            &[
                "elasticbeanstalk:DescribeApplicationVersions",
                "elasticbeanstalk:DescribeApplications",
                "elasticbeanstalk:DescribeConfigurationSettings",
                "elasticbeanstalk:DescribeEnvironmentHealth",
                "elasticbeanstalk:DescribeEnvironmentResources",
                "elasticbeanstalk:DescribeEnvironments",
                "elasticbeanstalk:DescribeEvents",
                "elasticbeanstalk:DescribeInstancesHealth",
            ],
            any(),
        ),
        stmt(
            "ApplicationVersions",
            &[
                "elasticbeanstalk:CreateApplicationVersion",
                "elasticbeanstalk:DeleteApplicationVersion",
                "elasticbeanstalk:UpdateApplicationVersion",
            ],
            vec![
                eb(&format!("application/{app}")),
                eb(&format!("applicationversion/{app}/*")),
            ],
        ),
        stmt(
            "UpdateEnvironment",
            &["elasticbeanstalk:UpdateEnvironment"],
            vec![
                eb(&format!("environment/{app}/{eb_env}")),
                eb(&format!("applicationversion/{app}/*")),
                eb(&format!("configurationtemplate/{app}/*")),
                format!("arn:aws:elasticbeanstalk:{region}::solutionstack/*"),
                format!("arn:aws:elasticbeanstalk:{region}::platform/*"),
            ],
        ),
    ];
    if env.bucket.is_none() {
        statements.push(stmt(
            "StorageLocation",
            &["elasticbeanstalk:CreateStorageLocation"],
            any(),
        ));
    }
    let mut buckets = vec![eb_bucket.clone()];
    if let Some(b) = env.bucket.as_deref().filter(|b| *b != eb_bucket) {
        buckets.insert(0, b.to_string());
    }
    statements.push(stmt(
        "BundleObjects",
        &[
            "s3:GetObject",
            "s3:GetObjectAcl",
            "s3:PutObject",
            "s3:PutObjectAcl",
        ],
        buckets
            .iter()
            .map(|b| format!("arn:aws:s3:::{b}/*"))
            .collect::<Vec<_>>(),
    ));
    statements.push(stmt(
        "BundleBuckets",
        &[
            "s3:GetBucketLocation",
            "s3:GetBucketPolicy",
            "s3:ListBucket",
        ],
        buckets
            .iter()
            .map(|b| format!("arn:aws:s3:::{b}"))
            .collect::<Vec<_>>(),
    ));
    statements.push(stmt(
        "EnvironmentStack",
        &[
            "cloudformation:CancelUpdateStack",
            "cloudformation:DescribeStackEvents",
            "cloudformation:DescribeStackResource",
            "cloudformation:DescribeStackResources",
            "cloudformation:DescribeStacks",
            "cloudformation:GetTemplate",
            "cloudformation:UpdateStack",
        ],
        vec![format!(
            "arn:aws:cloudformation:{region}:{account}:stack/awseb-e-*"
        )],
    ));
    statements.push(stmt(
"EnvironmentAutoScaling",
&[
            "autoscaling:ResumeProcesses",
            "autoscaling:SuspendProcesses",
            "autoscaling:UpdateAutoScalingGroup"
        ],
vec![format!("arn:aws:autoscaling:{region}:{account}:autoScalingGroup:*:autoScalingGroupName/awseb-e-*")],
));
    statements.push(stmt(
        "EnvironmentLoadBalancer",
        &[
            "elasticloadbalancing:DeregisterInstancesFromLoadBalancer",
            "elasticloadbalancing:DeregisterTargets",
            "elasticloadbalancing:RegisterInstancesWithLoadBalancer",
            "elasticloadbalancing:RegisterTargets",
        ],
        vec![
            format!("arn:aws:elasticloadbalancing:{region}:{account}:loadbalancer/awseb-*"),
            format!("arn:aws:elasticloadbalancing:{region}:{account}:targetgroup/awseb-*"),
        ],
    ));
    statements.push(stmt(
        "EnvironmentDescribe",
        &[
            "autoscaling:DescribeAutoScalingGroups",
            "autoscaling:DescribeAutoScalingInstances",
            "autoscaling:DescribeLaunchConfigurations",
            "autoscaling:DescribeScalingActivities",
            "ec2:DescribeImages",
            "ec2:DescribeInstances",
            "ec2:DescribeLaunchTemplateVersions",
            "ec2:DescribeSecurityGroups",
            "ec2:DescribeSubnets",
            "ec2:DescribeVpcs",
            "elasticloadbalancing:DescribeInstanceHealth",
            "elasticloadbalancing:DescribeLoadBalancers",
            "elasticloadbalancing:DescribeTargetGroups",
            "elasticloadbalancing:DescribeTargetHealth",
        ],
        any(),
    ));

    let ecr = |repo: &str| format!("arn:aws:ecr:{region}:{account}:repository/{repo}");
    let pushed: Vec<String> = config
        .built_images()
        .map(|(_, image, _)| ecr(&image.repository))
        .collect();
    let mut read: Vec<String> = config
        .external_images()
        .filter(|(_, image)| !image.has_registry_host())
        .map(|(_, image)| ecr(&image.repository))
        .chain(pushed.iter().cloned())
        .collect();
    read.sort();
    read.dedup();
    if !read.is_empty() {
        statements.push(stmt("EcrLogin", &["ecr:GetAuthorizationToken"], any()));
        statements.push(stmt(
            "EcrRead",
            &[
                "ecr:BatchCheckLayerAvailability",
                "ecr:BatchGetImage",
                "ecr:DescribeImages",
                "ecr:DescribeRepositories",
                "ecr:GetDownloadUrlForLayer",
            ],
            read,
        ));
    }
    if !pushed.is_empty() {
        statements.push(stmt(
            "EcrPush",
            &[
                "ecr:CompleteLayerUpload",
                "ecr:InitiateLayerUpload",
                "ecr:PutImage",
                "ecr:UploadLayerPart",
            ],
            pushed,
        ));
    }
    Ok(Policy {
        version: POLICY_VERSION,
        statement: statements,
    })
}

/// The read-only policy of the preview role: find the running version and download its bundle.
pub fn preview_policy(config: &Config, req: &PolicyRequest<'_>) -> Result<Policy> {
    let deploy = deploy_policy(config, req)?;
    let buckets = deploy
        .statement
        .iter()
        .find(|s| s.sid == "BundleObjects")
        .map(|s| s.resource.clone())
        .unwrap_or_default();
    Ok(Policy {
        version: POLICY_VERSION,
        statement: vec![
            stmt(
                "ElasticBeanstalkRead",
                &[
                    "elasticbeanstalk:DescribeApplicationVersions",
                    "elasticbeanstalk:DescribeEnvironments",
                ],
                any(),
            ),
            stmt("BundleRead", &["s3:GetObject"], buckets),
        ],
    })
}

/// The trust policy that lets GitHub Actions jobs of `repository` (`owner/name`) running in
/// the GitHub environment `github_environment` assume the role through OIDC.
pub fn trust_policy(account: &str, repository: &str, github_environment: &str) -> Result<Value> {
    let valid = repository
        .split_once('/')
        .is_some_and(|(o, n)| !o.is_empty() && !n.is_empty() && !n.contains('/'));
    if !valid {
        bail!("repository {repository:?} is not `owner/name`");
    }
    Ok(json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "GitHubActionsOidc",
            "Effect": "Allow",
            "Principal": {
                "Federated": format!("arn:aws:iam::{account}:oidc-provider/{GITHUB_OIDC_HOST}")
            },
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    format!("{GITHUB_OIDC_HOST}:aud"): "sts.amazonaws.com",
                    format!("{GITHUB_OIDC_HOST}:sub"): format!("repo:{repository}:environment:{github_environment}")
                }
            }
        }]
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn antenna() -> Config {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy.toml");
        let mut c = Config::load(&path, &Default::default()).unwrap();
        c.account = None;
        c
    }

    #[test]
    fn staging_policy_snapshot() {
        let policy = deploy_policy(
            &antenna(),
            &PolicyRequest {
                environment: "staging",
                account: Some("123456789012"),
            },
        )
        .unwrap();
        insta::assert_snapshot!(serde_json::to_string_pretty(&policy).unwrap());
    }

    #[test]
    fn configured_bucket_replaces_the_storage_location() {
        let mut c = antenna();
        c.environments.get_mut("production").unwrap().bucket = Some("antenna-bundles".into());
        let policy = deploy_policy(
            &c,
            &PolicyRequest {
                environment: "production",
                account: Some("123456789012"),
            },
        )
        .unwrap();
        let text = serde_json::to_string(&policy).unwrap();
        assert!(!text.contains("CreateStorageLocation"), "{text}");
        assert!(text.contains("arn:aws:s3:::antenna-bundles/*"), "{text}");
        assert!(
            text.contains("environment/antenna/antenna-production"),
            "{text}"
        );
        assert!(!text.contains("antenna-staging"), "{text}");
    }

    #[test]
    fn errors_say_what_to_do() {
        let c = antenna();
        let req = |environment, account| PolicyRequest {
            environment,
            account,
        };
        let err = deploy_policy(&c, &req("staging", None))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "the AWS account id is unknown: pass --account ID, set `account` in the configuration, or set DEPLOY_ACCOUNT");
        let err = deploy_policy(&c, &req("staging", Some("12")))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("AWS account id \"12\" is not 12 digits"),
            "{err}"
        );
        let err = deploy_policy(&c, &req("local", Some("123456789012")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("has target = \"local\""), "{err}");
        let err = deploy_policy(&c, &req("qa", Some("123456789012")))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("unknown environment \"qa\""), "{err}");
    }

    #[test]
    fn preview_policy_only_reads() {
        let p = preview_policy(
            &antenna(),
            &PolicyRequest {
                environment: "staging",
                account: Some("123456789012"),
            },
        )
        .unwrap();
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({
                "Version": "2012-10-17",
                "Statement": [
                    {"Sid": "ElasticBeanstalkRead", "Effect": "Allow", "Action": ["elasticbeanstalk:DescribeApplicationVersions", "elasticbeanstalk:DescribeEnvironments"], "Resource": "*"},
                    {"Sid": "BundleRead", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::elasticbeanstalk-us-west-2-123456789012/*"}
                ]
            })
        );
    }

    #[test]
    fn trust_policy_pins_repository_and_environment() {
        let t = trust_policy("123456789012", "ami/antenna", "production").unwrap();
        let cond = &t["Statement"][0]["Condition"]["StringEquals"];
        assert_eq!(
            cond["token.actions.githubusercontent.com:sub"],
            "repo:ami/antenna:environment:production"
        );
        assert_eq!(
            cond["token.actions.githubusercontent.com:aud"],
            "sts.amazonaws.com"
        );
        assert_eq!(
            t["Statement"][0]["Principal"]["Federated"],
            "arn:aws:iam::123456789012:oidc-provider/token.actions.githubusercontent.com"
        );
        let err = trust_policy("123456789012", "antenna", "production")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "repository \"antenna\" is not `owner/name`");
    }
}
