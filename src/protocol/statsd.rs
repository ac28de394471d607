//! The StatsD line grammar, as Etsy's statsd 0.9 implements it, plus the
//! DogStatsD fields real clients send.
//!
//! A line is `key[:sample]...[|#tags]` and a sample is
//! `value|type[|@rate][|field]...`. Parsing is zero-copy over the line's
//! bytes: [`parse_line`] splits a line, [`MetricLine::samples`] walks its
//! samples one at a time and [`MetricLine::write_key`] writes the sanitised
//! key (tags folded in as `;k=v`) into a caller-owned buffer, so a known key
//! costs no allocation. Nothing here panics on any input.

use memchr::memchr;

use super::number::{
    exact_decimal, is_js_space, parse_js_number, parse_unsigned_decimal, trim_js_space,
};

/// What one sample updates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SampleKind {
    /// `c`.
    Counter,
    /// `delta` is true when the value had a leading `+` or `-`.
    Gauge {
        /// `+`/`-` value: a delta.
        delta: bool,
    },
    /// `ms`, and also DogStatsD's `h` and `d`.
    Timer,
    /// `s`.
    Set,
}

/// One `value|type[|@rate]` sample of a line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample<'a> {
    /// The type.
    pub kind: SampleKind,
    /// The numeric value (0 for sets).
    pub value: f64,
    /// The sample rate, finite and > 0; 1 when absent.
    pub rate: f64,
    /// The set member, exactly as sent (`"0"` for an empty member).
    pub member: &'a [u8],
}

/// Why a sample was refused. Each refused sample counts one bad line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadSample {
    #[error("no value (the line has no ':')")]
    /// No ':'.
    NoValue,
    #[error("no type after the value")]
    /// No type.
    NoType,
    #[error("the value is not a number")]
    /// Not a number.
    NotANumber,
    #[error("unknown metric type (c, ms, h, d, g or s)")]
    /// An unknown type.
    UnknownType,
    #[error("the value is not finite")]
    /// Not finite.
    NotFinite,
    #[error("a timer value must be >= 0")]
    /// A negative timer.
    NegativeTimer,
    #[error("the sample rate is not a decimal number > 0")]
    /// A bad rate.
    BadRate,
    #[error("the field after the type is neither a rate nor a DogStatsD field")]
    /// An unknown field.
    UnknownField,
}

/// One non-empty line, classified.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Line<'a> {
    /// A metric line.
    Metric(MetricLine<'a>),
    /// A DogStatsD event (`_e{...}`), the whole line: see [`parse_event`].
    Event(&'a [u8]),
    /// A DogStatsD service check (`_sc|...`): dropped and counted.
    ServiceCheck,
}

/// A DogStatsD event: `_e{title_len,text_len}:title|text` and optional
/// fields `|d:timestamp`, `|h:host`, `|p:priority`, `|t:alert_type`,
/// `|s:source`, `|k:aggregation_key`, `|#tag,tag:value`.
#[derive(Debug, Clone, PartialEq)]
pub struct DogEvent<'a> {
    /// The title.
    pub title: &'a str,
    /// The text, its `\n` escapes turned into newlines.
    pub text: String,
    /// `d:`, Unix seconds.
    pub timestamp: Option<f64>,
    /// `h:`.
    pub host: Option<&'a str>,
    /// `#` tags, as sent.
    pub tags: Vec<&'a str>,
}

/// Why an event line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BadEvent {
    #[error("the event's header is not _e{{title_len,text_len}}:")]
    /// No `{n,m}:` header.
    Header,
    #[error("the event's title and text lengths do not fit the line")]
    /// Lengths past the line, or not at a `|`.
    Lengths,
    #[error("the event's title or text is not UTF-8")]
    /// Not UTF-8.
    Utf8,
    #[error("the event's d: timestamp is not a number")]
    /// A bad `d:`.
    Timestamp,
}

/// Parses a DogStatsD event line (from [`Line::Event`]).
pub fn parse_event(line: &[u8]) -> Result<DogEvent<'_>, BadEvent> {
    let rest = line.strip_prefix(b"_e{").ok_or(BadEvent::Header)?;
    let close = memchr(b'}', rest).ok_or(BadEvent::Header)?;
    let lengths = std::str::from_utf8(&rest[..close]).map_err(|_| BadEvent::Header)?;
    let (title_len, text_len) = lengths.split_once(',').ok_or(BadEvent::Header)?;
    let title_len: usize = title_len.trim().parse().map_err(|_| BadEvent::Header)?;
    let text_len: usize = text_len.trim().parse().map_err(|_| BadEvent::Header)?;
    let body = rest[close + 1..]
        .strip_prefix(b":")
        .ok_or(BadEvent::Header)?;
    let text_start = title_len.checked_add(1).ok_or(BadEvent::Lengths)?;
    let text_end = text_start.checked_add(text_len).ok_or(BadEvent::Lengths)?;
    if text_end > body.len()
        || body.get(title_len) != Some(&b'|')
        || (text_end < body.len() && body[text_end] != b'|')
    {
        return Err(BadEvent::Lengths);
    }
    let title = std::str::from_utf8(&body[..title_len]).map_err(|_| BadEvent::Utf8)?;
    let text = std::str::from_utf8(&body[text_start..text_end])
        .map_err(|_| BadEvent::Utf8)?
        .replace("\\n", "\n");
    let mut event = DogEvent {
        title,
        text,
        timestamp: None,
        host: None,
        tags: Vec::new(),
    };
    let fields = body.get(text_end + 1..).unwrap_or_default();
    for field in fields.split(|b| *b == b'|').filter(|f| !f.is_empty()) {
        let Ok(field) = std::str::from_utf8(field) else {
            continue;
        };
        if let Some(tags) = field.strip_prefix('#') {
            event
                .tags
                .extend(tags.split(',').map(str::trim).filter(|t| !t.is_empty()));
        } else if let Some(d) = field.strip_prefix("d:") {
            let ts: f64 = d.trim().parse().map_err(|_| BadEvent::Timestamp)?;
            if !ts.is_finite() {
                return Err(BadEvent::Timestamp);
            }
            event.timestamp = Some(ts);
        } else if let Some(h) = field.strip_prefix("h:") {
            event.host = Some(h);
        }
        // p:, t:, s:, k: have no place in a Graphite event.
    }
    Ok(event)
}

/// A metric line split into its parts, nothing validated yet.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MetricLine<'a> {
    raw_key: &'a [u8],
    /// The tag list after `|#`, up to the next `|` (may be empty).
    tags: &'a [u8],
    /// Everything after the key's `:`; `None` when the line had no `:`.
    samples: Option<&'a [u8]>,
    /// Fields that followed the tag list (`|T123`, `|@0.5`...): they belong
    /// to the last sample.
    trailer: &'a [u8],
}

/// Splits a packet into its lines (on `\n`), skipping empty ones. A trailing
/// `\r` is removed, so `\r\n` line ends work.
pub fn lines(packet: &[u8]) -> impl Iterator<Item = &[u8]> {
    // memchr finds the newlines of a whole datagram in a few SIMD steps;
    // a byte-by-byte split costs more than that on 20-byte lines.
    let mut start = 0;
    memchr::memchr_iter(b'\n', packet)
        .chain(std::iter::once(packet.len()))
        .filter_map(move |end| {
            let line = packet.get(start..end).unwrap_or_default();
            start = end + 1;
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            (!line.is_empty()).then_some(line)
        })
}

/// Position of the first `|#` (a memchr for `#`, rarer than `|`; building
/// a substring searcher per line would cost more than the line).
fn find_tag_marker(line: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = memchr(b'#', &line[from..]) {
        let at = from + i;
        if at > 0 && line[at - 1] == b'|' {
            return Some(at - 1);
        }
        from = at + 1;
    }
    None
}

/// How tags are written into a series' name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TagStyle {
    /// Graphite 1.1 tagged series, sorted and normalised as carbon does.
    #[default]
    Graphite,
    /// Etsy statsd 0.9: `;tag` per DogStatsD tag in the order sent.
    Etsy,
}

/// The tags of one line, on the stack up to `INLINE_TAGS` (lines carry a
/// handful), beyond that in a Vec, so no tag is ever lost.
#[derive(Default)]
struct TagList<'a> {
    inline: [(&'a [u8], &'a [u8]); INLINE_TAGS],
    len: usize,
    more: Vec<(&'a [u8], &'a [u8])>,
}

const INLINE_TAGS: usize = 16;

impl<'a> TagList<'a> {
    /// `k<sep>v`, or a valueless `k` (value empty, written as `true`).
    fn push_split(&mut self, tag: &'a [u8], sep: u8) {
        if tag.is_empty() {
            return;
        }
        let pair = match memchr(sep, tag) {
            Some(at) => (&tag[..at], &tag[at + 1..]),
            None => (tag, &tag[tag.len()..]),
        };
        if self.len < INLINE_TAGS {
            self.inline[self.len] = pair;
            self.len += 1;
        } else {
            self.more.push(pair);
        }
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sorted by key (stable), one per key: the last one given.
    fn sorted_unique(&mut self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + '_ {
        let tags: &mut [(&[u8], &[u8])] = if self.more.is_empty() {
            &mut self.inline[..self.len]
        } else {
            self.more
                .splice(0..0, self.inline[..self.len].iter().copied());
            self.len = 0;
            &mut self.more
        };
        tags.sort_by(|a, b| a.0.cmp(b.0));
        let tags: &[(&[u8], &[u8])] = tags;
        tags.iter()
            .enumerate()
            .filter(move |(i, t)| tags.get(i + 1).is_none_or(|next| next.0 != t.0))
            .map(|(_, t)| *t)
    }
}

/// Bytes that sanitising keeps unchanged (`[A-Za-z0-9_.;=-]`).
static KEEP: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b';' | b'=' | b'-');
        b += 1;
    }
    t
};

/// Classifies one line (from [`lines`]: non-empty, no `\n`).
pub fn parse_line(line: &[u8]) -> Line<'_> {
    if line.starts_with(b"_e{") {
        return Line::Event(line);
    }
    if line.starts_with(b"_sc|") {
        return Line::ServiceCheck;
    }
    let (body, tags, trailer) = match find_tag_marker(line) {
        Some(at) => {
            let after = &line[at + 2..];
            let tag_end = memchr(b'|', after).unwrap_or(after.len());
            (&line[..at], &after[..tag_end], &after[tag_end..])
        }
        None => (line, &line[line.len()..], &line[line.len()..]),
    };
    let (raw_key, samples) = match memchr(b':', body) {
        Some(at) => (&body[..at], Some(&body[at + 1..])),
        None => (body, None),
    };
    Line::Metric(MetricLine {
        raw_key,
        tags,
        samples,
        trailer,
    })
}

/// The common line in one pass: `key:value|type` or `key:value|type|@rate`
/// with a key sanitising leaves unchanged, a value of digits and dots,
/// type `c`, `ms`, `h`, `d` or `g`, and a rate of digits and dots. Returns
/// the key and its one sample; `None` for anything else, which then goes
/// through [`parse_line`]. For every line this accepts, [`parse_line`]
/// gives the same key and sample (a property test holds it to that); it
/// only skips the general parser's splitting.
pub fn parse_plain(line: &[u8]) -> Option<(&[u8], Sample<'_>)> {
    let plain = scan_plain(line)?;
    (plain.line_end == line.len()).then_some((&line[..plain.key_end], plain.sample))
}

/// One line of a packet, as [`packet_lines`] yields it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PacketLine<'a> {
    /// A line [`parse_plain`] accepts, already parsed.
    Plain {
        /// The line, without its line end.
        line: &'a [u8],
        /// Its key.
        key: &'a [u8],
        /// The packet from the key's first byte on, so the key can be read
        /// a word at a time past its end.
        from_key: &'a [u8],
        /// Its one sample.
        sample: Sample<'a>,
        /// Whether the key holds a `;` (Graphite-style tags to sort).
        has_semicolon: bool,
    },
    /// Any other non-empty line, for [`parse_line`].
    Other(&'a [u8]),
}

/// The lines of a packet exactly as [`lines`] splits them, the plain ones
/// parsed in the same pass that finds their end: one scan per line instead
/// of a newline search and then a parse.
pub fn packet_lines(packet: &[u8]) -> PacketLines<'_> {
    PacketLines { packet, at: 0 }
}

/// Iterator of [`packet_lines`].
pub struct PacketLines<'a> {
    packet: &'a [u8],
    at: usize,
}

impl<'a> Iterator for PacketLines<'a> {
    type Item = PacketLine<'a>;

    fn next(&mut self) -> Option<PacketLine<'a>> {
        loop {
            let rest = self.packet.get(self.at..).filter(|r| !r.is_empty())?;
            if let Some(plain) = scan_plain(rest) {
                self.at += plain.next;
                let line = &rest[..plain.line_end];
                return Some(PacketLine::Plain {
                    line,
                    key: &line[..plain.key_end],
                    from_key: rest,
                    sample: plain.sample,
                    has_semicolon: plain.has_semicolon,
                });
            }
            let end = memchr(b'\n', rest).unwrap_or(rest.len());
            self.at += end + 1;
            let line = &rest[..end];
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if !line.is_empty() {
                return Some(PacketLine::Other(line));
            }
        }
    }
}

/// A plain line found at the start of a buffer.
struct Plain<'a> {
    key_end: usize,
    sample: Sample<'a>,
    has_semicolon: bool,
    /// Where the line's text ends (before `\r\n`, `\n` or the buffer's end).
    line_end: usize,
    /// Where the next line starts.
    next: usize,
}

/// Key bytes for the scan: 0 ends the key, 1 is kept, 3 is a kept `;`.
static KEY_CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        if KEEP[b] {
            t[b] = if b == b';' as usize { 3 } else { 1 };
        }
        b += 1;
    }
    t
};

/// The length of the run of kept key bytes (`[A-Za-z0-9_.;=-]`) that
/// starts `buf`, and whether it holds a `;`. Sixteen bytes at a time while
/// the buffer has them, so the end of a key costs one predictable branch
/// rather than a mispredicted exit from a byte loop.
fn scan_key(buf: &[u8]) -> (usize, bool) {
    let mut i = 0;
    let mut semicolons = 0;
    #[cfg(target_arch = "x86_64")]
    while let Some(chunk) = buf.get(i..).and_then(|rest| rest.first_chunk::<16>()) {
        // SAFETY: classify16 needs SSE2 only, which is part of the x86-64
        // baseline: every CPU this code is built for has it.
        let (kept, semicolon) = unsafe { classify16(chunk) };
        let stop = !kept & 0xFFFF;
        if stop == 0 {
            semicolons |= semicolon;
            i += 16;
            continue;
        }
        let n = stop.trailing_zeros();
        semicolons |= semicolon & ((1 << n) - 1);
        return (i + n as usize, semicolons != 0);
    }
    let mut classes = 0u8;
    while let Some(&b) = buf.get(i) {
        let class = KEY_CLASS[b as usize];
        if class == 0 {
            break;
        }
        classes |= class;
        i += 1;
    }
    (i, semicolons != 0 || classes & 2 != 0)
}

/// Bit masks of the key bytes and of the `;` among 16 bytes (SSE2, which
/// every x86-64 CPU has).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
fn classify16(chunk: &[u8; 16]) -> (u32, u32) {
    use std::arch::x86_64::*;
    let half = |at: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&chunk[at..at + 8]);
        i64::from_le_bytes(word)
    };
    let v = _mm_set_epi64x(half(8), half(0));
    let within = |v: __m128i, lo: u8, hi: u8| {
        let clamped = _mm_min_epu8(
            _mm_max_epu8(v, _mm_set1_epi8(lo as i8)),
            _mm_set1_epi8(hi as i8),
        );
        _mm_cmpeq_epi8(clamped, v)
    };
    let is = |c: u8| _mm_cmpeq_epi8(v, _mm_set1_epi8(c as i8));
    // Setting bit 5 maps A-Z onto a-z and nothing else into a-z.
    let letters = within(_mm_or_si128(v, _mm_set1_epi8(0x20)), b'a', b'z');
    let semicolon = is(b';');
    let punctuation = _mm_or_si128(
        _mm_or_si128(is(b'_'), is(b'.')),
        _mm_or_si128(is(b'='), is(b'-')),
    );
    let kept = _mm_or_si128(
        _mm_or_si128(within(v, b'0', b'9'), letters),
        _mm_or_si128(punctuation, semicolon),
    );
    (
        _mm_movemask_epi8(kept) as u32,
        _mm_movemask_epi8(semicolon) as u32,
    )
}

/// Parses a plain line at the start of `buf`, up to its line end; `None`
/// if the line is anything else. Integer values are read during the scan.
fn scan_plain(buf: &[u8]) -> Option<Plain<'_>> {
    let (key_end, has_semicolon) = scan_key(buf);
    let mut i = key_end;
    if key_end == 0 || buf.get(i) != Some(&b':') {
        return None;
    }
    i += 1;
    let value_start = i;
    let (mut mantissa, mut points, mut point_at) = (0u64, 0usize, 0usize);
    while let Some(&b) = buf.get(i) {
        match b {
            b'0'..=b'9' => mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(b - b'0')),
            b'.' => {
                points += 1;
                point_at = i;
            }
            _ => break,
        }
        i += 1;
    }
    let digits = &buf[value_start..i];
    if digits.is_empty() || buf.get(i) != Some(&b'|') {
        return None;
    }
    // Up to 15 digits and one point are read from the scan's own mantissa;
    // anything else takes the full parser.
    let fraction = if points == 1 { i - point_at - 1 } else { 0 };
    let exact = (points <= 1)
        .then(|| exact_decimal(mantissa, digits.len() - points, fraction))
        .flatten();
    let value = match exact {
        Some(value) => value,
        None => parse_js_number(digits).filter(|v| v.is_finite())?,
    };
    i += 1;
    let (kind, type_len) = match (buf.get(i), buf.get(i + 1)) {
        (Some(b'c'), _) => (SampleKind::Counter, 1),
        (Some(b'g'), _) => (SampleKind::Gauge { delta: false }, 1),
        (Some(b'h' | b'd'), _) => (SampleKind::Timer, 1),
        (Some(b'm'), Some(b's')) => (SampleKind::Timer, 2),
        _ => return None,
    };
    i += type_len;
    let mut rate = 1.0;
    if buf.get(i) == Some(&b'|') {
        if buf.get(i + 1) != Some(&b'@') {
            return None;
        }
        i += 2;
        let rate_start = i;
        while matches!(buf.get(i), Some(b'0'..=b'9' | b'.')) {
            i += 1;
        }
        if i == rate_start {
            return None;
        }
        rate = parse_rate(&buf[rate_start..i]).ok()?;
    }
    // The line must end here: `\n`, `\r\n`, a last `\r`, or the buffer.
    let next = match (buf.get(i), buf.get(i + 1)) {
        (None, _) => i,
        (Some(b'\n'), _) => i + 1,
        (Some(b'\r'), None) => i + 1,
        (Some(b'\r'), Some(b'\n')) => i + 2,
        _ => return None,
    };
    Some(Plain {
        key_end,
        sample: Sample {
            kind,
            value,
            rate,
            member: &[],
        },
        has_semicolon,
        line_end: i,
        next,
    })
}

impl<'a> MetricLine<'a> {
    /// Appends the metric's key to `out`: the raw key plus `;tag` for every
    /// tag (first `;` of a tag to `_`, first `:` to `=`), sanitised as Etsy
    /// does when `sanitize` is on.
    pub fn write_key(&self, out: &mut Vec<u8>, sanitize: bool) {
        // The common case: no tags and nothing to sanitise.
        let plain = if sanitize {
            self.raw_key.iter().all(|&b| KEEP[b as usize])
        } else {
            self.raw_key.is_ascii()
        };
        if self.tags.is_empty() && plain {
            out.extend_from_slice(self.raw_key);
            return;
        }
        let mut sink = KeySink {
            out,
            sanitize,
            in_space: false,
        };
        sink.push_bytes(self.raw_key);
        if !self.tags.is_empty() {
            for tag in self.tags.split(|&b| b == b',') {
                sink.push_char(';');
                let mut semicolon_done = false;
                let mut colon_done = false;
                sink.push_mapped(tag, |c| match c {
                    ';' if !semicolon_done => {
                        semicolon_done = true;
                        '_'
                    }
                    ':' if !colon_done => {
                        colon_done = true;
                        '='
                    }
                    other => other,
                });
            }
        }
    }

    /// Appends the key as `style` names tagged series.
    pub fn write_key_as(&self, out: &mut Vec<u8>, sanitize: bool, style: TagStyle) {
        match style {
            TagStyle::Etsy => self.write_key(out, sanitize),
            TagStyle::Graphite => self.write_graphite_key(out, sanitize),
        }
    }

    /// Appends the key as a Graphite 1.1 tagged series, normalised as
    /// carbon normalises one: the name (up to the first `;` or `,`), then
    /// `;key=value` per tag sorted by key, the last value of a repeated key
    /// winning. Tags come from the key itself (carbon's `name;k=v`,
    /// Telegraf's `name,k=v`) and from DogStatsD's `|#k:v,k2:v2`. A
    /// valueless tag (`|#canary`) becomes `canary=true`; in keys `;!^=`
    /// become `_`, in values `;` and a leading `~` become `_` (carbon
    /// refuses them); a tag whose key ends up empty is left out.
    pub fn write_graphite_key(&self, out: &mut Vec<u8>, sanitize: bool) {
        let split = self.raw_key.iter().position(|&b| b == b';' || b == b',');
        let (name, key_tags) = match split {
            Some(at) => (&self.raw_key[..at], &self.raw_key[at + 1..]),
            None => (self.raw_key, &self.raw_key[..0]),
        };
        let mut tags = TagList::default();
        for tag in key_tags.split(|&b| b == b';' || b == b',') {
            tags.push_split(tag, b'=');
        }
        if !self.tags.is_empty() {
            for tag in self.tags.split(|&b| b == b',') {
                tags.push_split(tag, b':');
            }
        }
        if tags.is_empty() {
            let plain = if sanitize {
                name.iter().all(|&b| KEEP[b as usize])
            } else {
                name.is_ascii()
            };
            if plain {
                out.extend_from_slice(name);
                return;
            }
        }
        let mut sink = KeySink {
            out,
            sanitize,
            in_space: false,
        };
        sink.push_bytes(name);
        for (key, value) in tags.sorted_unique() {
            let mark = sink.out.len();
            sink.push_char(';');
            let key_start = sink.out.len();
            sink.push_mapped(key, |c| match c {
                ';' | '!' | '^' | '=' => '_',
                other => other,
            });
            if sink.out.len() == key_start {
                sink.out.truncate(mark);
                continue;
            }
            sink.push_char('=');
            let value_start = sink.out.len();
            let mut first = true;
            sink.push_mapped(value, |c| {
                let leading = std::mem::replace(&mut first, false);
                match c {
                    ';' => '_',
                    '~' if leading => '_',
                    other => other,
                }
            });
            if sink.out.len() == value_start {
                sink.out.extend_from_slice(b"true");
            }
        }
    }

    /// The samples of the line, each parsed or refused on its own.
    pub fn samples(&self) -> Samples<'a> {
        Samples {
            rest: self.samples,
            trailer: self.trailer,
            missing_value: self.samples.is_none(),
        }
    }
}

/// Iterator over the samples of one line.
pub struct Samples<'a> {
    rest: Option<&'a [u8]>,
    trailer: &'a [u8],
    missing_value: bool,
}

impl<'a> Iterator for Samples<'a> {
    type Item = Result<Sample<'a>, BadSample>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.missing_value {
            // Etsy reads a bare `key` as a sample with no type: one bad line.
            self.missing_value = false;
            return Some(Err(BadSample::NoValue));
        }
        let rest = self.rest?;
        let (piece, last) = match sample_end(rest) {
            Some(at) => {
                self.rest = Some(&rest[at + 1..]);
                (&rest[..at], false)
            }
            None => {
                self.rest = None;
                (rest, true)
            }
        };
        let trailer = if last { self.trailer } else { &[][..] };
        Some(parse_sample(piece, trailer))
    }
}

/// Where the first sample of `rest` ends: the first `:` that is not inside
/// a DogStatsD `|c:container` or `|card:value` field (fields after the
/// type), so `a:1|c|c:abc` is one sample and `a:1|c:2|c` two.
fn sample_end(rest: &[u8]) -> Option<usize> {
    let mut field = 0;
    let mut field_start = 0;
    for at in memchr::memchr2_iter(b':', b'|', rest) {
        if rest[at] == b'|' {
            field += 1;
            field_start = at + 1;
        } else if !(field >= 2 && matches!(&rest[field_start..at], b"c" | b"card")) {
            return Some(at);
        }
    }
    None
}

fn parse_sample<'a>(piece: &'a [u8], trailer: &'a [u8]) -> Result<Sample<'a>, BadSample> {
    let mut fields = piece.split(|&b| b == b'|');
    let value = fields.next().unwrap_or_default();
    let type_field = fields.next().ok_or(BadSample::NoType)?;
    let trailer_fields = trailer
        .strip_prefix(b"|")
        .map(|t| t.split(|&b| b == b'|'))
        .into_iter()
        .flatten();

    let mut rate = 1.0;
    let mut rate_seen = false;
    for (position, field) in (2..).zip(fields.chain(trailer_fields)) {
        if let Some(text) = field.strip_prefix(b"@") {
            if !rate_seen {
                rate = parse_rate(text)?;
                rate_seen = true;
            }
        } else if field.starts_with(b"#")
            || field.starts_with(b"c:")
            || field.starts_with(b"card:")
            || field.starts_with(b"T")
        {
            // DogStatsD extras: container id, cardinality, timestamp.
        } else if position == 2 {
            // Etsy insists the field after the type is a rate; later fields
            // are ignored.
            return Err(BadSample::UnknownField);
        }
    }

    let kind_name = trim_js_space(type_field);
    if type_field == b"s" {
        let member = if value.is_empty() { &b"0"[..] } else { value };
        return Ok(Sample {
            kind: SampleKind::Set,
            value: 0.0,
            rate,
            member,
        });
    }
    // Etsy's validator: anything but an exact `s` needs a numeric value,
    // and the empty string is not numeric.
    if value.is_empty() {
        return Err(BadSample::NotANumber);
    }
    let number = parse_js_number(value).ok_or(BadSample::NotANumber)?;
    if !number.is_finite() {
        return Err(BadSample::NotFinite);
    }
    let kind = match kind_name {
        b"ms" | b"h" | b"d" => {
            if number < 0.0 {
                return Err(BadSample::NegativeTimer);
            }
            SampleKind::Timer
        }
        b"g" => SampleKind::Gauge {
            delta: matches!(value.first(), Some(b'+' | b'-')),
        },
        // A set type with surrounding blanks passed the numeric check above,
        // as in Etsy; the member is the value text.
        b"s" => {
            return Ok(Sample {
                kind: SampleKind::Set,
                value: 0.0,
                rate,
                member: value,
            })
        }
        b"c" => SampleKind::Counter,
        // Etsy counts every other type as a counter, so statsd-ruby 1.4's
        // unseparated TCP lines (`a:1|cb:2|g`) became a counter `a`; here
        // an unknown type is a bad line (README, Differences from Etsy).
        _ => return Err(BadSample::UnknownType),
    };
    Ok(Sample {
        kind,
        value: number,
        rate,
        member: &[],
    })
}

/// The text after `@`: an unsigned decimal, finite and > 0. Etsy accepts
/// more (and crashes on `@+0.5`, divides by zero on `@0`, reads `@2e-1` as
/// 2); those are bad lines here.
fn parse_rate(text: &[u8]) -> Result<f64, BadSample> {
    // Trailing blanks are fine (Etsy's Number() trims them); leading ones
    // crash Etsy and are refused here.
    let end = text.len() - text.iter().rev().take_while(|b| is_js_space(**b)).count();
    match parse_unsigned_decimal(&text[..end]) {
        Some(rate) if rate.is_finite() && rate > 0.0 => Ok(rate),
        _ => Err(BadSample::BadRate),
    }
}

/// Writes key characters, applying Etsy's sanitising when asked: runs of
/// whitespace become one `_`, `/` becomes `-`, and anything outside
/// `[A-Za-z0-9_.;=-]` is dropped.
struct KeySink<'o> {
    out: &'o mut Vec<u8>,
    sanitize: bool,
    in_space: bool,
}

impl KeySink<'_> {
    fn push_bytes(&mut self, bytes: &[u8]) {
        self.push_mapped(bytes, |c| c);
    }

    fn push_mapped(&mut self, bytes: &[u8], mut map: impl FnMut(char) -> char) {
        if !self.sanitize {
            if bytes.is_ascii() {
                for &b in bytes {
                    let c = map(b as char);
                    self.out.push(c as u8);
                }
            } else {
                let text = String::from_utf8_lossy(bytes);
                let mut utf8 = [0u8; 4];
                for c in text.chars() {
                    self.out
                        .extend_from_slice(map(c).encode_utf8(&mut utf8).as_bytes());
                }
            }
            return;
        }
        if bytes.is_ascii() {
            for &b in bytes {
                self.push_char(map(b as char));
            }
        } else {
            for c in String::from_utf8_lossy(bytes).chars() {
                self.push_char(map(c));
            }
        }
    }

    fn push_char(&mut self, c: char) {
        if !self.sanitize {
            let mut utf8 = [0u8; 4];
            self.out
                .extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
            return;
        }
        if is_js_regex_space(c) {
            if !self.in_space {
                self.out.push(b'_');
                self.in_space = true;
            }
            return;
        }
        self.in_space = false;
        match c {
            '/' => self.out.push(b'-'),
            'a'..='z' | 'A'..='Z' | '0'..='9' | '_' | '.' | ';' | '=' | '-' => {
                self.out.push(c as u8)
            }
            _ => {}
        }
    }
}

/// JavaScript's `\s`: Unicode White_Space less U+0085, plus U+FEFF.
fn is_js_regex_space(c: char) -> bool {
    (c.is_whitespace() && c != '\u{85}') || c == '\u{feff}'
}

/// Sanitises a whole key the way the parser does (for names that did not
/// come through the parser, and for tests).
pub fn sanitize_key(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut sink = KeySink {
        out: &mut out,
        sanitize: true,
        in_space: false,
    };
    sink.push_bytes(raw);
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_key_scan_stops_where_a_byte_by_byte_scan_does() {
        let reference = |buf: &[u8]| {
            let end = buf
                .iter()
                .position(|&b| !KEEP[b as usize])
                .unwrap_or(buf.len());
            (end, buf[..end].contains(&b';'))
        };
        for stop in 0..=255u8 {
            for at in [0usize, 1, 7, 15, 16, 17, 31, 33] {
                for semicolon in [None, Some(0), Some(at.saturating_sub(1)), Some(at + 1)] {
                    let mut buf: Vec<u8> = (0..40).map(|i| b"aZ09_.=-"[i % 8]).collect();
                    if let Some(s) = semicolon {
                        buf[s] = b';';
                    }
                    buf[at] = stop;
                    for len in [at + 1, at + 2, 40] {
                        let buf = &buf[..len];
                        assert_eq!(super::scan_key(buf), reference(buf), "{buf:?}");
                    }
                }
            }
        }
        assert_eq!(super::scan_key(b""), (0, false));
    }

    fn graphite_key(line: &str) -> String {
        let Line::Metric(m) = parse_line(line.as_bytes()) else {
            panic!("not a metric: {line}");
        };
        let mut out = Vec::new();
        m.write_graphite_key(&mut out, true);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn graphite_tags_are_sorted_normalised_and_deduplicated() {
        // The same series whatever the order the client sent its tags in.
        assert_eq!(
            graphite_key("dd.cnt:1|c|#svc:web,env:prod"),
            "dd.cnt;env=prod;svc=web"
        );
        assert_eq!(
            graphite_key("dd.cnt:1|c|#env:prod,svc:web"),
            "dd.cnt;env=prod;svc=web"
        );
        // Valueless tags get a value; a repeated key keeps the last value.
        assert_eq!(
            graphite_key("dd.flag:1|c|#canary,env:a,env:b"),
            "dd.flag;canary=true;env=b"
        );
        // Telegraf/Influx tags in the name, and carbon's own form.
        assert_eq!(graphite_key("name,env=prod,az=b:1|c"), "name;az=b;env=prod");
        assert_eq!(
            graphite_key("disk.used;host=a;dc=eu:4|g"),
            "disk.used;dc=eu;host=a"
        );
        // Both at once, merged.
        assert_eq!(graphite_key("m,b=2:1|c|#a:1"), "m;a=1;b=2");
        // What carbon refuses: ! ^ in keys, ~ leading a value; an empty
        // key is dropped; a value with a colon keeps it (sanitised away).
        assert_eq!(graphite_key("m:1|c|#a!b:~x,:v,k:"), "m;a_b=_x;k=true");
        // No tags: the plain key, as in Etsy mode.
        assert_eq!(graphite_key("plain.key:1|c"), "plain.key");
        // More tags than the inline list holds: none lost.
        let many: Vec<String> = (0..40).rev().map(|i| format!("t{i:02}:{i}")).collect();
        let key = graphite_key(&format!("m:1|c|#{}", many.join(",")));
        assert_eq!(key.matches(';').count(), 40);
        assert!(
            key.starts_with("m;t00=0;t01=1;") && key.ends_with(";t39=39"),
            "{key}"
        );
    }

    use super::*;

    fn key_of(line: &str) -> String {
        match parse_line(line.as_bytes()) {
            Line::Metric(m) => {
                let mut out = Vec::new();
                m.write_key(&mut out, true);
                String::from_utf8(out).unwrap()
            }
            other => panic!("not a metric line: {other:?}"),
        }
    }

    fn samples_of(line: &str) -> Vec<Result<Sample<'_>, BadSample>> {
        match parse_line(line.as_bytes()) {
            Line::Metric(m) => m.samples().collect(),
            other => panic!("not a metric line: {other:?}"),
        }
    }

    fn one(line: &str) -> Result<Sample<'_>, BadSample> {
        let mut all = samples_of(line);
        assert_eq!(all.len(), 1, "{line}");
        all.remove(0)
    }

    #[test]
    fn sanitises_keys_like_etsy() {
        assert_eq!(key_of("my key/with+junk:1|c"), "my_key-withjunk");
        assert_eq!(key_of("a\tb:1|c"), "a_b");
        assert_eq!(key_of("a \t b:1|c"), "a_b");
        assert_eq!(key_of("dots..x:1|c"), "dots..x");
        assert_eq!(key_of("ü:1|c"), "");
        assert_eq!(key_of("a\u{a0}b:1|c"), "a_b");
        assert_eq!(key_of("ex:1|c|#a:b:c,d"), "ex;a=bc;d");
        assert_eq!(key_of("t:1|c|#env:prod,region:eu"), "t;env=prod;region=eu");
        assert_eq!(
            key_of("foo+bar:250|c|#tag1:val;1,tag3:val3,tag2:val2"),
            "foobar;tag1=val_1;tag3=val3;tag2=val2"
        );
        assert_eq!(key_of("b ar;tag1=val1:1|c"), "b_ar;tag1=val1");
    }

    #[test]
    fn counters_gauges_timers_sets() {
        let s = one("hits:2|c|@0.5").unwrap();
        assert_eq!((s.kind, s.value, s.rate), (SampleKind::Counter, 2.0, 0.5));
        let s = one("g:+5|g").unwrap();
        assert_eq!(s.kind, SampleKind::Gauge { delta: true });
        let s = one("g:5|g").unwrap();
        assert_eq!(s.kind, SampleKind::Gauge { delta: false });
        let s = one("g: +5|g").unwrap();
        assert_eq!((s.kind, s.value), (SampleKind::Gauge { delta: false }, 5.0));
        assert_eq!(one("t:1e3|ms").unwrap().value, 1000.0);
        assert_eq!(one("t:5|h").unwrap().kind, SampleKind::Timer);
        assert_eq!(one("t:5|d").unwrap().kind, SampleKind::Timer);
        let s = one("u:alice|s").unwrap();
        assert_eq!((s.kind, s.member), (SampleKind::Set, &b"alice"[..]));
        assert_eq!(one("u:|s").unwrap().member, b"0");
        assert_eq!(one("odd:5|C"), Err(BadSample::UnknownType));
        // statsd-ruby 1.4 over TCP, lines without separators (the ingest
        // refuses the whole line).
        assert_eq!(samples_of("a:1|cb:2|g")[0], Err(BadSample::UnknownType));
        assert_eq!(one("spaced:5| c ").unwrap().kind, SampleKind::Counter);
        assert_eq!(one("ec:0x10|c").unwrap().value, 16.0);
        assert_eq!(one("ed: |c").unwrap().value, 0.0);
        assert_eq!(one("r:1|c|@1e-05").unwrap().rate, 1e-5);
        assert_eq!(one("ee:1|c|@0.5|extra").unwrap().rate, 0.5);
        assert_eq!(one("rate2:1|c|@0.5 ").unwrap().rate, 0.5);
        assert_eq!(one("typ:1| c").unwrap().kind, SampleKind::Counter);
    }

    #[test]
    fn several_samples_per_line() {
        let all = samples_of("lat:400|ms:120|ms");
        let values: Vec<f64> = all.iter().map(|s| s.unwrap().value).collect();
        assert_eq!(values, vec![400.0, 120.0]);
        let all = samples_of("u:v:1|c");
        assert_eq!(all[0], Err(BadSample::NoType));
        assert_eq!(all[1].unwrap().value, 1.0);
        let all = samples_of("set2:a:b|s");
        assert!(all[0].is_err());
        assert_eq!(all[1].unwrap().member, b"b");
    }

    #[test]
    fn dogstatsd_fields_by_prefix() {
        let s = one("a:1|c|T1656581400|#k:v").unwrap();
        assert_eq!(s.value, 1.0);
        let s = one("a:1|c|#k:v|@0.5").unwrap();
        assert_eq!(s.rate, 0.5);
        assert_eq!(key_of("a:1|c|#k:v|@0.5"), "a;k=v");
        let s = one("a:1|c|c:abc|card:low").unwrap();
        assert_eq!(s.rate, 1.0);
        assert_eq!(
            parse_line(b"_e{5,4}:title|text"),
            Line::Event(b"_e{5,4}:title|text")
        );
        assert_eq!(parse_line(b"_sc|name|0"), Line::ServiceCheck);
    }

    #[test]
    fn dogstatsd_events_parse_by_their_lengths() {
        let e =
            parse_event(b"_e{9,11}:deploy v1|rolled\\nout|d:1796169700|h:web1|p:low|#app,env:prod")
                .unwrap();
        assert_eq!(e.title, "deploy v1");
        assert_eq!(e.text, "rolled\nout");
        assert_eq!(e.timestamp, Some(1_796_169_700.0));
        assert_eq!(e.host, Some("web1"));
        assert_eq!(e.tags, ["app", "env:prod"]);
        // A '|' inside the title is the title's, by length.
        assert_eq!(parse_event(b"_e{3,1}:a|b|c").unwrap().title, "a|b");
        for bad in [
            &b"_e{5,4}:ti|text"[..],
            b"_e{x,4}:title|text",
            b"_e{5,40}:title|text",
            b"_e{5,2}:title|text",
            b"_e{5,4}:title|text|d:soon",
            b"_e{18446744073709551615,1}:a|b",
        ] {
            assert!(
                parse_event(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn bad_samples() {
        let bad: &[(&str, BadSample)] = &[
            ("nocolon|c", BadSample::NoValue),
            ("ej", BadSample::NoValue),
            ("ek:1", BadSample::NoType),
            ("bad:abc|c", BadSample::NotANumber),
            ("emptyval:|c", BadSample::NotANumber),
            ("emptyg:|g", BadSample::NotANumber),
            ("neg:-1|ms", BadSample::NegativeTimer),
            ("crash:1|c|@+0.5", BadSample::BadRate),
            ("crash:1|c|@ 0.5", BadSample::BadRate),
            ("crash:1|c|@Infinity", BadSample::BadRate),
            ("ea:1|c|@0", BadSample::BadRate),
            ("r:1|c|@", BadSample::BadRate),
            ("r:1|c|@.", BadSample::BadRate),
            ("r:1|c|@-1.0", BadSample::BadRate),
            ("r:1|c|blah", BadSample::UnknownField),
            ("eq:Infinity|c", BadSample::NotFinite),
            ("x:0,345345|ms", BadSample::NotANumber),
        ];
        for (line, want) in bad {
            assert_eq!(one(line), Err(*want), "{line}");
        }
    }

    #[test]
    fn lines_split_and_skip_empty() {
        let got: Vec<&[u8]> = lines(b"a:1|c\n\nb:2|c\r\n\r\n").collect();
        assert_eq!(got, vec![&b"a:1|c"[..], &b"b:2|c"[..]]);
    }

    #[test]
    fn sanitize_key_is_idempotent_on_examples() {
        for raw in ["a b", "a/b", "ü", "x;y=z", "a\t\tb"] {
            let once = sanitize_key(raw.as_bytes());
            assert_eq!(sanitize_key(&once), once);
        }
    }
}
