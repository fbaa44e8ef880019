#!/usr/bin/env python3
# tests/io/spm_reference.py — helper of tests/io/spm_reference.sh: trains a small BPE model
# with Google's SentencePiece (byte fallback, identity normalisation, dummy prefix: the
# settings of Llama's tokenizer), writes its vocabulary (id, piece in hex, score, type as
# tokenizer.ggml.token_type numbers) to OUT/vocab.tsv and, for seeded random texts,
# SentencePiece's ids and decoding to OUT/cases.tsv (text hex, ids, decoded hex).
import io
import random
import sys

import sentencepiece as spm

out = sys.argv[1]
rng = random.Random(12)
syll = ["ka", "lo", "mi", "nu", "ser", "ta", "the", "ing", "é", "ö", "ab", "qu", "x", "zz"]
words = ["".join(rng.choice(syll) for _ in range(rng.randint(1, 4))) for _ in range(300)]
lines = [" ".join(rng.choice(words) for _ in range(rng.randint(3, 12))) for _ in range(3000)]
model = io.BytesIO()
spm.SentencePieceTrainer.train(
    sentence_iterator=iter(lines), model_writer=model, model_type="bpe", vocab_size=600,
    byte_fallback=True, normalization_rule_name="identity", remove_extra_whitespaces=False,
    add_dummy_prefix=True, character_coverage=1.0, num_threads=1, minloglevel=2,
    bos_id=1, eos_id=2, unk_id=0)
sp = spm.SentencePieceProcessor(model_proto=model.getvalue())

with open(out + "/vocab.tsv", "w") as f:
    for i in range(sp.get_piece_size()):
        t = (2 if sp.is_unknown(i) else 3 if sp.is_control(i) else 5 if sp.is_unused(i)
             else 6 if sp.is_byte(i) else 1)
        f.write("%d\t%s\t%r\t%d\n" % (i, sp.id_to_piece(i).encode().hex(), sp.get_score(i), t))

# texts: the training words, spaces anywhere (leading, doubled, trailing), characters
# never seen in training (byte fallback: 日, 😀, ß), digits and punctuation
extra = ["日", "😀", "ß", "7", ",", "  ", " ", "\n", "ab", "é"]
with open(out + "/cases.tsv", "w") as f:
    for k in range(400):
        parts = [rng.choice(words) if rng.random() < 0.6 else rng.choice(extra)
                 for _ in range(rng.randint(1, 8))]
        text = "".join(p + (" " if rng.random() < 0.5 else "") for p in parts)
        ids = sp.encode(text)
        f.write("%s\t%s\t%s\n" % (text.encode().hex(), " ".join(map(str, ids)),
                                  sp.decode(ids).encode().hex()))
