//! The conformance suite against the SQLite driver, plus driver-specific tests.
