#!/usr/bin/python3
"""Generate scikit-learn parity cases for seer's sklearn loader.

Usage: python3 tools/gen_sklearn_oracles.py [OUT_DIR]
(default OUT_DIR: models/testdata/sklearn, relative to the repository root)

Every case trains one estimator on a data set bundled with scikit-learn
(breast cancer, diabetes, iris), pickles it, converts the pickle with
tools/sklearn_export.py (the command users run) and writes, under OUT_DIR:

  <case>.json               the exported model
  <case>.input.tsv          a header of feature names, then one row per example
                            (NaN is missing)
  <case>.expected.tsv       scikit-learn's predict_proba (the positive class of
                            a binary classifier, every class otherwise) or
                            predict (regressors), printed with repr(float)
  <case>.raw.expected.tsv   decision_function (the margins), where it exists
  <case>@N.expected.tsv     the same as .expected.tsv using only the first N
                            boosting iterations (staged predictions)

Input rows are a sample of the data set plus, for tree models, rows whose
value sits exactly on a split threshold or one float32/float64 step beside
it, where float32 versus float64 comparisons would disagree.

Run it with Debian's python3 (scikit-learn 1.2.1); the output is
deterministic for a given scikit-learn and numpy.
"""

import itertools
import json
import math
import os
import pickle
import subprocess
import sys
import tempfile
import warnings

import numpy as np
import sklearn
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.tree import DecisionTreeRegressor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPORTER = os.path.join(ROOT, "tools", "sklearn_export.py")
SAMPLE_ROWS = 100
BOUNDARY_ROWS = 30
STAGE = 5  # iterations for the <case>@N files


def dataset(name):
    loader = {"breast_cancer": load_breast_cancer, "diabetes": load_diabetes, "iris": load_iris}[name]
    d = loader()
    names = [n.replace(" ", "_") for n in d.feature_names]
    return np.asarray(d.data, dtype=np.float64), np.asarray(d.target), names


def with_nans(X, rate, seed):
    rng = np.random.RandomState(seed)
    X = X.copy()
    X[rng.rand(*X.shape) < rate] = np.nan
    return X


def fmt(v):
    v = float(v)
    if math.isnan(v):
        return "NaN"
    return repr(v)


def write_tsv(path, header, rows):
    with open(path, "w") as f:
        f.write("\t".join(header) + "\n")
        for r in rows:
            f.write("\t".join(fmt(v) for v in r) + "\n")


def export(est, tmp):
    pkl = os.path.join(tmp, "model.pkl")
    out = os.path.join(tmp, "model.json")
    with open(pkl, "wb") as f:
        pickle.dump(est, f)
    subprocess.run([sys.executable, EXPORTER, pkl, out], check=True)
    with open(out) as f:
        text = f.read()
    return text, json.loads(text)


def boundary_rows(doc, base_rows, rng):
    """Rows with one value on, or one step beside, a split threshold."""
    trees = doc.get("trees")
    if not trees or "scaler" in doc:
        return []
    float32_splits = not doc["kind"].startswith("HistGradientBoosting")
    splits = []
    for t in trees:
        cats = t.get("categories_left")
        for i, f in enumerate(t["feature"]):
            th = t["threshold"][i]
            if f < 0 or isinstance(th, str) or (cats and cats[i] is not None):
                continue
            splits.append((f, th))
    if not splits:
        return []
    rows = []
    for j in rng.choice(len(splits), size=min(BOUNDARY_ROWS, len(splits)), replace=False):
        f, th = splits[j]
        values = {th, float(np.nextafter(th, np.inf)), float(np.nextafter(th, -np.inf))}
        if float32_splits:
            t32 = np.float32(th)
            values |= {
                float(t32),
                float(np.nextafter(t32, np.float32(np.inf))),
                float(np.nextafter(t32, np.float32(-np.inf))),
            }
        for v in sorted(values):
            row = base_rows[rng.randint(len(base_rows))].copy()
            row[f] = v
            rows.append(row)
    return rows


def outputs(est, X, classes):
    """Expected outputs: header and rows."""
    if classes is None:
        return ["prediction"], est.predict(X).reshape(-1, 1)
    proba = est.predict_proba(X)
    if len(classes) == 2:
        return [f"probability({classes[1]})"], proba[:, 1:2]
    return [f"probability({c})" for c in classes], proba


def raw_outputs(est, X, classes):
    final = est[-1] if hasattr(est, "steps") else est
    if isinstance(final, (RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier, DecisionTreeRegressor)):
        return None
    if classes is not None:
        raw = est.decision_function(X)
    elif isinstance(final, HistGradientBoostingRegressor):
        if final is not est:
            X = est[:-1].transform(X)
        raw = final._raw_predict(X)
    else:
        raw = est.predict(X)
    raw = np.asarray(raw).reshape(len(X), -1)
    if raw.shape[1] == 1:
        return ["raw"], raw
    return [f"raw({c})" for c in classes], raw


def staged_outputs(est, X, classes, n):
    final = est
    if hasattr(est, "steps"):
        final = est[-1]
        X = est[:-1].transform(X)
    if not isinstance(final, (GradientBoostingClassifier, GradientBoostingRegressor,
                              HistGradientBoostingClassifier, HistGradientBoostingRegressor)):
        return None
    if classes is None:
        pred = next(itertools.islice(final.staged_predict(X), n - 1, None))
        return ["prediction"], pred.reshape(-1, 1)
    proba = next(itertools.islice(final.staged_predict_proba(X), n - 1, None))
    if len(classes) == 2:
        return [f"probability({classes[1]})"], proba[:, 1:2]
    return [f"probability({c})" for c in classes], proba


def case(out_dir, tmp, name, est, data, nan_rate=0.0, categorical=None, perturb=None, feature_names=False,
         seed=0):
    X, y, names = data
    rng = np.random.RandomState(seed)
    if nan_rate:
        X = with_nans(X, nan_rate, seed + 1)
    if categorical:
        X = categorical(X)
    est.fit(X, y)
    if feature_names:
        # What fitting on a pandas DataFrame records (pandas is not installed).
        est.feature_names_in_ = np.asarray(names, dtype=object)
    text, doc = export(est, tmp)
    classes = doc.get("classes")

    idx = rng.choice(len(X), size=min(SAMPLE_ROWS, len(X)), replace=False)
    sample = X[idx]
    if perturb:
        sample = perturb(sample, rng)
    rows = list(sample)
    rows += boundary_rows(doc, X[idx], rng)
    Xt = np.array(rows, dtype=np.float64)

    with open(os.path.join(out_dir, f"{name}.json"), "w") as f:
        f.write(text)
    write_tsv(os.path.join(out_dir, f"{name}.input.tsv"), names, Xt)
    header, got = outputs(est, Xt, classes)
    write_tsv(os.path.join(out_dir, f"{name}.expected.tsv"), header, got)
    raw = raw_outputs(est, Xt, classes)
    if raw is not None:
        write_tsv(os.path.join(out_dir, f"{name}.raw.expected.tsv"), *raw)
    staged = staged_outputs(est, Xt, classes, STAGE)
    if staged is not None:
        write_tsv(os.path.join(out_dir, f"{name}@{STAGE}.expected.tsv"), *staged)
    print(f"{name}: {len(Xt)} rows, {len(text)} bytes", file=sys.stderr)


def diabetes_categorical(X):
    """Column 1 (sex) as codes 0/1 and column 2 (bmi) as 8 codes; NaN stays."""
    X = X.copy()
    sex = X[:, 1]
    X[:, 1] = np.where(np.isnan(sex), np.nan, (sex > 0).astype(float))
    bmi = X[:, 2]
    edges = np.nanquantile(bmi, np.linspace(0, 1, 9)[1:-1])
    X[:, 2] = np.where(np.isnan(bmi), np.nan, np.digitize(bmi, edges).astype(float))
    return X


def cancer_categorical(X):
    """Columns 0 and 20 as codes 0..5 and 0..9; NaN stays."""
    X = X.copy()
    for col, n in ((0, 6), (20, 10)):
        v = X[:, col]
        edges = np.nanquantile(v, np.linspace(0, 1, n + 1)[1:-1])
        X[:, col] = np.where(np.isnan(v), np.nan, np.digitize(v, edges).astype(float))
    return X


def unseen_codes(codes):
    """A perturbation of test rows: some categorical values become codes the
    model never saw in training (they follow the split's missing direction)."""

    def perturb(rows, rng):
        rows = rows.copy()
        for i in rng.choice(len(rows), size=len(rows) // 6, replace=False):
            col = rng.choice(list(codes))
            rows[i, col] = rng.choice(codes[col])
        return rows

    return perturb


def main(argv):
    out_dir = argv[1] if len(argv) > 1 else os.path.join(ROOT, "models", "testdata", "sklearn")
    os.makedirs(out_dir, exist_ok=True)
    for f in os.listdir(out_dir):
        if f.endswith((".json", ".tsv")):
            os.remove(os.path.join(out_dir, f))
    warnings.simplefilter("ignore")
    cancer, diabetes, iris = dataset("breast_cancer"), dataset("diabetes"), dataset("iris")
    with tempfile.TemporaryDirectory() as tmp:
        c = lambda *a, **k: case(out_dir, tmp, *a, **k)
        c("gb_clf_binary", GradientBoostingClassifier(n_estimators=30, max_depth=3, random_state=0), cancer,
          feature_names=True)
        c("gb_clf_exponential", GradientBoostingClassifier(loss="exponential", n_estimators=25, subsample=0.8,
                                                           random_state=1), cancer)
        c("gb_clf_zero_init", GradientBoostingClassifier(init="zero", n_estimators=20, random_state=2), cancer)
        c("gb_clf_multi", GradientBoostingClassifier(n_estimators=20, max_depth=2, random_state=3), iris)
        c("gb_reg", GradientBoostingRegressor(n_estimators=40, max_depth=3, random_state=4), diabetes)
        c("gb_reg_quantile", GradientBoostingRegressor(loss="quantile", alpha=0.8, n_estimators=20,
                                                       random_state=5), diabetes)
        c("gb_reg_scaled", make_pipeline(StandardScaler(), GradientBoostingRegressor(
            loss="huber", n_estimators=20, random_state=6)), diabetes)
        c("hgb_clf_binary_nan", HistGradientBoostingClassifier(max_iter=30, max_leaf_nodes=15, random_state=7),
          cancer, nan_rate=0.1)
        c("hgb_clf_multi_nan", HistGradientBoostingClassifier(max_iter=20, max_leaf_nodes=8, random_state=8),
          iris, nan_rate=0.1)
        c("hgb_reg_nan", HistGradientBoostingRegressor(max_iter=30, max_leaf_nodes=15, random_state=9),
          diabetes, nan_rate=0.1)
        c("hgb_reg_poisson", HistGradientBoostingRegressor(loss="poisson", max_iter=25, random_state=10),
          diabetes, nan_rate=0.05)
        c("hgb_reg_categorical", HistGradientBoostingRegressor(categorical_features=[1, 2], max_iter=25,
                                                               random_state=11),
          diabetes, nan_rate=0.05, categorical=diabetes_categorical,
          perturb=unseen_codes({1: [2.0, 3.0, 100.0], 2: [8.0, 9.0, 255.0]}))
        c("hgb_clf_categorical", HistGradientBoostingClassifier(categorical_features=[0, 20], max_iter=25,
                                                                random_state=12),
          cancer, nan_rate=0.05, categorical=cancer_categorical,
          perturb=unseen_codes({0: [6.0, 7.0, 200.0], 20: [10.0, 11.0, 255.0]}))
        c("rf_clf_binary", RandomForestClassifier(n_estimators=15, max_depth=6, random_state=13), cancer)
        c("rf_clf_multi", RandomForestClassifier(n_estimators=15, max_depth=5, random_state=14), iris)
        c("rf_reg", RandomForestRegressor(n_estimators=15, max_depth=6, random_state=15), diabetes)
        c("et_clf_multi", ExtraTreesClassifier(n_estimators=10, max_depth=5, random_state=16), iris)
        c("dt_reg", DecisionTreeRegressor(max_depth=6, random_state=17), diabetes)
        c("logreg_binary", make_pipeline(StandardScaler(), LogisticRegression()), cancer)
        c("logreg_binary_multinomial", make_pipeline(StandardScaler(), LogisticRegression(
            multi_class="multinomial")), cancer)
        iris_binary = (iris[0], (iris[1] == 2).astype(int), iris[2])
        c("logreg_iris_binary", LogisticRegression(max_iter=1000), iris_binary)
        c("logreg_multi", LogisticRegression(max_iter=1000), iris)
        c("logreg_multi_ovr", LogisticRegression(multi_class="ovr", max_iter=1000), iris)
        c("linreg", LinearRegression(), diabetes)
        c("ridge_scaled", make_pipeline(StandardScaler(), Ridge(alpha=0.5)), diabetes)
    print(f"scikit-learn {sklearn.__version__}, numpy {np.__version__}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
