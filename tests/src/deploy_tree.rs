//! The deploy inputs of a test, in a directory of its own: a `deploy.toml` built table by
//! table ([`DeployToml`]), the Dockerrun template, executable hooks, or a copy of the
//! repository's own inputs ([`repository_copy`]).

use std::path::{Path, PathBuf};

use pipeline::config::Config;

/// A `deploy.toml`, built from its tables in the order they are added.
#[derive(Debug, Clone)]
pub struct DeployToml {
    text: String,
}

impl DeployToml {
    /// `region = "us-west-2"` and the application's name, nothing else yet.
    pub fn new(application: &str) -> Self {
        Self {
            text: format!("region = \"us-west-2\"\napplication = \"{application}\"\n"),
        }
    }

    /// Antenna's shape: the application `application` (Antenna's is `antenna`) with its
    /// backend image `antenna-backend` built from `.`, no environment yet.
    pub fn antenna(application: &str) -> Self {
        Self::new(application).built_image("backend", "antenna-backend", r#"context = ".""#)
    }

    /// `[images.NAME]` built as `build` says (the keys of its inline table, such as
    /// `context = "demo"`).
    pub fn built_image(self, name: &str, repository: &str, build: &str) -> Self {
        self.table(
            &format!("images.{name}"),
            &format!("repository = \"{repository}\"\nbuild = {{ {build} }}"),
        )
    }

    /// `[images.NAME]`, an external image: the tag `tag` of `repository`, never built.
    pub fn external_image(self, name: &str, repository: &str, tag: &str) -> Self {
        self.table(
            &format!("images.{name}"),
            &format!("repository = \"{repository}\"\ntag = \"{tag}\""),
        )
    }

    /// `[environments.NAME]` with `keys` (TOML lines).
    pub fn environment(self, name: &str, keys: &str) -> Self {
        self.table(&format!("environments.{name}"), keys)
    }

    /// `[[environments.ENV.checks]]` with `keys` (TOML lines).
    pub fn check(mut self, env: &str, keys: &str) -> Self {
        self.text.push_str(&format!(
            "\n[[environments.{env}.checks]]\n{}\n",
            keys.trim_end()
        ));
        self
    }

    /// `[NAME]` with `keys` (TOML lines).
    pub fn table(mut self, name: &str, keys: &str) -> Self {
        self.text
            .push_str(&format!("\n[{name}]\n{}\n", keys.trim_end()));
        self
    }

    /// `toml` appended as it is (keys of the last table, or tables of their own).
    pub fn raw(mut self, toml: &str) -> Self {
        self.text.push_str(toml);
        self
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    /// Writes `DIR/deploy.toml`; returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let path = dir.join("deploy.toml");
        std::fs::write(&path, &self.text).unwrap();
        path
    }

    /// Writes `DIR/deploy.toml` and loads it with the real loader, without overrides.
    pub fn load(&self, dir: &Path) -> Config {
        Config::load(&self.write(dir), &Default::default()).unwrap_or_else(|e| {
            panic!("the test's deploy.toml does not load: {e:#}\n{}", self.text)
        })
    }
}

/// Writes `DIR/Dockerrun.template.json`.
pub fn write_template(dir: &Path, template: &str) {
    std::fs::write(dir.join("Dockerrun.template.json"), template).unwrap();
}

/// Writes `text` to `path` (its folders created), mode 0755.
pub fn write_executable(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().expect("a file has a parent")).unwrap();
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// A copy of the repository's deploy inputs ([`crate::DEPLOY_INPUTS`]) in a fresh directory.
pub fn repository_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    crate::copy_repo_files(dir.path(), crate::DEPLOY_INPUTS);
    dir
}
