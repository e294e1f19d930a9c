//! The one rollback of a create: a guard that holds what the create took (the pod's ID range,
//! the container's cgroup) and gives it back when dropped uncommitted, whichever step failed.

use std::sync::Arc;

use log::warn;

use crate::cgroups::Cgroup;
use crate::userns::pool::IdRangePool;

pub(crate) struct Taken {
    container_id: String,
    /// The pod's range, in the pool it was taken from or claimed in.
    range: Option<(Arc<IdRangePool>, String)>,
    cgroup: Option<Cgroup>,
}

impl Taken {
    pub fn new(container_id: &str) -> Taken {
        Taken { container_id: container_id.to_string(), range: None, cgroup: None }
    }

    /// The pod's ID range goes back to `pool` unless the create commits.
    pub fn range(&mut self, pool: Arc<IdRangePool>, pod_id: &str) {
        self.range = Some((pool, pod_id.to_string()));
    }

    /// The container's cgroup is removed (killing what is in it) unless the create commits.
    pub fn cgroup(&mut self, cgroup: Cgroup) {
        self.cgroup = Some(cgroup);
    }

    /// The create succeeded: everything taken stays. Returns the cgroup.
    pub fn commit(mut self) -> Option<Cgroup> {
        self.range = None;
        self.cgroup.take()
    }
}

impl Drop for Taken {
    fn drop(&mut self) {
        if let Some(cgroup) = self.cgroup.take() {
            if let Err(e) = cgroup.destroy() {
                warn!("removing the cgroup of {}: {e}", self.container_id);
            }
        }
        if let Some((pool, pod_id)) = self.range.take() {
            if let Err(e) = pool.release(&pod_id) {
                warn!("releasing the ID range of pod {pod_id}: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::UsernsConfig;

    fn pool(dir: &std::path::Path) -> Arc<IdRangePool> {
        let config =
            UsernsConfig { base: 100_000, size: 1000, count: 4, state_dir: dir.join("pool") };
        Arc::new(IdRangePool::open(&config).expect("pool"))
    }

    #[test]
    fn an_uncommitted_create_gives_its_range_back_and_a_committed_one_keeps_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pool = pool(dir.path());
        pool.allocate("p1").expect("range");
        // Input: a create that took the range and then failed (dropped without commit).
        let mut taken = Taken::new("c1");
        taken.range(pool.clone(), "p1");
        drop(taken);
        assert_eq!(pool.lookup("p1").expect("lookup"), None, "the failed create kept its range");
        pool.allocate("p2").expect("range");
        let mut taken = Taken::new("c2");
        taken.range(pool.clone(), "p2");
        assert_eq!(taken.commit().map(|c| c.path()), None);
        assert!(pool.lookup("p2").expect("lookup").is_some(), "a committed range was released");
    }
}
