//! clawnode-tests
