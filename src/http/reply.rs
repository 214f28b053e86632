//! ringway's own answers, complete and static.

/// 400 Bad Request.
pub const BAD_REQUEST: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nbad request\n";
/// 431 Request Header Fields Too Large.
pub const TOO_LARGE: &[u8] = b"HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain\r\nContent-Length: 23\r\nConnection: close\r\n\r\nrequest head too large\n";
/// 502 Bad Gateway.
pub const BAD_GATEWAY: &[u8] = b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nContent-Length: 12\r\nConnection: close\r\n\r\nbad gateway\n";
/// 503 at the limit.
pub const UNAVAILABLE: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: text/plain\r\nContent-Length: 34\r\nConnection: close\r\n\r\nworker_connections are not enough\n";
/// 408 Request Timeout (the request body stopped arriving).
pub const REQUEST_TIMEOUT: &[u8] = b"HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain\r\nContent-Length: 16\r\nConnection: close\r\n\r\nrequest timeout\n";
/// 417 Expectation Failed (an `Expect` other than `100-continue`).
pub const EXPECTATION_FAILED: &[u8] = b"HTTP/1.1 417 Expectation Failed\r\nContent-Type: text/plain\r\nContent-Length: 19\r\nConnection: close\r\n\r\nexpectation failed\n";
/// Interim answer to `Expect: 100-continue`.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
/// 504 Gateway Timeout.
pub const GATEWAY_TIMEOUT: &[u8] = b"HTTP/1.1 504 Gateway Timeout\r\nContent-Type: text/plain\r\nContent-Length: 16\r\nConnection: close\r\n\r\ngateway timeout\n";
/// 404: no location of the server matches the request path (nginx would look for a file).
pub const NOT_FOUND: &[u8] = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 10\r\nConnection: close\r\n\r\nnot found\n";
/// 400 for a plain HTTP request on a TLS port (nginx's 497 answer, in plain text).
pub const PLAIN_HTTP_ON_TLS: &[u8] = b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nContent-Length: 46\r\nConnection: close\r\n\r\nThe plain HTTP request was sent to HTTPS port\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canned_replies_have_right_lengths() {
        for r in [
            BAD_REQUEST,
            TOO_LARGE,
            BAD_GATEWAY,
            UNAVAILABLE,
            GATEWAY_TIMEOUT,
            REQUEST_TIMEOUT,
            EXPECTATION_FAILED,
            NOT_FOUND,
            PLAIN_HTTP_ON_TLS,
        ] {
            let mut h = [httparse::EMPTY_HEADER; 8];
            let mut resp = httparse::Response::new(&mut h);
            let n = match resp.parse(r).unwrap() {
                httparse::Status::Complete(n) => n,
                _ => panic!(),
            };
            let cl: usize = resp
                .headers
                .iter()
                .find(|h| h.name == "Content-Length")
                .map(|h| std::str::from_utf8(h.value).unwrap().parse().unwrap())
                .unwrap();
            assert_eq!(r.len() - n, cl, "{}", String::from_utf8_lossy(r));
        }
    }
}
