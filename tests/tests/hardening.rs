//! Hostile and careless inputs through the real `xtask` binary: no secret leaves through any
//! output, nothing panics, every bad value is refused by name and nothing is written.
//! No AWS, no Docker: each case fails before anything needs a server.

use std::path::{Path, PathBuf};
use std::process::Output;

use integration::deploy_tree::{repository_copy, write_executable, DeployToml};
use integration::{files_under, output_text as text, xtask};

/// Runs the binary in `dir` with `args` and extra variables.
fn run_with(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> Output {
    let mut cmd = xtask();
    cmd.arg("--config")
        .arg(dir.join("deploy.toml"))
        .args(args)
        .env("DEPLOY_RELEASE", "v9")
        .env("DEPLOY_ACCOUNT", "123456789012")
        .env_remove("DEPLOY_URL")
        .env_remove("GITHUB_ACTIONS")
        .env_remove("GITHUB_OUTPUT")
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("REDIS_URL")
        .env_remove("CELERY_BROKER_URL")
        .env("AWS_ACCESS_KEY_ID", "")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .current_dir(dir);
    for (k, v) in vars {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// Fails when `secret` is in any line of `out` other than an `::add-mask::` command, or in any
/// file written under `written` (the output folder, the job summary...).
fn assert_not_leaked(case: &str, out: &Output, secret: &str, written: &[&Path]) {
    for line in text(out).lines() {
        if line.starts_with("::add-mask::") {
            continue;
        }
        assert!(
            !line.contains(secret),
            "{case}: the secret {secret:?} is printed:\n{line}\n--- all output:\n{}",
            text(out)
        );
    }
    for w in written {
        let files = if w.is_dir() {
            files_under(w)
        } else {
            vec![w.to_path_buf()]
        };
        for f in files {
            let bytes = std::fs::read(&f).unwrap_or_default();
            let content = String::from_utf8_lossy(&bytes);
            assert!(
                !content.contains(secret),
                "{case}: the secret {secret:?} is in {}",
                f.display()
            );
        }
    }
}

fn masked(out: &Output, secret: &str) -> bool {
    text(out)
        .lines()
        .any(|l| l.starts_with("::add-mask::") && l.contains(secret))
}

/// A configuration of our own with every kind of check, whose credentials come from the
/// variables named; `staging` adds keys to the environment.
fn every_check(staging: &str) -> DeployToml {
    DeployToml::antenna("antenna")
        .environment(
            "staging",
            &format!("eb_environment = \"antenna-staging\"\ntimeouts = {{ verify = \"2s\" }}\n{staging}"),
        )
        .check(
            "staging",
            "kind = \"redis\"\nurl_env = \"REDIS_URL\"\ntimeout = \"1s\"",
        )
        .check(
            "staging",
            "kind = \"celery\"\nbroker_url_env = \"CELERY_BROKER_URL\"\ntimeout = \"1s\"",
        )
        .check(
            "staging",
            "kind = \"flower\"\nurl = \"http://127.0.0.1:9\"\npassword_env = \"FLOWER_PW\"\ntimeout = \"1s\"",
        )
}

#[test]
fn mistyped_urls_never_print_their_password() {
    const PW: &str = "Zq8rPassw0rdValue";
    let dir = tempfile::tempdir().unwrap();
    every_check("").write(dir.path());
    for shape in [
        "rediss//:{PW}@cache.example:6379/0",
        "rediss:/:{PW}@cache.example:6379",
        "https//user:{PW}@cache.example",
        "redis:{PW}@cache.example",
        "rediss://:{PW}@[bad",
    ] {
        let url = shape.replace("{PW}", PW);
        for var in ["REDIS_URL", "CELERY_BROKER_URL"] {
            let good = "redis://127.0.0.1:9/0";
            let vars = [
                ("GITHUB_ACTIONS", "true"),
                ("REDIS_URL", if var == "REDIS_URL" { &url } else { good }),
                (
                    "CELERY_BROKER_URL",
                    if var == "CELERY_BROKER_URL" {
                        &url
                    } else {
                        good
                    },
                ),
                ("FLOWER_USER", "admin"),
                ("FLOWER_PW", "flowerpw"),
            ];
            let out = run_with(dir.path(), &["verify", "--env", "staging"], &vars);
            let case = format!("{var}={shape}");
            assert!(!out.status.success(), "{case}: exited 0\n{}", text(&out));
            assert!(
                text(&out).contains(var),
                "{case}: the variable is not named\n{}",
                text(&out)
            );
            assert_not_leaked(&case, &out, PW, &[]);
            assert!(masked(&out, PW), "{case}: no ::add-mask::\n{}", text(&out));
        }
    }
}

#[test]
fn credentials_from_the_command_line_the_file_and_custom_variables_are_masked() {
    const PW: &str = "Hq3urlPassw0rd";
    const FLOWER: &str = "Fl0werCustomPw";
    const FILE_PW: &str = "F1lePassw0rdInToml";
    let dir = tempfile::tempdir().unwrap();
    every_check(&format!("url = \"http://admin:{FILE_PW}@127.0.0.1:9\"")).write(dir.path());
    let base = [
        ("GITHUB_ACTIONS", "true"),
        ("REDIS_URL", "redis://127.0.0.1:9/0"),
        ("CELERY_BROKER_URL", "redis://127.0.0.1:9/0"),
        ("FLOWER_USER", "admin"),
        ("FLOWER_PW", FLOWER),
    ];
    // A mistyped --url or DEPLOY_URL is refused by its name, its password masked.
    let url = format!("https//u:{PW}@127.0.0.1:9");
    let out = run_with(
        dir.path(),
        &["verify", "--env", "staging", "--url", &url],
        &base,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("error: --url: https//u:***@127.0.0.1:9 is not a URL"),
        "{}",
        text(&out)
    );
    assert_not_leaked(&url, &out, PW, &[]);
    assert!(masked(&out, PW), "--url {url}: {}", text(&out));
    let mut vars = base.to_vec();
    vars.push(("DEPLOY_URL", &url));
    let out = run_with(dir.path(), &["verify", "--env", "staging"], &vars);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("error: DEPLOY_URL: https//u:***@127.0.0.1:9 is not a URL"),
        "{}",
        text(&out)
    );
    assert!(
        !text(&out).contains("deploy.toml:"),
        "blamed on the file: {}",
        text(&out)
    );
    assert_not_leaked(&url, &out, PW, &[]);
    assert!(masked(&out, PW), "DEPLOY_URL {url}: {}", text(&out));

    // Well-formed URLs with credentials: every secret masked, none printed.
    {
        let url = format!("http://u:{PW}@127.0.0.1:9");
        let out = run_with(
            dir.path(),
            &["verify", "--env", "staging", "--url", &url],
            &base,
        );
        assert!(!out.status.success());
        assert_not_leaked(&url, &out, PW, &[]);
        assert_not_leaked(&url, &out, FLOWER, &[]);
        assert_not_leaked(&url, &out, FILE_PW, &[]);
        assert!(masked(&out, PW), "--url {url}: {}", text(&out));
        assert!(masked(&out, FLOWER), "custom password_env: {}", text(&out));
        assert!(masked(&out, FILE_PW), "url in deploy.toml: {}", text(&out));

        let mut vars = base.to_vec();
        vars.push(("DEPLOY_URL", &url));
        let out = run_with(dir.path(), &["verify", "--env", "staging"], &vars);
        assert!(!out.status.success());
        assert_not_leaked(&url, &out, PW, &[]);
        assert!(masked(&out, PW), "DEPLOY_URL {url}: {}", text(&out));
    }
}

/// Each case puts a secret somewhere that ends up in the zip: refused by rule and place,
/// the value never printed, nothing written.
#[test]
fn secrets_anywhere_in_the_bundle_are_refused() {
    const S: &str = "Xk7SecretValue99";
    struct Case {
        name: &'static str,
        file: &'static str,
        /// Appended to the file (or replacing `from` with `to` when `from` is set).
        from: Option<&'static str>,
        to: String,
        expect: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "files: content",
            file: ".ebextensions/10_files.config",
            from: None,
            to: format!("files:\n  /etc/app.env:\n    mode: \"000600\"\n    content: |\n      USE_X=1\n      DATABASE_PASSWORD={S}\n"),
            expect: &["10_files.config", "EX007", "files./etc/app.env", "DATABASE_PASSWORD"],
        },
        Case {
            name: "files: URL with a password",
            file: ".ebextensions/10_files.config",
            from: None,
            to: format!("files:\n  /etc/app.conf:\n    content: \"broker = redis://:{S}@cache:6379/0\"\n"),
            expect: &["EX007", "a URL with a password"],
        },
        Case {
            name: "commands env",
            file: ".ebextensions/10_cmd.config",
            from: None,
            to: format!("commands:\n  01_fetch:\n    command: ./fetch.sh\n    env:\n      API_TOKEN: {S}\n"),
            expect: &["EX007", "commands.01_fetch: env `API_TOKEN`"],
        },
        Case {
            name: "container_commands env",
            file: ".ebextensions/10_cmd.config",
            from: None,
            to: format!("container_commands:\n  01_x:\n    command: echo hi\n    env:\n      DATABASE_URL: postgres://u:{S}@db/x\n"),
            expect: &["EX007", "container_commands.01_x: env `DATABASE_URL`"],
        },
        Case {
            name: "container_commands command",
            file: ".ebextensions/10_cmd.config",
            from: None,
            to: format!("container_commands:\n  01_x:\n    command: \"mysql --password={S} -e 'select 1'\"\n"),
            expect: &["EX007", "container_commands.01_x"],
        },
        Case {
            name: "option_settings",
            file: ".ebextensions/00_setup.config",
            from: Some("    USE_DOCKER: \"yes\""),
            to: format!("    USE_DOCKER: \"yes\"\n    DJANGO_SECRET_KEY: {S}"),
            expect: &["EX006", "DJANGO_SECRET_KEY"],
        },
        Case {
            name: "platform hook",
            file: ".platform/hooks/postdeploy/01_migrate.sh",
            from: None,
            to: format!("\nexport AWS_SECRET_ACCESS_KEY={S}\n"),
            expect: &["01_migrate.sh:", "EX007", "AWS_SECRET_ACCESS_KEY"],
        },
        Case {
            name: "container command",
            file: "Dockerrun.template.json",
            from: Some("\"command\": [\"/start\"]"),
            to: format!("\"command\": [\"/start\", \"--db-password={S}\"]"),
            expect: &["Dockerrun.template.json:", "DR020", "`command`"],
        },
        Case {
            name: "container entryPoint",
            file: "Dockerrun.template.json",
            from: Some("\"command\": [\"/start\"]"),
            to: format!("\"entryPoint\": [\"/bin/sh\", \"-c\", \"CELERY_BROKER_URL=redis://:{S}@cache:6379 /start\"], \"command\": [\"/start\"]"),
            expect: &["Dockerrun.template.json:", "DR020", "`entryPoint`"],
        },
    ];
    for case in &cases {
        let dir = repository_copy();
        let path = dir.path().join(case.file);
        let old = std::fs::read_to_string(&path).unwrap_or_default();
        let new = match case.from {
            Some(from) => {
                assert!(old.contains(from), "{}: fixture text not found", case.name);
                old.replacen(from, &case.to, 1)
            }
            None => format!("{old}{}", case.to),
        };
        std::fs::write(&path, new).unwrap();
        let summary = dir.path().join("summary.md");
        std::fs::write(&summary, "").unwrap();
        let vars = [
            ("GITHUB_ACTIONS", "true"),
            ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
        ];
        let out = run_with(dir.path(), &["bundle", "--env", "staging"], &vars);
        let all = text(&out);
        assert!(!out.status.success(), "{}: exited 0\n{all}", case.name);
        for e in case.expect {
            assert!(all.contains(e), "{}: expected {e:?} in\n{all}", case.name);
        }
        let out_dir = dir.path().join("target/deploy");
        assert!(
            !out_dir.join("staging/deploy.zip").exists(),
            "{}: a bundle was written",
            case.name
        );
        assert_not_leaked(case.name, &out, S, &[&out_dir, &summary]);

        // The preview shows the files: the value is masked there, in the summary too.
        let out = run_with(
            dir.path(),
            &["preview", "--env", "staging", "--against", "base"],
            &vars,
        );
        assert!(
            !out.status.success(),
            "{}: preview exited 0\n{}",
            case.name,
            text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("***"),
            "{}: the preview shows no mask\n{}",
            case.name,
            text(&out)
        );
        assert_not_leaked(&format!("preview: {}", case.name), &out, S, &[&summary]);
        assert!(
            masked(&out, S),
            "{}: preview without ::add-mask::",
            case.name
        );
    }
}

#[test]
fn links_out_of_the_repository_and_non_utf8_names_are_refused() {
    const CREDS: &str = "aws_secret_access_key = Lnk5ecretOutside";
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("credentials"), CREDS).unwrap();
    std::fs::create_dir(outside.path().join("dir")).unwrap();
    std::fs::write(outside.path().join("dir/creds"), CREDS).unwrap();
    let cases: [(&str, PathBuf, PathBuf); 3] = [
        (
            "file link under .platform",
            outside.path().join("credentials"),
            PathBuf::from(".platform/hooks/postdeploy/creds"),
        ),
        (
            "file link under .ebextensions",
            outside.path().join("credentials"),
            PathBuf::from(".ebextensions/creds.config"),
        ),
        (
            "directory link",
            outside.path().join("dir"),
            PathBuf::from(".ebextensions/aws"),
        ),
    ];
    for (name, target, link) in cases {
        let dir = repository_copy();
        std::os::unix::fs::symlink(&target, dir.path().join(&link)).unwrap();
        let out = run_with(dir.path(), &["bundle", "--env", "staging"], &[]);
        let all = text(&out);
        assert!(!out.status.success(), "{name}: exited 0\n{all}");
        assert!(
            all.contains(link.to_str().unwrap()),
            "{name}: the link is not named\n{all}"
        );
        assert!(all.contains("outside the repository"), "{name}: {all}");
        let out_dir = dir.path().join("target/deploy");
        assert!(!out_dir.join("staging/deploy.zip").exists(), "{name}");
        assert_not_leaked(name, &out, "Lnk5ecretOutside", &[&out_dir]);
    }

    // A link that stays inside the repository is fine.
    let dir = repository_copy();
    write_executable(&dir.path().join("shared.sh"), "#!/bin/sh\necho ok\n");
    std::os::unix::fs::symlink(
        dir.path().join("shared.sh"),
        dir.path().join(".platform/hooks/postdeploy/02_shared.sh"),
    )
    .unwrap();
    let out = run_with(dir.path(), &["bundle", "--env", "staging"], &[]);
    assert!(out.status.success(), "{}", text(&out));

    // A file name that is not UTF-8.
    use std::os::unix::ffi::OsStrExt;
    let dir = repository_copy();
    let name = std::ffi::OsStr::from_bytes(b"bad-\xff.config");
    std::fs::write(
        dir.path().join(".ebextensions").join(name),
        "option_settings: {}\n",
    )
    .unwrap();
    let out = run_with(dir.path(), &["bundle", "--env", "staging"], &[]);
    let all = text(&out);
    assert!(!out.status.success(), "non-UTF-8 name: exited 0\n{all}");
    assert!(all.contains("not UTF-8"), "{all}");
    assert!(all.contains(".ebextensions/bad-"), "{all}");
    assert!(!dir.path().join("target/deploy/staging/deploy.zip").exists());
}

/// Each bad value: refused with exit status 1 (no panic), the key or variable named, what is
/// allowed said, nothing written.
#[test]
fn bad_values_are_refused_by_name() {
    let staging = "[environments.staging]\neb_environment = \"antenna-staging\"\n";
    let check =
        "kind = \"http\"\npath = \"/api/v2/\"\nheaders = { \"X-Forwarded-Proto\" = \"https\" }\n";
    let long_app = format!("application = \"{}\"", "a".repeat(20_000));
    /// (name, text replaced in deploy.toml, replacement, variables, expected in the error)
    type Case<'a> = (
        &'a str,
        &'a str,
        String,
        &'a [(&'a str, &'a str)],
        &'a [&'a str],
    );
    let cases: Vec<Case> = vec![
        ("empty application", "application = \"antenna\"", "application = \"\"".into(), &[], &["deploy.toml:", "application: is empty"]),
        ("long application", "application = \"antenna\"", long_app, &[], &["application: is 20000 characters long: Elastic Beanstalk allows 1 to 100"]),
        ("availability zone", "region = \"us-west-2\"", "region = \"us-west-2a\"".into(), &[], &["region: \"us-west-2a\" is not an AWS region code"]),
        ("region display name", "region = \"us-west-2\"", "region = \"US West (Oregon)\"".into(), &[], &["region: \"US West (Oregon)\" is not an AWS region code"]),
        ("account", "application = \"antenna\"", "application = \"antenna\"\naccount = \"12345\"".into(), &[], &["account: \"12345\" is not an AWS account id: expected 12 digits"]),
        ("long environment name", staging, staging.replace("antenna-staging", &"x".repeat(41)), &[], &["environments.staging.eb_environment:", "4 to 40"]),
        ("environment name charset", staging, staging.replace("antenna-staging", "antenna_staging"), &[], &["environments.staging.eb_environment:", "letters, digits and hyphens"]),
        ("bucket", staging, format!("{staging}bucket = \"My_Bucket\"\n"), &[], &["environments.staging.bucket: \"My_Bucket\" is not a valid S3 bucket name"]),
        ("expect_status", check, format!("{check}expect_status = 600\n"), &[], &["environments.staging.checks[0].expect_status: 600 is not an HTTP status: expected 100-599"]),
        ("zero deploy timeout", staging, format!("{staging}timeouts = {{ deploy = \"0s\" }}\n"), &[], &["environments.staging.timeouts.deploy: a zero duration"]),
        ("huge verify timeout", staging, format!("{staging}timeouts = {{ verify = \"300000000000y\" }}\n"), &[], &["environments.staging.timeouts.verify: duration \"300000000000y\" is too long"]),
        ("huge check timeout", check, format!("{check}timeout = \"300000000000y\"\n"), &[], &["environments.staging.checks[0]: duration \"300000000000y\" is too long"]),
        ("boolean", staging, format!("{staging}rollback = \"yes\"\n"), &[], &["environments.staging.rollback: invalid type: string \"yes\", expected a boolean"]),
        ("negative offset", "host_port_offset = 8000", "host_port_offset = -1".into(), &[], &["environments.local.host_port_offset: invalid value: integer `-1`, expected u16"]),
        ("duplicate key", staging, format!("{staging}rollback = true\nrollback = false\n"), &[], &["deploy.toml:", "duplicate key"]),
        ("empty url_env", check, "kind = \"redis\"\nurl_env = \"\"\n".into(), &[], &["environments.staging.checks[0].url_env: is empty: expected the name of an environment variable"]),
        ("url in the file", staging, format!("{staging}url = \"ftp://host\"\n"), &[], &["environments.staging.url: ftp://host is not an http:// or https:// URL"]),
        ("DEPLOY_ACCOUNT", staging, staging.into(), &[("DEPLOY_ACCOUNT", "1234")], &["DEPLOY_ACCOUNT: \"1234\" is not an AWS account id"]),
        ("DEPLOY_REGION", staging, staging.into(), &[("DEPLOY_REGION", "us-west-2a")], &["DEPLOY_REGION: \"us-west-2a\" is not an AWS region code"]),
        ("DEPLOY_BUCKET", staging, staging.into(), &[("DEPLOY_BUCKET", "Bad_Bucket")], &["DEPLOY_BUCKET: \"Bad_Bucket\" is not a valid S3 bucket name"]),
        ("DEPLOY_URL", staging, staging.into(), &[("DEPLOY_URL", "not a url")], &["DEPLOY_URL: not a url is not a URL"]),
    ];
    for (name, from, to, vars, expect) in cases {
        let dir = repository_copy();
        let path = dir.path().join("deploy.toml");
        let old = std::fs::read_to_string(&path).unwrap();
        assert!(old.contains(from), "{name}: fixture text not found");
        std::fs::write(&path, old.replacen(from, &to, 1)).unwrap();
        for args in [
            &["bundle", "--env", "staging"][..],
            &["iam-policy", "--env", "staging"][..],
        ] {
            let out = run_with(dir.path(), args, vars);
            let all = text(&out);
            assert_eq!(out.status.code(), Some(1), "{name} ({}): {all}", args[0]);
            assert!(!all.contains("panicked"), "{name}: {all}");
            for e in expect {
                assert!(
                    all.contains(e),
                    "{name} ({}): expected {e:?} in\n{all}",
                    args[0]
                );
            }
            assert!(out.stdout.is_empty(), "{name}: {all}");
            assert!(
                !dir.path().join("target/deploy").exists(),
                "{name}: written"
            );
        }
    }

    // A deploy.toml that is not UTF-8: where, and no wrong hint.
    let dir = repository_copy();
    let path = dir.path().join("deploy.toml");
    let mut bytes = std::fs::read(&path).unwrap();
    bytes.extend_from_slice(b"\n# caf\xe9\n");
    std::fs::write(&path, bytes).unwrap();
    let out = run_with(dir.path(), &["bundle", "--env", "staging"], &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("the file is not UTF-8 text: save it as UTF-8"),
        "{all}"
    );
    assert!(!all.contains("hint: run from the repository root"), "{all}");
    assert_eq!(all.matches("UTF-8").count(), 2, "said once: {all}");
}

/// Commands do what was asked or refuse, by name: nothing is dropped silently, no command that
/// works on AWS only falls back to a local deploy, and nothing is written.
#[test]
fn commands_refuse_what_they_cannot_do() {
    /// (case, arguments, expected in the output)
    type Case<'a> = (&'a str, &'a [&'a str], &'a [&'a str]);
    let cases: Vec<Case> = vec![
        ("upload without --env", &["upload", "--bundle", "b.zip"], &["`upload` works on Elastic Beanstalk environments only: pass --env NAME", "this file has production, staging"]),
        ("version without --env", &["version"], &["`version` works on Elastic Beanstalk environments only"]),
        ("upload to local", &["upload", "--env", "local", "--bundle", "b.zip"], &["environment \"local\"", "`upload` works on Elastic Beanstalk environments only: pick one of production, staging"]),
        ("version to local", &["version", "--env", "local"], &["`version` works on Elastic Beanstalk environments only"]),
        ("stage flags on local", &["deploy", "--env", "local", "--only", "deploy", "--no-rollback"], &["--only, --no-rollback apply to Elastic Beanstalk environments only: `local` is a local environment", "drop them"]),
        ("--from on local", &["deploy", "--from", "verify"], &["--from apply to Elastic Beanstalk environments only", "drop it"]),
        ("--label on local", &["deploy", "--env", "local", "--label", "v1-abc"], &["--label apply to Elastic Beanstalk environments only"]),
        ("--apply-env on local", &["deploy", "--env", "local", "--apply-env"], &["--apply-env apply to Elastic Beanstalk environments only"]),
        ("--from with --only", &["deploy", "--env", "staging", "--from", "upload", "--only", "deploy"], &["'--from <FROM>' cannot be used with '--only <ONLY>'"]),
        ("two unknown stages", &["deploy", "--env", "staging", "--only", "deploy,shipit,verfy"], &["unknown stages \"shipit\", \"verfy\""]),
        ("--label with a new bundle", &["deploy", "--env", "staging", "--label", "v1-abc"], &["--label deploys an existing application version, but this run would also run render, bundle, upload, version"]),
        ("--label from upload", &["deploy", "--env", "staging", "--label", "v1-abc", "--from", "upload"], &["would also run upload, version"]),
        ("--label with --bundle", &["deploy", "--env", "staging", "--label", "v1-abc", "--only", "deploy", "--bundle", "b.zip"], &["would also upload the bundle given with --bundle"]),
        ("--force on AWS", &["deploy", "--env", "staging", "--force"], &["--force restarts a local stack", "`staging` is an Elastic Beanstalk environment"]),
        ("render --stdout --out", &["render", "--stdout", "--out", "x.json"], &["'--stdout' cannot be used with '--out <OUT>'"]),
        ("--from upload without a bundle", &["deploy", "--env", "staging", "--from", "upload"], &["no bundle at ", "target/deploy/staging/deploy.zip: run `cargo xtask bundle --env staging` first"]),
    ];
    for (name, args, expect) in cases {
        let dir = repository_copy();
        let out = run_with(dir.path(), args, &[]);
        let all = text(&out);
        assert_ne!(out.status.code(), Some(0), "{name}: {all}");
        assert!(!all.contains("panicked"), "{name}: {all}");
        for e in expect {
            assert!(all.contains(e), "{name}: expected {e:?} in\n{all}");
        }
        assert!(
            files_under(&dir.path().join("target")).is_empty(),
            "{name}: wrote {:?}",
            files_under(&dir.path().join("target"))
        );
    }
}

/// A template with a key written twice is refused with both lines, nothing written; `render`
/// into the bundle's folder keeps the pair one unit (a zip of another render goes).
#[test]
fn duplicate_template_keys_and_render_next_to_a_bundle() {
    let dir = repository_copy();
    let template = dir.path().join("Dockerrun.template.json");
    let original = std::fs::read_to_string(&template).unwrap();
    let doubled = original.replacen(
        "      \"essential\": true,\n",
        "      \"essential\": true,\n      \"essential\": false,\n",
        1,
    );
    assert_ne!(doubled, original, "fixture text not found");
    std::fs::write(&template, &doubled).unwrap();
    let out = run_with(dir.path(), &["bundle", "--env", "staging"], &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("Dockerrun.template.json:8:7: error DR000[dockerrun-invalid]: duplicate key \"essential\" in `containerDefinitions[0]`: first on line 7, again on line 8"),
        "{all}"
    );
    assert!(files_under(&dir.path().join("target")).is_empty());

    std::fs::write(&template, &original).unwrap();
    let out = run_with(dir.path(), &["bundle", "--env", "staging"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    let folder = dir.path().join("target/deploy/staging");
    assert!(folder.join("deploy.zip").is_file());
    // The same release: the zip holds what render writes, so it stays.
    let out = run_with(dir.path(), &["render", "--env", "staging"], &[]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(folder.join("deploy.zip").is_file());
    // Another release: the zip would no longer match the file next to it, so it goes.
    let out = run_with(
        dir.path(),
        &["render", "--env", "staging", "--release", "v10"],
        &[],
    );
    let all = text(&out);
    assert!(out.status.success(), "{all}");
    assert!(
        all.contains("deploy.zip: it held another Dockerrun file"),
        "{all}"
    );
    assert!(!folder.join("deploy.zip").exists());
    let rendered = std::fs::read_to_string(folder.join("Dockerrun.aws.json")).unwrap();
    assert!(rendered.contains(":v10\""), "{rendered}");
    let left: Vec<_> = files_under(&folder)
        .into_iter()
        .filter(|p| p.to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
