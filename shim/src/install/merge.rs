//! Adding and removing the `moat` runtime handler in containerd's config text, keeping the
//! operator's comments, order and every other setting (`toml_edit`).
//!
//! The rules are README.md's (Install, step 3): `version = 2` (containerd 1.6/1.7) gets the
//! handler under `plugins."io.containerd.grpc.v1.cri"` with `options.ConfigPath`; `version = 3`
//! (2.x) under `plugins."io.containerd.cri.v1.runtime"` without `options` (with them, 2.x fails
//! `hostUsers: false` pods). The default runtime (`default_runtime_name`, `runc` when unset)
//! stays declared: once any runtime is declared containerd drops its built-in `runc`, and a
//! default that names no declared runtime disables the whole CRI plugin. Merging a file that
//! already has the handler changes nothing.

use toml_edit::{value, DocumentMut, Item, Table};

/// What the merge adds besides the handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeOptions {
    /// The handler's `ConfigPath` (version 2 only).
    pub moat_config: String,
    /// Also set the CRI's `restrict_oom_score_adj = true` (nodes where containerd lacks
    /// CAP_SYS_RESOURCE).
    pub restrict_oom_score_adj: bool,
}

impl Default for MergeOptions {
    fn default() -> Self {
        MergeOptions {
            moat_config: moat_sandbox::policy::DEFAULT_CONFIG_PATH.to_string(),
            restrict_oom_score_adj: false,
        }
    }
}

/// Why the config cannot be merged (nothing is written then).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MergeError {
    #[error("not valid TOML: {0}")]
    Parse(String),
    #[error(
        "config version {0}: moat's handler needs version = 2 (containerd 1.6/1.7) or 3 (2.x); \
         migrate the file first (containerd config migrate)"
    )]
    Version(i64),
    #[error("{key} is not a table")]
    NotATable { key: String },
    #[error(
        "runtimes.moat already exists with runtime_type {found:?}; refusing to overwrite a \
         handler that is not moat's"
    )]
    ForeignHandler { found: String },
}

const MOAT_RUNTIME_TYPE: &str = "io.containerd.moat.v2";
const RUNC_RUNTIME_TYPE: &str = "io.containerd.runc.v2";

fn cri_plugin(version: i64) -> Result<&'static str, MergeError> {
    match version {
        2 => Ok("io.containerd.grpc.v1.cri"),
        3 => Ok("io.containerd.cri.v1.runtime"),
        v => Err(MergeError::Version(v)),
    }
}

fn parse(text: &str) -> Result<(DocumentMut, i64), MergeError> {
    let doc: DocumentMut = text.parse().map_err(|e: toml_edit::TomlError| {
        MergeError::Parse(e.to_string().trim_end().to_string())
    })?;
    let version = doc.get("version").and_then(Item::as_integer).unwrap_or(1);
    Ok((doc, version))
}

/// The table at `key` inside `parent`, created (as an implicit table, so no empty header is
/// written) when absent.
fn table<'a>(parent: &'a mut Table, key: &str, path: &str) -> Result<&'a mut Table, MergeError> {
    let item = parent.entry(key).or_insert_with(|| {
        let mut t = Table::new();
        t.set_implicit(true);
        Item::Table(t)
    });
    item.as_table_mut().ok_or_else(|| MergeError::NotATable { key: format!("{path}.{key}") })
}

/// `text` with the moat handler merged in (unchanged when it is there already).
pub fn merge(text: &str, options: &MergeOptions) -> Result<String, MergeError> {
    let (mut doc, version) = parse(text)?;
    let cri_name = cri_plugin(version)?;
    let plugins = table(doc.as_table_mut(), "plugins", "")?;
    let cri = table(plugins, cri_name, "plugins")?;
    if options.restrict_oom_score_adj && cri.get("restrict_oom_score_adj").is_none() {
        cri.insert("restrict_oom_score_adj", value(true));
    }
    let path = format!("plugins.\"{cri_name}\"");
    let containerd = table(cri, "containerd", &path)?;
    if containerd.get("default_runtime_name").is_none() {
        // containerd's own default, written down: the README's configs say it too.
        containerd.insert("default_runtime_name", value("runc"));
    }
    let default =
        containerd.get("default_runtime_name").and_then(Item::as_str).unwrap_or("runc").to_string();
    let runtimes = table(containerd, "runtimes", &format!("{path}.containerd"))?;
    if let Some(moat) = runtimes.get("moat") {
        let found = moat.get("runtime_type").and_then(Item::as_str).unwrap_or("").to_string();
        if found != MOAT_RUNTIME_TYPE {
            return Err(MergeError::ForeignHandler { found });
        }
    } else {
        let mut moat = Table::new();
        moat.insert("runtime_type", value(MOAT_RUNTIME_TYPE));
        if version == 2 {
            let mut opts = Table::new();
            opts.insert("ConfigPath", value(options.moat_config.as_str()));
            moat.insert("options", Item::Table(opts));
        }
        runtimes.insert("moat", Item::Table(moat));
    }
    if default == "runc" && runtimes.get("runc").is_none() {
        let mut runc = Table::new();
        runc.insert("runtime_type", value(RUNC_RUNTIME_TYPE));
        runtimes.insert("runc", Item::Table(runc));
    }
    Ok(doc.to_string())
}

/// `text` without the moat handler (unchanged when it has none).
pub fn remove(text: &str) -> Result<String, MergeError> {
    let (mut doc, version) = parse(text)?;
    let cri_name = cri_plugin(version)?;
    // Table::get_mut only: indexing an Item would create the tables it walks through.
    let runtimes = doc
        .as_table_mut()
        .get_mut("plugins")
        .and_then(Item::as_table_like_mut)
        .and_then(|p| p.get_mut(cri_name))
        .and_then(Item::as_table_like_mut)
        .and_then(|c| c.get_mut("containerd"))
        .and_then(Item::as_table_like_mut)
        .and_then(|c| c.get_mut("runtimes"))
        .and_then(Item::as_table_like_mut);
    if let Some(runtimes) = runtimes {
        runtimes.remove("moat");
    }
    Ok(doc.to_string())
}

/// The line k3s's `config.toml.tmpl` starts with to keep k3s's own config (`base`).
pub const K3S_BASE: &str = "{{ template \"base\" . }}";
const BEGIN: &str = "# moat: begin";
const END: &str = "# moat: end";

/// k3s renders containerd's config from `config.toml.tmpl`, a Go template (not TOML) whose
/// `base` already declares k3s's runtimes (`runc` the default among them). So only moat's
/// handler is appended, between `# moat: begin` and `# moat: end`, for containerd config
/// `version` (k3s with containerd 1.7: 2; with 2.x: 3). A new (empty) template starts with the
/// base. Unchanged when the block is there.
pub fn merge_k3s_template(
    text: &str,
    version: i64,
    options: &MergeOptions,
) -> Result<String, MergeError> {
    let cri_name = cri_plugin(version)?;
    if text.lines().any(|l| l.trim() == BEGIN) {
        return Ok(text.to_string());
    }
    if text.contains("runtimes.moat]") || text.contains("runtimes.\"moat\"]") {
        return Err(MergeError::ForeignHandler { found: "(in the template)".into() });
    }
    let mut out = if text.trim().is_empty() { format!("{K3S_BASE}\n") } else { text.to_string() };
    if !out.ends_with('\n') {
        out.push('\n');
    }
    let table = format!("[plugins.\"{cri_name}\".containerd.runtimes.moat]");
    out.push_str(&format!("\n{BEGIN}\n{table}\n  runtime_type = \"{MOAT_RUNTIME_TYPE}\"\n"));
    if version == 2 {
        let path = toml_edit::Value::from(options.moat_config.as_str()).to_string();
        out.push_str(&format!(
            "[plugins.\"{cri_name}\".containerd.runtimes.moat.options]\n  ConfigPath = {}\n",
            path.trim()
        ));
    }
    out.push_str(&format!("{END}\n"));
    Ok(out)
}

/// `text` (a k3s template) without moat's block.
pub fn remove_k3s_template(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.split_inclusive('\n') {
        match line.trim() {
            BEGIN => {
                inside = true;
                // The blank line merge put before the block.
                if out.ends_with("\n\n") {
                    out.pop();
                }
            }
            END if inside => inside = false,
            _ if !inside => out.push_str(line),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const STOCK: &str = "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n      conf_dir = \"/etc/cni/net.d\"\n  [plugins.\"io.containerd.internal.v1.opt\"]\n    path = \"/var/lib/containerd/opt\"\n";

    use crate::readme_fixture::readme_config;

    fn table(text: &str) -> toml::Table {
        text.parse().expect("valid TOML")
    }

    #[test]
    fn debians_stock_config_becomes_the_readme_example() {
        let opts = MergeOptions { restrict_oom_score_adj: true, ..Default::default() };
        let merged = merge(STOCK, &opts).expect("merges");
        assert_eq!(table(&merged), table(&readme_config("moat-containerd-config-v2")));
        // The stock file's own lines are all still there, in order.
        let kept: Vec<&str> = STOCK.lines().filter(|l| !l.trim().is_empty()).collect();
        let mut at = 0;
        for line in merged.lines() {
            if at < kept.len() && line == kept[at] {
                at += 1;
            }
        }
        assert_eq!(at, kept.len(), "stock lines lost or reordered:\n{merged}");
    }

    #[test]
    fn merging_twice_changes_nothing_and_remove_undoes_the_handler() {
        let once = merge(STOCK, &MergeOptions::default()).expect("merges");
        assert_eq!(merge(&once, &MergeOptions::default()).expect("merges"), once);
        let removed = remove(&once).expect("removes");
        let t = table(&removed);
        let runtimes = &t["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"];
        assert!(runtimes.get("moat").is_none() && runtimes.get("runc").is_some(), "{removed}");
        assert_eq!(remove(STOCK).expect("nothing to remove"), STOCK);
    }

    #[test]
    fn version_3_gets_no_options_and_comments_stay() {
        // Input: a 2.x config with an operator comment and its own runc options.
        let text = "# node config, do not lose me\nversion = 3\n\n[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n  [plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.runc.options]\n    SystemdCgroup = true\n";
        let merged = merge(text, &MergeOptions::default()).expect("merges");
        assert!(merged.starts_with("# node config, do not lose me\n"), "{merged}");
        let t = table(&merged);
        let runtimes = &t["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["runtimes"];
        assert_eq!(runtimes["moat"]["runtime_type"].as_str(), Some(MOAT_RUNTIME_TYPE));
        assert!(runtimes["moat"].get("options").is_none(), "{merged}");
        assert_eq!(runtimes["runc"]["options"]["SystemdCgroup"].as_bool(), Some(true));
    }

    #[test]
    fn a_custom_default_runtime_is_not_given_a_runc() {
        // Input: crun as the default runtime (declared); runc must not be added.
        let text = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\n  default_runtime_name = \"crun\"\n  [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.crun]\n    runtime_type = \"io.containerd.runc.v2\"\n";
        let t = table(&merge(text, &MergeOptions::default()).expect("merges"));
        let runtimes = &t["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"];
        assert!(runtimes.get("runc").is_none() && runtimes.get("moat").is_some());
    }

    /// A k3s-like base: Debian's stock file with runc declared as k3s's base does.
    fn k3s_base() -> String {
        format!(
            "{STOCK}[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n"
        )
    }

    #[test]
    fn k3s_templates_get_only_the_handler_appended() {
        // Input: k3s's recommended template (the base and nothing else), and an empty one.
        for template in [format!("{K3S_BASE}\n"), String::new()] {
            let merged =
                merge_k3s_template(&template, 2, &MergeOptions::default()).expect("merges");
            assert!(merged.starts_with(K3S_BASE), "{merged}");
            assert_eq!(
                merge_k3s_template(&merged, 2, &MergeOptions::default()).expect("merges"),
                merged
            );
            // Rendered (the base put in), it is TOML with runc and moat.
            let rendered = merged.replace(K3S_BASE, &k3s_base());
            let t = table(&rendered);
            let runtimes = &t["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"];
            assert_eq!(runtimes["moat"]["runtime_type"].as_str(), Some(MOAT_RUNTIME_TYPE));
            assert_eq!(
                runtimes["moat"]["options"]["ConfigPath"].as_str(),
                Some("/etc/moat/config.toml")
            );
            assert!(runtimes.get("runc").is_some());
            let removed = remove_k3s_template(&merged);
            assert_eq!(
                removed,
                if template.is_empty() { format!("{K3S_BASE}\n") } else { template }
            );
        }
        // containerd 2.x: the 2.x plugin, no options.
        let v3 = merge_k3s_template("", 3, &MergeOptions::default()).expect("merges");
        assert!(v3.contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.moat]"));
        assert!(!v3.contains("ConfigPath"), "{v3}");
        // Input: a template that declares its own moat handler.
        let own = format!(
            "{K3S_BASE}\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.moat]\n"
        );
        assert!(merge_k3s_template(&own, 2, &MergeOptions::default()).is_err());
    }

    #[test]
    fn unmergeable_files_are_refused_naming_why() {
        // Input: no version (containerd reads it as version 1).
        assert_eq!(merge("[plugins]\n", &MergeOptions::default()), Err(MergeError::Version(1)));
        // Input: a moat handler of another type.
        let foreign = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.moat]\n  runtime_type = \"io.containerd.runc.v2\"\n";
        assert!(matches!(
            merge(foreign, &MergeOptions::default()),
            Err(MergeError::ForeignHandler { .. })
        ));
        // Input: duplicated tables.
        let dup = "version = 2\n[plugins]\n[plugins]\n";
        assert!(matches!(merge(dup, &MergeOptions::default()), Err(MergeError::Parse(_))));
        // Input: `plugins` as a string.
        assert!(matches!(
            merge("version = 2\nplugins = \"x\"\n", &MergeOptions::default()),
            Err(MergeError::NotATable { .. })
        ));
    }
}
