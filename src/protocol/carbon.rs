//! Carbon's plaintext protocol: `path value timestamp\n`. The one place a
//! point becomes carbon text, with values written as Etsy writes them.

/// Appends one carbon line for a point. `value` must be finite: carbon
/// cannot store anything else, so the flush drops non-finite values first.
pub fn write_line(out: &mut Vec<u8>, name: &str, value: f64, timestamp: i64) {
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    let mut number = ryu_js::Buffer::new();
    out.extend_from_slice(number.format(value).as_bytes());
    out.push(b' ');
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(digits.format(timestamp).as_bytes());
    out.push(b'\n');
}

/// Parses one carbon line back (for tests and tools): `None` if malformed.
pub fn parse_line(line: &str) -> Option<(&str, f64, i64)> {
    let mut parts = line.split(' ');
    let name = parts.next()?;
    let value = parts.next()?.parse().ok()?;
    let timestamp = parts.next()?.parse().ok()?;
    if parts.next().is_some() || name.is_empty() {
        return None;
    }
    Some((name, value, timestamp))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_etsy_shaped_lines() {
        let mut out = Vec::new();
        write_line(&mut out, "stats.hits", 8.0, 1795299263);
        write_line(&mut out, "stats.er", 2.0 / 3.0, 1795299263);
        write_line(&mut out, "stats.tiny", 1e-7, 1);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "stats.hits 8 1795299263\nstats.er 0.6666666666666666 1795299263\nstats.tiny 1e-7 1\n"
        );
    }

    #[test]
    fn parses_lines_back() {
        assert_eq!(parse_line("a.b 1.5 10"), Some(("a.b", 1.5, 10)));
        assert_eq!(parse_line("a.b 1.5"), None);
        assert_eq!(parse_line("a.b x 10"), None);
    }
}
