//! The world of `tests/tests/migrate.rs`: the repository's postdeploy migration hook run as
//! several EB "instances" at once against a real PostgreSQL database (the test service's, one
//! database per world) and a real Django project (`tests/fixtures/django-migrate/`). Only the
//! instance's `docker` CLI and `hostname` are shims (`tests/fixtures/django-migrate-instance/`):
//! `docker exec` runs the command in the fixture with the test venv's python.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::{services, workspace_root};

/// The advisory lock key of the hook (`LOCK_KEY` in `01_migrate.sh`).
pub const LOCK_KEY: i64 = 7_262_930_411;

/// The advisory lock key the fixture's `0002_record_run` waits on (shared) when
/// `FIXTURE_GATE_KEY` is set.
pub const GATE_KEY: i64 = 4242;

/// The hook as it was before the lock: a plain `migrate` in the django container. The control
/// runs it to show the race that the lock removes.
pub const UNLOCKED_HOOK: &str = r#"#!/usr/bin/env bash
set -euo pipefail
container=$(docker ps --quiet --filter "label=com.amazonaws.ecs.container-name=django" | head -n 1)
docker exec "$container" python manage.py migrate --noinput
"#;

/// The repository's migration hook.
pub fn hook() -> PathBuf {
    workspace_root().join(".platform/hooks/postdeploy/01_migrate.sh")
}

/// A database of its own on the test service's PostgreSQL, dropped with the world.
pub struct MigrateWorld {
    admin_url: String,
    name: String,
    pub database_url: String,
    dir: tempfile::TempDir,
}

/// What one instance's hook did.
#[derive(Debug)]
pub struct HookRun {
    pub instance: String,
    pub ok: bool,
    pub code: Option<i32>,
    /// stdout then stderr.
    pub output: String,
}

impl HookRun {
    /// Panics with the hook's output unless it contains `text`.
    #[track_caller]
    pub fn says(&self, text: &str) {
        assert!(
            self.output.contains(text),
            "{} does not say {text:?}; its output:\n{}",
            self.instance,
            self.output
        );
    }

    /// Panics if the hook's output contains `secret`, with the output and the secret masked
    /// (`***`), so that the failure does not print it either.
    #[track_caller]
    pub fn never_shows(&self, what: &str, secret: &str) {
        assert!(!secret.is_empty(), "no {what} to look for");
        if self.output.contains(secret) {
            panic!(
                "{} printed {what}; its output, masked:\n{}",
                self.instance,
                self.output.replace(secret, "***")
            );
        }
    }

    /// Panics with the hook's output if it contains `text`.
    #[track_caller]
    pub fn never_says(&self, text: &str) {
        assert!(
            !self.output.contains(text),
            "{} says {text:?}; its output:\n{}",
            self.instance,
            self.output
        );
    }
}

/// Runs `psql URL -c SQL` and returns its unaligned, tuples-only output; panics with psql's
/// stderr when it fails.
pub async fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-XAtq", "-v", "ON_ERROR_STOP=1", url, "-c", sql])
        .output()
        .await
        .expect("psql runs (Debian's postgresql-client)");
    assert!(
        out.status.success(),
        "psql {sql:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

impl MigrateWorld {
    /// Creates a fresh database on `POSTGRES_URL`.
    pub async fn new() -> Self {
        let admin_url = services::env("POSTGRES_URL");
        let name = services::unique("migrate").replace('-', "_");
        psql(&admin_url, &format!("CREATE DATABASE {name}")).await;
        let mut url = url::Url::parse(&admin_url).expect("POSTGRES_URL is a URL");
        url.set_path(&name);
        Self {
            admin_url,
            name,
            database_url: url.to_string(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// Starts the hook at `hook` as instance `instance` (its `hostname`), with `env` added
    /// (e.g. `DATABASE_URL`, the fixture's switches).
    pub fn start(&self, hook: &Path, instance: &str, env: &[(&str, &str)]) -> Child {
        let shims = workspace_root().join("tests/fixtures/django-migrate-instance");
        let path = format!(
            "{}:{}",
            shims.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let python = Path::new(&services::env("TEST_VENV")).join("bin/python");
        let mut cmd = Command::new("bash");
        cmd.arg(hook)
            .env("PATH", path)
            .env("SHIM_PYTHON", python)
            .env(
                "SHIM_APP_DIR",
                workspace_root().join("tests/fixtures/django-migrate"),
            )
            .env("SHIM_INSTANCE", instance)
            .env("DATABASE_URL", &self.database_url)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        cmd.spawn().expect("bash runs the hook")
    }

    /// The password of the test service's PostgreSQL user, which every world's URL carries.
    pub fn password(&self) -> String {
        let url = url::Url::parse(&self.database_url).expect("the database URL is a URL");
        url.password()
            .expect("POSTGRES_URL has a password")
            .to_string()
    }

    /// Waits for a hook started by [`Self::start`].
    pub async fn finish(instance: &str, child: Child) -> HookRun {
        let out = child.wait_with_output().await.unwrap();
        let mut output = String::from_utf8_lossy(&out.stdout).to_string();
        output.push_str(&String::from_utf8_lossy(&out.stderr));
        HookRun {
            instance: instance.to_string(),
            ok: out.status.success(),
            code: out.status.code(),
            output,
        }
    }

    /// Runs the hook at `hook` once, as `instance`.
    pub async fn run(&self, hook: &Path, instance: &str, env: &[(&str, &str)]) -> HookRun {
        Self::finish(instance, self.start(hook, instance, env)).await
    }

    /// The pre-lock hook, written to a file of this world.
    pub fn unlocked_hook(&self) -> PathBuf {
        let path = self.dir.path().join("01_migrate_unlocked.sh");
        std::fs::write(&path, UNLOCKED_HOOK).unwrap();
        path
    }

    /// `psql` on this world's database.
    pub async fn sql(&self, sql: &str) -> String {
        psql(&self.database_url, sql).await
    }

    /// Rows of the fixture's `ledger_run` table: one per run of `0002_record_run`.
    pub async fn runs_recorded(&self) -> i64 {
        self.sql("SELECT count(*) FROM ledger_run")
            .await
            .parse()
            .unwrap()
    }

    /// How many times `django_migrations` records `ledger.NAME`.
    pub async fn recorded(&self, name: &str) -> i64 {
        self.sql(&format!(
            "SELECT count(*) FROM django_migrations WHERE app = 'ledger' AND name = '{name}'"
        ))
        .await
        .parse()
        .unwrap()
    }

    /// Advisory locks of this database (granted or awaited) that match the SQL `filter`.
    async fn advisory_locks(&self, filter: &str) -> i64 {
        self.sql(&format!(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database \
             WHERE d.datname = current_database() AND l.locktype = 'advisory' AND {filter}"
        ))
        .await
        .parse()
        .unwrap()
    }

    /// Sessions of this database waiting for the advisory lock `key`.
    pub async fn waiting_for(&self, key: i64) -> i64 {
        self.advisory_locks(&format!(
            "NOT l.granted AND ((l.classid::bigint << 32) | l.objid::bigint) = {key}"
        ))
        .await
    }

    /// Advisory locks still held or awaited on this database.
    pub async fn advisory_locks_left(&self) -> i64 {
        self.advisory_locks("true").await
    }

    /// Takes the advisory lock `key` in a `psql` session of its own, held until
    /// [`Gate::open`] (or the gate's drop) ends the session.
    pub async fn close_gate(&self, key: i64) -> Gate {
        let mut child = Command::new("psql")
            .args(["-XAtq", "-v", "ON_ERROR_STOP=1", &self.database_url])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("psql runs");
        let mut stdin = child.stdin.take().unwrap();
        stdin
            .write_all(format!("SELECT pg_advisory_lock({key});\n\\echo gate-closed\n").as_bytes())
            .await
            .unwrap();
        stdin.flush().await.unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            match lines.next_line().await.unwrap() {
                Some(line) if line == "gate-closed" => break,
                Some(_) => continue,
                None => panic!("the gate's psql session ended before it took the lock"),
            }
        }
        Gate {
            child,
            stdin: Some(stdin),
        }
    }
}

impl Drop for MigrateWorld {
    fn drop(&mut self) {
        let _ = std::process::Command::new("psql")
            .args([
                "-XAtq",
                &self.admin_url,
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

/// A session holding an advisory lock; see [`MigrateWorld::close_gate`].
pub struct Gate {
    child: Child,
    stdin: Option<tokio::process::ChildStdin>,
}

impl Gate {
    /// Ends the session, which releases the lock.
    pub async fn open(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().await.unwrap();
        assert!(
            status.success(),
            "the gate's psql session ended with {status}"
        );
    }
}
