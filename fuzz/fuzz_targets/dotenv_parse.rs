//! A dotenv file (what `secrets import` reads) through its parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| {
    let _ = pipeline::envprops::dotenv::parse(text);
});
