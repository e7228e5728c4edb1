#!/usr/bin/env python3
"""Build a tiny llama-architecture GGUF model with random weights and a real
byte-level BPE tokenizer, so a llama.cpp server can run without downloading
any weights.

usage: make_model.py OUT_DIR TEXT_FILE...

The tokenizer is trained (with the `tokenizers` package) on the given text
files; it is written both into the GGUF (as a `gpt2`-style tokenizer, the
way llama.cpp's converter writes byte-level BPE vocabularies) and as
OUT_DIR/tokenizer.json with a tokenizer_config.json beside it, so clients
can tokenise exactly as the server does. The weights are seeded random
numbers: the model's output is meaningless but deterministic, and depends
on the whole prompt. Writes OUT_DIR/model.gguf.
"""
import json
import os
import sys

import numpy as np
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

import gguf

VOCAB = 512
EMBD = 64
LAYERS = 2
HEADS = 4
FFN = 128
CONTEXT = 4096
EOS = "<|endoftext|>"


def train_tokenizer(files):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train(files, trainer)
    return tok


def main():
    out, files = sys.argv[1], sys.argv[2:]
    os.makedirs(out, exist_ok=True)
    tok = train_tokenizer(files)
    tok.save(os.path.join(out, "tokenizer.json"))
    with open(os.path.join(out, "tokenizer_config.json"), "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": EOS,
                   "eos_token": EOS, "add_bos_token": False, "add_eos_token": False,
                   "clean_up_tokenization_spaces": False}, f, indent=1)
    spec = json.loads(tok.to_str())
    vocab = spec["model"]["vocab"]
    n_vocab = len(vocab)
    tokens = [None] * n_vocab
    for text, i in vocab.items():
        tokens[i] = text
    eos = vocab[EOS]
    types = [gguf.TokenType.CONTROL if t == EOS else gguf.TokenType.NORMAL for t in tokens]
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]

    w = gguf.GGUFWriter(os.path.join(out, "model.gguf"), "llama")
    w.add_name("servegate-tiny")
    w.add_context_length(CONTEXT)
    w.add_embedding_length(EMBD)
    w.add_block_count(LAYERS)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(HEADS)
    w.add_rope_dimension_count(EMBD // HEADS)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tokenizer_model("gpt2")
    # llama.cpp's `gpt-2` pre-tokenizer splits text as the `tokenizers`
    # ByteLevel pre-tokenizer does (` ?\p{N}+` keeps a space with the digits
    # after it); its `default` one splits digits apart, and servegate then
    # refuses to score, naming the first token that differs.
    w.add_tokenizer_pre("gpt-2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(eos)
    w.add_eos_token_id(eos)
    # BOS on: without it llama-cpp-python's echoed log-probabilities are
    # shifted by one token (the prompt's first has none, and the last
    # generated one is missing). With it, BOS counts in usage.prompt_tokens
    # but is not echoed: the prompt's tokens, then the generated one.
    w.add_add_bos_token(True)
    w.add_chat_template(
        "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}<|assistant|>\n{% endif %}")

    rng = np.random.default_rng(1234)

    def rand(*shape, scale=None):
        scale = scale if scale is not None else 1.0 / np.sqrt(shape[-1])
        return (rng.standard_normal(shape) * scale).astype(np.float32)

    w.add_tensor("token_embd.weight", rand(n_vocab, EMBD, scale=1.0))
    for b in range(LAYERS):
        p = f"blk.{b}."
        w.add_tensor(p + "attn_norm.weight", np.ones(EMBD, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(p + name + ".weight", rand(EMBD, EMBD))
        w.add_tensor(p + "ffn_norm.weight", np.ones(EMBD, dtype=np.float32))
        w.add_tensor(p + "ffn_gate.weight", rand(FFN, EMBD))
        w.add_tensor(p + "ffn_up.weight", rand(FFN, EMBD))
        w.add_tensor(p + "ffn_down.weight", rand(EMBD, FFN))
    w.add_tensor("output_norm.weight", np.ones(EMBD, dtype=np.float32))
    # Large output weights: sharp distributions, so greedy decoding is
    # decided by clear margins rather than by rounding. The end token's row
    # is zero: its logit is 0 while the best of the others is far above, so
    # the model never ends on its own and a server always returns the
    # generated token after an echoed prompt (lm-eval reads the prompt's
    # log-probabilities as all but the last entry, whatever came back).
    output = rand(n_vocab, EMBD, scale=1.0)
    output[eos] = 0.0
    # Likewise for tokens that are part of a UTF-8 character: llama-cpp-python
    # holds back such a token's text, and with `max_tokens: 1` returns no
    # generated entry at all, so lm-eval's `[ctxlen:-1]` would drop the last
    # prompt token instead (servegate counts the prompt's entries).
    for i in range(n_vocab):
        if "\ufffd" in tok.decode([i], skip_special_tokens=False):
            output[i] = 0.0
    w.add_tensor("output.weight", output)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(os.path.join(out, "model.gguf"))


if __name__ == "__main__":
    main()
