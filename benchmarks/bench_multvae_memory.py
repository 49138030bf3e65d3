"""Peak resident memory of Mult-VAE training, per backend, on ML-1M and a 17,000-item catalogue.

Each (backend, catalogue) runs in its own child process, which trains `MultVAE`
(I-600-200-600-I, Adam) with `model.fit` on the CSR training matrix (batches of 500 users,
densified one batch at a time by `RowBatches`) for `--epochs` epochs and reports:

* `peak_rss_gb`: the process's peak resident memory (`ru_maxrss`), what the issue's target
  is about;
* `rss_after_import_gb`: the resident memory once the backend and keras_aerec are imported
  and the data is loaded, before the model is built: the part training cannot shrink;
* `training_gb`: the difference, what the model, optimiser, batches and compiled step add.

Catalogues: ML-1M, the Liang split's training users (4,834 users x 3,491 items, seed 0,
ratings > 3); and a synthetic one of 17,000 items (power-law popularity, 10-40 items per
user, `--users` users; `large_catalogue.power_law_matrix`).

Peak memory does not depend on the machine's load, unlike times.

Usage:
    python benchmarks/bench_multvae_memory.py [--data-dir ../shared/data] [--backends ...]
"""

import argparse
import json
import os
import resource

from child_runs import run_child

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", "multvae_memory.json")
CODE = [
    "keras_aerec/models/mult_vae.py",
    "keras_aerec/data/batching.py",
    "keras_aerec/models/recommender.py",
]
BATCH = 500
SYNTHETIC_ITEMS = 17_000
# The targets (GB).
TARGETS = {"ml-1m": 1.3, f"synthetic-{SYNTHETIC_ITEMS}": 1.6}


def _rss_gb():
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e9
    return 0.0


def _catalogue(name, data_dir, users):
    if name == "ml-1m":
        from bench_multvae_speed import load_train

        return load_train(data_dir)
    from bench_ease_large import power_law_catalogue

    return power_law_catalogue(users, SYNTHETIC_ITEMS)


def _child(name, data_dir, users, epochs):
    import keras

    from keras_aerec.models.mult_vae import MultVAE

    train = _catalogue(name, data_dir, users)
    after_import = _rss_gb()
    model = MultVAE(train.shape[1], seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3))
    model.fit(train, batch_size=BATCH, epochs=epochs, verbose=0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e9
    print(
        json.dumps(
            {
                "backend": keras.backend.backend(),
                "shape": list(train.shape),
                "interactions": int(train.nnz),
                "peak_rss_gb": peak,
                "rss_after_import_gb": after_import,
            }
        )
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default="../shared/data")
    parser.add_argument("--backends", nargs="+", default=["jax", "tensorflow", "torch"])
    parser.add_argument(
        "--catalogues", nargs="+", default=["ml-1m", f"synthetic-{SYNTHETIC_ITEMS}"]
    )
    parser.add_argument("--users", type=int, default=100_000, help="users of the synthetic one")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.data_dir, args.users, args.epochs)
        return
    from keras_aerec.experiments.report import provenance, save_figures

    figures = []
    for catalogue in args.catalogues:
        for backend in args.backends:
            load = os.getloadavg()[0]
            arguments = ["--child", catalogue, "--data-dir", args.data_dir]
            arguments += ["--users", args.users, "--epochs", args.epochs]
            result = run_child(__file__, arguments, backend, catalogue)
            users, items = result["shape"]
            peak, base = result["peak_rss_gb"], result["rss_after_import_gb"]
            figures.append(
                {
                    **provenance(),
                    "section": "Mult-VAE memory",
                    "what": f"Mult-VAE training, {catalogue} ({users:,} users x {items:,} items)",
                    "command": f"python benchmarks/bench_multvae_memory.py --backends {backend} "
                    f"--catalogues {catalogue}",
                    "code": CODE,
                    "backend": backend,
                    "load": round(load, 2),
                    "dataset": catalogue,
                    "protocol": "fit only" if catalogue != "ml-1m" else "liang (training users)",
                    "seeds": [0],
                    "metrics": {
                        "peak_rss_gb": {"mean": round(peak, 3), "sd": 0.0},
                        "rss_after_import_gb": {"mean": round(base, 3), "sd": 0.0},
                        "training_gb": {"mean": round(peak - base, 3), "sd": 0.0},
                    },
                    "published": {"value": None, "source": None},
                    "notes": f"{result['interactions']:,} interactions; batch {BATCH}, "
                    f"{args.epochs} epochs, model.fit on CSR; issue target <= "
                    f"{TARGETS.get(catalogue, float('nan'))} GB",
                }
            )
            print(
                f"{backend} {catalogue}: peak {peak:.2f} GB (after import {base:.2f})", flush=True
            )
            save_figures(
                RESULTS,
                "Mult-VAE training memory",
                figures,
                replaces=lambda old: (
                    (old["backend"], old["dataset"])
                    in {(new["backend"], new["dataset"]) for new in figures}
                ),
            )


if __name__ == "__main__":
    main()
