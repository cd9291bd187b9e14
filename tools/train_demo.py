#!/usr/bin/python3
"""Train the quickstart's store ranker and write it as a LightGBM text model.

LightGBM itself is not a dependency of seer, so the model is trained with
scikit-learn's GradientBoostingClassifier (log loss) on a seeded synthetic
food-delivery data set (will this consumer order from this store?) and its
trees are written in LightGBM's v3 text format, which seer (and LightGBM)
load:

    /usr/bin/python3 tools/train_demo.py [output directory]

The default output directory is configs/quickstart/models/store_ranker/1,
which receives model.txt and golden.tsv: about twenty input rows with the
probability scikit-learn's predict_proba gives them, which the Go tests
reproduce through seer's LightGBM loader.

How the trees map onto LightGBM's format:
- scikit-learn's initial log-odds and the learning rate are folded into the
  leaf values (the first tree carries the initial score), so every tree has
  shrinkage=1 and the model's raw score is the plain sum of its leaves, added
  in the same order scikit-learn adds them.
- scikit-learn goes left when float32(x) <= threshold; LightGBM goes left
  when x <= threshold in float64. Each threshold is rewritten to the largest
  double t' for which x <= t' holds exactly when float32(x) <= threshold, so
  both agree on every input.
- store_cuisine (a code 0..4 for pizza, sushi, burger, thai, mexican) is
  split like any number; the model has no LightGBM categorical splits.
- Missing inputs: every split has decision_type=10 (missing type NaN,
  default left), so a NaN input goes left at every split on it, as if it
  were smaller than any value. scikit-learn 1.2 cannot score NaN; the golden
  scores of rows with NaN come from scikit-learn scoring the same row with
  the lowest float32 in place of NaN, which goes left everywhere too. seer
  applies feature defaults before scoring, so NaN reaches the model only
  for a feature declared without a default.
"""

import math
import os
import sys

import numpy as np
from sklearn.ensemble import GradientBoostingClassifier

FEATURES = [
    "store_avg_rating",
    "store_num_ratings",
    "store_delivery_minutes",
    "store_price_level",
    "store_cuisine",
    "consumer_order_count",
    "consumer_avg_spend",
    "hour_of_day",
    "distance_km",
]
CUISINES = ["pizza", "sushi", "burger", "thai", "mexican"]
SEED = 20240611
N_TRAIN = 20000
N_ESTIMATORS = 48
MAX_DEPTH = 3
LEARNING_RATE = 0.1


def make_data(rng, n):
    """Returns n rows of the nine features and an ordered/not-ordered label."""
    rating = np.clip(np.round(rng.normal(4.1, 0.45, n), 1), 1.0, 5.0)
    num_ratings = np.floor(rng.lognormal(4.5, 1.3, n)).astype(np.int64)
    delivery = np.clip(np.round(12 + rng.gamma(4.0, 6.0, n), 1), 10.0, 95.0)
    price = rng.choice([1, 2, 3, 4], n, p=[0.3, 0.4, 0.2, 0.1])
    cuisine = rng.choice(len(CUISINES), n, p=[0.3, 0.15, 0.25, 0.15, 0.15])
    orders = rng.negative_binomial(2, 0.08, n)
    spend = np.round(rng.lognormal(math.log(25), 0.4, n), 2)
    hour_weights = np.array([1, 1, 0.5, 0.3, 0.3, 0.5, 1, 2, 3, 3, 4, 8,
                             9, 7, 4, 3, 4, 7, 10, 10, 8, 5, 3, 2], float)
    hour = rng.choice(24, n, p=hour_weights / hour_weights.sum())
    distance = np.clip(np.round(rng.gamma(2.0, 1.6, n), 2), 0.1, 25.0)

    logit = (
        -0.9
        + 1.3 * (rating - 4.0)
        + 0.12 * np.log1p(num_ratings)
        - 0.045 * (delivery - 35.0)
        - 0.22 * distance
        + 0.2 * np.log1p(orders)
    )
    meal = ((hour >= 11) & (hour <= 13)) | ((hour >= 17) & (hour <= 20))
    night = (hour <= 5)
    logit += np.where(meal, 0.8, 0.0) - np.where(night, 0.7, 0.0)
    # Pizza and burgers sell when cheap; sushi to consumers who spend more;
    # tacos late in the evening; pricey stores lose consumers who spend little.
    cheap_comfort = np.isin(cuisine, [0, 2]) & (price <= 2)
    logit += np.where(cheap_comfort, 0.7, 0.0)
    logit += np.where((cuisine == 1) & (spend > 32), 1.0, 0.0)
    logit += np.where((cuisine == 1) & (spend < 20), -0.8, 0.0)
    logit += np.where((cuisine == 4) & (hour >= 21), 0.9, 0.0)
    logit -= np.where(spend < 20, 0.35 * (price - 1), 0.0)
    label = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)

    x = np.column_stack([rating, num_ratings, delivery, price, cuisine,
                         orders, spend, hour, distance]).astype(np.float64)
    return x, label


def lgb_threshold(t):
    """The largest double t2 with x <= t2 exactly when float32(x) <= t."""
    t32 = np.float32(t)
    if float(t32) > t:
        t32 = np.nextafter(t32, np.float32(-np.inf))
    up = np.nextafter(t32, np.float32(np.inf))
    mid = (float(t32) + float(up)) / 2  # exact: float32 halves fit a double
    # A double exactly halfway rounds to the float32 with an even mantissa.
    if int(np.array(t32).view(np.uint32)) & 1 == 0:
        return mid
    return float(np.nextafter(mid, -np.inf))


def fmt(v):
    """Writes a double the way LightGBM does: 17 significant digits."""
    return "%.17g" % v


def tree_block(index, tree, scale, offset):
    """Returns tree `index` (a fitted sklearn Tree) as a LightGBM block."""
    left, right = tree.children_left, tree.children_right
    internal, leaves = [], []
    order = {}
    stack = [0]
    while stack:  # preorder: the root is internal node 0
        node = stack.pop()
        if left[node] == -1:
            order[node] = ~len(leaves)
            leaves.append(node)
            continue
        order[node] = len(internal)
        internal.append(node)
        stack.append(right[node])
        stack.append(left[node])
    if not internal:
        raise SystemExit("a tree without splits: unexpected for this data")
    value = tree.value[:, 0, 0]
    n = tree.weighted_n_node_samples
    imp = tree.impurity

    def gain(node):
        l, r = left[node], right[node]
        return n[node] * imp[node] - n[l] * imp[l] - n[r] * imp[r]

    lines = [
        "num_leaves=%d" % len(leaves),
        "num_cat=0",
        "split_feature=" + " ".join(str(tree.feature[i]) for i in internal),
        "split_gain=" + " ".join("%g" % gain(i) for i in internal),
        "threshold=" + " ".join(fmt(lgb_threshold(tree.threshold[i])) for i in internal),
        "decision_type=" + " ".join("10" for _ in internal),
        "left_child=" + " ".join(str(order[left[i]]) for i in internal),
        "right_child=" + " ".join(str(order[right[i]]) for i in internal),
        "leaf_value=" + " ".join(fmt(offset + scale * value[i]) for i in leaves),
        "leaf_weight=" + " ".join("%g" % n[i] for i in leaves),
        "leaf_count=" + " ".join(str(tree.n_node_samples[i]) for i in leaves),
        "internal_value=" + " ".join("%g" % (offset + scale * value[i]) for i in internal),
        "internal_weight=" + " ".join("%g" % n[i] for i in internal),
        "internal_count=" + " ".join(str(tree.n_node_samples[i]) for i in internal),
        "is_linear=0",
        "shrinkage=1",
    ]
    splits = [int(tree.feature[i]) for i in internal]
    return "Tree=%d\n" % index + "\n".join(lines) + "\n\n\n", splits


def write_model(gbc, x_train, init):
    blocks, counts = [], [0] * len(FEATURES)
    for i, est in enumerate(gbc.estimators_[:, 0]):
        block, splits = tree_block(i, est.tree_, LEARNING_RATE, init if i == 0 else 0.0)
        blocks.append(block)
        for f in splits:
            counts[f] += 1
    infos = ["[%s:%s]" % (fmt(x_train[:, j].min()), fmt(x_train[:, j].max()))
             for j in range(len(FEATURES))]
    head = "\n".join([
        "tree",
        "version=v3",
        "num_class=1",
        "num_tree_per_iteration=1",
        "label_index=0",
        "max_feature_idx=%d" % (len(FEATURES) - 1),
        "objective=binary sigmoid:1",
        "feature_names=" + " ".join(FEATURES),
        "feature_infos=" + " ".join(infos),
        "tree_sizes=" + " ".join(str(len(b)) for b in blocks),
    ]) + "\n\n"
    importances = sorted(((c, f) for f, c in zip(FEATURES, counts) if c), key=lambda p: (-p[0], p[1]))
    tail = "end of trees\n\nfeature_importances:\n"
    tail += "".join("%s=%d\n" % (f, c) for c, f in importances)
    tail += ("\nparameters:\n[boosting: gbdt]\n[objective: binary]\n"
             "[num_iterations: %d]\n[learning_rate: %g]\n[max_depth: %d]\n[sigmoid: 1]\n"
             "\nend of parameters\n\npandas_categorical:null\n") % (N_ESTIMATORS, LEARNING_RATE, MAX_DEPTH)
    return head + "".join(blocks) + tail


def lgb_raw(text, x):
    """Scores rows with a LightGBM text model, as LightGBM does, to check
    what was written before anyone else reads it."""
    trees = []
    for block in text.split("\nTree=")[1:]:
        kv = dict(line.split("=", 1) for line in block.split("\n")[1:] if "=" in line)
        arr = lambda k, f: [f(v) for v in kv[k].split()]
        trees.append((arr("split_feature", int), arr("threshold", float), arr("decision_type", int),
                      arr("left_child", int), arr("right_child", int), arr("leaf_value", float)))
    out = np.zeros(len(x))
    for r, row in enumerate(x):
        s = 0.0
        for feat, thr, dt, lc, rc, lv in trees:
            node = 0
            while node >= 0:
                v = row[feat[node]]
                assert dt[node] == 10
                go_left = True if math.isnan(v) else v <= thr[node]
                node = lc[node] if go_left else rc[node]
            s += lv[~node]
        out[r] = s
    return out


def golden_rows(rng, x_test):
    rows = [x_test[i].copy() for i in rng.choice(len(x_test), 14, replace=False)]
    # A few stores a person would reason about.
    rows.append(np.array([4.8, 2500, 18.0, 2, 0, 40, 22.5, 12, 0.8]))   # loved pizza place nearby at lunch
    rows.append(np.array([2.9, 12, 70.0, 4, 1, 1, 14.0, 3, 11.5]))     # far, slow, pricey sushi at 3am
    rows.append(np.array([4.4, 310, 30.0, 1, 4, 15, 28.0, 22, 2.5]))    # late-night tacos
    rows.append(np.array([4.6, 900, 25.0, 3, 1, 60, 45.0, 19, 3.0]))    # sushi for a big spender
    # Missing inputs (NaN goes left at every split).
    nan = math.nan
    rows.append(np.array([nan, 150, 35.0, 2, 0, 5, 25.0, 18, 2.0]))
    rows.append(np.array([4.2, nan, nan, 2, 2, 8, 19.0, 12, 1.5]))
    rows.append(np.array([4.0, 75, 40.0, 2, 3, nan, nan, 20, nan]))
    rows.append(np.array([nan, nan, nan, nan, nan, nan, nan, nan, nan]))
    return np.array(rows)


def main():
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "configs", "quickstart", "models", "store_ranker", "1")
    rng = np.random.RandomState(SEED)
    x, y = make_data(rng, N_TRAIN + 2000)
    x_train, y_train, x_test, y_test = x[:N_TRAIN], y[:N_TRAIN], x[N_TRAIN:], y[N_TRAIN:]
    gbc = GradientBoostingClassifier(loss="log_loss", n_estimators=N_ESTIMATORS, max_depth=MAX_DEPTH,
                                     learning_rate=LEARNING_RATE, random_state=SEED)
    gbc.fit(x_train, y_train)
    init = float(gbc._raw_predict_init(x_train[:1])[0, 0])
    text = write_model(gbc, x_train, init)

    # The written model must give scikit-learn's margins: exactly on the
    # test rows (same leaves, same order of additions).
    raw = lgb_raw(text, x_test)
    want = gbc.decision_function(x_test)
    worst = float(np.max(np.abs(raw - want)))
    if worst > 1e-12:
        raise SystemExit("written model differs from scikit-learn by %g" % worst)

    golden = golden_rows(rng, x_test)
    lowest = float(np.finfo(np.float32).min)
    substituted = np.where(np.isnan(golden), lowest, golden)
    proba = gbc.predict_proba(substituted)[:, 1]
    check = 1 / (1 + np.exp(-lgb_raw(text, golden)))
    if float(np.max(np.abs(check - proba))) > 1e-12:
        raise SystemExit("written model differs from scikit-learn on the golden rows")

    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "model.txt"), "w") as f:
        f.write(text)
    with open(os.path.join(out_dir, "golden.tsv"), "w") as f:
        f.write("\t".join(FEATURES + ["probability(1)"]) + "\n")
        for row, p in zip(golden, proba):
            cells = ["NaN" if math.isnan(v) else ("%d" % v if v == int(v) and j != 0 else repr(float(v)))
                     for j, v in enumerate(row)]
            f.write("\t".join(cells + [repr(float(p))]) + "\n")
    acc = float(np.mean((gbc.predict_proba(x_test)[:, 1] > 0.5) == y_test))
    print("wrote %s: %d trees, base rate %.3f, test accuracy %.3f, max |margin diff| %g"
          % (out_dir, N_ESTIMATORS, y_train.mean(), acc, worst))


if __name__ == "__main__":
    main()
