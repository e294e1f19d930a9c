//! The installer image and the DaemonSets that run it (issue 13, Deliver 4).
//!
//! - `the_script_builds_an_image_with_the_entrypoint_and_the_files`:
//!   `scripts/build-installer-image.sh` builds an OCI archive whose printed digest is the
//!   layout's manifest, whose config runs deploy/installer-entrypoint.sh with the image's own
//!   tools first on PATH, and whose rootfs (unpacked with umoci) carries the shim, install.sh,
//!   the entrypoint and the config example byte for byte; the shim runs inside it (its
//!   shared libraries came along) and busybox's sh parses install.sh.
//! - `the_daemonsets_run_the_scripts_image_and_the_installers_label`: the install and
//!   uninstall DaemonSets (checked as text: no YAML parser is in Cargo.lock) pull the name the
//!   script prints, run privileged with hostPID, pass the node name from the downward API,
//!   mount each host dir at the same path it has on the host, point MOAT_* at those mounts, and
//!   their ServiceAccount may patch nodes; the label install.sh sets is the RuntimeClass's
//!   nodeSelector.
//! - `installer_image_installs_and_uninstalls_from_a_pod_on_the_bed`: the image imported into a
//!   private bed's containerd and run as the DaemonSet runs it (a privileged runc pod with
//!   hostPID, the host mounts pointed at scratch dirs, never this machine's /etc/containerd or
//!   /usr/local/bin): it merges the handler into the scratch config (the host's containerd,
//!   reached with nsenter through PID 1, accepts it), installs the shim and the example config,
//!   "restarts", says it could not label for want of kubectl, and sleeps; a second run, from
//!   the image built with `--kubectl` (a stand-in that logs its arguments), changes nothing
//!   and labels the node; the uninstall mode gives back the original bytes, removes what it
//!   installed and the label.
//! - `installer_image_installs_moat_on_the_beds_containerd_and_uninstalls_it`: the same pods
//!   against a containerd that serves pods: a private bed's config with its moat handler taken
//!   out; after the installer pod and a restart a moat pod runs; after the uninstaller pod the
//!   config's bytes are back and, restarted, containerd refuses a moat pod.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, bail, ensure, Context, Result};
use k8s_cri::v1::{KeyValue, Mount, NamespaceMode};
use moat_e2e::bed::{private_bed_or_panic, test_on_private_bed};
use moat_e2e::configs;
use moat_e2e::images::{self, ImageArchive};
use moat_e2e::TestBed;
use sha2::{Digest, Sha256};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    let file = repo_root().join(path);
    std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("reading {}: {e}", file.display()))
}

/// What `scripts/build-installer-image.sh` printed.
struct Built {
    image: String,
    digest: String,
    archive: PathBuf,
    layout: PathBuf,
    tag: String,
}

fn build_image(out: &Path, kubectl: Option<&Path>) -> Result<Built> {
    let shim = moat_e2e::paths::shim_binary().ok_or_else(|| anyhow!("no moat shim"))?;
    let script = repo_root().join("scripts/build-installer-image.sh");
    let mut command = std::process::Command::new("bash");
    command.arg(&script).arg("--shim").arg(&shim).arg("--out").arg(out);
    if let Some(kubectl) = kubectl {
        command.arg("--kubectl").arg(kubectl);
    }
    let run = command.output().with_context(|| format!("running {}", script.display()))?;
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    ensure!(
        run.status.success(),
        "the build failed: {stdout}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .map(str::to_string)
            .ok_or_else(|| anyhow!("the script printed no `{name}` line:\n{stdout}"))
    };
    let layout = field("layout")?;
    let (layout, tag) = layout.rsplit_once(':').ok_or_else(|| anyhow!("layout {layout}"))?;
    Ok(Built {
        image: field("image")?,
        digest: field("digest")?,
        archive: PathBuf::from(field("archive")?),
        layout: PathBuf::from(layout),
        tag: tag.to_string(),
    })
}

/// A blob of an OCI layout, checked against its digest.
fn blob(layout: &Path, digest: &str) -> Result<Vec<u8>> {
    let hex = digest.strip_prefix("sha256:").ok_or_else(|| anyhow!("digest {digest}"))?;
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex))
        .with_context(|| format!("blob {digest}"))?;
    let got: String = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
    ensure!(got == hex, "blob {digest} hashes to {got}");
    Ok(bytes)
}

fn json(bytes: &[u8]) -> Result<serde_json::Value> {
    serde_json::from_slice(bytes).context("not JSON")
}

#[test]
fn the_script_builds_an_image_with_the_entrypoint_and_the_files() {
    let test = "the_script_builds_an_image_with_the_entrypoint_and_the_files";
    moat_e2e::run_in_scratch_dir(test, "moat", "installer-image", |dir| {
        let built = build_image(&dir.join("out"), None)?;
        let daemonset = read("deploy/kubernetes/daemonset.yaml");
        ensure!(
            daemonset.lines().any(|l| l.trim() == format!("image: {}", built.image)),
            "daemonset.yaml does not run the image the script printed ({})",
            built.image
        );
        ensure!(
            built.image.ends_with(&format!(":{}", built.tag)),
            "{} vs tag {}",
            built.image,
            built.tag
        );

        // The printed digest is the layout's manifest; its config runs the entrypoint.
        let index = json(&std::fs::read(built.layout.join("index.json"))?)?;
        let manifest = &index["manifests"][0];
        ensure!(manifest["digest"] == built.digest.as_str(), "index: {index}");
        ensure!(
            manifest["annotations"]["org.opencontainers.image.ref.name"] == built.tag.as_str(),
            "index: {index}"
        );
        let manifest = json(&blob(&built.layout, &built.digest)?)?;
        let config_digest =
            manifest["config"]["digest"].as_str().ok_or_else(|| anyhow!("{manifest}"))?;
        let config = json(&blob(&built.layout, config_digest)?)?;
        let process = &config["config"];
        ensure!(
            process["Entrypoint"] == serde_json::json!(["/opt/moat/installer-entrypoint.sh"]),
            "entrypoint: {process}"
        );
        ensure!(process["Cmd"].is_null(), "a Cmd would be passed to the entrypoint: {process}");
        let env: Vec<&str> = process["Env"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        ensure!(
            env.iter().any(|e| e.starts_with("PATH=/opt/moat/bin:/bin:")),
            "the image's tools are not first on PATH: {env:?}"
        );

        // The archive is what `ctr images import` takes: the layout, tarred.
        let listing = std::process::Command::new("tar").arg("-tf").arg(&built.archive).output()?;
        let listing = String::from_utf8_lossy(&listing.stdout);
        for entry in ["./index.json", "./oci-layout"] {
            ensure!(listing.lines().any(|l| l == entry), "{entry} not in the archive:\n{listing}");
        }

        // The files, unpacked as a runtime would.
        let bundle = dir.join("bundle");
        let unpack = std::process::Command::new("umoci")
            .args(["unpack", "--image"])
            .arg(format!("{}:{}", built.layout.display(), built.tag))
            .arg(&bundle)
            .output()
            .context("umoci unpack")?;
        ensure!(
            unpack.status.success(),
            "umoci unpack: {}",
            String::from_utf8_lossy(&unpack.stderr)
        );
        let rootfs = bundle.join("rootfs");
        let shim = moat_e2e::paths::shim_binary().ok_or_else(|| anyhow!("no moat shim"))?;
        for (inside, source) in [
            ("opt/moat/containerd-shim-moat-v2", shim),
            ("opt/moat/install.sh", repo_root().join("deploy/install.sh")),
            (
                "opt/moat/installer-entrypoint.sh",
                repo_root().join("deploy/installer-entrypoint.sh"),
            ),
            ("opt/moat/config.example.toml", repo_root().join("docs/config.example.toml")),
        ] {
            let got = std::fs::read(rootfs.join(inside)).with_context(|| inside.to_string())?;
            ensure!(got == std::fs::read(&source)?, "{inside} is not {}", source.display());
        }
        use std::os::unix::fs::PermissionsExt;
        for exe in ["opt/moat/installer-entrypoint.sh", "opt/moat/containerd-shim-moat-v2"] {
            let mode = std::fs::metadata(rootfs.join(exe))?.permissions().mode();
            ensure!(mode & 0o111 != 0, "{exe} is not executable ({mode:o})");
        }
        for applet in ["sh", "nsenter", "cmp", "awk", "stat", "mktemp", "sleep"] {
            ensure!(
                std::fs::read_link(rootfs.join("bin").join(applet)).ok()
                    == Some(PathBuf::from("busybox")),
                "no busybox {applet} in the image"
            );
        }
        let tmp = std::fs::metadata(rootfs.join("tmp"))?.permissions().mode();
        ensure!(tmp & 0o7777 == 0o1777, "/tmp mode {tmp:o}");

        // Inside the image: the shim runs (its libraries came along), busybox parses install.sh.
        for args in [
            &["/opt/moat/containerd-shim-moat-v2", "--version"][..],
            &["/bin/sh", "-n", "/opt/moat/install.sh"],
            &["/bin/sh", "-n", "/opt/moat/installer-entrypoint.sh"],
        ] {
            let out = std::process::Command::new("chroot").arg(&rootfs).args(args).output()?;
            ensure!(
                out.status.success(),
                "{args:?} in the image: {}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(())
    });
}

/// The YAML documents of a manifest file, each as its trimmed lines.
fn documents(text: &str) -> Vec<Vec<&str>> {
    text.split("\n---\n")
        .map(|d| d.lines().map(str::trim).filter(|l| !l.starts_with('#')).collect())
        .collect()
}

fn document<'a>(docs: &'a [Vec<&'a str>], kind: &str) -> &'a [&'a str] {
    docs.iter()
        .find(|d| d.contains(&format!("kind: {kind}").as_str()))
        .unwrap_or_else(|| panic!("no {kind}"))
}

/// The value of `- name: NAME` followed by `value: V` in a container's env.
fn env_value<'a>(doc: &[&'a str], name: &str) -> Option<&'a str> {
    let at = doc.iter().position(|l| *l == format!("- name: {name}"))?;
    doc.get(at + 1)?.strip_prefix("value: ")
}

/// `mountPath:` values and `path:` values (hostPath) of a pod template.
fn mounts(doc: &[&str]) -> (Vec<String>, Vec<String>) {
    let grab = |prefix: &str| {
        let mut v: Vec<String> =
            doc.iter().filter_map(|l| l.strip_prefix(prefix)).map(str::to_string).collect();
        v.sort();
        v
    };
    (grab("mountPath: "), grab("path: "))
}

fn parent(path: &str) -> String {
    Path::new(path).parent().map(|p| p.display().to_string()).unwrap_or_default()
}

#[test]
fn the_daemonsets_run_the_scripts_image_and_the_installers_label() {
    let script = read("scripts/build-installer-image.sh");
    let cargo = read("Cargo.toml");
    let repo =
        script.lines().find_map(|l| l.strip_prefix("repo=")).expect("the script's repo= line");
    let version = cargo
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("the workspace version");
    let image = format!("image: {repo}:{version}");

    let install = read("deploy/kubernetes/daemonset.yaml");
    let uninstall = read("deploy/kubernetes/uninstall/daemonset.yaml");
    let install_docs = documents(&install);
    let uninstall_docs = documents(&uninstall);
    let sa = document(&install_docs, "ServiceAccount");
    let sa_name = sa.iter().find_map(|l| l.strip_prefix("name: ")).expect("SA name");
    let role = document(&install_docs, "ClusterRole");
    assert!(role.contains(&"resources: [\"nodes\"]"), "{role:?}");
    assert!(role.iter().any(|l| l.starts_with("verbs:") && l.contains("\"patch\"")), "{role:?}");
    let binding = document(&install_docs, "ClusterRoleBinding");
    assert!(binding.contains(&format!("name: {sa_name}").as_str()), "{binding:?}");
    document(&install_docs, "Namespace");

    for (docs, mode) in [(&install_docs, "install"), (&uninstall_docs, "uninstall")] {
        let ds = document(docs, "DaemonSet");
        assert!(ds.contains(&image.as_str()), "{mode}: does not run {image}");
        assert!(ds.contains(&"hostPID: true"), "{mode}: no hostPID (nsenter -t 1)");
        assert!(ds.contains(&"privileged: true"), "{mode}: not privileged");
        assert!(ds.contains(&format!("serviceAccountName: {sa_name}").as_str()), "{mode}: SA");
        assert_eq!(env_value(ds, "MOAT_MODE"), Some(mode));
        let node = ds.iter().position(|l| *l == "- name: NODE_NAME").expect("NODE_NAME");
        assert_eq!(
            &ds[node + 1..node + 4],
            ["valueFrom:", "fieldRef:", "fieldPath: spec.nodeName"]
        );
        // Same paths inside and out: what install.sh writes into containerd's config and
        // hands to the host's containerd must mean the same file on the host.
        let (mount_paths, host_paths) = mounts(ds);
        assert_eq!(mount_paths, host_paths, "{mode}: a host dir is mounted at another path");
        for (var, dir_of) in
            [("MOAT_CONTAINERD_CONFIG", true), ("MOAT_CONFIG", true), ("MOAT_BIN_DIR", false)]
        {
            let value = env_value(ds, var).unwrap_or_else(|| panic!("{mode}: no {var}"));
            let dir = if dir_of { parent(value) } else { value.to_string() };
            assert!(mount_paths.contains(&dir), "{mode}: {var}={value} is not on a host mount");
        }
    }

    // The label: install.sh sets moat.io/runtime=ready on --node, the entrypoint passes the
    // downward API's NODE_NAME as --node, the RuntimeClass selects that label.
    let installer = read("deploy/install.sh");
    let entrypoint = read("deploy/installer-entrypoint.sh");
    let class = read("deploy/kubernetes/runtimeclass.yaml");
    assert!(
        installer.contains("label=moat.io/runtime\n") && installer.contains("\"$label=ready\"")
    );
    assert!(
        entrypoint.contains("--node \"${NODE_NAME:-}\""),
        "the entrypoint does not pass NODE_NAME"
    );
    assert!(class.lines().any(|l| l.trim() == "moat.io/runtime: ready"), "RuntimeClass selector");
}

/// A privileged container with the host's PID namespace running the installer image's
/// entrypoint, the scratch dirs mounted at their own paths, as the DaemonSet's pod.
fn installer_container(
    pod_name: &str,
    name: &str,
    image: &str,
    dirs: &[&Path],
    env: &[(&str, String)],
) -> k8s_cri::v1::ContainerConfig {
    let mut config = configs::container_config(pod_name, name, image, &[]);
    config.command.clear();
    config.envs.extend(env.iter().map(|(k, v)| KeyValue { key: k.to_string(), value: v.clone() }));
    config.mounts = dirs
        .iter()
        .map(|d| Mount {
            container_path: d.display().to_string(),
            host_path: d.display().to_string(),
            ..Default::default()
        })
        .collect();
    if let Some(sc) = config.linux.as_mut().and_then(|l| l.security_context.as_mut()) {
        sc.privileged = true;
        sc.masked_paths.clear();
        sc.readonly_paths.clear();
        if let Some(ns) = sc.namespace_options.as_mut() {
            ns.pid = NamespaceMode::Node as i32;
        }
    }
    config
}

#[test]
fn installer_image_installs_and_uninstalls_from_a_pod_on_the_bed() {
    let test = "installer_image_installs_and_uninstalls_from_a_pod_on_the_bed";
    let Some(bed) = private_bed_or_panic(test, "runc", "installerimage") else {
        return;
    };
    let scratch = bed.layout().dir.join("node");
    let result = (|| -> Result<()> {
        let import = |built: &Built| -> Result<()> {
            let (base_name, _) =
                built.image.rsplit_once(':').ok_or_else(|| anyhow!("image {}", built.image))?;
            images::import(
                &bed.layout().socket,
                &ImageArchive {
                    reference: built.image.clone(),
                    base_name: base_name.to_string(),
                    path: built.archive.clone(),
                },
            )?;
            ensure!(bed.cri().image_present(&built.image)?, "{} not in the CRI", built.image);
            Ok(())
        };
        // First the image as built by default, without kubectl.
        let built = build_image(&bed.layout().dir.join("installer-image"), None)?;
        import(&built)?;

        // The node's dirs, scratch: containerd's config dir, the shim dir, moat's config dir.
        let etc_containerd = scratch.join("etc/containerd");
        let bin = scratch.join("usr/local/bin");
        let etc_moat = scratch.join("etc/moat");
        for d in [&etc_containerd, &bin, &etc_moat] {
            std::fs::create_dir_all(d)?;
        }
        let containerd = moat_e2e::paths::containerd_binary();
        let default = std::process::Command::new(&containerd)
            .args(["config", "default"])
            .output()
            .context("containerd config default")?;
        let original = default.stdout;
        let config = etc_containerd.join("config.toml");
        std::fs::write(&config, &original)?;
        let restarted = etc_containerd.join("restarted");
        let env = |mode: &str| {
            vec![
                ("MOAT_MODE", mode.to_string()),
                ("NODE_NAME", "bed-node".to_string()),
                ("MOAT_CONTAINERD_CONFIG", config.display().to_string()),
                ("MOAT_BIN_DIR", bin.display().to_string()),
                ("MOAT_CONFIG", etc_moat.join("config.toml").display().to_string()),
                // The host's containerd, run through PID 1 by the entrypoint's nsenter.
                ("MOAT_CONTAINERD", containerd.display().to_string()),
                // Not PID 1: this machine's PID 1 holds CAP_SYS_RESOURCE, which no process
                // here has, so the kernel refuses to open /proc/1/ns/mnt (seen: "nsenter:
                // can't open '/proc/1/ns/mnt': Permission denied", from the host's root shell
                // too). The test process is in the host's mount namespace and, with hostPID,
                // visible to the pod under this PID.
                ("MOAT_HOST_PID", std::process::id().to_string()),
                // Stands for `systemctl restart containerd`; runs in the pod, on the mount.
                ("MOAT_RESTART_CMD", format!("touch {}", restarted.display())),
            ]
        };
        let dirs = [etc_containerd.as_path(), bin.as_path(), etc_moat.as_path()];

        let pod = installer_pod(&bed, "installer")?;
        let run = |name: &str, mode: &str, done: &str| {
            run_installer(&pod, name, &built.image, &dirs, &env(mode), done)
        };

        let log = run("installer", "install", "done; sleeping")?;
        ensure!(log.contains("node ready for moat"), "check did not pass:\n{log}");
        ensure!(
            log.contains("no kubectl here, node bed-node not labelled"),
            "the pod did not say it could not label:\n{log}"
        );
        ensure!(restarted.exists(), "containerd was not restarted:\n{log}");
        let dump = std::process::Command::new(&containerd)
            .arg("--config")
            .arg(&config)
            .args(["config", "dump"])
            .output()?;
        ensure!(dump.status.success(), "containerd refuses the merged config");
        let dump: toml::Table = String::from_utf8_lossy(&dump.stdout).parse()?;
        let cri = &dump["plugins"]["io.containerd.grpc.v1.cri"]["containerd"];
        ensure!(
            cri["runtimes"]["moat"]["runtime_type"].as_str() == Some("io.containerd.moat.v2"),
            "no moat handler merged:\n{}",
            std::fs::read_to_string(&config)?
        );
        ensure!(
            cri["runtimes"]["moat"]["options"]["ConfigPath"].as_str()
                == Some(etc_moat.join("config.toml").to_str().unwrap_or_default()),
            "ConfigPath is not the host path of moat's config"
        );
        ensure!(cri["default_runtime_name"].as_str() == Some("runc"), "runc not the default");
        let shim = moat_e2e::paths::shim_binary().ok_or_else(|| anyhow!("no moat shim"))?;
        ensure!(
            std::fs::read(bin.join("containerd-shim-moat-v2"))? == std::fs::read(&shim)?,
            "the shim was not installed in the scratch bin dir"
        );
        ensure!(
            std::fs::read(etc_moat.join("config.toml"))?
                == std::fs::read(repo_root().join("docs/config.example.toml"))?,
            "the example config was not put on the node"
        );

        // The pod restarted, now from an image built with `--kubectl` (a stand-in that logs
        // its arguments; no API server here): nothing changes, containerd is not restarted,
        // and the node is labelled through kubectl.
        let fake_kubectl = bed.layout().dir.join("fake-kubectl");
        std::fs::write(&fake_kubectl, "#!/bin/sh\necho \"fake-kubectl $*\"\n")?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&fake_kubectl, std::fs::Permissions::from_mode(0o755))?;
        }
        let with_kubectl =
            build_image(&bed.layout().dir.join("installer-image-kubectl"), Some(&fake_kubectl))?;
        ensure!(with_kubectl.image == built.image, "{} vs {}", with_kubectl.image, built.image);
        import(&with_kubectl)?;
        std::fs::remove_file(&restarted)?;
        let before = std::fs::read(&config)?;
        let log = run("installer-again", "install", "done; sleeping")?;
        ensure!(log.contains("already has the moat handler"), "{log}");
        ensure!(
            log.contains("fake-kubectl label node bed-node moat.io/runtime=ready --overwrite"),
            "the node was not labelled:\n{log}"
        );
        ensure!(
            !restarted.exists() && std::fs::read(&config)? == before,
            "second run changed:\n{log}"
        );

        // The uninstall DaemonSet's pod.
        let log = run("uninstaller", "uninstall", "done; sleeping")?;
        ensure!(log.contains("uninstalled from node bed-node"), "{log}");
        ensure!(
            log.contains("fake-kubectl label node bed-node moat.io/runtime- --overwrite"),
            "the label was not removed:\n{log}"
        );
        ensure!(std::fs::read(&config)? == original, "the original config is not back:\n{log}");
        ensure!(restarted.exists(), "not restarted after uninstall:\n{log}");
        ensure!(!bin.join("containerd-shim-moat-v2").exists(), "shim left:\n{log}");
        ensure!(!etc_moat.join("config.toml").exists(), "example config left:\n{log}");
        let left: Vec<_> = std::fs::read_dir(&etc_containerd)?
            .chain(std::fs::read_dir(&etc_moat)?)
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".moat-"))
            .collect();
        ensure!(left.is_empty(), "installer records left: {left:?}");
        pod.teardown()?;
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&scratch);
    if let Err(e) = result {
        let message = format!("{e:#}\n---- containerd log tail:\n{}", bed.log_tail(40));
        bed.shutdown();
        panic!("{test}: {message}");
    }
    bed.shutdown();
}

/// Starts the installer image's entrypoint in `pod` as container `name`; its log once it says
/// `done` (or an error with the log so far).
fn run_installer(
    pod: &moat_e2e::bed::Pod<'_>,
    name: &str,
    image: &str,
    dirs: &[&Path],
    env: &[(&str, String)],
    done: &str,
) -> Result<String> {
    let c = pod.create(&installer_container(&pod.name, name, image, dirs, env))?;
    pod.start(&c)?;
    match pod.wait_for_log(&c, Duration::from_secs(60), |lines| {
        lines.iter().any(|l| l.text.contains(done))
    }) {
        Ok(lines) => Ok(lines.iter().map(|l| l.text.clone()).collect::<Vec<_>>().join("\n")),
        Err(e) => {
            let log = pod.log(&c).unwrap_or_default();
            let log: Vec<_> = log.iter().map(|l| l.text.clone()).collect();
            bail!("{e:#}\n{name}'s log:\n{}", log.join("\n"))
        }
    }
}

/// A privileged pod with the host's PID namespace, as the DaemonSet's.
fn installer_pod<'a>(bed: &'a TestBed, base: &str) -> Result<moat_e2e::bed::Pod<'a>> {
    let mut pod_config = bed.pod_config(base)?;
    {
        let sc = configs::pod_security_context(&mut pod_config);
        sc.privileged = true;
        sc.namespace_options.get_or_insert_with(Default::default).pid = NamespaceMode::Node as i32;
    }
    bed.run_pod_with(pod_config, "runc")
}

/// The whole round trip on a containerd that serves pods: the bed's own config with its moat
/// handler taken out (by `config remove`), the installer image run in a runc pod on it
/// installs the handler and shim into the bed's config and bin dir, containerd restarted runs
/// a moat pod; the uninstaller pod gives back the config's bytes, and containerd restarted
/// refuses a moat pod for want of the handler.
#[test]
fn installer_image_installs_moat_on_the_beds_containerd_and_uninstalls_it() {
    let test = "installer_image_installs_moat_on_the_beds_containerd_and_uninstalls_it";
    test_on_private_bed(test, "moat", "imageroundtrip", |bed| {
        let layout = bed.layout();
        let shim = moat_e2e::paths::shim_binary().ok_or_else(|| anyhow!("no moat shim"))?;
        let stripped = std::process::Command::new(&shim)
            .args(["config", "remove", "--config"])
            .arg(&layout.config)
            .output()?;
        ensure!(stripped.status.success(), "config remove failed");
        let original = stripped.stdout;
        std::fs::write(&layout.config, &original)?;
        bed.restart_containerd(Duration::from_millis(100))?;

        let built = build_image(&layout.dir.join("installer-image"), None)?;
        let (base_name, _) =
            built.image.rsplit_once(':').ok_or_else(|| anyhow!("image {}", built.image))?;
        images::import(
            &layout.socket,
            &ImageArchive {
                reference: built.image.clone(),
                base_name: base_name.to_string(),
                path: built.archive.clone(),
            },
        )?;
        let containerd = moat_e2e::paths::containerd_binary();
        let env = |mode: &str| {
            vec![
                ("MOAT_MODE", mode.to_string()),
                ("NODE_NAME", "bed-node".to_string()),
                ("MOAT_CONTAINERD_CONFIG", layout.config.display().to_string()),
                ("MOAT_BIN_DIR", layout.bin_dir.display().to_string()),
                ("MOAT_CONFIG", layout.moat_config.display().to_string()),
                ("MOAT_CONTAINERD", containerd.display().to_string()),
                // This machine's containerd lacks CAP_SYS_RESOURCE (runc pods need it).
                ("MOAT_RESTRICT_OOM_SCORE_ADJ", "1".to_string()),
                // The test restarts its own containerd (see the other bed test for PID 1).
                ("MOAT_RESTART_CMD", "echo restart-requested".to_string()),
                ("MOAT_HOST_PID", std::process::id().to_string()),
            ]
        };
        // config.toml and the moat config are in the bed's dir; the bin dir below it.
        let dirs = [layout.dir.as_path()];

        let pod = installer_pod(bed, "imageinstaller")?;
        let log = run_installer(
            &pod,
            "installer",
            &built.image,
            &dirs,
            &env("install"),
            "done; sleeping",
        )?;
        ensure!(log.contains("restart-requested") && log.contains("node ready for moat"), "{log}");
        pod.teardown()?;
        bed.restart_containerd(Duration::from_millis(100))?;
        let moat_pod = bed.run_pod("installedbyimage", "moat")?;
        moat_pod.run("app", &["sleep", "3600"])?;
        moat_pod.teardown()?;

        let pod = installer_pod(bed, "imageuninstaller")?;
        let log = run_installer(
            &pod,
            "uninstaller",
            &built.image,
            &dirs,
            &env("uninstall"),
            "done; sleeping",
        )?;
        ensure!(log.contains("restart-requested"), "{log}");
        pod.teardown()?;
        ensure!(std::fs::read(&layout.config)? == original, "the config is not back:\n{log}");
        bed.restart_containerd(Duration::from_millis(100))?;
        match bed.cri().runp(&bed.pod_config("uninstalledbyimage")?, "moat") {
            Ok(id) => {
                let _ = bed.cri().stopp(&id);
                let _ = bed.cri().rmp(&id);
                bail!("a moat pod ran after uninstall");
            }
            Err(e) => ensure!(format!("{e:#}").contains("moat"), "{e:#}"),
        }
        Ok(())
    });
}
