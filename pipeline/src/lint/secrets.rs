//! Recognising secrets that must not go into a bundle.

/// Why an environment entry looks like a secret, or `None`.
///
/// Names: `*SECRET*`, `*PASSWORD`/`*PASSWD`, `*_KEY` (and `*_KEY_ID`), `*TOKEN*`, `*_DSN`,
/// `*CREDENTIALS*`. Values: URLs with a password (`scheme://user:pass@host`), private keys.
/// An empty value is not a secret.
pub fn secret_reason(name: &str, value: &str) -> Option<String> {
    if value.trim().is_empty() {
        return None;
    }
    let upper = name.to_ascii_uppercase();
    let by_name = if upper.contains("SECRET") {
        Some("its name contains SECRET")
    } else if upper.ends_with("PASSWORD") || upper.ends_with("PASSWD") || upper.ends_with("_PASS") {
        Some("its name ends with PASSWORD")
    } else if upper.ends_with("_KEY") || upper == "KEY" || upper.ends_with("_KEY_ID") {
        Some("its name ends with _KEY")
    } else if upper.contains("TOKEN") {
        Some("its name contains TOKEN")
    } else if upper.ends_with("_DSN") || upper == "DSN" {
        Some("it is a DSN")
    } else if upper.contains("CREDENTIALS") {
        Some("its name contains CREDENTIALS")
    } else {
        None
    };
    if let Some(r) = by_name {
        return Some(r.to_string());
    }
    if url_with_password(value) {
        return Some("its value is a URL with a password".to_string());
    }
    if value.contains("-----BEGIN") && value.contains("PRIVATE KEY") {
        return Some("its value is a private key".to_string());
    }
    None
}

/// True for `scheme://user:password@host…` with a non-empty password.
pub fn url_with_password(value: &str) -> bool {
    let Some((_, rest)) = value.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    match authority.rsplit_once('@') {
        Some((userinfo, _)) => userinfo.split_once(':').is_some_and(|(_, p)| !p.is_empty()),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values() {
        assert_eq!(
            secret_reason("DJANGO_SECRET_KEY", "x").unwrap(),
            "its name contains SECRET"
        );
        assert_eq!(
            secret_reason("POSTGRES_PASSWORD", "x").unwrap(),
            "its name ends with PASSWORD"
        );
        assert_eq!(
            secret_reason("AWS_ACCESS_KEY_ID", "x").unwrap(),
            "its name ends with _KEY"
        );
        assert_eq!(
            secret_reason("GITHUB_TOKEN", "x").unwrap(),
            "its name contains TOKEN"
        );
        assert_eq!(
            secret_reason("SENTRY_DSN", "https://k@o.example/1").unwrap(),
            "it is a DSN"
        );
        assert_eq!(
            secret_reason("DATABASE_URL", "postgres://u:p@db:5432/x").unwrap(),
            "its value is a URL with a password"
        );
        assert_eq!(secret_reason("POSTGRES_PASSWORD", ""), None);
        assert_eq!(
            secret_reason("REDIS_URL", "rediss://cache:6379/0?ssl_cert_reqs=none"),
            None
        );
        assert_eq!(secret_reason("USE_DOCKER", "yes"), None);
        assert_eq!(
            secret_reason("DJANGO_SETTINGS_MODULE", "config.settings.production"),
            None
        );
    }
}
