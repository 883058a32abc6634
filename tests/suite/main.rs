//! The one integration test binary.

mod api;
