//! Deploying moat on real nodes (issue 13, "Deploy on real clusters").
//!
//! - `cri_files_work_with_moved_containerd_dirs_and_an_empty_config`: containerd with its
//!   `root` and `state` away from the defaults (as k3s, RKE2 and microk8s move them; here the
//!   bed's private dirs under /tmp/moat-e2e) and a moat config that names none of them: a pod
//!   gets CRI's hostname, hosts, resolv.conf and /dev/shm binds of ITS OWN sandbox, found by
//!   moat from what containerd handed the shim.
//! - `readme_config_on_debians_stock_config_runs_moat_and_runc_pods`: containerd 1.6.20 on
//!   Debian 12's stock `/etc/containerd/config.toml` plus exactly the README's additions (read
//!   out of README.md between its markers, so the two cannot drift), with only root, state,
//!   sockets and CNI/opt/runc dirs moved to the test's private dirs as the bed does: a moat pod
//!   and a runc pod run.
//! - `readme_config_examples_keep_runc_the_default_and_moat_declared`: both README examples
//!   (`version = 2` and `version = 3`) are TOML with `runc` declared and the default and a
//!   `moat` handler; the 2.x one has no `options` table.
//! - `audit_lines_name_created_and_refused_containers`: containerd's log holds one
//!   `moat-audit {json}` line for a container moat started (its pod, level, the host ID range
//!   its /proc/<pid>/uid_map shows, seccomp filters, capabilities) and one for a refused one
//!   (with the rule and field).
//! - `the_last_run_out_removes_the_bridge_and_cgroups`: when a test bed shuts down and no
//!   other run is alive, the `moatbr0` bridge and every `moat-e2e` cgroup directory are gone;
//!   while another run is alive, the bridge it may use stays.
//! - `installer_round_trip_on_scratch_configs`: `deploy/install.sh` on scratch copies of
//!   Debian's stock config, `containerd config default` and the README's complete config:
//!   install merges a handler that `containerd config dump` shows (runc kept the default),
//!   restarts containerd only when the file changed, a second install changes nothing, and
//!   uninstall puts back the original bytes and removes the shim and its records.
//! - `installer_round_trip_on_the_bed`: a private bed on Debian's stock config (no moat):
//!   `deploy/install.sh install`, containerd restarted, a moat and a runc pod run; uninstall,
//!   restarted, the config is the original again and containerd refuses a moat pod for want
//!   of a handler.
//! - `installer_round_trip_on_a_k3s_template`: the same on a scratch k3s `config.toml.tmpl`,
//!   rendered by a stand-in for k3s (the base put where `{{ template "base" . }}` is) at each
//!   "restart": the rendered file passes `containerd config dump` with the handler, and
//!   uninstall gives back the template's bytes.
//! - `runtimeclass_selects_the_label_the_installer_sets`: the RuntimeClass in
//!   deploy/kubernetes and the README's copy select the node label deploy/install.sh sets.
//! - `other_pods_files_stay_denied_when_an_allowed_dir_holds_containerds_dirs`: attack test.
//!   The operator allows a directory that happens to hold containerd's (non-default) root and
//!   state; a pod binds another pod's CRI directory, the snapshots of every image and another
//!   container's bundle from there: each is refused as never allowed, whatever
//!   `allowed_host_paths` says (containerd's root and state are derived and denied).
//!
//! The tests that change containerd's or moat's config run a private bed (their own
//! containerd); the audit test uses the shared one; `check`, the installer on scratch files and
//! the RuntimeClass need none. moat only: what is tested is how moat finds its way on a node.

mod common;

use std::path::{Path, PathBuf};

use anyhow::{anyhow, ensure, Context, Result};
use common::sh;
use moat_e2e::bed::{private_bed_or_panic, test_on_private_bed, test_on_private_bed_with_config};
use moat_e2e::containerd::Layout;
use moat_e2e::moat_config::toml_str;
use moat_e2e::TestBed;

moat_only_tests!(audit_lines_name_created_and_refused_containers);

/// The moat config of a node that says nothing about containerd: only the ID pool's
/// directory is set, because the default (/var/lib/moat/userns) is the host's own pool, which
/// a test must neither write to nor allocate ranges from.
fn empty_moat_config(bed: &TestBed) -> String {
    format!(
        "# no cri_state_dirs, no allowed_host_paths: containerd's dirs are derived\n\
         [userns]\n\
         state_dir = {}\n",
        moat_e2e::moat_config::toml_str(&bed.layout().dir.join("idranges-empty-config"))
    )
}

#[test]
fn cri_files_work_with_moved_containerd_dirs_and_an_empty_config() {
    test_on_private_bed(
        "cri_files_work_with_moved_containerd_dirs_and_an_empty_config",
        "moat",
        "emptyconfig",
        |bed| {
            let layout = bed.layout();
            ensure!(
                !layout.root.starts_with("/var/lib/containerd")
                    && !layout.state.starts_with("/run/containerd"),
                "the bed's containerd must use non-default dirs, it has {} and {}",
                layout.root.display(),
                layout.state.display()
            );
            std::fs::write(&layout.moat_config, empty_moat_config(bed))
                .with_context(|| format!("writing {}", layout.moat_config.display()))?;

            let pod = bed.run_pod("emptyconfig", "moat")?;
            let c = pod.run("app", &["sleep", "3600"])?;
            // CRI binds these four from <root|state>/io.containerd.grpc.v1.cri/sandboxes/<pod>/.
            let mountinfo = sh(&pod, &c, "cat /proc/self/mountinfo")?.stdout;
            for target in ["/etc/hostname", "/etc/hosts", "/etc/resolv.conf", "/dev/shm"] {
                let line = mountinfo
                    .lines()
                    .find(|l| l.split_whitespace().nth(4) == Some(target))
                    .with_context(|| format!("no mount at {target} in:\n{mountinfo}"))?;
                let root = line.split_whitespace().nth(3).unwrap_or("");
                // /dev/shm: CRI's tmpfs named `shm` (mounted at <state>/.../sandboxes/<pod>/shm
                // and bound from there; mountinfo shows the tmpfs's own root).
                let ours = if target == "/dev/shm" {
                    line.contains(" - tmpfs shm ")
                } else {
                    root.contains(&format!("io.containerd.grpc.v1.cri/sandboxes/{}/", pod.id))
                };
                ensure!(ours, "{target} is not this pod's CRI file: {line}");
            }
            let out = sh(&pod, &c, "cat /etc/hostname; echo 10.0.0.1 x >> /etc/hosts && echo HOSTS-RW; echo shm > /dev/shm/probe && cat /dev/shm/probe")?;
            ensure!(
                out.stdout.lines().next() == Some(pod.config.hostname.as_str()),
                "/etc/hostname is not the pod's hostname {:?}: {out:?}",
                pod.config.hostname
            );
            ensure!(
                out.stdout.contains("HOSTS-RW") && out.stdout.contains("shm"),
                "CRI files not usable: {out:?}"
            );
            pod.teardown()
        },
    );
}

/// Debian 12's `/etc/containerd/config.toml` as the `containerd` package (1.6.20~ds1) ships it.
const DEBIAN_STOCK_CONFIG: &str = r#"version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/usr/lib/cni"
      conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.internal.v1.opt"]
    path = "/var/lib/containerd/opt"
"#;

const README: &str = include_str!("../../README.md");

/// The TOML of the README's fenced block between `<!-- {marker}:begin -->` and `:end`,
/// without the list item's indentation.
fn readme_block(marker: &str) -> Result<String> {
    let begin = format!("<!-- {marker}:begin -->");
    let end = format!("<!-- {marker}:end -->");
    let from = README.find(&begin).ok_or_else(|| anyhow!("README.md has no {begin}"))?;
    let to = README[from..].find(&end).ok_or_else(|| anyhow!("README.md has no {end}"))? + from;
    let block = &README[from + begin.len()..to];
    let lines: Vec<&str> = block.lines().collect();
    let fence_start = lines
        .iter()
        .position(|l| l.trim_start().starts_with("```toml"))
        .ok_or_else(|| anyhow!("no ```toml fence after {begin}"))?;
    let fence_end = lines[fence_start + 1..]
        .iter()
        .position(|l| l.trim() == "```")
        .ok_or_else(|| anyhow!("the ```toml fence after {begin} is not closed"))?
        + fence_start
        + 1;
    let indent = lines[fence_start].len() - lines[fence_start].trim_start().len();
    let mut out = String::new();
    for l in &lines[fence_start + 1..fence_end] {
        out.push_str(l.get(indent..).unwrap_or("").trim_end());
        out.push('\n');
    }
    Ok(out)
}

/// `config` without its `# moat: begin` .. `# moat: end` blocks (markers included).
fn without_moat_additions(config: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in config.lines() {
        match line.trim() {
            "# moat: begin" => inside = true,
            "# moat: end" => inside = false,
            _ if !inside => {
                out.push_str(line);
                out.push('\n');
            }
            _ => {}
        }
    }
    out
}

/// Replaces the one occurrence of `from` in `text` by `to`.
fn replace_once(text: &str, from: &str, to: &str) -> Result<String> {
    ensure!(text.matches(from).count() == 1, "expected one {from:?} in:\n{text}");
    Ok(text.replacen(from, to, 1))
}

/// The README's complete 1.6/1.7 config with the node's paths moved into the bed's private
/// dirs (as the bed's own config does), the locally built pause image, and a private runc root.
fn redirected(config: &str, layout: &Layout) -> Result<String> {
    let mut c = redirected_node_paths(config, layout)?;
    c = replace_once(
        &c,
        r#"ConfigPath = "/etc/moat/config.toml""#,
        &format!("ConfigPath = {}", toml_str(&layout.moat_config)),
    )?;
    c.push_str(&format!(
        "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n  Root = {}\n",
        toml_str(&layout.runc_root),
    ));
    Ok(c)
}

/// `config`'s node paths moved into the bed's private dirs (root, state, sockets, CNI, opt)
/// and the locally built pause image: what any config needs to run on the test bed.
fn redirected_node_paths(config: &str, layout: &Layout) -> Result<String> {
    let cri = r#"[plugins."io.containerd.grpc.v1.cri"]"#;
    let mut c = replace_once(
        config,
        "version = 2\n",
        &format!(
            "version = 2\nroot = {}\nstate = {}\n",
            toml_str(&layout.root),
            toml_str(&layout.state)
        ),
    )?;
    c = replace_once(
        &c,
        &format!("{cri}\n"),
        &format!("{cri}\n    sandbox_image = \"{}\"\n", moat_e2e::PAUSE),
    )?;
    c = replace_once(
        &c,
        r#"conf_dir = "/etc/cni/net.d""#,
        &format!("conf_dir = {}", toml_str(&layout.cni_conf_dir)),
    )?;
    c = replace_once(
        &c,
        r#"path = "/var/lib/containerd/opt""#,
        &format!("path = {}", toml_str(&layout.dir.join("opt"))),
    )?;
    c.push_str(&format!(
        "\n[grpc]\n  address = {}\n[ttrpc]\n  address = {}\n",
        toml_str(&layout.socket),
        toml_str(&layout.dir.join("c.sock.ttrpc")),
    ));
    Ok(c)
}

#[test]
fn readme_config_on_debians_stock_config_runs_moat_and_runc_pods() {
    let readme = match readme_block("moat-containerd-config-v2") {
        Ok(text) => text,
        Err(e) => panic!("{e:#}"),
    };
    // The README's file is Debian's stock file plus its marked additions, nothing else.
    assert_eq!(
        without_moat_additions(&readme),
        DEBIAN_STOCK_CONFIG,
        "README's version = 2 example minus its `# moat` blocks is not Debian's stock config"
    );
    test_on_private_bed_with_config(
        "readme_config_on_debians_stock_config_runs_moat_and_runc_pods",
        "moat",
        "readmeconfig",
        |layout| Some(redirected(&readme, layout).unwrap_or_else(|e| panic!("{e:#}"))),
        |bed| {
            let shown = std::fs::read_to_string(&bed.layout().config).unwrap_or_default();
            for handler in ["moat", "runc"] {
                let pod = bed
                    .run_pod(&format!("readme-{handler}"), handler)
                    .with_context(|| format!("containerd config:\n{shown}"))?;
                let c = pod.run("app", &["sleep", "3600"])?;
                let out = sh(&pod, &c, "cat /proc/self/uid_map")?;
                let map = common::parse_id_map(&out.stdout)?;
                match handler {
                    "moat" => ensure!(map.1 != 0, "moat pod without its user namespace: {map:?}"),
                    _ => ensure!(map == (0, 0, 4_294_967_295), "runc pod: {map:?}"),
                }
                pod.teardown()?;
            }
            Ok(())
        },
    );
}

#[test]
fn readme_config_examples_keep_runc_the_default_and_moat_declared() {
    for (marker, cri_plugin, moat_options) in [
        ("moat-containerd-config-v2", "io.containerd.grpc.v1.cri", true),
        ("moat-containerd-config-v3", "io.containerd.cri.v1.runtime", false),
    ] {
        let text = readme_block(marker).unwrap_or_else(|e| panic!("{e:#}"));
        let config: toml::Table =
            text.parse().unwrap_or_else(|e| panic!("{marker} is not TOML: {e}\n{text}"));
        let get = |path: &[&str]| -> Option<toml::Value> {
            let mut v = toml::Value::Table(config.clone());
            for key in path {
                v = v.get(*key)?.clone();
            }
            Some(v)
        };
        let cri = ["plugins", cri_plugin];
        let containerd = [&cri[..], &["containerd"]].concat();
        assert_eq!(
            get(&[&containerd[..], &["default_runtime_name"]].concat())
                .and_then(|v| v.as_str().map(String::from)),
            Some("runc".to_string()),
            "{marker}"
        );
        for (handler, runtime_type) in
            [("runc", "io.containerd.runc.v2"), ("moat", "io.containerd.moat.v2")]
        {
            assert_eq!(
                get(&[&containerd[..], &["runtimes", handler, "runtime_type"]].concat())
                    .and_then(|v| v.as_str().map(String::from)),
                Some(runtime_type.to_string()),
                "{marker}: runtimes.{handler}"
            );
        }
        assert_eq!(
            get(&[&cri[..], &["restrict_oom_score_adj"]].concat()).and_then(|v| v.as_bool()),
            Some(true),
            "{marker}"
        );
        assert_eq!(
            get(&[&containerd[..], &["runtimes", "moat", "options"]].concat()).is_some(),
            moat_options,
            "{marker}: the moat handler's options table"
        );
    }
    let v3 = readme_block("moat-containerd-config-v3").unwrap_or_else(|e| panic!("{e:#}"));
    assert!(v3.starts_with("version = 3\n"), "{v3}");
}

/// Runs `containerd-shim-moat-v2 check ARGS`; (exit code, stdout).
fn run_check(args: &[&std::ffi::OsStr]) -> Result<(i32, String)> {
    let shim = moat_e2e::paths::shim_binary().ok_or_else(|| anyhow!("no moat shim binary"))?;
    let out = std::process::Command::new(&shim)
        .arg("check")
        .args(args)
        .output()
        .with_context(|| format!("running {} check", shim.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    Ok((out.status.code().unwrap_or(-1), stdout))
}

/// The line of `output` for requirement `name`.
fn check_line<'a>(output: &'a str, name: &str) -> Result<&'a str> {
    output
        .lines()
        .find(|l| l.get(8..).is_some_and(|rest| rest.starts_with(&format!("{name}:"))))
        .ok_or_else(|| anyhow!("`check` printed no line for {name}:\n{output}"))
}

#[test]
fn check_reports_what_this_machine_has() {
    let test = "check_reports_what_this_machine_has";
    moat_e2e::run_in_scratch_dir(test, "moat", "check", |dir| {
        // The README's complete 1.6/1.7 config: every line ok, exit 0.
        let moat_config = baseline_moat_config(dir)?;
        let good = dir.join("good.toml");
        let readme = readme_block("moat-containerd-config-v2")?;
        std::fs::write(
            &good,
            replace_once(
                &readme,
                r#"ConfigPath = "/etc/moat/config.toml""#,
                &format!("ConfigPath = {}", toml_str(&moat_config)),
            )?,
        )?;
        let (code, out) = run_check(&["--config".as_ref(), good.as_os_str()])?;
        // What this machine has (docs: /work/shared/notes/environment.md): user namespaces for
        // root, idmapped mounts with overlayfs over them, hybrid cgroups with v1 controllers,
        // seccomp filters with user notification, containerd 1.6.20.
        for (name, expected) in [
            ("user namespaces", "ok      user namespaces: created one with a mapping"),
            ("idmapped mounts on overlayfs", "ok      idmapped mounts on overlayfs: overlay over"),
            (
                "cgroups",
                "ok      cgroups: hybrid (v1 controllers + v2); cpu, memory, pids, devices",
            ),
            ("seccomp filters", "ok      seccomp filters: actions: "),
            ("seccomp user notification", "ok      seccomp user notification: available"),
            ("containerd version", "ok      containerd version: 1.6 "),
            ("containerd config: moat handler", "ok      containerd config: moat handler: "),
            ("moat config", "ok      moat config: /tmp/moat-e2e-check-"),
        ] {
            let line = check_line(&out, name)?;
            ensure!(line.starts_with(expected), "expected {expected:?}, got {line:?}\n{out}");
        }
        ensure!(code == 0 && out.contains("node ready for moat"), "exit {code}:\n{out}");

        // Debian's stock config: the handler is missing, with the fix; exit 1.
        let stock = dir.join("stock.toml");
        std::fs::write(&stock, DEBIAN_STOCK_CONFIG)?;
        let (code, out) = run_check(&["--config".as_ref(), stock.as_os_str()])?;
        let line = check_line(&out, "containerd config: moat handler")?;
        ensure!(line.starts_with("missing ") && line.contains("runtimes.moat"), "{line}\n{out}");
        ensure!(out.contains("fix: see README.md"), "no fix printed:\n{out}");
        ensure!(code == 1, "exit {code} with a missing requirement:\n{out}");

        // A containerd that is not there: missing, exit 1.
        let (code, out) = run_check(&[
            "--config".as_ref(),
            good.as_os_str(),
            "--containerd".as_ref(),
            "/nonexistent/containerd".as_ref(),
        ])?;
        ensure!(check_line(&out, "containerd version")?.starts_with("missing "), "{out}");
        ensure!(code == 1, "exit {code}:\n{out}");

        // A handler whose ConfigPath names a file that is not there: moat would refuse every pod.
        let absent = dir.join("absent.toml");
        std::fs::write(
            &absent,
            replace_once(
                &readme,
                r#"ConfigPath = "/etc/moat/config.toml""#,
                &format!("ConfigPath = {}", toml_str(&dir.join("no-such-moat.toml"))),
            )?,
        )?;
        let (code, out) = run_check(&["--config".as_ref(), absent.as_os_str()])?;
        let line = check_line(&out, "moat config")?;
        ensure!(line.starts_with("missing ") && line.contains("no-such-moat.toml"), "{out}");
        ensure!(code == 1, "exit {code}:\n{out}");
        Ok(())
    });
}

/// The `moat-audit` JSON objects in containerd's log for `container`.
fn audit_records(bed: &TestBed, container: &str) -> Result<Vec<serde_json::Value>> {
    let log = std::fs::read_to_string(&bed.layout().log)
        .with_context(|| format!("reading {}", bed.layout().log.display()))?;
    let mut out = Vec::new();
    for line in log.lines().filter(|l| l.contains("moat-audit {")) {
        let (Some(from), Some(to)) = (line.find('{'), line.rfind('}')) else { continue };
        let value: serde_json::Value = serde_json::from_str(&line[from..=to])
            .with_context(|| format!("a moat-audit line that is not JSON: {line}"))?;
        if value["container"] == container {
            out.push(value);
        }
    }
    Ok(out)
}

fn audit_lines_name_created_and_refused_containers(bed: &TestBed, _handler: &str) -> Result<()> {
    let pod = bed.run_pod("audit", "moat")?;
    let c = pod.run("app", &["sleep", "3600"])?;
    let pid = pod.container_pid(&c)?;
    let (_, host_uid, count) = common::uid_map(pid)?;

    let records = audit_records(bed, &c.id)?;
    ensure!(records.len() == 1, "expected one audit line for {}, got {records:?}", c.id);
    let r = &records[0];
    ensure!(r["event"] == "created", "{r}");
    ensure!(r["pod"] == pod.id.as_str(), "{r}");
    ensure!(r["pod_name"] == format!("moat-e2e/{}", pod.name).as_str(), "{r}");
    ensure!(r["container_name"] == "app" && r["level"] == "baseline", "{r}");
    ensure!(
        r["host_uid_ranges"] == serde_json::json!([[host_uid, host_uid + count - 1]]),
        "the audit line's range is not the container's uid_map ({host_uid} {count}): {r}"
    );
    ensure!(r["seccomp"].as_str().is_some_and(|s| s.starts_with("baseline")), "{r}");
    let effective = r["capabilities"]["effective"].as_array().cloned().unwrap_or_default();
    ensure!(!effective.is_empty(), "no effective capabilities listed: {r}");
    ensure!(!effective.iter().any(|c| c == "CAP_SYS_ADMIN"), "{r}");

    // A container binding the host's /etc: refused, and audited with the rule.
    let mut config = pod.container_config("hostetc", &["sleep", "3600"]);
    config.mounts.push(moat_e2e::configs::volume(std::path::Path::new("/etc"), "/data", true));
    let refused = bed.cri().create(&pod.id, &config, &pod.config);
    let refused_id = match refused {
        Ok(id) => {
            // containerd 1.6 creates the task (where moat decides) at StartContainer.
            ensure!(bed.cri().start(&id).is_err(), "the container binding /etc started");
            id
        }
        Err(_) => String::new(),
    };
    let log = std::fs::read_to_string(&bed.layout().log)?;
    let refusal = log
        .lines()
        .rev()
        .filter(|l| l.contains("moat-audit {") && l.contains("\"event\":\"refused\""))
        .filter(|l| refused_id.is_empty() || l.contains(&refused_id))
        .find(|l| l.contains(&pod.id))
        .ok_or_else(|| anyhow!("no refused audit line for pod {}", pod.id))?;
    let (from, to) = (refusal.find('{').unwrap_or(0), refusal.rfind('}').unwrap_or(0));
    let r: serde_json::Value = serde_json::from_str(&refusal[from..=to])?;
    ensure!(r["rule"] == "host-path" && r["container_name"] == "hostetc", "{r}");
    ensure!(r["field"].as_str().is_some_and(|f| f.ends_with("].source=/etc")), "{r}");
    ensure!(r["host_uid_ranges"] == serde_json::json!([[host_uid, host_uid + count - 1]]), "{r}");
    pod.teardown()
}

#[test]
fn the_last_run_out_removes_the_bridge_and_cgroups() {
    use moat_e2e::containerd::{live_runs_besides, CNI_BRIDGE};
    let test = "the_last_run_out_removes_the_bridge_and_cgroups";
    let Some(bed) = private_bed_or_panic(test, "moat", "lastout") else {
        return;
    };
    let bridge = std::path::Path::new("/sys/class/net").join(CNI_BRIDGE);
    let dir = bed.layout().dir.clone();
    let ran = (|| -> Result<()> {
        let pod = bed.run_pod("lastout", "moat")?;
        pod.run("app", &["sleep", "3600"])?;
        ensure!(bridge.exists(), "a pod ran but there is no {CNI_BRIDGE}");
        pod.teardown()
    })();
    bed.shutdown();
    if let Err(e) = ran {
        panic!("{test}: {e:#}");
    }
    let cgroup_dirs: Vec<_> = moat_e2e::host::cgroup_roots()
        .into_iter()
        .map(|root| root.join("moat-e2e"))
        .filter(|d| d.exists())
        .collect();
    if live_runs_besides(&[&dir]) {
        // Another run (of this or another test process) is alive: what it shares stays.
        assert!(bridge.exists(), "{test}: {CNI_BRIDGE} was removed under a live run");
        eprintln!("{test}: another run is alive; checked only that the bridge stayed");
    } else {
        assert!(!bridge.exists(), "{test}: the last run out left {CNI_BRIDGE}");
        assert!(cgroup_dirs.is_empty(), "{test}: the last run out left {cgroup_dirs:?}");
        for left in
            ["/tmp/moat-e2e", moat_e2e::containerd::SHARED_LOCK, "/var/lib/cni/networks/moat-e2e"]
        {
            assert!(!std::path::Path::new(left).exists(), "{test}: the last run out left {left}");
        }
    }
}

/// Runs `deploy/install.sh VERB ARGS`; (success, stdout + stderr).
fn installer(verb: &str, args: &[String]) -> Result<(bool, String)> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/install.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .arg(verb)
        .args(args)
        .output()
        .with_context(|| format!("running {} {verb}", script.display()))?;
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    Ok((out.status.success(), text))
}

/// `deploy/install.sh`'s arguments naming containerd's config, the shim, the directory the
/// shim goes to and the moat config, followed by `more`.
fn installer_args(
    config: &Path,
    shim: &Path,
    bin_dir: &Path,
    moat_config: &Path,
    more: &[String],
) -> Vec<String> {
    let mut args: Vec<String> = vec![
        "--config".into(),
        config.display().to_string(),
        "--shim".into(),
        shim.display().to_string(),
        "--bin-dir".into(),
        bin_dir.display().to_string(),
        "--moat-config".into(),
        moat_config.display().to_string(),
    ];
    args.extend_from_slice(more);
    args
}

/// `dir/moat.toml`, a moat config of one line (`level = "baseline"`).
fn baseline_moat_config(dir: &Path) -> Result<PathBuf> {
    let file = dir.join("moat.toml");
    std::fs::write(&file, "level = \"baseline\"\n")
        .with_context(|| format!("writing {}", file.display()))?;
    Ok(file)
}

/// `containerd --config FILE config dump`, parsed.
fn config_dump(file: &std::path::Path) -> Result<toml::Table> {
    let out = std::process::Command::new(moat_e2e::paths::containerd_binary())
        .arg("--config")
        .arg(file)
        .args(["config", "dump"])
        .output()
        .context("running containerd config dump")?;
    ensure!(
        out.status.success(),
        "containerd refuses {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).parse().context("config dump is not TOML")
}

#[test]
fn installer_round_trip_on_scratch_configs() {
    let test = "installer_round_trip_on_scratch_configs";
    moat_e2e::run_in_scratch_dir(test, "moat", "installer", |dir| {
        let shim = moat_e2e::paths::shim_binary().ok_or_else(|| anyhow!("no moat shim"))?;
        let moat_config = baseline_moat_config(dir)?;
        let default = std::process::Command::new(moat_e2e::paths::containerd_binary())
            .args(["config", "default"])
            .output()
            .context("containerd config default")?;
        let configs = [
            ("debian-stock", DEBIAN_STOCK_CONFIG.to_string(), true),
            ("config-default", String::from_utf8_lossy(&default.stdout).into_owned(), true),
            // The README's file with its ConfigPath pointed at a moat config that exists.
            (
                "readme",
                replace_once(
                    &readme_block("moat-containerd-config-v2")?,
                    r#"ConfigPath = "/etc/moat/config.toml""#,
                    &format!("ConfigPath = {}", toml_str(&moat_config)),
                )?,
                false,
            ),
        ];
        for (name, original, changes) in configs {
            let file = dir.join(format!("{name}.toml"));
            let bin = dir.join(format!("{name}-bin"));
            let restarted = dir.join(format!("{name}.restarted"));
            std::fs::write(&file, &original)?;
            let args = installer_args(
                &file,
                &shim,
                &bin,
                &moat_config,
                &[
                    "--containerd".into(),
                    moat_e2e::paths::containerd_binary().display().to_string(),
                    "--restart-cmd".into(),
                    format!("touch {}", restarted.display()),
                ],
            );
            let (ok, out) = installer("install", &args)?;
            ensure!(ok, "{name}: install failed:\n{out}");
            ensure!(out.contains("node ready for moat"), "{name}: check did not pass:\n{out}");
            ensure!(bin.join("containerd-shim-moat-v2").is_file(), "{name}: no shim installed");
            ensure!(restarted.exists() == changes, "{name}: restarted {}", restarted.exists());
            let dump = config_dump(&file)?;
            let cri = &dump["plugins"]["io.containerd.grpc.v1.cri"]["containerd"];
            ensure!(
                cri["runtimes"]["moat"]["runtime_type"].as_str() == Some("io.containerd.moat.v2"),
                "{name}: no moat handler in config dump"
            );
            ensure!(cri["default_runtime_name"].as_str() == Some("runc"), "{name}: default");
            ensure!(cri["runtimes"].get("runc").is_some(), "{name}: runc not declared");

            // Again: nothing changes, no restart.
            let _ = std::fs::remove_file(&restarted);
            let before = std::fs::read(&file)?;
            let (ok, out) = installer("install", &args)?;
            ensure!(ok, "{name}: second install failed:\n{out}");
            ensure!(!restarted.exists(), "{name}: the second install restarted containerd");
            ensure!(std::fs::read(&file)? == before, "{name}: the second install changed it");

            let (ok, out) = installer("uninstall", &args)?;
            ensure!(ok, "{name}: uninstall failed:\n{out}");
            ensure!(
                std::fs::read_to_string(&file)? == original,
                "{name}: uninstall did not restore the original config"
            );
            ensure!(!bin.join("containerd-shim-moat-v2").exists(), "{name}: shim left");
            let left: Vec<_> = std::fs::read_dir(dir)?
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(name) && n.contains(".moat-"))
                .collect();
            ensure!(left.is_empty(), "{name}: installer records left: {left:?}");
        }

        // A node that fails the check (the handler's ConfigPath names no file): install says
        // so, exits non-zero and does not label the node.
        let file = dir.join("failing.toml");
        std::fs::write(&file, DEBIAN_STOCK_CONFIG)?;
        let args = installer_args(
            &file,
            &shim,
            &dir.join("failing-bin"),
            &dir.join("no-such-moat.toml"),
            &["--restart-cmd".into(), String::new()],
        );
        let (ok, out) = installer("install", &args)?;
        ensure!(!ok && out.contains("is not labelled moat.io/runtime=ready"), "{out}");
        ensure!(out.contains("missing moat config"), "{out}");
        let (ok, out) = installer("uninstall", &args)?;
        ensure!(ok && std::fs::read_to_string(&file)? == DEBIAN_STOCK_CONFIG, "{out}");
        Ok(())
    });
}

#[test]
fn installer_round_trip_on_the_bed() {
    let test = "installer_round_trip_on_the_bed";
    test_on_private_bed_with_config(
        test,
        "moat",
        "installer",
        |layout| {
            Some(
                redirected_node_paths(DEBIAN_STOCK_CONFIG, layout)
                    .unwrap_or_else(|e| panic!("{e:#}")),
            )
        },
        |bed| {
            let layout = bed.layout();
            let original = std::fs::read_to_string(&layout.config)?;
            let shim = bed.shim().ok_or_else(|| anyhow!("no moat shim"))?;
            let args = installer_args(
                &layout.config,
                shim,
                &layout.bin_dir,
                &layout.moat_config,
                &[
                    // This machine's containerd lacks CAP_SYS_RESOURCE (runc pods need it).
                    "--restrict-oom-score-adj".into(),
                    // The test restarts its own containerd.
                    "--restart-cmd".into(),
                    "echo restart-requested".into(),
                ],
            );
            let (ok, out) = installer("install", &args)?;
            ensure!(ok && out.contains("restart-requested"), "install:\n{out}");
            bed.restart_containerd(std::time::Duration::from_millis(100))?;
            for handler in ["moat", "runc"] {
                let pod = bed.run_pod(&format!("installed-{handler}"), handler)?;
                pod.run("app", &["sleep", "3600"])?;
                pod.teardown()?;
            }

            let (ok, out) = installer("uninstall", &args)?;
            ensure!(ok && out.contains("restart-requested"), "uninstall:\n{out}");
            ensure!(
                std::fs::read_to_string(&layout.config)? == original,
                "uninstall did not restore containerd's config"
            );
            bed.restart_containerd(std::time::Duration::from_millis(100))?;
            match bed.cri().runp(&bed.pod_config("uninstalled")?, "moat") {
                Ok(id) => {
                    let _ = bed.cri().stopp(&id);
                    let _ = bed.cri().rmp(&id);
                    anyhow::bail!("a moat pod ran after uninstall");
                }
                Err(e) => ensure!(format!("{e:#}").contains("moat"), "{e:#}"),
            }
            Ok(())
        },
    );
}

#[test]
fn installer_round_trip_on_a_k3s_template() {
    let test = "installer_round_trip_on_a_k3s_template";
    moat_e2e::run_in_scratch_dir(test, "moat", "k3s", |dir| {
        let shim = moat_e2e::paths::shim_binary().ok_or_else(|| anyhow!("no moat shim"))?;
        let moat_config = baseline_moat_config(dir)?;
        // k3s's base declares runc (k3s writes it with its options); a stand-in base.
        std::fs::write(
            dir.join("base.toml"),
            format!(
                "{DEBIAN_STOCK_CONFIG}[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n"
            ),
        )?;
        let template = dir.join("config.toml.tmpl");
        let original = "{{ template \"base\" . }}\n";
        std::fs::write(&template, original)?;
        // What k3s does at start: render config.toml from the template.
        let render = dir.join("render.sh");
        std::fs::write(
            &render,
            "d=\"$(dirname \"$0\")\"\n\
             awk -v base=\"$d/base.toml\" '$0 == \"{{ template \\\"base\\\" . }}\" \
             { while ((getline l < base) > 0) print l; next } { print }' \
             \"$d/config.toml.tmpl\" > \"$d/config.toml\"\n",
        )?;
        let restart = format!("bash {}", render.display());
        std::process::Command::new("bash").arg(&render).status()?;
        let args = installer_args(
            &template,
            &shim,
            &dir.join("bin"),
            &moat_config,
            &["--restart-cmd".into(), restart],
        );
        let (ok, out) = installer("install", &args)?;
        ensure!(ok && out.contains("node ready for moat"), "install:\n{out}");
        let merged = std::fs::read_to_string(&template)?;
        ensure!(merged.starts_with(original), "the template lost its base line:\n{merged}");
        let dump = config_dump(&dir.join("config.toml"))?;
        let runtimes = &dump["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"];
        ensure!(
            runtimes["moat"]["runtime_type"].as_str() == Some("io.containerd.moat.v2")
                && runtimes.get("runc").is_some(),
            "rendered config without moat or runc:\n{merged}"
        );
        let (ok, out) = installer("install", &args)?;
        ensure!(ok && out.contains("already has the moat handler"), "second install:\n{out}");
        let (ok, out) = installer("uninstall", &args)?;
        ensure!(ok, "uninstall:\n{out}");
        ensure!(std::fs::read_to_string(&template)? == original, "template not restored");
        let dump = config_dump(&dir.join("config.toml"))?;
        let runtimes = &dump["plugins"]["io.containerd.grpc.v1.cri"]["containerd"]["runtimes"];
        ensure!(runtimes.get("moat").is_none(), "moat still rendered after uninstall");
        Ok(())
    });
}

#[test]
fn runtimeclass_selects_the_label_the_installer_sets() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let script = std::fs::read_to_string(root.join("deploy/install.sh")).expect("install.sh");
    let class = std::fs::read_to_string(root.join("deploy/kubernetes/runtimeclass.yaml"))
        .expect("runtimeclass.yaml");
    // The installer: `label=moat.io/runtime` and `label_node "$label=ready"`.
    assert!(script.contains("label=moat.io/runtime\n"), "the installer's label changed");
    assert!(script.contains("label_node \"$label=ready\""), "the installer's value changed");
    for text in [class.as_str(), README] {
        let yaml: Vec<&str> = text.lines().map(str::trim).collect();
        let at = yaml.iter().position(|l| *l == "kind: RuntimeClass").expect("a RuntimeClass");
        let rest = &yaml[at..];
        assert!(rest.contains(&"handler: moat"), "no moat handler");
        let selector = rest.iter().position(|l| *l == "nodeSelector:").expect("nodeSelector");
        assert_eq!(rest[selector + 1], "moat.io/runtime: ready");
        let overhead = rest.iter().position(|l| *l == "podFixed:").expect("overhead");
        assert!(rest[overhead + 1].starts_with("memory: "), "{}", rest[overhead + 1]);
    }
}

#[test]
fn other_pods_files_stay_denied_when_an_allowed_dir_holds_containerds_dirs() {
    test_on_private_bed(
        "other_pods_files_stay_denied_when_an_allowed_dir_holds_containerds_dirs",
        "moat",
        "allowedparent",
        |bed| {
            let layout = bed.layout();
            // Input: allowed_host_paths names the directory holding containerd's root and state
            // (cri_state_dirs names the CRI directories, as the operator of an older moat had
            // to: the other pods' CRI files were denied, the rest of root and state was not).
            std::fs::write(
                &layout.moat_config,
                format!(
                    "allowed_host_paths = [{}]\ncri_state_dirs = [{}, {}]\n\
                     [userns]\nstate_dir = {}\n",
                    toml_str(&layout.dir),
                    toml_str(&layout.root.join("io.containerd.grpc.v1.cri")),
                    toml_str(&layout.state.join("io.containerd.grpc.v1.cri")),
                    toml_str(&layout.dir.join("idranges-allowedparent"))
                ),
            )?;
            let victim = bed.run_pod("victim", "moat")?;
            let victim_c = victim.run("app", &["sleep", "3600"])?;
            let attacker = bed.run_pod("attacker", "moat")?;
            let targets = [
                layout.root.join("io.containerd.grpc.v1.cri/sandboxes").join(&victim.id),
                layout.root.join("io.containerd.snapshotter.v1.overlayfs"),
                layout.state.join("io.containerd.runtime.v2.task/k8s.io").join(&victim_c.id),
            ];
            for (i, target) in targets.iter().enumerate() {
                ensure!(target.exists(), "{} does not exist", target.display());
                let mut config =
                    attacker.container_config(&format!("steal{i}"), &["sleep", "3600"]);
                config.mounts.push(moat_e2e::configs::volume(target, "/stolen", true));
                let outcome = attacker.create(&config).and_then(|c| {
                    attacker.start(&c)?;
                    Ok(c)
                });
                match outcome {
                    Ok(c) => {
                        let seen = sh(&attacker, &c, "ls /stolen | head -5")?;
                        anyhow::bail!(
                            "the attacker's container started with {} bound; it sees {:?}",
                            target.display(),
                            seen.stdout
                        );
                    }
                    Err(e) => {
                        let msg = format!("{e:#}");
                        ensure!(
                            msg.contains("are never allowed")
                                && msg.contains(&*target.to_string_lossy()),
                            "refused, but not as never allowed naming {}: {msg}",
                            target.display()
                        );
                    }
                }
            }
            attacker.teardown()?;
            victim.teardown()
        },
    );
}
