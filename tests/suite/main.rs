//! The one integration test binary.

mod aws;
