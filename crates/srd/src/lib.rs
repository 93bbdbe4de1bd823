//! # softverbs-srd — the SRD transport, sans-IO
//!
//! Work in progress: see `docs/srd-wire.md`.
