//! `.platform/hooks/postdeploy/*`: run on the host after the new containers start, as EB
//! runs them on the instance (where the `docker` CLI talks to the same engine).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};

/// The hook files of `dir` in name order; none when `dir` does not exist.
pub fn list(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve the hook directory {}", dir.display()))?;
    let mut hooks = Vec::new();
    for entry in std::fs::read_dir(&dir)
        .with_context(|| format!("cannot read the hook directory {}", dir.display()))?
    {
        let path = entry?.path();
        if path.is_file() {
            hooks.push(path);
        }
    }
    hooks.sort();
    Ok(hooks)
}

/// Runs one hook with `env` added; fails with its output when it exits non-zero, cannot
/// start, or outlives `timeout`.
pub async fn run(hook: &Path, env: &[(&str, String)], timeout: Duration) -> Result<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(hook)
        .with_context(|| format!("cannot read the postdeploy hook {}", hook.display()))?
        .permissions()
        .mode();
    if mode & 0o111 == 0 {
        bail!(
            "postdeploy hook {} is not executable: EB runs only executable hooks; run `chmod +x {}` and commit the mode",
            hook.display(),
            hook.display()
        );
    }
    let mut cmd = tokio::process::Command::new(hook);
    cmd.envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    if let Some(dir) = hook.parent() {
        cmd.current_dir(dir);
    }
    let output = tokio::time::timeout(timeout, cmd.output())
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "postdeploy hook {} did not finish within {}",
                hook.display(),
                humantime::format_duration(timeout)
            )
        })?
        .with_context(|| format!("cannot run the postdeploy hook {}", hook.display()))?;
    let mut text = String::from_utf8_lossy(&output.stdout).to_string();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    for line in text.lines() {
        tracing::info!(
            "  {}: {line}",
            hook.file_name().unwrap_or_default().to_string_lossy()
        );
    }
    if !output.status.success() {
        bail!(
            "postdeploy hook {} failed ({}); its output:\n{}",
            hook.display(),
            output
                .status
                .code()
                .map_or("killed by a signal".to_string(), |c| format!(
                    "exit code {c}"
                )),
            text.trim_end()
        );
    }
    Ok(text)
}
