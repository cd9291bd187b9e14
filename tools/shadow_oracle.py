#!/usr/bin/python3
"""Writes shadow/testdata/compare.json: pairs of live and shadow scores with
the comparison scipy and numpy give for them, the oracle of shadow.Compare.

    /usr/bin/python3 tools/shadow_oracle.py

Spearman's coefficient is scipy.stats.spearmanr's (mean ranks for ties).
The top-k overlap ranks rows by score, highest first, ties in row order
(Python's stable sort), and counts the live top k found in the shadow's.
Rows are ranked by their last output."""

import json
import math
import os
import warnings

import numpy as np
from scipy import stats

rng = np.random.default_rng(20240506)
K = 10


def top(scores, k):
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return set(order[:k])


def case(name, live, shadow, outputs=1):
    live = np.asarray(live, dtype=float).reshape(-1, outputs)
    shadow = np.asarray(shadow, dtype=float).reshape(-1, outputs)
    rows = live.shape[0]
    diff = np.abs(live - shadow)
    out = {
        "name": name, "outputs": outputs,
        "live": live.ravel().tolist(), "shadow": shadow.ravel().tolist(),
        "rows": rows, "mean_abs_diff": float(diff.mean()), "max_abs_diff": float(diff.max()),
        "topk_overlap": None, "rank_correlation": None,
    }
    if rows >= 2:
        l, s = live[:, -1].tolist(), shadow[:, -1].tolist()
        k = min(K, rows)
        out["topk_overlap"] = len(top(l, k) & top(s, k)) / k
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rho = stats.spearmanr(l, s).correlation
        out["rank_correlation"] = None if math.isnan(rho) else float(rho)
    return out


cases = []
for n in (1, 2, 3, 5, 10, 11, 37, 200):
    live = rng.normal(size=n)
    cases.append(case(f"noise n={n}", live, live + rng.normal(scale=0.3, size=n)))
    cases.append(case(f"offset n={n}", live, live + 0.25))
    cases.append(case(f"reversed n={n}", live, -live))
    tied = np.round(rng.uniform(size=n), 1)
    cases.append(case(f"ties n={n}", tied, np.round(tied + rng.normal(scale=0.2, size=n), 1)))
    cases.append(case(f"ties both ways n={n}", np.round(rng.uniform(size=n) * 3), np.round(rng.uniform(size=n) * 3)))
    cases.append(case(f"constant shadow n={n}", live, np.full(n, 0.5)))
    two = rng.uniform(size=(n, 2))
    cases.append(case(f"two outputs n={n}", two.ravel(), (two + rng.normal(scale=0.1, size=(n, 2))).ravel(), outputs=2))

path = os.path.join(os.path.dirname(__file__), "..", "shadow", "testdata", "compare.json")
with open(path, "w") as f:
    f.write('{"k": %d, "cases": [\n' % K)
    f.write(",\n".join(json.dumps(c) for c in cases))
    f.write("\n]}\n")
print(f"wrote {len(cases)} cases to {os.path.normpath(path)}")
