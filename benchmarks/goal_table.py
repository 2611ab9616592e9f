"""The README's issue-14 goal table (markdown) from `benchmark` runs' JSON: one column per seed.

    python3 benchmarks/goal_table.py 0=B0/benchmark.json 23=B23/benchmark.json ...
"""
import json, sys
cols = [a.split("=") for a in sys.argv[1:]]
B = {s: json.load(open(p)) for s, p in cols}
def run(b, ds, m, tr="2"): return b["runs"][ds][m]["score"]["tracks"][tr]
def ov(b, ds, m, k): return run(b, ds, m)["overall"][k]
def exps(b, ds, m): return run(b, ds, m)["experiments"]
def rec(b, ds, m, st): return run(b, ds, m)["state_recall"][st]["recall"]
def f1_per(b):
    e = exps(b, "andi", "model"); i = min(range(len(e)), key=lambda i: e[i]["state_f1"]); return f"{e[i]['state_f1']:.3f} {e[i]['model']}"
def single(b, m): return [e for e in exps(b, "andi", m) if e["model"] == "single_state"][0]["alpha_mae"]
rows = [
 ("state F1 (naive)", lambda b: f"{ov(b,'andi','model','state_f1'):.3f} ({ov(b,'andi','naive','state_f1'):.3f})"),
 ("confined / free / immobile recall", lambda b: " / ".join(f"{rec(b,'andi','model',s):.3f}" for s in ("confined","free","immobile"))),
 ("lowest per-model F1", f1_per),
 ("CP Jaccard (classical)", lambda b: f"{ov(b,'andi','model','cp_jaccard'):.3f} ({ov(b,'andi','classical','cp_jaccard'):.3f})"),
 ("CP RMSE", lambda b: f"{ov(b,'andi','model','cp_rmse'):.3f}"),
 ("alpha MAE (classical)", lambda b: f"{ov(b,'andi','model','alpha_mae'):.3f} ({ov(b,'andi','classical','alpha_mae'):.3f})"),
 ("K MSLE (classical)", lambda b: f"{ov(b,'andi','model','K_msle'):.4f} ({ov(b,'andi','classical','K_msle'):.4f})"),
 ("single-state alpha MAE (classical)", lambda b: f"{single(b,'model'):.3f} ({single(b,'classical'):.3f})"),
 ("W1 alpha / W1 K", lambda b: f"{ov(b,'andi','model','ens_alpha_w1'):.3f} / {ov(b,'andi','model','ens_K_w1'):.3f}"),
 ("W1 K per model (single, multi, immobile, dimer, confinement)", lambda b: ", ".join(f"{e['ens_K_w1']:.3f}" for e in exps(b,'andi','model'))),
 ("directed set: state F1 / CP Jaccard / alpha MAE", lambda b: f"{ov(b,'directed','model','state_f1'):.3f} / {ov(b,'directed','model','cp_jaccard'):.3f} / {ov(b,'directed','model','alpha_mae'):.3f}"),
 ("directed set: directed / free recall", lambda b: f"{rec(b,'directed','model','directed'):.3f} / {rec(b,'directed','model','free'):.3f}"),
]
print("| figure | " + " | ".join(f"seed {s}" for s, _ in cols) + " |")
print("| --- |" + " --- |" * len(cols))
for name, f in rows:
    print(f"| {name} | " + " | ".join(f(B[s]) for s, _ in cols) + " |")
