"""I-AutoRec on ML-1M ratings, selected on validation RMSE.

Ratings split at random 80 / 10 / 10 (train / validation / test, the benchmark's
`rating_holdout(test=0.1, validation=0.1)`); unseen users or items get the default
rating 3. Random search, the first trial being the paper's defaults (500 hidden units,
lambda 1); at most 30 epochs per trial with early stopping (patience 10) on validation
RMSE.

    python tuning/i_autorec_ml1m.py --data-dir ../shared/data

Rerun the same command to resume an interrupted search.
"""

from common import search_movielens

if __name__ == "__main__":
    search_movielens(
        "i_autorec_ml1m",
        __doc__,
        model_name="i-autorec",
        protocol="liang",
        objective="val_rmse",
        tuner="random",
        max_trials=5,
        epochs=30,
    )
