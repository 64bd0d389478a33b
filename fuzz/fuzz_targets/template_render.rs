//! `Dockerrun.template.json` text through the renderer, with a context that knows the usual
//! placeholders and one that is unset; what renders is linted as `bundle` would.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pipeline::template::{render, RenderContext};

fuzz_target!(|text: &str| {
    let mut ctx = RenderContext::default();
    ctx.set("release", "v1.2.3");
    ctx.set("commit", "0123456789abcdef0123456789abcdef01234567");
    ctx.set("region", "us-west-2");
    ctx.set("application", "antenna");
    ctx.set("environment", "antenna-staging");
    ctx.set("image.web", "registry.example/web:v1.2.3");
    ctx.set("var.DOMAIN", "example.org");
    ctx.set("var.QUOTE", "a \"quoted\" ${value}\n");
    ctx.unset("account", "the AWS account is unknown");
    let path = Path::new("Dockerrun.template.json");
    if let Ok(r) = render(path, text, &ctx) {
        let _ = pipeline::lint::lint_dockerrun(path, text, &r.dockerrun);
    }
});
