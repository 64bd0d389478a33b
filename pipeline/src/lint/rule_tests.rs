//! One passing and one failing case per rule, with the exact message.

use std::path::Path;

use serde_json::{json, Value};

use super::*;
use crate::dockerrun::Dockerrun;

fn base() -> Value {
    json!({
        "AWSEBDockerrunVersion": 2,
        "volumes": [{"name": "media", "host": {"sourcePath": "/var/app/media"}}],
        "containerDefinitions": [
            {"name": "django", "image": "r.example.com/antenna:v1", "essential": true, "memory": 1024,
             "portMappings": [{"hostPort": 80, "containerPort": 5000}],
             "links": ["ml"], "mountPoints": [{"sourceVolume": "media", "containerPath": "/media"}],
             "environment": [{"name": "USE_DOCKER", "value": "yes"}]},
            {"name": "worker", "image": "r.example.com/antenna:v1", "essential": false, "memoryReservation": 256,
             "dependsOn": [{"containerName": "django", "condition": "START"}], "volumesFrom": [{"sourceContainer": "django"}]},
            {"name": "ml", "image": "r.example.com/ml:v2", "essential": false, "memory": 512,
             "portMappings": [{"hostPort": 2000, "containerPort": 2000}]}
        ]
    })
}

/// Findings of `v`, as (rule id, message) pairs.
fn lint(v: Value) -> Vec<(String, String)> {
    let text = serde_json::to_string_pretty(&v).unwrap();
    let d = Dockerrun::from_value(v).unwrap();
    lint_dockerrun(Path::new("Dockerrun.aws.json"), &text, &d)
        .into_iter()
        .map(|f| (f.rule.to_string(), f.message))
        .collect()
}

fn one(v: Value, rule: Rule) -> String {
    let found = lint(v);
    let of_rule: Vec<_> = found.iter().filter(|(r, _)| r == rule.id).collect();
    assert_eq!(
        of_rule.len(),
        1,
        "expected one {} finding, got {found:?}",
        rule.id
    );
    of_rule[0].1.clone()
}

/// `v` with the value at `pointer` set to `x` (an object key is created when missing).
fn set(mut v: Value, pointer: &str, x: Value) -> Value {
    if let Some(slot) = v.pointer_mut(pointer) {
        *slot = x;
        return v;
    }
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    v.pointer_mut(parent)
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("no object at {parent}"))
        .insert(key.to_string(), x);
    v
}

#[test]
fn the_base_file_is_clean() {
    assert_eq!(lint(base()), vec![]);
}

#[test]
fn dr001_version() {
    assert_eq!(
        one(
            set(base(), "/AWSEBDockerrunVersion", json!("2")),
            DR_VERSION
        ),
        "AWSEBDockerrunVersion must be the integer 2, found \"2\""
    );
}

#[test]
fn dr002_names() {
    let v = set(base(), "/containerDefinitions/2/name", json!("worker"));
    assert_eq!(
        one(v, DR_NAME),
        "container name `worker` is used twice (containers 1 and 2)"
    );
    let mut v = base();
    v["containerDefinitions"][2]
        .as_object_mut()
        .unwrap()
        .remove("name");
    let found = lint(v);
    assert!(
        found.contains(&("DR002".into(), "container #2 has no name".into())),
        "{found:?}"
    );
}

#[test]
fn dr003_image() {
    let mut v = base();
    v["containerDefinitions"][2]
        .as_object_mut()
        .unwrap()
        .remove("image");
    assert_eq!(one(v, DR_IMAGE), "container `ml` has no image");
}

#[test]
fn dr004_memory() {
    let v = set(base(), "/containerDefinitions/2/memory", json!(0));
    assert_eq!(
        one(v, DR_MEMORY),
        "container `ml` sets neither a non-zero memory nor memoryReservation"
    );
}

#[test]
fn dr005_essential() {
    let v = set(base(), "/containerDefinitions/0/essential", json!(false));
    assert_eq!(
        one(v, DR_ESSENTIAL),
        "no container is essential: every container sets \"essential\": false"
    );
    // A missing `essential` counts as true, as in ECS.
    let mut v = set(base(), "/containerDefinitions/0/essential", json!(false));
    v["containerDefinitions"][2]
        .as_object_mut()
        .unwrap()
        .remove("essential");
    assert!(lint(v).is_empty());
}

#[test]
fn dr006_links() {
    let v = set(
        base(),
        "/containerDefinitions/0/links",
        json!(["ml", "redis:cache"]),
    );
    assert_eq!(
        one(v, DR_LINKS),
        "container `django` links to `redis`, which is not a container of this file"
    );
    let v = set(base(), "/containerDefinitions/0/links", json!(["ml:alias"]));
    assert!(lint(v).is_empty());
}

#[test]
fn dr007_depends_on() {
    let v = set(
        base(),
        "/containerDefinitions/1/dependsOn/0/containerName",
        json!("db"),
    );
    assert_eq!(
        one(v, DR_DEPENDS_ON),
        "container `worker` depends on `db`, which is not a container of this file"
    );
    let v = set(
        base(),
        "/containerDefinitions/1/dependsOn/0/condition",
        json!("READY"),
    );
    assert_eq!(
        one(v, DR_DEPENDS_ON),
        "container `worker`: dependsOn condition \"READY\" is not one of START, COMPLETE, SUCCESS, HEALTHY"
    );
}

#[test]
fn dr008_volumes_from() {
    let v = set(
        base(),
        "/containerDefinitions/1/volumesFrom/0/sourceContainer",
        json!("nginx"),
    );
    assert_eq!(
        one(v, DR_VOLUMES_FROM),
        "container `worker` takes volumes from `nginx`, which is not a container of this file"
    );
}

#[test]
fn dr009_mount_points() {
    let v = set(
        base(),
        "/containerDefinitions/0/mountPoints/0/sourceVolume",
        json!("static"),
    );
    assert_eq!(
        one(v, DR_MOUNT_POINTS),
        "container `django` mounts volume `static`, which is not declared in the top-level volumes"
    );
}

#[test]
fn dr010_host_port() {
    let v = set(
        base(),
        "/containerDefinitions/2/portMappings/0/hostPort",
        json!(80),
    );
    assert_eq!(
        one(v, DR_HOST_PORT),
        "host port 80/tcp is mapped by both `django` and `ml`"
    );
    // The same port over UDP is another mapping.
    let v = set(
        base(),
        "/containerDefinitions/2/portMappings/0",
        json!({"hostPort": 80, "containerPort": 2000, "protocol": "udp"}),
    );
    assert!(lint(v).is_empty());
}

#[test]
fn dr011_port_range() {
    let v = set(
        base(),
        "/containerDefinitions/2/portMappings/0/hostPort",
        json!(70000),
    );
    assert_eq!(
        one(v, DR_PORT_RANGE),
        "container `ml`: hostPort 70000 is outside 1-65535"
    );
    let v = set(
        base(),
        "/containerDefinitions/2/portMappings/0/containerPort",
        json!(0),
    );
    assert_eq!(
        one(v, DR_PORT_RANGE),
        "container `ml`: containerPort 0 is outside 1-65535"
    );
}

#[test]
fn dr012_image_reference() {
    let v = set(
        base(),
        "/containerDefinitions/2/image",
        json!("r.example.com/ML:v2"),
    );
    assert_eq!(
        one(v, DR_IMAGE_REF),
        "container `ml`: image \"r.example.com/ML:v2\" is not a valid reference: repository component \"ML\" is not valid: lowercase letters, digits and single '.', '_' or '-' between them"
    );
}

#[test]
fn dr013_image_tag() {
    let v = set(
        base(),
        "/containerDefinitions/2/image",
        json!("r.example.com/ml:latest"),
    );
    assert_eq!(one(v, DR_IMAGE_TAG), "container `ml`: image \"r.example.com/ml:latest\" uses the tag latest, so a redeploy may run another image");
    let v = set(
        base(),
        "/containerDefinitions/2/image",
        json!("r.example.com/ml"),
    );
    assert_eq!(one(v, DR_IMAGE_TAG), "container `ml`: image \"r.example.com/ml\" has no tag, so a redeploy may run another image");
}

#[test]
fn dr014_secret_in_environment() {
    let v = set(
        base(),
        "/containerDefinitions/0/environment",
        json!([{"name": "DJANGO_SECRET_KEY", "value": "abc"}]),
    );
    assert_eq!(one(v, DR_SECRET_ENV), "container `django`: environment `DJANGO_SECRET_KEY` looks like a secret (its name contains SECRET); secrets must not go into the bundle");
    let v = set(
        base(),
        "/containerDefinitions/0/environment",
        json!([{"name": "DATABASE_URL", "value": "postgres://u:p@db/antenna"}]),
    );
    assert_eq!(one(v, DR_SECRET_ENV), "container `django`: environment `DATABASE_URL` looks like a secret (its value is a URL with a password); secrets must not go into the bundle");
}

#[test]
fn dr015_depends_on_cycle() {
    let v = set(
        base(),
        "/containerDefinitions/0/dependsOn",
        json!([{"containerName": "worker", "condition": "START"}]),
    );
    assert_eq!(
        one(v, DR_CYCLE),
        "dependsOn has a cycle: django -> worker -> django"
    );
}

#[test]
fn dr016_secrets_value_from() {
    let arn = "arn:aws:secretsmanager:us-west-2:1:secret:db";
    let v = set(
        base(),
        "/containerDefinitions/0/secrets",
        json!([{"name": "DATABASE_URL", "valueFrom": arn}]),
    );
    assert_eq!(
        one(v.clone(), DR_SECRETS_ARN),
        "containers use `secrets` but there is no top-level executionRoleArn"
    );
    let mut ok = v;
    ok["executionRoleArn"] = json!("arn:aws:iam::1:role/ecs-exec");
    assert!(lint(ok.clone()).is_empty());
    let bad = set(
        ok,
        "/containerDefinitions/0/secrets/0/valueFrom",
        json!("db-password"),
    );
    assert_eq!(one(bad, DR_SECRETS_ARN), "container `django`: secret `DATABASE_URL` takes its value from \"db-password\", which is not an ARN");
}

#[test]
fn dr017_unknown_fields_warn() {
    let mut v = base();
    v["containerDefinitions"][2]["memroy"] = json!(1);
    v["extra"] = json!(true);
    let found = lint(v.clone());
    assert!(
        found.contains(&(
            "DR017".into(),
            "container `ml`: unknown field `memroy` (kept in the output)".into()
        )),
        "{found:?}"
    );
    assert!(
        found.contains(&(
            "DR017".into(),
            "unknown top-level field `extra` (kept in the output)".into()
        )),
        "{found:?}"
    );
    let d = Dockerrun::from_value(v).unwrap();
    assert!(d.to_pretty_json().contains("\"memroy\": 1"));
    assert_eq!(DR_UNKNOWN.severity, Severity::Warning);
}

#[test]
fn findings_carry_positions_and_hints() {
    let v = set(base(), "/containerDefinitions/2/memory", json!(0));
    let text = serde_json::to_string_pretty(&v).unwrap();
    let d = Dockerrun::from_value(v).unwrap();
    let f = &lint_dockerrun(Path::new("D.json"), &text, &d)[0];
    let line = text
        .lines()
        .position(|l| l.contains("\"name\": \"ml\""))
        .unwrap();
    assert!(f.line > 0 && f.line <= line + 1, "{f:?}");
    assert_eq!(f.to_string().lines().next().unwrap(), format!("D.json:{}:{}: error DR004[memory]: container `ml` sets neither a non-zero memory nor memoryReservation", f.line, f.column));
    assert!(f.to_string().contains("hint: set \"memory\""));
}

fn ebx(text: &str) -> Vec<(String, String, usize)> {
    lint_ebextension(Path::new(".ebextensions/x.config"), text, Some("/api/v2/"))
        .into_iter()
        .map(|f| (f.rule.to_string(), f.message, f.line))
        .collect()
}

const GOOD: &str = "option_settings:\n  aws:elasticbeanstalk:application:environment:\n    USE_DOCKER: \"yes\"\n  aws:elasticbeanstalk:environment:process:default:\n    HealthCheckPath: /api/v2/\n";

#[test]
fn ebextensions_good_file_is_clean() {
    assert_eq!(ebx(GOOD), vec![]);
    let list = "option_settings:\n  - namespace: aws:autoscaling:launchconfiguration\n    option_name: RootVolumeSize\n    value: 30\n";
    assert_eq!(ebx(list), vec![]);
    let json = "{\"option_settings\": {\"aws:autoscaling:launchconfiguration\": {\"RootVolumeSize\": \"30\"}}}";
    assert_eq!(ebx(json), vec![]);
}

#[test]
fn ex001_parse_error_with_position() {
    let found = ebx("option_settings:\n  a: b\n c: d\n");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "EX001");
    assert!(found[0].1.starts_with("invalid YAML/JSON: "), "{found:?}");
    assert_eq!(found[0].2, 3);
}

#[test]
fn ex002_unknown_key() {
    assert_eq!(
        ebx(&format!("{GOOD}option_setting:\n  x: 1\n")),
        vec![(
            "EX002".into(),
            "unknown top-level key `option_setting`".into(),
            6
        )]
    );
}

#[test]
fn ex003_option_settings_shape() {
    assert_eq!(
        ebx("option_settings:\n  aws:autoscaling:launchconfiguration:\n    RootVolumeSize: [30]\n"),
        vec![("EX003".into(), "option RootVolumeSize in aws:autoscaling:launchconfiguration must be a single value, not a list or mapping".into(), 3)]
    );
    assert_eq!(
        ebx(
            "option_settings:\n  - namespace: aws:autoscaling:launchconfiguration\n    value: 30\n"
        ),
        vec![(
            "EX003".into(),
            "option_settings[0] needs option_name and value".into(),
            1
        )]
    );
    assert_eq!(
        ebx("option_settings: 3\n"),
        vec![(
            "EX003".into(),
            "option_settings must be a mapping of namespaces or a list of settings".into(),
            1
        )]
    );
}

#[test]
fn ex004_migrate_in_container_commands() {
    let text = format!("{GOOD}container_commands:\n  01_migrate:\n    command: docker exec $(docker ps -q | head -1) python manage.py migrate --noinput || true\n    leader_only: true\n  02_other:\n    command: echo hi\n");
    let found = ebx(&text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "EX004");
    assert_eq!(found[0].1, "container_commands.01_migrate runs migrations, but container_commands run before the new version's containers start: it migrates with the old image (or none on a first deploy)");
    assert_eq!(found[0].2, 7);
}

#[test]
fn ex005_health_check_path() {
    let text = GOOD.replace("HealthCheckPath: /api/v2/", "HealthCheckPath: /health");
    assert_eq!(
        ebx(&text),
        vec![(
            "EX005".into(),
            "HealthCheckPath is \"/health\" but the verify stage checks \"/api/v2/\"".into(),
            5
        )]
    );
}

#[test]
fn ex006_secret_in_option_settings() {
    let text = GOOD.replace("USE_DOCKER: \"yes\"", "DJANGO_SECRET_KEY: abc123");
    assert_eq!(
        ebx(&text),
        vec![("EX006".into(), "environment property `DJANGO_SECRET_KEY` looks like a secret (its name contains SECRET); it would be stored in the bundle".into(), 3)]
    );
}

#[test]
fn pl001_hook_executable() {
    let dir = Path::new(".platform");
    let files = vec![
        (dir.join("hooks/postdeploy/01_migrate.sh"), 0o644),
        (dir.join("hooks/postdeploy/02_ok.sh"), 0o755),
        (dir.join("nginx/conf.d/x.conf"), 0o644),
    ];
    let found = lint_hooks(dir, &files);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].file, dir.join("hooks/postdeploy/01_migrate.sh"));
    assert_eq!(
        found[0].message,
        "this platform hook is not executable, so EB fails the deployment when it tries to run it"
    );
}

/// The repository's template rendered with stand-in image references.
fn repository_template(text: &str) -> (String, Dockerrun) {
    let text = text
        .replace("${image.backend}", "r.example.com/antenna-backend:v1")
        .replace("${image.awscli}", "r.example.com/antenna-awscli:2")
        .replace(
            "${image.ml-backend-minimal}",
            "r.example.com/antenna-ml-minimal:1",
        )
        .replace(
            "${image.ml-backend-example}",
            "r.example.com/antenna-ml-example:1",
        )
        .replace(
            "${var.DJANGO_SETTINGS_MODULE}",
            "config.settings.production",
        )
        .replace("${var.CELERY_QUEUES}", "antenna")
        .replace("${release}", "v1");
    let d = Dockerrun::from_value(serde_json::from_str(&text).unwrap()).unwrap();
    (text, d)
}

fn memory_findings(text: &str, instance_type: &str) -> Vec<(String, String)> {
    let (text, d) = repository_template(text);
    lint_memory(
        Path::new("Dockerrun.template.json"),
        &text,
        &d,
        instance_type,
    )
    .into_iter()
    .map(|f| (f.rule.to_string(), f.message))
    .collect()
}

/// The template before it was sized (every container a hard 256-1024 MiB, 4,864 MiB in all).
const UNSIZED: &str = r#"{"AWSEBDockerrunVersion": 2, "containerDefinitions": [
  {"name": "django", "image": "${image.backend}", "essential": true, "memory": 1024},
  {"name": "celeryworker", "image": "${image.backend}", "essential": true, "memory": 1024},
  {"name": "celerybeat", "image": "${image.backend}", "essential": false, "memory": 512},
  {"name": "flower", "image": "${image.backend}", "essential": false, "memory": 512},
  {"name": "awscli", "image": "${image.awscli}", "essential": false, "memory": 256},
  {"name": "ml-backend-minimal", "image": "${image.ml-backend-minimal}", "essential": false, "memory": 512},
  {"name": "ml-backend-example", "image": "${image.ml-backend-example}", "essential": false, "memory": 1024}
]}"#;

#[test]
fn memory_rejects_the_unsized_template_on_small_instances() {
    let found = memory_findings(UNSIZED, "t3.micro");
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].0, "DR018");
    assert_eq!(found[0].1, "the containers reserve 4864 MiB (memoryReservation, else memory) but a t3.micro can place about 866 MiB (1024 MiB installed, minus the kernel's share and 128 MiB for the ECS agent): the task would never start");
    // It did not fit the seed guide's t3.medium either.
    assert_eq!(memory_findings(UNSIZED, "t3.medium")[0].0, "DR018");
}

#[test]
fn memory_accepts_the_repository_template_on_t3_medium_and_large() {
    let text = include_str!("../../../Dockerrun.template.json");
    // The hard caps fit a t3.medium whole (no overcommit warning), and a t3.large with room.
    assert_eq!(memory_findings(text, "t3.medium"), []);
    assert_eq!(memory_findings(text, "t3.large"), []);
    // A t3.small (2 GiB) places the reservations but not the caps: a warning, not an error.
    let small = memory_findings(text, "t3.small");
    assert_eq!(small.len(), 1, "{small:?}");
    assert_eq!(small[0].0, "DR019");
    // celeryworker is non-essential: an out-of-memory kill of the worker leaves django up.
    let (_, d) = repository_template(text);
    let essential: Vec<_> = d
        .container_definitions
        .iter()
        .filter(|c| c.is_essential())
        .filter_map(|c| c.name.clone())
        .collect();
    assert_eq!(essential, ["django"]);
    assert_eq!(memory_findings(text, "t3.micro")[0].0, "DR018");
}

#[test]
fn memory_reservation_above_the_cap_and_unknown_types_are_reported() {
    let v = set(
        base(),
        "/containerDefinitions/2/memoryReservation",
        json!(600),
    );
    let text = serde_json::to_string_pretty(&v).unwrap();
    let d = Dockerrun::from_value(v).unwrap();
    let found = lint_memory(Path::new("Dockerrun.aws.json"), &text, &d, "t3.large");
    assert_eq!(found.len(), 2, "{found:?}");
    assert_eq!(found[0].message, "container `ml`: memoryReservation 600 MiB is above its hard limit memory 512 MiB; ECS refuses such a task");
    // `worker` has a reservation but no cap: it may take the whole instance.
    assert_eq!(found[1].message, "container(s) worker have no hard memory limit, so together they can use more than the 7819 MiB a t3.large can place: when they all grow at once the kernel kills a container");
    let found = lint_memory(Path::new("Dockerrun.aws.json"), &text, &d, "q9.large");
    assert_eq!(found[0].rule, "DR019");
    assert!(found[0]
        .message
        .starts_with("instance type \"q9.large\" is not in the memory table"));
}
