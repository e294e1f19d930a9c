//! `containerd-shim-moat-v2 audit <pod id> [--config FILE]`: prints the pod's denial counters
//! (what `moat_sandbox::audit` recorded under `[audit] state_dir`).

use std::path::PathBuf;

use moat_sandbox::policy::Config;

/// Runs the command with the arguments after `audit`; returns the exit code.
pub fn run(args: &[String]) -> i32 {
    match counters(args) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(message) => {
            eprintln!("containerd-shim-moat-v2 audit: {message}");
            2
        }
    }
}

fn counters(args: &[String]) -> Result<String, String> {
    let mut pod = None;
    let mut config_path = None;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--config" => {
                let path = it.next().ok_or("--config needs a file")?;
                config_path = Some(PathBuf::from(path));
            }
            _ if pod.is_none() && !arg.starts_with('-') => pod = Some(arg.clone()),
            _ => {
                return Err(format!(
                    "unexpected argument {arg:?} (usage: audit <pod id> [--config FILE])"
                ))
            }
        }
    }
    let pod = pod.ok_or("usage: audit <pod id> [--config FILE]")?;
    let config = Config::load(config_path.as_deref()).map_err(|e| e.to_string())?;
    let counts = moat_sandbox::audit::read_counts(&config.audit.state_dir, &pod)
        .map_err(|e| e.to_string())?;
    Ok(counts.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_a_pods_counters_and_names_bad_input() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("config.toml");
        let state = dir.path().join("audit");
        std::fs::write(
            &config,
            format!("[audit]\nstate_dir = {:?}\n", state.display().to_string()),
        )
        .expect("config");
        let pod = moat_sandbox::audit::PodAudit::new(&state, "p1").expect("audit");
        pod.record(&moat_sandbox::audit::Denial {
            pod: "p1".into(),
            container: "c".into(),
            pid: 7,
            syscall: "keyctl".into(),
            args: [0; 3],
            errno: "EPERM",
        });
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let cfg = config.display().to_string();
        let out = counters(&args(&["p1", "--config", &cfg])).expect("counters");
        assert!(out.contains("1 refused") && out.contains("keyctl"), "{out}");
        let none = counters(&args(&["p2", "--config", &cfg])).expect("no counters yet");
        assert!(none.contains("0 refused"), "{none}");
        let bad = counters(&args(&["../etc", "--config", &cfg])).expect_err("bad pod id");
        assert!(bad.contains("../etc"), "{bad}");
        assert!(counters(&args(&[])).expect_err("no pod").contains("usage"));
        assert!(counters(&args(&["p1", "--config"])).expect_err("no file").contains("--config"));
    }
}
