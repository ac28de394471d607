//! The page at `/`: HTML, script and style embedded in the binary, served
//! with a Content-Security-Policy that lets it talk to this host only.

/// No script, style, image or request from anywhere but this host; no
/// inline script; never framed.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; \
img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The asset at `path`, with its content type.
pub fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    Some(match path {
        "/" | "/index.html" => ("text/html; charset=utf-8", include_str!("page/index.html")),
        "/page/app.js" => (
            "text/javascript; charset=utf-8",
            include_str!("page/app.js"),
        ),
        "/page/app.css" => ("text/css; charset=utf-8", include_str!("page/app.css")),
        _ => return None,
    })
}
