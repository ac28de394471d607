//! Tags on the real binary: the same tags in any order are one series,
//! Telegraf-style and carbon-style tags in the name, valueless tags, and
//! Etsy's folding kept behind `flush.tag_style = "etsy"`.

use std::time::Duration;

use crate::common::{send_udp, start_captured, start_flushing_to, CarbonCapture};

const LINES: &[u8] = b"dd.cnt:1|c|#svc:web,env:prod\ndd.cnt:2|c|#env:prod,svc:web\n\
tg.cnt,env=prod,az=b:4|c\ncb.cnt;host=a;dc=eu:8|c\ndd.flag:1|c|#canary\ndone:1|c\n";

#[test]
fn tags_in_any_order_make_one_graphite_series() {
    let mut capture = CarbonCapture::start();
    let sluice = start_flushing_to(&capture, &[]);
    send_udp(sluice.udp, &[LINES]);
    let flush = capture.flush_with("stats_counts.done", Duration::from_secs(10));
    assert_eq!(
        flush.get("stats_counts.dd.cnt;env=prod;svc=web"),
        Some("3"),
        "{}",
        flush.dump()
    );
    assert_eq!(flush.get("stats_counts.tg.cnt;az=b;env=prod"), Some("4"));
    assert_eq!(flush.get("stats_counts.cb.cnt;dc=eu;host=a"), Some("8"));
    assert_eq!(flush.get("stats_counts.dd.flag;canary=true"), Some("1"));
    assert!(flush.get("stats_counts.dd.cnt;svc=web;env=prod").is_none());
}

#[test]
fn etsy_style_folds_tags_as_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (sluice, mut capture) = start_captured(dir.path(), "[flush]\ntag_style = \"etsy\"\n", &[]);
    send_udp(sluice.udp, &[LINES]);
    let flush = capture.flush_with("stats_counts.done", Duration::from_secs(10));
    assert_eq!(
        flush.get("stats_counts.dd.cnt;svc=web;env=prod"),
        Some("1"),
        "{}",
        flush.dump()
    );
    assert_eq!(flush.get("stats_counts.dd.cnt;env=prod;svc=web"), Some("2"));
    // Etsy's sanitising drops the commas of a Telegraf name.
    assert_eq!(flush.get("stats_counts.tg.cntenv=prodaz=b"), Some("4"));
    assert_eq!(flush.get("stats_counts.dd.flag;canary"), Some("1"));
}
