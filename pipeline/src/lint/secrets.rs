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

/// A secret-looking value found in free text (a file's content, a command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextSecret {
    /// 1-based line of `text` it is on.
    pub line: usize,
    /// What it is, for the message (`DATABASE_PASSWORD=…`, `a URL with a password`).
    pub what: String,
    pub reason: String,
    /// The secret itself, as written (to mask wherever it would be shown).
    pub value: String,
}

/// Secret-looking values in free text: `NAME=VALUE`, `NAME: VALUE` and `--name=VALUE`
/// assignments whose name or value [`secret_reason`] flags, URLs with a password, and
/// private keys. References that are resolved at run time (`$VAR`, `${VAR}`, `$(…)`,
/// `{{…}}`, `{"Ref": …}`) are not secrets.
pub fn scan_text(text: &str) -> Vec<TextSecret> {
    let mut out: Vec<TextSecret> = Vec::new();
    let mut in_key: Option<(usize, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        if let Some((start, block)) = &mut in_key {
            block.push_str(line);
            block.push('\n');
            if line.contains("-----END") {
                out.push(TextSecret {
                    line: *start,
                    what: "a private key".into(),
                    reason: "its value is a private key".into(),
                    value: block.trim().to_string(),
                });
                in_key = None;
            }
            continue;
        }
        if line.contains("-----BEGIN") && line.contains("PRIVATE KEY") {
            in_key = Some((n, format!("{}\n", line.trim())));
            continue;
        }
        for word in line.split(|c: char| {
            c.is_whitespace() || matches!(c, '"' | '\'' | '`' | ',' | ';' | '(' | ')' | '[' | ']')
        }) {
            if let Some(password) = url_password(word) {
                out.push(TextSecret {
                    line: n,
                    what: "a URL with a password".into(),
                    reason: "its value is a URL with a password".into(),
                    value: password,
                });
            }
        }
        for (name, value) in assignments(line) {
            if runtime_reference(&value) || url_with_password(&value) {
                continue;
            }
            if let Some(reason) = secret_reason(&name.replace('-', "_"), &value) {
                out.push(TextSecret {
                    line: n,
                    what: format!("{name}=…"),
                    reason,
                    value,
                });
            }
        }
    }
    if let Some((start, block)) = in_key {
        out.push(TextSecret {
            line: start,
            what: "a private key".into(),
            reason: "its value is a private key".into(),
            value: block.trim().to_string(),
        });
    }
    out
}

/// `NAME=VALUE`, `NAME: VALUE`, `--name=VALUE` and `--name VALUE`-free assignments of a line,
/// with quotes taken off the value.
fn assignments(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let bytes = line.as_bytes();
    let is_name = |b: u8| b.is_ascii_alphanumeric() || b == b'_' || b == b'-';
    let mut i = 0;
    while i < bytes.len() {
        if !is_name(bytes[i]) || (i > 0 && is_name(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_name(bytes[i]) {
            i += 1;
        }
        let name = line[start..i].trim_start_matches('-');
        let sep = match bytes.get(i) {
            Some(b'=') => 1,
            Some(b':') if bytes.get(i + 1) == Some(&b' ') => 2,
            _ => 0,
        };
        if sep == 0 || name.is_empty() || !name.as_bytes()[0].is_ascii_alphabetic() {
            continue;
        }
        let rest = line[i + sep..].trim_start();
        let value = match rest.chars().next() {
            Some(q @ ('"' | '\'')) => rest[1..].split(q).next().unwrap_or(""),
            _ => rest
                .split(|c: char| c.is_whitespace() || c == ';' || c == '&' || c == '|')
                .next()
                .unwrap_or(""),
        };
        out.push((name.to_string(), value.to_string()));
        i += sep;
    }
    out
}

/// A value that is filled in at run time, not a secret written in the file.
fn runtime_reference(value: &str) -> bool {
    let v = value.trim();
    v.is_empty()
        || v.starts_with('$')
        || v.starts_with("{{")
        || v.starts_with('{')
        || v.starts_with("arn:")
        || v.starts_with('<')
        || v == "***"
}

/// The password of `scheme://user:password@host…`, if it has a non-empty one.
pub fn url_password(value: &str) -> Option<String> {
    let (_, rest) = value.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty() && !runtime_reference(password)).then(|| password.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_secrets_in_free_text() {
        let text = "#!/bin/sh\nexport DB_PASSWORD=hunter22\nexport API_TOKEN=\"tok en\"\ncurl https://u:pw99@h/x\nrun --secret-key=abc123 --user=me\nSAFE=1 REF_PASSWORD=$FROM_ENV OTHER_TOKEN=${X}\nDJANGO_SECRET_KEY: 'sk1'\n-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY-----\n";
        let found: Vec<(usize, String)> = scan_text(text)
            .into_iter()
            .map(|s| (s.line, s.value))
            .collect();
        assert_eq!(
            found,
            vec![
                (2, "hunter22".to_string()),
                (3, "tok en".to_string()),
                (4, "pw99".to_string()),
                (5, "abc123".to_string()),
                (7, "sk1".to_string()),
                (
                    8,
                    "-----BEGIN RSA PRIVATE KEY-----\nMIIEabc\n-----END RSA PRIVATE KEY-----"
                        .to_string()
                ),
            ]
        );
        assert!(scan_text("echo hello\nUSE_DOCKER=yes\nurl: http://host/x\n").is_empty());
    }

    #[test]
    fn names_and_values() {
        for (name, value, reason) in [
            ("DJANGO_SECRET_KEY", "x", Some("its name contains SECRET")),
            (
                "POSTGRES_PASSWORD",
                "x",
                Some("its name ends with PASSWORD"),
            ),
            ("AWS_ACCESS_KEY_ID", "x", Some("its name ends with _KEY")),
            ("GITHUB_TOKEN", "x", Some("its name contains TOKEN")),
            ("SENTRY_DSN", "https://k@o.example/1", Some("it is a DSN")),
            (
                "DATABASE_URL",
                "postgres://u:p@db:5432/x",
                Some("its value is a URL with a password"),
            ),
            ("POSTGRES_PASSWORD", "", None),
            (
                "REDIS_URL",
                "rediss://cache:6379/0?ssl_cert_reqs=none",
                None,
            ),
            ("USE_DOCKER", "yes", None),
            ("DJANGO_SETTINGS_MODULE", "config.settings.production", None),
        ] {
            assert_eq!(
                secret_reason(name, value).as_deref(),
                reason,
                "{name}={value}"
            );
        }
    }
}
