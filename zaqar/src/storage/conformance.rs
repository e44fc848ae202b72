//! The driver conformance suite: behaviour tests written once, run against
//! every driver.
