//! The output folder of `bundle` as one unit, through the real binary: two bundles at once in
//! one folder end with a matching pair, and an interrupt while the pair is written leaves no
//! temporary file and the pair the folder had. No AWS, no Docker.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use integration::deploy_tree::repository_copy;
use integration::{output_text as text, stand_in_agent, xtask};

/// The test hook of `pipeline::bundle`: a pause between the temporary files and the renames.
const PAUSE_VAR: &str = "DEPLOY_TEST_BUNDLE_PAUSE_MS";

/// `bundle -e staging --out-dir out` of `release` in `dir`, started, not waited for.
fn start_bundle(dir: &Path, release: &str, pause_ms: u64) -> Child {
    xtask()
        .arg("--config")
        .arg(dir.join("deploy.toml"))
        .args(["bundle", "-e", "staging", "--out-dir", "out"])
        .env("DEPLOY_RELEASE", release)
        .env("DEPLOY_ACCOUNT", "123456789012")
        .env(PAUSE_VAR, pause_ms.to_string())
        // Staging has instance checks, so its bundle carries the verify agent. These tests are
        // about the output folder and time its lock with pauses: a small stand-in keeps the
        // zip as quick as it was (the real agent is bundled by the deploy and local tests).
        .env(pipeline::verify::agent::AGENT_VAR, stand_in_agent(dir))
        .env("AWS_ACCESS_KEY_ID", "")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("GITHUB_ACTIONS")
        .current_dir(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Names in `out` other than the pair and the lock file.
fn strays(out: &Path) -> Vec<String> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !["deploy.zip", "Dockerrun.aws.json", ".bundle.lock"].contains(&n.as_str()))
        .collect()
}

/// Waits (up to a minute) for `path` to exist.
fn wait_for(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The pair in `out`: the `Dockerrun.aws.json` inside `deploy.zip` must be the file next to
/// it. Returns that file.
fn consistent_pair(out: &Path) -> String {
    let next_to = std::fs::read_to_string(out.join("Dockerrun.aws.json")).unwrap();
    let zip = std::fs::File::open(out.join("deploy.zip")).unwrap();
    let mut zip = zip::ZipArchive::new(zip).unwrap();
    let mut inside = String::new();
    zip.by_name("Dockerrun.aws.json")
        .unwrap()
        .read_to_string(&mut inside)
        .unwrap();
    assert_eq!(
        inside, next_to,
        "deploy.zip and the Dockerrun.aws.json next to it differ"
    );
    next_to
}

fn temp_path(out: &Path, name: &str, child: &Child) -> PathBuf {
    out.join(format!("{name}.tmp-{}", child.id()))
}

#[test]
fn two_bundles_at_once_in_one_folder_end_with_a_matching_pair() {
    let dir = repository_copy();
    let out = dir.path().join("out");

    // The first holds the folder (its temporary files written, renames pending) while the
    // second starts: the second waits for it, names it, then writes its own pair.
    let first = start_bundle(dir.path(), "v1.0.0", 1500);
    wait_for(&temp_path(&out, "deploy.zip", &first));
    let second = start_bundle(dir.path(), "v2.0.0", 0);
    let (first_pid, first, second) = (
        first.id(),
        first.wait_with_output().unwrap(),
        second.wait_with_output().unwrap(),
    );
    assert!(first.status.success(), "{}", text(&first));
    assert!(second.status.success(), "{}", text(&second));
    let waited = format!("is locked by process {first_pid} (bundle of release v1.0.0)");
    assert!(
        text(&second).contains(&waited),
        "the second bundle does not name the one it waits for:\n{}",
        text(&second)
    );
    let pair = consistent_pair(&out);
    assert!(pair.contains(":v2.0.0\""), "the last bundle's pair: {pair}");
    assert_eq!(strays(&out), Vec::<String>::new());

    // Started together, without a pause: whichever renames last, the pair matches.
    for round in 0..3 {
        let a = start_bundle(dir.path(), &format!("v3.{round}.0"), 0);
        let b = start_bundle(dir.path(), &format!("v4.{round}.0"), 0);
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        assert!(a.status.success(), "{}", text(&a));
        assert!(b.status.success(), "{}", text(&b));
        let pair = consistent_pair(&out);
        assert!(
            pair.contains(&format!(":v3.{round}.0\""))
                || pair.contains(&format!(":v4.{round}.0\"")),
            "{pair}"
        );
        assert_eq!(strays(&out), Vec::<String>::new());
    }
}

/// Sends `signal` (a `kill` name) to `child`.
fn kill(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn an_interrupt_while_the_pair_is_written_leaves_the_folder_as_it_was() {
    let dir = repository_copy();
    let out = dir.path().join("out");

    // Nothing there yet: an interrupted first bundle leaves no file but the lock.
    let child = start_bundle(dir.path(), "v1.0.0", 30_000);
    wait_for(&temp_path(&out, "deploy.zip", &child));
    assert!(temp_path(&out, "Dockerrun.aws.json", &child).exists());
    kill(&child, "INT");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(text(&o).contains("interrupted"), "{}", text(&o));
    assert_eq!(strays(&out), Vec::<String>::new());
    assert!(!out.join("deploy.zip").exists());
    assert!(!out.join("Dockerrun.aws.json").exists());

    // A pair of v1, then v2 interrupted by SIGINT and by SIGTERM: v1's pair stays, whole.
    let o = start_bundle(dir.path(), "v1.0.0", 0)
        .wait_with_output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let before = consistent_pair(&out);
    let zip_before = std::fs::read(out.join("deploy.zip")).unwrap();
    for (signal, code) in [("INT", 130), ("TERM", 143)] {
        let child = start_bundle(dir.path(), "v2.0.0", 30_000);
        wait_for(&temp_path(&out, "deploy.zip", &child));
        kill(&child, signal);
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(code), "SIG{signal}: {}", text(&o));
        assert_eq!(strays(&out), Vec::<String>::new(), "SIG{signal}");
        assert_eq!(consistent_pair(&out), before, "SIG{signal}");
        assert_eq!(std::fs::read(out.join("deploy.zip")).unwrap(), zip_before);
    }

    // The lock was released with the process: the next bundle goes through at once.
    let o = start_bundle(dir.path(), "v3.0.0", 0)
        .wait_with_output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert!(!text(&o).contains("is locked by"), "{}", text(&o));
    assert!(consistent_pair(&out).contains(":v3.0.0\""));
}
