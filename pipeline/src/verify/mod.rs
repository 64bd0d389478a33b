//! The verify stage of the pipeline: the environment's checks of `deploy.toml`, run where the
//! pipeline runs (`where = "runner"`). The checks themselves (HTTP, Redis, Celery, Flower,
//! NATS), their report and table live in the `checks` crate, re-exported here; the verify
//! agent of the postdeploy hook runs the same code on the instance (`where = "instance"`).

pub mod agent;
mod stage;

use anyhow::{bail, Context, Result};

use crate::config::{CheckKind, Config, Where};

pub use checks::*;
pub use stage::{EnvironmentChecks, Verifier, VerifyTarget};

/// The checks configured for environment `env_name` that run here (`where = "runner"`),
/// against `base_url_override` (else the environment's `url`), with URLs and credentials
/// read from the process environment.
pub fn for_environment(
    config: &Config,
    env_name: &str,
    base_url_override: Option<&str>,
) -> Result<Vec<Check>> {
    for_environment_at(config, env_name, base_url_override, Where::Runner)
}

/// [`for_environment`], for the checks that run at `place`.
pub fn for_environment_at(
    config: &Config,
    env_name: &str,
    base_url_override: Option<&str>,
    place: Where,
) -> Result<Vec<Check>> {
    // In GitHub Actions, every password read here is masked in the job's log.
    let actions = crate::github::actions::Actions::from_env();
    mask_config_secrets(&actions, config, env_name, base_url_override);
    let secret_envs = secret_variables(config, env_name);
    let lookup = |name: &str| {
        let value = std::env::var(name).ok()?;
        for secret in url_secrets(&value) {
            actions.mask(&secret);
        }
        if secret_envs.iter().any(|n| n == name)
            || crate::lint::secrets::secret_reason(name, &value).is_some()
        {
            actions.mask(&value);
        }
        Some(value)
    };
    let elsewhere: Vec<&str> = config
        .environment(env_name)?
        .checks
        .iter()
        .filter(|spec| spec.place != place)
        .map(|spec| spec.kind.name())
        .collect();
    if !elsewhere.is_empty() {
        tracing::warn!(
            "not run from here: {} (their `where` is not {place:?})",
            elsewhere.join(", ")
        );
    }
    for_environment_with(config, env_name, base_url_override, place, &lookup)
}

/// The checks of environment `env_name` that run at `place`, with variables looked up
/// by `env` instead of the process environment.
pub fn for_environment_with(
    config: &Config,
    env_name: &str,
    base_url_override: Option<&str>,
    place: Where,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<Check>> {
    let environment = config.environment(env_name)?;
    let base = base_url_override.or(environment.url.as_deref());
    let stage_deadline = environment.timeouts.verify;
    environment
        .checks
        .iter()
        .enumerate()
        .filter(|(_, spec)| spec.place == place)
        .map(|(i, spec)| {
            let mut check = Check::from_spec(spec, base, env).with_context(|| {
                format!(
                    "environments.{env_name}.checks[{i}] ({}) in {}",
                    spec.kind.name(),
                    config.path.display()
                )
            })?;
            check.cap_timeout(stage_deadline);
            Ok(check)
        })
        .collect()
}

/// The verify stage in one call: builds the checks of environment `env_name` (against
/// `base_url_override`, else the environment's `url`) and runs them. The deploy stage decides
/// on rollback from [`VerifyReport::passed`].
pub async fn verify_environment(
    config: &Config,
    env_name: &str,
    base_url_override: Option<&str>,
) -> Result<VerifyReport> {
    let checks = for_environment(config, env_name, base_url_override)?;
    Ok(run(&checks).await)
}

/// `verify`: an environment's checks, against a URL.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyRequest {
    pub environment: String,
    /// Base URL of the deployed application (else the environment's `url`, or DEPLOY_URL).
    pub url: Option<String>,
}

/// Runs the environment's checks; an environment without checks is an error that says how to
/// add one.
pub async fn verify(config: &Config, req: &VerifyRequest) -> Result<VerifyReport> {
    let cname;
    let req = match (&req.url, needs_cname(config, &req.environment)?) {
        (None, true) => {
            // Without it the HTTP checks say they have no URL; the others still run.
            let url = match environment_cname(config, &req.environment).await {
                Ok(url) => url,
                Err(e) => {
                    let why = if crate::aws::lacks_credentials(&e) {
                        crate::aws::NO_CREDENTIALS.to_string()
                    } else {
                        format!("{e:#}")
                    };
                    tracing::warn!(
                        "no `url` for {} and its CNAME cannot be read ({why}): pass --url (or set DEPLOY_URL)",
                        req.environment
                    );
                    None
                }
            };
            cname = VerifyRequest { url, ..req.clone() };
            &cname
        }
        _ => req,
    };
    if let Some(url) = &req.url {
        let actions = crate::github::actions::Actions::from_env();
        for secret in url_secrets(url) {
            actions.mask(&secret);
        }
        crate::config::check_url(url).map_err(|m| anyhow::anyhow!("--url: {m}"))?;
    }
    let checks = for_environment(config, &req.environment, req.url.as_deref())?;
    if checks.is_empty() {
        bail!(
            "environment {:?} has no checks: add [[environments.{}.checks]] tables to {}",
            req.environment,
            req.environment,
            config.path.display()
        );
    }
    tracing::info!("verifying {} with {} checks", req.environment, checks.len());
    Ok(run(&checks).await)
}

/// True for an Elastic Beanstalk environment without a `url`: its checks run against the
/// environment's CNAME, as `deploy` does.
fn needs_cname(config: &Config, env_name: &str) -> Result<bool> {
    let spec = config.environment(env_name)?;
    Ok(spec.url.is_none() && spec.target == crate::config::Target::Aws)
}

/// `http://<CNAME>` of the environment, from Elastic Beanstalk.
async fn environment_cname(config: &Config, env_name: &str) -> Result<Option<String>> {
    let env = crate::ops::AwsEnvironment::resolve(config, env_name, "verify")?;
    let session = crate::ops::Session::open(config).await;
    let url =
        crate::eb::deploy::environment_url(&session.eb, &env.application, &env.eb_environment)
            .await
            .context("cannot read the environment's CNAME")?;
    match &url {
        Some(u) => {
            tracing::info!("no `url` for {env_name}: verifying {u} (the environment's CNAME)")
        }
        None => tracing::warn!(
            "Elastic Beanstalk gives {} no CNAME: pass --url (or set `url` for {env_name})",
            env.eb_environment
        ),
    }
    Ok(url)
}

/// Masks (`::add-mask::`) the credentials written in the configuration or passed on the
/// command line for environment `env_name`: passwords in its `url` (or `base_url_override`,
/// from `--url` / `DEPLOY_URL`), in check URLs, and secret-looking check headers.
pub fn mask_config_secrets(
    actions: &crate::github::actions::Actions,
    config: &Config,
    env_name: &str,
    base_url_override: Option<&str>,
) {
    let Ok(environment) = config.environment(env_name) else {
        return;
    };
    let mut urls: Vec<&str> = base_url_override
        .into_iter()
        .chain(environment.url.as_deref())
        .collect();
    for check in &environment.checks {
        match &check.kind {
            CheckKind::Http { url, headers, .. } => {
                urls.extend(url.as_deref());
                for (name, value) in headers {
                    let lower = name.to_ascii_lowercase();
                    if lower == "authorization"
                        || lower == "cookie"
                        || crate::lint::secrets::secret_reason(name, value).is_some()
                    {
                        actions.mask(value);
                        // `Bearer TOKEN`, `Basic BASE64`: the credential alone, too.
                        if let Some((_, credential)) = value.split_once(' ') {
                            actions.mask(credential);
                        }
                    }
                }
            }
            CheckKind::Flower { url, .. } => urls.extend(url.as_deref()),
            _ => {}
        }
    }
    for url in urls {
        for secret in url_secrets(url) {
            actions.mask(&secret);
        }
    }
}

/// Names of the variables whose whole value is a secret for environment `env_name`'s checks
/// (a Flower check's `password_env`, whatever it is called).
fn secret_variables(config: &Config, env_name: &str) -> Vec<String> {
    let Ok(environment) = config.environment(env_name) else {
        return Vec::new();
    };
    environment
        .checks
        .iter()
        .filter_map(|c| match &c.kind {
            CheckKind::Flower { password_env, .. } => Some(password_env.clone()),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn the_stage_timeout_caps_every_check() {
        let local = r#"
[environments.t]
target = "local"
url = "http://h"
timeouts = { verify = "30s" }
[[environments.t.checks]]
kind = "http"
timeout = "10m"
[[environments.t.checks]]
kind = "http"
path = "/health/"
timeout = "10s"
"#;
        let text = format!("{}{local}", crate::config::test_config::MINIMAL);
        let config = Config::parse(std::path::Path::new("deploy.toml"), &text).unwrap();
        let checks =
            for_environment_with(&config, "t", None, Where::Runner, &|_: &str| None).unwrap();
        assert_eq!(checks[0].timeout(), Duration::from_secs(30));
        assert_eq!(checks[1].timeout(), Duration::from_secs(10));
        assert_eq!(checks[1].target(), "http://h/health/");
        let checks = for_environment_with(
            &config,
            "t",
            Some("https://other"),
            Where::Runner,
            &|_: &str| None,
        )
        .unwrap();
        assert_eq!(checks[0].target(), "https://other/api/v2/");
    }
}
