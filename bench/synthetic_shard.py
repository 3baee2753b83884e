#!/usr/bin/env python3
"""Writes a synthetic llm.c token shard for the benchmarks: version 1 (uint16 tokens),
N uniformly random tokens below VOCAB, seeded, so every run trains on the same data.

    synthetic_shard.py PATH N VOCAB
"""
import array
import random
import struct
import sys

path, n, vocab = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = random.Random(1234)
header = [0] * 256
header[0], header[1], header[2] = 20240520, 1, n
with open(path, "wb") as f:
    f.write(struct.pack("<256i", *header))
    f.write(array.array("H", (rng.randrange(vocab) for _ in range(n))).tobytes())
