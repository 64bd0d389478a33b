//! The local target against the machine's Docker Engine, with the demo image (built once per
//! run of this binary). Each test has its own stack (network and labels) and host port, and
//! removes what it created.

use std::time::{Duration, Instant};

use integration::deploy_tree::{write_executable, write_template, DeployToml};
use integration::local_world::{
    api_check, assert_verified, demo_app, demo_image, docker, dockerrun, instance_checks_app, port,
    prebuilt_latest, request, stack_containers, verify_agent, write_hook, Cleanup, TestStack,
    DEMO_REPOSITORY, IMAGE,
};
use integration::services;
use pipeline::docker::{Engine, OutputMode};
use pipeline::local;

#[tokio::test]
async fn v1_then_v2_replace_and_a_failing_v3_leaves_v2_running() {
    let s = TestStack::new(0).await;
    let (stack, port) = (&s.name, s.port);

    let v1 = local::run::run(&s.version("v1")).await.expect("v1 deploys");
    assert_eq!(v1.containers.len(), 4);
    assert_verified(v1.verified.as_ref(), port);
    assert!(v1.replaced.is_empty());
    assert_eq!(s.answering_release().await, "v1");
    let names: Vec<&str> = v1.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        ["ml", "web", "worker", "awscli"],
        "ml starts before the containers linking to it"
    );
    let web = v1.containers.iter().find(|c| c.name == "web").unwrap();
    assert_eq!(web.ports, [format!("127.0.0.1:{port}->5000/tcp")]);
    assert_eq!(web.environment, "test");

    // Memory limits and the labels EB's agent sets.
    let out = docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.Memory}} {{index .Config.Labels \"com.amazonaws.ecs.container-name\"}} {{index .Config.Labels \"deploy.local.version\"}}",
        &web.id,
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{} web v1", 128 * 1024 * 1024)
    );
    let awscli = v1.containers.iter().find(|c| c.name == "awscli").unwrap();
    let out = docker(&[
        "inspect",
        "-f",
        "{{.HostConfig.MemoryReservation}}",
        &awscli.id,
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        (32 * 1024 * 1024).to_string()
    );

    // Links are network aliases: the worker reaches ml by its alias.
    let worker = v1.containers.iter().find(|c| c.name == "worker").unwrap();
    let out = docker(&[
        "exec",
        &worker.id,
        "demo",
        "check",
        "http://model-server:2000/livez",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let v2 = local::run::run(&s.version("v2")).await.expect("v2 deploys");
    assert_eq!(v2.replaced, ["v1"]);
    assert_eq!(s.answering_release().await, "v2");
    let now = s.containers().await;
    assert_eq!(now.len(), 4, "v1's containers are gone: {now:?}");
    assert!(
        now.iter().all(|c| c.version == "v2" && c.running),
        "{now:?}"
    );

    let err = local::run::run(&s.antenna("v3", &["fail", "7", "cannot connect to the database"]))
        .await
        .expect_err("v3's essential web container exits");
    let err = format!("{err:#}");
    assert!(err.starts_with(&format!("the local deploy of version v3 to stack {stack} failed: essential container \"web\" exited with code 7")), "{err}");
    assert!(
        err.contains(&format!("--- logs of web ({stack}-web-")),
        "{err}"
    );
    assert!(
        err.contains("demo: cannot connect to the database"),
        "{err}"
    );
    assert!(
        err.ends_with("the previous version v2 runs again (4 container(s) restarted)"),
        "{err}"
    );
    assert_eq!(s.answering_release().await, "v2");
    let now = s.containers().await;
    assert!(
        now.iter().all(|c| c.version == "v2" && c.running),
        "v3's containers are removed: {now:?}"
    );

    let down = local::down(None, stack).await.unwrap();
    assert_eq!(down.containers.len(), 4);
    assert!(down.network_removed);
    assert!(s.containers().await.is_empty());
    let engine = Engine::connect(None).await.unwrap();
    assert!(
        !engine.network_exists(stack).await.unwrap(),
        "down removes the network"
    );
    let again = local::down(None, stack).await.unwrap();
    assert!(
        again.containers.is_empty() && !again.network_removed,
        "down is idempotent"
    );
}

#[tokio::test]
async fn postdeploy_hooks_run_after_start_and_a_failing_one_fails_the_deploy() {
    let s = TestStack::new(1).await;
    let hooks = tempfile::tempdir().unwrap();
    // Like the repository's 01_migrate.sh, scoped to this test's stack.
    write_hook(
        hooks.path(),
        "01_migrate.sh",
        r#"c=$(docker ps -q --filter "label=deploy.local.stack=$DEPLOY_LOCAL_STACK" --filter label=com.amazonaws.ecs.container-name=web | head -n 1)
[ -n "$c" ] || { echo "no web container" >&2; exit 1; }
docker exec "$c" python manage.py migrate --noinput"#,
    );

    let mut req = s.version("v1");
    req.postdeploy_hooks = Some(hooks.path().to_path_buf());
    let v1 = local::run::run(&req)
        .await
        .expect("v1 deploys and its hook passes");
    assert_eq!(v1.hooks, ["01_migrate.sh"]);

    write_hook(
        hooks.path(),
        "02_check.sh",
        "echo 'cache warm-up failed' >&2\nexit 4",
    );
    let mut req = s.version("v2");
    req.postdeploy_hooks = Some(hooks.path().to_path_buf());
    let err = format!(
        "{:#}",
        local::run::run(&req)
            .await
            .expect_err("the failing hook fails v2")
    );
    assert!(err.contains("failed: postdeploy hook "), "{err}");
    assert!(
        err.contains("02_check.sh failed (exit code 4); its output:\ncache warm-up failed"),
        "{err}"
    );
    assert!(
        err.ends_with("the previous version v1 runs again (4 container(s) restarted)"),
        "{err}"
    );
    assert_eq!(s.answering_release().await, "v1");
}

#[tokio::test]
async fn depends_on_conditions_are_honoured() {
    let s = TestStack::new(2).await;
    let (image, port) = (s.image, s.port);
    let text = |init_command: &[&str]| {
        serde_json::json!({
            "AWSEBDockerrunVersion": 2,
            "containerDefinitions": [
                {
                    "name": "web", "image": image, "memory": 64, "command": ["/start"],
                    "portMappings": [{"hostPort": port, "containerPort": 5000}],
                    "dependsOn": [
                        {"containerName": "migrate", "condition": "SUCCESS"},
                        {"containerName": "ml", "condition": "HEALTHY"}
                    ]
                },
                {"name": "migrate", "image": image, "essential": false, "memory": 64, "command": init_command},
                {
                    "name": "ml", "image": image, "essential": false, "memory": 64, "command": ["/start-ml-backend"],
                    "healthCheck": {"command": ["CMD", "/usr/local/bin/demo", "check", "http://127.0.0.1:2000/livez"], "interval": 1, "retries": 5}
                }
            ]
        })
        .to_string()
    };
    let ok =
        local::run::run(&s.request("v1", text(&["python", "manage.py", "migrate", "--noinput"])))
            .await
            .expect("web starts once migrate succeeded and ml is healthy");
    let names: Vec<&str> = ok.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["migrate", "ml", "web"]);
    assert_eq!(ok.containers[0].exit_code, Some(0));
    assert_eq!(ok.containers[1].health.as_deref(), Some("healthy"));

    let err = local::run::run(&s.request("v2", text(&["fail", "3", "migration 0042 failed"])))
        .await
        .expect_err("a failed SUCCESS dependency fails the deploy");
    let err = format!("{err:#}");
    assert!(err.contains("failed: container \"web\" waits for \"migrate\" to succeed (dependsOn SUCCESS), but it exited with code 3"), "{err}");
    assert!(err.contains("--- logs of migrate"), "{err}");
    assert!(err.contains("demo: migration 0042 failed"), "{err}");
    assert_eq!(
        s.answering_release().await,
        "unknown",
        "v1 (no RELEASE set) answers again"
    );
}

#[tokio::test]
async fn a_taken_host_port_is_a_clear_error() {
    let s = TestStack::new(3).await;
    let port = s.port;
    let _taken = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    let err = local::run::run(&s.version("v1"))
        .await
        .expect_err("the port is taken");
    let err = format!("{err:#}");
    assert!(err.starts_with(&format!("host port 127.0.0.1:{port} of container \"web\" in Dockerrun.aws.json is already in use")), "{err}");
    assert!(err.contains("set `host_port_offset`"), "{err}");
    assert!(s.containers().await.is_empty(), "nothing was created");
}

#[tokio::test]
async fn a_missing_image_is_a_clear_error() {
    let s = TestStack::new(4).await;
    let missing = format!("{}:nope", services::unique("pipeline-local-test-missing"));
    let err = local::run::run(&s.request("v1", dockerrun(&missing, s.port, "v1", &["/start"])))
        .await
        .expect_err("the image is not in the engine");
    let err = format!("{err:#}");
    assert!(err.starts_with(&format!("image {missing} (container \"ml\" in Dockerrun.aws.json) is not in the local Docker Engine")), "{err}");
    assert!(
        err.contains("the local target pulls nothing; build it first"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unreachable_engine_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let socket = format!("unix://{}", dir.path().join("docker.sock").display());
    let mut req = request(
        "local-test-unreachable",
        "v1",
        dockerrun("x:1", port(5), "v1", &["/start"]),
        port(5),
    );
    req.docker_host = Some(socket.clone());
    let err = format!(
        "{:#}",
        local::run::run(&req).await.expect_err("no engine there")
    );
    assert!(
        err.starts_with(&format!("cannot reach the Docker Engine at {socket}: ")),
        "{err}"
    );
    assert!(
        err.contains("hint: start the Docker daemon, or point DOCKER_HOST at a running one"),
        "{err}"
    );

    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let tcp = format!("tcp://{closed}");
    let err = format!(
        "{:#}",
        local::status(Some(&tcp), "local-test-unreachable")
            .await
            .expect_err("nothing listens")
    );
    assert!(
        err.starts_with(&format!("cannot reach the Docker Engine at {tcp}: ")),
        "{err}"
    );
}

/// The whole local flow from a configuration: render with stand-ins, write under the output
/// directory, run, verify through the environment's http check.
#[tokio::test]
async fn deploy_local_renders_runs_and_verifies_from_the_configuration() {
    let image = demo_image().await;
    let dir = tempfile::tempdir().unwrap();
    let port = port(6);
    let app = services::unique("localapp");
    write_template(
        dir.path(),
        r#"{"AWSEBDockerrunVersion": 2, "containerDefinitions": [
  {"name": "api", "image": "${image.backend}", "essential": true, "memory": 128, "command": ["/start"],
   "portMappings": [{"hostPort": 80, "containerPort": 5000}], "links": ["ml"],
   "environment": [{"name": "RELEASE", "value": "${release}"}, {"name": "DJANGO_SECURE_SSL_REDIRECT", "value": "true"}]},
  {"name": "ml", "image": "${image.ml}", "essential": false, "memory": 64}
]}"#,
    );
    let config = demo_app(&app)
        .external_image("ml", "ml-backend-minimal", "v0.1.0")
        .environment(
            "dev",
            &format!(
                "target = \"local\"\nurl = \"http://127.0.0.1:{port}\"\nhost_port_offset = {}",
                port - 80
            ),
        )
        .table(
            "environments.dev.images",
            r#"ml = { image = "backend", command = ["/start-ml-backend"] }"#,
        )
        .check(
            "dev",
            "kind = \"http\"\npath = \"/api/v2/\"\nheaders = { \"X-Forwarded-Proto\" = \"https\" }\ntimeout = \"20s\"",
        )
        .load(dir.path());
    let stack = local::stack_name(&config, "dev");
    let _cleanup = Cleanup(stack.clone());
    let options = prebuilt_latest();
    assert_eq!(image, IMAGE);
    let done = local::deploy_local(&config, "dev", &options)
        .await
        .expect("the local deploy works");
    assert_eq!(done.bundle, dir.path().join("target/deploy/dev/deploy.zip"));
    assert!(
        done.bundle.is_file(),
        "the bundle that would go to EB is written"
    );
    let for_eb =
        std::fs::read_to_string(dir.path().join("target/deploy/dev/Dockerrun.aws.json")).unwrap();
    assert!(
        for_eb.contains("\"image\": \"ml-backend-minimal:v0.1.0\""),
        "{for_eb}"
    );
    assert_eq!(
        done.dockerrun,
        dir.path().join("target/deploy/dev/Dockerrun.local.json")
    );
    let ran = std::fs::read_to_string(&done.dockerrun).unwrap();
    assert!(
        ran.contains("\"image\": \"pipeline-local-test-demo:latest\""),
        "{ran}"
    );
    assert!(
        !ran.contains("ml-backend-minimal"),
        "the stand-in replaced the external image: {ran}"
    );
    assert!(
        ran.contains("\"/start-ml-backend\""),
        "the stand-in's command: {ran}"
    );
    assert!(
        done.version_label.starts_with("latest-"),
        "{}",
        done.version_label
    );
    let run = done.run.unwrap();
    assert_verified(run.verified.as_ref(), port);
    // Without X-Forwarded-Proto the demo redirects to https, as Antenna's production settings do.
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = client
        .get(format!("http://127.0.0.1:{port}/api/v2/"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(
        r.headers()["location"],
        format!("https://127.0.0.1:{port}/api/v2/")
    );

    let other = local::deploy_local(&config, "nope", &options)
        .await
        .expect_err("unknown environment");
    assert!(
        other
            .to_string()
            .starts_with("unknown environment \"nope\""),
        "{other}"
    );
}

/// The commands through the real binary, with the repository's own postdeploy hook.
#[tokio::test]
async fn xtask_local_up_status_logs_down() {
    let image = demo_image().await;
    let dir = tempfile::tempdir().unwrap();
    let port = port(7);
    let app = services::unique("localcli");
    // The demo's image, built (`local up --no-build` finds it) or external (`deploy`).
    let with_image = |image: DeployToml| {
        image
            .environment(
                "dev",
                &format!("target = \"local\"\nurl = \"http://127.0.0.1:{port}\""),
            )
            .check("dev", "kind = \"http\"\ntimeout = \"20s\"")
    };
    let config = with_image(demo_app(&app)).write(dir.path());
    write_template(
        dir.path(),
        &format!(
            r#"{{"AWSEBDockerrunVersion": 2, "containerDefinitions": [
  {{"name": "django", "image": "${{image.backend}}", "essential": true, "memory": 128, "command": ["/start"],
   "portMappings": [{{"hostPort": {port}, "containerPort": 5000}}],
   "environment": [{{"name": "RELEASE", "value": "${{release}}"}}]}},
  {{"name": "celeryworker", "image": "${{image.backend}}", "essential": true, "memory": 128, "command": ["/start-celeryworker"]}}
]}}"#
        ),
    );
    let hook = ".platform/hooks/postdeploy/01_migrate.sh";
    let repository_hook =
        std::fs::read_to_string(integration::workspace_root().join(hook)).unwrap();
    write_executable(&dir.path().join(hook), &repository_hook);
    let _cleanup = Cleanup(format!("{app}-dev"));
    assert_eq!(image, IMAGE);

    let run = |args: &[&str]| {
        let out = integration::xtask()
            .arg("--config")
            .arg(&config)
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };

    let (ok, _, err) = run(&[
        "local",
        "up",
        "--env",
        "dev",
        "--no-build",
        "--release",
        "latest",
        "--dry-run",
    ]);
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!(
            "dry run: would run stack {app}-dev with version latest-"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "django (pipeline-local-test-demo:latest, essential) 127.0.0.1:{port}->5000"
        )),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "then verify: http http://127.0.0.1:{port}/api/v2/"
        )),
        "{err}"
    );
    assert!(
        stack_containers(&format!("{app}-dev")).await.is_empty(),
        "a dry run starts nothing"
    );

    let (ok, _, err) = run(&[
        "local",
        "up",
        "--env",
        "dev",
        "--no-build",
        "--release",
        "latest",
    ]);
    assert!(ok, "{err}");
    assert!(
        err.contains("01_migrate.sh:   No migrations to apply."),
        "the repository's hook ran: {err}"
    );
    // The demo image has no database: it says that it takes no migration lock.
    assert!(
        err.contains("01_migrate.sh: migrate: demo image, no database: ")
            && err.contains(" takes no migration lock and runs the stand-in migrate"),
        "{err}"
    );
    assert!(
        err.contains("verify: all 1 required checks passed"),
        "{err}"
    );
    assert!(
        err.contains(&format!("local stack {app}-dev runs version latest-")),
        "{err}"
    );
    assert!(err.contains("verify passed (1 checks)"), "{err}");

    let (ok, out, err) = run(&["--json", "local", "status", "--env", "dev"]);
    assert!(ok, "{err}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = status
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["django", "celeryworker"]);
    assert!(
        status
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["running"] == true),
        "{status}"
    );

    // Nothing changed: the second run restarts nothing and only verifies; --force restarts.
    let ids = |status: &serde_json::Value| -> Vec<String> {
        status
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["id"].as_str().unwrap().to_string())
            .collect()
    };
    let before = ids(&status);
    let up = [
        "local",
        "up",
        "--env",
        "dev",
        "--no-build",
        "--release",
        "latest",
    ];
    let (ok, _, err) = run(&up);
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!(
            "local stack {app}-dev already runs (nothing restarted) version latest-"
        )),
        "{err}"
    );
    assert!(err.contains("verify passed (1 checks)"), "{err}");
    assert!(!err.contains("01_migrate.sh"), "no hook runs again: {err}");
    let (_, out, _) = run(&["--json", "local", "status", "--env", "dev"]);
    assert_eq!(ids(&serde_json::from_str(&out).unwrap()), before);

    // `deploy` on a local environment reports to GitHub as on AWS: groups, outputs, summary.
    // (`deploy` builds what `build` names; the same image, declared external, builds nothing.)
    let external = dir.path().join("deploy-external.toml");
    let external_image = DeployToml::new(&app).external_image("backend", DEMO_REPOSITORY, "latest");
    std::fs::write(&external, with_image(external_image).text()).unwrap();
    let gh = tempfile::tempdir().unwrap();
    let (output, summary) = (gh.path().join("output"), gh.path().join("summary"));
    let out = integration::xtask()
        .arg("--config")
        .arg(&external)
        .args(["deploy", "--env", "dev", "--release", "latest"])
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_OUTPUT", &output)
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env_remove("GITHUB_TOKEN")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for group in ["::group::build", "::group::bundle", "::group::deploy"] {
        assert!(
            stdout.contains(group) || err.contains(group),
            "{group}: {stdout}{err}"
        );
    }
    let outputs = std::fs::read_to_string(&output).unwrap();
    assert!(outputs.contains("version_label"), "{outputs}");
    assert!(
        outputs.contains(&format!("http://127.0.0.1:{port}")),
        "{outputs}"
    );
    let summary = std::fs::read_to_string(&summary).unwrap();
    assert!(
        summary.contains("## Deploy `latest` → local Docker Engine"),
        "{summary}"
    );
    assert!(summary.contains("| django | running |"), "{summary}");
    assert!(
        summary.contains("already running: nothing restarted"),
        "{summary}"
    );

    let mut forced = up.to_vec();
    forced.push("--force");
    let (ok, _, err) = run(&forced);
    assert!(ok, "{err}");
    assert!(
        err.contains(&format!("local stack {app}-dev runs version latest-")),
        "{err}"
    );
    let (_, out, _) = run(&["--json", "local", "status", "--env", "dev"]);
    let after = ids(&serde_json::from_str(&out).unwrap());
    assert_eq!(after.len(), 2);
    assert!(
        after.iter().all(|id| !before.contains(id)),
        "--force replaced every container: {before:?} -> {after:?}"
    );

    let (ok, out, err) = run(&["local", "logs", "django", "--env", "dev", "--tail", "20"]);
    assert!(ok, "{err}");
    assert!(
        out.starts_with(&format!("--- django ({app}-dev-django-")),
        "{out}"
    );
    assert!(
        out.contains("django listening on 0.0.0.0:5000 (release latest)"),
        "{out}"
    );

    let (ok, _, err) = run(&["local", "logs", "nginx", "--env", "dev"]);
    assert!(!ok);
    assert!(
        err.contains(&format!("error: no container \"nginx\" in the local stack {app}-dev; it has: django, celeryworker")),
        "{err}"
    );

    let (ok, out, err) = run(&["--json", "local", "down", "--env", "dev", "--dry-run"]);
    assert!(ok, "{err}");
    let plan: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["containers"].as_array().unwrap().len(), 2, "{plan}");
    assert!(
        err.contains(&format!(
            "would remove 2 container(s) and its network of the local stack {app}-dev"
        )),
        "{err}"
    );
    assert_eq!(
        stack_containers(&format!("{app}-dev")).await.len(),
        2,
        "a dry run removes nothing"
    );

    let (ok, out, err) = run(&["--json", "local", "down", "--env", "dev"]);
    assert!(ok, "{err}");
    let down: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(down["containers"].as_array().unwrap().len(), 2, "{down}");
    assert_eq!(down["network_removed"], true);
    assert_eq!(down["dry_run"], false);
    assert!(stack_containers(&format!("{app}-dev")).await.is_empty());
}

/// A version that runs but fails the check (a Host the settings do not allow) is rolled back,
/// with the essential containers' logs.
#[tokio::test]
async fn a_failing_check_fails_the_deploy_and_keeps_the_previous_version() {
    let s = TestStack::new(8).await;
    let port = s.port;
    local::run::run(&s.version("v1")).await.expect("v1 deploys");

    let text = dockerrun(s.image, port, "v2", &["/start"]).replace(
        r#"{"name":"RELEASE","value":"v2"}"#,
        r#"{"name":"RELEASE","value":"v2"},{"name":"DJANGO_ALLOWED_HOSTS","value":"api.example.org"}"#,
    );
    assert!(text.contains("DJANGO_ALLOWED_HOSTS"), "{text}");
    let mut req = s.request("v2", text);
    req.checks = vec![api_check(port, Duration::from_secs(5))];
    let err = format!(
        "{:#}",
        local::run::run(&req).await.expect_err("v2 answers 400")
    );
    assert!(
        err.contains(&format!("failed: verify: http http://127.0.0.1:{port}/api/v2/ fail: HTTP 400 Bad Request (expected 200): Django rejects the Host header \"127.0.0.1\" (DisallowedHost)")),
        "{err}"
    );
    assert!(err.contains("--- logs of web ("), "{err}");
    assert!(
        err.contains("GET /api/v2/ 400"),
        "the web container's log shows the refused request: {err}"
    );
    assert!(err.contains("--- logs of worker ("), "{err}");
    assert!(
        err.ends_with("the previous version v1 runs again (4 container(s) restarted)"),
        "{err}"
    );
    assert_eq!(s.answering_release().await, "v1");
}

/// A network of the stack's name that the local target did not create is neither used nor
/// removed.
#[tokio::test]
async fn a_foreign_network_of_the_same_name_is_left_alone() {
    let s = TestStack::new(9).await;
    let stack = &s.name;
    let created = docker(&[
        "network",
        "create",
        "--label",
        "test.owner=someone-else",
        stack,
    ]);
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let err = local::run::run(&s.version("v1"))
        .await
        .expect_err("the network is someone else's");
    let err = format!("{err:#}");
    assert!(
        err.starts_with(&format!("a network named {stack} already exists on ")),
        "{err}"
    );
    assert!(
        err.contains(&format!("but was not created by the local target (it lacks the label deploy.local.stack={stack}): remove it (`docker network rm {stack}`)")),
        "{err}"
    );
    let down = local::down(None, stack).await.unwrap();
    assert!(!down.network_removed && down.containers.is_empty());
    let engine = Engine::connect(None).await.unwrap();
    assert!(engine.network_exists(stack).await.unwrap(), "down keeps it");
    let removed = docker(&["network", "rm", stack]);
    assert!(removed.status.success());
}

/// The local target builds the images of the configuration as the AWS target does: the
/// build `args`, the `target` stage, the `platform`, and `.dockerignore` (an ignored file
/// never reaches the engine).
#[tokio::test]
async fn local_builds_honour_args_target_platform_and_dockerignore() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = dir.path().join("app");
    std::fs::create_dir_all(ctx.join("data")).unwrap();
    std::fs::write(ctx.join("data/kept.txt"), "kept\n").unwrap();
    // Random bytes, so that no layer compression hides them: 4 MiB in any image that got them.
    let noise: Vec<u8> = std::iter::repeat_with(|| fastrand::u8(..))
        .take(4 << 20)
        .collect();
    std::fs::write(ctx.join("data/ignored.bin"), &noise).unwrap();
    std::fs::write(
        ctx.join(".dockerignore"),
        "# not for the image\ndata/*.bin\n",
    )
    .unwrap();
    std::fs::write(
        ctx.join("Dockerfile"),
        "FROM scratch AS base\n\
         ARG GREETING=unset\n\
         LABEL greeting=$GREETING\n\
         COPY . /app/\n\
         COPY data/kept.txt /kept.txt\n\
         FROM base AS chosen\n\
         LABEL stage=chosen\n\
         FROM scratch AS last\n\
         LABEL stage=last\n",
    )
    .unwrap();
    let repository = services::unique("local-build-test");
    let config = DeployToml::new("localbuild")
        .built_image(
            "app",
            &repository,
            r#"context = "app", target = "chosen", platform = "linux/amd64", args = { GREETING = "hello" }"#,
        )
        .environment("dev", "target = \"local\"\nurl = \"http://127.0.0.1:8080\"")
        .load(dir.path());
    let engine = Engine::connect(None).await.unwrap();
    let built = local::prepare::build_images(
        &engine,
        &config,
        &pipeline::release::Release::fixed("t1", "unknown"),
        OutputMode::Plain,
    )
    .await
    .expect("the image builds with no network");
    let reference = format!("{repository}:t1");
    assert_eq!(
        built.into_iter().collect::<Vec<_>>(),
        [("app".to_string(), reference.clone())]
    );
    let image = engine.inspect_image(&reference).await.unwrap().unwrap();
    engine.untag(&reference).await.unwrap();
    assert_eq!(image.labels["greeting"], "hello", "the build arg");
    assert_eq!(image.labels["stage"], "chosen", "the target stage");
    assert_eq!(image.labels["deploy.local.image"], "app");
    assert_eq!(image.architecture, "amd64", "the platform");
    assert!(
        image.size > 0 && image.size < 1 << 20,
        "data/ignored.bin stayed out of the context: the image has {} bytes",
        image.size
    );
}

#[tokio::test]
async fn the_instance_checks_hook_runs_on_the_local_target_passing_and_failing() {
    let image = demo_image().await;
    // SAFETY (edition 2021: set_var is safe): only this test reads these variables.
    std::env::set_var(pipeline::verify::agent::AGENT_VAR, verify_agent());
    let password = services::env("REDIS_AUTH_PASSWORD");
    let auth = services::env("REDIS_AUTH_URL");
    let with_password = auth.replacen("redis://", &format!("redis://:{password}@"), 1);
    std::env::set_var("HOOK_TEST_REDIS_URL", &with_password);
    let options = prebuilt_latest();
    assert_eq!(image, IMAGE);

    let dir = tempfile::tempdir().unwrap();
    let config = instance_checks_app(dir.path(), &services::unique("hookapp"), "NATS_URL");
    let _cleanup = Cleanup(local::stack_name(&config, "dev"));
    let started = Instant::now();
    let done = local::deploy_local(&config, "dev", &options)
        .await
        .expect("the instance checks pass against the test services");
    eprintln!(
        "local deploy with the instance hook: {:?}",
        started.elapsed()
    );
    let run = done.run.unwrap();
    assert_eq!(run.hooks, ["90_verify.sh"]);
    // The bundle for EB carries the hook, the agent and the check list, executables 0755.
    let zip = std::fs::File::open(&done.bundle).unwrap();
    let mut zip = zip::ZipArchive::new(zip).unwrap();
    for (name, mode) in [
        (".platform/hooks/postdeploy/90_verify.sh", 0o755),
        (".platform/verify/verify-agent", 0o755),
        (".platform/verify/checks.json", 0o644),
    ] {
        let entry = zip.by_name(name).unwrap();
        assert_eq!(entry.unix_mode().unwrap() & 0o777, mode, "{name}");
    }
    let mut list = String::new();
    std::io::Read::read_to_string(
        &mut zip.by_name(".platform/verify/checks.json").unwrap(),
        &mut list,
    )
    .unwrap();
    assert!(
        list.contains("\"url_env\": \"HOOK_TEST_REDIS_URL\""),
        "{list}"
    );
    assert!(
        !list.contains(&password),
        "names only, never values: {list}"
    );

    // NATS without JetStream: the hook fails, and so the deploy, with the instance's table.
    std::env::set_var("HOOK_TEST_REDIS_URL", &with_password);
    let config = instance_checks_app(dir.path(), &services::unique("hookapp"), "NATS_NOJS_URL");
    let _cleanup = Cleanup(local::stack_name(&config, "dev"));
    let err = format!(
        "{:#}",
        local::deploy_local(&config, "dev", &options)
            .await
            .expect_err("NATS without JetStream fails the hook")
    );
    assert!(err.contains("postdeploy hook "), "{err}");
    assert!(err.contains("90_verify.sh failed (exit code 1)"), "{err}");
    assert!(err.contains("verify: FAILED: nats"), "{err}");
    assert!(err.contains("redis "), "the whole table: {err}");
    assert!(!err.contains(&password), "the password leaked: {err}");

    // A wrong Redis password: the same, with the Redis line failing.
    std::env::set_var(
        "HOOK_TEST_REDIS_URL",
        auth.replacen("redis://", "redis://:not-the-password@", 1),
    );
    let config = instance_checks_app(dir.path(), &services::unique("hookapp"), "NATS_URL");
    let _cleanup = Cleanup(local::stack_name(&config, "dev"));
    let err = format!(
        "{:#}",
        local::deploy_local(&config, "dev", &options)
            .await
            .expect_err("a wrong Redis password fails the hook")
    );
    assert!(err.contains("verify: FAILED: redis"), "{err}");
    assert!(
        !err.contains("not-the-password"),
        "the password leaked: {err}"
    );
}
