//! The stages of a deploy, as data.

use std::fmt;

use serde::Serialize;

/// One stage of `cargo xtask deploy`, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    Build,
    Push,
    Render,
    Bundle,
    Upload,
    Version,
    Deploy,
    Verify,
}

impl Stage {
    pub const ALL: [Stage; 8] = [
        Stage::Build,
        Stage::Push,
        Stage::Render,
        Stage::Bundle,
        Stage::Upload,
        Stage::Version,
        Stage::Deploy,
        Stage::Verify,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Stage::Build => "build",
            Stage::Push => "push",
            Stage::Render => "render",
            Stage::Bundle => "bundle",
            Stage::Upload => "upload",
            Stage::Version => "version",
            Stage::Deploy => "deploy",
            Stage::Verify => "verify",
        }
    }

    pub fn parse(s: &str) -> Option<Stage> {
        Stage::ALL.into_iter().find(|st| st.name() == s)
    }
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
