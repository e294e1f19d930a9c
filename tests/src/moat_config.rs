//! The moat shim's configuration file for the test containerd (the policy module's config,
//! passed to the shim through the runtime handler's `ConfigPath` option).
//!
//! Kept in this one function so it is easy to follow the policy module's keys.

use std::path::Path;

use anyhow::{Context, Result};

use crate::containerd::Layout;

/// The text of the moat config for `layout`.
/// No `cri_state_dirs`: moat derives containerd's (non-default) root and state itself.
pub fn render(layout: &Layout) -> String {
    format!(
        "# moat config written by the moat-e2e test bed\n\
         level = \"baseline\"\n\
         allowed_host_paths = [{}]\n\
         \n\
         [userns]\n\
         state_dir = {}\n\
         \n\
         [audit]\n\
         state_dir = {}\n",
        toml_str(&layout.volumes),
        toml_str(&layout.dir.join("idranges")),
        toml_str(&layout.dir.join("audit")),
    )
}

/// Writes the moat config to `layout.moat_config`.
pub fn write(layout: &Layout) -> Result<()> {
    std::fs::write(&layout.moat_config, render(layout))
        .with_context(|| format!("writing the moat config {}", layout.moat_config.display()))
}

/// Rewrites the moat config at `layout.moat_config` with `change` (given its text). The shim
/// reads its config when it starts, once per pod: the change applies to the next pod.
pub fn edit(layout: &Layout, change: impl FnOnce(String) -> Result<String>) -> Result<()> {
    let path = &layout.moat_config;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    std::fs::write(path, change(text)?).with_context(|| format!("writing {}", path.display()))
}

/// `text` (a moat config) with `keys` added at the top level: before its first table.
pub fn with_top_level_keys(mut text: String, keys: &str) -> String {
    let first_table = text.find("\n[").map(|i| i + 1).unwrap_or(text.len());
    text.insert_str(first_table, keys);
    text
}

/// A TOML basic string holding `path`.
pub fn toml_str(path: &Path) -> String {
    let s = path.to_string_lossy();
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use moat_sandbox::policy::{Config, Level};

    #[test]
    fn the_written_config_is_one_the_policy_accepts() {
        let layout = Layout::new(Path::new("/tmp/moat-e2e/4242"));
        let config = Config::parse(&render(&layout), "test bed config")
            .unwrap_or_else(|e| panic!("the policy refuses the test bed's moat config: {e}"));
        assert_eq!(config.level, Level::Baseline);
        assert_eq!(config.allowed_host_paths, vec![layout.volumes.clone().into()]);
        assert!(config.cri_state_dirs.is_empty(), "derived by moat, not configured");
        assert_eq!(config.userns.state_dir, layout.dir.join("idranges"));
        assert_eq!(config.audit.state_dir, layout.dir.join("audit"));
    }

    #[test]
    fn top_level_keys_go_before_the_first_table() {
        let layout = Layout::new(Path::new("/tmp/moat-e2e/4242"));
        let text = with_top_level_keys(render(&layout), "allow_host_ipc = true\n");
        let config = Config::parse(&text, "test bed config")
            .unwrap_or_else(|e| panic!("the policy refuses {text}: {e}"));
        assert!(config.allow_host_ipc, "the key landed in a table:\n{text}");
        assert_eq!(config.userns.state_dir, layout.dir.join("idranges"));
        let bare = with_top_level_keys("level = \"baseline\"\n".into(), "allow_host_ipc = true\n");
        assert_eq!(bare, "level = \"baseline\"\nallow_host_ipc = true\n");
    }

    #[test]
    fn paths_are_quoted_as_toml_strings() {
        assert_eq!(toml_str(Path::new("/a \"b\"\\c")), "\"/a \\\"b\\\"\\\\c\"");
    }
}
