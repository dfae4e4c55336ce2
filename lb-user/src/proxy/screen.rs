//! The first phase of a request: what is refused before any rule, ACL or server sees it, and
//! the one authority every later phase routes on and forwards.
//!
//! - CONNECT: lb is a gateway, not a forward proxy (405).
//! - More header fields than `max_headers` (431): HTTP/2 fields are counted as received,
//!   cookie fields each, before they are joined.
//! - Framing a server could read another way (400, RFC 9112 section 6.3).
//! - The authority (RFC 9112 section 3.2, RFC 9113 section 8.3.1): an HTTP/1 target in
//!   absolute-form replaces Host; otherwise HTTP/1.1 needs exactly one valid Host (HTTP/1.0
//!   at most one). HTTP/2's `:authority` becomes Host, and a `host` field that differs from
//!   it is refused; without `:authority` exactly one `host` field is needed. Userinfo is
//!   refused. Host is then the first field, as RFC 9110 section 7.2 asks of user agents.
//! - HTTP/2 `cookie` fields are joined with "; " (RFC 9113 section 8.2.3).

use hyper::{
    HeaderMap, Method, StatusCode, Version,
    header::{self, HeaderValue},
    http::request::Parts,
    http::uri::Authority,
};

use super::framing::Limits;

/// Why a request is refused, with the status it gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// The answer.
    pub status: StatusCode,
    /// What was wrong, for the debug log.
    pub why: &'static str,
}

fn refuse<T>(status: StatusCode, why: &'static str) -> Result<T, Refused> {
    Err(Refused { status, why })
}

/// Screens a request's head, and settles its Host (and, for HTTP/2, its cookies).
pub fn screen(parts: &mut Parts, limits: &Limits) -> Result<(), Refused> {
    if parts.method == Method::CONNECT {
        return refuse(StatusCode::METHOD_NOT_ALLOWED, "CONNECT");
    }
    if parts.headers.len() > limits.max_headers {
        return refuse(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many header fields",
        );
    }
    if let Some(why) = framing_risk(&parts.headers) {
        return refuse(StatusCode::BAD_REQUEST, why);
    }
    let h2 = parts.version == Version::HTTP_2;
    let target = parts.uri.authority().cloned();
    let hosts = parts.headers.get_all(header::HOST).iter().count();
    let host = match target {
        Some(authority) => {
            if authority.as_str().contains('@') {
                return refuse(StatusCode::BAD_REQUEST, "userinfo in the target");
            }
            if h2
                && parts.headers.get_all(header::HOST).iter().any(|h| {
                    !h.as_bytes()
                        .eq_ignore_ascii_case(authority.as_str().as_bytes())
                })
            {
                return refuse(StatusCode::BAD_REQUEST, "host differs from :authority");
            }
            let Ok(value) = HeaderValue::from_str(authority.as_str()) else {
                return refuse(StatusCode::BAD_REQUEST, "invalid authority");
            };
            // HTTP/1: the target's authority replaces Host (RFC 9112 section 3.2.2).
            Some(value)
        }
        None => {
            let needed = h2 || parts.version == Version::HTTP_11;
            if hosts > 1 || (needed && hosts == 0) {
                return refuse(StatusCode::BAD_REQUEST, "not exactly one Host");
            }
            if let Some(value) = parts.headers.get(header::HOST)
                && !valid_host(value)
            {
                return refuse(StatusCode::BAD_REQUEST, "invalid Host");
            }
            None
        }
    };
    if h2 {
        join_cookies(&mut parts.headers);
    }
    if let Some(host) = host {
        host_first(&mut parts.headers, host);
    }
    Ok(())
}

/// A Host value: an authority without userinfo (RFC 9110 section 7.2).
fn valid_host(value: &HeaderValue) -> bool {
    value
        .to_str()
        .ok()
        .and_then(|v| v.parse::<Authority>().ok())
        .is_some_and(|a| !a.as_str().contains('@') && !a.host().is_empty())
}

/// Framing a server could read another way (RFC 9112 section 6.3; HAProxy answers 400). On
/// HTTP/1 the framing judge refused these already; HTTP/2 requests carry the same fields.
fn framing_risk(headers: &HeaderMap) -> Option<&'static str> {
    let has_te = headers.contains_key(header::TRANSFER_ENCODING);
    let mut lengths = headers.get_all(header::CONTENT_LENGTH).iter();
    let first = lengths.next();
    if has_te && first.is_some() {
        return Some("both Content-Length and Transfer-Encoding");
    }
    if let Some(first) = first
        && lengths.any(|other| other != first)
    {
        return Some("Content-Length values differ");
    }
    if has_te {
        // Only `chunked`, last, is a framing this proxy and every server agree on.
        let last = headers
            .get_all(header::TRANSFER_ENCODING)
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(|c| c.trim().eq_ignore_ascii_case("chunked"));
        if last != Some(true) {
            return Some("Transfer-Encoding does not end with chunked");
        }
    }
    None
}

/// Joins the cookie fields of an HTTP/2 request into one (RFC 9113 section 8.2.3).
fn join_cookies(headers: &mut HeaderMap) {
    let mut cookies = headers.get_all(header::COOKIE).iter();
    let (Some(first), Some(_)) = (cookies.next(), cookies.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for value in headers.get_all(header::COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(value.as_bytes());
    }
    if let Ok(value) = HeaderValue::from_bytes(&joined) {
        headers.insert(header::COOKIE, value);
    }
}

/// Makes `host` the only Host field, and the first field.
fn host_first(headers: &mut HeaderMap, host: HeaderValue) {
    let mut ordered = HeaderMap::with_capacity(headers.len() + 1);
    ordered.insert(header::HOST, host);
    let mut current = None;
    for (name, value) in headers.drain() {
        if let Some(name) = name {
            current = Some(name);
        }
        if let Some(name) = &current
            && *name != header::HOST
        {
            ordered.append(name.clone(), value);
        }
    }
    *headers = ordered;
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Request;

    fn parts(version: Version, target: &str, fields: &[(&str, &str)]) -> Parts {
        let mut builder = Request::builder().uri(target).version(version);
        for (name, value) in fields {
            builder = builder.header(*name, *value);
        }
        builder.body(()).expect("request").into_parts().0
    }

    fn screened(mut p: Parts) -> Result<Parts, StatusCode> {
        screen(&mut p, &Limits::default())
            .map(|()| p)
            .map_err(|r| r.status)
    }

    #[test]
    fn http1_needs_exactly_one_valid_host_unless_the_target_has_one() {
        let v11 = Version::HTTP_11;
        assert!(screened(parts(v11, "/", &[("host", "x")])).is_ok());
        for fields in [
            &[][..],
            &[("host", "a"), ("host", "b")],
            &[("host", "a b")],
            &[("host", "u@h")],
        ] {
            assert_eq!(
                screened(parts(v11, "/", fields)).map(|_| ()),
                Err(StatusCode::BAD_REQUEST),
                "{fields:?}"
            );
        }
        assert!(
            screened(parts(Version::HTTP_10, "/", &[])).is_ok(),
            "1.0 may omit it"
        );
        let p = screened(parts(v11, "http://a.example/x", &[("host", "b.example")]))
            .expect("absolute-form");
        assert_eq!(p.headers.get_all(header::HOST).iter().count(), 1);
        assert_eq!(p.headers[header::HOST], "a.example");
        assert_eq!(
            screened(parts(
                v11,
                "http://u:p@a.example/",
                &[("host", "a.example")]
            ))
            .map(|_| ()),
            Err(StatusCode::BAD_REQUEST)
        );
    }

    #[test]
    fn http2_authority_wins_cookies_join_and_fields_are_counted() {
        let v2 = Version::HTTP_2;
        let p = screened(parts(
            v2,
            "http://a.example/",
            &[("cookie", "a=1"), ("x", "y"), ("cookie", "b=2")],
        ))
        .expect("screened");
        let names: Vec<&str> = p.headers.keys().map(|n| n.as_str()).collect();
        assert_eq!(names, ["host", "cookie", "x"], "Host first");
        assert_eq!(p.headers[header::COOKIE], "a=1; b=2");
        assert_eq!(
            screened(parts(v2, "http://a.example/", &[("host", "b.example")])).map(|_| ()),
            Err(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            screened(parts(v2, "/", &[("host", "a"), ("host", "b")])).map(|_| ()),
            Err(StatusCode::BAD_REQUEST)
        );
        let many: Vec<(&str, &str)> = (0..=100).map(|_| ("cookie", "a")).collect();
        assert_eq!(
            screened(parts(v2, "http://a.example/", &many)).map(|_| ()),
            Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let mut connect = parts(
            Version::HTTP_11,
            "a.example:443",
            &[("host", "a.example:443")],
        );
        connect.method = Method::CONNECT;
        assert_eq!(
            screened(connect).map(|_| ()),
            Err(StatusCode::METHOD_NOT_ALLOWED)
        );
    }
}
