//! Where the pod's shim gets moat's policy config from.
//!
//! `start` receives the handler's runtime options on stdin and hands `ConfigPath` /
//! `ConfigBody` to the shim it launches through the environment (`bootstrap::start`). The
//! serving shim loads the config once, on its first Create: a config that does not parse
//! fails that pod with the file and line, and nothing else happens.

use std::ffi::OsString;
use std::path::PathBuf;

use moat_sandbox::policy::Config;
use serde::{Deserialize, Serialize};

/// Environment variables through which `start` hands the runtime options to the shim it
/// launches (the serving shim never sees `start`'s stdin).
pub const CONFIG_PATH_ENV: &str = "MOAT_CONFIG_PATH";
pub const CONFIG_BODY_ENV: &str = "MOAT_CONFIG_BODY";

/// Why the pod's config could not be had: the pod is refused (never run under the defaults).
#[derive(Debug, thiserror::Error)]
pub enum ConfigLoadError {
    /// The environment's `ConfigBody` was not UTF-8 (the text says which variable).
    #[error("{0}")]
    Unreadable(String),
    /// The named file or body does not read or parse (the text names the file and line).
    #[error(transparent)]
    Invalid(#[from] moat_sandbox::policy::ConfigError),
}

/// Where the config comes from; recorded in each bundle so `delete` can find the ID pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigSource {
    pub path: Option<PathBuf>,
    pub body: Option<String>,
    /// Why the environment's config could not be taken (a `ConfigBody` that is not UTF-8):
    /// `load` fails with it instead of falling back to the defaults. Not recorded.
    #[serde(skip)]
    pub unreadable: Option<String>,
}

impl ConfigSource {
    pub fn from_env() -> Self {
        Self::from_vars(std::env::var_os(CONFIG_PATH_ENV), std::env::var_os(CONFIG_BODY_ENV))
    }

    fn from_vars(path: Option<OsString>, body: Option<OsString>) -> Self {
        let body = body.filter(|b| !b.is_empty());
        let unreadable = body.as_ref().filter(|b| b.to_str().is_none()).map(|_| {
            format!(
                "the runtime options' ConfigBody (handed over in {CONFIG_BODY_ENV}) is not UTF-8; \
                 refusing to run the pod without the config it names"
            )
        });
        ConfigSource {
            path: path.filter(|p| !p.is_empty()).map(PathBuf::from),
            body: body.and_then(|b| b.into_string().ok()),
            unreadable,
        }
    }

    /// `ConfigPath`, else `ConfigBody`, else /etc/moat/config.toml, else built-in defaults.
    /// A config that is named but cannot be read or parsed is an error, never the defaults.
    pub fn load(&self) -> Result<Config, ConfigLoadError> {
        if let Some(why) = &self.unreadable {
            return Err(ConfigLoadError::Unreadable(why.clone()));
        }
        let loaded = match (&self.path, &self.body) {
            (Some(path), _) => Config::load(Some(path)),
            (None, Some(body)) => Config::parse(body, "the runtime options' ConfigBody"),
            (None, None) => Config::load(None),
        };
        Ok(loaded?)
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
        let source = ConfigSource { path: Some(path.clone()), ..Default::default() };
        let err = source.load().expect_err("must fail").to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn an_unreadable_config_path_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Input: ConfigPath naming a file that does not exist, and one that is a directory.
        for path in [dir.path().join("absent.toml"), dir.path().to_path_buf()] {
            let source = ConfigSource { path: Some(path.clone()), ..Default::default() };
            let err = source.load().expect_err("must fail").to_string();
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
    }

    #[test]
    fn a_config_body_that_is_not_utf8_is_refused_not_replaced_by_defaults() {
        use std::os::unix::ffi::OsStringExt;
        // Input: MOAT_CONFIG_BODY holding Latin-1 bytes.
        let body = OsString::from_vec(b"level = \"baseline\" # caf\xe9\n".to_vec());
        let source = ConfigSource::from_vars(None, Some(body));
        let err = source.load().expect_err("must fail").to_string();
        assert!(err.contains("ConfigBody") && err.contains("UTF-8"), "{err}");
        // Empty variables are no options at all: the defaults apply.
        let source = ConfigSource::from_vars(Some(OsString::new()), Some(OsString::new()));
        assert_eq!(source, ConfigSource::default());
    }

    #[test]
    fn an_inline_body_is_used_when_no_path_is_given() {
        let source = ConfigSource {
            path: None,
            body: Some("level = \"baseline\"\n".into()),
            ..Default::default()
        };
        let config = source.load().expect("parses");
        assert_eq!(config.level.as_str(), "baseline");
    }
}
