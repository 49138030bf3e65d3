"""Write benchmarks/results/legacy.json: the figures of the hand-written BENCHMARKS.md of
2026-11-28 that were not re-run since, in the results format, with the commit and date
at which they were measured (so `make_benchmarks_md.py` marks them stale when their code
has changed since). Their full tables and reasoning stay in the linked
`benchmarks/results/*.md` files.

    python benchmarks/legacy_figures.py
"""

import json
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MACHINE = "2-core AMD EPYC VM, 24 GiB, no GPU (shared)"
DATE = "2026-11-28"


def figure(section, what, command, code, commit, metrics, published=None, **extra):
    return {
        "section": section,
        "what": what,
        "command": command,
        "code": code,
        "commit": commit,
        "date": DATE,
        "machine": MACHINE,
        "load": extra.pop("load", None),
        "backend": extra.pop("backend", "jax"),
        "dataset": extra.pop("dataset", "1m"),
        "protocol": extra.pop("protocol", None),
        "seeds": extra.pop("seeds", [0, 1, 2]),
        "metrics": {
            name: value if isinstance(value, dict) else {"mean": value[0], "sd": value[1]}
            for name, value in metrics.items()
        },
        "published": published or {"value": None, "source": None},
        **extra,
    }


RATING = "KERAS_BACKEND=jax python benchmarks/bench_rating_models.py --data-dir ../shared/data --models i-autorec u-autorec deeprec --seeds 0 1 2"
RATING_CODE = [
    "benchmarks/bench_rating_models.py",
    "keras_aerec/models/auto_rec.py",
    "keras_aerec/models/deep_rec.py",
    "keras_aerec/models/rating_autoencoder.py",
    "keras_aerec/data/splits.py",
]
AUTOREC_PAPER = "AutoRec paper, ML-1M random 90/10 (our split: 80/10/10)"
SVAE = "KERAS_BACKEND=tensorflow python benchmarks/bench_svae.py --data-dir ../shared/data --dataset 1m --seeds 0 1 2 --epochs 12 --patience 3"
SVAE_CODE = [
    "benchmarks/bench_svae.py",
    "keras_aerec/models/svae.py",
    "keras_aerec/models/mult_vae.py",
    "keras_aerec/data/sequences.py",
    "keras_aerec/data/splits.py",
]
SVAE_PAPER = "SVAE paper Table 2, full ML-1M (about 6k users), 1.5k held-out users"
TOPN = "KERAS_BACKEND=jax python benchmarks/bench_topn_models.py --data-dir ../shared/data --protocol {protocol} --seeds 0 1 2"
TOPN_CODE = [
    "benchmarks/bench_topn_models.py",
    "keras_aerec/models/ease.py",
    "keras_aerec/models/mult_vae.py",
    "keras_aerec/models/mult_dae.py",
    "keras_aerec/models/cdae.py",
    "keras_aerec/data/splits.py",
    "keras_aerec/evaluation/ranking.py",
]
RECBOLE = "RecBole ML-1M benchmark (ratings >= 3, 10-core, 8:1:1, full ranking)"


def figures():
    rows = [
        figure(
            "Rating models, ML-1M, rating_holdout 80/10/10 (dedicated script, converged)",
            "I-AutoRec (500, λ 300)",
            RATING,
            RATING_CODE,
            "fffbdf0",
            {"rmse": (0.8331, 0.0033)},
            {"value": {"rmse": 0.831}, "source": AUTOREC_PAPER},
            protocol="rating_holdout",
            best_epoch=[75, 66, 64],
        ),
        figure(
            "Rating models, ML-1M, rating_holdout 80/10/10 (dedicated script, converged)",
            "U-AutoRec (500, λ 300)",
            RATING,
            RATING_CODE,
            "fffbdf0",
            {"rmse": (0.8767, 0.0029)},
            {"value": {"rmse": 0.874}, "source": AUTOREC_PAPER},
            protocol="rating_holdout",
            best_epoch=[94, 79, 77],
        ),
        figure(
            "Rating models, ML-1M, rating_holdout 80/10/10 (dedicated script, converged)",
            "U-AutoRec, refit on train + validation",
            RATING + " --refit",
            RATING_CODE,
            "f7ec059",
            {"rmse": (0.8714, 0.0027)},
            {"value": {"rmse": 0.874}, "source": AUTOREC_PAPER},
            protocol="rating_holdout",
        ),
        figure(
            "Rating models, ML-1M, rating_holdout 80/10/10 (dedicated script, converged)",
            "DeepRec (item-based 128-128-256)",
            RATING,
            RATING_CODE,
            "fffbdf0",
            {"rmse": (0.8507, 0.0009)},
            {"value": {"rmse": 0.931}, "source": "the article's repo (75/25 split)"},
            protocol="rating_holdout",
            notes="run of the dedicated script before clipping; the one-command table then "
            "diverged on JAX (0.9191), see the article table",
        ),
    ]
    for model, metrics in (
        ("SVAE", {"ndcg@10": (0.1531, 0.0038), "ndcg@100": (0.2646, 0.0061)}),
        ("Mult-VAE", {"ndcg@10": (0.1046, 0.0076), "ndcg@100": (0.2160, 0.0037)}),
    ):
        metrics["recall@100"] = (0.4518, 0.0073) if model == "SVAE" else (0.4096, 0.0133)
        paper = (
            {"ndcg@10": 0.1781, "ndcg@100": 0.2993, "recall@100": 0.4909}
            if model == "SVAE"
            else {"ndcg@100": 0.2301, "recall@100": 0.4143}
        )
        rows.append(
            figure(
                "Temporal protocol, ML-1M users 1-2999 (dedicated script)",
                model,
                SVAE,
                SVAE_CODE,
                "942aa66",
                metrics,
                {"value": paper, "source": SVAE_PAPER},
                backend="tensorflow",
                protocol="temporal",
                load=7,
                notes="53 min for the whole run at load 6-8",
            )
        )
    topn = {
        "recbole": (
            "RecBole protocol, ML-1M (dedicated script; test users read train + validation)",
            ("ndcg@10", "recall@10"),
            RECBOLE,
            {
                "ease": ((0.2973, 0.0013), (0.2116, 0.0021), (0.2865, 0.2139)),
                "cdae": ((0.2586, 0.0029), (0.1915, 0.0046), (0.2500, 0.1936)),
                "multdae": ((0.2483, 0.0070), (0.1932, 0.0066), (0.2425, 0.1972)),
                "multvae (latent 64, cap 0.5)": (
                    (0.2524, 0.0035),
                    (0.1961, 0.0029),
                    (0.2523, 0.1995),
                ),
            },
        ),
        "liang": (
            "Liang protocol, ML-1M (dedicated script)",
            ("recall@20", "ndcg@100"),
            "Liang et al. 2018, ML-20M (not ML-1M)",
            {
                "ease": ((0.3551, 0.0036), (0.4261, 0.0070), (0.391, 0.420)),
                "multdae": ((0.3320, 0.0038), (0.4089, 0.0058), (0.387, 0.419)),
                "cdae (zero user vector)": ((0.3299, 0.0054), (0.4076, 0.0040), (0.391, 0.418)),
                "multvae (total_anneal_steps 1000)": (
                    (0.3270, 0.0043),
                    (0.3993, 0.0073),
                    (0.395, 0.426),
                ),
                "multvae (latent 64, cap 0.5)": (
                    (0.3285, 0.0061),
                    (0.4073, 0.0036),
                    (0.395, 0.426),
                ),
            },
        ),
        "article": (
            "Article protocol, ML-1M (dedicated script)",
            ("recall@100", "ndcg@100"),
            "the article's repo (its ML-1M split)",
            {
                "ease": ((0.5891, 0.0019), (0.4188, 0.0019), (0.4181, 0.2561)),
                "multdae": ((0.5928, 0.0025), (0.3999, 0.0017), None),
                "cdae": ((0.5735, 0.0010), (0.3957, 0.0005), (0.4137, 0.2528)),
                "multvae": ((0.5936, 0.0015), (0.4004, 0.0008), (0.4115, 0.2508)),
            },
        ),
    }
    for protocol, (section, names, source, models) in topn.items():
        for model, (first, second, paper) in models.items():
            rows.append(
                figure(
                    section,
                    model,
                    TOPN.format(protocol=protocol),
                    TOPN_CODE,
                    "2cfaffc",
                    {names[0]: first, names[1]: second},
                    {"value": dict(zip(names, paper, strict=True)), "source": source}
                    if paper
                    else None,
                    protocol=protocol,
                    load=10,
                    notes="load 7-13 during the runs"
                    + (
                        "; biased in our favour: test users' input held their validation "
                        "interactions, RecBole's does not"
                        if protocol == "recbole"
                        else ""
                    ),
                )
            )
    rows.append(
        figure(
            "Evaluation speed",
            "evaluate_ranking, 6,040 users x 3,706 items, ks 10/20/50/100, scores precomputed",
            "python benchmarks/eval_speed.py",
            ["keras_aerec/evaluation/ranking.py", "keras_aerec/metrics/ranking.py"],
            "2cfaffc",
            {"seconds (median of 5)": (0.29, None)},
            backend="numpy",
            protocol="-",
            seeds=None,
            load=2,
        )
    )
    return rows


def main():
    document = {
        "title": "Figures of 2026-11-28 not re-run since (converted)",
        "intro": "Converted from the hand-written BENCHMARKS.md of commit faf3604 by "
        "`benchmarks/legacy_figures.py`; each figure keeps the commit and date at which it "
        "was measured. Details: benchmarks/results/rating_models.md, svae.md, "
        "topn_models.md, tuning.md, distribution.md.",
        "figures": figures(),
    }
    path = os.path.join(ROOT, "benchmarks", "results", "legacy.json")
    with open(path, "w") as handle:
        json.dump(document, handle, indent=1, ensure_ascii=False)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
