//! Benchmark: sending a large build context to the Docker Engine, ours (streamed tar) against
//! `docker build` (classic builder) on the same context.
//!
//! `cargo run --release -p integration --example context_bench [FILES] [MIB]`
//! (defaults: 4000 files, 400 MiB; half of the files and half of the bytes are excluded by
//! `.dockerignore`). Prints the context size, the time to send it, the whole build time and
//! the peak resident memory (VmHWM) of our process and of the `docker` CLI.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use pipeline::docker::{BuildContext, BuildOptions, Engine, OutputMode};

fn vm_hwm_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Writes `files` files totalling about `mib` MiB; odd ones go where `.dockerignore` points.
fn generate(dir: &Path, files: usize, mib: usize) -> Result<()> {
    let per_file = mib * 1024 * 1024 / files;
    let mut block = vec![0u8; per_file];
    for (i, b) in block.iter_mut().enumerate() {
        *b = (i * 31 % 251) as u8;
    }
    for i in 0..files {
        let (top, ext) = if i % 2 == 0 {
            ("src", "bin")
        } else {
            ("build", "o")
        };
        let sub = dir.join(top).join(format!("d{:03}", i % 100));
        std::fs::create_dir_all(&sub)?;
        block[0] = i as u8;
        std::fs::File::create(sub.join(format!("f{i:05}.{ext}")))?.write_all(&block)?;
    }
    std::fs::write(dir.join(".dockerignore"), "# generated\nbuild\n**/*.o\n")?;
    std::fs::write(
        dir.join("Dockerfile"),
        "FROM scratch\nCOPY Dockerfile /Dockerfile\n",
    )?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let files: usize = args.get(1).map(|s| s.parse()).transpose()?.unwrap_or(4000);
    let mib: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(400);
    let dir = tempfile::tempdir()?;
    let ctx = dir.path();
    let t = Instant::now();
    generate(ctx, files, mib)?;
    println!(
        "generated {files} files, {mib} MiB in {:.1}s (half of each excluded by .dockerignore)",
        t.elapsed().as_secs_f64()
    );
    let before = vm_hwm_kib("self").unwrap_or(0);

    let engine = Engine::connect(None).await?;
    let tag = format!("context-bench:{:08x}", fastrand::u32(..));
    let opts = BuildOptions {
        tag: tag.clone(),
        target: None,
        args: Default::default(),
        labels: Default::default(),
        platform: "linux/amd64".into(),
        dockerfile_display: "Dockerfile".into(),
        output: OutputMode::Plain,
    };
    let t = Instant::now();
    let context = BuildContext::prepare(ctx, &ctx.join("Dockerfile"))?;
    let built = engine.build(context, &opts).await?;
    let ours_total = t.elapsed();
    let ours_hwm = vm_hwm_kib("self").unwrap_or(0);
    engine.untag(&tag).await.ok();

    // The Docker CLI on the same context, classic builder, its VmHWM sampled while it runs.
    let cli_tag = format!("{tag}-cli");
    let t = Instant::now();
    let mut child = Command::new("docker")
        .args(["build", "-q", "-t", &cli_tag, "."])
        .current_dir(ctx)
        .env("DOCKER_BUILDKIT", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run `docker build`")?;
    let pid = child.id().to_string();
    let mut cli_hwm = 0;
    let status = loop {
        if let Some(v) = vm_hwm_kib(&pid) {
            cli_hwm = cli_hwm.max(v);
        }
        if let Some(s) = child.try_wait()? {
            break s;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let cli_total = t.elapsed();
    if !status.success() {
        bail!("docker build failed");
    }
    let _ = Command::new("docker")
        .args(["rmi", "-f", &cli_tag])
        .output();

    println!(
        "context sent: {} files, {:.1} MiB of tar, {} excluded",
        built.context.files,
        built.context.bytes as f64 / 1048576.0,
        built.context.excluded
    );
    println!(
        "{:<34} {:>12} {:>12} {:>14}",
        "", "send", "build total", "peak RSS"
    );
    println!(
        "{:<34} {:>11.2}s {:>11.2}s {:>10} MiB   (VmHWM before the build: {} MiB)",
        "pipeline (bollard, streamed tar)",
        built.context.send_ms as f64 / 1000.0,
        ours_total.as_secs_f64(),
        ours_hwm / 1024,
        before / 1024
    );
    println!(
        "{:<34} {:>12} {:>11.2}s {:>10} MiB",
        "docker build (DOCKER_BUILDKIT=0)",
        "-",
        cli_total.as_secs_f64(),
        cli_hwm / 1024
    );
    Ok(())
}
