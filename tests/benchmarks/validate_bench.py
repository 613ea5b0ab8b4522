"""Benchmark: validating a tree of 1,000 services and 1,000 task definitions (target: under 2 s).

Prints the time of `reconciler.manifests.validate.validate_paths` over the tree, and as a baseline
measured in the same run the time to merely parse the same files with PyYAML, with the ratio.
Run: `python tests/benchmarks/validate_bench.py` (make bench runs it).
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from reconciler.manifests import validate  # noqa: E402

N = 1000


def write_tree(root: Path) -> None:
    (root / "cluster.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Cluster\nmetadata: {name: prod}\nspec:\n  region: eu-1\n"
        "  instances:\n" + "".join(f"    - {{name: i{i}, endpoint: 'tcp://10.0.0.{i}:2375'}}\n" for i in range(1, 11))
    )
    for i in range(N):
        d = root / f"svc{i // 100:02d}"
        d.mkdir(exist_ok=True)
        (d / f"app{i}.yaml").write_text(
            f"""apiVersion: reconciler/v1
kind: TaskDefinition
metadata: {{name: app{i}}}
spec:
  networkMode: bridge
  containerDefinitions:
    - name: web
      image: registry.example/app{i}:1.{i}
      cpu: 128
      memory: 256
      memoryReservation: 128
      portMappings: [{{containerPort: 8080}}]
      environment: [{{name: APP, value: app{i}}}, {{name: LEVEL, value: info}}]
      healthCheck: {{command: [CMD-SHELL, "wget -q -O- http://127.0.0.1:8080/health"], interval: 10}}
    - name: sidecar
      image: registry.example/proxy:2
      essential: false
      memory: 64
      dependsOn: [{{containerName: web, condition: HEALTHY}}]
---
apiVersion: reconciler/v1
kind: Service
metadata: {{name: app{i}}}
spec:
  cluster: prod
  taskDefinition: app{i}
  desiredCount: 3
  placementStrategy: [{{type: spread, field: "attribute:ecs.availability-zone"}}, {{type: binpack, field: memory}}]
  deploymentConfiguration: {{maximumPercent: 200, minimumHealthyPercent: 50}}
"""
        )


def timed(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_tree(root)
        files = sorted(root.rglob("*.yaml"))
        t0 = time.perf_counter()
        first = validate.validate_paths([str(root)])  # includes compiling the schemas once
        cold = time.perf_counter() - t0
        assert first.ok, [d.format() for d in first.errors[:5]]
        warm = timed(lambda: validate.validate_paths([str(root)]))
        parse = timed(lambda: [list(yaml.load_all(f.read_text(), Loader=yaml.CSafeLoader if hasattr(yaml, "CSafeLoader") else yaml.SafeLoader)) for f in files])
    docs = len(first.documents)
    print(
        f"validate: {docs} documents ({N} services, {N} task definitions) in {cold:.2f} s cold, {warm:.2f} s warm "
        f"(target < 2 s); baseline yaml parse only {parse:.2f} s; ratio {warm / parse:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
