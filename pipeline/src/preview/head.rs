//! The head side of the preview: the bundle the checked-out tree would deploy, rendered and
//! linted as `make_bundle` would, but kept going on lint errors so that the preview shows them.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Files;
use crate::bundle::{self, DOCKERRUN};
use crate::config::Config;
use crate::dockerrun::Dockerrun;
use crate::lint::Report;
use crate::release::Release;
use crate::template::RenderContext;

/// Stand-in account for rendering when none is known (the preview says so).
pub const PLACEHOLDER_ACCOUNT: &str = "000000000000";

/// The head side: what would be deployed.
#[derive(Debug, Clone)]
pub struct Head {
    pub env_name: String,
    pub release: Release,
    /// `None` when the template did not render.
    pub dockerrun: Option<Dockerrun>,
    pub files: Files,
    pub lint: Report,
    /// `None` when lint found errors (no bundle is made then).
    pub bundle: Option<BundleFacts>,
    /// False when the account was unknown and [`PLACEHOLDER_ACCOUNT`] stood in.
    pub account_known: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BundleFacts {
    pub sha256: String,
    pub size: u64,
    pub version_label: String,
}

/// Renders and lints the bundle of `config`'s tree for `env_name`, as `make_bundle` would,
/// but keeps going on lint errors so that the preview can show them.
pub fn render_head(
    config: &Config,
    env_name: &str,
    release: &Release,
    account: Option<&str>,
) -> Result<Head> {
    let env = config.environment(env_name)?;
    let account_known = account.is_some() || config.account.is_some();
    let account = account
        .or(config.account.as_deref())
        .unwrap_or(PLACEHOLDER_ACCOUNT);
    let ctx = RenderContext::for_environment(config, env_name, env, release, Some(account));
    let inputs = bundle::collect_inputs(config)?;
    let (rendered, lint) = bundle::lint_inputs(config, env, &ctx, &inputs)?;
    let mut files = BTreeMap::new();
    for f in &inputs {
        let data =
            std::fs::read(&f.path).with_context(|| format!("cannot read {}", f.path.display()))?;
        files.insert(f.name.clone(), data);
    }
    let mut facts = None;
    if let Some(r) = &rendered {
        files.insert(DOCKERRUN.to_string(), r.json.clone().into_bytes());
        if lint.errors() == 0 {
            let bytes = bundle::zip_bundle(&r.json, &inputs)?;
            let sha256 = hex::encode(Sha256::digest(&bytes));
            facts = Some(BundleFacts {
                version_label: release.version_label(&sha256),
                sha256,
                size: bytes.len() as u64,
            });
        }
    }
    Ok(Head {
        env_name: env_name.to_string(),
        release: release.clone(),
        dockerrun: rendered.map(|r| r.dockerrun),
        files: Files(files),
        lint,
        bundle: facts,
        account_known,
    })
}
