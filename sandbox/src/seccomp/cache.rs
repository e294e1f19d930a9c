//! The compiled-filter cache: each distinct seccomp filter is compiled to BPF once per shim
//! (the baseline is the same for every container and exec of the pod) instead of once per
//! container start and exec.
//!
//! A filter that does not compile is not cached and is left without its BPF: the helper
//! compiles it itself and reports the error naming the filter, as it would with no cache.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::plan::SeccompPlan;

use super::SeccompError;

/// Seccomp filters compiled to BPF, keyed by the filter itself (its JSON without `bpf`).
#[derive(Debug, Default)]
pub struct FilterCache {
    compiled: Mutex<HashMap<String, Vec<u8>>>,
}

impl FilterCache {
    pub fn new() -> FilterCache {
        FilterCache::default()
    }

    /// Fills each filter's precompiled BPF, from the cache or by compiling it now. A filter
    /// that does not compile is left as it is: the helper compiles it and reports the error.
    pub fn precompile(&self, filters: &mut [SeccompPlan]) {
        self.precompile_with(filters, super::precompile);
    }

    /// `precompile` with the compiler given (tests count its calls).
    fn precompile_with(
        &self,
        filters: &mut [SeccompPlan],
        compile: impl Fn(&mut SeccompPlan) -> Result<(), SeccompError>,
    ) {
        for filter in filters {
            let mut source = filter.clone();
            source.bpf = None;
            let Ok(key) = serde_json::to_string(&source) else { continue };
            let Ok(mut cache) = self.compiled.lock() else { return };
            if let Some(bpf) = cache.get(&key) {
                filter.bpf = Some(bpf.clone());
                continue;
            }
            match compile(filter) {
                Ok(()) => {
                    if let Some(bpf) = &filter.bpf {
                        cache.insert(key, bpf.clone());
                    }
                }
                Err(e) => log::warn!("{e}; the sandbox helper will compile it itself"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;
    use crate::plan::SeccompAction;

    fn counting<'a>(
        calls: &'a Cell<u32>,
    ) -> impl Fn(&mut SeccompPlan) -> Result<(), SeccompError> + 'a {
        move |plan| {
            calls.set(calls.get() + 1);
            super::super::precompile(plan)
        }
    }

    #[test]
    fn a_second_lookup_of_the_same_filter_is_served_from_the_cache() {
        let cache = FilterCache::new();
        let calls = Cell::new(0);
        let mut first = vec![super::super::baseline()];
        cache.precompile_with(&mut first, counting(&calls));
        assert_eq!(calls.get(), 1);
        let program = first[0].bpf.clone().expect("the baseline compiles");
        assert!(!program.is_empty());
        // Input: the same filter again (as the next container or exec brings it).
        let mut second = vec![super::super::baseline()];
        cache.precompile_with(&mut second, counting(&calls));
        assert_eq!(calls.get(), 1, "the cached filter was compiled again");
        assert_eq!(second[0].bpf.as_ref(), Some(&program));
        // A filter whose bpf field was already set is the same filter: same key.
        cache.precompile_with(&mut second, counting(&calls));
        assert_eq!(calls.get(), 1);
    }

    #[test]
    fn a_filter_that_does_not_compile_is_left_for_the_helper() {
        let cache = FilterCache::new();
        // Input: an errno the kernel cannot return (out of u16 range).
        let mut broken = super::super::baseline();
        broken.name = "broken".into();
        broken.default_action = SeccompAction::Errno(70_000);
        let calls = Cell::new(0);
        let mut filters = vec![broken.clone()];
        cache.precompile_with(&mut filters, counting(&calls));
        assert_eq!(filters[0].bpf, None, "a filter that failed to compile got a program");
        assert_eq!(filters[0], broken);
        // Not cached: the next lookup tries (and fails) again, leaving it to the helper.
        cache.precompile_with(&mut filters, counting(&calls));
        assert_eq!((calls.get(), filters[0].bpf.as_ref()), (2, None));
    }
}
