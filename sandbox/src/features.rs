//! What moat supports, as the OCI runtime-spec `features` document (`runc features`, and what
//! containerd 2.x reads from `<shim> -info`).
//!
//! The tables below are the single source for "which names does moat recognise, and what do
//! they do": the sandbox code reads them (`policy::mounts` looks mount options up in
//! [`MOUNT_OPTIONS`], `policy::namespaces` plans [`NAMESPACE_KINDS`], `seccomp` converts
//! actions, operators and flags through [`SECCOMP_ACTIONS`], [`SECCOMP_OPERATORS`] and
//! [`SECCOMP_FLAGS`] and accepts [`SECCOMP_ARCHS`]; policy reads [`CAPABILITIES`]
//! through `policy::capabilities`), and [`oci_features`] lists the same tables. The tests of this
//! module feed every entry through the real policy / seccomp code, which must accept it with
//! the effect the table declares, and every name outside a table must be refused.
//!
//! Why containerd cares (researched in containerd 2.0-2.3 sources, `internal/cri/server/
//! service.go` and `core/runtime/v2/task_manager.go`):
//!
//! * CRI's `introspectRuntimeHandlers` reports `RuntimeHandlerFeatures.UserNamespaces = true`
//!   to kubelet (which refuses `hostUsers: false` pods on handlers without it: "RuntimeClass
//!   handler ... does not support user namespaces") exactly when `supportsCRIUserns` holds:
//!   `linux.namespaces` contains `"user"` AND `linux.mountExtensions.idmap.enabled == true`.
//!   No annotation is consulted. `RecursiveReadOnlyMounts` is reported when `mountOptions`
//!   contains `"rro"` (and the kernel has mount_setattr).
//!   CAVEAT: up to containerd 2.3 `introspectRuntimeFeatures` returns an error for any handler
//!   whose `runtime_type` is not `io.containerd.runc.v2`, so a handler of type
//!   `io.containerd.moat.v2` gets no features at all there, however good `-info` is
//!   (containerd PR #13504 removes that guard). kubelet therefore sees userns support for moat
//!   only on containerd releases carrying that change.
//! * The task manager's `validateRuntimeFeatures` runs for every runtime type: when a spec has
//!   idmapped mounts (`uidMappings`/`gidMappings`, or `idmap`/`ridmap` options — containerd 2.x
//!   with `hostUsers: false`), it runs `<shim> -info`, requires a `features` Any it can decode
//!   (type URL [`FEATURES_TYPE_URL`]) and `mountExtensions.idmap.enabled == true`, else task
//!   creation fails ("idmap mounts not supported").

use oci_spec::runtime::{
    Apparmor, Arch, Cgroup, Features, IDMap, IntelRdt, LinuxFeature, LinuxNamespaceType,
    LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator, MountExtensions, NetDevices,
    Seccomp, Selinux,
};

use crate::plan::{NamespaceKind, SeccompAction, SeccompOp};

/// The type URL containerd registers for `features.Features` (typeurl of the Go type in
/// `github.com/opencontainers/runtime-spec/specs-go/features`). The Any's value is JSON.
pub const FEATURES_TYPE_URL: &str =
    "types.containerd.io/opencontainers/runtime-spec/1/features/Features";

/// Every capability the kernel knows (as of Linux 6.x).
pub const CAPABILITIES: [&str; 41] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

/// `net_admin`, `NET_ADMIN`, `CAP_NET_ADMIN` -> `CAP_NET_ADMIN`, if the kernel knows it.
pub fn capability(name: &str) -> Option<String> {
    let upper = name.trim().to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") { upper } else { format!("CAP_{upper}") };
    CAPABILITIES.contains(&full.as_str()).then_some(full)
}

/// Oldest spec version moat reads: containerd 1.6 writes "1.0.2-dev".
pub const OCI_VERSION_MIN: &str = "1.0.0";
/// Newest spec version moat reads: the one containerd 2.1+ writes. oci-spec 0.9 models its
/// fields (idmapped mounts included); fields moat does not support are refused by policy.
pub const OCI_VERSION_MAX: &str = "1.2.1";

// ---------------------------------------------------------------- mounts

/// What a recognised spec mount option does (see `policy::mounts`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountOptionEffect {
    /// `bind` / `rbind`: a bind mount, recursive or not.
    Bind { recursive: bool },
    /// `ro`/`rw`, and `rro`/`rrw`: the read-only flag is set with mount_setattr on the whole
    /// bound tree of an rbind, so the `r` forms are honoured as recursive.
    ReadOnly(bool),
    /// `nosuid`/`suid` (bind, tmpfs, proc, sysfs, mqueue, devpts are nosuid whatever is asked).
    NoSuid(bool),
    /// `nodev`/`dev` (binds and most filesystems are nodev whatever is asked).
    NoDev(bool),
    /// `noexec`/`exec`.
    NoExec(bool),
    /// Propagation. `private`/`unbindable`: nothing propagates (moat's default for every
    /// mount). `slave`: mounts the host makes below a bind's source appear in the container
    /// (Kubernetes' HostToContainer), set up by moat from the host side. `shared`
    /// (Bidirectional, mounts of the container reaching the host) is refused on binds.
    Propagation(Propagation),
    /// `idmap`/`ridmap`: every bind mount is idmapped into the pod's user namespace anyway.
    IdMap,
    /// Access-time and sync flags, `defaults`, `tmpcopyup`: accepted, no effect.
    NoEffect,
}

/// A mount propagation option, as `MountOptionEffect::Propagation` carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Propagation {
    Private,
    Slave,
    Shared,
}

/// Every mount option name moat recognises in a spec mount's `options`. Anything else is
/// filesystem data (`mode=755`, `size=64k`) passed to mount(2).
pub const MOUNT_OPTIONS: &[(&str, MountOptionEffect)] = {
    use MountOptionEffect::*;
    &[
        ("bind", Bind { recursive: false }),
        ("rbind", Bind { recursive: true }),
        ("ro", ReadOnly(true)),
        ("rro", ReadOnly(true)),
        ("rw", ReadOnly(false)),
        ("rrw", ReadOnly(false)),
        ("nosuid", NoSuid(true)),
        ("suid", NoSuid(false)),
        ("nodev", NoDev(true)),
        ("dev", NoDev(false)),
        ("noexec", NoExec(true)),
        ("exec", NoExec(false)),
        ("private", Propagation(self::Propagation::Private)),
        ("rprivate", Propagation(self::Propagation::Private)),
        ("slave", Propagation(self::Propagation::Slave)),
        ("rslave", Propagation(self::Propagation::Slave)),
        ("shared", Propagation(self::Propagation::Shared)),
        ("rshared", Propagation(self::Propagation::Shared)),
        ("unbindable", Propagation(self::Propagation::Private)),
        ("runbindable", Propagation(self::Propagation::Private)),
        ("idmap", IdMap),
        ("ridmap", IdMap),
        ("atime", NoEffect),
        ("noatime", NoEffect),
        ("relatime", NoEffect),
        ("norelatime", NoEffect),
        ("strictatime", NoEffect),
        ("nostrictatime", NoEffect),
        ("diratime", NoEffect),
        ("nodiratime", NoEffect),
        ("sync", NoEffect),
        ("async", NoEffect),
        ("dirsync", NoEffect),
        ("mand", NoEffect),
        ("nomand", NoEffect),
        ("defaults", NoEffect),
        ("tmpcopyup", NoEffect),
    ]
};

/// The effect of a mount option, or `None` when it is filesystem data.
pub fn mount_option(name: &str) -> Option<MountOptionEffect> {
    lookup(MOUNT_OPTIONS, &name)
}

// ---------------------------------------------------------------- namespaces

/// The namespaces a plan creates or joins besides mount and user (which moat always sets up:
/// a private mount namespace, and the pod's user namespace). `time` is refused by policy.
/// `policy::namespaces` plans them in this order (so network is checked first).
pub const NAMESPACE_KINDS: [NamespaceKind; 5] = [
    NamespaceKind::Network,
    NamespaceKind::Pid,
    NamespaceKind::Ipc,
    NamespaceKind::Uts,
    NamespaceKind::Cgroup,
];

/// The spec's name for a plan namespace. Exhaustive on purpose: a new `NamespaceKind` does not
/// compile until it is mapped here (and should then be added to `NAMESPACE_KINDS`).
pub fn namespace_type(kind: NamespaceKind) -> LinuxNamespaceType {
    match kind {
        NamespaceKind::Pid => LinuxNamespaceType::Pid,
        NamespaceKind::Network => LinuxNamespaceType::Network,
        NamespaceKind::Ipc => LinuxNamespaceType::Ipc,
        NamespaceKind::Uts => LinuxNamespaceType::Uts,
        NamespaceKind::Cgroup => LinuxNamespaceType::Cgroup,
    }
}

/// Every `linux.namespaces[].type` moat accepts.
pub fn namespaces() -> Vec<LinuxNamespaceType> {
    let mut out = vec![LinuxNamespaceType::Mount, LinuxNamespaceType::User];
    out.extend(NAMESPACE_KINDS.iter().map(|k| namespace_type(*k)));
    out
}

// ---------------------------------------------------------------- seccomp

/// What an OCI seccomp action becomes in a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeccompActionEffect {
    /// Exactly this plan action.
    Is(SeccompAction),
    /// `SeccompAction::Errno` with the rule's `errnoRet`, EPERM when it has none (as runc).
    Errno,
}

/// The OCI actions `seccomp::from_oci` converts, and into what. `SCMP_ACT_NOTIFY` is refused
/// (no seccomp agent).
pub const SECCOMP_ACTIONS: &[(LinuxSeccompAction, SeccompActionEffect)] = {
    use LinuxSeccompAction::*;
    use SeccompActionEffect::*;
    &[
        (ScmpActAllow, Is(SeccompAction::Allow)),
        (ScmpActErrno, Errno),
        (ScmpActKill, Is(SeccompAction::KillThread)),
        (ScmpActKillThread, Is(SeccompAction::KillThread)),
        (ScmpActKillProcess, Is(SeccompAction::KillProcess)),
        (ScmpActTrap, Is(SeccompAction::Trap)),
        (ScmpActLog, Is(SeccompAction::Log)),
        // With no tracer attached (moat never attaches one) the kernel fails a TRACE'd
        // syscall with ENOSYS: say so explicitly.
        (ScmpActTrace, Is(SeccompAction::Errno(ENOSYS))),
    ]
};

const ENOSYS: u32 = 38;

/// What `action` becomes in a plan, or `None` when moat does not support it.
pub fn seccomp_action(action: LinuxSeccompAction) -> Option<SeccompActionEffect> {
    lookup(SECCOMP_ACTIONS, &action)
}

/// The argument comparisons `seccomp::from_oci` converts (all of OCI's), and into what.
pub const SECCOMP_OPERATORS: &[(LinuxSeccompOperator, SeccompOp)] = {
    use LinuxSeccompOperator::*;
    &[
        (ScmpCmpNe, SeccompOp::NotEqual),
        (ScmpCmpLt, SeccompOp::LessThan),
        (ScmpCmpLe, SeccompOp::LessOrEqual),
        (ScmpCmpEq, SeccompOp::EqualTo),
        (ScmpCmpGe, SeccompOp::GreaterOrEqual),
        (ScmpCmpGt, SeccompOp::GreaterThan),
        (ScmpCmpMaskedEq, SeccompOp::MaskedEqual),
    ]
};

/// The plan comparison for `op`, or `None` when moat does not support it.
pub fn seccomp_operator(op: LinuxSeccompOperator) -> Option<SeccompOp> {
    lookup(SECCOMP_OPERATORS, &op)
}

/// Architectures a profile may list: every one libseccomp names (`SCMP_ARCH_NATIVE` is an
/// alias, not an architecture, and is accepted besides). Those the kernel cannot mix with the
/// native one are skipped when the filter is built, as runc does.
pub const SECCOMP_ARCHS: &[Arch] = &[
    Arch::ScmpArchX86,
    Arch::ScmpArchX86_64,
    Arch::ScmpArchX32,
    Arch::ScmpArchArm,
    Arch::ScmpArchAarch64,
    Arch::ScmpArchMips,
    Arch::ScmpArchMips64,
    Arch::ScmpArchMips64n32,
    Arch::ScmpArchMipsel,
    Arch::ScmpArchMipsel64,
    Arch::ScmpArchMipsel64n32,
    Arch::ScmpArchPpc,
    Arch::ScmpArchPpc64,
    Arch::ScmpArchPpc64le,
    Arch::ScmpArchS390,
    Arch::ScmpArchS390x,
    Arch::ScmpArchRiscv64,
];

/// True when a profile may list `arch` (see [`SECCOMP_ARCHS`]).
pub fn seccomp_arch_supported(arch: Arch) -> bool {
    arch == Arch::ScmpArchNative || SECCOMP_ARCHS.contains(&arch)
}

/// What a filter flag does when `seccomp::compile` builds the filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeccompFlagEffect {
    /// Log every action but ALLOW (libseccomp's `SCMP_FLTATR_CTL_LOG`).
    Log,
    /// Leave speculative store bypass mitigation off (`SCMP_FLTATR_CTL_SSB`).
    SpecAllow,
    /// Accepted, no effect: TSYNC holds trivially (the helper that loads filters is
    /// single-threaded) and WAIT_KILLABLE_RECV only concerns notify, which is refused.
    NoEffect,
}

/// Filter flags `seccomp::compile` accepts, and what each does.
pub const SECCOMP_FLAGS: &[(LinuxSeccompFilterFlag, SeccompFlagEffect)] = {
    use LinuxSeccompFilterFlag::*;
    &[
        (SeccompFilterFlagLog, SeccompFlagEffect::Log),
        (SeccompFilterFlagSpecAllow, SeccompFlagEffect::SpecAllow),
        (SeccompFilterFlagTsync, SeccompFlagEffect::NoEffect),
        (SeccompFilterFlagWaitKillableRecv, SeccompFlagEffect::NoEffect),
    ]
};

/// The effect of the filter flag named `name` (as a plan carries it, e.g.
/// `SECCOMP_FILTER_FLAG_LOG`), or `None` when moat does not know it.
pub fn seccomp_flag(name: &str) -> Option<SeccompFlagEffect> {
    SECCOMP_FLAGS.iter().find(|(f, _)| f.to_string() == name).map(|(_, e)| *e)
}

fn lookup<K: PartialEq, V: Copy>(table: &[(K, V)], key: &K) -> Option<V> {
    table.iter().find(|(k, _)| k == key).map(|(_, v)| *v)
}

// ---------------------------------------------------------------- the document

fn names<T: ToString>(items: &[T]) -> Vec<String> {
    items.iter().map(ToString::to_string).collect()
}

/// The keys of a table, in its order.
fn keys<K: Clone, V>(table: &[(K, V)]) -> Vec<K> {
    table.iter().map(|(k, _)| k.clone()).collect()
}

/// The OCI `features` document for moat.
pub fn oci_features() -> Features {
    let mut seccomp = Seccomp::default();
    seccomp
        .set_enabled(Some(true))
        .set_actions(Some(keys(SECCOMP_ACTIONS)))
        .set_operators(Some(names(&keys(SECCOMP_OPERATORS))))
        .set_archs(Some(SECCOMP_ARCHS.to_vec()))
        .set_known_flags(Some(names(&keys(SECCOMP_FLAGS))))
        .set_supported_flags(Some(names(&keys(SECCOMP_FLAGS))));

    let mut cgroup = Cgroup::default();
    cgroup
        .set_v1(Some(true))
        .set_v2(Some(true))
        .set_systemd(Some(false))
        .set_systemd_user(Some(false))
        .set_rdma(Some(false));

    let mut idmap = IDMap::default();
    idmap.set_enabled(Some(true));
    let mut mount_extensions = MountExtensions::default();
    mount_extensions.set_idmap(Some(idmap));

    let mut apparmor = Apparmor::default();
    apparmor.set_enabled(Some(false));
    let mut selinux = Selinux::default();
    selinux.set_enabled(Some(false));
    let mut intel_rdt = IntelRdt::default();
    intel_rdt.set_enabled(Some(false));
    let mut net_devices = NetDevices::default();
    net_devices.set_enabled(Some(false));

    let mut linux = LinuxFeature::default();
    linux
        .set_namespaces(Some(namespaces()))
        .set_capabilities(Some(names(&CAPABILITIES)))
        .set_cgroup(Some(cgroup))
        .set_seccomp(Some(seccomp))
        .set_apparmor(Some(apparmor))
        .set_selinux(Some(selinux))
        .set_intel_rdt(Some(intel_rdt))
        .set_mount_extensions(Some(mount_extensions))
        .set_net_devices(Some(net_devices));

    let mut features = Features::default();
    features
        .set_oci_version_min(OCI_VERSION_MIN.to_string())
        .set_oci_version_max(OCI_VERSION_MAX.to_string())
        // Policy refuses every hook (they would run as host root): none is recognised.
        .set_hooks(Some(Vec::new()))
        .set_mount_options(Some(names(&keys(MOUNT_OPTIONS))))
        .set_linux(Some(linux));
    features
}

/// [`oci_features`] as the JSON containerd puts in `RuntimeInfo.features`.
pub fn oci_features_json() -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&oci_features())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use oci_spec::runtime::{LinuxSeccomp, Spec};
    use serde_json::{json, Value};

    use super::*;
    use crate::plan::{IdMapping, MountKind, UserNamespaceAction, UserNamespacePlan};
    use crate::policy::{derive_container, Config, PodContext, Refusal};
    use crate::seccomp;

    fn features_json() -> Value {
        let bytes = oci_features_json().expect("features serialise");
        serde_json::from_slice(&bytes).expect("features JSON parses")
    }

    #[test]
    fn features_json_parses_back_as_oci_features() {
        let bytes = oci_features_json().expect("features serialise");
        let back: Features = serde_json::from_slice(&bytes).expect("parses as oci-spec Features");
        assert_eq!(back, oci_features());
        let v = features_json();
        assert_eq!(v["ociVersionMin"], "1.0.0");
        assert_eq!(v["ociVersionMax"], OCI_VERSION_MAX);
        assert_eq!(v["hooks"], json!([]));
        assert_eq!(
            v["linux"]["cgroup"],
            json!({"v1": true, "v2": true, "systemd": false, "systemdUser": false, "rdma": false})
        );
        assert_eq!(v["linux"]["apparmor"]["enabled"], false);
        assert_eq!(v["linux"]["selinux"]["enabled"], false);
        assert_eq!(v["linux"]["intelRdt"]["enabled"], false);
        let actions = v["linux"]["seccomp"]["actions"].as_array().expect("actions");
        for a in ["SCMP_ACT_ERRNO", "SCMP_ACT_ALLOW", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_LOG"] {
            assert!(actions.contains(&json!(a)), "{a} missing from {actions:?}");
        }
        assert!(!actions.contains(&json!("SCMP_ACT_NOTIFY")));
        assert!(v["linux"]["seccomp"]["operators"]
            .as_array()
            .expect("ops")
            .contains(&json!("SCMP_CMP_MASKED_EQ")));
        assert!(v["linux"]["seccomp"]["archs"]
            .as_array()
            .expect("archs")
            .contains(&json!("SCMP_ARCH_X86_64")));
        assert!(v["linux"]["seccomp"]["knownFlags"]
            .as_array()
            .expect("flags")
            .contains(&json!("SECCOMP_FILTER_FLAG_LOG")));
        assert!(v["mountOptions"].as_array().expect("mount options").contains(&json!("rro")));
    }

    /// containerd's `supportsCRIUserns` and `supportsIDMapMounts`, on the JSON it would read.
    #[test]
    fn containerd_would_report_user_namespace_support() {
        let v = features_json();
        let namespaces = v["linux"]["namespaces"].as_array().expect("namespaces");
        assert!(namespaces.contains(&json!("user")), "{namespaces:?}");
        assert_eq!(v["linux"]["mountExtensions"]["idmap"]["enabled"], json!(true));
        let mut listed: Vec<&str> = namespaces.iter().filter_map(Value::as_str).collect();
        listed.sort_unstable();
        assert_eq!(listed, ["cgroup", "ipc", "mount", "network", "pid", "user", "uts"]);
    }

    #[test]
    fn capabilities_are_the_policy_list() {
        let v = features_json();
        let caps = v["linux"]["capabilities"].as_array().expect("caps");
        assert_eq!(caps.len(), CAPABILITIES.len());
        assert!(
            caps.contains(&json!("CAP_SYS_ADMIN"))
                && caps.contains(&json!("CAP_CHECKPOINT_RESTORE"))
        );
    }

    // ------------------------------------------------ seccomp tables vs the seccomp code

    /// Every oci-spec action; the match fails to compile when oci-spec adds one.
    fn every_action() -> Vec<LinuxSeccompAction> {
        use LinuxSeccompAction::*;
        let all = vec![
            ScmpActKill,
            ScmpActKillThread,
            ScmpActKillProcess,
            ScmpActTrap,
            ScmpActErrno,
            ScmpActNotify,
            ScmpActTrace,
            ScmpActLog,
            ScmpActAllow,
        ];
        for a in &all {
            match a {
                ScmpActKill | ScmpActKillThread | ScmpActKillProcess | ScmpActTrap
                | ScmpActErrno | ScmpActNotify | ScmpActTrace | ScmpActLog | ScmpActAllow => {}
            }
        }
        all
    }

    fn profile(v: Value) -> LinuxSeccomp {
        serde_json::from_value(v).expect("test profile parses")
    }

    #[test]
    fn seccomp_actions_listed_are_exactly_those_the_converter_accepts() {
        for action in every_action() {
            // Input: a profile whose default action is `action`.
            let p = profile(
                json!({"defaultAction": action, "syscalls": [{"names": ["getpid"], "action": action}]}),
            );
            let converted = seccomp::from_oci(&p, "features-test");
            match seccomp_action(action) {
                None => assert!(
                    converted.is_err(),
                    "{action:?} is not listed but converts: {converted:?}"
                ),
                Some(effect) => {
                    let plan = converted
                        .unwrap_or_else(|e| panic!("{action:?} is listed but refused: {e}"));
                    let expected = match effect {
                        SeccompActionEffect::Is(a) => a,
                        SeccompActionEffect::Errno => SeccompAction::Errno(1),
                    };
                    assert_eq!(plan.default_action, expected, "{action:?}");
                }
            }
        }
        // Input: an errno action with its own errnoRet.
        let p = profile(json!({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38}));
        let plan = seccomp::from_oci(&p, "features-test").expect("converts");
        assert_eq!(plan.default_action, SeccompAction::Errno(38));
    }

    #[test]
    fn seccomp_operators_listed_all_convert_and_compile() {
        for (op, planned) in SECCOMP_OPERATORS {
            // Input: one rule comparing argument 0 with `op`.
            let p = profile(json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["personality"], "action": "SCMP_ACT_ERRNO",
                              "args": [{"index": 0, "value": 8, "valueTwo": 8, "op": op}]}]
            }));
            let plan =
                seccomp::from_oci(&p, "features-test").unwrap_or_else(|e| panic!("{op}: {e}"));
            assert_eq!(plan.rules[0].args.len(), 1, "{op}");
            assert_eq!(plan.rules[0].args[0].op, *planned, "{op}");
            seccomp::compile(&plan).unwrap_or_else(|e| panic!("{op}: {e}"));
        }
        assert_eq!(SECCOMP_OPERATORS.len(), 7, "OCI defines seven comparisons");
    }

    #[test]
    fn seccomp_archs_listed_all_compile() {
        use Arch::*;
        // Every oci-spec architecture; the match fails to compile when oci-spec adds one.
        let every = [
            ScmpArchNative,
            ScmpArchX86,
            ScmpArchX86_64,
            ScmpArchX32,
            ScmpArchArm,
            ScmpArchAarch64,
            ScmpArchMips,
            ScmpArchMips64,
            ScmpArchMips64n32,
            ScmpArchMipsel,
            ScmpArchMipsel64,
            ScmpArchMipsel64n32,
            ScmpArchPpc,
            ScmpArchPpc64,
            ScmpArchPpc64le,
            ScmpArchS390,
            ScmpArchS390x,
            ScmpArchRiscv64,
        ];
        for arch in every {
            match arch {
                ScmpArchNative | ScmpArchX86 | ScmpArchX86_64 | ScmpArchX32 | ScmpArchArm
                | ScmpArchAarch64 | ScmpArchMips | ScmpArchMips64 | ScmpArchMips64n32
                | ScmpArchMipsel | ScmpArchMipsel64 | ScmpArchMipsel64n32 | ScmpArchPpc
                | ScmpArchPpc64 | ScmpArchPpc64le | ScmpArchS390 | ScmpArchS390x
                | ScmpArchRiscv64 => {}
            }
            // Input: an allow-all filter that lists `arch`.
            let p = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [arch]}));
            let converted = seccomp::from_oci(&p, "features-test");
            assert_eq!(converted.is_ok(), seccomp_arch_supported(arch), "{arch:?}: {converted:?}");
        }
        assert!(
            !SECCOMP_ARCHS.contains(&ScmpArchNative),
            "native is an alias, not an architecture"
        );
        for arch in SECCOMP_ARCHS {
            // Input: an allow-all filter that also lists `arch`.
            let p = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "architectures": [arch]}));
            let plan =
                seccomp::from_oci(&p, "features-test").unwrap_or_else(|e| panic!("{arch:?}: {e}"));
            seccomp::compile(&plan).unwrap_or_else(|e| panic!("{arch:?}: {e}"));
        }
    }

    #[test]
    fn seccomp_flags_listed_are_exactly_those_the_compiler_accepts() {
        use LinuxSeccompFilterFlag::*;
        let every = [
            SeccompFilterFlagLog,
            SeccompFilterFlagTsync,
            SeccompFilterFlagSpecAllow,
            SeccompFilterFlagWaitKillableRecv,
        ];
        for flag in &every {
            match flag {
                SeccompFilterFlagLog
                | SeccompFilterFlagTsync
                | SeccompFilterFlagSpecAllow
                | SeccompFilterFlagWaitKillableRecv => {}
            }
        }
        for flag in every {
            let p = profile(json!({"defaultAction": "SCMP_ACT_ALLOW", "flags": [flag]}));
            let plan = seccomp::from_oci(&p, "features-test").expect("converts");
            let compiled = seccomp::compile(&plan);
            assert_eq!(
                compiled.is_ok(),
                seccomp_flag(&flag.to_string()).is_some(),
                "{flag}: {:?}",
                compiled.err()
            );
        }
        // Input: a flag name no table has (the plan carries strings).
        let mut plan = seccomp::from_oci(&profile(json!({"defaultAction": "SCMP_ACT_ALLOW"})), "x")
            .expect("converts");
        plan.flags = vec!["SECCOMP_FILTER_FLAG_NEW_LISTENER".into()];
        assert!(seccomp::compile(&plan).is_err());
    }

    // ------------------------------------------------ policy vs the mount and namespace tables

    const NS: &[&str] = &["pid", "ipc", "uts", "mount", "network"];

    fn spec(mounts: Value, namespaces: &[&str]) -> Spec {
        let ns: Vec<Value> = namespaces.iter().map(|t| json!({"type": t})).collect();
        serde_json::from_value(json!({
            "ociVersion": "1.0.2-dev",
            "process": {"user": {"uid": 0, "gid": 0}, "args": ["/bin/true"], "cwd": "/"},
            "root": {"path": "rootfs"},
            "mounts": mounts,
            "linux": {"namespaces": ns}
        }))
        .expect("test spec parses")
    }

    fn derive(spec: &Spec, config: &Config) -> Result<crate::plan::ContainerPlan, Refusal> {
        let m = vec![IdMapping { container_id: 0, host_id: 100_000, size: 65_536 }];
        let ctx = PodContext {
            pod_id: "pod".into(),
            container_id: "ctr".into(),
            pod_uid: None,
            is_sandbox: false,
            rootfs: PathBuf::from("/run/moat-test/rootfs"),
            rootfs_mounts: Vec::new(),
            containerd: Default::default(),
            user: UserNamespacePlan {
                action: UserNamespaceAction::JoinPod,
                uid_mappings: m.clone(),
                gid_mappings: m,
            },
            pod_shares_host: Vec::new(),
        };
        derive_container(spec, config, &ctx)
    }

    #[test]
    fn every_listed_mount_option_is_recognised_by_policy_with_its_effect() {
        let config = Config { allowed_host_paths: vec!["/srv/data".into()], ..Config::default() };
        for (name, effect) in MOUNT_OPTIONS {
            // Input: a tmpfs (or, for bind options, a bind of an allowed path) with `name`.
            let mount = match effect {
                MountOptionEffect::Bind { .. } => {
                    json!({"destination": "/data", "type": "none", "source": "/srv/data", "options": [name]})
                }
                _ => {
                    json!({"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k", name]})
                }
            };
            let plan = derive(&spec(json!([mount]), NS), &config)
                .unwrap_or_else(|r| panic!("{name}: {r}"));
            let m = plan
                .mounts
                .iter()
                .find(|m| m.destination.ends_with("data") || m.destination.ends_with("scratch"))
                .expect("mount planned");
            assert!(
                !m.data.as_deref().unwrap_or("").split(',').any(|d| d == *name),
                "{name} passed on as fs data: {m:?}"
            );
            match effect {
                MountOptionEffect::Bind { recursive } => {
                    assert!(
                        matches!(m.kind, MountKind::Bind { recursive: r, .. } if r == *recursive),
                        "{name}: {m:?}"
                    )
                }
                MountOptionEffect::ReadOnly(ro) => assert_eq!(m.readonly, *ro, "{name}"),
                MountOptionEffect::NoExec(noexec) => assert_eq!(m.noexec, *noexec, "{name}"),
                // tmpfs is nosuid and nodev whatever the spec asks.
                MountOptionEffect::NoSuid(_) => assert!(m.nosuid, "{name}"),
                MountOptionEffect::NoDev(_) => assert!(m.nodev, "{name}"),
                MountOptionEffect::Propagation(_)
                | MountOptionEffect::IdMap
                | MountOptionEffect::NoEffect => {}
            }
        }
        // Input: an unlisted option is filesystem data, passed on.
        let plan = derive(&spec(json!([{"destination": "/scratch", "type": "tmpfs", "source": "tmpfs", "options": ["size=64k"]}]), NS), &config).expect("accepted");
        assert_eq!(plan.mounts[0].data.as_deref(), Some("size=64k"));
        assert_eq!(mount_option("size=64k"), None);
        assert_eq!(mount_option("rbind"), Some(MountOptionEffect::Bind { recursive: true }));
    }

    /// Every oci-spec namespace type; the match fails to compile when oci-spec adds one.
    fn every_namespace() -> Vec<LinuxNamespaceType> {
        use LinuxNamespaceType::*;
        let all = vec![Mount, Cgroup, Uts, Ipc, User, Pid, Network, Time];
        for t in &all {
            match t {
                Mount | Cgroup | Uts | Ipc | User | Pid | Network | Time => {}
            }
        }
        all
    }

    #[test]
    fn namespaces_listed_are_exactly_those_policy_accepts() {
        let listed = namespaces();
        for t in every_namespace() {
            let name = serde_json::to_value(t).expect("serialises");
            let name = name.as_str().expect("a string");
            let mut ns: Vec<&str> = NS.to_vec();
            ns.push(name);
            // Input: the usual pod namespaces plus `name`.
            let accepted = derive(&spec(json!([]), &ns), &Config::default());
            assert_eq!(
                accepted.is_ok(),
                listed.contains(&t),
                "{name}: {:?}",
                accepted.err().map(|r| r.to_string())
            );
        }
        // Each plan namespace kind round-trips to the spec name policy reads.
        let plan = derive(
            &spec(json!([]), &["pid", "ipc", "uts", "mount", "network", "cgroup"]),
            &Config::default(),
        )
        .expect("accepted");
        for kind in NAMESPACE_KINDS {
            assert!(plan.namespaces.iter().any(|n| n.kind == kind), "{kind:?} not planned");
        }
    }

    #[test]
    fn hooks_are_refused_so_none_are_listed() {
        let mut s = spec(json!([]), NS);
        let hooks: oci_spec::runtime::Hooks =
            serde_json::from_value(json!({"createRuntime": [{"path": "/bin/true"}]}))
                .expect("hooks parse");
        s.set_hooks(Some(hooks));
        // Input: a spec with one createRuntime hook.
        assert!(derive(&s, &Config::default()).is_err());
        assert_eq!(oci_features().hooks().as_deref(), Some(&[][..]));
    }
}
