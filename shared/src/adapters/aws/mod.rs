//! OWNER: aws helper (placeholder)
