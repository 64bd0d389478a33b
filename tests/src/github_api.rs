//! Answers of a fake GitHub REST API in GitHub's own shape (the fields its documentation marks
//! required), so that the client's typed models read them as they read GitHub's.

use serde_json::{json, Value};

/// Where the fake repository's answers point (`ami/antenna`).
const REPO: &str = "https://api.github.com/repos/ami/antenna";
const STAMP: &str = "2026-01-02T03:04:05Z";

/// A user, as GitHub embeds one in comments and deployments.
pub fn user(login: &str) -> Value {
    let api = format!("https://api.github.com/users/{login}");
    json!({
        "login": login,
        "id": 41898282,
        "node_id": "MDM6Qm90NDE4OTgyODI=",
        "avatar_url": "https://avatars.githubusercontent.com/in/15368?v=4",
        "gravatar_id": "",
        "url": api,
        "html_url": format!("https://github.com/{login}"),
        "followers_url": format!("{api}/followers"),
        "following_url": format!("{api}/following{{/other_user}}"),
        "gists_url": format!("{api}/gists{{/gist_id}}"),
        "starred_url": format!("{api}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/subscriptions"),
        "organizations_url": format!("{api}/orgs"),
        "repos_url": format!("{api}/repos"),
        "events_url": format!("{api}/events{{/privacy}}"),
        "received_events_url": format!("{api}/received_events"),
        "type": "Bot",
        "site_admin": false
    })
}

/// An issue comment on pull request `number`.
pub fn comment(id: u64, number: u64, body: &str) -> Value {
    json!({
        "id": id,
        "node_id": format!("IC_kwDO{id}"),
        "url": format!("{REPO}/issues/comments/{id}"),
        "html_url": format!("https://github.com/ami/antenna/pull/{number}#issuecomment-{id}"),
        "issue_url": format!("{REPO}/issues/{number}"),
        "body": body,
        "user": user("github-actions[bot]"),
        "author_association": "NONE",
        "created_at": STAMP,
        "updated_at": STAMP
    })
}

/// A deployment of `git_ref` to `environment`.
pub fn deployment(id: u64, git_ref: &str, environment: &str) -> Value {
    json!({
        "url": format!("{REPO}/deployments/{id}"),
        "id": id,
        "node_id": format!("DE_kwDO{id}"),
        "sha": "0123456789abcdef0123456789abcdef01234567",
        "ref": git_ref,
        "task": "deploy",
        "payload": {},
        "original_environment": environment,
        "environment": environment,
        "description": null,
        "creator": user("github-actions[bot]"),
        "created_at": STAMP,
        "updated_at": STAMP,
        "statuses_url": format!("{REPO}/deployments/{id}/statuses"),
        "repository_url": REPO,
        "transient_environment": false,
        "production_environment": environment == "production"
    })
}

/// Status `id` of deployment `deployment`, in `state`.
pub fn deployment_status(id: u64, deployment: u64, state: &str) -> Value {
    json!({
        "url": format!("{REPO}/deployments/{deployment}/statuses/{id}"),
        "id": id,
        "node_id": format!("DES_kwDO{id}"),
        "state": state,
        "creator": user("github-actions[bot]"),
        "description": "",
        "environment": "staging",
        "target_url": "",
        "created_at": STAMP,
        "updated_at": STAMP,
        "deployment_url": format!("{REPO}/deployments/{deployment}"),
        "repository_url": REPO,
        "environment_url": "",
        "log_url": ""
    })
}
