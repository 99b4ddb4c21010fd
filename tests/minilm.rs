//! The local semantic embedder (`embed.kind = "minilm"`): its vectors against
//! a second implementation's (scripts/minilm-reference.py, numpy), padding
//! that changes nothing, and vector stores that refuse vectors of another
//! embedder (embedded, and the real PostgreSQL).

mod support;

use std::path::PathBuf;

use apex_ingest::app;
use apex_ingest::config::{Config, EmbedKind};
use apex_ingest::pipeline::embed::{Embedder, MiniLmEmbedder};

/// Keep in step with SENTENCES in scripts/minilm-reference.py.
const SENTENCES: [&str; 5] = [
    "Truck 12 braked harshly on I-35 near Dallas",
    "Vehicle 12 had a hard braking event close to Dallas",
    "Invoice 5531 for freight charges is due on Friday",
    "The reefer unit on trailer 88 lost temperature",
    "Refrigeration failure on trailer 88",
];

/// `scripts/minilm-reference.py "$(scripts/model)"`, run once (numpy 2.4.6,
/// tokenizers 0.23.3): the cosine of each pair (i, j) ...
const REFERENCE_COSINES: [(usize, usize, f32); 10] = [
    (0, 1, 0.74435),
    (0, 2, 0.235),
    (0, 3, 0.18022),
    (0, 4, 0.21087),
    (1, 2, 0.16709),
    (1, 3, 0.1585),
    (1, 4, 0.17792),
    (2, 3, 0.09581),
    (2, 4, 0.11626),
    (3, 4, 0.67462),
];
/// ... and the first components of the first sentence's vector.
const REFERENCE_HEAD: [f32; 8] = [-0.01082, 0.01439, 0.05944, 0.00836, 0.05171, -0.0479, -0.07364, 0.04307];

fn model_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".state/models/all-MiniLM-L6-v2");
    assert!(
        dir.join("model.safetensors").is_file(),
        "the MiniLM model is not installed at {}: run `scripts/model` (scripts/test does)",
        dir.display()
    );
    dir
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn texts(s: &[&str]) -> Vec<String> {
    s.iter().map(|t| t.to_string()).collect()
}

#[tokio::test]
async fn minilm_vectors_agree_with_a_second_implementation() {
    let model = MiniLmEmbedder::load(&model_dir()).unwrap();
    assert_eq!(model.dims(), 384);
    let v = model.embed(&texts(&SENTENCES)).await.unwrap();
    for x in &v {
        assert_eq!(x.len(), 384);
        assert!((cosine(x, x) - 1.0).abs() < 1e-4, "not normalised: {}", cosine(x, x));
    }
    for (i, j, expected) in REFERENCE_COSINES {
        let got = cosine(&v[i], &v[j]);
        assert!((got - expected).abs() < 2e-3, "cosine({i}, {j}) = {got}, the reference says {expected}");
    }
    for (k, expected) in REFERENCE_HEAD.iter().enumerate() {
        assert!(
            (v[0][k] - expected).abs() < 1e-3,
            "component {k} = {}, the reference says {expected}",
            v[0][k]
        );
    }
    // What the model is for: a paraphrase is nearer than an unrelated text.
    assert!(cosine(&v[3], &v[4]) > 3.0 * cosine(&v[3], &v[2]));
}

#[tokio::test]
async fn a_text_embeds_the_same_alone_and_padded_in_a_batch() {
    let model = MiniLmEmbedder::load(&model_dir()).unwrap();
    let long =
        "EDI 214 shipment status: PRO 84213377 delivered to the consignee's dock after a reefer alarm \
                on the trailer, appointment missed by two hours"
            .repeat(3);
    let mut batch = texts(&SENTENCES);
    batch.push(long.clone());
    batch.push(String::new());
    let together = model.embed(&batch).await.unwrap();
    for (text, v) in batch.iter().zip(&together) {
        let alone = model.embed(std::slice::from_ref(text)).await.unwrap().remove(0);
        let gap = alone.iter().zip(v).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(gap < 1e-4, "{text:?} differs by {gap} in a batch");
    }
}

#[tokio::test]
async fn a_missing_model_is_an_error_that_says_how_to_install_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = MiniLmEmbedder::load(dir.path()).err().expect("an empty directory is no model");
    let message = err.to_string();
    assert!(
        message.contains("scripts/model") && message.contains(&dir.path().display().to_string()),
        "{message}"
    );
}

fn with_embedder(mut config: Config, kind: EmbedKind) -> Config {
    config.embed.kind = kind;
    config.embed.model_dir = model_dir();
    config
}

async fn refused(config: &Config) -> String {
    match app::open_stores(config).await {
        Ok(_) => panic!("a store holding another embedder's vectors was opened"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn the_embedded_vector_store_refuses_vectors_of_another_embedder() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = support::config();
    config.stores.data_dir = dir.path().to_path_buf();
    app::open_stores(&with_embedder(config.clone(), EmbedKind::Hashing)).await.unwrap();
    app::open_stores(&with_embedder(config.clone(), EmbedKind::Hashing)).await.unwrap();
    let message = refused(&with_embedder(config, EmbedKind::Minilm)).await;
    assert!(message.contains("hashing/384") && message.contains("minilm/all-MiniLM-L6-v2"), "{message}");
}

#[tokio::test]
async fn postgres_refuses_vectors_of_another_embedder() {
    let config = support::postgres_only_config("apex_embedder_test").await;
    app::open_stores(&with_embedder(config.clone(), EmbedKind::Minilm)).await.unwrap();
    app::open_stores(&with_embedder(config.clone(), EmbedKind::Minilm)).await.unwrap();
    let message = refused(&with_embedder(config, EmbedKind::Hashing)).await;
    assert!(message.contains("PostgreSQL") && message.contains("minilm/all-MiniLM-L6-v2"), "{message}");
}

/// The demo on MiniLM with pings given no vector, then a question in other
/// words than the records it means: "said yes" for the 990s' "action A
/// accepted" (the 204s' "load tender" shares the word "tender" too).
#[test]
fn the_demo_on_minilm_answers_by_meaning() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Pings given no vector, as a deployment on MiniLM would run.
    let file = dir.path().join("apex.toml");
    let settings = format!(
        "[embed]\nmodel_dir = {:?}\nskip_kinds = [\"VehicleLocation\", \"VehicleStats\"]\n",
        model_dir().display().to_string()
    );
    std::fs::write(&file, settings).unwrap();
    let apex = |args: &[&str], kind: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_apex-ingest"))
            .args(args)
            .arg("--data-dir")
            .arg(&data)
            .arg("--config")
            .arg(&file)
            .env("APEX_EMBED_KIND", kind)
            .output()
            .unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let until = "2026-11-20T06:00:00Z";
    let (ok, text) = apex(&["demo", "--events", "2000", "--until", until], "minilm");
    assert!(ok && text.contains("reconciled") && text.contains("of kinds given none"), "{text}");
    let question = ["query", "the carrier said yes to the tender", "--json", "--k", "3", "--as-of", until];
    let (ok, text) = apex(&question, "minilm");
    assert!(ok, "{text}");
    let answer: serde_json::Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let kinds: Vec<&str> =
        answer["hits"].as_array().unwrap().iter().filter_map(|h| h["citation"]["kind"].as_str()).collect();
    assert_eq!(kinds, ["990"; 3], "{answer:#}");
    // The same question embedded by another model is refused, not answered wrongly.
    let (ok, text) = apex(&question, "hashing");
    assert!(!ok && text.contains("minilm/all-MiniLM-L6-v2") && text.contains("hashing/384"), "{text}");
}
