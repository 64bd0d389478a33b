//! The postdeploy migration hook (`.platform/hooks/postdeploy/01_migrate.sh`) run by two EB
//! "instances" at once, against the test service's PostgreSQL and a real Django project: the
//! migration runs once per deploy, under an advisory lock. See `integration::migrate_world`.

use std::time::{Duration, Instant};

use integration::migrate_world::{hook, HookRun, MigrateWorld, GATE_KEY, LOCK_KEY};
use tokio::process::Child;

/// Polls until `ready` holds, while both hooks still run; a hook that ends early ends the
/// wait too (the caller's assertions then say why). Panics after a minute: a safety net for a
/// hung test, not a timing assertion.
async fn wait_for<F, Fut>(children: &mut [&mut Child], mut ready: F)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut exited = 0;
        for c in children.iter_mut() {
            if c.try_wait().unwrap().is_some() {
                exited += 1;
            }
        }
        if ready(exited).await || exited == children.len() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the two hooks did not reach the expected state within a minute"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn gated() -> [(&'static str, String); 2] {
    [
        ("FIXTURE_GATE_KEY", GATE_KEY.to_string()),
        ("FIXTURE_SLEEP", "0.5".to_string()),
    ]
}

fn env_refs<'a>(env: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    env.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

#[tokio::test]
async fn two_instances_migrate_once_the_second_waits_then_finds_nothing_to_apply() {
    let world = MigrateWorld::new().await;
    let env = gated();
    let env = env_refs(&env);
    // The fixture's RunPython step waits behind this gate, so that the first instance is still
    // migrating (holding the migration lock) when the second asks for it.
    let gate = world.close_gate(GATE_KEY).await;
    let mut a = world.start(&hook(), "instance-a", &env);
    let mut b = world.start(&hook(), "instance-b", &env);
    let w = &world;
    wait_for(&mut [&mut a, &mut b], move |_| async move {
        w.waiting_for(LOCK_KEY).await == 1 && w.waiting_for(GATE_KEY).await == 1
    })
    .await;
    // One instance migrates (at the gate), the other waits for the migration lock.
    assert_eq!(world.waiting_for(LOCK_KEY).await, 1, "one instance waits");
    assert_eq!(
        world.waiting_for(GATE_KEY).await,
        1,
        "one instance migrates"
    );
    gate.open().await;
    let a = MigrateWorld::finish("instance-a", a).await;
    let b = MigrateWorld::finish("instance-b", b).await;
    for run in [&a, &b] {
        run.never_shows("the database password", &world.password());
        assert!(run.ok, "{} fails: {}", run.instance, run.output);
    }

    assert_eq!(
        world.runs_recorded().await,
        1,
        "the RunPython step ran once"
    );
    assert_eq!(world.recorded("0001_initial").await, 1);
    assert_eq!(world.recorded("0002_record_run").await, 1);

    let (migrator, waiter): (&HookRun, &HookRun) = if a.output.contains("waits for the") {
        (&b, &a)
    } else {
        (&a, &b)
    };
    let m = &migrator.instance;
    let w = &waiter.instance;
    migrator.says(&format!("migrate: {m} holds the migration lock (waited "));
    migrator.never_says("waits for the migration lock");
    migrator.says(&format!("migrate: {m} applies 2 migration(s)"));
    migrator.says("Applying ledger.0002_record_run... OK");
    migrator.says(&format!("migrate: {m} migrated the database"));
    waiter.says(&format!(
        "migrate: {w} waits for the migration lock (another instance is migrating)"
    ));
    waiter.says(&format!("migrate: {w} holds the migration lock (waited "));
    waiter.says(&format!("migrate: {w}: nothing left to apply"));
    waiter.says("No migrations to apply.");
    waiter.never_says("Applying ledger");
    // Neither leaves the lock behind.
    assert_eq!(world.advisory_locks_left().await, 0);
}

/// The control: the same two concurrent instances with the hook as it was (a plain `migrate`)
/// race: both apply the migration (the RunPython step runs twice), or one of them fails.
#[tokio::test]
async fn without_the_lock_two_instances_race() {
    let world = MigrateWorld::new().await;
    let unlocked = world.unlocked_hook();
    let env = gated();
    let env = env_refs(&env);
    let gate = world.close_gate(GATE_KEY).await;
    let mut a = world.start(&unlocked, "instance-a", &env);
    let mut b = world.start(&unlocked, "instance-b", &env);
    // Both at the gate, or one at the gate and the other already failed.
    let w = &world;
    wait_for(&mut [&mut a, &mut b], move |exited| async move {
        let at_gate = w.waiting_for(GATE_KEY).await;
        at_gate == 2 || (at_gate == 1 && exited == 1)
    })
    .await;
    gate.open().await;
    let a = MigrateWorld::finish("instance-a", a).await;
    let b = MigrateWorld::finish("instance-b", b).await;
    let runs = world.runs_recorded().await;
    let failed: Vec<&HookRun> = [&a, &b].into_iter().filter(|r| !r.ok).collect();
    assert!(
        runs == 2 || failed.len() == 1,
        "no race seen: {runs} run(s) recorded; a: {}\nb: {}",
        a.output,
        b.output
    );
    eprintln!(
        "control without the lock: {runs} run(s) of the RunPython step, {} hook(s) failed",
        failed.len()
    );
    if runs == 2 {
        assert_eq!(world.recorded("0002_record_run").await, 2, "applied twice");
    } else {
        // The loser collided with the winner's tables ("already exists").
        failed[0].says("already exists");
    }
}

#[tokio::test]
async fn a_failing_migration_fails_the_hook_with_its_error_and_releases_the_lock() {
    let world = MigrateWorld::new().await;
    let failed = world
        .run(
            &hook(),
            "instance-a",
            &[("FIXTURE_FAIL", "ledger 0002 failed on purpose")],
        )
        .await;
    failed.never_shows("the database password", &world.password());
    assert!(!failed.ok, "{}", failed.output);
    assert_eq!(failed.code, Some(1), "{}", failed.output);
    failed.says("RuntimeError: ledger 0002 failed on purpose");
    failed.says(
        "postdeploy: the migration failed on instance-a (its error is above); the deploy fails",
    );
    assert_eq!(world.recorded("0002_record_run").await, 0);

    // The lock went with the failed session: the next instance takes it at once and applies
    // what is left (0001 was committed before 0002 failed).
    let next = world
        .run(&hook(), "instance-b", &[("FIXTURE_SLEEP", "0")])
        .await;
    assert!(next.ok, "{}", next.output);
    next.says("migrate: instance-b holds the migration lock (waited ");
    next.never_says("waits for the migration lock");
    next.says("migrate: instance-b applies 1 migration(s)");
    assert_eq!(world.runs_recorded().await, 1);
}

/// A database the hook cannot open fails it with the driver's error, which names the database
/// but not the password of the URL.
#[tokio::test]
async fn a_database_that_cannot_be_opened_fails_the_hook_without_printing_its_password() {
    let world = MigrateWorld::new().await;
    let mut missing = url::Url::parse(&world.database_url).unwrap();
    missing.set_path("no_such_database");
    let refused = world
        .run(
            &hook(),
            "instance-a",
            &[("DATABASE_URL", missing.as_str()), ("FIXTURE_SLEEP", "0")],
        )
        .await;
    refused.never_shows("the database password", &world.password());
    assert_eq!(refused.code, Some(1), "{}", refused.output);
    refused.says("\"no_such_database\" does not exist");
    refused.says("postdeploy: the migration failed on instance-a (its error is above)");
}

#[tokio::test]
async fn sqlite_migrates_without_a_lock_and_says_so() {
    let world = MigrateWorld::new().await;
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:///{}", dir.path().join("db.sqlite3").display());
    let run = world
        .run(
            &hook(),
            "instance-a",
            &[("DATABASE_URL", &url), ("FIXTURE_SLEEP", "0")],
        )
        .await;
    assert!(run.ok, "{}", run.output);
    run.says("migrate: the database is sqlite, not PostgreSQL: no advisory lock, instance-a migrates without one");
    run.says("Applying ledger.0002_record_run... OK");
}

#[tokio::test]
async fn no_django_container_fails_the_hook() {
    let world = MigrateWorld::new().await;
    let run = world
        .run(&hook(), "instance-a", &[("SHIM_NO_DJANGO", "1")])
        .await;
    assert_eq!(run.code, Some(1), "{}", run.output);
    run.says("postdeploy: no running django container found");
}
