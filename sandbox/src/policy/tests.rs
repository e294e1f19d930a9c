//! derive_container / derive_exec tests.
