//! The IAM policies of the deploy and preview roles, every statement justified, scoped to one
//! environment; and the trust policy that lets one GitHub environment assume a role through OIDC.
//!
//! Each statement is built from a [`Grant`]: its actions, its resources, the commands and stages
//! that need it, and the AWS page that says so (`iam-policy --explain` prints them). Two facts
//! shape the deploy role:
//!
//! - `UpdateEnvironment` runs with the caller's permissions. When the bundle's `option_settings`
//!   differ from the environment's (ours set `RootVolumeSize`, `HealthCheckPath`,
//!   `MatcherHTTPCode`), Elastic Beanstalk updates the environment's CloudFormation stack, which
//!   then changes the launch template, the Auto Scaling group and the target group, passes the
//!   instance profile's role to EC2, and writes the environment's state into EB's own bucket.
//!   All of that is checked against the caller's policy.
//! - Those resources are named after the environment *id* (`awseb-e-abc123-stack`), which
//!   `DescribeEnvironments` gives. With the id, resources are named exactly; without it (no AWS
//!   access when the policy is printed), the statements fall back to the tag Elastic Beanstalk
//!   puts on everything it creates, `elasticbeanstalk:environment-name`.

use std::collections::BTreeMap;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::Config;
use crate::ops::AwsEnvironment;

/// The OIDC provider of GitHub Actions.
pub const GITHUB_OIDC_HOST: &str = "token.actions.githubusercontent.com";

/// IAM's policy language version.
pub const POLICY_VERSION: &str = "2012-10-17";

/// AWS's managed policy that grants everything Elastic Beanstalk may do on a user's behalf.
pub const EB_MANAGED_POLICY: &str =
    "arn:aws:iam::aws:policy/AdministratorAccess-AWSElasticBeanstalk";

/// The tag Elastic Beanstalk puts on the stack, Auto Scaling group, launch template, load
/// balancer and target groups it creates for an environment.
pub const EB_ENVIRONMENT_TAG: &str = "elasticbeanstalk:environment-name";

/// The default role of the EB instance profile, and of the EB service role.
pub const DEFAULT_INSTANCE_ROLE: &str = "aws-elasticbeanstalk-ec2-role";
pub const DEFAULT_SERVICE_ROLE: &str = "aws-elasticbeanstalk-service-role";

/// An IAM policy document, its keys in the order people write them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Policy {
    pub version: &'static str,
    pub statement: Vec<Statement>,
}

/// One `Allow` statement, and why it is there.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    pub sid: String,
    pub effect: &'static str,
    pub action: Vec<String>,
    /// One resource is written as a string, several as a list.
    #[serde(serialize_with = "one_or_many")]
    pub resource: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<Value>,
    /// Which commands and stages call these actions (printed by `--explain`, not part of IAM).
    #[serde(skip)]
    pub needed_by: Vec<&'static str>,
    /// Why, in one sentence.
    #[serde(skip)]
    pub why: &'static str,
    /// The AWS documentation page that says so.
    #[serde(skip)]
    pub doc: &'static str,
}

fn one_or_many<S: serde::Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
    match v {
        [one] => s.serialize_str(one),
        many => many.serialize(s),
    }
}

/// A statement before it is scoped: what it allows, to whom it matters, and the evidence.
struct Grant {
    sid: &'static str,
    actions: &'static [&'static str],
    needed_by: &'static [&'static str],
    why: &'static str,
    doc: &'static str,
}

impl Grant {
    fn on(&self, resource: Vec<String>) -> Statement {
        Statement {
            sid: self.sid.to_string(),
            effect: "Allow",
            action: self.actions.iter().map(|a| a.to_string()).collect(),
            resource,
            condition: None,
            needed_by: self.needed_by.to_vec(),
            why: self.why,
            doc: self.doc,
        }
    }

    fn anywhere(&self) -> Statement {
        self.on(vec!["*".to_string()])
    }
}

impl Statement {
    fn when(mut self, condition: Value) -> Self {
        self.condition = Some(condition);
        self
    }
}

const DOC_EB_AUTHZ: &str =
    "https://docs.aws.amazon.com/service-authorization/latest/reference/list_awselasticbeanstalk.html";
const DOC_EB_UPDATE: &str =
    "https://docs.aws.amazon.com/elasticbeanstalk/latest/dg/AWSHowTo.iam.managed-policies.html";
const DOC_EB_BUCKET: &str =
    "https://docs.aws.amazon.com/elasticbeanstalk/latest/dg/AWSHowTo.S3.html";
const DOC_CFN: &str =
    "https://docs.aws.amazon.com/service-authorization/latest/reference/list_awscloudformation.html";
const DOC_ASG_LT: &str =
    "https://docs.aws.amazon.com/autoscaling/ec2/userguide/ec2-auto-scaling-launch-template-permissions.html";
const DOC_ELB: &str = "https://docs.aws.amazon.com/service-authorization/latest/reference/list_awselasticloadbalancingv2.html";
const DOC_PASSROLE: &str =
    "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_roles_use_passrole.html";
const DOC_ECR_PUSH: &str =
    "https://docs.aws.amazon.com/AmazonECR/latest/userguide/image-push-iam.html";
const DOC_ECR_AUTH: &str =
    "https://docs.aws.amazon.com/AmazonECR/latest/userguide/registry_auth.html";
const DOC_ECR_AUTHZ: &str =
    "https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazonelasticcontainerregistry.html";
const DOC_S3_AUTHZ: &str =
    "https://docs.aws.amazon.com/service-authorization/latest/reference/list_amazons3.html";

const EB_READ: Grant = Grant {
    sid: "ElasticBeanstalkRead",
    actions: &[
        "elasticbeanstalk:DescribeApplicationVersions",
        "elasticbeanstalk:DescribeApplications",
        "elasticbeanstalk:DescribeEnvironments",
        "elasticbeanstalk:DescribeEvents",
    ],
    needed_by: &[
        "deploy: version (find or create the version), deploy (the lock, events, verdict), verify (the CNAME)",
        "preview: the running version",
        "doctor: the application and environment",
        "status, history, cleanup: versions (paged), environments, events since the last deploy",
        "deploy: version (DescribeApplications counts the versions against the quota)",
    ],
    why: "these list calls name no single environment, so IAM checks them against every resource they may return: only `*` works",
    doc: DOC_EB_AUTHZ,
};

const EB_ENV_READ: Grant = Grant {
    sid: "EnvironmentRead",
    actions: &[
        "elasticbeanstalk:DescribeConfigurationSettings",
        "elasticbeanstalk:DescribeEnvironmentHealth",
        "elasticbeanstalk:DescribeInstancesHealth",
        "elasticbeanstalk:RequestEnvironmentInfo",
        "elasticbeanstalk:RetrieveEnvironmentInfo",
    ],
    needed_by: &[
        "deploy: deploy (enhanced health and each instance's deployment in the verdict; the tail logs of a failed deploy)",
        "doctor: platform, enhanced health and environment properties",
        "status: health, causes and instances",
        "logs: RequestEnvironmentInfo asks the instances for their logs, RetrieveEnvironmentInfo lists the presigned URLs",
    ],
    why: "health, settings and logs of this environment only",
    doc: DOC_EB_AUTHZ,
};

const EB_VERSIONS: Grant = Grant {
    sid: "ApplicationVersions",
    actions: &[
        "elasticbeanstalk:CreateApplicationVersion",
        "elasticbeanstalk:DeleteApplicationVersion",
        "elasticbeanstalk:UpdateApplicationResourceLifecycle",
    ],
    needed_by: &[
        "deploy: version (CreateApplicationVersion with Process=true)",
        "cleanup: DeleteApplicationVersion with DeleteSourceBundle; --lifecycle writes the version lifecycle policy",
    ],
    why: "versions of this application only",
    doc: DOC_EB_AUTHZ,
};

const EB_UPDATE: Grant = Grant {
    sid: "UpdateEnvironment",
    actions: &["elasticbeanstalk:UpdateEnvironment"],
    needed_by: &["deploy: deploy and rollback (UpdateEnvironment with the version label)"],
    why: "this environment only, and only from a version of this application",
    doc: DOC_EB_AUTHZ,
};

const EB_STORAGE: Grant = Grant {
    sid: "StorageLocation",
    actions: &["elasticbeanstalk:CreateStorageLocation"],
    needed_by: &["deploy: upload (the bucket, when `bucket` is not set)"],
    why: "CreateStorageLocation returns (and creates once) the account's EB bucket; it has no resource",
    doc: DOC_EB_BUCKET,
};

const BUNDLE_OBJECTS: Grant = Grant {
    sid: "BundleObjects",
    actions: &["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
    needed_by: &[
        "deploy: upload (HeadObject to skip a bundle already there needs s3:GetObject; PutObject; without s3:ListBucket a missing key answers 403, which the upload takes as missing)",
        "history: bundle sizes (HeadObject)",
        "cleanup: EB deletes a deleted version's bundle with the caller's permissions (DeleteSourceBundle)",
        "deploy: version (EB reads the bundle with the caller's permissions when it processes it)",
        "preview: the running bundle",
    ],
    why: "bundles are `<application>/<version label>.zip` in the bucket: nothing else of the bucket (not the deploy journals)",
    doc: DOC_S3_AUTHZ,
};

const DEPLOY_JOURNAL: Grant = Grant {
    sid: "DeployJournal",
    actions: &["s3:GetObject", "s3:PutObject"],
    needed_by: &[
        "deploy and rollback: the deploy journal `<application>/deploys/<environment>.json` (read, then written)",
        "history, status and rollback: which version ran before",
    ],
    why: "this environment's journal only: another environment's role cannot rewrite its history",
    doc: DOC_S3_AUTHZ,
};

const DEPLOY_JOURNALS_READ: Grant = Grant {
    sid: "DeployJournalsRead",
    actions: &["s3:GetObject"],
    needed_by: &[
        "cleanup: every environment's journal, so that no environment's rollback target is deleted",
    ],
    why: "read only, and only the application's journals under `<application>/deploys/`",
    doc: DOC_S3_AUTHZ,
};

const EB_STATE: Grant = Grant {
    sid: "EnvironmentState",
    actions: &["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
    needed_by: &[
        "deploy: deploy (EB writes and deletes the environment's state under resources/environments/ with the caller's permissions)",
    ],
    why: "EB keeps each environment's state and logs under `resources/environments/<id>/` of its bucket; projects with hand-made policies report AccessDenied on s3:DeleteObject there",
    doc: DOC_EB_BUCKET,
};

const STACK: Grant = Grant {
    sid: "EnvironmentStack",
    actions: &[
        "cloudformation:CancelUpdateStack",
        "cloudformation:DescribeStackEvents",
        "cloudformation:DescribeStackResource",
        "cloudformation:DescribeStackResources",
        "cloudformation:DescribeStacks",
        "cloudformation:GetTemplate",
        "cloudformation:UpdateStack",
    ],
    needed_by: &["deploy: deploy (a bundle whose option_settings differ from the environment's updates its stack)"],
    why: "the environment's own stack, `awseb-<environment id>-stack`",
    doc: DOC_CFN,
};

const AUTOSCALING: Grant = Grant {
    sid: "EnvironmentAutoScaling",
    actions: &[
        "autoscaling:CreateOrUpdateTags",
        "autoscaling:ResumeProcesses",
        "autoscaling:SuspendProcesses",
        "autoscaling:UpdateAutoScalingGroup",
    ],
    needed_by: &["deploy: deploy (EB suspends the group's processes during a deploy; a changed launch setting updates the group)"],
    why: "the environment's own Auto Scaling group, by its EB tag",
    doc: DOC_ASG_LT,
};

const LAUNCH_TEMPLATE: Grant = Grant {
    sid: "EnvironmentLaunchTemplate",
    actions: &[
        "ec2:CreateLaunchTemplateVersion",
        "ec2:DeleteLaunchTemplateVersions",
        "ec2:ModifyLaunchTemplate",
    ],
    needed_by: &["deploy: deploy (RootVolumeSize and other launch settings make a new launch template version)"],
    why: "the environment's own launch template, by its EB tag",
    doc: DOC_ASG_LT,
};

const DOC_LT_LAUNCH: &str = "https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/use-launch-templates-to-control-launching-instances.html";

const RUN_INSTANCES: Grant = Grant {
    sid: "LaunchFromTemplate",
    actions: &["ec2:CreateTags", "ec2:RunInstances"],
    needed_by: &["deploy: deploy (updating an Auto Scaling group to a launch template version checks that the caller may launch from it)"],
    why: "only instances launched from the environment's own launch template: its ARN in the `ec2:LaunchTemplate` condition key, from EB's DescribeEnvironmentResources",
    doc: DOC_LT_LAUNCH,
};

/// The fallback of [`RUN_INSTANCES`] when the launch template's id is unknown: the template by
/// EB's tag (RunInstances is authorized on each resource it touches, the template included,
/// whose `aws:ResourceTag/${TagKey}` the service authorization reference lists) ...
const RUN_FROM_TAGGED_TEMPLATE: Grant = Grant {
    sid: "LaunchFromTemplate",
    actions: &["ec2:RunInstances"],
    needed_by: &["deploy: deploy (updating an Auto Scaling group to a launch template version checks that the caller may launch from it)"],
    why: "the launch template itself: only the environment's, by its EB tag (its id was not looked up: run `iam-policy` with AWS credentials to name it exactly)",
    doc: DOC_LT_LAUNCH,
};

/// ... and every other resource of the launch (instance, volumes, network interface, image,
/// subnet, security groups) only when launched from a launch template: with the statement
/// above, from the environment's.
const RUN_INSTANCE_RESOURCES: Grant = Grant {
    sid: "LaunchFromTemplateResources",
    actions: &["ec2:CreateTags", "ec2:RunInstances"],
    needed_by: &["deploy: deploy (the instance and what it is launched with, from that launch template)"],
    why: "the instance and its volumes, network interface, image, subnet and security groups, only when launched from a launch template; the launch template resource is left out, so that `LaunchFromTemplate` alone decides which template",
    doc: DOC_LT_LAUNCH,
};

/// The resource types `RunInstances` is authorized on besides the launch template.
const RUN_INSTANCE_RESOURCE_TYPES: &[&str] = &[
    "instance",
    "volume",
    "network-interface",
    "security-group",
    "subnet",
    "key-pair",
    "placement-group",
    "capacity-reservation",
    "elastic-gpu",
    "snapshot",
];

const PASS_ROLE: Grant = Grant {
    sid: "PassEnvironmentRoles",
    actions: &["iam:PassRole"],
    needed_by: &["deploy: deploy (the new launch template version carries the instance profile; the stack update passes the service role)"],
    why: "only the instance profile's role to EC2 and the service role to Elastic Beanstalk",
    doc: DOC_PASSROLE,
};

const TARGET_GROUP: Grant = Grant {
    sid: "EnvironmentLoadBalancer",
    actions: &[
        "elasticloadbalancing:DeregisterTargets",
        "elasticloadbalancing:ModifyTargetGroup",
        "elasticloadbalancing:ModifyTargetGroupAttributes",
        "elasticloadbalancing:RegisterTargets",
    ],
    needed_by: &["deploy: deploy (HealthCheckPath and MatcherHTTPCode modify the target group; instances are registered as they are replaced)"],
    why: "the environment's own target groups, by their EB tag",
    doc: DOC_ELB,
};

const DESCRIBE: Grant = Grant {
    sid: "EnvironmentDescribe",
    actions: &[
        "autoscaling:DescribeAutoScalingGroups",
        "autoscaling:DescribeAutoScalingInstances",
        "autoscaling:DescribeLaunchConfigurations",
        "autoscaling:DescribeScalingActivities",
        "ec2:DescribeImages",
        "ec2:DescribeInstances",
        "ec2:DescribeLaunchTemplateVersions",
        "ec2:DescribeLaunchTemplates",
        "ec2:DescribeSecurityGroups",
        "ec2:DescribeSubnets",
        "ec2:DescribeVpcs",
        "elasticloadbalancing:DescribeLoadBalancers",
        "elasticloadbalancing:DescribeTargetGroups",
        "elasticloadbalancing:DescribeTargetHealth",
    ],
    needed_by: &["deploy: deploy (EB describes the environment's resources while it updates them)"],
    why: "Describe calls of EC2, Auto Scaling and ELB have no resource-level permissions: only `*` works",
    doc: DOC_EB_UPDATE,
};

const ECR_LOGIN: Grant = Grant {
    sid: "EcrLogin",
    actions: &["ecr:GetAuthorizationToken"],
    needed_by: &["deploy: push (docker login to the registry)"],
    why: "the token is for the whole registry: GetAuthorizationToken has no resource",
    doc: DOC_ECR_AUTH,
};

const ECR_READ: Grant = Grant {
    sid: "EcrRead",
    actions: &[
        "ecr:BatchGetImage",
        "ecr:DescribeImages",
        "ecr:DescribeRepositories",
    ],
    needed_by: &[
        "deploy: push (is the release's tag there already, with which revision: DescribeImages, and the manifest through the registry: BatchGetImage), render (the external images' tags)",
        "doctor: the repositories and tags",
    ],
    why: "only the repositories the template refers to",
    doc: DOC_ECR_AUTHZ,
};

const ECR_PUSH: Grant = Grant {
    sid: "EcrPush",
    actions: &[
        "ecr:BatchCheckLayerAvailability",
        "ecr:CompleteLayerUpload",
        "ecr:InitiateLayerUpload",
        "ecr:PutImage",
        "ecr:UploadLayerPart",
    ],
    needed_by: &["deploy: push (layers to the registry, then PutImage)"],
    why: "only the repositories this repository builds; ECR has no condition key for the image tag, so a push cannot be limited to a tag pattern: immutable tags (what `doctor --fix` and `push --create-repository` create) stop any role from overwriting a tag another environment runs",
    doc: DOC_ECR_PUSH,
};

const ECR_CREATE: Grant = Grant {
    sid: "EcrCreateRepository",
    actions: &["ecr:CreateRepository"],
    needed_by: &[
        "push --create-repository and doctor --fix: a missing repository of a built image",
    ],
    why: "only the repositories this repository builds",
    doc: DOC_ECR_AUTHZ,
};

const DOC_SECRETS_AUTHZ: &str =
    "https://docs.aws.amazon.com/service-authorization/latest/reference/list_awssecretsmanager.html";
const DOC_SSM_AUTHZ: &str = "https://docs.aws.amazon.com/service-authorization/latest/reference/list_awssystemsmanager.html";
const DOC_EB_SECRETS: &str =
    "https://docs.aws.amazon.com/elasticbeanstalk/latest/dg/AWSHowTo.secrets.IAM-permissions.html";

const SECRET_REFS: Grant = Grant {
    sid: "DeclaredSecrets",
    actions: &["secretsmanager:DescribeSecret"],
    needed_by: &[
        "env diff, env apply: each declared secret exists and its ARN is what EB stores (DescribeSecret; no value is read)",
        "deploy: deploy (the plan's environment properties diff; --apply-env sends it with the version)",
    ],
    why: "only the secrets `[environments.NAME.secrets]` declares; a name matches its ARN with the six characters Secrets Manager appends (`-??????`)",
    doc: DOC_SECRETS_AUTHZ,
};

const PARAMETER_REFS: Grant = Grant {
    sid: "DeclaredParameters",
    actions: &["ssm:GetParameter"],
    needed_by: &[
        "env diff, env apply: each declared parameter exists and its ARN is what EB stores (GetParameter without decryption: a SecureString stays encrypted)",
        "deploy: deploy (the plan's environment properties diff; --apply-env sends it with the version)",
    ],
    why: "only the parameters `[environments.NAME.secrets]` declares",
    doc: DOC_SSM_AUTHZ,
};

const SECRETS_WRITE: Grant = Grant {
    sid: "EnvironmentSecretsWrite",
    actions: &[
        "secretsmanager:CreateSecret",
        "secretsmanager:PutSecretValue",
        "secretsmanager:TagResource",
    ],
    needed_by: &[
        "secrets put, secrets import: CreateSecret with the application and environment tags (which also needs TagResource); an existing secret gets PutSecretValue, then TagResource",
    ],
    why: "only the secrets `secrets put` names, `<application>/<environment>/*`: another environment's secrets stay out of reach",
    doc: DOC_SECRETS_AUTHZ,
};

const INSTANCE_SECRETS: Grant = Grant {
    sid: "ReadEnvironmentSecrets",
    actions: &["secretsmanager:GetSecretValue"],
    needed_by: &[
        "the environment's instances: EB resolves `aws:elasticbeanstalk:application:environmentsecrets` when instances bootstrap and deploy",
    ],
    why: "only the declared secrets; add kms:Decrypt on the key when a customer managed KMS key encrypts one (the default key needs nothing)",
    doc: DOC_EB_SECRETS,
};

const INSTANCE_PARAMETERS: Grant = Grant {
    sid: "ReadEnvironmentParameters",
    actions: &["ssm:GetParameter"],
    needed_by: &[
        "the environment's instances: EB resolves `aws:elasticbeanstalk:application:environmentsecrets` when instances bootstrap and deploy",
    ],
    why: "only the declared parameters; add kms:Decrypt on the key when a customer managed KMS key encrypts a SecureString",
    doc: DOC_EB_SECRETS,
};

/// What the policy is for.
#[derive(Debug, Clone, Default)]
pub struct PolicyRequest<'a> {
    pub environment: &'a str,
    /// The AWS account id (else the configuration's).
    pub account: Option<&'a str>,
    /// The Elastic Beanstalk environment id (`e-abc123`), from `DescribeEnvironments`: names the
    /// environment's stack and its bucket prefix exactly. Without it, tags scope them.
    pub environment_id: Option<&'a str>,
    /// Role of the environment's instance profile (default [`DEFAULT_INSTANCE_ROLE`]).
    pub instance_role: Option<&'a str>,
    /// The ids of the environment's launch templates (`lt-…`), from
    /// `DescribeEnvironmentResources`: instances may be launched from these only. Without
    /// them, EB's tag on the template scopes the launch.
    pub launch_templates: &'a [String],
    /// The environment's service role (default [`DEFAULT_SERVICE_ROLE`]).
    pub service_role: Option<&'a str>,
}

/// Everything the statements are scoped by.
struct Scope {
    region: String,
    account: String,
    application: String,
    eb_environment: String,
    environment_id: Option<String>,
    buckets: Vec<String>,
    eb_bucket: String,
    own_bucket: bool,
    /// The environment's name in deploy.toml (the middle of its secrets' names).
    environment: String,
    secrets: BTreeMap<String, crate::envprops::SecretRef>,
}

impl Scope {
    fn new(config: &Config, req: &PolicyRequest<'_>) -> Result<Self> {
        let env = AwsEnvironment::resolve(config, req.environment, "iam-policy")?;
        let account = req
            .account
            .map(str::to_string)
            .or_else(|| config.account.clone())
            .context("the AWS account id is unknown: pass --account ID, set `account` in the configuration, or set DEPLOY_ACCOUNT")?;
        if account.len() != 12 || !account.chars().all(|c| c.is_ascii_digit()) {
            bail!("AWS account id {account:?} is not 12 digits: check --account, `account` or DEPLOY_ACCOUNT");
        }
        if let Some(id) = req.environment_id {
            if !id.starts_with("e-")
                || id.len() < 4
                || !id[2..].chars().all(|c| c.is_ascii_alphanumeric())
            {
                bail!("Elastic Beanstalk environment id {id:?} is not of the form e-abc123");
            }
        }
        let eb_bucket = format!("elasticbeanstalk-{}-{account}", env.region);
        let mut buckets = vec![eb_bucket.clone()];
        if let Some(b) = env.spec.bucket.as_deref().filter(|b| *b != eb_bucket) {
            buckets.insert(0, b.to_string());
        }
        Ok(Self {
            region: env.region,
            application: env.application,
            eb_environment: env.eb_environment,
            environment_id: req.environment_id.map(str::to_string),
            own_bucket: env.spec.bucket.is_some(),
            environment: env.name.clone(),
            secrets: env.spec.secrets.clone(),
            buckets,
            eb_bucket,
            account,
        })
    }

    fn arn(&self, service: &str, resource: &str) -> String {
        format!(
            "arn:aws:{service}:{}:{}:{resource}",
            self.region, self.account
        )
    }

    fn eb(&self, resource: &str) -> String {
        self.arn("elasticbeanstalk", resource)
    }

    fn environment_arn(&self) -> String {
        self.eb(&format!(
            "environment/{}/{}",
            self.application, self.eb_environment
        ))
    }

    fn application_arn(&self) -> String {
        self.eb(&format!("application/{}", self.application))
    }

    /// `aws:ResourceTag/elasticbeanstalk:environment-name` = this environment.
    fn tagged(&self) -> Value {
        json!({"StringEquals": {format!("aws:ResourceTag/{EB_ENVIRONMENT_TAG}"): self.eb_environment}})
    }

    fn ecr(&self, repository: &str) -> String {
        self.arn("ecr", &format!("repository/{repository}"))
    }

    /// The ARNs of the secrets the environment declares: an ARN as given, a name with the six
    /// characters Secrets Manager appends to it.
    fn declared_secrets(&self) -> Vec<String> {
        let mut arns: Vec<String> = self
            .secrets
            .values()
            .filter_map(|r| r.secret.as_deref())
            .map(|s| {
                if s.starts_with("arn:") {
                    s.to_string()
                } else {
                    self.arn("secretsmanager", &format!("secret:{s}-??????"))
                }
            })
            .collect();
        arns.sort();
        arns.dedup();
        arns
    }

    /// The ARNs of the SSM parameters the environment declares.
    fn declared_parameters(&self) -> Vec<String> {
        let mut arns: Vec<String> = self
            .secrets
            .values()
            .filter_map(|r| r.parameter.as_deref())
            .map(|p| {
                if p.starts_with("arn:") {
                    p.to_string()
                } else {
                    // `/a/b` is `parameter/a/b`, `x` is `parameter/x`.
                    let name = p.trim_start_matches('/');
                    self.arn("ssm", &format!("parameter/{name}"))
                }
            })
            .collect();
        arns.sort();
        arns.dedup();
        arns
    }
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
    /// What the environment's instance profile needs to read the declared secrets instead.
    pub instance_profile: bool,
    /// For each statement, the commands and stages that need it, instead of the policy.
    pub explain: bool,
    /// AWS's managed Elastic Beanstalk policy plus the ECR and bundle statements instead.
    pub managed: bool,
    /// The Elastic Beanstalk environment id; else looked up unless `offline`.
    pub environment_id: Option<String>,
    /// Do not ask AWS for the environment id and roles.
    pub offline: bool,
}

/// What [`iam_policy`] prints.
#[derive(Debug, Clone)]
pub enum IamPolicyOutput {
    /// The deploy or preview role's permissions policy.
    Policy(Policy),
    /// `--explain`: why each statement is there.
    Explained(String),
    /// `--managed`.
    Managed(ManagedAlternative),
    /// `--instance-profile`.
    InstanceProfile(InstanceProfilePolicy),
    /// `--trust`: the role's trust policy for GitHub Actions.
    Trust(Value),
}

/// The policy document `req` asks for (the environment's id and roles looked up in AWS
/// unless given, offline, or not needed).
pub async fn iam_policy(config: &Config, req: &IamPolicyRequest) -> Result<IamPolicyOutput> {
    let facts = if req.environment_id.is_some() || req.offline || req.trust.is_some() {
        if req.trust.is_none() && !req.managed {
            tracing::info!(
                "AWS not asked (--environment-id or --offline): instances may launch from any launch template carrying the environment's `{EB_ENVIRONMENT_TAG}` tag; without those flags, `iam-policy` names its launch template exactly"
            );
        }
        EnvironmentFacts {
            environment_id: req.environment_id.clone(),
            ..Default::default()
        }
    } else {
        lookup_or_explain(config, &req.environment).await?
    };
    let policy_req = PolicyRequest {
        environment: &req.environment,
        account: req.account.as_deref(),
        environment_id: facts.environment_id.as_deref(),
        instance_role: facts.instance_role.as_deref(),
        launch_templates: &facts.launch_templates,
        service_role: facts.service_role.as_deref(),
    };
    if req.managed {
        return Ok(IamPolicyOutput::Managed(managed_alternative(
            config,
            &policy_req,
        )?));
    }
    let policy = if req.instance_profile {
        let instance = instance_profile_policy(config, &policy_req)?;
        if !req.explain {
            return Ok(IamPolicyOutput::InstanceProfile(instance));
        }
        instance.policy
    } else if req.preview {
        preview_policy(config, &policy_req)?
    } else {
        deploy_policy(config, &policy_req)?
    };
    if req.explain {
        return Ok(IamPolicyOutput::Explained(explain(&policy)));
    }
    match &req.trust {
        None => Ok(IamPolicyOutput::Policy(policy)),
        Some(repository) => {
            let account = req
                .account
                .as_deref()
                .or(config.account.as_deref())
                .context("the AWS account id is unknown: pass --account ID")?;
            Ok(IamPolicyOutput::Trust(trust_policy(
                account,
                repository,
                &req.environment,
            )?))
        }
    }
}

/// The deploy role's permissions policy for `req.environment` of `config`.
pub fn deploy_policy(config: &Config, req: &PolicyRequest<'_>) -> Result<Policy> {
    let s = Scope::new(config, req)?;
    let mut statements = vec![
        EB_READ.anywhere(),
        EB_ENV_READ.on(vec![s.environment_arn()]),
        EB_VERSIONS.on(vec![
            s.application_arn(),
            s.eb(&format!("applicationversion/{}/*", s.application)),
        ]),
        EB_UPDATE
            .on(vec![s.environment_arn()])
            .when(json!({"StringEquals": {"elasticbeanstalk:InApplication": s.application_arn()}})),
    ];
    if !s.own_bucket {
        statements.push(EB_STORAGE.anywhere());
    }
    statements.push(
        BUNDLE_OBJECTS.on(s
            .buckets
            .iter()
            .map(|b| format!("arn:aws:s3:::{b}/{}/*.zip", s.application))
            .collect()),
    );
    statements.push(
        DEPLOY_JOURNAL.on(s
            .buckets
            .iter()
            .map(|b| {
                format!(
                    "arn:aws:s3:::{b}/{}",
                    crate::ops::journal::key(&s.application, &s.eb_environment)
                )
            })
            .collect()),
    );
    statements.push(
        DEPLOY_JOURNALS_READ.on(s
            .buckets
            .iter()
            .map(|b| format!("arn:aws:s3:::{b}/{}/deploys/*", s.application))
            .collect()),
    );
    let env_prefix = match &s.environment_id {
        Some(id) => format!("resources/environments/{id}/*"),
        None => "resources/environments/*".to_string(),
    };
    let mut state = vec![format!("arn:aws:s3:::{}/{env_prefix}", s.eb_bucket)];
    if let Some(id) = &s.environment_id {
        state.push(format!(
            "arn:aws:s3:::{}/resources/environments/logs/*/{id}/*",
            s.eb_bucket
        ));
    }
    statements.push(EB_STATE.on(state));
    statements.push(match &s.environment_id {
        Some(id) => STACK.on(vec![
            s.arn("cloudformation", &format!("stack/awseb-{id}-stack/*"))
        ]),
        None => STACK
            .on(vec![s.arn("cloudformation", "stack/awseb-e-*-stack/*")])
            .when(s.tagged()),
    });
    statements.push(match &s.environment_id {
        Some(id) => AUTOSCALING.on(vec![s.arn(
            "autoscaling",
            &format!("autoScalingGroup:*:autoScalingGroupName/awseb-{id}-AWSEBAutoScalingGroup-*"),
        )]),
        None => AUTOSCALING
            .on(vec![s.arn(
                "autoscaling",
                "autoScalingGroup:*:autoScalingGroupName/awseb-e-*",
            )])
            .when(s.tagged()),
    });
    statements.push(
        LAUNCH_TEMPLATE
            .on(vec![s.arn("ec2", "launch-template/*")])
            .when(s.tagged()),
    );
    statements.extend(launch_statements(&s, req.launch_templates));
    let role = |name: &str| format!("arn:aws:iam::{}:role/{name}", s.account);
    statements.push(
        PASS_ROLE
            .on(vec![
                role(req.instance_role.unwrap_or(DEFAULT_INSTANCE_ROLE)),
                role(req.service_role.unwrap_or(DEFAULT_SERVICE_ROLE)),
            ])
            .when(json!({"StringEquals": {"iam:PassedToService": ["ec2.amazonaws.com", "elasticbeanstalk.amazonaws.com"]}})),
    );
    statements.push(
        TARGET_GROUP
            .on(vec![s.arn("elasticloadbalancing", "targetgroup/awseb-*")])
            .when(s.tagged()),
    );
    statements.push(DESCRIBE.anywhere());

    let pushed: Vec<String> = config
        .built_images()
        .map(|(_, image, _)| s.ecr(&image.repository))
        .collect();
    let mut read: Vec<String> = config
        .external_images()
        .filter(|(_, image)| !image.has_registry_host())
        .map(|(_, image)| s.ecr(&image.repository))
        .chain(pushed.iter().cloned())
        .collect();
    read.sort();
    read.dedup();
    if !read.is_empty() {
        statements.push(ECR_LOGIN.anywhere());
        statements.push(ECR_READ.on(read));
    }
    if !pushed.is_empty() {
        statements.push(ECR_PUSH.on(pushed.clone()));
        statements.push(ECR_CREATE.on(pushed));
    }
    let (secrets, parameters) = (s.declared_secrets(), s.declared_parameters());
    if !secrets.is_empty() {
        statements.push(SECRET_REFS.on(secrets));
    }
    if !parameters.is_empty() {
        statements.push(PARAMETER_REFS.on(parameters));
    }
    statements.push(SECRETS_WRITE.on(vec![s.arn(
        "secretsmanager",
        &format!("secret:{}/{}/*", s.application, s.environment),
    )]));
    Ok(Policy {
        version: POLICY_VERSION,
        statement: statements,
    })
}

/// Who may launch instances, and from which launch template: the environment's own, by its id
/// when known (one statement, `ec2:LaunchTemplate` = its ARN), else by EB's tag on it (the
/// template by its tag, the launch's other resources only from a template).
fn launch_statements(s: &Scope, templates: &[String]) -> Vec<Statement> {
    if !templates.is_empty() {
        let arns: Vec<String> = templates
            .iter()
            .map(|id| s.arn("ec2", &format!("launch-template/{id}")))
            .collect();
        return vec![RUN_INSTANCES
            .anywhere()
            .when(json!({"ArnEquals": {"ec2:LaunchTemplate": arns}}))];
    }
    let mut others: Vec<String> = RUN_INSTANCE_RESOURCE_TYPES
        .iter()
        .map(|t| format!("arn:aws:ec2:{}:*:{t}/*", s.region))
        .collect();
    // AMIs have no account in their ARN.
    others.push(format!("arn:aws:ec2:{}::image/*", s.region));
    vec![
        RUN_FROM_TAGGED_TEMPLATE
            .on(vec![s.arn("ec2", "launch-template/*")])
            .when(s.tagged()),
        RUN_INSTANCE_RESOURCES
            .on(others)
            .when(json!({"ArnLike": {"ec2:LaunchTemplate": s.arn("ec2", "launch-template/*")}})),
    ]
}

/// The read-only policy of the preview role: find the running version and download its bundle.
pub fn preview_policy(config: &Config, req: &PolicyRequest<'_>) -> Result<Policy> {
    let s = Scope::new(config, req)?;
    const PREVIEW_READ: Grant = Grant {
        sid: "ElasticBeanstalkRead",
        actions: &[
            "elasticbeanstalk:DescribeApplicationVersions",
            "elasticbeanstalk:DescribeEnvironments",
            "elasticbeanstalk:DescribeEvents",
        ],
        needed_by: &[
            "preview: the version the environment runs and its bundle's location",
            "status, history: versions, environments and events",
        ],
        why: "list calls: only `*` works",
        doc: DOC_EB_AUTHZ,
    };
    const PREVIEW_ENV: Grant = Grant {
        sid: "EnvironmentRead",
        actions: &[
            "elasticbeanstalk:DescribeEnvironmentHealth",
            "elasticbeanstalk:DescribeInstancesHealth",
            "elasticbeanstalk:RequestEnvironmentInfo",
            "elasticbeanstalk:RetrieveEnvironmentInfo",
        ],
        needed_by: &[
            "status: health, causes and instances",
            "logs: asking the instances for their logs changes nothing but the log files EB collects",
        ],
        why: "this environment only",
        doc: DOC_EB_AUTHZ,
    };
    const PREVIEW_BUNDLE: Grant = Grant {
        sid: "BundleRead",
        actions: &["s3:GetObject"],
        needed_by: &[
            "preview: the running bundle, to diff against",
            "history: bundle sizes and the deploy journal",
        ],
        why: "the application's bundles only",
        doc: DOC_S3_AUTHZ,
    };
    Ok(Policy {
        version: POLICY_VERSION,
        statement: vec![
            PREVIEW_READ.anywhere(),
            PREVIEW_ENV.on(vec![s.environment_arn()]),
            PREVIEW_BUNDLE.on(s
                .buckets
                .iter()
                .map(|b| format!("arn:aws:s3:::{b}/{}/*", s.application))
                .collect()),
        ],
    })
}

/// What the environment's instance profile needs besides EB's own instance policies: reading
/// the secrets and parameters the environment declares (EB resolves
/// `aws:elasticbeanstalk:application:environmentsecrets` on the instances). Attach it to
/// `role`; on the ECS platform, also to the task execution role when the Dockerrun file names
/// one.
#[derive(Debug, Clone, Serialize)]
pub struct InstanceProfilePolicy {
    /// The instance profile's role, from the environment's configuration (else the default).
    pub role: String,
    pub policy: Policy,
}

/// `iam-policy --instance-profile`.
pub fn instance_profile_policy(
    config: &Config,
    req: &PolicyRequest<'_>,
) -> Result<InstanceProfilePolicy> {
    let s = Scope::new(config, req)?;
    let (secrets, parameters) = (s.declared_secrets(), s.declared_parameters());
    if secrets.is_empty() && parameters.is_empty() {
        bail!(
            "environment {:?} declares no secrets ([environments.{}.secrets] in {}): its instance profile needs nothing more than Elastic Beanstalk's own instance policies",
            s.environment,
            s.environment,
            config.path.display()
        );
    }
    let mut statement = Vec::new();
    if !secrets.is_empty() {
        statement.push(INSTANCE_SECRETS.on(secrets));
    }
    if !parameters.is_empty() {
        statement.push(INSTANCE_PARAMETERS.on(parameters));
    }
    Ok(InstanceProfilePolicy {
        role: req
            .instance_role
            .unwrap_or(DEFAULT_INSTANCE_ROLE)
            .to_string(),
        policy: Policy {
            version: POLICY_VERSION,
            statement,
        },
    })
}

/// The alternative that always works: AWS's managed Elastic Beanstalk policy attached to the
/// role, plus this policy's ECR and bundle statements (the managed policy covers neither).
#[derive(Debug, Clone, Serialize)]
pub struct ManagedAlternative {
    /// Attach these managed policies to the role.
    pub managed_policy_arns: Vec<&'static str>,
    /// And this inline policy.
    pub inline_policy: Policy,
    /// The trade-off, in one paragraph.
    pub trade_off: &'static str,
}

pub const MANAGED_TRADE_OFF: &str = "AdministratorAccess-AWSElasticBeanstalk lets the role do anything Elastic Beanstalk can do in the account: create, change and terminate every environment of every application, pass any role to EC2, and update any stack, Auto Scaling group and load balancer EB made. It keeps working when AWS changes what an update needs, which a hand-scoped policy may not; but a staging role that holds it can change production. Prefer the scoped policy, and keep the managed one for an account that runs nothing else, or as a first step while the scoped one is tried.";

/// `iam-policy --managed`.
pub fn managed_alternative(config: &Config, req: &PolicyRequest<'_>) -> Result<ManagedAlternative> {
    let scoped = deploy_policy(config, req)?;
    let keep = [
        "BundleObjects",
        DEPLOY_JOURNAL.sid,
        DEPLOY_JOURNALS_READ.sid,
        "EcrLogin",
        "EcrRead",
        "EcrPush",
        "EcrCreateRepository",
        SECRET_REFS.sid,
        PARAMETER_REFS.sid,
        SECRETS_WRITE.sid,
    ];
    Ok(ManagedAlternative {
        managed_policy_arns: vec![EB_MANAGED_POLICY],
        inline_policy: Policy {
            version: POLICY_VERSION,
            statement: scoped
                .statement
                .into_iter()
                .filter(|s| keep.contains(&s.sid.as_str()))
                .collect(),
        },
        trade_off: MANAGED_TRADE_OFF,
    })
}

/// `iam-policy --explain`: each statement, what needs it and AWS's page that says so.
pub fn explain(policy: &Policy) -> String {
    let mut out = String::new();
    for s in &policy.statement {
        out.push_str(&format!(
            "{} ({} action{})\n",
            s.sid,
            s.action.len(),
            if s.action.len() == 1 { "" } else { "s" }
        ));
        out.push_str(&format!("  scope:  {}\n", s.why));
        for n in &s.needed_by {
            out.push_str(&format!("  needed: {n}\n"));
        }
        out.push_str(&format!("  source: {}\n", s.doc));
    }
    out
}

/// The environment's id and roles, read from AWS when it can be reached.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvironmentFacts {
    pub environment_id: Option<String>,
    pub instance_role: Option<String>,
    /// The environment's launch template ids (`DescribeEnvironmentResources`).
    pub launch_templates: Vec<String>,
    pub service_role: Option<String>,
}

/// Looks up the environment id (`DescribeEnvironments`) and its roles (`DescribeConfigurationSettings`:
/// the instance profile is usually named after its role; the service role as EB stores it).
pub async fn lookup(eb: &crate::eb::Eb, env: &AwsEnvironment) -> Result<EnvironmentFacts> {
    let found = eb
        .environment(&env.application, &env.eb_environment)
        .await
        .with_context(|| format!("cannot describe the environment {}", env.eb_environment))?;
    let Some(id) = found.and_then(|e| e.environment_id().map(str::to_string)) else {
        bail!(
            "no environment {} in application {} (region {})",
            env.eb_environment,
            env.application,
            env.region
        );
    };
    let mut facts = EnvironmentFacts {
        environment_id: Some(id),
        ..Default::default()
    };
    match launch_templates(eb, &env.eb_environment).await {
        Ok(ids) => facts.launch_templates = ids,
        Err(e) => tracing::warn!(
            "{e:#}: launching instances is scoped by the `{EB_ENVIRONMENT_TAG}` tag of the launch template instead of its id"
        ),
    }
    if let Ok(configuration) = eb
        .configuration(&env.application, &env.eb_environment)
        .await
    {
        // `arn:aws:iam::1:instance-profile/name` or a bare name.
        let role = |ns: &str, name: &str| {
            configuration
                .value(ns, name)
                .filter(|v| !v.is_empty())
                .map(|v| v.rsplit('/').next().unwrap_or(v).to_string())
        };
        facts.instance_role = role("aws:autoscaling:launchconfiguration", "IamInstanceProfile");
        facts.service_role = role("aws:elasticbeanstalk:environment", "ServiceRole");
    }
    Ok(facts)
}

/// The ids of the launch templates EB made for `environment` (`DescribeEnvironmentResources`).
pub async fn launch_templates(eb: &crate::eb::Eb, environment: &str) -> Result<Vec<String>> {
    let out = eb
        .call("DescribeEnvironmentResources", environment, |c| {
            c.describe_environment_resources()
                .environment_name(environment)
                .send()
        })
        .await
        .with_context(|| format!("cannot list the resources of the environment {environment}"))?;
    let mut ids: Vec<String> = out
        .environment_resources()
        .map(|r| {
            r.launch_templates()
                .iter()
                .filter_map(|t| t.id().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids.dedup();
    Ok(ids)
}

/// [`lookup`] for `iam-policy`: asks AWS once, briefly; when AWS cannot be reached (no
/// credentials, no network, no such environment yet), says so and what the policy falls back to.
pub async fn lookup_or_explain(config: &Config, environment: &str) -> Result<EnvironmentFacts> {
    let env = AwsEnvironment::resolve(config, environment, "iam-policy")?;
    let session = crate::ops::Session::from_aws(
        crate::aws::Aws::load(&config.region).await,
        crate::eb::Pacing {
            max_retries: 1,
            ..Default::default()
        },
    );
    let asked = tokio::time::timeout(
        std::time::Duration::from_secs(15),
        lookup(&session.eb, &env),
    );
    let reason = match asked.await {
        Ok(Ok(facts)) => {
            let templates = if facts.launch_templates.is_empty() {
                format!(
                    "; it lists no launch template, so launching is scoped by the template's `{EB_ENVIRONMENT_TAG}` tag"
                )
            } else {
                format!(
                    ", and instances launch only from its launch template {}",
                    facts.launch_templates.join(", ")
                )
            };
            tracing::info!(
                "environment {} is {}: its stack, Auto Scaling group and state are named exactly{templates}",
                env.eb_environment,
                facts.environment_id.as_deref().unwrap_or("?")
            );
            return Ok(facts);
        }
        Ok(Err(e)) => format!("{e:#}"),
        Err(_) => "no answer from AWS in 15 s".to_string(),
    };
    tracing::warn!(
        "could not look up the environment id of {} ({reason}): its stack, Auto Scaling group, launch template and target groups are scoped by the `{EB_ENVIRONMENT_TAG}` tag instead; pass --environment-id e-… for exact names",
        env.eb_environment
    );
    Ok(EnvironmentFacts::default())
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

/// The statements of `policy` by id (tests take one out at a time).
pub fn by_sid(policy: &Policy) -> BTreeMap<&str, &Statement> {
    policy
        .statement
        .iter()
        .map(|s| (s.sid.as_str(), s))
        .collect()
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

    fn req<'a>(environment: &'a str, account: Option<&'a str>) -> PolicyRequest<'a> {
        PolicyRequest {
            environment,
            account,
            ..Default::default()
        }
    }

    #[test]
    fn staging_policy_snapshot() {
        let policy = deploy_policy(&antenna(), &req("staging", Some("123456789012"))).unwrap();
        insta::assert_snapshot!(serde_json::to_string_pretty(&policy).unwrap());
    }

    #[test]
    fn instances_launch_only_from_the_environments_launch_template() {
        let ids = vec!["lt-0abc123".to_string()];
        let policy = deploy_policy(
            &antenna(),
            &PolicyRequest {
                environment_id: Some("e-abc123"),
                launch_templates: &ids,
                ..req("staging", Some("123456789012"))
            },
        )
        .unwrap();
        let sids = by_sid(&policy);
        let launch = sids["LaunchFromTemplate"];
        assert_eq!(launch.action, vec!["ec2:CreateTags", "ec2:RunInstances"]);
        assert_eq!(launch.resource, vec!["*"]);
        assert_eq!(
            launch.condition.clone().unwrap(),
            json!({"ArnEquals": {"ec2:LaunchTemplate": ["arn:aws:ec2:us-west-2:123456789012:launch-template/lt-0abc123"]}})
        );
        assert!(!sids.contains_key("LaunchFromTemplateResources"));
        assert!(explain(&policy).contains("the environment's own launch template"));

        // Unknown id: the template by EB's tag; the launch's other resources only from a
        // template, the template resource itself left to the tagged statement.
        let policy = deploy_policy(&antenna(), &req("staging", Some("123456789012"))).unwrap();
        let sids = by_sid(&policy);
        let template = sids["LaunchFromTemplate"];
        assert_eq!(template.action, vec!["ec2:RunInstances"]);
        assert_eq!(
            template.resource,
            vec!["arn:aws:ec2:us-west-2:123456789012:launch-template/*"]
        );
        assert_eq!(
            template.condition.clone().unwrap(),
            json!({"StringEquals": {"aws:ResourceTag/elasticbeanstalk:environment-name": "antenna-staging"}})
        );
        let others = sids["LaunchFromTemplateResources"];
        assert!(others
            .resource
            .iter()
            .all(|r| !r.contains("launch-template")));
        assert!(others
            .resource
            .contains(&"arn:aws:ec2:us-west-2:*:instance/*".to_string()));
        assert!(others
            .resource
            .contains(&"arn:aws:ec2:us-west-2::image/*".to_string()));
        assert_eq!(
            others.condition.clone().unwrap(),
            json!({"ArnLike": {"ec2:LaunchTemplate": "arn:aws:ec2:us-west-2:123456789012:launch-template/*"}})
        );
        assert!(explain(&policy).contains("by its EB tag"));
    }

    #[test]
    fn with_the_environment_id_the_stack_and_state_are_named_exactly() {
        let policy = deploy_policy(
            &antenna(),
            &PolicyRequest {
                environment_id: Some("e-abc123"),
                ..req("staging", Some("123456789012"))
            },
        )
        .unwrap();
        let sids = by_sid(&policy);
        let stack = sids["EnvironmentStack"];
        assert_eq!(
            stack.resource,
            vec!["arn:aws:cloudformation:us-west-2:123456789012:stack/awseb-e-abc123-stack/*"]
        );
        assert!(stack.condition.is_none());
        assert_eq!(
            sids["EnvironmentAutoScaling"].resource,
            vec!["arn:aws:autoscaling:us-west-2:123456789012:autoScalingGroup:*:autoScalingGroupName/awseb-e-abc123-AWSEBAutoScalingGroup-*"]
        );
        assert_eq!(
            sids["EnvironmentState"].resource[0],
            "arn:aws:s3:::elasticbeanstalk-us-west-2-123456789012/resources/environments/e-abc123/*"
        );
        // Without the id, the stack is scoped by EB's environment tag.
        let policy = deploy_policy(&antenna(), &req("staging", Some("123456789012"))).unwrap();
        let stack = by_sid(&policy)["EnvironmentStack"].clone();
        assert_eq!(
            stack.condition.unwrap(),
            json!({"StringEquals": {"aws:ResourceTag/elasticbeanstalk:environment-name": "antenna-staging"}})
        );
        let err = deploy_policy(
            &antenna(),
            &PolicyRequest {
                environment_id: Some("antenna-staging"),
                ..req("staging", Some("123456789012"))
            },
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("is not of the form e-abc123"), "{err}");
    }

    #[test]
    fn nothing_in_the_staging_policy_reaches_production() {
        let text = serde_json::to_string(
            &deploy_policy(&antenna(), &req("staging", Some("123456789012"))).unwrap(),
        )
        .unwrap();
        assert!(!text.contains("antenna-production"), "{text}");
        assert!(
            text.contains("environment/antenna/antenna-staging"),
            "{text}"
        );
        // Bundles only under the application's prefix, never the whole bucket.
        assert!(
            !text.contains("elasticbeanstalk-us-west-2-123456789012/*\""),
            "{text}"
        );
        assert!(
            text.contains("elasticbeanstalk-us-west-2-123456789012/antenna/*"),
            "{text}"
        );
    }

    #[test]
    fn every_statement_says_who_needs_it_and_where_aws_says_so() {
        let policy = deploy_policy(&antenna(), &req("staging", Some("123456789012"))).unwrap();
        for s in &policy.statement {
            assert!(!s.needed_by.is_empty(), "{} has no justification", s.sid);
            assert!(
                s.doc.starts_with("https://docs.aws.amazon.com/"),
                "{}",
                s.sid
            );
            assert!(!s.why.is_empty(), "{}", s.sid);
        }
        let text = explain(&policy);
        assert!(text.contains("EnvironmentStack (7 actions)"), "{text}");
        assert!(
            text.contains("needed: deploy: deploy (a bundle whose option_settings differ"),
            "{text}"
        );
        // Granted but used by no command: gone.
        let json = serde_json::to_string(&policy).unwrap();
        // cleanup deletes versions (and, through EB, their bundles).
        let versions = policy
            .statement
            .iter()
            .find(|s| s.sid == "ApplicationVersions")
            .unwrap();
        assert!(versions
            .action
            .contains(&"elasticbeanstalk:DeleteApplicationVersion".to_string()));
        assert!(versions.needed_by.iter().any(|n| n.starts_with("cleanup:")));
        assert!(!json.contains("UpdateApplicationVersion"), "{json}");
        assert!(json.contains("ecr:CreateRepository"), "{json}");
        assert!(json.contains("iam:PassRole"), "{json}");
        assert!(
            json.contains("elasticloadbalancing:ModifyTargetGroup"),
            "{json}"
        );
    }

    #[test]
    fn declared_secrets_are_read_by_name_and_written_only_under_the_environment() {
        use crate::envprops::SecretRef;
        let mut c = antenna();
        let secret = |s: &str, key: Option<&str>| SecretRef {
            secret: Some(s.into()),
            key: key.map(str::to_string),
            parameter: None,
        };
        c.environments.get_mut("staging").unwrap().secrets = BTreeMap::from([
            (
                "DJANGO_SECRET_KEY".to_string(),
                secret("antenna/staging/DJANGO_SECRET_KEY", None),
            ),
            (
                "DATABASE_URL".to_string(),
                secret(
                    "arn:aws:secretsmanager:us-west-2:123456789012:secret:antenna-db-AbCdEf",
                    Some("url"),
                ),
            ),
            (
                "SENTRY_DSN".to_string(),
                SecretRef {
                    secret: None,
                    key: None,
                    parameter: Some("/antenna/staging/sentry-dsn".into()),
                },
            ),
        ]);
        let policy = deploy_policy(&c, &req("staging", Some("123456789012"))).unwrap();
        let sids = by_sid(&policy);
        assert_eq!(
            sids["DeclaredSecrets"].resource,
            vec![
                "arn:aws:secretsmanager:us-west-2:123456789012:secret:antenna-db-AbCdEf",
                "arn:aws:secretsmanager:us-west-2:123456789012:secret:antenna/staging/DJANGO_SECRET_KEY-??????",
            ]
        );
        assert_eq!(
            sids["DeclaredSecrets"].action,
            vec!["secretsmanager:DescribeSecret"]
        );
        assert_eq!(
            sids["DeclaredParameters"].resource,
            vec!["arn:aws:ssm:us-west-2:123456789012:parameter/antenna/staging/sentry-dsn"]
        );
        assert_eq!(
            sids["EnvironmentSecretsWrite"].resource,
            vec!["arn:aws:secretsmanager:us-west-2:123456789012:secret:antenna/staging/*"]
        );
        // No statement reads a secret's value: only the instances do.
        let text = serde_json::to_string(&policy).unwrap();
        assert!(!text.contains("GetSecretValue"), "{text}");

        let instance = instance_profile_policy(&c, &req("staging", Some("123456789012"))).unwrap();
        assert_eq!(instance.role, DEFAULT_INSTANCE_ROLE);
        assert_eq!(
            serde_json::to_value(&instance.policy).unwrap(),
            json!({
                "Version": "2012-10-17",
                "Statement": [
                    {"Sid": "ReadEnvironmentSecrets", "Effect": "Allow", "Action": ["secretsmanager:GetSecretValue"], "Resource": [
                        "arn:aws:secretsmanager:us-west-2:123456789012:secret:antenna-db-AbCdEf",
                        "arn:aws:secretsmanager:us-west-2:123456789012:secret:antenna/staging/DJANGO_SECRET_KEY-??????"
                    ]},
                    {"Sid": "ReadEnvironmentParameters", "Effect": "Allow", "Action": ["ssm:GetParameter"], "Resource": "arn:aws:ssm:us-west-2:123456789012:parameter/antenna/staging/sentry-dsn"}
                ]
            })
        );
        assert!(explain(&instance.policy).contains("kms:Decrypt"));
        let with_role = PolicyRequest {
            instance_role: Some("antenna-ec2"),
            ..req("staging", Some("123456789012"))
        };
        assert_eq!(
            instance_profile_policy(&c, &with_role).unwrap().role,
            "antenna-ec2"
        );

        // Production declares none: nothing to add, and its write statement stays its own.
        let err = instance_profile_policy(&c, &req("production", Some("123456789012")))
            .unwrap_err()
            .to_string();
        assert!(err.contains("declares no secrets"), "{err}");
        let production = deploy_policy(&c, &req("production", Some("123456789012"))).unwrap();
        let sids = by_sid(&production);
        assert!(!sids.contains_key("DeclaredSecrets"));
        assert_eq!(
            sids["EnvironmentSecretsWrite"].resource,
            vec!["arn:aws:secretsmanager:us-west-2:123456789012:secret:antenna/production/*"]
        );
    }

    #[test]
    fn configured_bucket_replaces_the_storage_location() {
        let mut c = antenna();
        c.environments.get_mut("production").unwrap().bucket = Some("antenna-bundles".into());
        let policy = deploy_policy(&c, &req("production", Some("123456789012"))).unwrap();
        let text = serde_json::to_string(&policy).unwrap();
        assert!(!text.contains("CreateStorageLocation"), "{text}");
        assert!(
            text.contains("arn:aws:s3:::antenna-bundles/antenna/*"),
            "{text}"
        );
        assert!(
            text.contains("environment/antenna/antenna-production"),
            "{text}"
        );
        assert!(!text.contains("antenna-staging"), "{text}");
    }

    #[test]
    fn errors_say_what_to_do() {
        let c = antenna();
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
        assert!(err.contains("runs on the local Docker Engine"), "{err}");
        assert!(err.contains("`iam-policy`"), "{err}");
        let err = deploy_policy(&c, &req("qa", Some("123456789012")))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("unknown environment \"qa\""), "{err}");
    }

    #[test]
    fn managed_alternative_keeps_only_what_the_managed_policy_lacks() {
        let m = managed_alternative(&antenna(), &req("staging", Some("123456789012"))).unwrap();
        assert_eq!(m.managed_policy_arns, vec![EB_MANAGED_POLICY]);
        let sids: Vec<&str> = m
            .inline_policy
            .statement
            .iter()
            .map(|s| s.sid.as_str())
            .collect();
        assert_eq!(
            sids,
            vec![
                "BundleObjects",
                "DeployJournal",
                "DeployJournalsRead",
                "EcrLogin",
                "EcrRead",
                "EcrPush",
                "EcrCreateRepository",
                "EnvironmentSecretsWrite"
            ]
        );
        assert!(m.trade_off.contains("can change production"));
    }

    #[test]
    fn preview_policy_only_reads() {
        let p = preview_policy(&antenna(), &req("staging", Some("123456789012"))).unwrap();
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            json!({
                "Version": "2012-10-17",
                "Statement": [
                    {"Sid": "ElasticBeanstalkRead", "Effect": "Allow", "Action": ["elasticbeanstalk:DescribeApplicationVersions", "elasticbeanstalk:DescribeEnvironments", "elasticbeanstalk:DescribeEvents"], "Resource": "*"},
                    {"Sid": "EnvironmentRead", "Effect": "Allow", "Action": ["elasticbeanstalk:DescribeEnvironmentHealth", "elasticbeanstalk:DescribeInstancesHealth", "elasticbeanstalk:RequestEnvironmentInfo", "elasticbeanstalk:RetrieveEnvironmentInfo"], "Resource": "arn:aws:elasticbeanstalk:us-west-2:123456789012:environment/antenna/antenna-staging"},
                    {"Sid": "BundleRead", "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::elasticbeanstalk-us-west-2-123456789012/antenna/*"}
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
