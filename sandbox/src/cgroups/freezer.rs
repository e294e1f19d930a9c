//! Freezing and thawing a cgroup: v1 `freezer.state` where the freezer controller is mounted,
//! otherwise v2 `cgroup.freeze` (core in v2, so hybrid's unified directory has it too).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{fsio, Cgroup, CgroupError};

const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezerState {
    Thawed,
    /// Asked to freeze, not every task stopped yet.
    Freezing,
    Frozen,
}

enum Freezer {
    V1(PathBuf),
    V2(PathBuf),
}

impl Cgroup {
    fn freezer(&self) -> Result<Freezer, CgroupError> {
        if let Some(dir) = self.v1_dir("freezer") {
            return Ok(Freezer::V1(dir.to_path_buf()));
        }
        match self.v2_dir() {
            Some(dir) if dir.join("cgroup.freeze").exists() || !dir.exists() => {
                Ok(Freezer::V2(dir.to_path_buf()))
            }
            _ => {
                Err(CgroupError::Unsupported { path: self.path(), what: "a cgroup freezer".into() })
            }
        }
    }

    /// Stops every process of the cgroup; returns once the kernel reports the cgroup frozen.
    pub fn freeze(&self) -> Result<(), CgroupError> {
        match self.freezer()? {
            Freezer::V1(dir) => set_v1(&dir, "FROZEN"),
            Freezer::V2(dir) => set_v2(&dir, true),
        }
    }

    /// Lets the processes run again; returns once the kernel reports the cgroup thawed.
    pub fn thaw(&self) -> Result<(), CgroupError> {
        match self.freezer()? {
            Freezer::V1(dir) => set_v1(&dir, "THAWED"),
            Freezer::V2(dir) => set_v2(&dir, false),
        }
    }

    pub fn freezer_state(&self) -> Result<FreezerState, CgroupError> {
        match self.freezer()? {
            Freezer::V1(dir) => {
                let path = dir.join("freezer.state");
                let s = fsio::read(&path)?;
                parse_v1_state(s.trim()).ok_or_else(|| CgroupError::Parse {
                    path,
                    content: fsio::truncate(s.trim()),
                    reason: "expected THAWED, FREEZING or FROZEN",
                })
            }
            Freezer::V2(dir) => {
                let wanted = fsio::read(&dir.join("cgroup.freeze"))?.trim() == "1";
                let frozen = v2_frozen(&dir)?;
                Ok(match (wanted, frozen) {
                    (_, true) => FreezerState::Frozen,
                    (true, false) => FreezerState::Freezing,
                    (false, false) => FreezerState::Thawed,
                })
            }
        }
    }
}

pub(crate) fn parse_v1_state(s: &str) -> Option<FreezerState> {
    match s {
        "THAWED" => Some(FreezerState::Thawed),
        "FREEZING" => Some(FreezerState::Freezing),
        "FROZEN" => Some(FreezerState::Frozen),
        _ => None,
    }
}

/// Writes the wanted v1 state and polls freezer.state until it reads back. Freezing can stall
/// on a task in an uninterruptible sleep: the request is re-written now and then, and on
/// timeout the cgroup is thawed again and an error returned.
fn set_v1(dir: &Path, wanted: &str) -> Result<(), CgroupError> {
    let path = dir.join("freezer.state");
    let start = Instant::now();
    let mut i: u32 = 0;
    loop {
        if i.is_multiple_of(20) {
            fsio::write(&path, wanted)?;
        }
        if fsio::read(&path)?.trim() == wanted {
            return Ok(());
        }
        if start.elapsed() > FREEZE_TIMEOUT {
            if wanted == "FROZEN" {
                let _best_effort = fsio::write(&path, "THAWED");
            }
            let what = if wanted == "FROZEN" { "freeze" } else { "thaw" };
            return Err(CgroupError::Timeout { path, what, waited: start.elapsed() });
        }
        std::thread::sleep(Duration::from_millis(if i < 10 { 1 } else { 10 }));
        i += 1;
    }
}

fn v2_frozen(dir: &Path) -> Result<bool, CgroupError> {
    let events = fsio::read(&dir.join("cgroup.events"))?;
    Ok(fsio::parse_flat_keyed(&events).into_iter().any(|(k, v)| k == "frozen" && v == 1))
}

fn set_v2(dir: &Path, freeze: bool) -> Result<(), CgroupError> {
    let path = dir.join("cgroup.freeze");
    fsio::write(&path, if freeze { "1" } else { "0" })?;
    let start = Instant::now();
    let mut i: u32 = 0;
    while v2_frozen(dir)? != freeze {
        if start.elapsed() > FREEZE_TIMEOUT {
            if freeze {
                let _best_effort = fsio::write(&path, "0");
            }
            let what = if freeze { "freeze" } else { "thaw" };
            return Err(CgroupError::Timeout { path, what, waited: start.elapsed() });
        }
        std::thread::sleep(Duration::from_millis(if i < 10 { 1 } else { 10 }));
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_states_parse() {
        assert_eq!(parse_v1_state("FROZEN"), Some(FreezerState::Frozen));
        assert_eq!(parse_v1_state("FREEZING"), Some(FreezerState::Freezing));
        assert_eq!(parse_v1_state("THAWED"), Some(FreezerState::Thawed));
        assert_eq!(parse_v1_state("frozen"), None);
    }
}
