//! Test-only package; the tests are the `[[test]]` targets.
