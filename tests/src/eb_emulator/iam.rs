//! IAM policy evaluation for the emulator: the identity-based subset of AWS's evaluation logic
//! that a deploy role's policy uses.
//!
//! An explicit `Deny` wins; otherwise some `Allow` statement must match the action, the
//! resource and every condition; otherwise the request is implicitly denied. Actions match
//! case-insensitively with `*` and `?` wildcards, resources case-sensitively. Conditions:
//! `StringEquals`, `StringNotEquals`, `StringLike`, `ArnEquals`, `ArnLike`, `Bool`, each with
//! one value or a list (any of them); a key the request does not carry fails the condition, as
//! in IAM. `NotAction`, `NotResource`, `IfExists` and set operators are refused, not guessed:
//! the evaluator says so rather than allowing.

use std::collections::BTreeMap;

use serde_json::Value;

/// The request as IAM sees it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `service:Action`, such as `elasticbeanstalk:UpdateEnvironment`.
    pub action: String,
    /// The resource ARN (`*` for actions without resource-level permissions).
    pub resource: String,
    /// Condition keys the request carries (`aws:ResourceTag/…`, `elasticbeanstalk:InApplication`).
    pub context: BTreeMap<String, String>,
}

impl Request {
    pub fn new(action: &str, resource: &str) -> Self {
        Self {
            action: action.into(),
            resource: resource.into(),
            context: BTreeMap::new(),
        }
    }

    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.context.insert(key.into(), value.into());
        self
    }
}

/// IAM's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// No statement allows it.
    ImplicitDeny,
    /// A `Deny` statement matches (its `Sid`).
    ExplicitDeny(String),
}

/// Evaluates `policy` (a policy document) for `req`. A document this evaluator cannot read is
/// an `Err` naming the element.
pub fn evaluate(policy: &Value, req: &Request) -> Result<Decision, String> {
    let statements = match &policy["Statement"] {
        Value::Array(list) => list.clone(),
        one @ Value::Object(_) => vec![one.clone()],
        other => {
            return Err(format!(
                "Statement must be an object or a list, got {other}"
            ))
        }
    };
    let mut allowed = false;
    for (i, s) in statements.iter().enumerate() {
        for unsupported in ["NotAction", "NotResource", "NotPrincipal"] {
            if s.get(unsupported).is_some() {
                return Err(format!("Statement[{i}]: {unsupported} is not supported"));
            }
        }
        let actions = strings(&s["Action"]).map_err(|e| format!("Statement[{i}].Action: {e}"))?;
        let resources =
            strings(&s["Resource"]).map_err(|e| format!("Statement[{i}].Resource: {e}"))?;
        let action_matches = actions
            .iter()
            .any(|a| wildcard(&a.to_ascii_lowercase(), &req.action.to_ascii_lowercase()));
        let resource_matches = resources.iter().any(|r| wildcard(r, &req.resource));
        if !action_matches || !resource_matches {
            continue;
        }
        if !conditions_hold(s.get("Condition"), &req.context)
            .map_err(|e| format!("Statement[{i}].Condition: {e}"))?
        {
            continue;
        }
        match s["Effect"].as_str() {
            Some("Deny") => {
                return Ok(Decision::ExplicitDeny(
                    s["Sid"].as_str().unwrap_or_default().to_string(),
                ))
            }
            Some("Allow") => allowed = true,
            other => return Err(format!("Statement[{i}].Effect: {other:?}")),
        }
    }
    Ok(if allowed {
        Decision::Allow
    } else {
        Decision::ImplicitDeny
    })
}

fn strings(v: &Value) -> Result<Vec<String>, String> {
    match v {
        Value::String(s) => Ok(vec![s.clone()]),
        Value::Array(list) => list
            .iter()
            .map(|x| {
                x.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| format!("{x} is not a string"))
            })
            .collect(),
        Value::Null => Err("missing".into()),
        other => Err(format!("{other} is neither a string nor a list")),
    }
}

fn conditions_hold(
    condition: Option<&Value>,
    context: &BTreeMap<String, String>,
) -> Result<bool, String> {
    let Some(condition) = condition else {
        return Ok(true);
    };
    let Value::Object(operators) = condition else {
        return Err("must be an object".into());
    };
    for (operator, keys) in operators {
        let Value::Object(keys) = keys else {
            return Err(format!("{operator} must map keys to values"));
        };
        for (key, expected) in keys {
            let expected = strings(expected).map_err(|e| format!("{operator}.{key}: {e}"))?;
            // Condition keys are case-insensitive; the request's are stored as written.
            let actual = context
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key))
                .map(|(_, v)| v.as_str());
            let holds = match (operator.as_str(), actual) {
                ("StringNotEquals", None) => true,
                (_, None) => false,
                ("StringEquals" | "ArnEquals", Some(a)) => expected.iter().any(|e| e == a),
                ("StringNotEquals", Some(a)) => expected.iter().all(|e| e != a),
                ("StringLike" | "ArnLike", Some(a)) => expected.iter().any(|e| wildcard(e, a)),
                ("Bool", Some(a)) => expected.iter().any(|e| e.eq_ignore_ascii_case(a)),
                (other, _) => return Err(format!("operator {other} is not supported")),
            };
            if !holds {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// IAM's wildcard match: `*` any run of characters, `?` any one character.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The message real AWS services give for an identity-based denial.
pub fn denied_message(principal: &str, req: &Request, decision: &Decision) -> String {
    let why = match decision {
        Decision::ExplicitDeny(_) => "with an explicit deny in an identity-based policy",
        _ => "because no identity-based policy allows the",
    };
    match decision {
        Decision::ExplicitDeny(_) => format!(
            "User: {principal} is not authorized to perform: {} on resource: {} {why}",
            req.action, req.resource
        ),
        _ => format!(
            "User: {principal} is not authorized to perform: {} on resource: {} {why} {} action",
            req.action, req.resource, req.action
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn policy() -> Value {
        json!({
            "Version": "2012-10-17",
            "Statement": [
                {"Sid": "Read", "Effect": "Allow", "Action": ["elasticbeanstalk:Describe*"], "Resource": "*"},
                {"Sid": "Update", "Effect": "Allow", "Action": "elasticbeanstalk:UpdateEnvironment",
                 "Resource": "arn:aws:elasticbeanstalk:us-west-2:123456789012:environment/antenna/antenna-staging",
                 "Condition": {"StringEquals": {"elasticbeanstalk:InApplication": "arn:aws:elasticbeanstalk:us-west-2:123456789012:application/antenna"}}},
                {"Sid": "Stack", "Effect": "Allow", "Action": "cloudformation:UpdateStack",
                 "Resource": "arn:aws:cloudformation:us-west-2:123456789012:stack/awseb-e-*-stack/*",
                 "Condition": {"StringEquals": {"aws:ResourceTag/elasticbeanstalk:environment-name": "antenna-staging"}}},
                {"Sid": "NoProd", "Effect": "Deny", "Action": "s3:*", "Resource": "arn:aws:s3:::prod/*"},
                {"Sid": "Objects", "Effect": "Allow", "Action": ["s3:GetObject", "s3:PutObject"], "Resource": "arn:aws:s3:::*/antenna/*"}
            ]
        })
    }

    #[test]
    fn actions_resources_and_conditions() {
        let p = policy();
        let env = |name: &str| {
            format!("arn:aws:elasticbeanstalk:us-west-2:123456789012:environment/antenna/{name}")
        };
        let app = "arn:aws:elasticbeanstalk:us-west-2:123456789012:application/antenna";
        let ok = Request::new(
            "elasticbeanstalk:UpdateEnvironment",
            &env("antenna-staging"),
        )
        .with("elasticbeanstalk:InApplication", app);
        assert_eq!(evaluate(&p, &ok).unwrap(), Decision::Allow);
        // Another environment, a missing condition key, another application: denied.
        let prod = Request::new(
            "elasticbeanstalk:UpdateEnvironment",
            &env("antenna-production"),
        )
        .with("elasticbeanstalk:InApplication", app);
        assert_eq!(evaluate(&p, &prod).unwrap(), Decision::ImplicitDeny);
        let no_key = Request::new(
            "elasticbeanstalk:UpdateEnvironment",
            &env("antenna-staging"),
        );
        assert_eq!(evaluate(&p, &no_key).unwrap(), Decision::ImplicitDeny);
        // Actions are case-insensitive, wildcards work.
        let read = Request::new("ElasticBeanstalk:describeevents", "*");
        assert_eq!(evaluate(&p, &read).unwrap(), Decision::Allow);
        let stack = |tag: &str| {
            Request::new(
                "cloudformation:UpdateStack",
                "arn:aws:cloudformation:us-west-2:123456789012:stack/awseb-e-abc-stack/1234",
            )
            .with("aws:ResourceTag/elasticbeanstalk:environment-name", tag)
        };
        assert_eq!(
            evaluate(&p, &stack("antenna-staging")).unwrap(),
            Decision::Allow
        );
        assert_eq!(
            evaluate(&p, &stack("antenna-production")).unwrap(),
            Decision::ImplicitDeny
        );
        // An explicit deny wins over an allow.
        let denied = Request::new("s3:GetObject", "arn:aws:s3:::prod/antenna/x.zip");
        assert_eq!(
            evaluate(&p, &denied).unwrap(),
            Decision::ExplicitDeny("NoProd".into())
        );
        assert_eq!(
            evaluate(
                &p,
                &Request::new("s3:GetObject", "arn:aws:s3:::b/antenna/x.zip")
            )
            .unwrap(),
            Decision::Allow
        );
        assert_eq!(
            evaluate(
                &p,
                &Request::new("s3:DeleteObject", "arn:aws:s3:::b/antenna/x.zip")
            )
            .unwrap(),
            Decision::ImplicitDeny
        );
    }

    #[test]
    fn what_it_cannot_read_is_an_error_not_an_allow() {
        let p = json!({"Statement": [{"Effect": "Allow", "NotAction": "s3:*", "Resource": "*"}]});
        assert!(evaluate(&p, &Request::new("ec2:RunInstances", "*"))
            .unwrap_err()
            .contains("NotAction"));
        let p = json!({"Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*",
            "Condition": {"ForAnyValue:StringLike": {"k": "v"}}}]});
        assert!(
            evaluate(&p, &Request::new("s3:GetObject", "*").with("k", "v"))
                .unwrap_err()
                .contains("not supported")
        );
    }

    #[test]
    fn wildcards() {
        assert!(wildcard("a*c", "abbbc"));
        assert!(wildcard("a?c", "abc"));
        assert!(!wildcard("a?c", "abbc"));
        assert!(wildcard("*", ""));
        assert!(!wildcard("arn:aws:s3:::b/app/*", "arn:aws:s3:::b/other/x"));
    }
}
