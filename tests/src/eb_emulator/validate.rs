//! The checks EB runs on a multi-container Docker source bundle when a version is processed.

use std::io::{Cursor, Read};

/// `Ok` when the zip holds a valid `Dockerrun.aws.json` (v2), else EB-like reason.
pub(crate) fn bundle(bytes: &[u8]) -> Result<(), String> {
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| format!("The source bundle is not a valid zip file: {e}"))?;
    let mut text = String::new();
    zip.by_name("Dockerrun.aws.json")
        .map_err(|_| "ECS Application sourcebundle validation error: Dockerrun.aws.json is missing from the root of the source bundle.".to_string())?
        .read_to_string(&mut text)
        .map_err(|e| format!("ECS Application sourcebundle validation error: cannot read Dockerrun.aws.json: {e}"))?;
    let doc: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("ECS Application sourcebundle validation error: Dockerrun.aws.json is not valid JSON: {e}"))?;
    let err = |m: &str| {
        Err(format!(
            "ECS Application sourcebundle validation error: {m}"
        ))
    };
    if doc.get("AWSEBDockerrunVersion").and_then(|v| v.as_i64()) != Some(2) {
        return err("AWSEBDockerrunVersion must be 2 for a multi-container Docker environment.");
    }
    let Some(containers) = doc.get("containerDefinitions").and_then(|c| c.as_array()) else {
        return err("containerDefinitions is missing: a v2 Dockerrun.aws.json needs at least one container definition.");
    };
    if containers.is_empty() {
        return err("containerDefinitions is empty.");
    }
    let mut essential = false;
    for (i, c) in containers.iter().enumerate() {
        let name = c.get("name").and_then(|n| n.as_str());
        let Some(name) = name else {
            return err(&format!("containerDefinitions[{i}]: 'name' is required."));
        };
        if c.get("image")
            .and_then(|n| n.as_str())
            .is_none_or(str::is_empty)
        {
            return err(&format!("container '{name}': 'image' is required."));
        }
        let mem = |k: &str| c.get(k).and_then(|m| m.as_u64()).unwrap_or(0);
        if mem("memory") == 0 && mem("memoryReservation") == 0 {
            return err(&format!(
                "container '{name}': Invalid setting for container '{name}'. At least one of 'memory' or 'memoryReservation' must be specified."
            ));
        }
        essential |= c.get("essential").and_then(|e| e.as_bool()).unwrap_or(true);
    }
    if !essential {
        return err("At least one container must be marked as essential.");
    }
    Ok(())
}
