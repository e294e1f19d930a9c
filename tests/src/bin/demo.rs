//! The README demo: a private containerd with the moat handler, one pod whose busybox
//! container prints who it is (`id`, its uid_map, its hostname), then everything removed.
//!
//!   demo [HANDLER]    (default: moat; `runc` for comparison)

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

fn main() -> Result<()> {
    let handler = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "moat".to_string());
    let missing = moat_e2e::prereq::missing(&handler);
    if !missing.is_empty() {
        bail!(
            "cannot run the demo with handler {handler}: {}",
            missing.join("; ")
        );
    }

    let t = Instant::now();
    let bed = moat_e2e::bed("demo", &handler).context("the test bed is unavailable")?;
    println!(
        "containerd {} up with the test images in {:?}",
        bed.layout().socket.display(),
        t.elapsed()
    );
    if let Some(shim) = bed.shim() {
        println!("moat shim: {}", shim.display());
    }

    let t = Instant::now();
    let pod = bed.run_pod("demo", &handler)?;
    println!(
        "pod {} ({}) running with handler {handler} in {:?}",
        pod.name,
        &pod.id[..12],
        t.elapsed()
    );
    let t = Instant::now();
    let c = pod.run(
        "whoami",
        &["sh", "-c", "id; cat /proc/self/uid_map; hostname"],
    )?;
    let status = pod.wait_exited(&c, Duration::from_secs(30))?;
    println!(
        "container {} ran and exited {} in {:?}; its log:",
        c.name,
        status.exit_code,
        t.elapsed()
    );
    for line in pod.wait_for_log(&c, Duration::from_secs(5), |l| l.len() >= 3)? {
        println!("  [{}] {}", line.stream, line.text);
    }

    let t = Instant::now();
    pod.teardown()?;
    println!("pod stopped and removed in {:?}", t.elapsed());
    bed.shutdown();
    println!("containerd stopped, its files removed");
    if status.exit_code != 0 {
        bail!("the demo container exited {}", status.exit_code);
    }
    Ok(())
}
