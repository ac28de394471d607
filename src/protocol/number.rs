//! Numbers as Etsy's statsd (JavaScript) reads and writes them.
//!
//! Reading follows JavaScript's `Number(string)`: surrounding whitespace is
//! ignored, a blank string is 0, and decimal, exponent, `Infinity` and the
//! `0x`/`0o`/`0b` forms are accepted. Writing follows
//! `Number.prototype.toString` (shortest round-trip digits, exponent form
//! below 1e-6 and from 1e21 on), which is what carbon receives from Etsy.

/// Parses `s` the way JavaScript's `Number(s)` does; `None` where JavaScript
/// gives `NaN`.
pub fn parse_js_number(s: &[u8]) -> Option<f64> {
    if let Some(v) = short_decimal(s) {
        return Some(v);
    }
    let s = trim_js_space(s);
    if s.is_empty() {
        return Some(0.0);
    }
    if let Some(v) = parse_radix_literal(s) {
        return Some(v);
    }
    let (negative, unsigned) = match s[0] {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    if unsigned == b"Infinity" {
        return Some(if negative {
            f64::NEG_INFINITY
        } else {
            f64::INFINITY
        });
    }
    if !is_decimal_literal(unsigned) {
        return None;
    }
    // The grammar was checked above, so Rust's parser sees only forms it
    // reads identically to JavaScript (it would also take "inf" and "nan").
    let text = std::str::from_utf8(s).ok()?;
    text.parse::<f64>().ok()
}

/// Parses an unsigned decimal literal (digits, optional fraction, optional
/// exponent), as used for sample rates. No sign, no whitespace, no radix.
pub fn parse_unsigned_decimal(s: &[u8]) -> Option<f64> {
    if let Some(v) = short_decimal(s) {
        return Some(v);
    }
    if !is_decimal_literal(s) {
        return None;
    }
    std::str::from_utf8(s).ok()?.parse::<f64>().ok()
}

/// Powers of ten that f64 holds exactly.
const EXACT_POWERS_OF_TEN: [f64; 16] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
];

/// The common number in one pass, without the general parser: at most 15
/// digits with at most one `.` (`12`, `12.5`, `0.1`, `.5`, `5.`); `None`
/// for anything else.
fn short_decimal(s: &[u8]) -> Option<f64> {
    if s.len() > 16 {
        return None;
    }
    let (mut mantissa, mut point) = (0u64, None);
    for (i, &b) in s.iter().enumerate() {
        match b {
            b'0'..=b'9' => mantissa = mantissa * 10 + u64::from(b - b'0'),
            b'.' if point.is_none() => point = Some(i),
            _ => return None,
        }
    }
    let fraction = point.map_or(0, |at| s.len() - at - 1);
    exact_decimal(mantissa, s.len() - usize::from(point.is_some()), fraction)
}

/// `mantissa / 10^fraction` for a number written with `digits` digits,
/// `fraction` of them after the point; `None` past 15 digits or with none.
/// Both operands are then exact in f64, so the one division rounds once and
/// gives the value a full parse of those digits gives.
pub(crate) fn exact_decimal(mantissa: u64, digits: usize, fraction: usize) -> Option<f64> {
    if digits == 0 || digits > 15 {
        return None;
    }
    Some(mantissa as f64 / EXACT_POWERS_OF_TEN.get(fraction)?)
}

/// JavaScript's whitespace for `Number()` and `trim()`, restricted to ASCII.
pub fn is_js_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// `s` without JavaScript's leading and trailing white space.
pub fn trim_js_space(mut s: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = s {
        if is_js_space(*first) {
            s = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = s {
        if is_js_space(*last) {
            s = rest;
        } else {
            break;
        }
    }
    s
}

/// `digits [. digits?] | . digits`, then an optional `e[+-]digits`.
fn is_decimal_literal(s: &[u8]) -> bool {
    let mut i = 0;
    let int_digits = count_digits(&s[i..]);
    i += int_digits;
    let mut frac_digits = 0;
    if s.get(i) == Some(&b'.') {
        i += 1;
        frac_digits = count_digits(&s[i..]);
        i += frac_digits;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if matches!(s.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(s.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        let exp_digits = count_digits(&s[i..]);
        if exp_digits == 0 {
            return false;
        }
        i += exp_digits;
    }
    i == s.len()
}

fn count_digits(s: &[u8]) -> usize {
    s.iter().take_while(|b| b.is_ascii_digit()).count()
}

/// `0x1F`, `0o17`, `0b101` (unsigned only, as in JavaScript).
fn parse_radix_literal(s: &[u8]) -> Option<f64> {
    if s.len() < 3 || s[0] != b'0' {
        return None;
    }
    let radix = match s[1] {
        b'x' | b'X' => 16,
        b'o' | b'O' => 8,
        b'b' | b'B' => 2,
        _ => return None,
    };
    let mut value = 0f64;
    for &b in &s[2..] {
        let digit = (b as char).to_digit(radix)?;
        value = value * f64::from(radix) + f64::from(digit);
    }
    Some(value)
}

/// Appends `value` as JavaScript's `String(value)` would print it. Only
/// finite values reach carbon; the caller filters the others.
pub fn write_js_number(out: &mut String, value: f64) {
    if value.is_finite() {
        let mut buf = ryu_js::Buffer::new();
        out.push_str(buf.format_finite(value));
    } else if value.is_nan() {
        out.push_str("NaN");
    } else if value > 0.0 {
        out.push_str("Infinity");
    } else {
        out.push_str("-Infinity");
    }
}

/// The JavaScript string form of `value` as a new `String`.
pub fn js_number_string(value: f64) -> String {
    let mut s = String::new();
    write_js_number(&mut s, value);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_javascript_number() {
        let cases: &[(&str, Option<f64>)] = &[
            ("1", Some(1.0)),
            ("+10e1", Some(100.0)),
            ("-10", Some(-10.0)),
            ("1e-06", Some(1e-6)),
            (" 5", Some(5.0)),
            (" ", Some(0.0)),
            ("", Some(0.0)),
            ("0x10", Some(16.0)),
            ("0b101", Some(5.0)),
            ("Infinity", Some(f64::INFINITY)),
            ("-Infinity", Some(f64::NEG_INFINITY)),
            (".5", Some(0.5)),
            ("5.", Some(5.0)),
            ("abc", None),
            ("0,345345", None),
            ("inf", None),
            ("nan", None),
            ("NaN", None),
            ("1e", None),
            ("-0x10", None),
            (".", None),
            ("1.2.3", None),
        ];
        for (text, want) in cases {
            assert_eq!(parse_js_number(text.as_bytes()), *want, "Number({text:?})");
        }
    }

    #[test]
    fn writes_like_javascript_to_string() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "0"),
            (1.0, "1"),
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (1e-7, "1e-7"),
            (0.000001, "0.000001"),
            (121.62099599438686, "121.62099599438686"),
            (2.0 / 3.0, "0.6666666666666666"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
        ];
        for (value, want) in cases {
            assert_eq!(js_number_string(*value), *want);
        }
    }
}
