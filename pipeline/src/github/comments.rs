//! One pull-request comment per marker: found by a hidden HTML marker (paging through every
//! comment), created once, then edited in place.

use super::{Call, GitHub, GitHubError};

/// GitHub's limit on a comment body, in characters.
pub const COMMENT_LIMIT: usize = 65_536;

/// A pull-request (issue) comment: what the preview needs of octocrab's model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comment {
    pub id: u64,
    pub body: Option<String>,
    pub html_url: String,
}

impl From<octocrab::models::issues::Comment> for Comment {
    fn from(c: octocrab::models::issues::Comment) -> Self {
        Self {
            id: c.id.into_inner(),
            body: c.body,
            html_url: c.html_url.to_string(),
        }
    }
}

/// What [`GitHub::upsert_comment`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upserted {
    Created(Comment),
    Updated(Comment),
    /// The comment already said exactly this.
    Unchanged(Comment),
}

impl Upserted {
    pub fn comment(&self) -> &Comment {
        match self {
            Upserted::Created(c) | Upserted::Updated(c) | Upserted::Unchanged(c) => c,
        }
    }
}

const PERMISSION: &str = "pull-requests: write";

impl GitHub {
    /// The first comment on pull request (issue) `number` whose body contains `marker`,
    /// looking through every page of comments (octocrab's `Page`, following `Link: rel="next"`).
    pub async fn find_comment(
        &self,
        number: u64,
        marker: &str,
    ) -> Result<Option<Comment>, GitHubError> {
        let mut call = Call {
            action: format!("list the comments of pull request #{number}"),
            url: self.repo_url(&format!("/issues/{number}/comments?per_page=100")),
            permission: "pull-requests: read",
        };
        let issues = self.octo.issues(&self.owner, &self.name);
        let mut page = self
            .call(&call, || issues.list_comments(number).per_page(100).send())
            .await?;
        for pages in 1.. {
            if let Some(found) = page
                .items
                .iter()
                .find(|c| c.body.as_deref().is_some_and(|b| b.contains(marker)))
            {
                tracing::debug!("found the comment {} on page {pages}", found.id);
                return Ok(Some(found.clone().into()));
            }
            let Some(next) = page.next.take() else {
                break;
            };
            call.url = next.to_string();
            let next = Some(next);
            page = match self.call(&call, || self.octo.get_page(&next)).await? {
                Some(p) => p,
                None => break,
            };
        }
        Ok(None)
    }

    /// Makes the ONE comment marked `marker` on pull request `number` say `body`: creates it
    /// the first time, edits it afterwards. `body` is prefixed with the marker when it lacks it,
    /// and cut to GitHub's limit.
    pub async fn upsert_comment(
        &self,
        number: u64,
        marker: &str,
        body: &str,
    ) -> Result<Upserted, GitHubError> {
        let body = comment_body(marker, body);
        match self.find_comment(number, marker).await? {
            Some(existing) if existing.body.as_deref() == Some(body.as_str()) => {
                Ok(Upserted::Unchanged(existing))
            }
            Some(existing) => {
                // octocrab's `update_comment` POSTs; GitHub documents PATCH, which octocrab's
                // typed `patch` sends, read into its comment model.
                let route = self.repo_route(&format!("/issues/comments/{}", existing.id));
                let call = Call {
                    action: format!("edit the comment {} on pull request #{number}", existing.id),
                    url: format!("{}{route}", self.api_url),
                    permission: PERMISSION,
                };
                let payload = serde_json::json!({ "body": body });
                let c: octocrab::models::issues::Comment = self
                    .call(&call, || self.octo.patch(&route, Some(&payload)))
                    .await?;
                Ok(Upserted::Updated(c.into()))
            }
            None => {
                let call = Call {
                    action: format!("comment on pull request #{number}"),
                    url: self.repo_url(&format!("/issues/{number}/comments")),
                    permission: PERMISSION,
                };
                let issues = self.octo.issues(&self.owner, &self.name);
                let c = self
                    .call(&call, || issues.create_comment(number, &body))
                    .await?;
                Ok(Upserted::Created(c.into()))
            }
        }
    }
}

/// `marker` + newline + `body`, cut below [`COMMENT_LIMIT`] on a line boundary with a note.
pub fn comment_body(marker: &str, body: &str) -> String {
    let mut text = if body.contains(marker) {
        body.to_string()
    } else {
        format!("{marker}\n{body}")
    };
    if text.chars().count() > COMMENT_LIMIT {
        const NOTE: &str =
            "\n\n… cut to fit GitHub's comment limit; the job summary has the whole preview.\n";
        let keep = COMMENT_LIMIT - NOTE.chars().count() - 16;
        let cut: String = text.chars().take(keep).collect();
        let cut = match cut.rfind('\n') {
            Some(i) => cut[..i].to_string(),
            None => cut,
        };
        // An open code fence would swallow the note.
        let fence = if cut.matches("```").count() % 2 == 1 {
            "\n```"
        } else {
            ""
        };
        text = format!("{cut}{fence}{NOTE}");
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_gets_the_marker_once_and_fits_the_limit() {
        assert_eq!(comment_body("<!-- m -->", "hello"), "<!-- m -->\nhello");
        assert_eq!(
            comment_body("<!-- m -->", "<!-- m -->\nhello"),
            "<!-- m -->\nhello"
        );
        let long = format!("```diff\n{}", "+ line\n".repeat(20_000));
        let cut = comment_body("<!-- m -->", &long);
        assert!(cut.chars().count() <= COMMENT_LIMIT, "{}", cut.len());
        assert!(cut.starts_with("<!-- m -->\n```diff\n"));
        assert!(cut.ends_with(
            "```\n\n… cut to fit GitHub's comment limit; the job summary has the whole preview.\n"
        ));
    }
}
