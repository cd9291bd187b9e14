#!/usr/bin/python3
"""Generate ONNX parity cases for seer's ONNX evaluator.

Usage: python3 tools/onnx_oracles.py [OUT_DIR]
(default OUT_DIR: models/testdata/onnx, relative to the repository root)

Every case builds (and, for the breast-cancer classifier, trains) a small
PyTorch model, exports it with torch.onnx.export at opsets 13 to 17 with a
dynamic batch axis, checks the export with onnx.checker, and writes:

  <case>.opset<N>.onnx   the model exported at opset N
  <case>.input.tsv       a header naming the columns of every graph input in
                         graph order, "<input>[<j>]", then one row per example
                         (float32 inputs printed exactly, int64 inputs as
                         integers)
  <case>.expected.tsv    PyTorch's own outputs for the same rows, computed in
                         eval mode in float32: a header "<output>" for an
                         output of shape [batch], "<output>[<j>]" for
                         [batch, k], every graph output in graph order

Run it with Debian's python3 (torch 1.13, onnx 1.12); the output is
deterministic for a given torch, numpy and scikit-learn. The cases:

  mlp_breast_cancer  30 inputs standardised in the graph (Sub, Div), Gemm,
                     BatchNormalization, Relu, Tanh, Sigmoid: [batch, 1]
  two_tower          two float embedding inputs, towers with LeakyRelu and
                     Clip, a dot product (Mul, ReduceSum): [batch]
  embedding_ids      int64 ids looked up in two embedding tables (Gather),
                     concatenated with dense inputs, a reshape by x.size(0)
                     (Shape, Gather, Unsqueeze, Concat, Reshape): [batch]
  layernorm_gelu     LayerNorm (primitive ops below opset 17,
                     LayerNormalization at 17), exact GELU (Erf) and tanh
                     GELU (Pow, Tanh): [batch, 1]
  softmax_multi      two outputs, class probabilities (Softmax) and logits:
                     [batch, 5] each
  cross_network      a cross layer (MatMul, Mul, Add), an outer product of
                     the inputs (Unsqueeze, batched MatMul, Transpose,
                     Flatten), a bias expanded to the batch (Expand and the
                     ConstantOfShape, Equal, Where pattern), Where on a
                     comparison, ReduceMean, Cast, Squeeze: [batch]
  misc_ops           Slice (with steps, reversed), LogSoftmax, Max, Min, Neg,
                     Exp, Abs, Log, Reciprocal, MatMul of a batch by a matrix,
                     ReduceSum and ReduceMean over inner axes, And, Or, Not,
                     Where, Cast from bool: [batch, 3] and [batch, 29]
  named_columns      three graph inputs of one column each ([batch, 1]), so
                     that the graph names every column: [batch, 1] (opset 17)
  mlp_64_256_128_1   the speed case: Gemm, Relu, Gemm, Relu, Gemm: [batch, 1]
                     (opsets 13 and 17 only)

--bench ROWS REPEATS prints PyTorch's time to score ROWS rows through
mlp_64_256_128_1 on one thread (torch.set_num_threads(1)): the mean over
REPEATS*1000 calls after 200 to warm up, in microseconds per call, as Go's
benchmarks report a mean; tools/bench_onnx.sh runs it beside seer's.
"""

import math
import os
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from sklearn.datasets import load_breast_cancer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OPSETS = [13, 14, 15, 16, 17]


def fmt(v):
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if v == int(v) and abs(v) < 2**53:
        return str(int(v))
    return repr(v)


class MLPBreastCancer(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))
        self.fc1 = nn.Linear(30, 32)
        self.bn = nn.BatchNorm1d(32)
        self.fc2 = nn.Linear(32, 16)
        self.fc3 = nn.Linear(16, 1)

    def forward(self, x):
        x = (x - self.mean) / self.std
        x = F.relu(self.bn(self.fc1(x)))
        x = torch.tanh(self.fc2(x))
        return torch.sigmoid(self.fc3(x))


class TwoTower(nn.Module):
    def __init__(self):
        super().__init__()
        self.u1, self.u2 = nn.Linear(16, 32), nn.Linear(32, 8)
        self.i1, self.i2 = nn.Linear(16, 32), nn.Linear(32, 8)

    def forward(self, user, item):
        u = self.u2(F.leaky_relu(self.u1(user), 0.1))
        v = self.i2(F.hardtanh(self.i1(item), -0.5, 0.5))
        return (u * v).sum(dim=1)


class EmbeddingIDs(nn.Module):
    def __init__(self):
        super().__init__()
        self.users = nn.Embedding(50, 8)
        self.cats = nn.Embedding(10, 4)
        self.fc1 = nn.Linear(16, 16)
        self.fc2 = nn.Linear(16, 1)

    def forward(self, ids, dense):
        e = torch.cat([self.users(ids[:, 0]), self.cats(ids[:, 1]), dense], dim=1)
        e = e.view(e.size(0), -1)
        return self.fc2(F.relu(self.fc1(e))).squeeze(1)


class LayerNormGELU(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(24, 32)
        self.ln1 = nn.LayerNorm(32)
        self.fc2 = nn.Linear(32, 32)
        self.ln2 = nn.LayerNorm(32, eps=1e-6)
        self.fc3 = nn.Linear(32, 1)

    def forward(self, x):
        x = F.gelu(self.ln1(self.fc1(x)))
        x = F.gelu(self.ln2(self.fc2(x)), approximate="tanh")
        return torch.sigmoid(self.fc3(x))


class SoftmaxMulti(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(10, 24)
        self.fc2 = nn.Linear(24, 5)

    def forward(self, x):
        logits = self.fc2(F.relu(self.fc1(x)))
        return torch.softmax(logits, dim=1), logits


class CrossNetwork(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 1) * 0.3)
        self.b = nn.Parameter(torch.randn(6) * 0.1)
        self.bias = nn.Parameter(torch.randn(1, 4))
        self.fc = nn.Linear(6 + 36 + 4 + 1, 1)

    def forward(self, x, flags):
        x1 = x * (torch.matmul(x, self.w) + self.b) + x
        outer = torch.matmul(x.unsqueeze(2), x.unsqueeze(1)).transpose(1, 2)
        outer = torch.flatten(outer, 1)
        bias = self.bias.expand(x.size(0), -1)
        bias = torch.where(bias > 0, bias, 0.2 * bias) * flags.to(torch.float32)
        mean = x1.mean(dim=1, keepdim=True)
        h = torch.cat([x1, outer, bias, mean], dim=1)
        return self.fc(h).squeeze(-1)


class MiscOps(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 4))
        self.fc = nn.Linear(29, 3)

    def forward(self, x):
        a = x[:, 1:7:2]                                     # Slice with a step
        b = torch.flip(x[:, :4], dims=[1])                  # Slice with step -1
        c = torch.log_softmax(x[:, :5], dim=1)              # LogSoftmax
        d = torch.maximum(a, -a) + torch.minimum(a, a * 0.5)  # Max, Min, Neg
        e = torch.exp(-x[:, :2].abs()) + torch.log(x[:, 2:4].abs() + 1)  # Exp, Abs, Log
        f = torch.reciprocal(x[:, 4:6].abs() + 0.5)         # Reciprocal
        g = torch.matmul(x[:, :6].reshape(-1, 2, 3), self.w)  # batched MatMul by a matrix
        g = g.sum(dim=1, keepdim=False) + g.mean(dim=(1, 2), keepdim=True).squeeze(2)
        m = torch.logical_and(x[:, :3] > 0, ~(x[:, 3:6] > 0.5))
        h = torch.where(torch.logical_or(m, x[:, 6:9] < -1), x[:, :3], x[:, 6:9] * 2)
        i = m.to(torch.float32)
        out = torch.cat([a, b, c, d, e, f, g, h, i], dim=1)
        return self.fc(out), out


class NamedColumns(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(3, 1)

    def forward(self, age, income, tenure):
        return torch.sigmoid(self.fc(torch.cat([age, income / 1000, tenure], dim=1)))


class MLPSpeed(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 1)
        )

    def forward(self, x):
        return self.net(x)


def train_breast_cancer():
    d = load_breast_cancer()
    X = np.asarray(d.data, dtype=np.float32)
    y = np.asarray(d.target, dtype=np.float32)
    m = MLPBreastCancer(X.mean(axis=0), X.std(axis=0) + 1e-6)
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    xt, yt = torch.from_numpy(X), torch.from_numpy(y).unsqueeze(1)
    m.train()
    for _ in range(150):
        opt.zero_grad()
        loss = F.binary_cross_entropy(m(xt), yt)
        loss.backward()
        opt.step()
    rng = np.random.RandomState(7)
    rows = X[rng.choice(len(X), 60, replace=False)]
    return m, ["x"], [rows]


def cases():
    """Yield (name, model, input names, input arrays, output names, opsets)."""
    torch.manual_seed(1)
    rng = np.random.RandomState(1)
    m, names, inputs = train_breast_cancer()
    yield "mlp_breast_cancer", m, names, inputs, ["probability"], OPSETS

    torch.manual_seed(2)
    user = rng.randn(50, 16).astype(np.float32)
    item = rng.randn(50, 16).astype(np.float32)
    yield "two_tower", TwoTower(), ["user", "item"], [user, item], ["score"], OPSETS

    torch.manual_seed(3)
    ids = np.stack([rng.randint(0, 50, 50), rng.randint(0, 10, 50)], axis=1).astype(np.int64)
    dense = rng.randn(50, 4).astype(np.float32)
    yield "embedding_ids", EmbeddingIDs(), ["ids", "dense"], [ids, dense], ["score"], OPSETS

    torch.manual_seed(4)
    x = (rng.randn(50, 24) * 2).astype(np.float32)
    yield "layernorm_gelu", LayerNormGELU(), ["x"], [x], ["probability"], OPSETS

    torch.manual_seed(5)
    x = rng.randn(50, 10).astype(np.float32)
    yield "softmax_multi", SoftmaxMulti(), ["x"], [x], ["probs", "logits"], OPSETS

    torch.manual_seed(6)
    x = rng.randn(50, 6).astype(np.float32)
    flags = rng.randint(0, 3, (50, 4)).astype(np.int64)
    yield "cross_network", CrossNetwork(), ["x", "flags"], [x, flags], ["score"], OPSETS

    torch.manual_seed(7)
    x = rng.randn(200, 64).astype(np.float32)
    yield "mlp_64_256_128_1", MLPSpeed(), ["x"], [x], ["score"], [13, 17]

    torch.manual_seed(8)
    x = rng.randn(50, 9).astype(np.float32)
    yield "misc_ops", MiscOps(), ["x"], [x], ["score", "features"], OPSETS

    torch.manual_seed(9)
    cols = [rng.uniform(18, 80, (40, 1)), rng.uniform(0, 2e5, (40, 1)), rng.randint(0, 30, (40, 1))]
    yield "named_columns", NamedColumns(), ["age", "income", "tenure"], [c.astype(np.float32) for c in cols], ["probability"], [17]


def write_tsv(path, header, columns):
    with open(path, "w") as f:
        f.write("\t".join(header) + "\n")
        for row in zip(*columns):
            f.write("\t".join(fmt(v) for v in row) + "\n")


def flatten(names, arrays):
    header, columns = [], []
    for name, a in zip(names, arrays):
        a = np.asarray(a)
        if a.ndim == 1:
            header.append(name)
            columns.append(a)
            continue
        for j in range(a.shape[1]):
            header.append("%s[%d]" % (name, j))
            columns.append(a[:, j])
    return header, columns


def export(out, name, model, in_names, inputs, out_names, opsets):
    model.eval()
    tensors = tuple(torch.from_numpy(a) for a in inputs)
    with torch.no_grad():
        outputs = model(*tensors)
    if not isinstance(outputs, tuple):
        outputs = (outputs,)
    axes = {n: {0: "batch"} for n in in_names + out_names}
    for opset in opsets:
        path = os.path.join(out, "%s.opset%d.onnx" % (name, opset))
        torch.onnx.export(
            model, tensors, path, input_names=in_names, output_names=out_names,
            dynamic_axes=axes, opset_version=opset, do_constant_folding=True,
        )
        onnx.checker.check_model(onnx.load(path))
        ops = sorted({n.op_type for n in onnx.load(path).graph.node})
        print("%s opset %d: %s" % (name, opset, " ".join(ops)))
    write_tsv(os.path.join(out, name + ".input.tsv"), *flatten(in_names, inputs))
    write_tsv(os.path.join(out, name + ".expected.tsv"), *flatten(out_names, [o.numpy() for o in outputs]))


def bench(rows, repeats):
    torch.set_num_threads(1)
    for name, model, _, inputs, _, _ in cases():
        if name == "mlp_64_256_128_1":
            break
    model.eval()
    x = torch.from_numpy(np.resize(inputs[0], (rows, 64)))
    with torch.inference_mode():
        for _ in range(200):
            model(x)
        n = 1000
        t = time.perf_counter()
        for _ in range(repeats * n):
            model(x)
        mean = (time.perf_counter() - t) / (repeats * n)
    print("pytorch %d rows: %.1f us per call (mean of %d calls, 1 thread)" % (rows, mean * 1e6, repeats * n))


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "--bench":
        bench(int(sys.argv[2]), int(sys.argv[3]))
        return
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "testdata", "onnx")
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(1)
    for c in cases():
        export(out, *c)


if __name__ == "__main__":
    main()
