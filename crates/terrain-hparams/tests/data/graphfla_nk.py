import numpy as np, json, itertools, warnings
warnings.filterwarnings("ignore")
from graphfla.landscape import BooleanLandscape
from graphfla.analysis import fdc, fitness_flattening_index
out = {}
for (n, k, seed) in [(8, 0, 1), (8, 2, 2), (8, 7, 3)]:
    rng = np.random.default_rng(seed)
    tables = rng.random((n, 2 ** (k + 1)))
    rows = []
    for r in range(2 ** n):
        bits = [(r >> i) & 1 for i in range(n)]
        f = 0.0
        for i in range(n):
            key = 0
            for t in range(k + 1):
                key = (key << 1) | bits[(i + t) % n]
            f += tables[i][key]
        rows.append((bits, round(f / n, 6)))
    name = f"nk-n{n}-k{k}-s{seed}.csv"
    with open(name, "w") as fh:
        fh.write(",".join(f"x{i}" for i in range(n)) + ",error\n")
        for bits, e in rows:
            fh.write(",".join(map(str, bits)) + f",{e}\n")
    X = ["".join(map(str, b)) for b, _ in rows]
    f = [-e for _, e in rows]  # maximise -error (GraphFLA's minimise climbs to the worst improving neighbour)
    L = BooleanLandscape(maximize=True).build_from_data(X, f, verbose=False)
    d = L.describe()
    basins = L.basins
    go = L.go_index if hasattr(L, "go_index") else None
    out[name] = {"n_lo": int(d["n_lo"]), "fdc_spearman": float(fdc(L)), "fdc_pearson": float(fdc(L, method="pearson")),
                 "ffi": float(fitness_flattening_index(L)), "describe": {k2: (v if isinstance(v, (int, float, str, type(None))) else str(v)) for k2, v in d.items()}}
print(json.dumps(out, indent=1, default=str))

# Basins and neutrality (the second half of the comparison):
import numpy as np, json, warnings, pandas as pd
warnings.filterwarnings("ignore")
from graphfla.landscape import BooleanLandscape
from graphfla.analysis.robustness import neutrality
for name in ["nk-n8-k0-s1.csv", "nk-n8-k2-s2.csv", "nk-n8-k7-s3.csv"]:
    df = pd.read_csv(name)
    X = ["".join(str(int(v)) for v in r) for r in df.drop(columns="error").values]
    f = list(-df["error"].values)
    L = BooleanLandscape(maximize=True).build_from_data(X, f, verbose=False)
    b = L.basins
    go = L.go_index
    print(json.dumps({"file": name, "basin_go": int(b[go]), "max_basin": int(b.max()),
        "neutrality_0.01": float(neutrality(L, 0.01)), "neutrality_0.05": float(neutrality(L, 0.05))}))
