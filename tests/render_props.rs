//! Property tests of the read API's untrusted-input parsers: the target
//! grammar, the time grammar and evaluation never panic, whatever the
//! request holds, and every target the grammar accepts prints back from
//! its parts.

use proptest::prelude::*;
use sluice::graphite::eval::{Context, Limits, SyntheticSource};
use sluice::graphite::target::{parse, Expr};
use sluice::graphite::time::parse_time;

/// Two tiny series, so functions have data to chew on.
const TINY: SyntheticSource = SyntheticSource {
    max_points: 1000,
    gap_every: 3,
};

fn print(e: &Expr) -> String {
    match e {
        Expr::Path(p) => p.clone(),
        Expr::Number(n) => format!("{n:?}"),
        Expr::Str(s) if !s.contains('\'') => format!("'{s}'"),
        Expr::Str(s) if !s.contains('"') => format!("\"{s}\""),
        Expr::Str(s) => format!("'{}'", s.replace('\'', "\\'")),
        Expr::Bool(b) => b.to_string(),
        Expr::None => "None".into(),
        Expr::Call { name, args, kwargs } => {
            let mut parts: Vec<String> = args.iter().map(print).collect();
            parts.extend(kwargs.iter().map(|(k, v)| format!("{k}={}", print(v))));
            format!("{name}({})", parts.join(","))
        }
    }
}

const FUNCS: &[&str] = &[
    "sumSeries",
    "averageSeries",
    "diffSeries",
    "divideSeries",
    "asPercent",
    "scale",
    "offset",
    "movingAverage",
    "summarize",
    "timeShift",
    "aliasByNode",
    "aliasSub",
    "keepLastValue",
    "nonNegativeDerivative",
    "highestMax",
    "limit",
    "groupByNode",
    "percentileOfSeries",
    "delay",
    "constantLine",
    "legendValue",
    "nosuch",
];

fn arb_expr() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("a.b".to_string()),
        Just("a.*".to_string()),
        Just("x.{y,z}".to_string()),
        (-1000i32..1000).prop_map(|n| n.to_string()),
        Just("'1min'".to_string()),
        Just("\"-2h\"".to_string()),
        Just("'sum'".to_string()),
        Just("true".to_string()),
        Just("None".to_string()),
        "[a-z(),'\"=|. -]{0,6}",
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        (
            proptest::sample::select(FUNCS),
            prop::collection::vec(inner, 0..4),
        )
            .prop_map(|(f, args)| format!("{f}({})", args.join(",")))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parsing_and_evaluating_never_panics(target in arb_expr()) {
        if let Ok(expr) = parse(&target) {
            let limits = Limits { max_series: 100, max_points: 100_000 };
            let ctx = Context::new(1_000_000, 1_003_600, 1_003_600, &TINY, limits);
            let _ = ctx.series(&expr);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(text in "\\PC{0,64}") {
        let _ = parse(&text);
        let _ = parse_time(&text, 1_796_169_600);
    }

    #[test]
    fn accepted_targets_print_back_to_the_same_tree(target in arb_expr()) {
        if let Ok(expr) = parse(&target) {
            let again = parse(&print(&expr));
            prop_assert_eq!(again, Ok(expr));
        }
    }
}
