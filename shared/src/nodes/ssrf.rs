//! OWNER: nodes helper (placeholder)
pub fn http_client(allow_private: bool) -> reqwest::Client {
    let _ = allow_private;
    todo!("ssrf")
}
