//! The local semantic embedder: sentence-transformers/all-MiniLM-L6-v2 run in
//! process by candle (a 6-layer BERT, 384 dimensions) with no service and no
//! network, as `scripts/model` installs it. Mean pooling over the attention
//! mask and L2 normalisation, as the model card says; checked against a
//! second implementation by tests/minilm.rs.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::bert::{BertModel, Config};
use tokenizers::{PaddingParams, PaddingStrategy, Tokenizer, TruncationParams};

use super::{EmbedError, Embedder};

/// sentence-transformers' `max_seq_length` for this model (its tokenizer.json says 128).
const MAX_TOKENS: usize = 256;
/// Texts per forward pass: sorted by length first, so a batch pads little.
const TEXTS_PER_PASS: usize = 32;

pub struct MiniLmEmbedder {
    model: Arc<BertModel>,
    tokenizer: Arc<Tokenizer>,
    dims: usize,
}

impl MiniLmEmbedder {
    /// Loads the model from `dir` (model.safetensors, config.json, tokenizer.json).
    pub fn load(dir: &Path) -> Result<Self, EmbedError> {
        let missing = |what: &str, e: &dyn std::fmt::Display| {
            EmbedError::Permanent(format!(
                "MiniLM model at {}: {what}: {e} (scripts/model installs it; embed.model_dir names it)",
                dir.display()
            ))
        };
        let config: Config = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| missing("config.json", &e))
            .and_then(|text| serde_json::from_str(&text).map_err(|e| missing("config.json", &e)))?;
        let mut tokenizer =
            Tokenizer::from_file(dir.join("tokenizer.json")).map_err(|e| missing("tokenizer.json", &e))?;
        tokenizer.with_padding(Some(PaddingParams {
            strategy: PaddingStrategy::BatchLongest,
            ..Default::default()
        }));
        tokenizer
            .with_truncation(Some(TruncationParams { max_length: MAX_TOKENS, ..Default::default() }))
            .map_err(|e| missing("tokenizer truncation", &e))?;
        // SAFETY: the weights file is memory-mapped read-only; scripts/model
        // writes it once and nothing rewrites it while the process runs.
        let vb = unsafe {
            VarBuilder::from_mmaped_safetensors(&[dir.join("model.safetensors")], DType::F32, &Device::Cpu)
        }
        .map_err(|e| missing("model.safetensors", &e))?;
        let model = BertModel::load(vb, &config).map_err(|e| missing("model.safetensors", &e))?;
        Ok(MiniLmEmbedder {
            model: Arc::new(model),
            tokenizer: Arc::new(tokenizer),
            dims: config.hidden_size,
        })
    }
}

/// One forward pass over `texts`: token embeddings mean-pooled over the
/// attention mask, then L2-normalised.
fn embed_pass(model: &BertModel, tokenizer: &Tokenizer, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
    let encodings = tokenizer.encode_batch(texts.to_vec(), true).map_err(|e| format!("tokenizing: {e}"))?;
    let rows = |field: fn(&tokenizers::Encoding) -> &[u32]| -> Result<Tensor, String> {
        let rows: Vec<Tensor> = encodings
            .iter()
            .map(|e| Tensor::new(field(e), &Device::Cpu))
            .collect::<Result<_, _>>()
            .map_err(|e| e.to_string())?;
        Tensor::stack(&rows, 0).map_err(|e| e.to_string())
    };
    let ids = rows(tokenizers::Encoding::get_ids)?;
    let types = rows(tokenizers::Encoding::get_type_ids)?;
    let mask = rows(tokenizers::Encoding::get_attention_mask)?;
    let pooled = (|| {
        let tokens = model.forward(&ids, &types, Some(&mask))?;
        let mask = mask.to_dtype(DType::F32)?.unsqueeze(2)?;
        let summed = tokens.broadcast_mul(&mask)?.sum(1)?;
        let mean = summed.broadcast_div(&mask.sum(1)?)?;
        let norm = mean.sqr()?.sum_keepdim(1)?.sqrt()?;
        mean.broadcast_div(&norm)?.to_vec2::<f32>()
    })()
    .map_err(|e: candle_core::Error| format!("forward pass: {e}"))?;
    Ok(pooled)
}

#[async_trait]
impl Embedder for MiniLmEmbedder {
    fn dims(&self) -> usize {
        self.dims
    }

    async fn embed(&self, texts: &[String]) -> Result<Vec<Vec<f32>>, EmbedError> {
        let (model, tokenizer) = (self.model.clone(), self.tokenizer.clone());
        let texts = texts.to_vec();
        // CPU-bound for milliseconds per text: off the async workers.
        tokio::task::spawn_blocking(move || {
            let mut order: Vec<usize> = (0..texts.len()).collect();
            order.sort_by_key(|&i| texts[i].len());
            let mut out = vec![Vec::new(); texts.len()];
            for chunk in order.chunks(TEXTS_PER_PASS) {
                let batch: Vec<&str> = chunk.iter().map(|&i| texts[i].as_str()).collect();
                let vectors = embed_pass(&model, &tokenizer, &batch).map_err(EmbedError::Permanent)?;
                for (&i, v) in chunk.iter().zip(vectors) {
                    out[i] = v;
                }
            }
            Ok(out)
        })
        .await
        .map_err(|e| EmbedError::Permanent(format!("MiniLM task: {e}")))?
    }
}
