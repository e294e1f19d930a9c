//! moat's own configuration: the operator's policy, read from a TOML file.
//!
//! Where it comes from (`Config::load`): the runtime options' `ConfigPath` that containerd passes
//! for the `moat` runtime handler, else `/etc/moat/config.toml` when that file exists, else the
//! built-in defaults. Every key is documented, line by line, in `docs/config.example.toml`.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

pub use crate::userns::UsernsConfig;

/// The file read when containerd gives no `ConfigPath`.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/moat/config.toml";

/// A Kubernetes Pod Security Standards level, checked on what the OCI spec shows (the rules,
/// one table row each, are in `policy::levels`; `docs/config.example.toml` says what each
/// means under moat, where every pod already runs in its own user namespace).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// The default: Pod Security Standards baseline (known privilege escalations refused).
    #[default]
    Baseline,
    /// Pod Security Standards restricted: baseline plus a non-root user, no capability but
    /// CAP_NET_BIND_SERVICE, a seccomp profile in the spec, and no_new_privs.
    Restricted,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Restricted => "restricted",
            Level::Baseline => "baseline",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operator's policy. Unknown keys are an error (a typo must not silently weaken nothing
/// or strengthen nothing).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Pod Security Standards level every container is checked against.
    pub level: Level,
    /// Let privileged containers run (still inside the pod's user namespace, under the
    /// baseline seccomp filter, with /proc and /sys masked).
    pub allow_privileged: bool,
    /// Let a pod share the host's network namespace.
    pub allow_host_network: bool,
    /// Let a pod share the host's pid namespace.
    pub allow_host_pid: bool,
    /// Let a pod share the host's IPC namespace.
    pub allow_host_ipc: bool,
    /// Let `linux.devices` name host devices beyond the standard set; they are bind-mounted.
    pub allow_host_devices: bool,
    /// Capabilities allowed beyond the level's set (`CAP_NET_ADMIN` or `NET_ADMIN`).
    pub allowed_capabilities: Vec<String>,
    /// Host directories (and everything under them) that bind mounts may come from, each
    /// bound without (`"/data"`) or with (`{ path = "/data", idmap = true }`) an ID mapping.
    pub allowed_host_paths: Vec<AllowedHostPath>,
    /// Sysctls allowed in addition to the built-in safe set; `net.core.*` allows a prefix.
    pub allowed_sysctls: Vec<String>,
    /// A container whose spec has no seccomp filter runs without moat's baseline filter too.
    pub allow_unconfined_seccomp: bool,
    /// A container whose spec leaves `noNewPrivileges` unset (Kubernetes'
    /// `allowPrivilegeEscalation: true`, the default) runs without no_new_privs at level
    /// `baseline`: setuid binaries of its image raise it to IDs of the pod's own range.
    /// `false` sets no_new_privs on every process, whatever the spec says.
    pub allow_privilege_escalation: bool,
    /// Every container's root filesystem is read-only (with writable tmpfs on /tmp and /run).
    pub force_readonly_rootfs: bool,
    /// containerd CRI's root and state directories: the per-pod files CRI bind-mounts
    /// (hostname, hosts, resolv.conf, /dev/shm) live under them. Empty (the default): derived
    /// from what containerd hands the shim (`containerd_dirs`); set: an override.
    pub cri_state_dirs: Vec<PathBuf>,
    /// kubelet's root directory: the per-pod volumes it bind-mounts live under `pods/<uid>`.
    pub kubelet_root_dir: PathBuf,
    /// pids limit of a container whose spec sets none (0: no default). Enforced on each
    /// container's own cgroup, so a pod of N containers can hold N times this many.
    pub default_pids_limit: u64,
    /// The pool of host ID ranges, one per pod.
    pub userns: UsernsConfig,
    /// The egress guard in each pod's network namespace (`crate::egress`).
    pub egress: crate::egress::EgressConfig,
    /// The denial audit (`crate::audit`).
    pub audit: crate::audit::AuditConfig,
    /// Where this configuration came from (`/etc/moat/config.toml`, `built-in defaults`), for
    /// messages. Not a key.
    #[serde(skip)]
    pub source: String,
}

/// One `allowed_host_paths` entry: a host directory bind mounts may come from, written as a
/// plain path (`"/data"`, no ID mapping) or a table (`{ path = "/data", idmap = true }`).
///
/// Without an ID mapping, files keep their on-disk owners as host IDs: a host-root 0700
/// directory stays closed to the pod, and what the pod writes is owned by its own host range.
/// With one, the bind is idmapped into the pod's user namespace: on-disk uid 0 is the pod's
/// root (and on-disk 1000 its uid 1000), so the pod owns the directory's host-root files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHostPath {
    /// The directory (everything under it is allowed too).
    pub path: PathBuf,
    /// Bind it idmapped into the pod's user namespace.
    pub idmap: bool,
}

impl From<&str> for AllowedHostPath {
    fn from(path: &str) -> Self {
        AllowedHostPath { path: PathBuf::from(path), idmap: false }
    }
}

impl From<PathBuf> for AllowedHostPath {
    fn from(path: PathBuf) -> Self {
        AllowedHostPath { path, idmap: false }
    }
}

/// The table form, with its keys checked (`deny_unknown_fields`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AllowedHostPathTable {
    path: PathBuf,
    #[serde(default)]
    idmap: bool,
}

impl<'de> Deserialize<'de> for AllowedHostPath {
    /// A string or a table (written by hand rather than `#[serde(untagged)]`, whose error
    /// for a wrong key is only "did not match any variant").
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = AllowedHostPath;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a path or a table { path = \"...\", idmap = true }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(AllowedHostPath::from(v))
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                m: M,
            ) -> Result<Self::Value, M::Error> {
                let t = AllowedHostPathTable::deserialize(
                    serde::de::value::MapAccessDeserializer::new(m),
                )?;
                Ok(AllowedHostPath { path: t.path, idmap: t.idmap })
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            level: Level::Baseline,
            allow_privileged: false,
            allow_host_network: false,
            allow_host_pid: false,
            allow_host_ipc: false,
            allow_host_devices: false,
            allowed_capabilities: Vec::new(),
            allowed_host_paths: Vec::new(),
            allowed_sysctls: Vec::new(),
            allow_unconfined_seccomp: false,
            allow_privilege_escalation: true,
            force_readonly_rootfs: false,
            cri_state_dirs: Vec::new(),
            kubelet_root_dir: PathBuf::from("/var/lib/kubelet"),
            default_pids_limit: DEFAULT_PIDS_LIMIT,
            userns: UsernsConfig::default(),
            egress: crate::egress::EgressConfig::default(),
            audit: crate::audit::AuditConfig::default(),
            source: BUILT_IN.to_string(),
        }
    }
}

const BUILT_IN: &str = "built-in defaults";

/// The built-in `default_pids_limit`: far above what an ordinary container runs (runc's and
/// Docker's defaults are unlimited; many clusters set 1024..4096 pod-wide), far below the
/// kernel's default pid_max of 32768 (4194304 on large hosts).
pub const DEFAULT_PIDS_LIMIT: u64 = 4096;
/// The kernel's PID_MAX_LIMIT on 64-bit: pids.max takes no larger number.
const PID_MAX_LIMIT: u64 = 4_194_304;

/// Why the configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read moat config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("moat config {source_name}, line {line}: {message}")]
    Parse { source_name: String, line: usize, message: String },
    #[error("moat config {source_name}: {key}: {message}")]
    Invalid { source_name: String, key: &'static str, message: String },
}

impl Config {
    /// The explicit `path` (containerd's `ConfigPath`), else `/etc/moat/config.toml` if it
    /// exists, else the built-in defaults. An explicit path that cannot be read is an error.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(path, Path::new(DEFAULT_CONFIG_PATH))
    }

    fn load_from(path: Option<&Path>, default_path: &Path) -> Result<Config, ConfigError> {
        // Only a default file that certainly does not exist means the built-in defaults: one
        // that cannot even be looked up (EACCES on its directory, EIO) is an error, never a
        // silent fall back to defaults the operator may have meant to tighten.
        let path = match path {
            Some(p) => p,
            None => match default_path.try_exists() {
                Ok(true) => default_path,
                Ok(false) => return Ok(Config::default()),
                Err(source) => {
                    return Err(ConfigError::Read { path: default_path.to_path_buf(), source })
                }
            },
        };
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_path_buf(), source })?;
        Config::parse(&text, &path.display().to_string())
    }

    /// Parses and validates `text`; `source_name` (the file name) is used in messages.
    pub fn parse(text: &str, source_name: &str) -> Result<Config, ConfigError> {
        let mut config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            source_name: source_name.to_string(),
            line: e.span().map(|span| line_of(text, span.start)).unwrap_or(1),
            message: e.message().trim_end().to_string(),
        })?;
        config.source = source_name.to_string();
        config.validate()?;
        Ok(config)
    }

    /// The file a remedy should point the operator to.
    pub fn file_for_messages(&self) -> &str {
        if self.source == BUILT_IN {
            DEFAULT_CONFIG_PATH
        } else {
            &self.source
        }
    }

    fn validate(&mut self) -> Result<(), ConfigError> {
        let invalid = |key: &'static str, message: String| ConfigError::Invalid {
            source_name: self.source.clone(),
            key,
            message,
        };
        for cap in &self.allowed_capabilities {
            if crate::features::capability(cap).is_none() {
                return Err(invalid("allowed_capabilities", format!("unknown capability {cap:?}")));
            }
        }
        for entry in &self.allowed_host_paths {
            if !entry.path.is_absolute() {
                return Err(invalid(
                    "allowed_host_paths",
                    format!("{} is not an absolute path", entry.path.display()),
                ));
            }
        }
        for dir in &self.cri_state_dirs {
            if !dir.is_absolute() {
                return Err(invalid(
                    "cri_state_dirs",
                    format!("{} is not an absolute path", dir.display()),
                ));
            }
        }
        if !self.kubelet_root_dir.is_absolute() {
            return Err(invalid(
                "kubelet_root_dir",
                format!("{} is not an absolute path", self.kubelet_root_dir.display()),
            ));
        }
        for sysctl in &self.allowed_sysctls {
            // Everything but one trailing `*` (by character: a name may end in a multibyte
            // one, and slicing off its last byte panicked).
            let before_wildcard = sysctl.strip_suffix('*').unwrap_or(sysctl);
            if sysctl.is_empty() || sysctl.contains('/') || before_wildcard.contains('*') {
                return Err(invalid(
                    "allowed_sysctls",
                    format!(
                        "{sysctl:?} is not a sysctl name (a trailing `*` is the only wildcard)"
                    ),
                ));
            }
        }
        if self.default_pids_limit > PID_MAX_LIMIT {
            return Err(invalid(
                "default_pids_limit",
                format!(
                    "{} is above the kernel's largest pid count {PID_MAX_LIMIT} (0 means none)",
                    self.default_pids_limit
                ),
            ));
        }
        let u = &self.userns;
        if u.size == 0 || u.count == 0 {
            return Err(invalid("userns", "size and count must be at least 1".into()));
        }
        if u.base == 0 {
            return Err(invalid("userns.base", "0 would hand host root to a pod".into()));
        }
        let end = u64::from(u.base) + u64::from(u.size) * u64::from(u.count);
        if end > u64::from(u32::MAX) {
            return Err(invalid(
                "userns",
                format!("base + size * count = {end} exceeds the largest host ID {}", u32::MAX - 1),
            ));
        }
        if !self.audit.state_dir.is_absolute() {
            return Err(invalid(
                "audit.state_dir",
                format!("{} is not an absolute path", self.audit.state_dir.display()),
            ));
        }
        if !u.state_dir.is_absolute() {
            return Err(invalid(
                "userns.state_dir",
                format!("{} is not an absolute path", u.state_dir.display()),
            ));
        }
        Ok(())
    }
}

/// 1-based line number of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        match Config::parse(text, "/etc/moat/test.toml") {
            Ok(c) => panic!("config {text:?} was accepted: {c:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let c = Config::parse("", "x.toml").expect("empty config");
        assert_eq!(c.level, Level::Baseline);
        assert!(c.allow_privilege_escalation);
        assert!(!c.allow_host_network);
        assert_eq!(c.userns.size, 65_536);
        assert_eq!(c.source, "x.toml");
        assert_eq!(Config { source: "x.toml".into(), ..Config::default() }, c);
    }

    #[test]
    fn every_key_parses() {
        let text = r#"
level = "baseline"
allow_privileged = true
allow_host_network = true
allow_host_pid = true
allow_host_ipc = true
allow_host_devices = true
allowed_capabilities = ["CAP_NET_ADMIN", "SYS_PTRACE"]
allowed_host_paths = ["/data", { path = "/srv/shared", idmap = true }, { path = "/srv/x" }]
allowed_sysctls = ["net.core.somaxconn", "kernel.msg*"]
allow_unconfined_seccomp = true
allow_privilege_escalation = false
force_readonly_rootfs = true
cri_state_dirs = ["/tmp/c/root/io.containerd.grpc.v1.cri"]
kubelet_root_dir = "/srv/kubelet"
default_pids_limit = 100

[userns]
base = 200000
size = 1000
count = 10
state_dir = "/tmp/pool"
"#;
        let c = Config::parse(text, "t.toml").expect("full config");
        assert_eq!(c.level, Level::Baseline);
        assert!(c.allow_privileged && c.allow_host_network && c.allow_host_pid);
        assert!(c.allow_host_ipc && c.allow_host_devices && c.allow_unconfined_seccomp);
        assert!(c.force_readonly_rootfs);
        assert_eq!(c.allowed_capabilities, vec!["CAP_NET_ADMIN", "SYS_PTRACE"]);
        assert!(!c.allow_privilege_escalation);
        assert_eq!(
            c.allowed_host_paths,
            vec![
                AllowedHostPath { path: "/data".into(), idmap: false },
                AllowedHostPath { path: "/srv/shared".into(), idmap: true },
                AllowedHostPath { path: "/srv/x".into(), idmap: false },
            ]
        );
        assert_eq!(c.allowed_sysctls, vec!["net.core.somaxconn", "kernel.msg*"]);
        assert_eq!(c.cri_state_dirs, vec![PathBuf::from("/tmp/c/root/io.containerd.grpc.v1.cri")]);
        assert_eq!(c.kubelet_root_dir, PathBuf::from("/srv/kubelet"));
        assert_eq!(c.default_pids_limit, 100);
        assert_eq!(
            c.userns,
            UsernsConfig { base: 200_000, size: 1000, count: 10, state_dir: "/tmp/pool".into() }
        );
    }

    const EXAMPLE: &str = include_str!("../../../docs/config.example.toml");

    #[test]
    fn the_documented_example_is_exactly_the_defaults() {
        let c = Config::parse(EXAMPLE, "config.example.toml").expect("the example parses");
        assert_eq!(Config { source: "config.example.toml".into(), ..Config::default() }, c);
    }

    #[test]
    fn the_permissive_example_parses_and_allows_what_it_says() {
        let text = include_str!("../../../docs/config.permissive.toml");
        let c = Config::parse(text, "config.permissive.toml").expect("the example parses");
        assert_eq!(c.level, Level::Baseline);
        assert!(c.allow_privileged && c.allow_host_network && c.allow_host_pid);
        assert!(c.allow_host_ipc && c.allow_host_devices && c.allow_unconfined_seccomp);
        assert_eq!(
            c.allowed_host_paths,
            vec![AllowedHostPath { path: "/tmp".into(), idmap: true }]
        );
    }

    #[test]
    fn the_documented_example_lists_every_key_with_a_comment() {
        let table: toml::Table = toml::from_str(EXAMPLE).expect("TOML");
        let mut keys: Vec<String> = table.keys().cloned().collect();
        for section in ["userns", "egress", "audit"] {
            if let Some(toml::Value::Table(u)) = table.get(section) {
                keys.extend(u.keys().map(|k| format!("{section}.{k}")));
            }
        }
        keys.sort();
        let mut expected = vec![
            "level",
            "allow_privileged",
            "allow_host_network",
            "allow_host_pid",
            "allow_host_ipc",
            "allow_host_devices",
            "allowed_capabilities",
            "allowed_host_paths",
            "allowed_sysctls",
            "allow_unconfined_seccomp",
            "allow_privilege_escalation",
            "force_readonly_rootfs",
            "cri_state_dirs",
            "kubelet_root_dir",
            "default_pids_limit",
            "userns",
            "userns.base",
            "userns.size",
            "userns.count",
            "userns.state_dir",
            "egress",
            "egress.deny_metadata",
            "egress.deny_node_addresses",
            "egress.deny",
            "egress.allow",
            "audit",
            "audit.enabled",
            "audit.state_dir",
        ];
        expected.sort();
        assert_eq!(keys, expected);
        // Each key line is preceded by a comment line.
        let lines: Vec<&str> = EXAMPLE.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let is_key = line
                .split_once(" = ")
                .is_some_and(|(k, _)| !k.starts_with('#') && !k.starts_with(' '));
            if is_key {
                assert!(
                    i > 0 && lines[i - 1].starts_with('#'),
                    "line {}: {line} has no comment above",
                    i + 1
                );
            }
        }
    }

    #[test]
    fn unknown_key_names_file_and_line() {
        let msg = parse_err("level = \"restricted\"\n\nallow_host_netwrk = true\n");
        assert!(msg.contains("/etc/moat/test.toml"), "{msg}");
        assert!(msg.contains("line 3"), "{msg}");
        assert!(msg.contains("allow_host_netwrk"), "{msg}");
    }

    #[test]
    fn bad_level_names_line() {
        let msg = parse_err("# comment\nlevel = \"privileged\"\n");
        assert!(msg.contains("line 2"), "{msg}");
        assert!(msg.contains("privileged"), "{msg}");
    }

    #[test]
    fn wrong_type_in_table_names_line() {
        let msg = parse_err("level = \"baseline\"\n[userns]\nbase = 1\nsize = \"big\"\n");
        assert!(msg.contains("line 4"), "{msg}");
    }

    #[test]
    fn syntax_error_names_line() {
        let msg = parse_err("level = \"baseline\"\nallow_privileged = \n");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn unknown_capability_is_rejected() {
        let msg = parse_err("allowed_capabilities = [\"CAP_FLY\"]\n");
        assert!(msg.contains("allowed_capabilities") && msg.contains("CAP_FLY"), "{msg}");
    }

    #[test]
    fn relative_host_path_is_rejected() {
        let msg = parse_err("allowed_host_paths = [\"data\"]\n");
        assert!(msg.contains("allowed_host_paths") && msg.contains("absolute"), "{msg}");
    }

    #[test]
    fn allowed_host_path_tables_are_checked() {
        // Input: a table entry with a misspelt key, one without `path`, one relative path, one
        // of the wrong type: each names the key and the line.
        let msg = parse_err("\nallowed_host_paths = [{ path = \"/d\", idmapp = true }]\n");
        assert!(msg.contains("idmapp") && msg.contains("line 2"), "{msg}");
        let msg = parse_err("allowed_host_paths = [{ idmap = true }]\n");
        assert!(msg.contains("path"), "{msg}");
        let msg = parse_err("allowed_host_paths = [{ path = \"d\", idmap = true }]\n");
        assert!(msg.contains("allowed_host_paths") && msg.contains("absolute"), "{msg}");
        let msg = parse_err("allowed_host_paths = [42]\n");
        assert!(msg.contains("a path or a table"), "{msg}");
    }

    #[test]
    fn default_pids_limit_beyond_the_kernel_is_rejected() {
        let msg = parse_err("default_pids_limit = 5000000\n");
        assert!(msg.contains("default_pids_limit") && msg.contains("4194304"), "{msg}");
        let msg = parse_err("default_pids_limit = -1\n");
        assert!(msg.contains("line 1"), "{msg}");
        assert_eq!(
            Config::parse("default_pids_limit = 0\n", "t").map(|c| c.default_pids_limit).ok(),
            Some(0)
        );
    }

    #[test]
    fn pool_beyond_the_id_space_is_rejected() {
        let msg = parse_err("[userns]\nbase = 4000000000\nsize = 65536\ncount = 10000\n");
        assert!(msg.contains("userns") && msg.contains("exceeds"), "{msg}");
        let msg = parse_err("[userns]\nbase = 0\n");
        assert!(msg.contains("userns.base"), "{msg}");
    }

    #[test]
    fn a_multibyte_character_at_the_end_of_a_sysctl_is_an_error_not_a_panic() {
        // Input: an allowed_sysctls entry (alone on its line) ending in a 2-, 3- and 4-byte
        // character: the wildcard check sliced it one byte before its end.
        for sysctl in ["net.core.é", "kernel.msg€", "net.🦀", "é"] {
            let text = format!("allowed_sysctls = [\n  \"{sysctl}\"\n]\n");
            let config = Config::parse(&text, "t.toml").expect("a name with a non-ASCII end");
            assert_eq!(config.allowed_sysctls, vec![sysctl.to_string()]);
        }
        // Input: a multibyte character before the `*`: the wildcard rule still applies.
        let msg = parse_err("allowed_sysctls = [\"net.é*x*\"]\n");
        assert!(msg.contains("allowed_sysctls") && msg.contains("wildcard"), "{msg}");
        let c = Config::parse("allowed_sysctls = [\"net.é*\"]\n", "t.toml").expect("prefix");
        assert_eq!(c.allowed_sysctls, vec!["net.é*".to_string()]);
    }

    mod no_panic {
        use super::super::Config;
        use proptest::prelude::*;

        /// Config text built from keys and values of the real grammar, with multibyte
        /// characters and long runs placed at line ends.
        fn config_like() -> impl Strategy<Value = String> {
            let key = prop_oneof![
                Just("level"),
                Just("allowed_sysctls"),
                Just("allowed_capabilities"),
                Just("allowed_host_paths"),
                Just("cri_state_dirs"),
                Just("kubelet_root_dir"),
                Just("allow_privileged"),
                Just("[userns]\nstate_dir"),
                Just("[userns]\nbase"),
            ];
            let piece = prop_oneof![
                "[a-z./*]{0,8}",
                "[é€🦀ß\u{0301}]{1,3}",
                Just("*".to_string()),
                "[a-z]{200,400}",
            ];
            let value = proptest::collection::vec(piece, 0..4).prop_map(|p| p.concat());
            let line = (key, value, 0..4u8).prop_map(|(k, v, form)| match form {
                0 => format!("{k} = \"{v}\""),
                1 => format!("{k} = [\"{v}\"]"),
                2 => format!("{k} = [\n  \"{v}\",\n]"),
                _ => format!("{k} = {v}"),
            });
            proptest::collection::vec(line, 0..3).prop_map(|lines| lines.join("\n") + "\n")
        }

        /// A TOML string literal holding `s` (escaped by the toml crate itself).
        fn toml_string(s: &str) -> String {
            toml::Value::String(s.to_string()).to_string()
        }

        proptest! {
            #[test]
            fn arbitrary_text_gives_a_config_or_an_error(text in any::<String>()) {
                let _ = Config::parse(&text, "prop.toml");
            }

            #[test]
            fn arbitrary_bytes_as_utf8_give_a_config_or_an_error(
                bytes in proptest::collection::vec(any::<u8>(), 0..512)
            ) {
                let text = String::from_utf8_lossy(&bytes);
                let _ = Config::parse(&text, "prop.toml");
            }

            #[test]
            fn config_like_text_with_multibyte_line_ends_gives_a_config_or_an_error(
                text in config_like()
            ) {
                let _ = Config::parse(&text, "prop.toml");
            }

            #[test]
            fn list_entries_of_any_characters_give_a_config_or_an_error(
                entry in "\\PC{0,12}",
                key in prop_oneof![
                    Just("allowed_sysctls"),
                    Just("allowed_capabilities"),
                    Just("allowed_host_paths"),
                    Just("cri_state_dirs"),
                ],
            ) {
                let text = format!("{key} = [\n  {},\n]\n", toml_string(&entry));
                let _ = Config::parse(&text, "prop.toml");
            }

            #[test]
            fn long_lines_give_a_config_or_an_error(
                head in "[a-z_]{1,20}",
                body in "[^\n]{1000,5000}",
            ) {
                let _ = Config::parse(&format!("{head} = {body}\n"), "prop.toml");
                let _ = Config::parse(&format!("{head} = \"{body}\"\n"), "prop.toml");
            }
        }
    }

    #[test]
    fn load_prefers_explicit_path_then_default_file_then_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let explicit = dir.path().join("explicit.toml");
        let default_file = dir.path().join("config.toml");
        std::fs::write(&explicit, "level = \"baseline\"\n").expect("write");

        let missing_default = dir.path().join("absent.toml");
        let c = Config::load_from(None, &missing_default).expect("defaults");
        assert_eq!(c.source, BUILT_IN);
        assert_eq!(c.file_for_messages(), DEFAULT_CONFIG_PATH);

        std::fs::write(&default_file, "allow_host_pid = true\n").expect("write");
        let c = Config::load_from(None, &default_file).expect("default file");
        assert!(c.allow_host_pid);
        assert_eq!(c.file_for_messages(), default_file.display().to_string());

        let c = Config::load_from(Some(&explicit), &default_file).expect("explicit");
        assert_eq!(c.level, Level::Baseline);
        assert!(!c.allow_host_pid);

        let err = Config::load_from(Some(&dir.path().join("nope.toml")), &default_file)
            .expect_err("explicit missing file must fail");
        assert!(err.to_string().contains("nope.toml"), "{err}");
    }

    #[test]
    fn an_unreadable_config_is_an_error_not_the_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        // Input: an explicit ConfigPath that is a directory.
        let err = Config::load_from(Some(dir.path()), &dir.path().join("absent.toml"))
            .expect_err("a directory as the config must fail");
        assert!(err.to_string().contains(&dir.path().display().to_string()), "{err}");
        // Input: a default path whose existence cannot be told (a file stands where a
        // directory of its path should be: ENOTDIR).
        let file = dir.path().join("file");
        std::fs::write(&file, "").expect("write");
        let under_a_file = file.join("config.toml");
        let err = Config::load_from(None, &under_a_file)
            .expect_err("an undeterminable default config must fail");
        assert!(err.to_string().contains(&under_a_file.display().to_string()), "{err}");
        // Input: a config file that is not UTF-8.
        let latin1 = dir.path().join("latin1.toml");
        std::fs::write(&latin1, b"# caf\xe9\nlevel = \"baseline\"\n").expect("write");
        let err = Config::load_from(Some(&latin1), &under_a_file)
            .expect_err("a config that is not UTF-8 must fail");
        assert!(err.to_string().contains("latin1.toml"), "{err}");
    }
}
