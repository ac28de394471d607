//! `sluice bench` end to end: a bounded run against sluice itself
//! accounts for every line, and the C peers' targets refuse to start
//! without their binaries, saying which flag is missing.

use std::process::Command;

use crate::common;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(common::binary())
        .arg("bench")
        .args(args)
        .output()
        .expect("run sluice bench")
}

#[test]
fn a_bounded_run_accounts_for_every_line() {
    let out = bench(&[
        "--targets",
        "sluice",
        "--lines",
        "50000",
        "--rate",
        "250000",
        "--mix",
        "70,15,10,5",
        "--sample-rates",
        "1,0.5,0.1",
    ]);
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row = report
        .lines()
        .find(|l| l.starts_with("sluice "))
        .unwrap_or_else(|| panic!("no sluice row:\n{report}"));
    let fields: Vec<&str> = row.split_whitespace().collect();
    // target, offered, absorbed, loss, kernel drops, ...
    assert_eq!(fields.get(3), Some(&"0.000%"), "{report}");
    let exact = fields.last().copied().unwrap_or("");
    let (good, all) = exact.split_once('/').unwrap_or(("", "x"));
    assert_eq!(good, all, "aggregates not exact:\n{report}");
    assert!(good.parse::<u64>().is_ok_and(|n| n > 1000), "{report}");
}

#[test]
fn peer_targets_need_their_binaries() {
    for (args, want) in [
        (
            vec!["--targets", "brubeck"],
            "--targets brubeck: needs --brubeck PATH",
        ),
        (
            vec!["--targets", "sluice", "--statsite", "/nonexistent/statsite"],
            "--statsite /nonexistent/statsite: no such file",
        ),
        (
            vec!["--targets", "brubek"],
            "--targets \"brubek\": sluice, etsy",
        ),
    ] {
        let out = bench(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: {err}");
    }
}
