#!/usr/bin/env python3
"""A second implementation of all-MiniLM-L6-v2 (numpy, not candle) that prints
the reference figures tests/minilm.rs checks the Rust embedder against: the
cosine of each pair of SENTENCES and the first components of the first vector.

sentence-transformers needs torch, which no registry here ships for CPU only,
so this is BERT's forward pass written out from the model card (word +
position + type embeddings, 6 post-norm layers of 12-head attention and an
erf-GELU feed-forward, mean pooling over the attention mask, L2 norm).

    python3 -m venv /tmp/ref && /tmp/ref/bin/pip install numpy safetensors tokenizers
    /tmp/ref/bin/python scripts/minilm-reference.py "$(scripts/model)"
"""
import json
import math
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

# Keep in step with tests/minilm.rs.
SENTENCES = [
    "Truck 12 braked harshly on I-35 near Dallas",
    "Vehicle 12 had a hard braking event close to Dallas",
    "Invoice 5531 for freight charges is due on Friday",
    "The reefer unit on trailer 88 lost temperature",
    "Refrigeration failure on trailer 88",
]


def layer_norm(x, w, b, eps=1e-12):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w + b


def gelu(x):
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def embed(model_dir, text):
    t = load_file(f"{model_dir}/model.safetensors")
    tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
    tok.no_padding()  # tokenizer.json pads to 128; pooling counts only the sentence's tokens
    tok.enable_truncation(256)  # sentence-transformers' max_seq_length
    enc = tok.encode(text)
    ids = np.array(enc.ids)
    n = len(ids)
    x = (t["embeddings.word_embeddings.weight"][ids]
         + t["embeddings.position_embeddings.weight"][:n]
         + t["embeddings.token_type_embeddings.weight"][np.array(enc.type_ids)])
    x = layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"]).astype(np.float64)
    heads, size = 12, 32
    for i in range(6):
        p = f"encoder.layer.{i}."
        lin = lambda v, name: v @ t[p + name + ".weight"].T.astype(np.float64) + t[p + name + ".bias"]
        q = lin(x, "attention.self.query").reshape(n, heads, size).transpose(1, 0, 2)
        k = lin(x, "attention.self.key").reshape(n, heads, size).transpose(1, 0, 2)
        v = lin(x, "attention.self.value").reshape(n, heads, size).transpose(1, 0, 2)
        scores = q @ k.transpose(0, 2, 1) / math.sqrt(size)
        scores = np.exp(scores - scores.max(-1, keepdims=True))
        scores /= scores.sum(-1, keepdims=True)
        context = (scores @ v).transpose(1, 0, 2).reshape(n, heads * size)
        x = layer_norm(lin(context, "attention.output.dense") + x,
                       t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"])
        hidden = gelu(lin(x, "intermediate.dense"))
        x = layer_norm(lin(hidden, "output.dense") + x,
                       t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"])
    pooled = x.mean(0)  # one sentence, unpadded: every token counts
    return pooled / np.linalg.norm(pooled)


def main():
    vectors = [embed(sys.argv[1], s) for s in SENTENCES]
    cosines = {f"{i}-{j}": round(float(vectors[i] @ vectors[j]), 5)
               for i in range(len(SENTENCES)) for j in range(i + 1, len(SENTENCES))}
    print(json.dumps({"cosines": cosines, "first_vector_head": [round(float(v), 5) for v in vectors[0][:8]]}, indent=1))


if __name__ == "__main__":
    main()
