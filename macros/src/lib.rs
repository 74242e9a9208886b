//! `include_model!` (being written).
