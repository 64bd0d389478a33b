//! One pull-request comment per marker: found by a hidden HTML marker (paging through every
//! comment), created once, then edited in place.

use serde::Deserialize;

use super::{next_link, GitHub, GitHubError};

/// GitHub's limit on a comment body, in characters.
pub const COMMENT_LIMIT: usize = 65_536;

/// A pull-request (issue) comment.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Comment {
    pub id: u64,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub html_url: String,
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
    /// looking through every page of comments.
    pub async fn find_comment(
        &self,
        number: u64,
        marker: &str,
    ) -> Result<Option<Comment>, GitHubError> {
        let action = format!("list the comments of pull request #{number}");
        let mut url = Some(self.repo_url(&format!("/issues/{number}/comments?per_page=100")));
        let mut pages = 0;
        while let Some(current) = url.take() {
            pages += 1;
            let (comments, link): (Vec<Comment>, _) =
                self.get(&current, &action, "pull-requests: read").await?;
            if let Some(found) = comments
                .into_iter()
                .find(|c| c.body.as_deref().is_some_and(|b| b.contains(marker)))
            {
                tracing::debug!("found the comment {} on page {pages}", found.id);
                return Ok(Some(found));
            }
            url = link.as_deref().and_then(next_link);
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
        #[derive(serde::Serialize)]
        struct Body<'a> {
            body: &'a str,
        }
        match self.find_comment(number, marker).await? {
            Some(existing) if existing.body.as_deref() == Some(body.as_str()) => {
                Ok(Upserted::Unchanged(existing))
            }
            Some(existing) => {
                let url = self.repo_url(&format!("/issues/comments/{}", existing.id));
                let action = format!("edit the comment {} on pull request #{number}", existing.id);
                let (_, c): (_, Comment) = self
                    .write(
                        super::Method::Patch,
                        &url,
                        &Body { body: &body },
                        &action,
                        PERMISSION,
                    )
                    .await?;
                Ok(Upserted::Updated(c))
            }
            None => {
                let url = self.repo_url(&format!("/issues/{number}/comments"));
                let action = format!("comment on pull request #{number}");
                let (_, c): (_, Comment) = self
                    .write(
                        super::Method::Post,
                        &url,
                        &Body { body: &body },
                        &action,
                        PERMISSION,
                    )
                    .await?;
                Ok(Upserted::Created(c))
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
