"""attnlens' batched AOPC against ferret-xai's `evaluate_explanations`, same model, same explanations.

Three steps, because ferret-xai pins libraries attnlens does not use (it lives in its own venv):

    .venv/bin/python benchmarks/bench_faithfulness.py attnlens --limit 200 --work /tmp/bench-faith
    /tmp/ferret-venv/bin/python benchmarks/bench_faithfulness.py ferret --work /tmp/bench-faith
    .venv/bin/python benchmarks/bench_faithfulness.py compare --work /tmp/bench-faith [--out FILE.json]

``attnlens`` explains the first N SST-2 dev sentences with rollout and input gradients (relevance
after the last layer), writes them as ferret explanations, and times attnlens' AOPC with ferret's
conventions: bins 10 %, 20 %, ... 100 % of the non-special tokens, ``floor(fraction · m)``
tokens (bins of 0 tokens skipped), only tokens with a positive score, a bin whose top set equals
the previous bin's skipped, tokens removed (``--perturb remove``). ``ferret`` runs ferret's
``Benchmark.evaluate_explanations`` with its AOPC comprehensiveness and sufficiency evaluators
on the same explanations. ``compare`` reports the largest per-example difference and the speed-up.
One convention stays different: ferret removes tokens by decoding the remaining ids to a string
and tokenizing it again, attnlens re-packs the remaining ids; where a decoded string tokenizes
differently the two numbers differ.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

MODEL = Path(__file__).resolve().parents[2] / "shared" / "models" / "minilm-sst2"
FERRET_FRACTIONS = [round(0.1 * i, 1) for i in range(1, 11)]


def _ferret_bins(scores, candidates):
    """Per example the keep-masks of ferret's bins (top sets), deduplicated like ferret."""
    import torch

    rows = []
    for b in range(scores.shape[0]):
        positions = candidates[b].nonzero().flatten().tolist()
        values = scores[b, positions]
        order = sorted(range(len(positions)), key=lambda i: -float(values[i]))  # stable like argsort[::-1] on ties?
        m, last, tops = len(positions), None, []
        for fraction in FERRET_FRACTIONS:
            v = int(fraction * m)
            if v <= 0:
                continue
            top = [positions[i] for i in order[:v] if float(values[i]) > 0]
            if not top or (last is not None and set(top) == last):
                continue
            last = set(top)
            chosen = torch.zeros(scores.shape[1], dtype=torch.bool)
            chosen[top] = True
            tops.append(chosen)
        rows.append(tops)
    return rows


def run_attnlens(args) -> None:
    import torch

    from attnlens.datasets.sst2 import load_sst2_examples
    from attnlens.experiments.evaluate import explanation_maps
    from attnlens.experiments.faithfulness import candidate_tokens, perturbed_probabilities, target_probability
    from attnlens.methods.registry import expand_methods
    from attnlens.models import load_adapter

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    adapter = load_adapter(str(args.model))
    examples = load_sst2_examples("dev")[: args.limit]
    texts = examples.texts
    variants = expand_methods(["rollout"])
    names = ["rollout", "gradient"]
    from attnlens.experiments.scoring import length_batches

    records, timings = [None] * len(texts), {"explain": 0.0, "aopc": 0.0, "aopc_cpu": 0.0}
    counts = {"model_calls": 0, "inputs": 0, "tokens": 0, "padded_tokens": 0}
    model_logits = adapter._logits

    def counted_logits(encoded):  # what the model is asked to run: inputs, real tokens, tokens with padding
        counts["model_calls"] += 1
        counts["inputs"] += int(encoded["attention_mask"].shape[0])
        counts["tokens"] += int(encoded["attention_mask"].sum())
        counts["padded_tokens"] += int(encoded["attention_mask"].numel())
        return model_logits(encoded)

    for batch_index in length_batches(adapter.count_tokens(texts), args.batch_size):  # as `evaluate` batches
        batch = [texts[i] for i in batch_index]
        clock = time.perf_counter()
        trace = adapter.trace(batch, saliency="sum_abs")
        maps = explanation_maps(adapter, batch, trace, variants, ["gradient"]).double()
        timings["explain"] += time.perf_counter() - clock
        clock, cpu = time.perf_counter(), time.process_time()
        candidates = candidate_tokens(trace).cpu()
        mask = trace.mask.cpu()
        specials = mask & ~candidates
        p = target_probability(trace.logits, trace.target)
        # every explanation's bins in one call, as `evaluate` does: inputs two explanations share run once
        bins = [_ferret_bins(maps[slot].cpu(), candidates) for slot in range(len(names))]
        width = max(1, max(len(t) for per_method in bins for t in per_method))
        keep = mask[:, None, :].repeat(1, 2 * width * len(names), 1)
        weight = torch.zeros(len(names), len(batch), width, dtype=torch.float64)
        for slot, per_method in enumerate(bins):
            offset = 2 * width * slot
            for b, tops in enumerate(per_method):
                for j, top in enumerate(tops):
                    keep[b, offset + j] = mask[b] & ~top
                    keep[b, offset + width + j] = top | specials[b]
                    weight[slot, b, j] = 1
        adapter._logits = counted_logits
        try:
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bfloat16):
                values = perturbed_probabilities(adapter, batch, keep, trace.target, mode="remove").cpu()
        finally:
            adapter._logits = model_logits
        drops = (p.cpu()[:, None] - values).view(len(batch), len(names), 2 * width)
        results = {}
        for slot, name in enumerate(names):
            count = weight[slot].sum(dim=1).clamp_min(1)
            comp = (drops[:, slot, :width] * weight[slot]).sum(dim=1) / count
            suff = (drops[:, slot, width:] * weight[slot]).sum(dim=1) / count
            results[name] = (comp, suff)
        timings["aopc"] += time.perf_counter() - clock
        timings["aopc_cpu"] += time.process_time() - cpu
        for b, text in enumerate(batch):
            n_b = int(mask[b].sum())
            records[batch_index[b]] = ({"text": text, "tokens": trace.tokens[b], "target": int(trace.target[b]),
                            "scores": {name: maps[slot, b, :n_b].tolist() for slot, name in enumerate(names)},
                            "attnlens": {name: [float(results[name][0][b]), float(results[name][1][b])]
                                         for name in names}})
    timings.update(counts)
    (work / "explanations.json").write_text(json.dumps({"model": str(args.model), "records": records,
                                                         "timings": timings}), encoding="utf-8")
    print(f"attnlens: {len(records)} examples, AOPC {timings['aopc']:.1f} s ({timings['aopc_cpu']:.1f} s CPU; "
          f"explanations {timings['explain']:.1f} s)")


def run_ferret(args) -> None:
    import numpy as np
    import torch
    from ferret import Benchmark
    from ferret.evaluators.faithfulness_measures import AOPC_Comprehensiveness_Evaluation, AOPC_Sufficiency_Evaluation
    from ferret.explainers.explanation import Explanation
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    data = json.loads((work / "explanations.json").read_text(encoding="utf-8"))
    model = AutoModelForSequenceClassification.from_pretrained(data["model"]).eval()
    tokenizer = AutoTokenizer.from_pretrained(data["model"])
    evaluators = [AOPC_Comprehensiveness_Evaluation(model, tokenizer), AOPC_Sufficiency_Evaluation(model, tokenizer)]
    bench = Benchmark(model, tokenizer, explainers=[None], evaluators=evaluators, class_based_evaluators=[None])
    names = list(data["records"][0]["scores"])
    out = [{} for _ in data["records"]]
    clock, cpu = time.perf_counter(), time.process_time()
    for name in names:
        for target in sorted({r["target"] for r in data["records"]}):
            index = [i for i, r in enumerate(data["records"]) if r["target"] == target]
            explanations = [Explanation(data["records"][i]["text"], data["records"][i]["tokens"],
                                        np.asarray(data["records"][i]["scores"][name]), name, target) for i in index]
            with torch.no_grad():
                evaluations = bench.evaluate_explanations(explanations, target=target, show_progress=False)
            for i, evaluation in zip(index, evaluations):
                scores = {e.name: float(e.score) for e in evaluation.evaluation_scores}
                out[i][name] = [scores["aopc_compr"], scores["aopc_suff"]]
    seconds, cpu_seconds = time.perf_counter() - clock, time.process_time() - cpu
    (work / "ferret.json").write_text(json.dumps({"records": out, "seconds": seconds, "cpu_seconds": cpu_seconds}),
                                      encoding="utf-8")
    print(f"ferret: {len(out)} examples, {seconds:.1f} s ({cpu_seconds:.1f} s CPU)")


def run_compare(args) -> None:
    import numpy as np

    work = Path(args.work)
    ours = json.loads((work / "explanations.json").read_text(encoding="utf-8"))
    theirs = json.loads((work / "ferret.json").read_text(encoding="utf-8"))
    report = {"examples": len(ours["records"]), "attnlens_aopc_seconds": ours["timings"]["aopc"],
              "ferret_seconds": theirs["seconds"], "methods": {}}
    report["speedup"] = theirs["seconds"] / ours["timings"]["aopc"]
    if "cpu_seconds" in theirs and "aopc_cpu" in ours["timings"]:  # one thread each: CPU time is what a loaded VM
        report["attnlens_aopc_cpu_seconds"] = ours["timings"]["aopc_cpu"]  # does not stretch
        report["ferret_cpu_seconds"] = theirs["cpu_seconds"]
        report["speedup_cpu"] = theirs["cpu_seconds"] / ours["timings"]["aopc_cpu"]
    report["attnlens_model_inputs"] = {k: ours["timings"].get(k) for k in ("model_calls", "inputs", "tokens",
                                                                          "padded_tokens")}
    # an example "round-trips" when none of its tokens is a word piece (decoding glues those to a neighbour), so
    # ferret's decode-and-retokenize gives the ids attnlens re-packs
    glued = ("##",)
    clean = np.asarray([not any(t.startswith(glued) for t in r["tokens"][1:-1]) for r in ours["records"]])
    report["round_trip_examples"] = int(clean.sum())
    for name in ours["records"][0]["attnlens"]:
        a = np.asarray([r["attnlens"][name] for r in ours["records"]])
        f = np.asarray([r[name] for r in theirs["records"]])
        diff = np.abs(a - f)
        report["methods"][name] = {
            "attnlens_mean_comp_suff": a.mean(0).tolist(), "ferret_mean_comp_suff": f.mean(0).tolist(),
            "max_abs_diff_comp_suff": diff.max(0).tolist(), "share_within_1e-4": (diff < 1e-4).mean(0).tolist(),
            "max_abs_diff_round_trip_examples": diff[clean].max(0).tolist() if clean.any() else None,
            "mean_abs_diff_comp_suff": diff.mean(0).tolist()}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n", encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("step", choices=("attnlens", "ferret", "compare"))
    parser.add_argument("--work", default="/tmp/bench-faithfulness")
    parser.add_argument("--model", default=str(MODEL))
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out")
    parser.add_argument("--bfloat16", action="store_true",
                        help="attnlens step: run the perturbed forwards under CPU autocast to bfloat16 (AMX)")
    args = parser.parse_args(argv)
    {"attnlens": run_attnlens, "ferret": run_ferret, "compare": run_compare}[args.step](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
