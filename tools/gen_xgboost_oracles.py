#!/usr/bin/python3
"""Generate XGBoost test models and the predictions XGBoost itself makes.

Run with Debian's python3 (python3-xgboost 1.7.4, python3-sklearn 1.2.1;
the scikit-learn datasets used ship with it, nothing is downloaded):

    /usr/bin/python3 tools/gen_xgboost_oracles.py models/testdata/xgboost

For each case it writes the model as JSON (<case>.json) and UBJSON
(<case>.ubj), the predictions (<case>.expected.tsv) and margins
(<case>.raw.tsv) for the rows of the case's input file, and lists the case
in manifest.json. Input files are shared by the cases of one dataset.
Predictions are printed as float32 (str(numpy.float32(v)) round-trips the
exact float32), inputs as float64 (repr). It also writes legacy.model, an
old binary model that loaders must refuse.

Models are small on purpose (the directory stays well under 1.5 MB): a few
shallow trees per case are enough to exercise every split, missing-value
and output path. The exception is numeric200, the speed benchmark's model:
200 trees of depth 6 on 16 numeric features (with missing values and
feature names), written as gzipped UBJSON (numeric200.ubj.gz, about
300 KB) with its inputs, predictions and margins.
"""

import gzip
import json
import os
import sys

import numpy as np
import xgboost as xgb
from sklearn.datasets import load_breast_cancer, load_diabetes, load_iris, make_regression

assert xgb.__version__ == "1.7.4", xgb.__version__

OUT = sys.argv[1] if len(sys.argv) > 1 else "models/testdata/xgboost"
RNG = np.random.default_rng(20240601)


def with_missing(x, frac):
    """Copies x with a fraction of its cells set to NaN."""
    x = x.copy()
    mask = RNG.random(x.shape) < frac
    x[mask] = np.nan
    return x


def write_tsv(path, header, rows, fmt):
    with open(path, "w") as f:
        f.write("\t".join(header) + "\n")
        for r in rows:
            f.write("\t".join(fmt(v) for v in r) + "\n")


def f64(v):
    return "NaN" if np.isnan(v) else repr(float(v))


def f32(v):
    v = np.float32(v)
    return "NaN" if np.isnan(v) else str(v)


# Datasets: training rows (with some missing cells) and the rows to score.
cancer = load_breast_cancer()
cancer_x = with_missing(cancer.data, 0.05)
cancer_y = cancer.target.astype(float)
cancer_test = with_missing(cancer.data[::6][:90], 0.08)

diabetes = load_diabetes()
diab_x = with_missing(diabetes.data, 0.05)
diab_y = diabetes.target
diab_test = with_missing(diabetes.data[::5][:80], 0.08)

iris = load_iris()
iris_x = with_missing(iris.data, 0.03)
iris_y = iris.target.astype(float)
iris_test = with_missing(iris.data, 0.05)


def categorical_data():
    """Diabetes with two categorical columns: sex (2 codes) and BMI in 12
    bins (codes 0..11), the other columns numeric."""
    d = diabetes.data
    sex = (d[:, 1] > 0).astype(float)
    bmi = np.digitize(d[:, 2], np.quantile(d[:, 2], np.linspace(0, 1, 13)[1:-1])).astype(float)
    x = np.column_stack([sex, bmi, d[:, 0], d[:, 3], d[:, 8]])
    x = with_missing(x, 0.03)
    test = x[::5][:80].copy()
    # Unseen, negative, fractional, huge and missing codes.
    odd = [12, 40, -1, 2.5, 7.9999999999, 1e9, np.nan, 16777216, -0.5, 11]
    test[: len(odd), 1] = odd
    test[len(odd) : 2 * len(odd), 0] = [2, -1, 1.5, np.nan, 0, 1, 3, 100, -3, 0.9999]
    return x, test


cat_x, cat_test = categorical_data()
CAT_TYPES = ["c", "c", "q", "q", "q"]

INPUTS = {
    "cancer": (list(cancer.feature_names), cancer_test),
    "diabetes": (list(diabetes.feature_names), diab_test),
    "iris": (list(iris.feature_names), iris_test),
    "categorical": (["sex", "bmi_bin", "age", "bp", "s5"], cat_test),
}

manifest = []


def dtest(inp):
    _, x = INPUTS[inp]
    if inp == "categorical":
        return xgb.DMatrix(x, feature_types=CAT_TYPES, enable_categorical=True)
    return xgb.DMatrix(x)


def save(case, booster, inp, objective, outputs_header, limit=None, extra=None):
    """Saves the model and its predictions for the input rows."""
    booster.save_model(os.path.join(OUT, case + ".json"))
    booster.save_model(os.path.join(OUT, case + ".ubj"))
    dm = dtest(inp)
    kind = json.loads(booster.save_config())["learner"]["gradient_booster"]["name"]
    # Predict what loaders do by default: the first best_iteration+1
    # iterations (xgb.train records best_iteration even without early
    # stopping). gblinear has no iterations.
    rng = (0, 0)
    if kind != "gblinear" and booster.attr("best_iteration") is not None:
        rng = (0, int(booster.attr("best_iteration")) + 1)
    pred = booster.predict(dm, iteration_range=rng).reshape(dm.num_row(), -1)
    raw = booster.predict(dm, output_margin=True, iteration_range=rng).reshape(dm.num_row(), -1)
    write_tsv(os.path.join(OUT, case + ".expected.tsv"), outputs_header(pred.shape[1]), pred, f32)
    write_tsv(os.path.join(OUT, case + ".raw.tsv"), ["margin(%d)" % i for i in range(raw.shape[1])], raw, f32)
    entry = {
        "case": case,
        "input": inp + ".input.tsv",
        "objective": objective,
        "booster": kind,
        "outputs": int(pred.shape[1]),
        "raw_outputs": int(raw.shape[1]),
        "iterations": rng[1],
    }
    if limit is not None:
        p = booster.predict(dm, iteration_range=(0, limit)).reshape(dm.num_row(), -1)
        write_tsv(os.path.join(OUT, "%s@%d.expected.tsv" % (case, limit)), outputs_header(p.shape[1]), p, f32)
        entry["limit"] = limit
    if extra:
        entry.update(extra)
    manifest.append(entry)


def prediction(n):
    return ["prediction"] if n == 1 else ["prediction(%d)" % i for i in range(n)]


def probability(n):
    return ["probability(1)"] if n == 1 else ["probability(%d)" % i for i in range(n)]


def train(params, dtrain, rounds, **kw):
    p = {"eta": 0.3, "seed": 7, "nthread": 1}
    if params.get("booster") != "gblinear":
        p["max_depth"] = 3
    p.update(params)
    return xgb.train(p, dtrain, rounds, **kw)


def numeric200():
    """The benchmark model: 200 trees of depth 6 on 20,000 synthetic rows
    of 16 numeric features (5% missing), named f00..f15."""
    rng = np.random.default_rng(200)
    x, y = make_regression(n_samples=20000, n_features=16, n_informative=12, noise=10.0, random_state=3)
    x[rng.random(x.shape) < 0.05] = np.nan
    names = ["f%02d" % i for i in range(16)]
    booster = xgb.train({"objective": "reg:squarederror", "max_depth": 6, "eta": 0.1, "seed": 7, "nthread": 1},
                        xgb.DMatrix(x, label=y, feature_names=names), 200)
    raw = booster.save_raw(raw_format="ubj")
    with open(os.path.join(OUT, "numeric200.ubj.gz"), "wb") as f:
        # mtime 0: the same model gives the same bytes.
        with gzip.GzipFile(fileobj=f, mode="wb", mtime=0) as g:
            g.write(raw)
    test = x[:200].copy()
    test[rng.random(test.shape) < 0.05] = np.nan
    dm = xgb.DMatrix(test, feature_names=names)
    write_tsv(os.path.join(OUT, "numeric200.input.tsv"), names, test, f64)
    write_tsv(os.path.join(OUT, "numeric200.expected.tsv"), ["prediction"], booster.predict(dm).reshape(-1, 1), f32)
    write_tsv(os.path.join(OUT, "numeric200.raw.tsv"), ["margin(0)"],
              booster.predict(dm, output_margin=True).reshape(-1, 1), f32)


def main():
    os.makedirs(OUT, exist_ok=True)
    numeric200()
    dc = xgb.DMatrix(cancer_x, label=cancer_y)
    dd = xgb.DMatrix(diab_x, label=diab_y)
    di = xgb.DMatrix(iris_x, label=iris_y)

    save("binary_logistic", train({"objective": "binary:logistic", "base_score": 0.3}, dc, 12),
         "cancer", "binary:logistic", probability)
    save("binary_logitraw", train({"objective": "binary:logitraw"}, dc, 8), "cancer", "binary:logitraw", prediction)
    save("binary_hinge", train({"objective": "binary:hinge"}, dc, 8), "cancer", "binary:hinge", prediction)
    save("reg_logistic", train({"objective": "reg:logistic", "max_depth": 2}, dc, 8), "cancer", "reg:logistic", prediction)
    save("dart", train({"objective": "binary:logistic", "booster": "dart", "rate_drop": 0.3, "skip_drop": 0.2,
                        "max_depth": 2}, dc, 12), "cancer", "binary:logistic", probability)

    save("multi_softprob", train({"objective": "multi:softprob", "num_class": 3, "max_depth": 2}, di, 6),
         "iris", "multi:softprob", probability)
    save("multi_softmax", train({"objective": "multi:softmax", "num_class": 3, "max_depth": 2}, di, 6),
         "iris", "multi:softmax", lambda n: ["class"])
    save("random_forest", train({"objective": "multi:softprob", "num_class": 3, "max_depth": 2, "eta": 1,
                                 "num_parallel_tree": 3, "subsample": 0.8, "colsample_bynode": 0.8}, di, 2),
         "iris", "multi:softprob", probability, limit=1)

    # Early stopping: best_iteration is below the number of rounds.
    train_rows, valid_rows = np.arange(0, 442, 2), np.arange(1, 442, 2)
    dtr = xgb.DMatrix(diab_x[train_rows], label=diab_y[train_rows])
    dva = xgb.DMatrix(diab_x[valid_rows], label=diab_y[valid_rows])
    es = train({"objective": "reg:squarederror", "eta": 0.5, "max_depth": 4}, dtr, 40,
               evals=[(dva, "valid")], early_stopping_rounds=3, verbose_eval=False)
    assert int(es.attr("best_iteration")) + 1 < es.num_boosted_rounds(), "no early stop"
    save("reg_squarederror", es, "diabetes", "reg:squarederror", prediction, limit=3)
    save("count_poisson", train({"objective": "count:poisson", "max_depth": 2}, dd, 8), "diabetes", "count:poisson", prediction)
    save("reg_gamma", train({"objective": "reg:gamma", "max_depth": 2, "base_score": 150}, dd, 8), "diabetes", "reg:gamma", prediction)
    save("reg_tweedie", train({"objective": "reg:tweedie", "max_depth": 2}, dd, 8), "diabetes", "reg:tweedie", prediction)
    save("reg_absoluteerror", train({"objective": "reg:absoluteerror", "max_depth": 2}, dd, 6), "diabetes", "reg:absoluteerror", prediction)

    daft = xgb.DMatrix(diab_x)
    daft.set_float_info("label_lower_bound", diab_y)
    upper = diab_y.copy()
    upper[::3] = np.inf  # right-censored
    daft.set_float_info("label_upper_bound", upper)
    save("survival_aft", train({"objective": "survival:aft", "aft_loss_distribution": "normal",
                                "aft_loss_distribution_scale": 1.0, "max_depth": 2}, daft, 6),
         "diabetes", "survival:aft", prediction)
    cox_y = diab_y.copy()
    cox_y[::4] *= -1  # censored
    save("survival_cox", train({"objective": "survival:cox", "max_depth": 2}, xgb.DMatrix(diab_x, label=cox_y), 6),
         "diabetes", "survival:cox", prediction)
    drank = xgb.DMatrix(diab_x, label=np.digitize(diab_y, [100, 150, 200, 250]))
    drank.set_group([34] * 13)
    save("rank_pairwise", train({"objective": "rank:pairwise", "max_depth": 2}, drank, 6), "diabetes", "rank:pairwise", prediction)

    dmt = xgb.DMatrix(diab_x, label=np.column_stack([diab_y, diabetes.data[:, 2] * 100]))
    save("multi_target", train({"objective": "reg:squarederror", "tree_method": "hist", "max_depth": 2}, dmt, 5),
         "diabetes", "reg:squarederror", prediction)

    save("gblinear", train({"booster": "gblinear", "objective": "reg:squarederror", "eta": 0.5}, dd, 10),
         "diabetes", "reg:squarederror", prediction)
    save("gblinear_softprob", train({"booster": "gblinear", "objective": "multi:softprob", "num_class": 3,
                                     "eta": 0.5}, di, 10), "iris", "multi:softprob", probability)

    dcat = xgb.DMatrix(cat_x, label=diab_y, feature_types=CAT_TYPES, enable_categorical=True)
    save("categorical", train({"objective": "reg:squarederror", "tree_method": "hist", "max_cat_to_onehot": 1,
                               "max_depth": 3}, dcat, 8), "categorical", "reg:squarederror", prediction)
    dcatb = xgb.DMatrix(cat_x, label=(diab_y > 140).astype(float), feature_types=CAT_TYPES, enable_categorical=True)
    save("categorical_onehot", train({"objective": "binary:logistic", "tree_method": "hist", "max_cat_to_onehot": 16,
                                      "max_depth": 2}, dcatb, 6), "categorical", "binary:logistic", probability)

    for name, (header, x) in INPUTS.items():
        write_tsv(os.path.join(OUT, name + ".input.tsv"), header, x, f64)

    legacy = train({"objective": "binary:logistic", "max_depth": 1}, dc, 2)
    legacy.save_model(os.path.join(OUT, "legacy.model"))
    with open(os.path.join(OUT, "legacy.model"), "rb") as f:
        assert f.read(4) == b"binf"

    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump({"xgboost_version": xgb.__version__, "cases": manifest}, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
