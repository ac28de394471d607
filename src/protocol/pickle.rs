//! Carbon's pickle protocol (port 2004): frames of a u32 big-endian length
//! and a pickled list of `(path, (timestamp, value))`.
//!
//! The encoder writes protocol 2 without a memo (what carbon-relay sends,
//! and what every carbon and go-carbon reads). The decoder accepts the safe
//! opcode subset real senders use (protocols 0-5, no globals, no object
//! construction) and never panics; it is used to check frames and, later,
//! to receive them.

/// Appends one frame holding `points` (name, timestamp, value).
pub fn encode_frame<'a>(out: &mut Vec<u8>, points: impl IntoIterator<Item = (&'a str, i64, f64)>) {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(&[PROTO, 2, EMPTY_LIST, MARK]);
    let mut any = false;
    for (name, ts, value) in points {
        any = true;
        put_str(out, name);
        put_int(out, ts);
        put_float(out, value);
        out.extend_from_slice(&[TUPLE2, TUPLE2]);
    }
    if any {
        out.push(APPENDS);
    } else {
        // An empty list: drop the MARK.
        out.pop();
    }
    out.push(STOP);
    let body = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&body.to_be_bytes());
}

const PROTO: u8 = 0x80;
const MARK: u8 = b'(';
const STOP: u8 = b'.';
const EMPTY_LIST: u8 = b']';
const APPENDS: u8 = b'e';
const EMPTY_DICT: u8 = b'}';
const SETITEMS: u8 = b'u';
const TUPLE: u8 = b't';
const TUPLE2: u8 = 0x86;

fn put_str(out: &mut Vec<u8>, text: &str) {
    out.push(b'X');
    out.extend_from_slice(&(text.len() as u32).to_le_bytes());
    out.extend_from_slice(text.as_bytes());
}

fn put_int(out: &mut Vec<u8>, n: i64) {
    match i32::try_from(n) {
        Ok(small) => {
            out.push(b'J');
            out.extend_from_slice(&small.to_le_bytes());
        }
        Err(_) => {
            // LONG1: little-endian two's complement, 8 bytes is enough.
            out.push(0x8a);
            out.push(8);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
}

fn put_float(out: &mut Vec<u8>, v: f64) {
    out.push(b'G');
    out.extend_from_slice(&v.to_be_bytes());
}

/// Writes one pickle (protocol 2, no memo) of plain data: None, bools,
/// ints, floats, str, lists, tuples and dicts, what any safe unpickler
/// takes. Containers are opened and closed in order; a dict's items are
/// written key, value, key, value.
pub struct Pickler {
    out: Vec<u8>,
}

impl Default for Pickler {
    fn default() -> Self {
        Pickler::new()
    }
}

impl Pickler {
    /// An empty pickle.
    pub fn new() -> Pickler {
        Pickler {
            out: vec![PROTO, 2],
        }
    }

    /// None.
    pub fn none(&mut self) {
        self.out.push(b'N');
    }

    /// True or False.
    pub fn bool(&mut self, b: bool) {
        self.out.push(if b { 0x88 } else { 0x89 });
    }

    /// An int.
    pub fn int(&mut self, n: i64) {
        put_int(&mut self.out, n);
    }

    /// A float.
    pub fn float(&mut self, v: f64) {
        put_float(&mut self.out, v);
    }

    /// A float or None.
    pub fn option_float(&mut self, v: Option<f64>) {
        match v {
            Some(v) => self.float(v),
            None => self.none(),
        }
    }

    /// A str.
    pub fn str(&mut self, text: &str) {
        put_str(&mut self.out, text);
    }

    /// Opens a list.
    pub fn begin_list(&mut self) {
        self.out.extend_from_slice(&[EMPTY_LIST, MARK]);
    }

    /// Closes the open list.
    pub fn end_list(&mut self) {
        self.out.push(APPENDS);
    }

    /// Opens a dict.
    pub fn begin_dict(&mut self) {
        self.out.extend_from_slice(&[EMPTY_DICT, MARK]);
    }

    /// Closes the open dict.
    pub fn end_dict(&mut self) {
        self.out.push(SETITEMS);
    }

    /// Opens a tuple.
    pub fn begin_tuple(&mut self) {
        self.out.push(MARK);
    }

    /// Closes the open tuple.
    pub fn end_tuple(&mut self) {
        self.out.push(TUPLE);
    }

    /// The finished pickle.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.push(STOP);
        self.out
    }
}

/// A decoded pickle value (the subset the metric payload uses).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// Python's None.
    None,
    /// A bool.
    Bool(bool),
    /// An int.
    Int(i64),
    /// A float.
    Float(f64),
    /// A str (or bytes, decoded).
    Str(String),
    /// A list.
    List(Vec<Value>),
    /// A tuple.
    Tuple(Vec<Value>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
/// Why a pickle could not be decoded.
pub enum PickleError {
    #[error("truncated pickle")]
    /// The data ended inside a value.
    Truncated,
    #[error("opcode 0x{0:02x} is not accepted")]
    /// An opcode outside the safe subset.
    Refused(u8),
    #[error("malformed pickle: {0}")]
    /// Structurally wrong (what is wrong).
    Malformed(&'static str),
}

/// Decodes one pickle body (without the length prefix).
pub fn decode(data: &[u8]) -> Result<Value, PickleError> {
    let mut r = Reader { data, pos: 0 };
    let mut stack: Vec<Value> = Vec::new();
    let mut marks: Vec<usize> = Vec::new();
    let mut memo: std::collections::HashMap<u64, Value> = std::collections::HashMap::new();
    loop {
        let op = r.byte()?;
        match op {
            0x80 => {
                r.byte()?;
            }
            0x95 => {
                r.take(8)?;
            }
            b'.' => {
                return stack
                    .pop()
                    .ok_or(PickleError::Malformed("empty stack at STOP"))
            }
            b'(' => marks.push(stack.len()),
            b'0' => {
                stack.pop();
            }
            b'1' => {
                let m = marks
                    .pop()
                    .ok_or(PickleError::Malformed("POP_MARK without MARK"))?;
                stack.truncate(m);
            }
            b']' => stack.push(Value::List(Vec::new())),
            b')' => stack.push(Value::Tuple(Vec::new())),
            b'l' | b't' => {
                let m = marks
                    .pop()
                    .ok_or(PickleError::Malformed("LIST/TUPLE without MARK"))?;
                if m > stack.len() {
                    return Err(PickleError::Malformed("mark beyond stack"));
                }
                let items = stack.split_off(m);
                stack.push(if op == b'l' {
                    Value::List(items)
                } else {
                    Value::Tuple(items)
                });
            }
            0x85..=0x87 => {
                let n = (op - 0x84) as usize;
                if stack.len() < n {
                    return Err(PickleError::Malformed("TUPLEn on a short stack"));
                }
                let items = stack.split_off(stack.len() - n);
                stack.push(Value::Tuple(items));
            }
            b'a' => {
                let item = stack
                    .pop()
                    .ok_or(PickleError::Malformed("APPEND on empty stack"))?;
                match stack.last_mut() {
                    Some(Value::List(l)) => l.push(item),
                    _ => return Err(PickleError::Malformed("APPEND to a non-list")),
                }
            }
            b'e' => {
                let m = marks
                    .pop()
                    .ok_or(PickleError::Malformed("APPENDS without MARK"))?;
                if m > stack.len() || m == 0 {
                    return Err(PickleError::Malformed("APPENDS without a list"));
                }
                let items = stack.split_off(m);
                match stack.last_mut() {
                    Some(Value::List(l)) => l.extend(items),
                    _ => return Err(PickleError::Malformed("APPENDS to a non-list")),
                }
            }
            b'N' => stack.push(Value::None),
            0x88 => stack.push(Value::Bool(true)),
            0x89 => stack.push(Value::Bool(false)),
            b'I' => {
                let line = r.line()?;
                stack.push(match line {
                    b"01" => Value::Bool(true),
                    b"00" => Value::Bool(false),
                    _ => Value::Int(parse_int(line)?),
                });
            }
            b'L' => {
                let line = r.line()?;
                let line = line.strip_suffix(b"L").unwrap_or(line);
                stack.push(Value::Int(parse_int(line)?));
            }
            b'J' => stack.push(Value::Int(i64::from(i32::from_le_bytes(r.array()?)))),
            b'K' => stack.push(Value::Int(i64::from(r.byte()?))),
            b'M' => stack.push(Value::Int(i64::from(u16::from_le_bytes(r.array()?)))),
            0x8a | 0x8b => {
                let n = if op == 0x8a {
                    usize::from(r.byte()?)
                } else {
                    u32::from_le_bytes(r.array()?) as usize
                };
                let bytes = r.take(n)?;
                if n > 8 {
                    return Err(PickleError::Malformed("integer wider than 64 bits"));
                }
                let mut buf = if bytes.last().is_some_and(|b| b & 0x80 != 0) {
                    [0xffu8; 8]
                } else {
                    [0u8; 8]
                };
                buf[..n].copy_from_slice(bytes);
                stack.push(Value::Int(i64::from_le_bytes(buf)));
            }
            b'F' => {
                let line = r.line()?;
                let text =
                    std::str::from_utf8(line).map_err(|_| PickleError::Malformed("FLOAT text"))?;
                let v = text
                    .trim()
                    .parse::<f64>()
                    .map_err(|_| PickleError::Malformed("FLOAT text"))?;
                stack.push(Value::Float(v));
            }
            b'G' => stack.push(Value::Float(f64::from_be_bytes(r.array()?))),
            b'S' => {
                let line = r.line()?;
                stack.push(Value::Str(unquote(line)?));
            }
            b'V' => {
                let line = r.line()?;
                stack.push(Value::Str(String::from_utf8_lossy(line).into_owned()));
            }
            b'T' | b'X' | b'B' => {
                let n = u32::from_le_bytes(r.array()?) as usize;
                stack.push(Value::Str(String::from_utf8_lossy(r.take(n)?).into_owned()));
            }
            b'U' | 0x8c | b'C' => {
                let n = usize::from(r.byte()?);
                stack.push(Value::Str(String::from_utf8_lossy(r.take(n)?).into_owned()));
            }
            0x8d | 0x8e => {
                let n = u64::from_le_bytes(r.array()?);
                let n = usize::try_from(n).map_err(|_| PickleError::Truncated)?;
                stack.push(Value::Str(String::from_utf8_lossy(r.take(n)?).into_owned()));
            }
            b'p' | b'q' | b'r' | 0x94 => {
                let id = match op {
                    b'p' => parse_int(r.line()?)? as u64,
                    b'q' => u64::from(r.byte()?),
                    b'r' => u64::from(u32::from_le_bytes(r.array()?)),
                    _ => memo.len() as u64, // MEMOIZE: the next free index
                };
                let top = stack.last().cloned();
                memo.insert(
                    id,
                    top.ok_or(PickleError::Malformed("memo PUT on an empty stack"))?,
                );
            }
            b'g' | b'h' | b'j' => {
                let id = match op {
                    b'g' => parse_int(r.line()?)? as u64,
                    b'h' => u64::from(r.byte()?),
                    _ => u64::from(u32::from_le_bytes(r.array()?)),
                };
                stack.push(
                    memo.get(&id)
                        .cloned()
                        .ok_or(PickleError::Malformed("GET of an unknown memo"))?,
                );
            }
            // GLOBAL, STACK_GLOBAL, REDUCE, BUILD, INST, OBJ, NEWOBJ, EXT,
            // PERSID, dicts and anything unknown.
            other => return Err(PickleError::Refused(other)),
        }
    }
}

/// Decodes a carbon payload: the points of every well-formed element
/// (name, timestamp, value); malformed elements are skipped, as carbon does.
pub fn decode_points(data: &[u8]) -> Result<Vec<(String, f64, f64)>, PickleError> {
    let Value::List(items) = decode(data)? else {
        return Err(PickleError::Malformed("payload is not a list"));
    };
    let number = |v: &Value| match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) => Some(*f),
        Value::Str(s) => s.trim().parse().ok(),
        _ => None,
    };
    Ok(items
        .iter()
        .filter_map(|item| {
            let (Value::Tuple(pair) | Value::List(pair)) = item else {
                return None;
            };
            let [Value::Str(name), Value::Tuple(point) | Value::List(point)] = pair.as_slice()
            else {
                return None;
            };
            let [ts, value] = point.as_slice() else {
                return None;
            };
            Some((name.clone(), number(ts)?, number(value)?))
        })
        .collect())
}

struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, PickleError> {
        let b = *self.data.get(self.pos).ok_or(PickleError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).ok_or(PickleError::Truncated)?;
        let s = self.data.get(self.pos..end).ok_or(PickleError::Truncated)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn line(&mut self) -> Result<&'a [u8], PickleError> {
        let rest = &self.data[self.pos.min(self.data.len())..];
        let n = memchr::memchr(b'\n', rest).ok_or(PickleError::Truncated)?;
        self.pos += n + 1;
        Ok(&rest[..n])
    }
}

fn parse_int(text: &[u8]) -> Result<i64, PickleError> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.trim().parse().ok())
        .ok_or(PickleError::Malformed("integer text"))
}

/// A protocol-0 STRING argument: a quoted Python literal (escapes beyond
/// `\\`, `\'` and `\n` are kept as written).
fn unquote(line: &[u8]) -> Result<String, PickleError> {
    let inner = match line {
        [b'\'', inner @ .., b'\''] | [b'"', inner @ .., b'"'] => inner,
        _ => return Err(PickleError::Malformed("STRING without quotes")),
    };
    let text = String::from_utf8_lossy(inner);
    Ok(text
        .replace("\\'", "'")
        .replace("\\n", "\n")
        .replace("\\\\", "\\"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_frame_is_the_spec_bytes() {
        let mut out = Vec::new();
        encode_frame(&mut out, std::iter::empty());
        assert_eq!(out, [0, 0, 0, 4, 0x80, 0x02, b']', b'.']);
    }

    #[test]
    fn encode_then_decode() {
        let mut out = Vec::new();
        encode_frame(
            &mut out,
            [("a.b", 1_700_000_000, 1.5), ("c", 5_000_000_000, -2.0)],
        );
        let len = u32::from_be_bytes([out[0], out[1], out[2], out[3]]) as usize;
        assert_eq!(len, out.len() - 4);
        let points = decode_points(&out[4..]).unwrap();
        assert_eq!(
            points,
            vec![("a.b".into(), 1.7e9, 1.5), ("c".into(), 5e9, -2.0)]
        );
    }

    #[test]
    fn the_pickler_writes_what_the_decoder_reads() {
        let mut p = Pickler::new();
        p.begin_list();
        p.str("a.b");
        p.int(1_796_169_600);
        p.int(-(1 << 40));
        p.option_float(Some(1.5));
        p.option_float(None);
        p.bool(true);
        p.begin_tuple();
        p.float(2.0);
        p.end_tuple();
        p.end_list();
        assert_eq!(
            decode(&p.finish()),
            Ok(Value::List(vec![
                Value::Str("a.b".into()),
                Value::Int(1_796_169_600),
                Value::Int(-(1 << 40)),
                Value::Float(1.5),
                Value::None,
                Value::Bool(true),
                Value::Tuple(vec![Value::Float(2.0)]),
            ]))
        );
    }

    #[test]
    fn decodes_what_python_and_etsy_send() {
        // Python 3: pickle.dumps([("pk.example", (1700000000, 1.25))], protocol=2)
        let py2 = b"\x80\x02]q\x00X\n\x00\x00\x00pk.exampleq\x01J\x00\xf1SeG?\xf4\x00\x00\x00\x00\x00\x00\x86q\x02\x86q\x03a.";
        assert_eq!(
            decode_points(py2).unwrap(),
            vec![("pk.example".into(), 1.7e9, 1.25)]
        );
        // Etsy's hand-written protocol 0, values as strings.
        let etsy = b"(l(S'stats.x'\n(L1795299337L\nS'0.5'\ntta.";
        assert_eq!(
            decode_points(etsy).unwrap(),
            vec![("stats.x".into(), 1795299337.0, 0.5)]
        );
    }

    #[test]
    fn refuses_globals_and_never_panics_on_garbage() {
        assert_eq!(decode(b"cos\nsystem\n."), Err(PickleError::Refused(b'c')));
        for bad in [
            &b""[..],
            b"(",
            b"\x80",
            b"X\xff\xff\xff\xff",
            b"e.",
            b"t.",
            b"\x8a\xff",
            b"h\x05.",
        ] {
            assert!(decode(bad).is_err());
        }
    }
}
