//! The container's root: rootfs mounts, spec mounts, /proc, a minimal /dev, /sys, masks, pivot_root.
