//! The web console (SPEC §11): `GET /console` and its assets, compiled into the binary from
//! `shared/console/` (no network access, no install step). The page and its assets hold no
//! data and need no token; the console sends the user's bearer token on every API call.

use super::error::ApiError;
use super::extract::ApiPath;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

/// One file of the console: its name under `/console/`, content type and bytes.
struct Asset {
    name: &'static str,
    content_type: &'static str,
    bytes: &'static [u8],
}

macro_rules! asset {
    ($name:literal, $content_type:literal) => {
        Asset {
            name: $name,
            content_type: $content_type,
            bytes: include_bytes!(concat!("../../console/", $name)),
        }
    };
}

/// Every file of `shared/console/` (a test checks that none is left out).
const ASSETS: &[Asset] = &[
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("app.js", "text/javascript; charset=utf-8"),
    asset!("api.js", "text/javascript; charset=utf-8"),
    asset!("dom.js", "text/javascript; charset=utf-8"),
    asset!("graph.js", "text/javascript; charset=utf-8"),
    asset!("charts.js", "text/javascript; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
];

/// The page's security headers: only this origin's scripts, styles and API.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

fn serve(name: &str) -> Result<Response, ApiError> {
    let asset = ASSETS
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| ApiError::not_found("Not found"))?;
    let mut response = asset.bytes.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    // Assets change with the binary: revalidate, so an upgrade is seen at once.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Ok(response)
}

/// The console's page.
#[utoipa::path(get, path = "/console", tag = "console", security(()),
    responses((status = 200, description = "The console's HTML page", content_type = "text/html", body = String)))]
pub async fn page() -> Result<Response, ApiError> {
    serve("index.html")
}

/// One of the console's assets.
#[utoipa::path(get, path = "/console/{file}", tag = "console", security(()),
    params(("file" = String, Path, description = "An asset's file name")),
    responses((status = 200, description = "The asset (HTML, JavaScript or CSS)",
        content(
            (String = "text/javascript"),
            (String = "text/css"),
            (String = "text/html"),
        ))))]
pub async fn asset(ApiPath(file): ApiPath<String>) -> Result<Response, ApiError> {
    serve(&file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_of_the_console_folder_is_served() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/console");
        let mut files: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let mut served: Vec<String> = ASSETS.iter().map(|a| a.name.to_string()).collect();
        served.sort();
        assert_eq!(files, served, "list every file of shared/console in ASSETS");
    }

    #[test]
    fn assets_have_their_content_type_and_unknown_ones_are_404() {
        for asset in ASSETS {
            let response = serve(asset.name).unwrap();
            assert_eq!(
                response.headers()[header::CONTENT_TYPE],
                asset.content_type,
                "{}",
                asset.name
            );
            assert!(!asset.bytes.is_empty(), "{} is empty", asset.name);
        }
        assert_eq!(serve("../Cargo.toml").unwrap_err().status, 404);
        assert_eq!(serve("missing.js").unwrap_err().status, 404);
    }
}
