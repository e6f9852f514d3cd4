//! Workspace-level examples, end-to-end tests and benches for lem. Not published.
