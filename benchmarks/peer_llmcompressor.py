"""GPTQ from a maintained library (llm-compressor) as a peer at equal bytes: run in its own environment.

    PEER/bin/python benchmarks/peer_llmcompressor.py --model DIR --calibration calib.pt --evaluation held.pt
        --bits 4 3 --out peers.json

llm-compressor pins transformers below what colorshare uses, so it runs in a separate virtual environment
(``python -m venv PEER && PEER/bin/pip install torch==2.13.0 llmcompressor``, torch kept at the CPU build);
``benchmarks/bytes.py --peer-python PEER/bin/python`` calls this script with the very model, calibration and
evaluation tokens it measures everything else on. Each bit-width: GPTQ (llm-compressor's ``GPTQModifier``,
sequential over the layers as the library does it, dampening 0.01), asymmetric (a scale and a zero point per group
of 64 inputs, as colorshare stores 3 and 4 bits), every Linear of the blocks (the LM head left out); then the
token perplexity of the fake-quantized model on the evaluation tokens, computed exactly as colorshare's case does
(next-token cross-entropy over chunks of 256, batches of 4). No colorshare import: this file runs alone.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import time


def perplexity(model, ids, batch_size: int = 4) -> float:
    import torch

    tot, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(ids), batch_size):
            x = ids[i:i + batch_size]
            logits = model(input_ids=x).logits[:, :-1].float()
            tot += float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                           x[:, 1:].reshape(-1), reduction="sum"))
            count += x[:, 1:].numel()
    return math.exp(tot / count)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--calibration", required=True)
    p.add_argument("--evaluation", required=True)
    p.add_argument("--bits", type=int, nargs="+", default=[4, 3])
    p.add_argument("--group", type=int, default=64)
    p.add_argument("--out", required=True)
    args = p.parse_args()
    import llmcompressor
    import torch
    from compressed_tensors.quantization import QuantizationArgs, QuantizationScheme
    from datasets import Dataset
    from llmcompressor import oneshot
    from llmcompressor.modifiers.quantization import GPTQModifier
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    dense = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32, trust_remote_code=False).eval()
    tok = AutoTokenizer.from_pretrained(args.model, trust_remote_code=False)
    calib = torch.load(args.calibration)
    held = torch.load(args.evaluation)
    data = Dataset.from_dict({"input_ids": calib.tolist(), "attention_mask": torch.ones_like(calib).tolist()})
    rows = []
    for bits in args.bits:
        t = time.perf_counter()
        w = QuantizationArgs(num_bits=bits, type="int", symmetric=False, strategy="group", group_size=args.group)
        recipe = GPTQModifier(config_groups={"g": QuantizationScheme(targets=["Linear"], weights=w)},
                              ignore=["lm_head"], dampening_frac=0.01)
        model = copy.deepcopy(dense)
        model = oneshot(model=model, dataset=data, recipe=recipe, tokenizer=tok, num_calibration_samples=len(calib),
                        max_seq_length=calib.shape[1], shuffle_calibration_samples=False) or model
        weights = sum(m.weight.numel() for n, m in model.named_modules()
                      if isinstance(m, torch.nn.Linear) and "lm_head" not in n)
        nbytes = weights * bits // 8 + weights // args.group * 4  # codes + a float16 scale and zero point a group
        rows.append({"method": f"llm-compressor gptq int{bits}", "bytes": nbytes, "perplexity": perplexity(model, held),
                     "seconds": time.perf_counter() - t, "library": f"llmcompressor {llmcompressor.__version__}"})
        print(rows[-1], flush=True)
        del model
    with open(args.out, "w") as fh:
        json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
