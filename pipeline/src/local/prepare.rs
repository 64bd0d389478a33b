//! Before the local run: build the images of the configuration into the local engine, and
//! render the template for the local environment.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::config::{Config, EnvironmentSpec};

use super::engine::Engine;

/// A build context that is a Cargo package gets a static binary first: the package is
/// built for the host's gnu target with `-C target-feature=+crt-static` and copied to
/// `<context>/bin/<package>`, which its Dockerfile copies into a `FROM scratch` image.
/// Returns the binaries it wrote.
pub fn build_static_binaries(config: &Config) -> Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for (name, _, build) in config.built_images() {
        let context = config.resolve(&build.context);
        let manifest = context.join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let text = std::fs::read_to_string(&manifest)
            .with_context(|| format!("cannot read {}", manifest.display()))?;
        let doc: toml::Table = toml::from_str(&text)
            .with_context(|| format!("{} is not valid TOML", manifest.display()))?;
        let package = doc
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .with_context(|| format!("{} has no [package] name", manifest.display()))?
            .to_string();
        let triple = host_triple()?;
        tracing::info!(
            "building the static binary {package} for image {name} ({triple}, crt-static)"
        );
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(&cargo)
            .current_dir(&config.root)
            .args([
                "build",
                "--release",
                "--package",
                &package,
                "--target",
                &triple,
            ])
            .env(
                "CARGO_ENCODED_RUSTFLAGS",
                "-Ctarget-feature=+crt-static\x1f-Cstrip=symbols",
            )
            .env_remove("RUSTFLAGS")
            .status()
            .with_context(|| format!("cannot run {cargo} build for the package {package}"))?;
        if !status.success() {
            bail!("cargo build of the package {package} (context of image {name}) failed; see the compiler output above");
        }
        let target_dir = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| config.root.join("target"));
        let built = target_dir.join(&triple).join("release").join(&package);
        let dest_dir = context.join("bin");
        std::fs::create_dir_all(&dest_dir)
            .with_context(|| format!("cannot create {}", dest_dir.display()))?;
        let dest = dest_dir.join(&package);
        std::fs::copy(&built, &dest)
            .with_context(|| format!("cannot copy {} to {}", built.display(), dest.display()))?;
        written.push(dest);
    }
    Ok(written)
}

fn host_triple() -> Result<String> {
    let out = std::process::Command::new("rustc")
        .arg("-vV")
        .output()
        .context("cannot run `rustc -vV` to learn the host target")?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: "))
        .map(|h| h.trim().to_string())
        .context("`rustc -vV` printed no host line")
}

/// The local reference of a built image: `<repository>:<release>`.
pub fn local_reference(repository: &str, release: &str) -> String {
    format!("{repository}:{release}")
}

/// Builds every image of the configuration that this repository builds into the engine,
/// tagged `<repository>:<release>`. Returns image name → reference.
pub async fn build_images(
    engine: &Engine,
    config: &Config,
    release: &str,
) -> Result<BTreeMap<String, String>> {
    let mut built = BTreeMap::new();
    for (name, image, build) in config.built_images() {
        let context = config.resolve(&build.context);
        let dockerfile = match &build.dockerfile {
            None => "Dockerfile".to_string(),
            Some(d) => {
                let full = config.resolve(d);
                full.strip_prefix(&context)
                    .with_context(|| {
                        format!(
                            "images.{name}.build.dockerfile {} is outside the context {}: the local build sends only the context",
                            d.display(),
                            build.context.display()
                        )
                    })?
                    .to_string_lossy()
                    .to_string()
            }
        };
        let reference = local_reference(&image.repository, release);
        tracing::info!(
            "building image {name} as {reference} from {}",
            context.display()
        );
        let labels = HashMap::from([("deploy.local.image".to_string(), name.to_string())]);
        engine
            .build_image(&context, &dockerfile, &reference, &labels)
            .await?;
        built.insert(name.to_string(), reference);
    }
    Ok(built)
}

/// Applies the environment's image stand-ins to the template: a container whose image is
/// `${image.X}`, with X replaced by Y, runs `${image.Y}`, and gets the stand-in's command
/// when it sets none.
pub fn apply_image_overrides(template: &mut Value, env: &EnvironmentSpec) {
    let Some(defs) = template
        .get_mut("containerDefinitions")
        .and_then(Value::as_array_mut)
    else {
        return;
    };
    for def in defs {
        let Some(image) = def.get("image").and_then(Value::as_str) else {
            continue;
        };
        let Some(name) = image
            .strip_prefix("${image.")
            .and_then(|s| s.strip_suffix('}'))
        else {
            continue;
        };
        let Some(stand_in) = env.images.get(name) else {
            continue;
        };
        def["image"] = Value::String(format!("${{image.{}}}", stand_in.image));
        let has_command = def.get("command").is_some_and(|c| !c.is_null());
        if let (false, Some(command)) = (has_command, &stand_in.command) {
            def["command"] = Value::from(command.clone());
        }
    }
}

/// Renders the template for a local environment: stand-ins applied, `${image.NAME}` →
/// local references of built images (external ones keep `<repository>:<tag>`), `${release}`,
/// `${account}` (the configured one, else `000000000000`), `${region}`, `${var.NAME}`.
pub fn render(
    config: &Config,
    env_name: &str,
    release: &str,
    built: &BTreeMap<String, String>,
) -> Result<String> {
    let env = config.environment(env_name)?;
    let path = config.resolve(&config.bundle.template);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read the template {}", path.display()))?;
    let mut doc: Value = serde_json::from_str(&text)
        .with_context(|| format!("the template {} is not valid JSON", path.display()))?;
    apply_image_overrides(&mut doc, env);
    let vars = config.vars_for(env);
    let mut values: BTreeMap<String, String> = BTreeMap::new();
    for (name, image) in &config.images {
        let reference = built
            .get(name)
            .cloned()
            .unwrap_or_else(|| match &image.tag {
                Some(tag) => format!("{}:{tag}", image.repository),
                None => local_reference(&image.repository, release),
            });
        values.insert(format!("image.{name}"), reference);
    }
    for (k, v) in vars {
        values.insert(format!("var.{k}"), v);
    }
    values.insert("release".into(), release.to_string());
    values.insert(
        "account".into(),
        config
            .account
            .clone()
            .unwrap_or_else(|| "000000000000".into()),
    );
    values.insert("region".into(), config.region.clone());
    substitute(&mut doc, &values, &path)?;
    Ok(serde_json::to_string_pretty(&doc)? + "\n")
}

fn substitute(v: &mut Value, values: &BTreeMap<String, String>, path: &Path) -> Result<()> {
    match v {
        Value::String(s) => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let end = after.find('}').with_context(|| {
                    format!("{}: unclosed placeholder in {s:?}", path.display())
                })?;
                let key = &after[..end];
                let value = values.get(key).with_context(|| {
                    format!(
                        "{}: unknown placeholder ${{{key}}}: define it in deploy.toml ([vars] for var.NAME, [images] for image.NAME)",
                        path.display()
                    )
                })?;
                out.push_str(value);
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        Value::Array(items) => {
            for i in items {
                substitute(i, values, path)?;
            }
        }
        Value::Object(map) => {
            for (_, i) in map.iter_mut() {
                substitute(i, values, path)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_repository_template_for_local() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let config = Config::load(&root.join("deploy.toml"), &Default::default()).unwrap();
        let built = BTreeMap::from([("backend".to_string(), "antenna-backend:v1".to_string())]);
        let text = render(&config, "local", "v1", &built).unwrap();
        let plan = super::super::plan::Plan::parse("Dockerrun.aws.json", &text, 8000).unwrap();
        let images: Vec<&str> = plan.images().into_iter().map(|(i, _)| i).collect();
        assert_eq!(
            images,
            ["antenna-backend:v1"],
            "every container runs the demo image locally"
        );
        let ml = plan.container("ml-backend-minimal").unwrap();
        assert_eq!(
            ml.command.as_deref(),
            Some(&["/start-ml-backend".to_string()][..])
        );
        let awscli = plan.container("awscli").unwrap();
        assert_eq!(
            awscli.command.as_deref(),
            Some(&["sleep".to_string(), "9999999".to_string()][..])
        );
        let django = plan.container("django").unwrap();
        assert_eq!(django.ports[0].host, Some(8080));
        assert!(django
            .environment
            .contains(&("RELEASE".to_string(), "v1".to_string())));
        assert!(django.environment.contains(&(
            "DJANGO_SETTINGS_MODULE".to_string(),
            "config.settings.production".to_string()
        )));
    }

    #[test]
    fn unknown_placeholder_names_the_file() {
        let mut v = serde_json::json!({"a": ["x ${var.NOPE} y"]});
        let err = substitute(&mut v, &BTreeMap::new(), Path::new("t.json"))
            .unwrap_err()
            .to_string();
        assert_eq!(err, "t.json: unknown placeholder ${var.NOPE}: define it in deploy.toml ([vars] for var.NAME, [images] for image.NAME)");
    }
}
