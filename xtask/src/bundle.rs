//! `render`, `lint` and `bundle`.

use anyhow::Result;

use crate::Global;

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// Run the whole test suite with its test services (the README's test command).
    Test(crate::test::TestCmd),
}

impl Cmd {
    pub async fn run(self, _global: &Global) -> Result<()> {
        match self {
            Cmd::Test(t) => t.run(),
        }
    }
}
