#!/usr/bin/python3
"""Export a pickled scikit-learn estimator to seer's JSON model format.

Usage: python3 tools/sklearn_export.py IN.pkl OUT.json

This is the only place where seer's tooling reads a pickle: run it where the
model was trained, on a file you trust (unpickling runs arbitrary code), and
ship the JSON it writes. The format is described in docs/sklearn.md.

Supported estimators (optionally the last step of a Pipeline whose only
other step is a StandardScaler):
  GradientBoostingClassifier, GradientBoostingRegressor,
  HistGradientBoostingClassifier, HistGradientBoostingRegressor,
  RandomForestClassifier, RandomForestRegressor,
  ExtraTreesClassifier, ExtraTreesRegressor,
  DecisionTreeClassifier, DecisionTreeRegressor,
  LogisticRegression, LinearRegression, Ridge.

Anything else, or an option whose prediction seer cannot reproduce, exits
with status 1 and one line on stderr.
"""

import json
import math
import sys

FORMAT = "seer-sklearn"
VERSION = 1


class Unsupported(Exception):
    """The estimator cannot be exported faithfully."""


def finite_list(values, what):
    out = []
    for v in values:
        f = float(v)
        if not math.isfinite(f):
            raise Unsupported(f"{what} holds a non-finite value {f!r}")
        out.append(f)
    return out


def threshold_list(values):
    """Thresholds may be infinite (HistGradientBoosting splits on NaN
    only): write those as the strings "inf" and "-inf"."""
    out = []
    for v in values:
        f = float(v)
        if math.isnan(f):
            raise Unsupported("a split threshold is NaN")
        if math.isinf(f):
            out.append("inf" if f > 0 else "-inf")
        else:
            out.append(f)
    return out


def json_classes(classes):
    out = []
    for c in classes:
        if hasattr(c, "item"):
            c = c.item()
        if isinstance(c, bool):
            c = int(c)
        if isinstance(c, int):
            out.append(c)
        elif isinstance(c, float):
            if not math.isfinite(c):
                raise Unsupported(f"class label {c!r} is not finite")
            out.append(c)
        elif isinstance(c, str):
            out.append(c)
        else:
            raise Unsupported(f"class label {c!r} of type {type(c).__name__}")
    return out


def decision_tree(tree, width_value, what):
    """Convert a fitted sklearn.tree._tree.Tree into seer's arrays.

    width_value(value) turns tree_.value (n_nodes, n_outputs, max_classes)
    into the per-node leaf values, a 2-D array (n_nodes, W), computed with
    the same numpy operations scikit-learn's predict uses.
    """
    import numpy as np

    t = tree
    if t.n_outputs != 1:
        raise Unsupported(f"{what}: multi-output trees are not supported")
    left = t.children_left
    right = t.children_right
    n = t.node_count
    is_leaf = left == -1
    if np.any((right == -1) != is_leaf):
        raise Unsupported(f"{what}: a node has exactly one child")
    feature = np.where(is_leaf, -1, t.feature)
    threshold = np.where(is_leaf, 0.0, t.threshold)
    # Trees of scikit-learn < 1.3 never see missing values. seer sends a
    # missing value to the child that saw more training samples (ties go
    # right), the rule scikit-learn 1.3+ applies to features that had no
    # missing values in training.
    counts = t.n_node_samples
    missing_left = [
        bool(not leaf and counts[left[i]] > counts[right[i]])
        for i, leaf in enumerate(is_leaf)
    ]
    values = width_value(t.value)
    values = np.where(is_leaf[:, None], values, 0.0)
    return {
        "feature": [int(f) for f in feature],
        "threshold": threshold_list(threshold),
        "left": [int(c) for c in left],
        "right": [int(c) for c in right],
        "missing_left": missing_left,
        "value": finite_list(values.reshape(-1), f"{what}: leaf values"),
    }, n


def export_gradient_boosting(est, out):
    import numpy as np
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.ensemble import _gb_losses as losses

    loss = est._loss
    if isinstance(loss, losses.MultinomialDeviance):
        link = "softmax"
    elif isinstance(loss, losses.BinomialDeviance):
        link = "logistic"
    elif isinstance(loss, losses.ExponentialLoss):
        link = "logistic_2x"
    elif isinstance(
        loss,
        (
            losses.LeastSquaresError,
            losses.LeastAbsoluteError,
            losses.HuberLossFunction,
            losses.QuantileLossFunction,
        ),
    ):
        link = "identity"
    else:
        raise Unsupported(f"loss {type(loss).__name__} has no known link")
    is_clf = isinstance(est, GradientBoostingClassifier)
    if is_clf != (link != "identity"):
        raise Unsupported(f"loss {type(loss).__name__} on {type(est).__name__}")

    n_features = est.n_features_in_
    if est.init_ == "zero":
        base = np.zeros(loss.K)
    elif isinstance(est.init_, DummyClassifier) and est.init_.strategy == "stratified":
        raise Unsupported("init DummyClassifier(strategy='stratified') predicts at random")
    elif isinstance(est.init_, (DummyClassifier, DummyRegressor)):
        # A dummy initial estimator predicts a constant: compute it once,
        # with scikit-learn's own code.
        x0 = np.zeros((1, n_features), dtype=np.float32)
        base = loss.get_init_raw_predictions(x0, est.init_).astype(np.float64)[0]
    else:
        raise Unsupported(
            f"init estimator {type(est.init_).__name__} (only the default or 'zero')"
        )

    stages = est.estimators_
    if stages.ndim != 2 or stages.shape[1] != loss.K:
        raise Unsupported("estimators_ does not hold K trees per stage")
    lr = float(est.learning_rate)
    trees = []
    for i in range(stages.shape[0]):
        for k in range(loss.K):
            tree = stages[i, k]
            if tree is None:
                raise Unsupported(f"stage {i} is not fitted")
            # predict_stages adds learning_rate * value in float64.
            arrays, _ = decision_tree(
                tree.tree_,
                lambda v: lr * v[:, 0, 0:1],
                f"stage {i} tree {k}",
            )
            arrays = {"output": k, **arrays}
            trees.append(arrays)
    out["link"] = link
    out["base"] = finite_list(base, "initial raw prediction")
    out["trees"] = trees


def export_forest(est, out, is_clf):
    import numpy as np

    if getattr(est, "n_outputs_", 1) != 1:
        raise Unsupported("multi-output estimators are not supported")
    estimators = getattr(est, "estimators_", None)
    if estimators is None:
        estimators = [est]  # a single DecisionTree
    n_classes = len(est.classes_) if is_clf else 0
    trees = []
    for i, tree in enumerate(estimators):
        if is_clf:
            if int(np.atleast_1d(tree.n_classes_)[0]) != n_classes:
                raise Unsupported(f"tree {i} has {tree.n_classes_} classes")

            def fractions(v):
                # DecisionTreeClassifier.predict_proba: class counts over
                # their sum (a zero sum is left as is).
                proba = v[:, 0, :n_classes].copy()
                normalizer = proba.sum(axis=1)[:, np.newaxis]
                normalizer[normalizer == 0.0] = 1.0
                proba /= normalizer
                if n_classes == 2:
                    return proba[:, 1:2]
                return proba

            arrays, _ = decision_tree(tree.tree_, fractions, f"tree {i}")
        else:
            arrays, _ = decision_tree(tree.tree_, lambda v: v[:, 0, 0:1], f"tree {i}")
        trees.append(arrays)
    out["link"] = "identity"
    out["trees"] = trees


def export_hist_gradient_boosting(est, out, is_clf):
    import numpy as np

    link_name = type(est._loss.link).__name__
    links = {
        "IdentityLink": "identity",
        "LogLink": "exp",
        "LogitLink": "logistic",
        "MultinomialLogit": "softmax",
    }
    if link_name not in links:
        raise Unsupported(f"loss {type(est._loss).__name__} has no known link")
    link = links[link_name]
    if is_clf != (link in ("logistic", "softmax")):
        raise Unsupported(f"loss {type(est._loss).__name__} on {type(est).__name__}")

    n_features = est.n_features_in_
    K = est.n_trees_per_iteration_
    base = np.asarray(est._baseline_prediction, dtype=np.float64).reshape(-1)
    if base.shape[0] != K:
        raise Unsupported("baseline prediction does not match trees per iteration")

    mapper = est._bin_mapper
    is_cat = getattr(mapper, "is_categorical_", None)
    known = None
    if is_cat is not None and np.any(is_cat):
        known_bitsets, f_idx_map = mapper.make_known_categories_bitsets()
        known = []
        for f in range(n_features):
            if not is_cat[f]:
                known.append(None)
                continue
            known.append(bitset_codes(known_bitsets[f_idx_map[f]]))

    trees = []
    for it, predictors in enumerate(est._predictors):
        if len(predictors) != K:
            raise Unsupported(f"iteration {it} has {len(predictors)} trees, want {K}")
        for k, pred in enumerate(predictors):
            nodes = pred.nodes
            leaf = nodes["is_leaf"].astype(bool)
            cat = nodes["is_categorical"].astype(bool) & ~leaf
            tree = {
                "output": k,
                "feature": [-1 if l else int(f) for f, l in zip(nodes["feature_idx"], leaf)],
                "threshold": threshold_list(np.where(leaf | cat, 0.0, nodes["num_threshold"])),
                "left": [-1 if l else int(c) for c, l in zip(nodes["left"], leaf)],
                "right": [-1 if l else int(c) for c, l in zip(nodes["right"], leaf)],
                "missing_left": [bool(m) and not l for m, l in zip(nodes["missing_go_to_left"], leaf)],
                "value": finite_list(np.where(leaf, nodes["value"], 0.0), f"iteration {it} tree {k}: leaf values"),
            }
            if np.any(cat):
                if known is None:
                    raise Unsupported(f"iteration {it} tree {k}: categorical split without categorical features")
                bitsets = pred.raw_left_cat_bitsets
                cats = []
                for i in range(len(nodes)):
                    if not cat[i]:
                        cats.append(None)
                        continue
                    b = int(nodes["bitset_idx"][i])
                    if b >= len(bitsets) or known[int(nodes["feature_idx"][i])] is None:
                        raise Unsupported(f"iteration {it} tree {k} node {i}: bad categorical split")
                    cats.append(bitset_codes(bitsets[b]))
                tree["categories_left"] = cats
            trees.append(tree)
    out["link"] = link
    out["base"] = finite_list(base, "baseline prediction")
    if known is not None:
        out["known_categories"] = known
    out["trees"] = trees


def bitset_codes(bitset):
    """The codes set in a scikit-learn bitset of 8 uint32 words."""
    codes = []
    for w, word in enumerate(bitset):
        word = int(word)
        for b in range(32):
            if word >> b & 1:
                codes.append(32 * w + b)
    return codes


def export_logistic(est, out):
    import numpy as np

    coef = np.asarray(est.coef_, dtype=np.float64)
    intercept = np.atleast_1d(np.asarray(est.intercept_, dtype=np.float64))
    n_classes = len(est.classes_)
    ovr = est.multi_class in ("ovr", "warn") or (
        est.multi_class == "auto"
        and (n_classes <= 2 or est.solver in ("liblinear", "newton-cholesky"))
    )
    if n_classes == 2:
        if coef.shape[0] != 1:
            raise Unsupported(f"binary coef_ has {coef.shape[0]} rows")
        link = "logistic" if ovr else "softmax"
    else:
        if coef.shape[0] != n_classes:
            raise Unsupported(f"coef_ has {coef.shape[0]} rows for {n_classes} classes")
        link = "ovr" if ovr else "softmax"
    if intercept.shape[0] != coef.shape[0]:
        raise Unsupported("intercept_ does not match coef_")
    out["link"] = link
    out["coef"] = [finite_list(row, "coef_") for row in coef]
    out["intercept"] = finite_list(intercept, "intercept_")


def export_linear_regression(est, out):
    import numpy as np

    coef = np.asarray(est.coef_, dtype=np.float64)
    if coef.ndim == 2:
        if coef.shape[0] != 1:
            raise Unsupported("multi-target regressions are not supported")
        coef = coef[0]
    intercept = np.atleast_1d(np.asarray(est.intercept_, dtype=np.float64)).reshape(-1)
    if intercept.shape[0] != 1:
        raise Unsupported("multi-target regressions are not supported")
    out["link"] = "identity"
    out["coef"] = [finite_list(coef, "coef_")]
    out["intercept"] = finite_list(intercept, "intercept_")


def export_scaler(scaler, n_features):
    import numpy as np

    if getattr(scaler, "n_features_in_", None) != n_features:
        raise Unsupported("StandardScaler and estimator disagree on the number of features")
    mean = scaler.mean_ if scaler.with_mean else None
    scale = scaler.scale_ if scaler.with_std else None
    if mean is None:
        mean = np.zeros(n_features)
    if scale is None:
        scale = np.ones(n_features)
    if len(mean) != n_features or len(scale) != n_features:
        raise Unsupported("StandardScaler is not fitted on every feature")
    scale = finite_list(scale, "StandardScaler scale_")
    if any(s == 0 for s in scale):
        raise Unsupported("StandardScaler scale_ holds a zero")
    return {"mean": finite_list(mean, "StandardScaler mean_"), "scale": scale}


def export(obj):
    """Return seer's JSON document (a dict) for a fitted estimator."""
    import numpy as np
    import sklearn
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        ExtraTreesRegressor,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
    )
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

    scaler = None
    est = obj
    if isinstance(obj, Pipeline):
        steps = [s for _, s in obj.steps if s is not None and s != "passthrough"]
        if len(steps) == 2 and type(steps[0]) is StandardScaler:
            scaler, est = steps
        elif len(steps) == 1:
            est = steps[0]
        else:
            names = ", ".join(type(s).__name__ for s in steps)
            raise Unsupported(f"Pipeline({names}): only StandardScaler then an estimator")

    kinds = {
        GradientBoostingClassifier: "GradientBoostingClassifier",
        GradientBoostingRegressor: "GradientBoostingRegressor",
        HistGradientBoostingClassifier: "HistGradientBoostingClassifier",
        HistGradientBoostingRegressor: "HistGradientBoostingRegressor",
        RandomForestClassifier: "RandomForestClassifier",
        RandomForestRegressor: "RandomForestRegressor",
        ExtraTreesClassifier: "ExtraTreesClassifier",
        ExtraTreesRegressor: "ExtraTreesRegressor",
        DecisionTreeClassifier: "DecisionTreeClassifier",
        DecisionTreeRegressor: "DecisionTreeRegressor",
        LogisticRegression: "LogisticRegression",
        LinearRegression: "LinearRegression",
        Ridge: "Ridge",
    }
    # Exact types only: a subclass may predict differently.
    kind = kinds.get(type(est))
    if kind is None:
        raise Unsupported(f"estimator {type(est).__module__}.{type(est).__name__}")
    n_features = getattr(est, "n_features_in_", None)
    if n_features is None:
        raise Unsupported(f"{kind} is not fitted")

    out = {
        "format": FORMAT,
        "version": VERSION,
        "kind": kind,
        "sklearn_version": sklearn.__version__,
        "n_features": int(n_features),
    }
    names = getattr(est, "feature_names_in_", None)
    if names is None and scaler is not None:
        names = getattr(scaler, "feature_names_in_", None)
    if names is not None:
        out["feature_names"] = [str(n) for n in names]
    if getattr(est, "n_outputs_", 1) != 1:
        raise Unsupported(f"{kind} with {est.n_outputs_} outputs (only one)")
    is_clf = kind.endswith("Classifier") or kind == "LogisticRegression"
    if is_clf:
        out["classes"] = json_classes(est.classes_)
        if len(out["classes"]) < 2:
            raise Unsupported("a classifier needs at least two classes")
    if scaler is not None:
        out["scaler"] = export_scaler(scaler, int(n_features))

    if kind.startswith("GradientBoosting"):
        export_gradient_boosting(est, out)
    elif kind.startswith("HistGradientBoosting"):
        export_hist_gradient_boosting(est, out, is_clf)
    elif kind.startswith(("RandomForest", "ExtraTrees", "DecisionTree")):
        export_forest(est, out, is_clf)
    elif kind == "LogisticRegression":
        export_logistic(est, out)
    else:
        export_linear_regression(est, out)
    return out


def load(path):
    import joblib

    # joblib reads both its own files and plain pickles.
    return joblib.load(path)


def main(argv):
    if len(argv) != 3:
        print("usage: sklearn_export.py IN.pkl OUT.json", file=sys.stderr)
        return 2
    try:
        doc = export(load(argv[1]))
        text = json.dumps(doc, allow_nan=False, separators=(",", ":"))
    except Unsupported as e:
        print(f"sklearn_export: unsupported: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # a broken or foreign pickle
        msg = str(e).splitlines()[0] if str(e) else ""
        print(f"sklearn_export: {argv[1]}: {type(e).__name__}: {msg}", file=sys.stderr)
        return 1
    with open(argv[2], "w") as f:
        f.write(text)
        f.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
