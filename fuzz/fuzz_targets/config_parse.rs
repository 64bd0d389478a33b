//! `deploy.toml` text through the parser and its validation.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pipeline::config::Config;

fuzz_target!(|text: &str| {
    if let Ok(config) = Config::parse(Path::new("deploy.toml"), text) {
        for name in config.environments.keys() {
            if let Ok(env) = config.environment(name) {
                let _ = config.vars_for(env);
                let _ = pipeline::bundle::verify_path(env);
            }
        }
    }
});
