//! Property tests for the StatsD parser: it never panics, sanitising is
//! idempotent, and every valid line it is given round-trips.

use proptest::prelude::*;
use sluice::protocol::number::js_number_string;
use sluice::protocol::statsd::{
    lines, packet_lines, parse_line, parse_plain, sanitize_key, Line, PacketLine, SampleKind,
};

// Line pieces for the fast-path agreement test: mostly plain lines, with
// every way of not being plain mixed in.
const KEY: &str = "[a-z][a-z.;=_]{0,6}[/# :]?";
const SEPARATOR: &str = "(:|:|:|::|\\||)";
const VALUE: &str = "[0-9]{0,3}[.+e-]?[0-9.]{0,2}";
const KIND: &str = "(c|ms|g|h|d|s|C|x|)";
const TRAILER: &str =
    "(|||\\|@[0-9.]{0,4}|\\|@0\\.5|\\|@[0-9.]{0,3}\\|x|\\|#a:b|:1\\|c|\\|[0-9]| )";

fn parse_everything(packet: &[u8]) -> usize {
    let mut seen = 0;
    let mut key = Vec::new();
    for line in lines(packet) {
        if let Line::Metric(m) = parse_line(line) {
            key.clear();
            m.write_key(&mut key, true);
            m.write_key(&mut key, false);
            seen += m.samples().count();
        }
    }
    seen
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn never_panics_on_bytes(packet in proptest::collection::vec(any::<u8>(), 0..512)) {
        parse_everything(&packet);
    }

    #[test]
    fn never_panics_on_statsd_shaped_text(packet in "[a-z:|@#,;=.\\-+e0-9 \\t\\r\\n_{}]{0,200}") {
        parse_everything(packet.as_bytes());
    }

    #[test]
    fn lines_are_the_non_empty_newline_pieces(packet in "[a\\r\\n]{0,40}") {
        let want: Vec<&[u8]> = packet
            .as_bytes()
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.is_empty())
            .collect();
        prop_assert_eq!(lines(packet.as_bytes()).collect::<Vec<_>>(), want);
    }

    #[test]
    fn the_plain_fast_path_agrees_with_the_general_parser(
        key in KEY,
        separator in SEPARATOR,
        value in VALUE,
        kind in KIND,
        trailer in TRAILER,
    ) {
        let text = format!("{key}{separator}{value}|{kind}{trailer}");
        let line = text.as_bytes();
        if let Some((key, sample)) = parse_plain(line) {
            let Line::Metric(m) = parse_line(line) else {
                return Err(TestCaseError::fail("general parser saw no metric"));
            };
            for sanitize in [true, false] {
                let mut general_key = Vec::new();
                m.write_key(&mut general_key, sanitize);
                prop_assert_eq!(&general_key[..], key);
                // Graphite style takes the fast path only for keys
                // without `;` (the ingest checks), and agrees there.
                if !key.contains(&b';') {
                    let mut graphite_key = Vec::new();
                    m.write_graphite_key(&mut graphite_key, sanitize);
                    prop_assert_eq!(&graphite_key[..], key);
                }
            }
            let samples: Vec<_> = m.samples().collect();
            prop_assert_eq!(samples, vec![Ok(sample)]);
        }
    }

    #[test]
    fn packet_lines_split_as_lines_does_and_parse_as_parse_plain_does(
        pieces in proptest::collection::vec(
            ((KEY, SEPARATOR, VALUE, KIND, TRAILER), "(\n|\r\n|\n\n|\r|\r\r\n|)"),
            0..12,
        ),
    ) {
        let packet: String = pieces
            .iter()
            .map(|((k, sep, v, t, tr), end)| format!("{k}{sep}{v}|{t}{tr}{end}"))
            .collect();
        let packet = packet.as_bytes();
        let got: Vec<PacketLine> = packet_lines(packet).collect();
        let want: Vec<&[u8]> = lines(packet).collect();
        prop_assert_eq!(got.len(), want.len());
        for (item, line) in got.iter().zip(want) {
            match *item {
                PacketLine::Plain { line: l, key, from_key, sample, has_semicolon } => {
                    prop_assert_eq!(l, line);
                    prop_assert!(from_key.starts_with(key));
                    prop_assert_eq!(parse_plain(line), Some((key, sample)));
                    prop_assert_eq!(has_semicolon, key.contains(&b';'));
                }
                PacketLine::Other(l) => {
                    prop_assert_eq!(l, line);
                    prop_assert!(parse_plain(line).is_none());
                }
            }
        }
    }

    #[test]
    fn plain_lines_take_the_fast_path(
        key in "[a-z][a-z0-9_.]{0,20}",
        value in "[0-9]{1,4}(\\.[0-9]{1,3})?",
        kind in "(c|ms|g|h|d)",
        rate in proptest::option::of("0\\.[0-9]{1,2}"),
    ) {
        let rate_part = rate.map(|r| format!("|@{r}")).unwrap_or_default();
        let line = format!("{key}:{value}|{kind}{rate_part}");
        prop_assert!(parse_plain(line.as_bytes()).is_some() || rate_part.ends_with("@0.0") || rate_part.ends_with("@0.00"));
    }

    #[test]
    fn sanitising_is_idempotent(raw in proptest::collection::vec(any::<u8>(), 0..64)) {
        let once = sanitize_key(&raw);
        prop_assert_eq!(sanitize_key(&once), once.clone());
        prop_assert!(once.iter().all(|b| b.is_ascii_alphanumeric() || b"_.;=-".contains(b)));
    }

    #[test]
    fn valid_lines_round_trip(
        key in "[A-Za-z0-9_.=-]{1,40}",
        value in -1e12f64..1e12,
        kind in 0usize..4,
        rate in prop_oneof![Just(None), (1u32..=1000).prop_map(|r| Some(f64::from(r) / 1000.0))],
        tags in proptest::collection::vec(("[a-z]{1,8}", "[a-z0-9]{1,8}"), 0..3),
    ) {
        let (type_name, value) = match kind {
            0 => ("c", value),
            1 => ("g", value.abs()),
            2 => ("ms", value.abs()),
            _ => ("s", value),
        };
        let value_text = js_number_string(value);
        let mut line = format!("{key}:{value_text}|{type_name}");
        if let Some(r) = rate {
            line.push_str(&format!("|@{}", js_number_string(r)));
        }
        if !tags.is_empty() {
            let t: Vec<String> = tags.iter().map(|(k, v)| format!("{k}:{v}")).collect();
            line.push_str(&format!("|#{}", t.join(",")));
        }
        let Line::Metric(m) = parse_line(line.as_bytes()) else {
            return Err(TestCaseError::fail("not a metric line"));
        };
        let mut got_key = Vec::new();
        m.write_key(&mut got_key, true);
        let mut want_key = key.clone();
        for (k, v) in &tags {
            want_key.push_str(&format!(";{k}={v}"));
        }
        prop_assert_eq!(String::from_utf8(got_key).unwrap(), want_key);
        let samples: Vec<_> = m.samples().collect();
        prop_assert_eq!(samples.len(), 1);
        let sample = samples[0].unwrap();
        prop_assert_eq!(sample.rate, rate.unwrap_or(1.0));
        match kind {
            0 => prop_assert_eq!((sample.kind, sample.value), (SampleKind::Counter, value)),
            1 => prop_assert_eq!(sample.kind, SampleKind::Gauge { delta: false }),
            2 => prop_assert_eq!((sample.kind, sample.value), (SampleKind::Timer, value)),
            _ => prop_assert_eq!((sample.kind, sample.member), (SampleKind::Set, value_text.as_bytes())),
        }
        if kind == 1 {
            prop_assert_eq!(sample.value, value);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3000))]

    // Values and rates of up to 15 digits take a one-division path; it
    // must give the very bits a full decimal parse gives, and leave
    // longer or stranger numbers to that parse.
    #[test]
    fn short_decimals_read_as_a_full_parse_reads_them(text in "[0-9]{0,12}\\.?[0-9]{0,9}") {
        let full = text.parse::<f64>().ok();
        let read = sluice::protocol::number::parse_js_number(text.as_bytes());
        if text.is_empty() {
            // JavaScript's Number("") is 0.
            prop_assert_eq!(read, Some(0.0));
        } else {
            prop_assert_eq!(read.map(f64::to_bits), full.map(f64::to_bits), "{}", text);
        }
        let rate = sluice::protocol::number::parse_unsigned_decimal(text.as_bytes());
        prop_assert_eq!(rate.map(f64::to_bits), full.map(f64::to_bits), "{}", text);
    }

    #[test]
    fn pickle_decoder_never_panics(data in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = sluice::protocol::pickle::decode(&data);
        let _ = sluice::protocol::pickle::decode_points(&data);
    }

    #[test]
    fn pickle_frames_round_trip(points in proptest::collection::vec(("[a-z.]{1,30}", 0i64..5_000_000_000, -1e12f64..1e12), 0..50)) {
        let mut frame = Vec::new();
        sluice::protocol::pickle::encode_frame(&mut frame, points.iter().map(|(n, t, v)| (n.as_str(), *t, *v)));
        let decoded = sluice::protocol::pickle::decode_points(&frame[4..]).unwrap();
        let want: Vec<(String, f64, f64)> = points.iter().map(|(n, t, v)| (n.clone(), *t as f64, *v)).collect();
        prop_assert_eq!(decoded, want);
    }
}

/// The agreement property above would prove nothing if its inputs never
/// took the fast path: count how many of a fixed sample do.
#[test]
fn the_agreement_inputs_often_take_the_fast_path() {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::TestRunner;
    let strategy = (KEY, SEPARATOR, VALUE, KIND, TRAILER);
    let mut runner = TestRunner::deterministic();
    let mut accepted = 0;
    for _ in 0..2000 {
        let (k, sep, v, t, tr) = strategy.new_tree(&mut runner).unwrap().current();
        if parse_plain(format!("{k}{sep}{v}|{t}{tr}").as_bytes()).is_some() {
            accepted += 1;
        }
    }
    assert!(accepted > 50, "only {accepted} of 2000 took the fast path");
}
