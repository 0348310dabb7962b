//! Reading a config file: parse, validate, and the digest that tells a reload whether
//! anything changed.

use super::digest::sha256;
use super::raw::RawConfig;
use super::{validate, ConfigError, Settings};
use std::path::Path;

/// Reads and validates a config file. Relative secret and CA paths are resolved against the
/// file's directory.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        problems: vec![(path.display().to_string(), format!("cannot read: {e}"))],
    })?;
    let base = path.parent().unwrap_or(Path::new("."));
    from_toml(&text, base)
}

/// Parses and validates config text; `base` resolves relative paths.
pub fn from_toml(text: &str, base: &Path) -> Result<Settings, ConfigError> {
    let raw: RawConfig = toml::from_str(text).map_err(|e| {
        let path = e
            .span()
            .map(|s| format!("line {}", text[..s.start].lines().count().max(1)))
            .unwrap_or_else(|| "config".into());
        ConfigError {
            problems: vec![(path, e.message().to_string())],
        }
    })?;
    let mut settings = validate(raw, base)?;
    // What the file says, not how: comments, blank lines and key order do not count.
    let canonical = toml::from_str::<toml::Value>(text)
        .ok()
        .and_then(|v| toml::to_string(&v).ok())
        .unwrap_or_else(|| text.to_string());
    settings.digest = sha256(&[canonical.as_bytes(), &settings.digest]);
    Ok(settings)
}
