"""Markdown tables for the README, generated from the JSON files in benchmarks/results/.

    python -m benchmarks.report [--label cpu-2core]

Each ``benchmarks/results/gpu-<device>-<date>/`` folder that
``python -m benchmarks.gpu_check`` wrote adds a GPU section, the device named;
without such a folder there is none.
"""

from __future__ import annotations

import argparse
import json
import sys

from .common import RESULTS


def _load(name):
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def epoch_table(r):
    m, s = r["machine"], r["settings"]
    gpus = "".join(f", {d} = {name}" for d, name in (m.get("gpus") or {}).items())
    lines = [
        f"Epoch of MNIST, {'-'.join(map(str, s['sizes']))} ReLU, batch {s['batch_size']}, SGD momentum {s['momentum']}: "
        f"median of {s['epochs']} epochs after a warm-up epoch, systems alternating "
        f"({m['cpu']}, {m['cores']} cores{gpus}; from `benchmarks/results/{r['_name']}.json`).",
        "",
        "| system | device | epoch (s) | samples/s | test accuracy | time vs fastmlp |",
        "|---|---|---|---|---|---|",
    ]
    for row in r["results"]:
        ratio = "-" if row["ratio_to_fastmlp"] is None else f"{row['ratio_to_fastmlp']:.2f}x"
        acc = "-" if row["test_accuracy"] is None else f"{100 * row['test_accuracy']:.2f} %"
        lines.append(
            f"| {row['system']} | {row['device']} | {row['median_epoch_s']:.3f} | {row['samples_per_s']:,.0f} | "
            f"{acc} | {ratio} |"
        )
    cpu = {row["key"]: row for row in r["results"] if row["device"] == "cpu"}
    fm = cpu.get("fastmlp")
    if fm and ("torch" in cpu or "gemm" in cpu):
        ratios = [f"{fm['median_epoch_s'] / cpu[k]['median_epoch_s']:.2f}x {what}" for k, what in
                  (("torch", "PyTorch's epoch"), ("gemm", "the same GEMMs alone")) if k in cpu]
        lines += ["", f"fastmlp's CPU epoch takes {' and '.join(ratios)} in this run; BLAS: "
                      f"{m.get('blas_runtime', m.get('blas'))}."]
    if fm:
        lines += [
            "",
            f"fastmlp's CPU epoch does {fm['gflops']:.1f} GFLOP/s of matrix multiplies, "
            f"{100 * fm['gflops'] / r['cpu_sgemm_peak_gflops']:.0f} % of this CPU's float32 matmul peak "
            f"({r['cpu_sgemm_peak_gflops']:.0f} GFLOP/s for a 2048^3 product); the one-time kernel compile took "
            f"{fm['compile_s']:.2f} s.",
        ]
    return lines


def tta_table(r):
    target = f"{100 * r['target']:g} %"
    lines = [f"| system | recipe | device | seed | epochs to {target} | seconds of training | one-time compile (s) |",
             "|---|---|---|---|---|---|---|"]
    for row in r["results"]:
        epochs = f"{row['epochs']:.2f}" if isinstance(row["epochs"], float) else str(row["epochs"])
        reached = epochs if row["reached"] else f"not reached in {epochs}"
        compile_s = "-" if row.get("compile_s") is None else f"{row['compile_s']:.2f}"
        lines.append(f"| {row['system']} | {row['recipe']} | {row['device']} | {row['seed']} | {reached} | "
                     f"{row['seconds']:.2f} | {compile_s} |")
    return lines


def recipes_table(r):
    lines = [f"Seeds {', '.join(map(str, r['seeds']))}; {r['machine']['cpu']}, {r['machine']['cores']} cores, BLAS "
             f"{r['machine'].get('blas_runtime')} (from `benchmarks/results/{r['_name']}.json`).", "",
             "| recipe | dataset | lowest test accuracy | mean | mean training time (s) | median epoch (s) "
             "| speed probe (µs) |", "|---|---|---|---|---|---|---|"]
    for rec in r["recipes"]:
        name = f"`--preset {rec['preset']}`" + (f" with `{rec['changes']}`" if rec["changes"] else "")
        for dataset, res in rec["results"].items():
            epoch = sorted(run["median_epoch_s"] for run in res["runs"])[len(res["runs"]) // 2]
            probe = f"{max(res['speed_probe_us']):.0f}" if res.get("speed_probe_us") else "-"
            lines.append(f"| {name} | {dataset} | {100 * res['min_test_accuracy']:.2f} % | "
                         f"{100 * res['mean_test_accuracy']:.2f} % | {res['mean_train_seconds']:.2f} | {epoch:.3f} "
                         f"| {probe} |")
    if any(res.get("speed_probe_us") for rec in r["recipes"] for res in rec["results"].values()):
        lines += ["", "Median epoch: the middle seed's median. Speed probe: microseconds per 128×784×128 float32 "
                      "matmul, the slower of the readings before and after the row; on this shared VM a row with a "
                      "much higher probe than the others was timed while the host was slow."]
    return lines


def profile_table(r):
    lines = [f"Epoch {r['epoch_s']:.3f} s ({r['settings'].get('input', 'float32')} input); the same GEMMs alone "
             f"{r['gemm_only_epoch_s']:.3f} s, so {r['epoch_s'] - r['gemm_only_epoch_s']:.3f} s besides them "
             f"(from `benchmarks/results/{r['_name']}.json`).", "",
             "| share of the profiled epoch | seconds per epoch | what |", "|---|---|---|"]
    for g in r["groups"]:
        lines.append(f"| {100 * g['share']:.1f} % | {g['seconds_per_epoch']:.3f} | {g['what']} |")
    return lines


def scaling_table(r):
    lines = ["| device | batch | samples/s |", "|---|---|---|"]
    for device, pts in r["batch"].items():
        for p in pts:
            lines.append(f"| {device} | {p['batch_size']} | {p['samples_per_s']:,.0f} |")
    return lines


def sklearn_fit_table(r):
    s = r["settings"]
    data = "; ".join(f"{d}: {v['n_train']:,} train / {v['n_test']:,} test, hidden {tuple(v['hidden_layer_sizes'])}"
                     for d, v in s["data"].items())
    lines = [
        f"Fit time of fastmlp against scikit-learn ({data}); median of {s['repeats']} fits each, the two "
        "alternating after a warm-up; score: test accuracy (classifier) or R² (regressor).",
        "",
        "| data | estimator | solver | max_iter | X | coefs_ (sklearn / fastmlp) | scikit-learn fit (s) "
        "| fastmlp fit (s) | time vs scikit-learn | BLAS floor (s) | floor vs scikit-learn "
        "| scikit-learn score | fastmlp score |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in r["results"]:
        sk, fm = row["sklearn"], row["fastmlp"]
        lines.append(
            f"| {row['data']} | {row['estimator']} | {row['solver']} | {row['params']['max_iter']} | {row['X_dtype']} "
            f"| {', '.join(sk['trained_dtype'])} / {', '.join(fm['trained_dtype'])} | {sk['median_fit_s']:.2f} "
            f"| {fm['median_fit_s']:.2f} | {row['time_ratio']:.2f}x | {_floor(row, 's')} | {_floor(row, 'x')} "
            f"| {sk['score']:.4f} | {fm['score']:.4f} |"
        )
    if any("blas_floor" in row for row in r["results"]):
        lines += ["", "BLAS floor: the matrix products of fastmlp's fit alone, with NumPy's BLAS in the same dtype "
                      "(benchmarks.blas_floor); no implementation doing those products can be faster."]
    return lines


def _floor(row, unit):
    """The BLAS-floor cell of a sklearn_fit row ('-' in results written without one)."""
    if "blas_floor" not in row:
        return "-"
    return f"{row['blas_floor']['floor_s']:.2f}" if unit == "s" else f"{row['floor_ratio']:.2f}x"


def _gpu_steps(summary):
    lines = ["| step | status | seconds | result |", "|---|---|---|---|"]
    for st in summary["steps"]:
        seconds = "-" if st["seconds"] is None else f"{st['seconds']:.1f}"
        text = (st["reason"] or st["note"]).replace("|", "/")
        lines.append(f"| {st['name']} | {st['status']} | {seconds} | {text} |")
    return lines


def _gpu_micro(r):
    lines = [f"Host cost per call, median of {next(iter(r['results'].values())).get('repeats', '?')} runs "
             "(enqueue: until the last call returns; wall: until the GPU is done too):", "",
             "| call | enqueue (µs) | wall (µs) |", "|---|---|---|"]
    for name, v in r["results"].items():
        if "error" in v:
            lines.append(f"| {name} | failed: {v['error'][:80]} | |")
        else:
            lines.append(f"| {name} | {v['enqueue_us']:.1f} | {v['wall_us']:.1f} |")
    return lines


def _gpu_capture(r):
    lines = [f"Numba kernels launched on a capturing CuPy stream, graph replayed {r['replays']} times:", "",
             "| variant | replays correctly | detail |", "|---|---|---|"]
    for name, v in r["results"].items():
        lines.append(f"| {name} | {'yes' if v.get('ok') else 'no'} | {v.get('error') or v.get('detail', '')} |")
    return lines


def _gpu_parity(r):
    lines = [f"CPU vs GPU after one epoch ({r['rows']:,} rows, same batch order); relative differences divide by "
             f"max(|cpu|, {r['rel_floor']:g}):", "",
             "| dtype | GPU mode | worst abs | worst rel | outside tolerance | worst step-loss rel | ran as |",
             "|---|---|---|---|---|---|---|"]
    for dtype, rows in r["results"].items():
        for mode, v in rows.items():
            if "params" not in v:
                lines.append(f"| {dtype} | {mode} | {v['status']}: {v.get('reason', '')[:80]} | | | | |")
                continue
            p, info = v["params"], v.get("graph_info") or {}
            ran = " ".join(str(info[k]) for k in ("mode", "scope") if k in info) or "-"
            lines.append(f"| {dtype} | {mode} | {p['max_abs']:.2e} | {p['max_rel']:.2e} | {p['outside_tolerance']} "
                         f"(rtol {p['rtol']:g}) | {v['max_rel_step_loss']:.2e} | {ran} |")
    return lines


def _gpu_gemm(r):
    lines = [f"Each GEMM of the step ({'-'.join(map(str, r['sizes']))}, batch {r['batch']}, {r['dtype']}), GPU µs per op "
             f"from CUDA-graph replays, per split-K factor; cuBLAS without the fused epilogue. {r['note']}:", "",
             "| product | C (rows × cols), depth | µs by split | best | choose_split | cuBLAS µs | best / cuBLAS |",
             "|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        m, nc, depth = row["product"]
        by_split = ", ".join(f"{s}: {us:.1f}" for s, us in row["us"].items()) or "none timed"
        best = f"{row['best']} ({row['best_us']:.1f})" if "best" in row else "-"
        auto = f"{row['auto']}" + (f" ({row['auto_over_best']:.2f}× best)" if "auto_over_best" in row else "")
        cublas = f"{row['cublas_us']:.1f}" if "cublas_us" in row else "failed"
        ratio = f"{row['best_over_cublas']:.2f}" if "best_over_cublas" in row else "-"
        lines.append(f"| {row['name']} | {m} × {nc}, {depth} | {by_split} | {best} | {auto} | {cublas} | {ratio} |")
    return lines


def gpu_sections(folder):
    """Markdown for one gpu_check results folder: the device, every step's status,
    and the tables of the steps that produced results."""
    summary = json.loads((folder / "summary.json").read_text())
    name = f"benchmarks/results/{folder.name}"
    lines = [f"GPU check on **{summary.get('gpu') or 'no GPU'}**, {summary['mode']} run of {summary['started']} "
             f"(from `{name}/`):", "", *_gpu_steps(summary)]
    for file, fmt in (("micro.json", _gpu_micro), ("capture.json", _gpu_capture), ("parity.json", _gpu_parity),
                      ("gemm.json", _gpu_gemm)):
        if (folder / file).exists():
            lines += ["", *fmt(json.loads((folder / file).read_text()))]
    for kind, fmt in (("epoch", epoch_table), ("time-to-accuracy", tta_table), ("scaling", scaling_table)):
        path = folder / f"{kind}-gpu.json"
        if path.exists():
            r = json.loads(path.read_text())
            r["_name"] = f"{folder.name}/{kind}-gpu"
            lines += ["", *fmt(r)]
    if (folder / "ncu-summary.txt").exists():
        lines += ["", f"Kernels of a few training steps under ncu, and the gaps between them: `{name}/ncu-summary.txt`."]
    return lines


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.report")
    p.add_argument("--label", default="cpu-2core")
    p.add_argument("--recipes", nargs="*", default=["fast", "default"], help="recipes-<name>-<label>.json to show")
    args = p.parse_args(argv)
    kinds = [("epoch", epoch_table), ("time-to-accuracy", tta_table), ("scaling", scaling_table),
             ("sklearn-fit", sklearn_fit_table), ("profile-epoch-before", profile_table),
             ("profile-epoch", profile_table)] + [(f"recipes-{name}", recipes_table) for name in args.recipes]
    for kind, fmt in kinds:
        r = _load(f"{kind}-{args.label}")
        if r is None:
            print(f"(no {kind}-{args.label}.json)")
            continue
        r["_name"] = f"{kind}-{args.label}"
        print("\n".join(fmt(r)))
        print()
    for folder in sorted(p.parent for p in RESULTS.glob("gpu-*/summary.json")):
        print("\n".join(gpu_sections(folder)))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
