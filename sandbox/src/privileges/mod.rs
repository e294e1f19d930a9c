//! What the process keeps: uid/gid/groups, capabilities, no_new_privs, rlimits, umask.
