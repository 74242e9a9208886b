//! The build.rs `Builder` (being written).
