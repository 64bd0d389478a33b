//! Parsing Docker image references: `[host[:port]/]path[:tag][@algo:hex]`.

/// The registry host a repository name starts with, if any: Docker's rule, a first component
/// with a `.` or a `:`, or `localhost` (`ghcr.io/org/ml`, `127.0.0.1:5000/x`; not `org/ml`).
pub fn registry_of(repository: &str) -> Option<&str> {
    let (first, _) = repository.split_once('/')?;
    (first.contains('.') || first.contains(':') || first == "localhost").then_some(first)
}

/// The parts of an image reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: Option<String>,
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageRef {
    /// Parses `s`, or says what is wrong with it.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            return Err("the image reference is empty".into());
        }
        if s.chars().any(|c| c.is_whitespace()) {
            return Err("the image reference contains white space".into());
        }
        let (name, digest) = match s.split_once('@') {
            Some((n, d)) => {
                let (algo, hex) = d
                    .split_once(':')
                    .ok_or_else(|| format!("digest {d:?} is not ALGORITHM:HEX"))?;
                if algo.is_empty() || hex.len() < 32 || !hex.chars().all(|c| c.is_ascii_hexdigit())
                {
                    return Err(format!(
                        "digest {d:?} is not ALGORITHM:HEX (for example sha256:<64 hex digits>)"
                    ));
                }
                (n, Some(d.to_string()))
            }
            None => (s, None),
        };
        // A tag follows the last ':' after the last '/'.
        let last_slash = name.rfind('/').map_or(0, |i| i + 1);
        let (path, tag) = match name[last_slash..].rfind(':') {
            Some(i) => (&name[..last_slash + i], Some(&name[last_slash + i + 1..])),
            None => (name, None),
        };
        if let Some(t) = tag {
            let ok = !t.is_empty()
                && t.len() <= 128
                && t.chars()
                    .next()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
                && t.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !ok {
                return Err(format!("tag {t:?} is not valid: letters, digits, '_', '.', '-' (at most 128, not starting with '.' or '-')"));
            }
        }
        let mut parts: Vec<&str> = path.split('/').collect();
        let registry = registry_of(path).map(|_| parts.remove(0).to_string());
        for p in &parts {
            let ok = !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
                && p.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
                && p.chars().last().is_some_and(|c| c.is_ascii_alphanumeric());
            if !ok {
                return Err(format!("repository component {p:?} is not valid: lowercase letters, digits and single '.', '_' or '-' between them"));
            }
        }
        Ok(ImageRef {
            registry,
            repository: parts.join("/"),
            tag: tag.map(str::to_string),
            digest,
        })
    }
}

impl ImageRef {
    /// The registry to ask for it: its host, or Docker Hub's.
    pub fn registry_host(&self) -> &str {
        self.registry.as_deref().unwrap_or("docker.io")
    }

    /// The repository's path on that registry's API: Docker Hub's official images live under
    /// `library/` (`redis` is `library/redis`).
    pub fn registry_path(&self) -> String {
        if self.registry_host() == "docker.io" && !self.repository.contains('/') {
            format!("library/{}", self.repository)
        } else {
            self.repository.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_common_forms() {
        let r =
            ImageRef::parse("123.dkr.ecr.us-west-2.amazonaws.com/antenna-backend:v1.2").unwrap();
        assert_eq!(
            r.registry.as_deref(),
            Some("123.dkr.ecr.us-west-2.amazonaws.com")
        );
        assert_eq!(r.repository, "antenna-backend");
        assert_eq!(r.tag.as_deref(), Some("v1.2"));
        let r = ImageRef::parse("localhost:5000/a/b").unwrap();
        assert_eq!(r.registry.as_deref(), Some("localhost:5000"));
        assert_eq!(r.tag, None);
        let d = format!("busybox@sha256:{}", "a".repeat(64));
        assert!(ImageRef::parse(&d).unwrap().digest.is_some());
    }

    #[test]
    fn registry_host_and_path() {
        let r = ImageRef::parse("ghcr.io/org/ml:v1").unwrap();
        assert_eq!(
            (r.registry_host(), r.registry_path()),
            ("ghcr.io", "org/ml".into())
        );
        let r = ImageRef::parse("docker.io/redis:7").unwrap();
        assert_eq!(
            (r.registry_host(), r.registry_path()),
            ("docker.io", "library/redis".into())
        );
        let r = ImageRef::parse("redis:7").unwrap();
        assert_eq!(
            (r.registry_host(), r.registry_path()),
            ("docker.io", "library/redis".into())
        );
        let r = ImageRef::parse("127.0.0.1:5000/x/y:t").unwrap();
        assert_eq!(
            (r.registry_host(), r.registry_path()),
            ("127.0.0.1:5000", "x/y".into())
        );
        assert_eq!(registry_of("localhost/a"), Some("localhost"));
        assert_eq!(registry_of("org/ml"), None);
        assert_eq!(registry_of("redis"), None);
    }

    #[test]
    fn rejects_bad_ones() {
        assert!(ImageRef::parse("Antenna:v1")
            .unwrap_err()
            .contains("repository component \"Antenna\""));
        assert!(ImageRef::parse("a:")
            .unwrap_err()
            .contains("tag \"\" is not valid"));
        assert!(ImageRef::parse("a b").is_err());
        assert!(ImageRef::parse("a@sha256:zz")
            .unwrap_err()
            .contains("digest"));
    }
}
