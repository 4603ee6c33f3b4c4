//! What the agent's integration tests share.

pub mod kubelet;
pub mod plugins;
