//! A rendered `Dockerrun.aws.json` through the duplicate key scan, the model and the
//! Dockerrun and memory lints, as `cargo xtask lint FILE` reads it.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pipeline::dockerrun::Dockerrun;

fuzz_target!(|text: &str| {
    let path = Path::new("Dockerrun.aws.json");
    let _ = pipeline::lint::duplicate_keys(text);
    let Ok(value) = serde_json::from_str::<serde_json::Value>(text) else {
        return;
    };
    match Dockerrun::from_value(value) {
        Ok(d) => {
            let _ = pipeline::lint::lint_dockerrun(path, text, &d);
            let _ = pipeline::lint::lint_memory(path, text, &d, "t3.small");
            let _ = d.to_pretty_json();
        }
        Err(e) => {
            let _ = pipeline::lint::locate(text, &e.path);
        }
    }
});
