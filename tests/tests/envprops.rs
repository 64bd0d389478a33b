//! Environment properties and secrets as code: `env diff`, `env apply`, `env pull`,
//! `secrets put` and `secrets import`, against the EB emulator (option settings) and moto
//! (Secrets Manager, SSM Parameter Store).

use std::io::Write;
use std::time::Duration;

use integration::deploy_world::{Settings, World};
use integration::eb_emulator::{Script, Step, ENVIRONMENT, ENVIRONMENT_SECRETS};
use integration::{aws, services};
use pipeline::aws::Aws;
use pipeline::deploy::{EnvChoice, RunRequest};
use pipeline::eb::{DeployVerdict, Eb, Pacing};
use pipeline::envprops::secrets::SecretStores;
use pipeline::envprops::{self, ApplyRequest, Change};
use pipeline::ops::{AwsEnvironment, Session};

/// A secret value that must never show up anywhere.
const SECRET_VALUE: &str = "s3cr3t-value-7f2d91";
/// A plain property on the environment that holds a secret (set by hand in the console).
const CONSOLE_SECRET: &str = "console-held-4c1e77";

/// A session whose Secrets Manager and SSM are moto and whose EB is the world's emulator,
/// polling 1000× faster.
fn session(w: &World) -> Session {
    let moto = aws::sdk_config(&services::env("MOTO_ENDPOINT"));
    let eb_sdk = aws::sdk_config(&w.emu.endpoint);
    Session {
        eb: std::sync::Arc::new(Eb::new(
            pipeline::eb::eb_client(&eb_sdk),
            Pacing::scaled(1000.0),
        )),
        s3: w.s3.clone(),
        ecr: aws_sdk_ecr::Client::new(&moto),
        aws: Aws {
            sdk: moto,
            custom_endpoint: true,
        },
    }
}

/// The world's deploy.toml with these properties and secrets.
fn configure(w: &World, tables: &str) -> pipeline::config::Config {
    w.config(&Settings {
        checks: tables.to_string(),
        ..Settings::default()
    })
}

struct Fixture {
    w: World,
    session: Session,
    secret_name: String,
    parameter: String,
    /// The declaration's TOML (for `World::request`, which writes deploy.toml again).
    tables: String,
}

/// An environment as the console left it, and a declaration that differs in every way.
async fn fixture() -> Fixture {
    let w = World::new().await;
    let session = session(&w);
    let stores = SecretStores::new(&session.aws);
    let secret_name = services::unique("antenna/staging/DJANGO_SECRET_KEY");
    stores
        .put(&secret_name, SECRET_VALUE, &[("application", "antenna")])
        .await
        .unwrap();
    let parameter = format!("/{}", services::unique("antenna-sentry-dsn"));
    stores
        .ssm
        .put_parameter()
        .name(&parameter)
        .value(SECRET_VALUE)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let env = &w.environment;
    // Only the properties below (the world's preparation for a preflight aside: this
    // deploy.toml requires KEEP only).
    w.emu.clear_environment_properties(env);
    w.emu.set_environment_property(env, "KEEP", "1");
    w.emu.set_environment_property(env, "CHANGE", "old");
    w.emu.set_environment_property(env, "OLD", "x");
    w.emu.set_environment_property(env, "CONSOLE", "y");
    w.emu
        .set_environment_property(env, "DJANGO_SECRET_KEY", CONSOLE_SECRET);
    w.emu.set_environment_property(
        env,
        envprops::MANAGED_RECORD,
        "CHANGE,DJANGO_SECRET_KEY,KEEP,OLD",
    );
    let tables = format!(
        r#"required = ["KEEP"]

[environments.staging.properties]
KEEP = "1"
CHANGE = "new"
NEW = "n"

[environments.staging.secrets]
DJANGO_SECRET_KEY = {{ secret = "{secret_name}" }}
SENTRY_DSN = {{ parameter = "{parameter}" }}
"#
    );
    configure(&w, &tables);
    Fixture {
        w,
        session,
        secret_name,
        parameter,
        tables,
    }
}

fn resolve(f: &Fixture) -> (pipeline::config::Config, AwsEnvironment) {
    let config =
        pipeline::config::Config::load(&f.w.dir.path().join("deploy.toml"), &Default::default())
            .unwrap();
    let env = AwsEnvironment::resolve(&config, "staging", "env apply").unwrap();
    (config, env)
}

/// `env apply` as `req` asks, which must end with a deploy that succeeded.
async fn apply_succeeds(config: &pipeline::config::Config, f: &Fixture, req: &ApplyRequest) {
    let report = envprops::apply(config, &f.session, req).await.unwrap();
    assert_eq!(
        report.verdict,
        Some(DeployVerdict::Succeeded),
        "{}",
        report.message
    );
}

fn no_secret_in(text: &str) {
    for v in [SECRET_VALUE, CONSOLE_SECRET] {
        assert!(!text.contains(v), "a secret value leaked: {text}");
    }
}

#[tokio::test]
async fn diff_shows_each_kind_then_apply_makes_it_empty_and_a_second_apply_writes_nothing() {
    let f = fixture().await;
    let (config, env) = resolve(&f);
    let d = envprops::apply::plan(&config, &f.session, &env, false)
        .await
        .unwrap();
    let kinds: Vec<(&str, Change)> = d
        .entries
        .iter()
        .map(|e| (e.name.as_str(), e.change))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("NEW", Change::Added),
            ("SENTRY_DSN", Change::Added),
            ("CHANGE", Change::Changed),
            ("DJANGO_SECRET_KEY", Change::Changed),
            ("OLD", Change::Removed),
            ("CONSOLE", Change::Unmanaged),
            ("KEEP", Change::Unchanged),
        ]
    );
    assert!(d.problems.is_empty(), "{:?}", d.problems);
    let secret = d
        .entries
        .iter()
        .find(|e| e.name == "DJANGO_SECRET_KEY")
        .unwrap();
    assert_eq!(
        secret.running.as_deref(),
        Some(envprops::fingerprint(CONSOLE_SECRET).as_str())
    );
    assert!(secret
        .declared
        .as_deref()
        .unwrap()
        .starts_with("arn:aws:secretsmanager:us-west-2:123456789012:secret:"));
    no_secret_in(&serde_json::to_string(&d).unwrap());
    no_secret_in(&d.table().render());

    let before = f.w.emu.write_calls().len();
    apply_succeeds(&config, &f, &ApplyRequest::new(env.clone())).await;
    let updates = f.w.emu.calls_of("UpdateEnvironment");
    assert_eq!(f.w.emu.write_calls().len(), before + 1);
    let call = updates.last().unwrap();
    assert_eq!(
        call.param("VersionLabel"),
        None,
        "a property update keeps the version"
    );
    no_secret_in(&format!("{:?}", call.params));
    assert_eq!(
        f.w.emu.environment(&f.w.environment).version.as_deref(),
        Some("v0")
    );

    let plain = f.w.emu.options(&f.w.environment, ENVIRONMENT);
    let secrets = f.w.emu.options(&f.w.environment, ENVIRONMENT_SECRETS);
    assert_eq!(plain["CHANGE"], "new");
    assert_eq!(plain["NEW"], "n");
    assert_eq!(plain["CONSOLE"], "y", "an unmanaged property is kept");
    assert!(!plain.contains_key("OLD"));
    assert!(
        !plain.contains_key("DJANGO_SECRET_KEY"),
        "moved to a secret"
    );
    assert!(secrets["DJANGO_SECRET_KEY"].contains(&f.secret_name));
    assert!(secrets["SENTRY_DSN"].ends_with(&format!("parameter{}", f.parameter)));
    assert_eq!(
        plain[envprops::MANAGED_RECORD],
        "CHANGE,DJANGO_SECRET_KEY,KEEP,NEW,SENTRY_DSN"
    );

    let again = envprops::apply::plan(&config, &f.session, &env, false)
        .await
        .unwrap();
    assert!(again.is_empty(), "{:?}", again.entries);
    assert_eq!(again.changes, 0);
    let writes = f.w.emu.write_calls().len();
    let second = envprops::apply(&config, &f.session, &ApplyRequest::new(env))
        .await
        .unwrap();
    assert_eq!(second.verdict, None);
    assert!(second.message.contains("nothing to apply"));
    assert_eq!(f.w.emu.write_calls().len(), writes, "no write call");
}

#[tokio::test]
async fn prune_removes_unmanaged_properties_only_with_confirmation() {
    let f = fixture().await;
    let (config, env) = resolve(&f);
    let mut req = ApplyRequest::new(env);
    req.prune = true;
    let err = envprops::apply(&config, &f.session, &req)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("add --yes to confirm"), "{err}");
    assert!(f.w.emu.write_calls().is_empty());
    req.confirmed = true;
    apply_succeeds(&config, &f, &req).await;
    let plain = f.w.emu.options(&f.w.environment, ENVIRONMENT);
    assert!(!plain.contains_key("CONSOLE"));
    assert_eq!(plain["KEEP"], "1");
}

#[tokio::test]
async fn apply_while_another_deploy_runs_waits_for_the_lock() {
    let f = fixture().await;
    let (config, env) = resolve(&f);
    f.w.emu
        .add_version(&f.w.application, "v1", &f.w.bucket, "k", "PROCESSED");
    f.w.emu.start_foreign_deploy(
        &f.w.environment,
        "v1",
        Script::success(Duration::from_millis(400)),
    );
    apply_succeeds(&config, &f, &ApplyRequest::new(env)).await;
    let foreign_end = f.w.emu.finishes(&f.w.environment)[0];
    let update = f.w.emu.calls_of("UpdateEnvironment")[0].clone();
    assert!(
        update.at >= foreign_end,
        "the update waited for the other deploy"
    );
    // The other deploy's version still runs: a property update keeps it.
    assert_eq!(
        f.w.emu.environment(&f.w.environment).version.as_deref(),
        Some("v1")
    );
}

#[tokio::test]
async fn a_missing_secret_or_a_failed_update_is_reported() {
    let f = fixture().await;
    configure(
        &f.w,
        r#"
[environments.staging.secrets]
DATABASE_URL = { secret = "antenna/staging/no-such-secret" }
"#,
    );
    let (config, env) = resolve(&f);
    let err = envprops::apply(&config, &f.session, &ApplyRequest::new(env.clone()))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no secret \"antenna/staging/no-such-secret\""),
        "{err}"
    );
    assert!(err.contains("cargo xtask secrets put"), "{err}");
    assert!(f.w.emu.write_calls().is_empty());

    // A required name that the update would remove is refused.
    configure(&f.w, "\n[environments.staging.properties]\nNEW = \"n\"\n");
    let (config, env) = resolve(&f);
    let err = envprops::apply(&config, &f.session, &ApplyRequest::new(env))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("DJANGO_SECRET_KEY is required: the update would remove it"),
        "{err}"
    );
    assert!(f.w.emu.write_calls().is_empty());

    configure(
        &f.w,
        "required = []\n\n[environments.staging.properties]\nNEW = \"n\"\n",
    );
    let (config, env) = resolve(&f);
    f.w.emu.script_next_deploy(
        &f.w.environment,
        Script::new(vec![Step::at_ms(50)
            .event("ERROR", "Failed to deploy configuration.")
            .status("Ready")]),
    );
    let report = envprops::apply(&config, &f.session, &ApplyRequest::new(env))
        .await
        .unwrap();
    assert_eq!(report.verdict, Some(DeployVerdict::Failed));
    assert!(
        report.message.contains("Failed to deploy configuration."),
        "{}",
        report.message
    );
    assert!(!f
        .w
        .emu
        .options(&f.w.environment, ENVIRONMENT)
        .contains_key("NEW"));
}

/// The binary, pointed at moto (Secrets Manager, SSM) and the emulator (EB).
fn xtask(w: &World, args: &[&str]) -> std::process::Command {
    let mut cmd = integration::xtask();
    cmd.arg("--config")
        .arg(w.dir.path().join("deploy.toml"))
        .args(args)
        .env("AWS_ENDPOINT_URL", services::env("MOTO_ENDPOINT"))
        .env("AWS_ENDPOINT_URL_ELASTIC_BEANSTALK", &w.emu.endpoint)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-west-2")
        .env_remove("AWS_PROFILE")
        .env("DEPLOY_ENV", "staging");
    cmd
}

async fn run(mut cmd: std::process::Command, stdin: Option<&str>) -> (bool, String, String) {
    let stdin = stdin.map(str::to_string);
    tokio::task::spawn_blocking(move || {
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().expect("cannot run xtask");
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
        drop(input);
        let out = child.wait_with_output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
    .await
    .unwrap()
}

/// All that the commands of a test printed, which must never hold a secret value.
#[derive(Default)]
struct Transcript(String);

impl Transcript {
    /// Runs `cmd` (with `stdin`) and keeps what it printed.
    async fn run(
        &mut self,
        cmd: std::process::Command,
        stdin: Option<&str>,
    ) -> (bool, String, String) {
        let (ok, out, err) = run(cmd, stdin).await;
        self.keep(&out);
        self.keep(&err);
        (ok, out, err)
    }

    /// Runs `cmd` (with `stdin`), which must succeed, and keeps what it printed.
    async fn succeeds(
        &mut self,
        cmd: std::process::Command,
        stdin: Option<&str>,
    ) -> (String, String) {
        let (ok, out, err) = self.run(cmd, stdin).await;
        assert!(ok, "{err}");
        (out, err)
    }

    fn keep(&mut self, text: &str) {
        self.0.push_str(text);
    }

    /// Nothing the commands printed holds a secret value, nor anything EB was sent.
    fn assert_no_secret(&self, w: &World) {
        no_secret_in(&self.0);
        for call in w.emu.calls() {
            no_secret_in(&format!("{:?}", call.params));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_never_shows_a_secret_value() {
    let w = World::new().await;
    let app = w.application.clone();
    w.emu
        .set_environment_property(&w.environment, "DJANGO_SECRET_KEY", CONSOLE_SECRET);
    w.emu
        .set_environment_property(&w.environment, "USE_DOCKER", "yes");
    configure(&w, "");
    let mut captured = Transcript::default();

    // `env pull`: the console-held secret becomes a placeholder.
    let (out, _) = captured.succeeds(xtask(&w, &["env", "pull"]), None).await;
    assert!(out.contains("USE_DOCKER = \"yes\""), "{out}");
    assert!(out.contains(&format!(
        "DJANGO_SECRET_KEY = {{ secret = \"{app}/staging/DJANGO_SECRET_KEY\" }}"
    )));

    // `secrets put` from stdin: created, tagged, the declaration printed.
    let (out, _) = captured
        .succeeds(
            xtask(&w, &["--json", "secrets", "put", "DJANGO_SECRET_KEY"]),
            Some(&format!("{SECRET_VALUE}\n")),
        )
        .await;
    let stored: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(stored["created"], true);
    let stores = SecretStores::new(&Aws {
        sdk: aws::sdk_config(&services::env("MOTO_ENDPOINT")),
        custom_endpoint: true,
    });
    let name = format!("{app}/staging/DJANGO_SECRET_KEY");
    let value = stores
        .secrets
        .get_secret_value()
        .secret_id(&name)
        .send()
        .await
        .unwrap();
    assert_eq!(value.secret_string(), Some(SECRET_VALUE));
    let described = stores
        .secrets
        .describe_secret()
        .secret_id(&name)
        .send()
        .await
        .unwrap();
    let tags: Vec<(String, String)> = described
        .tags()
        .iter()
        .map(|t| (t.key().unwrap().to_string(), t.value().unwrap().to_string()))
        .collect();
    assert!(tags.contains(&("application".into(), app.clone())));
    assert!(tags.contains(&("environment".into(), "staging".into())));
    // Again: a new version of the same secret.
    let (_, err) = captured
        .succeeds(
            xtask(&w, &["secrets", "put", "DJANGO_SECRET_KEY"]),
            Some(SECRET_VALUE),
        )
        .await;
    assert!(err.contains("stored a new version of"), "{err}");
    // From a file: the same, and the value is not echoed.
    let value_file = w.dir.path().join("django-secret-key");
    std::fs::write(&value_file, format!("{SECRET_VALUE}\n")).unwrap();
    let (_, err) = captured
        .succeeds(
            xtask(
                &w,
                &[
                    "secrets",
                    "put",
                    "DJANGO_SECRET_KEY",
                    "--from-file",
                    value_file.to_str().unwrap(),
                ],
            ),
            None,
        )
        .await;
    assert!(err.contains("stored a new version of"), "{err}");

    // `secrets import`: secrets by the detector, plain properties as lines to paste.
    let dotenv = w.dir.path().join(".django");
    std::fs::write(
        &dotenv,
        format!(
            "# production\nexport USE_DOCKER=yes\nPOSTGRES_PASSWORD=\"{SECRET_VALUE}\"\nEMPTY=\n"
        ),
    )
    .unwrap();
    let import = || {
        xtask(
            &w,
            &["secrets", "import", "--from-file", dotenv.to_str().unwrap()],
        )
    };
    let (out, _) = captured.succeeds(import(), None).await;
    assert!(out.contains("USE_DOCKER = \"yes\"\nEMPTY = \"\""), "{out}");
    assert!(out.contains(&format!(
        "POSTGRES_PASSWORD = {{ secret = \"{app}/staging/POSTGRES_PASSWORD\" }}"
    )));
    std::fs::write(&dotenv, "A=1\nnot a line\n").unwrap();
    let (ok, _, err) = run(import(), None).await;
    assert!(!ok);
    assert!(err.contains(".django:line 2: expected NAME=value"), "{err}");

    // Declare it; diff and apply with JSON.
    configure(
        &w,
        &format!(
            "\n[environments.staging.properties]\nUSE_DOCKER = \"yes\"\n\n[environments.staging.secrets]\nDJANGO_SECRET_KEY = {{ secret = \"{name}\" }}\n"
        ),
    );
    let (out, err) = captured
        .succeeds(xtask(&w, &["--json", "env", "diff"]), None)
        .await;
    let diff: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(diff["changes"], 1, "{out}");
    assert!(err.contains("DJANGO_SECRET_KEY"), "{err}");
    let (out, _) = captured
        .succeeds(xtask(&w, &["--json", "env", "apply"]), None)
        .await;
    let applied: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(applied["verdict"], "succeeded", "{out}");
    let (_, err) = captured.succeeds(xtask(&w, &["env", "diff"]), None).await;
    assert!(err.contains("0 added, 0 changed, 0 removed"), "{err}");

    // Nothing the suite captured holds a secret value, nor anything EB was sent.
    captured.assert_no_secret(&w);
}

/// The whole pipeline on the fixture (bundle given), with Secrets Manager and SSM from moto.
fn deploy_request(f: &Fixture, env: EnvChoice) -> RunRequest {
    let mut req = f.w.request(&Settings {
        checks: f.tables.clone(),
        ..Settings::default()
    });
    req.aws = Some(f.session.aws.clone());
    req.options.env = env;
    req
}

const APPLY: EnvChoice = EnvChoice {
    apply: true,
    prune: false,
    confirmed: false,
};

#[tokio::test]
async fn deploy_shows_the_env_diff_and_applies_it_with_the_version_only_when_asked() {
    let f = fixture().await;
    let label = f.w.label();

    // A plan (--dry-run) shows every change, masked, and changes nothing.
    let mut req = deploy_request(&f, EnvChoice::default());
    req.options.dry_run = true;
    let plan = f.w.run(&req, None).await;
    let env = plan.env.as_ref().expect("the plan shows the env diff");
    assert!(!env.sent);
    assert_eq!(env.diff.changes, 5, "{:?}", env.diff.entries);
    let table = plan.table();
    assert!(
        table.contains("environment properties differ from deploy.toml: 5 change(s) NOT applied (pass --apply-env"),
        "{table}"
    );
    assert!(
        table.contains("DJANGO_SECRET_KEY  changed    secret  differs"),
        "{table}"
    );
    assert!(
        table.contains("CONSOLE            unmanaged  plain   kept"),
        "{table}"
    );
    let env_part = &table[table.find("environment properties").unwrap()..];
    for value in ["old", "arn:", "sha256:", f.secret_name.as_str()] {
        assert!(!env_part.contains(value), "{value} in the plan:\n{table}");
    }
    no_secret_in(&table);
    no_secret_in(&serde_json::to_string(&plan).unwrap());
    assert!(f.w.emu.write_calls().is_empty(), "a plan writes nothing");

    // A dry run with --apply-env says it would apply them.
    let mut req = deploy_request(&f, APPLY);
    req.options.dry_run = true;
    let plan = f.w.run(&req, None).await;
    assert!(
        plan.table().contains(
            "environment properties: 5 change(s) would be applied with the version (--apply-env)"
        ),
        "{}",
        plan.table()
    );
    assert!(f.w.emu.write_calls().is_empty());

    // --prune without --yes is refused before anything runs.
    let err = pipeline::deploy::run(
        &deploy_request(
            &f,
            EnvChoice {
                prune: true,
                ..APPLY
            },
        ),
        &f.w.clients,
        None,
    )
    .await
    .unwrap_err()
    .to_string();
    assert!(err.contains("add --yes to confirm"), "{err}");
    assert!(f.w.emu.write_calls().is_empty());

    // --apply-env: the version and the properties in ONE UpdateEnvironment.
    let report = f.w.run(&deploy_request(&f, APPLY), None).await;
    assert!(report.ok, "{}", report.table());
    let deploy = report.deploy.as_ref().unwrap();
    assert_eq!(
        deploy.verdict,
        DeployVerdict::Succeeded,
        "{}",
        deploy.message
    );
    let updates = f.w.emu.calls_of("UpdateEnvironment");
    assert_eq!(updates.len(), 1, "one UpdateEnvironment");
    let call = &updates[0];
    assert_eq!(call.param("VersionLabel"), Some(label.as_str()));
    assert!(
        call.param("OptionSettings.member.1.Namespace").is_some(),
        "{:?}",
        call.params
    );
    assert!(
        call.param("OptionsToRemove.member.1.OptionName").is_some(),
        "{:?}",
        call.params
    );
    no_secret_in(&format!("{:?}", call.params));
    let env = report.env.as_ref().unwrap();
    assert!(env.sent);
    assert!(
        report
            .table()
            .contains("environment properties: 5 change(s) sent with the version"),
        "{}",
        report.table()
    );
    no_secret_in(&report.table());
    no_secret_in(&serde_json::to_string(&report).unwrap());
    assert_eq!(
        f.w.emu.environment(&f.w.environment).version.as_deref(),
        Some(label.as_str())
    );
    let plain = f.w.emu.options(&f.w.environment, ENVIRONMENT);
    assert_eq!(plain["CHANGE"], "new");
    assert_eq!(
        plain["CONSOLE"], "y",
        "an unmanaged property is kept without --prune"
    );
    assert!(
        f.w.emu.options(&f.w.environment, ENVIRONMENT_SECRETS)["DJANGO_SECRET_KEY"]
            .contains(&f.secret_name)
    );

    // Then `env diff` is empty, and a second deploy makes no write call at all.
    let (config, aws_env) = resolve(&f);
    let after = envprops::apply::plan(&config, &f.session, &aws_env, false)
        .await
        .unwrap();
    assert!(after.is_empty(), "{:?}", after.entries);
    let writes = f.w.emu.write_calls().len();
    let second = f.w.run(&deploy_request(&f, APPLY), None).await;
    assert!(second.ok, "{}", second.table());
    assert_eq!(
        second.deploy.as_ref().unwrap().verdict,
        DeployVerdict::AlreadyDeployed
    );
    assert_eq!(f.w.emu.write_calls().len(), writes, "no write call");
    assert!(
        second
            .table()
            .contains("environment properties: they match deploy.toml"),
        "{}",
        second.table()
    );

    // Without --apply-env, a property changed in the console is a warning, not applied.
    f.w.emu
        .set_environment_property(&f.w.environment, "CHANGE", "drifted");
    let third =
        f.w.run(&deploy_request(&f, EnvChoice::default()), None)
            .await;
    assert!(third.ok, "{}", third.table());
    assert_eq!(f.w.emu.write_calls().len(), writes, "nothing applied");
    assert!(
        third.table().contains("1 change(s) NOT applied"),
        "{}",
        third.table()
    );
    assert!(!third.table().contains("drifted"), "{}", third.table());
    assert_eq!(
        f.w.emu.options(&f.w.environment, ENVIRONMENT)["CHANGE"],
        "drifted"
    );
}

#[tokio::test]
async fn deploy_with_apply_env_waits_for_the_lock_and_compares_after_it() {
    let f = fixture().await;
    f.w.emu
        .add_version(&f.w.application, "v1", &f.w.bucket, "k", "PROCESSED");
    f.w.emu.start_foreign_deploy(
        &f.w.environment,
        "v1",
        Script::success(Duration::from_millis(1000)),
    );
    let started = std::time::Instant::now();
    let report = f.w.run(&deploy_request(&f, APPLY), None).await;
    assert!(report.ok, "{}", report.table());
    let foreign_end = f.w.emu.finishes(&f.w.environment)[0];
    let waited_from = f.w.emu.calls_of("DescribeEnvironments");
    assert!(
        waited_from
            .iter()
            .any(|c| c.at > started && c.at < foreign_end),
        "the deploy met the environment busy"
    );
    let ours = f.w.emu.calls_of("UpdateEnvironment");
    let ours: Vec<_> = ours.iter().filter(|c| c.status == 200).collect();
    assert_eq!(ours.len(), 1, "one UpdateEnvironment of ours");
    assert!(
        ours[0].at >= foreign_end,
        "the deploy waited for the other one"
    );
    // The properties were read once the environment was ours: read after the other deploy
    // (the preflight's read, before the version was created, checks names only).
    let version_at = f.w.emu.calls_of("CreateApplicationVersion")[0].at;
    let reads = f.w.emu.calls_of("DescribeConfigurationSettings");
    let (preflight, diff): (Vec<_>, Vec<_>) = reads.iter().partition(|c| c.at < version_at);
    assert_eq!(preflight.len(), 1, "the preflight reads them once");
    assert!(
        !diff.is_empty() && diff.iter().all(|c| c.at >= foreign_end),
        "compared before the lock was ours"
    );
    assert_eq!(f.w.emu.options(&f.w.environment, ENVIRONMENT)["NEW"], "n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_deploy_binary_applies_the_env_and_never_shows_a_secret_value() {
    let f = fixture().await;
    let w = &f.w;
    let bundle = w.bundle.display().to_string();
    let summary = w.dir.path().join("github_summary");
    let outputs = w.dir.path().join("github_output");
    std::fs::write(&summary, "").unwrap();
    std::fs::write(&outputs, "").unwrap();
    let mut captured = Transcript::default();
    let deploy = |extra: &[&str]| {
        let mut args = vec![
            "--json",
            "deploy",
            "--release",
            "v1.0.0",
            "--bundle",
            bundle.as_str(),
        ];
        args.extend_from_slice(extra);
        let mut cmd = xtask(w, &args);
        cmd.env("AWS_ENDPOINT_URL_S3", services::env("MOTO_ENDPOINT"))
            .env("GITHUB_ACTIONS", "true")
            .env("GITHUB_STEP_SUMMARY", &summary)
            .env("GITHUB_OUTPUT", &outputs)
            .env_remove("GITHUB_TOKEN");
        cmd
    };

    let (_, err) = captured.succeeds(deploy(&["--dry-run"]), None).await;
    assert!(err.contains("5 change(s) NOT applied"), "{err}");
    assert!(w.emu.write_calls().is_empty());

    let (ok, _, err) = captured.run(deploy(&["--prune"]), None).await;
    assert!(!ok && err.contains("--apply-env"), "{err}");

    let (out, err) = captured.succeeds(deploy(&["--apply-env"]), None).await;
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(report["env"]["sent"], true, "{out}");
    assert_eq!(report["deploy"]["verdict"], "succeeded", "{out}");
    assert!(err.contains("5 change(s) sent with the version"), "{err}");

    let (out, _) = captured
        .succeeds(xtask(w, &["--json", "env", "diff"]), None)
        .await;
    let diff: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(diff["changes"], 0, "{out}");

    let writes = w.emu.write_calls().len();
    let (_, err) = captured.succeeds(deploy(&["--apply-env"]), None).await;
    assert!(err.contains("they match deploy.toml"), "{err}");
    assert_eq!(
        w.emu.write_calls().len(),
        writes,
        "a second deploy writes nothing"
    );

    let summary = std::fs::read_to_string(&summary).unwrap();
    assert!(summary.contains("environment properties"), "{summary}");
    captured.keep(&summary);
    captured.keep(&std::fs::read_to_string(&outputs).unwrap());
    captured.assert_no_secret(w);
}

#[tokio::test]
async fn deploy_with_apply_env_is_judged_by_the_verdict_and_refuses_an_unresolvable_secret() {
    let mut f = fixture().await;
    // EB fails the deploy: the verdict is the deploy's, EB drops the settings with it, and
    // the rollback sends the previous version only.
    f.w.emu.script_next_deploy(
        &f.w.environment,
        Script::failure(Duration::from_millis(50), "Failed to deploy application."),
    );
    let report = f.w.run(&deploy_request(&f, APPLY), None).await;
    assert!(!report.ok, "{}", report.table());
    assert_eq!(
        report.deploy.as_ref().unwrap().verdict,
        DeployVerdict::Failed
    );
    let updates: Vec<_> =
        f.w.emu
            .calls_of("UpdateEnvironment")
            .into_iter()
            .filter(|c| c.status == 200)
            .collect();
    assert_eq!(updates.len(), 2, "the deploy, then the rollback");
    assert!(updates[0]
        .param("OptionSettings.member.1.Namespace")
        .is_some());
    assert_eq!(updates[1].param("VersionLabel"), Some("v0"));
    assert_eq!(updates[1].param("OptionSettings.member.1.Namespace"), None);
    assert_eq!(
        f.w.emu.options(&f.w.environment, ENVIRONMENT)["CHANGE"],
        "old"
    );
    let table = report.table();
    assert!(
        table.contains("5 change(s) sent with the version") && table.contains("deploy FAILED"),
        "{table}"
    );
    no_secret_in(&table);

    // A reference that cannot be resolved: the deploy stage fails before any update.
    f.tables = "required = []\n\n[environments.staging.secrets]\nDATABASE_URL = { secret = \"antenna/staging/no-such-secret\" }\n".into();
    let before = f.w.emu.calls_of("UpdateEnvironment").len();
    let report = f.w.run(&deploy_request(&f, APPLY), None).await;
    assert!(!report.ok);
    let deploy = report.stages.iter().find(|s| s.stage == "deploy").unwrap();
    assert!(
        deploy
            .output
            .contains("no secret \"antenna/staging/no-such-secret\""),
        "{}",
        deploy.output
    );
    assert_eq!(f.w.emu.calls_of("UpdateEnvironment").len(), before);
    // Without --apply-env the same diff is only a warning: the version is deployed.
    let report =
        f.w.run(&deploy_request(&f, EnvChoice::default()), None)
            .await;
    assert!(report.ok, "{}", report.table());
    assert!(
        report.table().contains("problem: DATABASE_URL: no secret"),
        "{}",
        report.table()
    );
}
