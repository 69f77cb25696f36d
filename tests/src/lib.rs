//! End-to-end suites live in `tests/tests/`; the test plugins they load are built by `build.rs`.
