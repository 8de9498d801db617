#!/usr/bin/env python3
"""Makes www/models/tiny-sdxl/: the page's SDXL test model (random weights), converted by websd.

tests/fixtures/sdxl/ is a tiny SDXL-layout diffusers folder, but its two text encoders have a
1000-token vocabulary (their parity cases use fixed ids), so a prompt written in the page, which
the real CLIP tokenizer turns into ids up to 49407, could not run through them. This copies the
folder, widens both encoders' token embeddings to CLIP's 49408 rows (the first 1000 kept, the
others drawn from a seeded normal of std 0.02, transformers' initializer_range, and rounded to
f16, the fixture's storage) and gives their configs the real SDXL encoders' vocabulary and
special token ids (bos 0, eos 2: the pooled token is the end-of-text's, as in SDXL). Everything
else is the fixture as it is. It then runs

    websd convert DIR --out www/models/tiny-sdxl --name tiny-sdxl --text-encoder-quant q8

(the UNet and VAE in f16 as tiny-sd1; the encoders in q8, which halves the 49408-row embeddings:
4.7 MB in all instead of about 7.2). Python's standard library only. Usage, after `./build.sh native`:

    python3 scripts/make_tiny_sdxl.py        # websd from $CARGO_TARGET_DIR or target/
"""
import json
import os
import random
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, 'tests/fixtures/sdxl')
OUT = os.path.join(ROOT, 'www/models/tiny-sdxl')
VOCAB = 49408


def read_safetensors(path):
    with open(path, 'rb') as f:
        data = f.read()
    (n,) = struct.unpack('<Q', data[:8])
    header = json.loads(data[8:8 + n])
    body = data[8 + n:]
    meta = header.pop('__metadata__', None)
    tensors = {k: (v['dtype'], v['shape'], body[v['data_offsets'][0]:v['data_offsets'][1]]) for k, v in header.items()}
    return tensors, meta


def write_safetensors(path, tensors, meta):
    header, offset, chunks = {}, 0, []
    if meta:
        header['__metadata__'] = meta
    for name in sorted(tensors):
        dtype, shape, raw = tensors[name]
        header[name] = {'dtype': dtype, 'shape': shape, 'data_offsets': [offset, offset + len(raw)]}
        offset += len(raw)
        chunks.append(raw)
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * (-len(text) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)) + text + b''.join(chunks))


def widen(folder, seed):
    path = os.path.join(folder, 'model.safetensors')
    tensors, meta = read_safetensors(path)
    [name] = [k for k in tensors if k.endswith('embeddings.token_embedding.weight')]
    dtype, (rows, dim), raw = tensors[name]
    assert dtype == 'F16', dtype
    rng = random.Random(seed)
    extra = struct.pack(f'<{(VOCAB - rows) * dim}e', *(rng.gauss(0.0, 0.02) for _ in range((VOCAB - rows) * dim)))
    tensors[name] = (dtype, [VOCAB, dim], raw + extra)
    write_safetensors(path, tensors, meta)
    config_path = os.path.join(folder, 'config.json')
    with open(config_path) as f:
        config = json.load(f)
    config.update(vocab_size=VOCAB, bos_token_id=0, eos_token_id=2, pad_token_id=1)
    with open(config_path, 'w') as f:
        json.dump(config, f, indent=2)


def main():
    websd = os.path.join(os.environ.get('CARGO_TARGET_DIR', os.path.join(ROOT, 'target')), 'release', 'websd')
    with tempfile.TemporaryDirectory() as work:
        folder = os.path.join(work, 'tiny-sdxl')
        shutil.copytree(SRC, folder, ignore=shutil.ignore_patterns('parity.safetensors'))
        widen(os.path.join(folder, 'text_encoder'), 1)
        widen(os.path.join(folder, 'text_encoder_2'), 2)
        shutil.rmtree(OUT, ignore_errors=True)
        subprocess.run([websd, 'convert', folder, '--out', OUT, '--name', 'tiny-sdxl', '--text-encoder-quant', 'q8'], check=True)
    with open(os.path.join(OUT, 'manifest.json')) as f:
        manifest = json.load(f)
    print(f"{OUT}: {sum(s['size'] for s in manifest['shards'])} bytes in {len(manifest['shards'])} shards (www/models.json's size)")


if __name__ == '__main__':
    sys.exit(main())
