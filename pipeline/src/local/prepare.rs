//! Before the local run: build the images of the configuration into the local engine, and
//! render the template for the local environment.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::config::{Config, EnvironmentSpec, Target};
use crate::docker::{self, Engine, OutputMode};
use crate::release::Release;
use crate::template;

/// The local reference of a built image: `<repository>:<release>`.
pub fn local_reference(repository: &str, release: &str) -> String {
    format!("{repository}:{release}")
}

/// Builds every image of the configuration that this repository builds into the engine,
/// tagged `<repository>:<release>`, as the AWS target builds them (`.dockerignore`, `args`,
/// `target`, `platform`), with the release's OCI labels (the source's commit for an image
/// built from a git source). Returns image name → reference.
pub async fn build_images(
    engine: &Engine,
    config: &Config,
    release: &Release,
    output: OutputMode,
) -> Result<BTreeMap<String, String>> {
    let mut built = BTreeMap::new();
    for (name, image, build) in config.built_images() {
        let reference = local_reference(&image.repository, &release.name);
        let mut labels = crate::image::labels_of(release, name, None);
        // No build time: a rebuild of the same tree stays the same image.
        labels.remove(crate::image::LABEL_CREATED);
        labels.insert("deploy.local.image".to_string(), name.to_string());
        let (context, options) =
            docker::build::prepare(config, build, reference.clone(), labels, output)
                .with_context(|| format!("cannot build image {name}"))?;
        tracing::info!(
            "building image {name} as {reference} from {}",
            context.root.display()
        );
        engine
            .build(context, &options)
            .await
            .with_context(|| format!("cannot build image {name} ({reference})"))?;
        built.insert(name.to_string(), reference);
    }
    Ok(built)
}

/// Applies the environment's image stand-ins to a rendered Dockerrun file: a container that
/// runs image X, replaced by Y in `[environments.NAME.images]`, runs Y's local reference
/// instead, with the stand-in's `command` when it sets none. Returns the new text, or `None`
/// when nothing was replaced.
pub fn apply_stand_ins(
    config: &Config,
    env: &EnvironmentSpec,
    release: &str,
    rendered: &str,
) -> Result<Option<String>> {
    if env.images.is_empty() {
        return Ok(None);
    }
    let reference = |name: &str| -> Result<String> {
        let image = config.images.get(name).with_context(|| {
            format!("no image {name:?} in [images] of {}", config.path.display())
        })?;
        Ok(
            template::image_reference(image, Target::Local, None, release)
                .unwrap_or_else(|| local_reference(&image.repository, release)),
        )
    };
    let mut by_reference = BTreeMap::new();
    for (replaced, stand_in) in &env.images {
        by_reference.insert(
            reference(replaced)?,
            (reference(&stand_in.image)?, stand_in.command.clone()),
        );
    }
    let mut doc: Value = serde_json::from_str(rendered)
        .context("the rendered Dockerrun.aws.json is not valid JSON")?;
    let mut changed = false;
    for def in doc
        .get_mut("containerDefinitions")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let Some(image) = def.get("image").and_then(Value::as_str) else {
            continue;
        };
        let Some((new_image, command)) = by_reference.get(image) else {
            continue;
        };
        def["image"] = Value::String(new_image.clone());
        let has_command = def.get("command").is_some_and(|c| !c.is_null());
        if let (false, Some(command)) = (has_command, command) {
            def["command"] = Value::from(command.clone());
        }
        changed = true;
    }
    // Invariant: a `serde_json::Value` (string keys only) always serializes.
    Ok(
        changed
            .then(|| serde_json::to_string_pretty(&doc).expect("a JSON value serializes") + "\n"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn stand_ins_replace_external_images_of_the_repository_template() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let config = Config::load(&root.join("deploy.toml"), &Default::default()).unwrap();
        let bundle = crate::bundle::make_bundle(
            &crate::bundle::BundleRequest::new(
                &config,
                "local",
                crate::release::Release::fixed("v1", "abc"),
            )
            .with_dry_run(true),
        )
        .unwrap();
        assert!(
            bundle.dockerrun.contains("antenna-ml-minimal:v0.1.0"),
            "{}",
            bundle.dockerrun
        );
        let env = config.environment("local").unwrap();
        let text = apply_stand_ins(&config, env, "v1", &bundle.dockerrun)
            .unwrap()
            .unwrap();
        let plan =
            super::super::plan::Plan::parse("Dockerrun.aws.json", &text, env.host_port_offset)
                .unwrap();
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

        let staging = config.environment("staging").unwrap();
        assert_eq!(
            apply_stand_ins(&config, staging, "v1", &bundle.dockerrun).unwrap(),
            None
        );
    }
}
