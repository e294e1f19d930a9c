//! Cgroups: create, limit, update, freeze, measure and remove a container's cgroup (v1, v2, hybrid).
