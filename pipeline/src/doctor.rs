//! `doctor`: the read-only preflight of a deploy. Each prerequisite the account and the
//! environment must meet is one [`Item`], ✓ or ✗, and every ✗ carries the exact fix (a
//! command to copy, or what `doctor --fix` does). `deploy` runs the same checks before it
//! uploads anything ([`preflight`]).
//!
//! Read-only by default: it describes, never changes, and reads environment properties by
//! name only (their values never reach the report). With `fix`, it creates only what is safe
//! to create: the ECR repositories (tag immutability on, scan on push), the EB application and
//! EB's S3 storage location.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;

use crate::config::Config;
use crate::image::{self, ecr::EcrError};
use crate::ops::{AwsEnvironment, Session};
use crate::output::Table;

/// The platform branch the Dockerrun v2 file needs.
pub const ECS_PLATFORM: &str = "ECS running on 64bit Amazon Linux 2";
const HEALTH_NAMESPACE: &str = "aws:elasticbeanstalk:healthreporting:system";
const ENV_NAMESPACE: &str = "aws:elasticbeanstalk:application:environment";
const SECRETS_NAMESPACE: &str = "aws:elasticbeanstalk:application:environmentsecrets";
const PROCESS_NAMESPACE: &str = "aws:elasticbeanstalk:environment:process:default";

/// What a prerequisite is about (stable names for `--json` and tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Subject {
    Credentials,
    EcrRepository,
    ExternalImage,
    StorageLocation,
    Application,
    Environment,
    Platform,
    EnhancedHealth,
    EnvironmentProperties,
    CheckCredentials,
    HealthCheckPath,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub subject: Subject,
    /// What was checked (`ECR repository antenna-backend`).
    pub what: String,
    pub ok: bool,
    /// What was found.
    pub detail: String,
    /// For a ✗: the exact fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// True when `--fix` created it during this run.
    pub fixed: bool,
    /// Advisory items are shown and fail `doctor`, but do not stop a deploy (the health check
    /// path probes the version running now, which the deploy may be about to replace).
    pub advisory: bool,
}

impl Item {
    fn ok(subject: Subject, what: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            subject,
            what: what.into(),
            ok: true,
            detail: detail.into(),
            fix: None,
            fixed: false,
            advisory: false,
        }
    }

    fn fail(
        subject: Subject,
        what: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self {
            subject,
            what: what.into(),
            ok: false,
            detail: detail.into(),
            fix: Some(fix.into()),
            fixed: false,
            advisory: false,
        }
    }

    fn advisory(mut self) -> Self {
        self.advisory = true;
        self
    }
}

/// How AWS answered one of doctor's calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Answer {
    /// Answered, found or not found: the credentials hold the permission.
    Allowed,
    /// IAM refused it.
    Denied,
    /// Failed otherwise (network, throttling): says nothing about the permission.
    Unknown,
}

/// The permission one of doctor's calls exercised, and the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Probe {
    /// `service:Action`, as in an IAM policy.
    pub action: &'static str,
    pub answer: Answer,
}

/// The deploy role's permissions (`iam-policy --env NAME`) against what doctor's calls could
/// tell: doctor only reads, so most write permissions cannot be verified without making the
/// change. Actions as `service:Action`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Permissions {
    /// Answered: these credentials hold them.
    pub verified: Vec<String>,
    /// Refused.
    pub denied: Vec<String>,
    /// Not exercised by any read of doctor, by statement (`EnvironmentStack: cloudformation:UpdateStack`).
    pub unverified: Vec<String>,
    /// Why the policy could not be compared at all, when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Permissions {
    /// `probes` against the deploy role's `policy`.
    pub fn compare(policy: &crate::iam::Policy, probes: &[Probe]) -> Self {
        let answer = |action: &str| {
            let answers: Vec<Answer> = probes
                .iter()
                .filter(|p| p.action.eq_ignore_ascii_case(action))
                .map(|p| p.answer)
                .collect();
            if answers.contains(&Answer::Denied) {
                Some(Answer::Denied)
            } else if answers.contains(&Answer::Allowed) {
                Some(Answer::Allowed)
            } else {
                None
            }
        };
        let mut out = Self::default();
        for s in &policy.statement {
            for action in &s.action {
                match answer(action) {
                    Some(Answer::Allowed) => out.verified.push(action.clone()),
                    Some(Answer::Denied) => out.denied.push(action.clone()),
                    _ => out.unverified.push(format!("{}: {action}", s.sid)),
                }
            }
        }
        out.verified.sort();
        out.verified.dedup();
        out.denied.sort();
        out.denied.dedup();
        out
    }

    fn to_text(&self, environment: &str) -> String {
        let mut out = format!(
            "\npermissions of the deploy role (`cargo xtask iam-policy --env {environment} --explain`):\n"
        );
        if let Some(note) = &self.note {
            out.push_str(&format!("  not compared: {note}\n"));
            return out;
        }
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_string()
            } else {
                v.join(", ")
            }
        };
        out.push_str(&format!(
            "  verified by the reads above ({}): {}\n",
            self.verified.len(),
            list(&self.verified)
        ));
        if !self.denied.is_empty() {
            out.push_str(&format!(
                "  refused ({}): {}\n",
                self.denied.len(),
                list(&self.denied)
            ));
        }
        out.push_str(&format!(
            "  not verified ({}; doctor only reads, and these are first used by a write of push, deploy, env apply, secrets or cleanup):\n",
            self.unverified.len()
        ));
        for u in &self.unverified {
            out.push_str(&format!("    {u}\n"));
        }
        out
    }
}

/// Everything `doctor` found for one environment.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    pub environment: String,
    pub eb_environment: String,
    pub application: String,
    pub region: String,
    pub items: Vec<Item>,
    /// What `--fix` created, one line each.
    pub created: Vec<String>,
    /// Every call doctor made, by the permission it needs, and how AWS answered.
    pub probes: Vec<Probe>,
    /// The deploy role's permissions that these calls verified, and those they could not.
    pub permissions: Permissions,
    /// The environment as EB described it (a deploy reuses it instead of asking again).
    #[serde(skip)]
    pub described: Option<aws_sdk_elasticbeanstalk::types::EnvironmentDescription>,
}

impl DoctorReport {
    /// True when every item is ✓.
    pub fn ok(&self) -> bool {
        self.items.iter().all(|i| i.ok)
    }

    /// True when nothing that stops a deploy is ✗.
    pub fn deployable(&self) -> bool {
        self.items.iter().all(|i| i.ok || i.advisory)
    }

    /// The ✗ items.
    pub fn failures(&self) -> impl Iterator<Item = &Item> {
        self.items.iter().filter(|i| !i.ok)
    }

    /// The human report: a ✓/✗ table, then each ✗ with its fix, then the permissions.
    pub fn to_text(&self) -> String {
        let mut out = self.checklist();
        out.push_str(&self.permissions.to_text(&self.environment));
        out
    }

    /// The ✓/✗ table and each ✗ with its fix (what a deploy's preflight shows).
    pub fn checklist(&self) -> String {
        let mut t = Table::new(["", "prerequisite", "found"]);
        for i in &self.items {
            let mark = if i.ok { "✓" } else { "✗" };
            let what = if i.fixed {
                format!("{} (created)", i.what)
            } else {
                i.what.clone()
            };
            t.row([mark.to_string(), what, i.detail.clone()]);
        }
        let mut out = format!(
            "doctor: {} (EB environment {} of application {}, {})\n{}",
            self.environment,
            self.eb_environment,
            self.application,
            self.region,
            t.render()
        );
        if !self.created.is_empty() {
            out.push_str("\ncreated:\n");
            for c in &self.created {
                out.push_str(&format!("  + {c}\n"));
            }
        }
        let failures: Vec<_> = self.failures().collect();
        if failures.is_empty() {
            out.push_str("\nevery prerequisite of a deploy is in place\n");
        } else {
            out.push_str(&format!("\n{} to fix:\n", failures.len()));
            for i in failures {
                out.push_str(&format!(
                    "✗ {}: {}\n    fix: {}\n",
                    i.what,
                    i.detail,
                    i.fix.as_deref().unwrap_or("")
                ));
            }
        }
        out
    }

    /// Records how AWS answered a call needing `action`.
    fn probe(&mut self, action: &'static str, answer: Answer) {
        self.probes.push(Probe { action, answer });
    }

    /// Records an EB call's answer: `Ok`, or a service error other than a denial, is an answer.
    fn probe_eb<T>(&mut self, action: &'static str, result: &Result<T, crate::eb::EbError>) {
        let answer = match result {
            Ok(_) => Answer::Allowed,
            Err(e) if crate::aws::is_denial(e.code()) => Answer::Denied,
            Err(e) if e.code().is_some() => Answer::Allowed,
            Err(_) => Answer::Unknown,
        };
        self.probe(action, answer);
    }

    /// Records an ECR call's answer: a missing repository is an answer too.
    fn probe_ecr<T>(&mut self, action: &'static str, result: &Result<T, EcrError>) {
        let answer = match result {
            Ok(_) | Err(EcrError::NoRepository { .. }) => Answer::Allowed,
            Err(EcrError::Denied { .. }) => Answer::Denied,
            Err(_) => Answer::Unknown,
        };
        self.probe(action, answer);
    }
}

/// Where the verify checks' variables are read from (the process environment by default).
pub type Vars = std::sync::Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// What a run checks: everything for `doctor`; for a deploy's preflight, what its stages need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scope {
    /// The ECR repositories the template refers to and the external images' tags.
    pub images: bool,
    /// The S3 location the upload writes to.
    pub storage: bool,
    /// The variables the verify checks read where the pipeline runs.
    pub check_credentials: bool,
    /// The deploy sends the properties deploy.toml declares with the version (`--apply-env`).
    pub applies_env: bool,
    /// A deploy's preflight: an environment EB describes proves its application, so
    /// `DescribeApplications` is asked only when the environment is missing (one EB call less
    /// before the deploy).
    pub lean: bool,
}

impl Default for Scope {
    fn default() -> Self {
        Self {
            images: true,
            storage: true,
            check_credentials: true,
            applies_env: false,
            lean: false,
        }
    }
}

/// What `doctor` should do.
#[derive(Clone)]
pub struct DoctorRequest<'a> {
    pub config: &'a Config,
    pub env: AwsEnvironment,
    /// Create what is safe to create.
    pub fix: bool,
    /// Values of the verify checks' variables (`CELERY_FLOWER_PASSWORD`...), by name; only
    /// whether each is set reaches the report.
    pub vars: Vars,
    /// Probe the health check path over HTTP.
    pub probe_health: bool,
    pub scope: Scope,
}

impl<'a> DoctorRequest<'a> {
    /// A read-only run over the process environment.
    pub fn new(config: &'a Config, env: AwsEnvironment) -> Self {
        Self {
            config,
            env,
            fix: false,
            vars: std::sync::Arc::new(|k| std::env::var(k).ok()),
            probe_health: true,
            scope: Scope::default(),
        }
    }

    /// The preflight of a deploy: read-only, `scope` only, and without the health check
    /// path's HTTP probe (advisory, about the version the deploy replaces, and it could take
    /// seconds: the deploy's verify stage checks the new version instead).
    pub fn preflight(config: &'a Config, env: AwsEnvironment, scope: Scope) -> Self {
        Self {
            probe_health: false,
            scope: Scope {
                lean: true,
                ..scope
            },
            ..Self::new(config, env)
        }
    }

    pub fn with_fix(mut self, fix: bool) -> Self {
        self.fix = fix;
        self
    }

    /// Reads the checks' variables from `vars` instead of the process environment.
    pub fn with_vars(
        mut self,
        vars: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.vars = std::sync::Arc::new(vars);
        self
    }
}

impl DoctorReport {
    /// An empty report about `env`.
    fn about(env: &AwsEnvironment) -> Self {
        Self {
            environment: env.name.clone(),
            eb_environment: env.eb_environment.clone(),
            application: env.application.clone(),
            region: env.region.clone(),
            items: Vec::new(),
            created: Vec::new(),
            probes: Vec::new(),
            permissions: Permissions::default(),
            described: None,
        }
    }

    /// Appends what `part` found.
    fn absorb(&mut self, part: DoctorReport) {
        self.items.extend(part.items);
        self.created.extend(part.created);
        self.probes.extend(part.probes);
        if part.described.is_some() {
            self.described = part.described;
        }
    }

    /// Why a deploy must not go on, `None` when nothing that stops a deploy is ✗: each such
    /// ✗ with its fix.
    pub fn refusal(&self) -> Option<String> {
        if self.deployable() {
            return None;
        }
        let mut text = format!(
            "the account is not ready for a deploy to {}: nothing was uploaded; `cargo xtask doctor --env {}` lists the same (`--skip-preflight` deploys anyway):",
            self.environment, self.environment
        );
        for i in self.failures().filter(|i| !i.advisory) {
            text.push_str(&format!(
                "\n  ✗ {}: {}\n      fix: {}",
                i.what,
                i.detail,
                i.fix.as_deref().unwrap_or("")
            ));
        }
        Some(text)
    }
}

/// Runs every check of `req.scope` against `session`. The independent reads go out at once:
/// the account (then the storage location named after it), the ECR repositories, and EB.
pub async fn doctor(session: &Session, req: &DoctorRequest<'_>) -> Result<DoctorReport> {
    let env = &req.env;
    let mut report = DoctorReport::about(env);
    let (mut who, mut store, mut repos, mut eb) = (
        DoctorReport::about(env),
        DoctorReport::about(env),
        DoctorReport::about(env),
        DoctorReport::about(env),
    );
    // A deploy's preflight asks STS first: without credentials every other read fails for
    // that one reason (and would only be retried).
    let mut known = None;
    if req.scope.lean {
        let account = credentials(session, req.config, &mut who).await;
        if who.items.iter().any(|i| {
            i.subject == Subject::Credentials
                && !i.ok
                && crate::aws::lacks_credentials(&anyhow::anyhow!("{}", i.detail))
        }) {
            report.absorb(who);
            return Ok(report);
        }
        known = Some(account);
    }
    let (account, (), ()) = tokio::join!(
        async {
            let account = match known {
                Some(a) => a,
                None => credentials(session, req.config, &mut who).await,
            };
            if req.scope.storage {
                storage(session, req, account.as_deref(), &mut store).await;
            }
            account
        },
        async {
            if req.scope.images {
                ecr(session, req, &mut repos).await;
            }
        },
        application_and_environment(session, req, &mut eb),
    );
    for part in [who, repos, store, eb] {
        report.absorb(part);
    }
    if req.scope.check_credentials {
        check_credentials(req, &mut report);
    }
    report.permissions = match crate::iam::deploy_policy(
        req.config,
        &crate::iam::PolicyRequest {
            environment: &env.name,
            account: account.as_deref(),
            ..Default::default()
        },
    ) {
        Ok(policy) => Permissions::compare(&policy, &report.probes),
        Err(e) => Permissions {
            note: Some(format!("{e:#}")),
            ..Default::default()
        },
    };
    Ok(report)
}

/// The EB application, then its environment; in a lean run the environment first, and the
/// application only when the environment is missing.
async fn application_and_environment(
    session: &Session,
    req: &DoctorRequest<'_>,
    report: &mut DoctorReport,
) {
    if !req.scope.lean {
        if application(session, req, report).await {
            environment(session, req, report).await;
        }
        return;
    }
    let mut env_part = DoctorReport::about(&req.env);
    if environment(session, req, &mut env_part).await {
        report.items.push(Item::ok(
            Subject::Application,
            format!("EB application {}", req.env.application),
            "exists (it holds the environment)",
        ));
        report.absorb(env_part);
        return;
    }
    let app_ok = application(session, req, report).await;
    if app_ok {
        report.absorb(env_part);
    } else {
        // Without the application, the environment's line says nothing more.
        report.probes.extend(env_part.probes);
    }
}

/// [`doctor`] as `deploy` runs it before uploading: advisory ✗ become warnings; the caller
/// stops on [`DoctorReport::refusal`].
pub async fn preflight(session: &Session, req: &DoctorRequest<'_>) -> Result<DoctorReport> {
    let report = doctor(session, req).await?;
    for i in report.failures().filter(|i| i.advisory) {
        tracing::warn!(
            "doctor: {}: {} (fix: {})",
            i.what,
            i.detail,
            i.fix.as_deref().unwrap_or("")
        );
    }
    Ok(report)
}

fn aws_cli(config: &Config, rest: &str) -> String {
    format!("aws {rest} --region {}", config.region)
}

async fn credentials(
    session: &Session,
    config: &Config,
    report: &mut DoctorReport,
) -> Option<String> {
    let what = "AWS credentials and account";
    match session.aws.sts().get_caller_identity().send().await {
        Ok(who) => {
            let account = who.account().unwrap_or_default().to_string();
            match &config.account {
                Some(want) if *want != account => {
                    report.items.push(Item::fail(
                        Subject::Credentials,
                        what,
                        format!("the credentials are for account {account}, but the configuration names account {want}"),
                        format!("use credentials of account {want} (AWS_PROFILE, or the OIDC role of that account), or correct `account` in {} / DEPLOY_ACCOUNT", config.path.display()),
                    ));
                    None
                }
                _ => {
                    let arn = who.arn().unwrap_or_default();
                    report.items.push(Item::ok(
                        Subject::Credentials,
                        what,
                        format!("account {account} as {arn}"),
                    ));
                    Some(account)
                }
            }
        }
        Err(e) => {
            report.items.push(Item::fail(
                Subject::Credentials,
                what,
                format!("STS GetCallerIdentity failed: {}", crate::aws::sdk_message(&e)),
                "configure credentials (`aws configure`, AWS_PROFILE, or in GitHub Actions the OIDC role of aws-actions/configure-aws-credentials) and the region, then run doctor again",
            ));
            config.account.clone()
        }
    }
}

/// The images the template refers to (`${image.NAME}`).
fn referenced_images(config: &Config) -> BTreeSet<String> {
    let text = std::fs::read_to_string(config.resolve(&config.bundle.template)).unwrap_or_default();
    config
        .images
        .keys()
        .filter(|n| text.contains(&format!("${{image.{n}}}")))
        .cloned()
        .collect()
}

fn create_repository_command(config: &Config, repository: &str) -> String {
    aws_cli(
        config,
        &format!("ecr create-repository --repository-name {repository} --image-tag-mutability IMMUTABLE --image-scanning-configuration scanOnPush=true"),
    )
}

async fn ecr(session: &Session, req: &DoctorRequest<'_>, report: &mut DoctorReport) {
    let config = req.config;
    let used = referenced_images(config);
    for (name, image) in &config.images {
        if !used.contains(name) || image.has_registry_host() {
            continue;
        }
        let repo = &image.repository;
        let what = format!("ECR repository {repo} (image {name})");
        let ecr = &session.ecr;
        let found = image::ecr::ensure_repository(ecr, repo, false, false).await;
        report.probe_ecr("ecr:DescribeRepositories", &found);
        let item = match found {
            Ok(_) => Item::ok(Subject::EcrRepository, what, "exists"),
            Err(EcrError::NoRepository { .. }) if req.fix => {
                let created = image::ecr::ensure_repository(ecr, repo, true, false).await;
                report.probe_ecr("ecr:CreateRepository", &created);
                match created {
                    Ok(_) => {
                        report.created.push(format!(
                            "ECR repository {repo} (tag immutability on, scan on push)"
                        ));
                        let mut item = Item::ok(Subject::EcrRepository, what, "created by --fix");
                        item.fixed = true;
                        item
                    }
                    Err(e) => Item::fail(
                        Subject::EcrRepository,
                        what,
                        e.to_string(),
                        create_repository_command(config, repo),
                    ),
                }
            }
            Err(EcrError::NoRepository { .. }) => Item::fail(
                Subject::EcrRepository,
                what,
                "missing",
                format!(
                    "`cargo xtask doctor --env {} --fix`, or {}",
                    req.env.name,
                    create_repository_command(config, repo)
                ),
            ),
            Err(e) => Item::fail(
                Subject::EcrRepository,
                what,
                e.to_string(),
                "allow ecr:DescribeRepositories to these credentials, then run doctor again",
            ),
        };
        let exists = item.ok;
        report.items.push(item);
        let (true, Some(tag)) = (exists, &image.tag) else {
            continue;
        };
        let what = format!("image {repo}:{tag} (image {name})");
        let found = image::ecr::find_tag(&session.ecr, repo, tag).await;
        report.probe_ecr("ecr:DescribeImages", &found);
        match found {
            Ok(Some(_)) => report
                .items
                .push(Item::ok(Subject::ExternalImage, what, "present")),
            Ok(None) => {
                let host = config
                    .registry_host()
                    .unwrap_or_else(|| format!("ACCOUNT.dkr.ecr.{}.amazonaws.com", config.region));
                report.items.push(Item::fail(
                    Subject::ExternalImage,
                    what,
                    "the tag is not in the repository: EB could not pull it",
                    format!(
                        "mirror it: {} | docker login --username AWS --password-stdin {host} && docker pull SOURCE/{repo}:{tag} && docker tag SOURCE/{repo}:{tag} {host}/{repo}:{tag} && docker push {host}/{repo}:{tag}",
                        aws_cli(config, "ecr get-login-password")
                    ),
                ))
            }
            Err(e) => report.items.push(Item::fail(
                Subject::ExternalImage,
                what,
                e.to_string(),
                "allow ecr:DescribeImages to these credentials, then run doctor again",
            )),
        }
    }
}

async fn storage(
    session: &Session,
    req: &DoctorRequest<'_>,
    account: Option<&str>,
    report: &mut DoctorReport,
) {
    let config = req.config;
    if let Some(bucket) = &req.env.spec.bucket {
        let what = format!("S3 bucket {bucket} (`bucket` of the environment)");
        match bucket_exists(session, req, bucket, report).await {
            Ok(found) => report
                .items
                .push(Item::ok(Subject::StorageLocation, what, found)),
            Err(e) => report.items.push(Item::fail(
                Subject::StorageLocation,
                what,
                format!("not reachable: {e}"),
                format!(
                    "{} (or correct `bucket` / DEPLOY_BUCKET)",
                    aws_cli(config, &format!("s3 mb s3://{bucket}"))
                ),
            )),
        }
        return;
    }
    if req.scope.lean {
        // The upload asks EB for its storage location (CreateStorageLocation), which creates
        // the bucket when it is missing: nothing to check before it.
        return;
    }
    let expected = account.map(|a| format!("elasticbeanstalk-{}-{a}", config.region));
    let what = "EB's S3 storage location";
    if req.fix {
        let created = session
            .eb
            .call("CreateStorageLocation", &req.env.application, |c| {
                c.create_storage_location().send()
            })
            .await;
        report.probe_eb("elasticbeanstalk:CreateStorageLocation", &created);
        match created {
            Ok(out) => {
                // CreateStorageLocation creates the bucket when missing and returns it either way.
                let bucket = out.s3_bucket().unwrap_or_default().to_string();
                let mut item = Item::ok(Subject::StorageLocation, what, format!("bucket {bucket}"));
                item.fixed = true;
                report.created.push(format!("EB storage location {bucket} (CreateStorageLocation)"));
                report.items.push(item);
            }
            Err(e) => report.items.push(Item::fail(
                Subject::StorageLocation,
                what,
                format!("{e}"),
                "allow elasticbeanstalk:CreateStorageLocation, or set `bucket` for the environment in deploy.toml",
            )),
        }
        return;
    }
    let Some(bucket) = expected else {
        report.items.push(Item::fail(
            Subject::StorageLocation,
            what,
            "unknown: the account is not known",
            "fix the credentials first",
        ));
        return;
    };
    match bucket_exists(session, req, &bucket, report).await {
        Ok(found) => {
            let detail = match found {
                "exists" => format!("bucket {bucket}"),
                how => format!("bucket {bucket}: {how}"),
            };
            report.items.push(Item::ok(Subject::StorageLocation, what, detail))
        }
        Err(e) => report.items.push(Item::fail(
            Subject::StorageLocation,
            what,
            format!("bucket {bucket}: {e}"),
            format!(
                "`cargo xtask doctor --env {} --fix` (EB's CreateStorageLocation), or {}, or set `bucket` for the environment in deploy.toml",
                req.env.name,
                aws_cli(config, "elasticbeanstalk create-storage-location")
            ),
        )),
    }
}

/// Whether `bucket` exists and these credentials reach it: `HeadBucket` (which needs
/// `s3:ListBucket`); when that is refused, as it is to the deploy role, which is granted no
/// listing, reading the deploy journal under the application's prefix (`s3:GetObject`) tells
/// a missing bucket (`NoSuchBucket`) from one that is there. `Ok` says what was found.
async fn bucket_exists(
    session: &Session,
    req: &DoctorRequest<'_>,
    bucket: &str,
    report: &mut DoctorReport,
) -> Result<&'static str, String> {
    let head_error = match session.s3.head_bucket().bucket(bucket).send().await {
        Ok(_) => {
            report.probe("s3:ListBucket", Answer::Allowed);
            return Ok("exists");
        }
        Err(e) => e,
    };
    let status = head_error.raw_response().map(|r| r.status().as_u16());
    let answer = match status {
        Some(404) => Answer::Allowed,
        Some(403) => Answer::Denied,
        _ => Answer::Unknown,
    };
    report.probe("s3:ListBucket", answer);
    let head_error = s3_message(&head_error);
    if status != Some(403) {
        return Err(head_error);
    }
    let key = crate::ops::journal::key(&req.env.application, &req.env.eb_environment);
    let read = session
        .s3
        .get_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await;
    let code = read
        .as_ref()
        .err()
        .and_then(|e| aws_sdk_s3::error::ProvideErrorMetadata::code(e));
    match (&read, code) {
        (Ok(_), _) | (Err(_), Some("NoSuchKey")) => {
            report.probe("s3:GetObject", Answer::Allowed);
            Ok("exists (HeadBucket needs s3:ListBucket, which these credentials lack; read under the application's prefix instead)")
        }
        (Err(_), Some("NoSuchBucket")) => {
            report.probe("s3:GetObject", Answer::Allowed);
            Err("does not exist".into())
        }
        (Err(e), code) => {
            let answer = if crate::aws::is_denial(code) {
                Answer::Denied
            } else {
                Answer::Unknown
            };
            report.probe("s3:GetObject", answer);
            Err(format!(
                "{head_error}; reading {key} in it: {}",
                crate::aws::sdk_message(e)
            ))
        }
    }
}

fn s3_message<E>(
    e: &aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> String
where
    E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + 'static,
{
    match e.raw_response().map(|r| r.status().as_u16()) {
        Some(404) => "does not exist".into(),
        Some(403) => "access denied (another account's bucket, or no s3:ListBucket)".into(),
        _ => crate::aws::sdk_message(e),
    }
}

/// The EB application; true when it exists (after `--fix`).
async fn application(
    session: &Session,
    req: &DoctorRequest<'_>,
    report: &mut DoctorReport,
) -> bool {
    let app = &req.env.application;
    let what = format!("EB application {app}");
    let found = session
        .eb
        .call("DescribeApplications", app, |c| {
            c.describe_applications().application_names(app).send()
        })
        .await;
    report.probe_eb("elasticbeanstalk:DescribeApplications", &found);
    match found {
        Ok(out) if !out.applications().is_empty() => {
            report
                .items
                .push(Item::ok(Subject::Application, what, "exists"));
            true
        }
        Ok(_) if req.fix => {
            let created = session
                .eb
                .call("CreateApplication", app, |c| {
                    c.create_application()
                        .application_name(app)
                        .description("Antenna, deployed by cargo xtask deploy")
                        .send()
                })
                .await;
            report.probe_eb("elasticbeanstalk:CreateApplication", &created);
            match created {
                Ok(_) => {
                    report.created.push(format!("EB application {app}"));
                    let mut item = Item::ok(Subject::Application, what, "created by --fix");
                    item.fixed = true;
                    report.items.push(item);
                    true
                }
                Err(e) => {
                    report.items.push(Item::fail(
                        Subject::Application,
                        what,
                        format!("{e}"),
                        create_application_command(req),
                    ));
                    false
                }
            }
        }
        Ok(_) => {
            report.items.push(Item::fail(
                Subject::Application,
                what,
                "missing",
                format!(
                    "`cargo xtask doctor --env {} --fix`, or {}",
                    req.env.name,
                    create_application_command(req)
                ),
            ));
            false
        }
        Err(e) => {
            report.items.push(eb_failure(
                req,
                Subject::Application,
                what,
                &e,
                "allow elasticbeanstalk:DescribeApplications to these credentials",
            ));
            false
        }
    }
}

/// The item of an EB call that failed. In a deploy's preflight, a call EB did not answer
/// (network, 5xx, throttling, after retries) found nothing: the item is advisory, and the
/// deploy's own call reports the failure.
fn eb_failure(
    req: &DoctorRequest<'_>,
    subject: Subject,
    what: impl Into<String>,
    e: &crate::eb::EbError,
    fix: &str,
) -> Item {
    let unanswered = match e {
        crate::eb::EbError::Transport { .. } => true,
        crate::eb::EbError::Service { status, code, .. } => {
            *status >= 500 || code.contains("Throttl") || code == "RequestLimitExceeded"
        }
    };
    let item = Item::fail(subject, what, format!("{e}"), fix);
    if req.scope.lean && unanswered {
        item.advisory()
    } else {
        item
    }
}

fn create_application_command(req: &DoctorRequest<'_>) -> String {
    aws_cli(
        req.config,
        &format!(
            "elasticbeanstalk create-application --application-name {}",
            req.env.application
        ),
    )
}

/// The environment, its platform, enhanced health, its properties and the health check path.
/// True when the environment exists.
async fn environment(
    session: &Session,
    req: &DoctorRequest<'_>,
    report: &mut DoctorReport,
) -> bool {
    let env = &req.env;
    let what = format!("EB environment {}", env.eb_environment);
    let found = session
        .eb
        .environment(&env.application, &env.eb_environment)
        .await;
    report.probe_eb("elasticbeanstalk:DescribeEnvironments", &found);
    let described = match found {
        Ok(described) => described.filter(|e| e.status().map(|s| s.as_str()) != Some("Terminated")),
        Err(e) => {
            report.items.push(eb_failure(
                req,
                Subject::Environment,
                what,
                &e,
                "allow elasticbeanstalk:DescribeEnvironments to these credentials",
            ));
            return false;
        }
    };
    let Some(described) = described else {
        report.items.push(Item::fail(
            Subject::Environment,
            what,
            "missing (doctor does not create environments: they cost money and need choices only you can make)",
            format!(
                "create it on the ECS platform with enhanced health: {} (or the console: Elastic Beanstalk > {} > Create environment > Web server > Platform \"ECS running on 64bit Amazon Linux 2\"); see docs/adopting-antenna.md",
                aws_cli(req.config, &format!(
                    "elasticbeanstalk create-environment --application-name {} --environment-name {} --solution-stack-name \"$(aws elasticbeanstalk list-available-solution-stacks --region {} --query \"SolutionStacks[?contains(@, 'Amazon Linux 2 v') && ends_with(@, 'running ECS')] | [0]\" --output text)\" --option-settings Namespace=aws:elasticbeanstalk:healthreporting:system,OptionName=SystemType,Value=enhanced Namespace=aws:autoscaling:launchconfiguration,OptionName=IamInstanceProfile,Value=aws-elasticbeanstalk-ec2-role",
                    env.application, env.eb_environment, req.config.region
                )),
                env.application
            ),
        ));
        return false;
    };
    report.items.push(Item::ok(
        Subject::Environment,
        what,
        format!(
            "{} ({}), running {}",
            described.status().map(|s| s.as_str()).unwrap_or("?"),
            described.health().map(|s| s.as_str()).unwrap_or("?"),
            described.version_label().unwrap_or("no version")
        ),
    ));
    // A deploy that follows at once (this is its preflight) starts from this description.
    session.eb.note_environment(&described);
    report.described = Some(described.clone());

    let stack = described.solution_stack_name().unwrap_or_default();
    let platform_arn = described.platform_arn().unwrap_or_default();
    let on_ecs = platform_arn.contains(&format!("/platform/{ECS_PLATFORM}/"))
        || (stack.contains("Amazon Linux 2 v") && stack.ends_with("running ECS"));
    let what = "platform".to_string();
    if on_ecs {
        report
            .items
            .push(Item::ok(Subject::Platform, what, stack.to_string()));
    } else {
        report.items.push(Item::fail(
            Subject::Platform,
            what,
            format!("{stack:?}: a Dockerrun v2 (multi-container) bundle needs \"{ECS_PLATFORM}\""),
            format!("EB cannot move an environment to another platform branch: create a new environment on \"{ECS_PLATFORM}\" (see the fix for a missing environment), deploy there, then swap CNAMEs with `aws elasticbeanstalk swap-environment-cnames`"),
        ));
    }

    let settings = session
        .eb
        .configuration(&env.application, &env.eb_environment)
        .await;
    report.probe_eb("elasticbeanstalk:DescribeConfigurationSettings", &settings);
    let configuration = match settings {
        Ok(c) => c,
        Err(e) => {
            report.items.push(eb_failure(
                req,
                Subject::EnhancedHealth,
                "configuration settings",
                &e,
                "allow elasticbeanstalk:DescribeConfigurationSettings to these credentials",
            ));
            return true;
        }
    };
    let option = |ns: &str, name: &str| configuration.value(ns, name);

    let system = option(HEALTH_NAMESPACE, "SystemType").unwrap_or("basic");
    if system == "enhanced" {
        report
            .items
            .push(Item::ok(Subject::EnhancedHealth, "enhanced health", "on"));
    } else {
        report.items.push(Item::fail(
            Subject::EnhancedHealth,
            "enhanced health",
            format!("SystemType is {system:?}: the deploy's health verdict needs enhanced health"),
            aws_cli(req.config, &format!("elasticbeanstalk update-environment --environment-name {} --option-settings Namespace={HEALTH_NAMESPACE},OptionName=SystemType,Value=enhanced", env.eb_environment)),
        ));
    }

    // Properties: set on the environment (plain or as secrets), or set by the bundle's
    // .ebextensions option_settings.
    let ebext = ebextension_options(req.config);
    let present: BTreeSet<&str> = configuration
        .deployed
        .iter()
        .flatten()
        .filter(|o| o.namespace == ENV_NAMESPACE || o.namespace == SECRETS_NAMESPACE)
        .map(|o| o.name.as_str())
        .chain(
            ebext
                .iter()
                .filter(|s| s.namespace == ENV_NAMESPACE)
                .map(|s| s.name.as_str()),
        )
        .collect();
    // A deploy sends the declared properties with the version only with --apply-env (else
    // their difference is the plan's warning): its preflight requires the `required` list,
    // and counts the declared ones as set when they go out with the version.
    let declared: Vec<String> = if req.scope.applies_env {
        env.spec
            .properties
            .keys()
            .chain(env.spec.secrets.keys())
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let present: BTreeSet<&str> = present
        .into_iter()
        .chain(declared.iter().map(String::as_str))
        .collect();
    let required = if req.scope.lean {
        env.spec.required_list()
    } else {
        env.spec.required_properties()
    };
    let missing: Vec<&String> = required
        .iter()
        .filter(|n| !present.contains(n.as_str()))
        .collect();
    let what = format!("environment properties ({} required)", required.len());
    if missing.is_empty() {
        report.items.push(Item::ok(
            Subject::EnvironmentProperties,
            what,
            "all set (values not read)",
        ));
    } else {
        let names: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
        let settings: Vec<String> = names
            .iter()
            .map(|n| format!("Namespace={ENV_NAMESPACE},OptionName={n},Value=..."))
            .collect();
        report.items.push(Item::fail(
            Subject::EnvironmentProperties,
            what,
            format!("missing: {}", names.join(", ")),
            format!(
                "set them on the environment (values from your secret store; never in the repository): {}",
                aws_cli(req.config, &format!("elasticbeanstalk update-environment --environment-name {} --option-settings {}", env.eb_environment, settings.join(" ")))
            ),
        ));
    }

    if req.probe_health {
        let path = ebext
            .iter()
            .find(|s| s.namespace == PROCESS_NAMESPACE && s.name == "HealthCheckPath")
            .map(|s| s.value.clone())
            .or_else(|| option(PROCESS_NAMESPACE, "HealthCheckPath").map(str::to_string))
            .unwrap_or_else(|| "/".to_string());
        let matcher = ebext
            .iter()
            .find(|s| s.namespace == PROCESS_NAMESPACE && s.name == "MatcherHTTPCode")
            .map(|s| s.value.clone())
            .or_else(|| option(PROCESS_NAMESPACE, "MatcherHTTPCode").map(str::to_string))
            .unwrap_or_else(|| "200".to_string());
        let base = env
            .spec
            .url
            .clone()
            .or_else(|| described.cname().map(|c| format!("http://{c}")));
        if described.version_label().is_none() {
            report.items.push(Item::ok(
                Subject::HealthCheckPath,
                format!("health check path {path}"),
                "nothing deployed yet: not probed",
            ));
        } else if let Some(base) = base {
            report
                .items
                .push(probe_health_path(&base, &path, &matcher).await);
        }
    }
    true
}

/// The option settings of the bundle's `.ebextensions/*.config` files.
fn ebextension_options(config: &Config) -> Vec<crate::eb::OptionSetting> {
    let dir = config.resolve(&config.bundle.ebextensions);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .map(|r| r.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "config"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| crate::lint::option_settings(&t))
        .collect()
}

/// GETs `path` the way EB's load balancer does: plain HTTP, no `X-Forwarded-Proto`, no
/// redirects followed; passes when the status is one `matcher` accepts.
pub async fn probe_health_path(base: &str, path: &str, matcher: &str) -> Item {
    let what = format!("health check path {path}");
    let mut url = match url::Url::parse(base) {
        Ok(u) => u,
        Err(e) => {
            return Item::fail(
                Subject::HealthCheckPath,
                what,
                format!("bad URL {base:?}: {e}"),
                "correct `url` of the environment (or DEPLOY_URL)",
            )
            .advisory()
        }
    };
    // The load balancer talks plain HTTP to the instances.
    let _ = url.set_scheme("http");
    url.set_path(path);
    let shown = crate::verify::mask_url(url.as_str());
    let client = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(c) => c,
        Err(e) => return Item::fail(Subject::HealthCheckPath, what, format!("{e}"), "").advisory(),
    };
    let accepted = |code: u16| {
        matcher
            .split(',')
            .any(|part| match part.trim().split_once('-') {
                Some((a, b)) => {
                    a.parse::<u16>().is_ok_and(|a| a <= code)
                        && b.parse::<u16>().is_ok_and(|b| code <= b)
                }
                None => part.trim().parse::<u16>() == Ok(code),
            })
    };
    match client.get(url.clone()).send().await {
        Ok(resp) => {
            let code = resp.status().as_u16();
            if accepted(code) {
                Item::ok(Subject::HealthCheckPath, what, format!("GET {shown} (plain HTTP) → {code}"))
            } else if (300..400).contains(&code) {
                let to = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("?")
                    .to_string();
                Item::fail(
                    Subject::HealthCheckPath,
                    what,
                    format!("GET {shown} (plain HTTP, as the load balancer asks) → {code} to {to}: Django's SECURE_SSL_REDIRECT redirects the health check, so EB marks every instance unhealthy"),
                    "set the environment property DJANGO_SECURE_SSL_REDIRECT=False and redirect HTTP to HTTPS at the load balancer (a listener rule), or accept the redirect with MatcherHTTPCode \"200,301\" under aws:elasticbeanstalk:environment:process:default in .ebextensions",
                )
                .advisory()
            } else {
                Item::fail(
                    Subject::HealthCheckPath,
                    what,
                    format!("GET {shown} (plain HTTP) → {code}, the load balancer expects {matcher}"),
                    "make the path answer without authentication and without touching slow services (Antenna: /api/v2/), or correct HealthCheckPath / MatcherHTTPCode in .ebextensions; a 400 means the Host is not in DJANGO_ALLOWED_HOSTS",
                )
                .advisory()
            }
        }
        Err(e) => Item::fail(
            Subject::HealthCheckPath,
            what,
            format!("GET {shown} failed: {e}"),
            "check that the environment answers on port 80 (security group, listener) or correct `url`",
        )
        .advisory(),
    }
}

/// What to do about a runner-side check's missing variables. deploy.yml passes Flower's
/// credentials to the deploy step; a broker's URL it does not, and a GitHub runner is outside
/// the VPC that ElastiCache, RabbitMQ and NATS live in.
fn credentials_hint(kind: &str, missing: &[&str], environment: &str) -> String {
    let exports = missing
        .iter()
        .map(|m| format!("{m}=..."))
        .collect::<Vec<_>>()
        .join(" ");
    match kind {
        "redis" | "celery" | "nats" => format!(
            "export {exports} in this shell (its server must be reachable from here); in GitHub Actions a runner is outside the VPC: `where = \"instance\"` runs the check on the instance with the environment's properties, or add them as secrets of the `{environment}` environment and to the deploy step's `env:` in deploy.yml"
        ),
        _ => format!(
            "export {exports} in this shell; in GitHub Actions add them as secrets of the `{environment}` environment (deploy.yml passes them to the deploy step)"
        ),
    }
}

/// The variables the verify checks read must be set where deploy runs.
fn check_credentials(req: &DoctorRequest<'_>, report: &mut DoctorReport) {
    for (i, check) in req.env.spec.checks.iter().enumerate() {
        // An instance check reads its variables on the instance (the environment's
        // properties), not where the pipeline runs.
        if check.place == crate::config::Where::Instance {
            continue;
        }
        let names: Vec<&str> = check.kind.variables().into_iter().map(|(_, n)| n).collect();
        if names.is_empty() {
            continue;
        }
        let missing: Vec<&str> = names
            .iter()
            .copied()
            .filter(|n| (req.vars)(n).is_none_or(|v| v.trim().is_empty()))
            .collect();
        let what = format!("credentials of check {i} ({})", check.kind.name());
        if missing.is_empty() {
            report.items.push(Item::ok(
                Subject::CheckCredentials,
                what,
                format!("{} set", names.join(", ")),
            ));
        } else {
            report.items.push(Item::fail(
                Subject::CheckCredentials,
                what,
                format!("{} not set where the deploy runs", missing.join(", ")),
                credentials_hint(check.kind.name(), &missing, &req.env.name),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_runner_nats_check_needs_its_url_where_the_deploy_runs() {
        let text = format!(
            "{}\n[[environments.staging.checks]]\nkind = \"nats\"\n",
            crate::config::test_config::MINIMAL
        );
        let config = Config::parse(std::path::Path::new("deploy.toml"), &text).unwrap();
        let env = AwsEnvironment::resolve(&config, "staging", "doctor").unwrap();
        let check = |nats_url: Option<&'static str>| {
            let mut req = DoctorRequest::new(&config, env.clone());
            req.vars = std::sync::Arc::new(move |k| (k == "NATS_URL").then_some(nats_url?.into()));
            let mut report = DoctorReport::about(&req.env);
            check_credentials(&req, &mut report);
            report
        };
        let report = check(None);
        let item = report
            .items
            .iter()
            .find(|i| i.subject == Subject::CheckCredentials)
            .expect("the nats check's credentials are looked at");
        assert!(!item.ok, "{}", report.to_text());
        assert!(
            report
                .to_text()
                .contains("NATS_URL not set where the deploy runs"),
            "{}",
            report.to_text()
        );
        let fix = item.fix.as_deref().unwrap_or_default();
        assert!(fix.contains("`where = \"instance\"`"), "{fix}");
        let report = check(Some("nats://127.0.0.1:4222"));
        assert!(report.ok(), "{}", report.to_text());
        assert!(
            report.to_text().contains("NATS_URL set"),
            "{}",
            report.to_text()
        );
    }

    #[test]
    fn permissions_are_verified_refused_or_not_verifiable() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy.toml");
        let config = Config::load(&path, &Default::default()).unwrap();
        let policy = crate::iam::deploy_policy(
            &config,
            &crate::iam::PolicyRequest {
                environment: "staging",
                account: Some("123456789012"),
                ..Default::default()
            },
        )
        .unwrap();
        let probes = [
            Probe {
                action: "elasticbeanstalk:DescribeEnvironments",
                answer: Answer::Allowed,
            },
            Probe {
                action: "ecr:DescribeRepositories",
                answer: Answer::Denied,
            },
            // Not in the policy: neither verified nor refused.
            Probe {
                action: "s3:ListBucket",
                answer: Answer::Denied,
            },
            // Says nothing about the permission.
            Probe {
                action: "elasticbeanstalk:DescribeApplications",
                answer: Answer::Unknown,
            },
        ];
        let p = Permissions::compare(&policy, &probes);
        assert_eq!(p.verified, vec!["elasticbeanstalk:DescribeEnvironments"]);
        assert_eq!(p.denied, vec!["ecr:DescribeRepositories"]);
        assert!(p
            .unverified
            .contains(&"ElasticBeanstalkRead: elasticbeanstalk:DescribeApplications".to_string()));
        assert!(p
            .unverified
            .contains(&"UpdateEnvironment: elasticbeanstalk:UpdateEnvironment".to_string()));
        let all: usize = policy.statement.iter().map(|s| s.action.len()).sum();
        assert_eq!(p.verified.len() + p.denied.len() + p.unverified.len(), all);
        let text = p.to_text("staging");
        assert!(
            text.contains("refused (1): ecr:DescribeRepositories"),
            "{text}"
        );
        assert!(
            text.contains("verified by the reads above (1): elasticbeanstalk:DescribeEnvironments"),
            "{text}"
        );
    }
}
