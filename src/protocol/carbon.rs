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

/// A point received over carbon's line protocol.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Received<'a> {
    /// The metric path.
    pub name: &'a str,
    /// The value (may be infinite; never NaN).
    pub value: f64,
    /// Unix seconds (float timestamps truncated, as whisper does).
    pub timestamp: i64,
}

/// Why a received line was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadLine {
    /// Not UTF-8 (carbon drops the whole connection on these).
    #[error("the line is not UTF-8")]
    NotUtf8,
    /// Not three fields.
    #[error("a line needs exactly three fields: path value timestamp")]
    Fields,
    /// The value is not a number.
    #[error("the value is not a number")]
    Value,
    /// The timestamp is not a finite number (carbon drops the connection
    /// on `inf`).
    #[error("the timestamp is not a finite number")]
    Timestamp,
}

/// Parses one received line as carbon-cache does: surrounding whitespace
/// (so CRLF) stripped, fields split on whitespace runs, Python-style
/// floats, a timestamp of -1 meaning `now`. `Ok(None)`: a NaN value,
/// which carbon drops.
pub fn parse_received(line: &[u8], now: i64) -> Result<Option<Received<'_>>, BadLine> {
    let text = std::str::from_utf8(line).map_err(|_| BadLine::NotUtf8)?;
    let mut fields = text.split_ascii_whitespace();
    let (Some(name), Some(value), Some(timestamp), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(BadLine::Fields);
    };
    let value: f64 = value.parse().map_err(|_| BadLine::Value)?;
    let ts: f64 = timestamp.parse().map_err(|_| BadLine::Timestamp)?;
    if !ts.is_finite() || ts.abs() > 1e15 {
        return Err(BadLine::Timestamp);
    }
    if value.is_nan() {
        return Ok(None);
    }
    // Python's int() truncates toward zero; -1 (so (-2, -1]) means now.
    let truncated = ts.trunc() as i64;
    let timestamp = if truncated == -1 { now } else { truncated };
    Ok(Some(Received {
        name,
        value,
        timestamp,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn received_lines_as_carbon_reads_them() {
        let now = 1_700_000_000;
        fn ok(line: &str) -> Received<'_> {
            parse_received(line.as_bytes(), 1_700_000_000)
                .unwrap()
                .unwrap()
        }
        assert_eq!(
            ok("a.b 1.5 1700000000"),
            Received {
                name: "a.b",
                value: 1.5,
                timestamp: 1_700_000_000
            }
        );
        assert_eq!(ok("a.b\t 2   1699999999.9\r").timestamp, 1_699_999_999);
        assert_eq!(ok("a.b 1e3 -1").timestamp, now);
        assert_eq!(ok("a.b 1 -1.5").timestamp, now);
        assert_eq!(ok("a.b inf 10").value, f64::INFINITY);
        assert_eq!(ok("a.b +5 10").value, 5.0);
        assert_eq!(parse_received(b"a.b nan 10", now), Ok(None));
        assert_eq!(parse_received(b"a.b 1 inf", now), Err(BadLine::Timestamp));
        assert_eq!(parse_received(b"a.b 1", now), Err(BadLine::Fields));
        assert_eq!(parse_received(b"a.b x 1", now), Err(BadLine::Value));
        assert_eq!(parse_received(b"a.b 0x10 1", now), Err(BadLine::Value));
        assert_eq!(parse_received(b"\xff 1 1", now), Err(BadLine::NotUtf8));
        assert_eq!(parse_received(b"", now), Err(BadLine::Fields));
    }

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
