//! Byte compatibility with Python whisper 1.1.10 (CPython 3.11): every case
//! of the reference manifest (made by scripts/whisper-fixtures.sh from
//! tests/fixtures/whisper_reference.py) is replayed through sluice's whisper
//! writer and the file must equal Python's byte for byte.

use std::path::PathBuf;

use serde_json::Value;
use sluice::store::format::{Aggregation, WhisperFile};

fn fixtures_dir() -> PathBuf {
    let dir = std::env::var_os("SLUICE_WHISPER_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/whisper-fixtures")
        });
    assert!(
        dir.join("manifest.json").exists(),
        "whisper fixtures not found at {}: run scripts/whisper-fixtures.sh (scripts/test.sh does)",
        dir.display()
    );
    dir
}

/// The manifest is Python's json.dump output: it may hold the non-JSON
/// tokens Infinity, -Infinity and NaN.
fn load_manifest(text: &str) -> Value {
    let text = text
        .replace("-Infinity", "\"-inf\"")
        .replace("Infinity", "\"inf\"")
        .replace("NaN", "\"nan\"");
    serde_json::from_str(&text).expect("manifest parses")
}

fn number(v: &Value) -> f64 {
    match v {
        Value::Number(n) => n.as_f64().expect("f64"),
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        Value::String(s) if s == "nan" => f64::NAN,
        other => panic!("not a number: {other}"),
    }
}

fn describe_diff(expected: &[u8], got: &[u8]) -> String {
    if expected.len() != got.len() {
        return format!("size {} expected, {} written", expected.len(), got.len());
    }
    let mut out = Vec::new();
    for (i, (e, g)) in expected.chunks(12).zip(got.chunks(12)).enumerate() {
        if e != g {
            out.push(format!(
                "chunk {i} (byte {}): expected {e:02x?}, got {g:02x?}",
                i * 12
            ));
        }
        if out.len() > 8 {
            break;
        }
    }
    out.join("\n")
}

#[test]
fn all_fixture_cases_are_byte_identical() {
    let dir = fixtures_dir();
    let manifest = load_manifest(&std::fs::read_to_string(dir.join("manifest.json")).unwrap());
    let cases = manifest["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 21);
    let work = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap();
        let archives: Vec<(u32, u32)> = case["archives"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| (a[0].as_u64().unwrap() as u32, a[1].as_u64().unwrap() as u32))
            .collect();
        let method = Aggregation::from_name(case["method"].as_str().unwrap()).unwrap();
        let path = work.path().join(format!("{name}.wsp"));
        let mut file = WhisperFile::create(&path, &archives, number(&case["xff"]), method).unwrap();
        for op in case["ops"].as_array().unwrap() {
            let now = op["now"].as_i64().unwrap();
            match op["op"].as_str().unwrap() {
                "update" => file
                    .update(number(&op["value"]), op["timestamp"].as_i64().unwrap(), now)
                    .unwrap(),
                "update_many" => {
                    let points: Vec<(i64, f64)> = op["points"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|p| (p[0].as_i64().unwrap(), number(&p[1])))
                        .collect();
                    file.update_many(&points, now).unwrap();
                }
                other => panic!("unknown op {other}"),
            }
        }
        drop(file);
        let got = std::fs::read(&path).unwrap();
        let expected = std::fs::read(dir.join(format!("{name}.wsp"))).unwrap();
        if got != expected {
            failures.push(format!("{name}:\n{}", describe_diff(&expected, &got)));
        }
    }
    assert!(
        failures.is_empty(),
        "{} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn reads_python_files_back() {
    let dir = fixtures_dir();
    // agg_average: 10 s points at now-90..now, and the 60 s archive.
    let now = 1_700_000_000;
    let mut f = WhisperFile::open_read(&dir.join("agg_average.wsp")).unwrap();
    let fetched = f.fetch(now - 100, Some(now), now).unwrap().unwrap();
    assert_eq!(fetched.step, 10);
    let known: Vec<f64> = fetched.values.iter().flatten().copied().collect();
    assert!(known.contains(&3.0) && known.contains(&-7.5), "{fetched:?}");
    assert_eq!(f.header.aggregation, Aggregation::Average);
}
