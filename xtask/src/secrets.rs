//! `secrets put|import`: store secret values in Secrets Manager, never from an argument.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use pipeline::envprops::{dotenv, secrets};
use pipeline::ops::{AwsEnvironment, Session};

use crate::args::EnvArg;
use crate::Global;

/// Secret values in Secrets Manager for the environment properties.
#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Create or update the secret of property NAME (value from stdin or --from-file).
    Put(PutCmd),
    /// Turn a dotenv file into secrets and plain properties; print the deploy.toml lines.
    Import(ImportCmd),
}

#[derive(clap::Args, Debug)]
pub struct PutCmd {
    /// The property name (the secret is `<application>/<environment>/<NAME>`).
    name: String,
    #[command(flatten)]
    env: EnvArg,
    /// Read the value from this file instead of stdin (one trailing newline is dropped).
    #[arg(long)]
    from_file: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub struct ImportCmd {
    /// The dotenv file, such as .envs/.production/.django.
    #[arg(long)]
    from_file: PathBuf,
    #[command(flatten)]
    env: EnvArg,
    /// Print the lines without storing any secret.
    #[arg(long)]
    dry_run: bool,
}

impl Cmd {
    pub async fn run(self, global: &Global) -> Result<()> {
        match self {
            Cmd::Put(c) => c.run(global).await,
            Cmd::Import(c) => c.run(global).await,
        }
    }
}

impl PutCmd {
    async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let env =
            AwsEnvironment::resolve(&config, &self.env.required("secrets put")?, "secrets put")?;
        if !pipeline::envprops::valid_property_name(&self.name) {
            bail!("{:?} is not a valid property name: use letters, digits and '_', not starting with a digit", self.name);
        }
        let mut value = match &self.from_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("cannot read the value from {}", path.display()))?,
            None => {
                if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                    tracing::info!(
                        "type the value of {}, then Ctrl-D (it is not echoed back)",
                        self.name
                    );
                }
                let mut s = String::new();
                std::io::stdin()
                    .read_to_string(&mut s)
                    .context("cannot read the value from stdin")?;
                s
            }
        };
        if value.ends_with('\n') {
            value.pop();
            if value.ends_with('\r') {
                value.pop();
            }
        }
        if value.is_empty() {
            bail!("the value of {} is empty: nothing stored", self.name);
        }
        let session = Session::open(&config).await;
        let stores = secrets::SecretStores::new(&session.aws);
        let name = secrets::secret_name(&env.application, &env.name, &self.name);
        let stored = stores
            .put(
                &name,
                &value,
                &[
                    ("application", &env.application),
                    ("environment", &env.name),
                ],
            )
            .await?;
        drop(value);
        tracing::info!(
            "{} the secret {} ({})",
            if stored.created {
                "created"
            } else {
                "stored a new version of"
            },
            stored.name,
            stored.arn
        );
        eprintln!(
            "declare it in {} under [environments.{}.secrets]:\n{}",
            config.path.display(),
            env.name,
            secrets::declaration_line(&self.name, &stored.name)
        );
        global.emit_json(&stored)
    }
}

/// What `secrets import` produced.
#[derive(Debug, serde::Serialize)]
struct ImportReport {
    properties: Vec<String>,
    secrets: Vec<secrets::Stored>,
    /// The lines to paste into deploy.toml.
    declaration: String,
}

impl ImportCmd {
    async fn run(self, global: &Global) -> Result<()> {
        let config = global.load_config()?;
        let env = AwsEnvironment::resolve(
            &config,
            &self.env.required("secrets import")?,
            "secrets import",
        )?;
        let text = std::fs::read_to_string(&self.from_file)
            .with_context(|| format!("cannot read {}", self.from_file.display()))?;
        let pairs = dotenv::parse(&text)
            .map_err(|e| anyhow::anyhow!("{}:{e}", self.from_file.display()))?;
        let session = if self.dry_run {
            None
        } else {
            Some(Session::open(&config).await)
        };
        let stores = session.as_ref().map(|s| secrets::SecretStores::new(&s.aws));
        let mut plain = String::new();
        let mut secret_lines = String::new();
        let mut report = ImportReport {
            properties: vec![],
            secrets: vec![],
            declaration: String::new(),
        };
        for (name, value) in &pairs {
            match pipeline::lint::secrets::secret_reason(name, value) {
                None => {
                    plain.push_str(&format!("{name} = {}\n", secrets::toml_string(value)));
                    report.properties.push(name.clone());
                }
                Some(reason) => {
                    let secret = secrets::secret_name(&env.application, &env.name, name);
                    match &stores {
                        Some(stores) => {
                            let stored = stores
                                .put(
                                    &secret,
                                    value,
                                    &[
                                        ("application", &env.application),
                                        ("environment", &env.name),
                                    ],
                                )
                                .await
                                .with_context(|| format!("while importing {name}"))?;
                            tracing::info!(
                                "{name}: a secret ({reason}): stored as {}",
                                stored.name
                            );
                            report.secrets.push(stored);
                        }
                        None => tracing::info!(
                            "{name}: a secret ({reason}): would be stored as {secret}"
                        ),
                    }
                    secret_lines.push_str(&secrets::declaration_line(name, &secret));
                    secret_lines.push('\n');
                }
            }
        }
        report.declaration = format!(
            "[environments.{env}.properties]\n{plain}\n[environments.{env}.secrets]\n{secret_lines}",
            env = env.name
        );
        if global.json {
            global.emit_json(&report)
        } else {
            print!("{}", report.declaration);
            Ok(())
        }
    }
}
