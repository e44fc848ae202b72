//! Keystone token validation for warp services (filled in by the Keystone issue).
