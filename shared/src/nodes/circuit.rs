//! OWNER: nodes helper (placeholder)
