//! A dotenv file (`.envs/.production/.django`): `NAME=value` lines, with `export`, comments,
//! quotes and empty values.

/// One bad line: its 1-based number and what is wrong (never its value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct DotenvError {
    pub line: usize,
    pub message: String,
}

/// The `(name, value)` pairs of `text`, in file order.
///
/// - blank lines and lines starting with `#` are skipped; `export NAME=value` is accepted;
/// - `"double quoted"` values understand `\n`, `\t`, `\"` and `\\`; `'single quoted'` ones
///   are taken as written; unquoted ones end at ` #` (a comment) and are trimmed;
/// - `NAME=` is an empty value.
pub fn parse(text: &str) -> Result<Vec<(String, String)>, DotenvError> {
    let mut out = vec![];
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let err = |m: &str| DotenvError {
            line: line_no,
            message: m.to_string(),
        };
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line
            .strip_prefix("export ")
            .map(str::trim_start)
            .unwrap_or(line);
        let Some((name, rest)) = line.split_once('=') else {
            return Err(err("expected NAME=value"));
        };
        let name = name.trim();
        if !super::valid_property_name(name) {
            return Err(err(&format!(
                "{name:?} is not a valid name: use letters, digits and '_', not starting with a digit"
            )));
        }
        let rest = rest.trim_start();
        let value = if let Some(body) = rest.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = body.chars();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some('r') => value.push('\r'),
                        Some(other) => value.push(other),
                        None => break,
                    },
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(err(&format!("the value of {name} has no closing '\"'")));
            }
            trailing(chars.as_str()).map_err(|m| err(&m))?;
            value
        } else if let Some(body) = rest.strip_prefix('\'') {
            let Some((value, after)) = body.split_once('\'') else {
                return Err(err(&format!("the value of {name} has no closing \"'\"")));
            };
            trailing(after).map_err(|m| err(&m))?;
            value.to_string()
        } else {
            let value = match rest.find(" #") {
                Some(at) => &rest[..at],
                None => rest,
            };
            value.trim().to_string()
        };
        out.push((name.to_string(), value));
    }
    Ok(out)
}

/// After a closing quote only spaces and a comment may follow.
fn trailing(after: &str) -> Result<(), String> {
    let after = after.trim();
    if after.is_empty() || after.starts_with('#') {
        Ok(())
    } else {
        Err("unexpected text after the closing quote".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_export_comments_and_empty_values() {
        let text = "# Django\n\nexport DJANGO_SETTINGS_MODULE=config.settings.production\nDJANGO_SECRET_KEY=\"a b\\\"c\" # the key\nPASS='x#y z'\nEMPTY=\nHOSTS=a,b # comment\n  SPACED = v  \n";
        let pairs = parse(text).unwrap();
        assert_eq!(
            pairs,
            vec![
                (
                    "DJANGO_SETTINGS_MODULE".into(),
                    "config.settings.production".into()
                ),
                ("DJANGO_SECRET_KEY".into(), "a b\"c".into()),
                ("PASS".into(), "x#y z".into()),
                ("EMPTY".into(), "".into()),
                ("HOSTS".into(), "a,b".into()),
                ("SPACED".into(), "v".into()),
            ]
        );
    }

    #[test]
    fn a_bad_line_is_named_by_its_number_without_its_value() {
        let err = parse("A=1\n# c\nthis is not an assignment\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert_eq!(err.to_string(), "line 3: expected NAME=value");
        let err = parse("A=\"unclosed secret\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(!err.to_string().contains("unclosed secret"));
        assert_eq!(parse("1A=x").unwrap_err().line, 1);
        assert_eq!(parse("A='x' y").unwrap_err().line, 1);
    }
}
