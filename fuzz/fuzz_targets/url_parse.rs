//! URLs through verify's Redis, AMQP, NATS and broker parsers and through the masking; a
//! secret that `url_secrets` names must never survive `mask_url`.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pipeline::verify::{mask_url, url_secrets, AmqpUrl, Broker, NatsUrl, RedisUrl};

fuzz_target!(|text: &str| {
    let masked = mask_url(text);
    for secret in url_secrets(text) {
        // The mask itself is made of `*`: a secret of stars cannot be told from it.
        if secret.chars().count() >= 3 && !secret.contains('*') {
            assert!(
                !masked.contains(&secret),
                "mask_url left a secret in {masked:?}"
            );
        }
    }
    if let Ok(u) = RedisUrl::parse(text) {
        let _ = u.masked();
    }
    if let Ok(u) = AmqpUrl::parse(text) {
        let _ = u.masked();
    }
    if let Ok(u) = NatsUrl::parse(text) {
        let _ = u.masked();
    }
    if let Ok(b) = Broker::parse(text) {
        let _ = b.masked();
    }
});
