//! Checking and normalising `linux.cgroupsPath` (cgroupfs driver form only).

use super::CgroupError;

/// A checked cgroupsPath: one or more plain directory names under a hierarchy's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPath {
    components: Vec<String>,
}

impl CgroupPath {
    /// Accepts `/a/b/c` (and, like `a/b/c`, relative paths, which are taken from the hierarchy
    /// root: containerd always sends absolute ones). Refuses the systemd driver's
    /// `slice:prefix:name`, `.`/`..`, control characters, and the root cgroup itself.
    pub fn parse(raw: &str) -> Result<CgroupPath, CgroupError> {
        let invalid = |reason| CgroupError::InvalidPath { path: raw.to_string(), reason };
        if raw.contains(':') {
            return Err(CgroupError::SystemdDriverUnsupported { path: raw.to_string() });
        }
        if raw.chars().any(|c| c.is_control()) {
            return Err(invalid("contains a control character"));
        }
        if raw.len() > 4096 {
            return Err(invalid("longer than PATH_MAX"));
        }
        let mut components = Vec::new();
        for part in raw.split('/') {
            match part {
                "" => continue,
                "." | ".." => return Err(invalid("contains a \".\" or \"..\" component")),
                p if p.len() > 255 => return Err(invalid("a component is longer than NAME_MAX")),
                p => components.push(p.to_string()),
            }
        }
        if components.is_empty() {
            return Err(invalid("names the root cgroup; a container needs a cgroup of its own"));
        }
        Ok(CgroupPath { components })
    }

    /// The directory names, outermost first.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// `/a/b/c`.
    pub fn as_absolute(&self) -> String {
        let mut s = String::new();
        for c in &self.components {
            s.push('/');
            s.push_str(c);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises_cgroupfs_paths() {
        let p = CgroupPath::parse("/k8s.io//abc/").expect("valid path");
        assert_eq!(p.components(), &["k8s.io".to_string(), "abc".to_string()]);
        assert_eq!(p.as_absolute(), "/k8s.io/abc");
        assert_eq!(CgroupPath::parse("pod/x").expect("relative").as_absolute(), "/pod/x");
    }

    #[test]
    fn refuses_systemd_form() {
        let e = CgroupPath::parse("system.slice:cri-containerd:abc").expect_err("must be refused");
        assert!(
            matches!(e, CgroupError::SystemdDriverUnsupported { ref path } if path == "system.slice:cri-containerd:abc")
        );
        assert!(e.to_string().contains("systemd"));
    }

    #[test]
    fn refuses_dot_dot_root_and_control_chars() {
        for bad in ["/a/../b", "/..", "/a/./b", "", "/", "//", "/a\nb", "/a\0b"] {
            let e = CgroupPath::parse(bad).expect_err("must be refused");
            assert!(matches!(e, CgroupError::InvalidPath { .. }), "{bad:?} gave {e}");
        }
        let long = format!("/{}", "x".repeat(256));
        assert!(CgroupPath::parse(&long).is_err());
    }
}
