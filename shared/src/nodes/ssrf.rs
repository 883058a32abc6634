//! The SSRF guard of outbound HTTP (spec §5.8).
//!
//! Three checks, because no single one sees every address a request may reach:
//! - [`check_url`] on the URL before sending: only `http`/`https`, and an IP-literal host
//!   (reqwest connects to literals without asking the resolver) must be public;
//! - the client's DNS resolver ([`GuardedResolver`]) resolves names with tokio and refuses
//!   the name when any resolved address is not public (no "first public address wins", so a
//!   name that also resolves to a private address is refused as a whole);
//! - the redirect policy runs [`check_url`] on every redirect target.
//!
//! `allow_private` (`WECONNECT_HTTP_ALLOW_PRIVATE`) switches every check off, for local testing.
//!
//! Odd IPv4 spellings (`http://2130706433/`, `http://0x7f.1/`, `http://017700000001/`,
//! `http://127.1/`) need no special case: `url::Url` follows the WHATWG URL standard and
//! normalizes all of them to the IP literal `127.0.0.1` (tested below).

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;
use url::{Host, Url};

/// Most redirects one request follows.
pub const MAX_REDIRECTS: usize = 10;

/// The error a refused destination produces; found again in a `reqwest::Error`'s source
/// chain with [`refused_in`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RefusedAddress(pub String);

/// The [`RefusedAddress`] somewhere in `err`'s source chain, if any.
pub fn refused_in<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a RefusedAddress> {
    let mut current: Option<&'a (dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<RefusedAddress>() {
            return Some(refused);
        }
        current = e.source();
    }
    None
}

/// Which addresses a client may reach.
type AddressPolicy = Arc<dyn Fn(IpAddr) -> bool + Send + Sync>;

fn address_policy(allow_private: bool) -> AddressPolicy {
    Arc::new(move |ip| allow_private || is_public(ip))
}

/// The outbound HTTP client of nodes: rustls, no system proxy (a proxy would resolve names
/// itself, past the guard), the guarded resolver and the re-checking redirect policy.
pub fn http_client(allow_private: bool) -> reqwest::Client {
    build_client(address_policy(allow_private))
}

fn build_client(allow: AddressPolicy) -> reqwest::Client {
    let redirect_allow = allow.clone();
    let redirect = reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= MAX_REDIRECTS {
            return attempt.error(format!("too many redirects (more than {MAX_REDIRECTS})"));
        }
        match check_url_with(attempt.url(), redirect_allow.as_ref()) {
            Ok(()) => attempt.follow(),
            Err(message) => attempt.error(RefusedAddress(format!("redirect refused: {message}"))),
        }
    });
    reqwest::Client::builder()
        .use_rustls_tls()
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver { allow }))
        .redirect(redirect)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("WeConnect/", env!("CARGO_PKG_VERSION")))
        .build()
        // A static configuration: building fails only when the TLS backend cannot start,
        // which is a broken build, not an input.
        .expect("the outbound HTTP client configuration is valid")
}

/// Resolves with tokio and refuses names that lead to refused addresses.
#[derive(Clone)]
pub struct GuardedResolver {
    allow: AddressPolicy,
}

impl GuardedResolver {
    pub fn new(allow_private: bool) -> Self {
        Self {
            allow: address_policy(allow_private),
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !allow(a.ip())) {
                return Err(Box::new(RefusedAddress(format!(
                    "address {} of host {host} is not public and was refused",
                    bad.ip()
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Checks a URL before a request and on every redirect: `http`/`https` only, a host present,
/// and an IP-literal host public (names are checked by the resolver).
pub fn check_url(url: &Url, allow_private: bool) -> Result<(), String> {
    check_url_with(url, &|ip| allow_private || is_public(ip))
}

fn check_url_with(url: &Url, allow: &(dyn Fn(IpAddr) -> bool + Send + Sync)) -> Result<(), String> {
    match url.scheme() {
        "http" | "https" => {}
        other => {
            return Err(format!(
                "scheme {other:?} is not allowed (only http and https)"
            ));
        }
    }
    let ip = match url.host() {
        None => return Err("the URL has no host".into()),
        Some(Host::Domain(_)) => return Ok(()),
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6),
    };
    if allow(ip) {
        Ok(())
    } else {
        Err(format!("address {ip} is not public and was refused"))
    }
}

/// Is `ip` a public unicast address a node may call?
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    const REFUSED: &[([u8; 4], u32)] = &[
        ([0, 0, 0, 0], 8),       // "this network", unspecified
        ([10, 0, 0, 0], 8),      // private
        ([100, 64, 0, 0], 10),   // carrier-grade NAT
        ([127, 0, 0, 0], 8),     // loopback
        ([169, 254, 0, 0], 16),  // link-local, cloud metadata (169.254.169.254)
        ([172, 16, 0, 0], 12),   // private
        ([192, 0, 0, 0], 24),    // IETF protocol assignments
        ([192, 0, 2, 0], 24),    // documentation (TEST-NET-1)
        ([192, 88, 99, 0], 24),  // 6to4 relay anycast
        ([192, 168, 0, 0], 16),  // private
        ([198, 18, 0, 0], 15),   // benchmarking
        ([198, 51, 100, 0], 24), // documentation (TEST-NET-2)
        ([203, 0, 113, 0], 24),  // documentation (TEST-NET-3)
        ([224, 0, 0, 0], 4),     // multicast
        ([240, 0, 0, 0], 4),     // reserved, and 255.255.255.255 broadcast
    ];
    !REFUSED.iter().any(|(net, p)| in_v4(ip, *net, *p))
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    (u128::from(ip) & mask) == (u128::from(Ipv6Addr::from(net)) & mask)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let bits = u128::from(ip);
    // Addresses that embed an IPv4 address are judged by it.
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    if ip.is_unspecified() || ip.is_loopback() {
        return false;
    }
    // Public unicast lives in 2000::/3 (multicast ff00::/8, unique local fc00::/7, link-local
    // fe80::/10, site-local fec0::/10, discard 100::/64, local NAT64 64:ff9b:1::/48 and SRv6
    // 5f00::/16 are all outside it).
    if bits >> 125 != 0b001 {
        return false;
    }
    const REFUSED: &[([u16; 8], u32)] = &[
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 23), // IETF protocol assignments (Teredo, ORCHID, benchmarking)
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32), // documentation
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), // documentation (RFC 9637)
    ];
    !REFUSED.iter().any(|(net, p)| in_v6(ip, *net, *p))
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible (`::a.b.c.d`),
/// NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:AABB:CCDD::`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if in_v6(ip, [0, 0, 0, 0, 0, 0xffff, 0, 0], 96) {
        return Some(low32);
    }
    // IPv4-compatible: ::/96 except :: and ::1 themselves.
    if bits >> 32 == 0 && bits > 1 {
        return Some(low32);
    }
    if in_v6(ip, [0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96) {
        return Some(low32);
    }
    if in_v6(ip, [0x2002, 0, 0, 0, 0, 0, 0, 0], 16) {
        return Some(Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    fn refused(text: &str) -> bool {
        check_url(&url(text), false).is_err()
    }

    #[test]
    fn odd_ipv4_spellings_normalize_to_loopback_and_are_refused() {
        for text in [
            "http://2130706433/",
            "http://0x7f.1/",
            "http://017700000001/",
            "http://127.1/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://127.0.0.1./",
        ] {
            let u = url(text);
            assert_eq!(
                u.host(),
                Some(Host::Ipv4(Ipv4Addr::new(127, 0, 0, 1))),
                "{text} normalizes to 127.0.0.1"
            );
            assert!(refused(text), "{text} is refused");
        }
        // 0 → 0.0.0.0, the unspecified address.
        assert_eq!(
            url("http://0/").host(),
            Some(Host::Ipv4(Ipv4Addr::UNSPECIFIED))
        );
        assert!(refused("http://0/"));
    }

    #[test]
    fn refuses_every_non_public_ipv4_range() {
        for text in [
            "http://127.0.0.1/",
            "http://127.255.255.254:8080/x",
            "http://10.0.0.1/",
            "http://10.255.255.255/",
            "http://172.16.0.1/",
            "http://172.31.255.255/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data/",
            "http://169.254.0.1/",
            "http://100.64.0.1/",
            "http://100.127.255.255/",
            "http://0.0.0.0/",
            "http://0.1.2.3/",
            "http://255.255.255.255/",
            "http://224.0.0.1/",
            "http://239.255.255.250/",
            "http://240.0.0.1/",
            "http://192.0.0.8/",
            "http://192.0.2.10/",
            "http://198.51.100.7/",
            "http://203.0.113.9/",
            "http://198.18.0.1/",
            "http://198.19.255.255/",
            "http://192.88.99.1/",
        ] {
            assert!(refused(text), "{text} must be refused");
        }
    }

    #[test]
    fn refuses_every_non_public_ipv6_form() {
        for text in [
            "http://[::1]/",
            "http://[::]/",
            "http://[fc00::1]/",
            "http://[fd12:3456::1]/",
            "http://[fe80::1]/",
            "http://[fec0::1]/",
            "http://[ff02::1]/",
            "http://[2001:db8::1]/",
            "http://[3fff::1]/",
            "http://[2001::1]/",
            "http://[100::1]/",
            "http://[64:ff9b:1::1]/",
            // IPv4-mapped private / loopback / metadata
            "http://[::ffff:127.0.0.1]/",
            "http://[::ffff:7f00:1]/",
            "http://[::ffff:10.0.0.1]/",
            "http://[::ffff:169.254.169.254]/",
            "http://[::ffff:192.168.0.1]/",
            // IPv4-compatible
            "http://[::127.0.0.1]/",
            "http://[::10.1.2.3]/",
            // NAT64 of refused addresses
            "http://[64:ff9b::127.0.0.1]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            // 6to4 of refused addresses
            "http://[2002:7f00:1::]/",
            "http://[2002:a00:1::1]/",
            "http://[2002:a9fe:a9fe::]/",
        ] {
            assert!(refused(text), "{text} must be refused");
        }
    }

    #[test]
    fn public_addresses_and_names_pass() {
        for text in [
            "http://93.184.216.34/",
            "https://8.8.8.8/dns-query",
            "http://1.1.1.1:8080/",
            "http://172.32.0.1/",
            "http://100.128.0.1/",
            "http://[2606:4700:4700::1111]/",
            "http://[2a00:1450:4001:81c::200e]/",
            "http://[::ffff:8.8.8.8]/",
            "http://[64:ff9b::808:808]/",
            "http://[2002:808:808::1]/",
            "https://example.com/path?q=1",
            "http://localhost/", // a name: judged by the resolver, not here
        ] {
            assert!(check_url(&url(text), false).is_ok(), "{text} must pass");
        }
    }

    #[test]
    fn only_http_and_https() {
        for text in [
            "file:///etc/passwd",
            "ftp://example.com/",
            "gopher://example.com/",
        ] {
            assert!(refused(text), "{text} must be refused");
            assert!(
                check_url(&url(text), true).is_err(),
                "{text} even when private is allowed"
            );
        }
    }

    #[test]
    fn allow_private_allows_private_addresses() {
        for text in [
            "http://127.0.0.1:3000/",
            "http://169.254.169.254/",
            "http://[::1]/",
            "http://10.0.0.1/",
        ] {
            assert!(check_url(&url(text), true).is_ok(), "{text}");
        }
    }

    #[tokio::test]
    async fn resolver_refuses_names_of_private_addresses() {
        let guard = GuardedResolver::new(false);
        let err = match guard.resolve("localhost".parse().unwrap()).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e,
        };
        let refused = refused_in(err.as_ref()).expect("a RefusedAddress");
        assert!(refused.0.contains("not public"), "{}", refused.0);

        let open = GuardedResolver::new(true);
        let addrs: Vec<SocketAddr> = open
            .resolve("localhost".parse().unwrap())
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
        assert!(!addrs.is_empty());
    }

    #[tokio::test]
    async fn client_refuses_a_name_resolving_to_loopback() {
        let client = http_client(false);
        let err = client
            .get("http://localhost:9/")
            .send()
            .await
            .expect_err("refused");
        assert!(refused_in(&err).is_some(), "{err:?}");
    }

    /// Only 127.0.0.1 is allowed: the first hop passes, a redirect to 127.0.0.2 (or to a
    /// name) must be re-checked and refused.
    #[tokio::test]
    async fn every_redirect_target_is_checked() {
        use axum::response::Redirect;
        use axum::routing::get;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app =
            axum::Router::new()
                .route("/ok", get(|| async { "fine" }))
                .route("/hop", get(|| async { Redirect::temporary("/ok") }))
                .route(
                    "/evil",
                    get(move || async move {
                        Redirect::temporary(&format!("http://127.0.0.2:{port}/ok"))
                    }),
                )
                .route(
                    "/meta",
                    get(|| async {
                        Redirect::temporary("http://169.254.169.254/latest/meta-data/")
                    }),
                )
                .route(
                    "/scheme",
                    get(|| async { Redirect::temporary("file:///etc/passwd") }),
                )
                .route("/loop", get(|| async { Redirect::temporary("/loop") }));
        tokio::spawn(async move { axum::serve(listener, app).await });

        let only_first: AddressPolicy =
            Arc::new(|ip| ip == IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1)));
        let client = build_client(only_first);
        let base = format!("http://127.0.0.1:{port}");

        let ok = client.get(format!("{base}/hop")).send().await.unwrap();
        assert_eq!(ok.status(), 200);
        assert_eq!(ok.text().await.unwrap(), "fine");

        for path in ["/evil", "/meta"] {
            let err = client
                .get(format!("{base}{path}"))
                .send()
                .await
                .expect_err("redirect refused");
            let refused = refused_in(&err).unwrap_or_else(|| panic!("{path}: {err:?}"));
            assert!(refused.0.contains("redirect refused"), "{}", refused.0);
        }
        // reqwest never follows a redirect to another scheme: the 3xx comes back as is.
        let not_followed = client.get(format!("{base}/scheme")).send().await.unwrap();
        assert_eq!(not_followed.status(), 307);

        let err = client
            .get(format!("{base}/loop"))
            .send()
            .await
            .expect_err("loop stops");
        assert!(err.is_redirect(), "{err:?}");
        assert!(refused_in(&err).is_none());
    }
}
