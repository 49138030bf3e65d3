"""Mult-VAE on ML-1M under strong generalization, selected on validation NDCG@100.

Protocol `liang` (Liang et al. 2018): ratings > 3, users with >= 5, 600 validation and
600 test users held out, 80 % of each held-out user's items folded in. Random search,
the first trial being the paper's defaults; at most 30 epochs per trial with early
stopping (patience 10) on validation NDCG@100.

    python tuning/mult_vae_ml1m.py --data-dir ../shared/data

Rerun the same command to resume an interrupted search.
"""

from common import search_movielens

if __name__ == "__main__":
    search_movielens(
        "mult_vae_ml1m",
        __doc__,
        model_name="multvae",
        protocol="liang",
        objective="val_ndcg@100",
        tuner="random",
        max_trials=8,
        epochs=30,
    )
