//! clawnode-smol
