//! A listening address as an operator writes it (`--metrics 9464`, `[metrics] listen = "0.0.0.0:9464"`).
//! Shared by the definition checker and the metrics server, so both refuse the same things the same way.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// What a bad address is told it should have been.
pub const EXPECTED: &str =
    "expected a port (9464, served on 127.0.0.1) or an address and port (127.0.0.1:9464, [::1]:9464, 0.0.0.0:9464)";

/// A bare port binds the loopback address: serving beyond this machine must be asked for by naming an address.
pub fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    let bad = || format!("bad listen address `{text}`: {EXPECTED}");
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        let port = text.parse::<u16>().map_err(|_| bad())?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        let port = port.parse::<u16>().map_err(|_| bad())?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    text.parse::<SocketAddr>().map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_port_is_served_on_loopback_only() {
        assert_eq!(parse_listen("9464").unwrap(), "127.0.0.1:9464".parse().unwrap());
        assert_eq!(parse_listen("localhost:0").unwrap(), "127.0.0.1:0".parse().unwrap());
    }

    #[test]
    fn another_address_is_taken_only_when_named() {
        assert_eq!(parse_listen("0.0.0.0:9464").unwrap(), "0.0.0.0:9464".parse().unwrap());
        assert_eq!(parse_listen("[::1]:9464").unwrap(), "[::1]:9464".parse().unwrap());
    }

    #[test]
    fn a_bad_address_says_what_was_expected() {
        for bad in ["", "99999", "127.0.0.1", "example.org:80", ":9464", "127.0.0.1:port"] {
            let error = parse_listen(bad).unwrap_err();
            assert!(error.starts_with(&format!("bad listen address `{bad}`: expected a port")), "{error}");
        }
    }
}
