//! Secrets read from exactly one of an environment variable or a file (never inline).

use super::Problems;
use std::path::Path;

/// Reads a secret from exactly one of an environment variable or a file.
pub(crate) fn read_secret(
    path: &str,
    env: Option<&str>,
    file: Option<&Path>,
    base: &Path,
    what: &str,
    p: &mut Problems,
) -> Option<String> {
    match (env, file) {
        (Some(_), Some(_)) => {
            p.push(
                path,
                format!("set only one of the {what} env and file options"),
            );
            None
        }
        (None, None) => {
            p.push(path, format!("missing {what}: set the env or file option"));
            None
        }
        (Some(var), None) => match std::env::var(var) {
            Ok(v) if !v.trim().is_empty() => {
                p.material(v.trim().as_bytes());
                Some(v.trim().to_string())
            }
            _ => {
                p.push(
                    path,
                    format!("environment variable {var} is not set or empty"),
                );
                None
            }
        },
        (None, Some(f)) => {
            let full = base.join(f);
            match std::fs::read_to_string(&full) {
                Ok(v) if !v.trim().is_empty() => {
                    p.material(v.trim().as_bytes());
                    Some(v.trim().to_string())
                }
                Ok(_) => {
                    p.push(path, format!("file {} is empty", full.display()));
                    None
                }
                Err(e) => {
                    p.push(path, format!("cannot read {}: {e}", full.display()));
                    None
                }
            }
        }
    }
}
