//! An `.ebextensions` `.config` (YAML or JSON) through the extension lint, the option
//! settings reader and the secret scan of other bundle files.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let path = Path::new(".ebextensions/01-fuzz.config");
    let _ = pipeline::lint::lint_ebextension(path, text, Some("/api/v2/"));
    let _ = pipeline::lint::lint_ebextension(path, text, None);
    let _ = pipeline::lint::option_settings(text);
    let _ = pipeline::lint::lint_file_secrets(Path::new(".platform/hooks/x.sh"), text);
});
