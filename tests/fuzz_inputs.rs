//! Fuzzing on stable Rust (proptest): Samsara JSON and X12 interchanges,
//! mutated from real samples (bytes, JSON values, X12 elements and segments)
//! and generated whole, go through parse → extract → embed. No input panics or
//! hangs, and every input becomes records or a dead letter with a reason.
//!
//! `APEX_FUZZ_CASES` sets the cases per strategy (default 2,500; five
//! strategies, so 12,500 inputs a run); a longer run: `APEX_FUZZ_CASES=100000
//! cargo test --release --test fuzz_inputs`.

use std::path::Path;

use apex_ingest::model::{Format, Origin, RawEvent};
use apex_ingest::pipeline::embed::{EmbedPolicy, HashingEmbedder};
use apex_ingest::pipeline::parse::parse;
use apex_ingest::pipeline::process_records;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;

/// Longest time one input may take through the three stages.
const CASE_TIMEOUT_MS: u32 = 10_000;

fn cases() -> u32 {
    std::env::var("APEX_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(2_500)
}

/// Each test runs its cases in a child process, so a case that hangs past
/// the timeout fails the test instead of stalling the suite.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        timeout: CASE_TIMEOUT_MS,
        // A failure prints its minimal input; nothing is written into the tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn samples(dir: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/samples").join(dir);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        // A .jsonl file holds one event per line.
        out.extend(bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()).map(<[u8]>::to_vec));
    }
    out.sort();
    out.dedup();
    out
}

/// Runs one input through parse → extract → embed and checks the contract.
fn through_pipeline(format: Format, payload: Vec<u8>) -> Result<(), TestCaseError> {
    let origin = Origin { topic: "fuzz".into(), partition: 0, offset: 0 };
    let event = RawEvent::new(format, origin, None, payload);
    match parse(&event) {
        Ok(records) => {
            prop_assert!(!records.is_empty(), "accepted without a record and without a reason");
            let n = records.len();
            let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let rows = runtime
                .block_on(process_records(&HashingEmbedder::new(64), &EmbedPolicy::default(), records))
                .map_err(|e| TestCaseError::fail(format!("extract/embed failed: {e}")))?;
            prop_assert_eq!(rows.len(), n);
        }
        Err(reason) => {
            prop_assert!(!reason.label().is_empty());
            prop_assert!(!reason.to_string().is_empty(), "a dead letter needs a reason");
        }
    }
    Ok(())
}

/// A change to raw bytes; positions are fractions of the input's length.
#[derive(Debug, Clone)]
enum ByteMutation {
    Truncate(f64),
    Set(f64, u8),
    Insert(f64, Vec<u8>),
    Delete(f64, usize),
    /// A slice repeated many times (huge counts, long runs).
    Repeat(f64, usize, usize),
}

fn byte_mutation() -> impl Strategy<Value = ByteMutation> {
    prop_oneof![
        (0.0..1.0).prop_map(ByteMutation::Truncate),
        (0.0..1.0, any::<u8>()).prop_map(|(p, b)| ByteMutation::Set(p, b)),
        (0.0..1.0, prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(p, b)| ByteMutation::Insert(p, b)),
        (0.0..1.0, 1..64usize).prop_map(|(p, n)| ByteMutation::Delete(p, n)),
        (0.0..1.0, 1..32usize, 2..2_000usize).prop_map(|(p, n, k)| ByteMutation::Repeat(p, n, k)),
    ]
}

fn apply(mut bytes: Vec<u8>, mutations: &[ByteMutation]) -> Vec<u8> {
    let at = |f: f64, len: usize| ((f * len as f64) as usize).min(len);
    for m in mutations {
        let len = bytes.len();
        match m {
            ByteMutation::Truncate(f) => bytes.truncate(at(*f, len)),
            ByteMutation::Set(f, b) if len > 0 => bytes[at(*f, len - 1)] = *b,
            ByteMutation::Set(..) => {}
            ByteMutation::Insert(f, new) => {
                let i = at(*f, len);
                bytes.splice(i..i, new.iter().copied());
            }
            ByteMutation::Delete(f, n) => {
                let i = at(*f, len);
                bytes.drain(i..(i + n).min(len));
            }
            ByteMutation::Repeat(f, n, times) => {
                let i = at(*f, len);
                let slice = bytes[i..(i + n).min(len)].to_vec();
                let run: Vec<u8> = slice.iter().copied().cycle().take(slice.len() * times).collect();
                bytes.splice(i..i, run);
            }
        }
    }
    bytes
}

fn byte_mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (prop::sample::select(seeds), prop::collection::vec(byte_mutation(), 1..5))
        .prop_map(|(seed, mutations)| apply(seed, &mutations))
}

/// JSON in the places a Samsara field expects something else: wrong types,
/// huge and odd numbers, long and odd strings, nested values.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        Just(serde_json::json!(1e308)),
        ".{0,40}".prop_map(Value::from),
        "[0-9TZ:.+-]{0,30}".prop_map(Value::from),
        (1..100_000usize).prop_map(|n| Value::from("x".repeat(n))),
    ];
    leaf.prop_recursive(4, 32, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::from),
            prop::collection::btree_map("[a-zA-Z]{1,12}", inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every JSON pointer inside `v`, the root included.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => m.iter().for_each(|(k, c)| pointers(c, format!("{at}/{k}"), out)),
        Value::Array(a) => a.iter().enumerate().for_each(|(i, c)| pointers(c, format!("{at}/{i}"), out)),
        _ => {}
    }
    out.push(at);
}

/// A sample event with some of its values (or a whole object) replaced.
fn samsara_value_mutated() -> impl Strategy<Value = Vec<u8>> {
    // The samples' JSON documents (one line of them is poison on purpose).
    let seeds: Vec<Value> =
        samples("samsara").iter().filter_map(|b| serde_json::from_slice(b).ok()).collect();
    (prop::sample::select(seeds), prop::collection::vec((any::<prop::sample::Index>(), json_value()), 1..4))
        .prop_map(|(mut doc, replacements)| {
            for (index, value) in replacements {
                let mut all = Vec::new();
                pointers(&doc, String::new(), &mut all);
                let pointer = index.get(&all).clone();
                match doc.pointer_mut(&pointer) {
                    Some(slot) => *slot = value,
                    None => doc = value,
                }
            }
            serde_json::to_vec(&doc).unwrap()
        })
}

/// A sample interchange with elements replaced, segments dropped or repeated,
/// and its separators swapped.
fn x12_structure_mutated() -> impl Strategy<Value = Vec<u8>> {
    let seeds: Vec<String> = samples("edi").into_iter().map(|b| String::from_utf8(b).unwrap()).collect();
    let element = prop_oneof!["[0-9]{0,25}", ".{0,12}", "[*~>^|:]{1,3}", Just(String::new())];
    (
        prop::sample::select(seeds),
        prop::collection::vec((any::<prop::sample::Index>(), any::<prop::sample::Index>(), element), 0..4),
        prop::option::of((any::<prop::sample::Index>(), 0..3usize, 1..5_000usize)),
        prop::option::of(prop::sample::select(vec![('*', '|'), ('~', '\n'), ('*', '~'), ('>', '*')])),
    )
        .prop_map(|(seed, edits, segment_change, swap)| {
            let mut segments: Vec<Vec<String>> =
                seed.split('~').map(|s| s.split('*').map(str::to_owned).collect()).collect();
            for (seg, el, value) in edits {
                let seg = seg.index(segments.len());
                let el = el.index(segments[seg].len());
                segments[seg][el] = value;
            }
            if let Some((seg, kind, times)) = segment_change {
                let seg = seg.index(segments.len());
                match kind {
                    0 => {
                        segments.remove(seg);
                    }
                    _ => {
                        let copy = segments[seg].clone();
                        segments.splice(seg..seg, std::iter::repeat_n(copy, times));
                    }
                }
            }
            let mut text = segments.iter().map(|s| s.join("*")).collect::<Vec<_>>().join("~");
            if let Some((from, to)) = swap {
                text = text.replace(from, &to.to_string());
            }
            text.into_bytes()
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn samsara_bytes_mutated_from_samples_are_records_or_dead_letters(
        payload in byte_mutated(samples("samsara"))
    ) {
        through_pipeline(Format::Samsara, payload)?;
    }

    #[test]
    fn samsara_values_mutated_from_samples_are_records_or_dead_letters(payload in samsara_value_mutated()) {
        through_pipeline(Format::Samsara, payload)?;
    }

    #[test]
    fn x12_bytes_mutated_from_samples_are_records_or_dead_letters(payload in byte_mutated(samples("edi"))) {
        through_pipeline(Format::Edi, payload)?;
    }

    #[test]
    fn x12_elements_and_segments_mutated_from_samples_are_records_or_dead_letters(
        payload in x12_structure_mutated()
    ) {
        through_pipeline(Format::Edi, payload)?;
    }

    #[test]
    fn generated_json_documents_are_records_or_dead_letters(document in json_value()) {
        through_pipeline(Format::Samsara, serde_json::to_vec(&document).unwrap())?;
    }
}

#[test]
fn deep_nesting_and_ten_megabyte_fields_are_dead_letters_or_records_without_a_hang() {
    let deep =
        |open: &str, close: &str, n: usize| format!("{}{}", open.repeat(n), close.repeat(n)).into_bytes();
    through_pipeline(Format::Samsara, deep("[", "]", 100_000)).unwrap();
    through_pipeline(Format::Samsara, deep("{\"data\":", "}", 100_000)).unwrap();
    let big = "A".repeat(10 << 20);
    let location =
        String::from_utf8(samples("samsara").into_iter().find(|s| s.starts_with(b"{\"eventId\"")).unwrap())
            .unwrap();
    through_pipeline(Format::Samsara, location.replacen("Truck", &big, 1).into_bytes()).unwrap();
    for seed in samples("edi") {
        let text = String::from_utf8(seed).unwrap();
        // One 10 MB element in the first transaction's first segment after ST.
        let huge =
            text.replacen("~B10*", &format!("~B10*{big}"), 1).replacen("~B2*", &format!("~B2*{big}"), 1);
        through_pipeline(Format::Edi, huge.into_bytes()).unwrap();
    }
}
