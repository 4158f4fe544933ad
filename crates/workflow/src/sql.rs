//! placeholder
pub struct SqlWorkflowStore;
