"""resnet50_sa's attention (3,136 positions, 256 channels, scale 1) two ways on onnxruntime's CPU provider,
alternating in one run: the exporter's MatMul → Softmax → MatMul, and the contrib MultiHeadAttention a
rewrite would make of it (one head). Prints the largest difference and the per-round speedup.
Usage: python scripts/mha_ab.py [--rounds 7]"""
from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

N, D = 3136, 256  # resnet50_sa layer1: 56 × 56 positions, 256 channels


def session(nodes: list, name: str) -> ort.InferenceSession:
    tensors = [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, N, D]) for x in "qkv"]
    graph = helper.make_graph(nodes, name, tensors, [helper.make_tensor_value_info("o", TensorProto.FLOAT, [1, N, D])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)],
                              ir_version=9)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=7)
    rounds = parser.parse_args().rounds
    sessions = {
        "MatMul-Softmax-MatMul": session([helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 2, 1]),
                                          helper.make_node("MatMul", ["q", "kt"], ["s"]),
                                          helper.make_node("Softmax", ["s"], ["p"], axis=-1),
                                          helper.make_node("MatMul", ["p", "v"], ["o"])], "plain"),
        "MultiHeadAttention": session([helper.make_node("MultiHeadAttention", ["q", "k", "v"], ["o"],
                                                        domain="com.microsoft", num_heads=1, scale=1.0)], "mha"),
    }
    rng = np.random.default_rng(0)
    feeds = {x: (0.1 * rng.standard_normal((1, N, D))).astype(np.float32) for x in "qkv"}
    plain, fused = (s.run(None, feeds)[0] for s in sessions.values())
    print(f"max |difference| {np.abs(plain - fused).max():.2e} (outputs up to {np.abs(plain).max():.2e})")
    times: dict[str, list[float]] = {name: [] for name in sessions}
    for _ in range(rounds):
        for name, s in sessions.items():
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                s.run(None, feeds)
                best = min(best, time.perf_counter() - start)
            times[name].append(best)
    ratios = sorted(p / f for p, f in zip(*times.values()))
    print(", ".join(f"{name}: best {1e3 * min(t):.1f} ms" for name, t in times.items()))
    print(f"speedup of MultiHeadAttention per round: median {ratios[len(ratios) // 2]:.3f}, "
          f"range {ratios[0]:.3f}-{ratios[-1]:.3f}; attention GFLOP per image {4 * N * N * D / 1e9:.1f}")


if __name__ == "__main__":
    main()
