//! OWNER: sqlite helper (placeholder)
