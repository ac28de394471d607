//! Carbon's plaintext protocol: `path value timestamp\n`. The one place a
//! point becomes carbon text, with values written as Etsy writes them.

/// Appends one carbon line for a point. `value` must be finite: carbon
/// cannot store anything else, so the flush drops non-finite values first.
pub fn write_line(out: &mut Vec<u8>, name: &str, value: f64, timestamp: i64) {
    write_line_with(out, name, value, &LineTail::new(timestamp));
}

/// The end of every line of one flush, ` <timestamp>\n`, formatted once.
pub struct LineTail {
    text: Vec<u8>,
}

impl LineTail {
    /// The tail for points at `timestamp`.
    pub fn new(timestamp: i64) -> LineTail {
        let mut text = Vec::with_capacity(24);
        text.push(b' ');
        text.extend_from_slice(itoa::Buffer::new().format(timestamp).as_bytes());
        text.push(b'\n');
        LineTail { text }
    }
}

/// [`write_line`] with the timestamp already formatted.
pub fn write_line_with(out: &mut Vec<u8>, name: &str, value: f64, tail: &LineTail) {
    out.extend_from_slice(name.as_bytes());
    out.push(b' ');
    // Whole numbers (most counts) print as JavaScript prints them: plain
    // digits, and -0 as "0". Below 2^53 every such f64 is an exact i64.
    if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 {
        out.extend_from_slice(itoa::Buffer::new().format(value as i64).as_bytes());
    } else {
        out.extend_from_slice(ryu_js::Buffer::new().format(value).as_bytes());
    }
    out.extend_from_slice(&tail.text);
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
        write_line(&mut out, "stats.zero", -0.0, 1);
        write_line(&mut out, "stats.neg", -42.0, 1);
        write_line(&mut out, "stats.big", 1e21, 1);
        write_line(&mut out, "stats.edge", 9_007_199_254_740_991.0, 1);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "stats.hits 8 1795299263\nstats.er 0.6666666666666666 1795299263\nstats.tiny 1e-7 1\n\
             stats.zero 0 1\nstats.neg -42 1\nstats.big 1e+21 1\nstats.edge 9007199254740991 1\n"
        );
    }

    #[test]
    fn whole_numbers_print_as_javascript_prints_them() {
        for v in [
            0.0,
            -0.0,
            1.0,
            -1.0,
            1e15,
            123456789.0,
            9_007_199_254_740_991.0,
            2e20,
        ] {
            let mut fast = Vec::new();
            write_line(&mut fast, "n", v, 1);
            let js = format!("n {} 1\n", ryu_js::Buffer::new().format(v));
            assert_eq!(String::from_utf8(fast).unwrap(), js, "{v}");
        }
    }

    #[test]
    fn parses_lines_back() {
        assert_eq!(parse_line("a.b 1.5 10"), Some(("a.b", 1.5, 10)));
        assert_eq!(parse_line("a.b 1.5"), None);
        assert_eq!(parse_line("a.b x 10"), None);
    }
}
