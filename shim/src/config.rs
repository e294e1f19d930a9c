//! Where the pod's shim gets moat's policy config from.
//!
//! `start` receives the handler's runtime options on stdin and hands `ConfigPath` /
//! `ConfigBody` to the shim it launches through the environment (`bootstrap::start`). The
//! serving shim loads the config once, on its first Create: a config that does not parse
//! fails that pod with the file and line, and nothing else happens.

use std::path::PathBuf;

use moat_sandbox::policy::Config;
use serde::{Deserialize, Serialize};

use crate::bootstrap::start::{CONFIG_BODY_ENV, CONFIG_PATH_ENV};
use crate::error::ShimError;

/// Where the config comes from; recorded in each bundle so `delete` can find the ID pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSource {
    pub path: Option<PathBuf>,
    pub body: Option<String>,
}

impl ConfigSource {
    pub fn from_env() -> Self {
        ConfigSource {
            path: std::env::var_os(CONFIG_PATH_ENV).filter(|p| !p.is_empty()).map(PathBuf::from),
            body: std::env::var(CONFIG_BODY_ENV).ok().filter(|b| !b.is_empty()),
        }
    }

    /// `ConfigPath`, else `ConfigBody`, else /etc/moat/config.toml, else built-in defaults.
    pub fn load(&self) -> Result<Config, ShimError> {
        let loaded = match (&self.path, &self.body) {
            (Some(path), _) => Config::load(Some(path)),
            (None, Some(body)) => Config::parse(body, "the runtime options' ConfigBody"),
            (None, None) => Config::load(None),
        };
        loaded.map_err(|e| ShimError::InvalidArgument(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_config_that_does_not_parse_names_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("moat.toml");
        // Input: line 2 has a value of the wrong type.
        std::fs::write(&path, "level = \"baseline\"\nallow_privileged = \"yes\"\n").expect("write");
        let source = ConfigSource { path: Some(path.clone()), body: None };
        let err = source.load().expect_err("must fail").to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn an_inline_body_is_used_when_no_path_is_given() {
        let source = ConfigSource { path: None, body: Some("level = \"baseline\"\n".into()) };
        let config = source.load().expect("parses");
        assert_eq!(config.level.as_str(), "baseline");
    }
}
