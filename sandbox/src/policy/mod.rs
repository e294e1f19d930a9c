//! Policy: the operator's config plus an OCI spec in, a confinement plan or a refusal out. Pure.
