//! Parsing Docker image references: `[host[:port]/]path[:tag][@algo:hex]`.

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
        let registry = if parts.len() > 1
            && (parts[0].contains('.') || parts[0].contains(':') || parts[0] == "localhost")
        {
            Some(parts.remove(0).to_string())
        } else {
            None
        };
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
