"""The rating-based protocol of ITIPR (BokwaiHo/ITIPR, helper/read_data.py) for non-sequential models.

Explicit ratings become implicit feedback in two grades: ratings > 3 are *real* positives, ratings <= 3
are *noisy* positives. Only real positives are held out, so validation and test measure whether a
model finds what the user liked, while training also sees the items the user merely rated:

1. drop duplicate (user, item) rows (keep the last); drop items with < ``item_filter`` ratings, then
   users with < ``user_filter`` ratings (one pass each, in that order; ML-100K: 10 and 10);
2. split ratings into real (> ``positive_threshold``) and noisy (<= it); drop users with fewer than
   ``min_real`` real ratings (the code's ``infrequent_threshold``, 5) and their noisy ratings;
3. number users and items 0.. in the order of their original ids (pandas category codes);
4. per user, split the real items (in item-id order) 80/10/10 exactly like the code's two calls of
   scikit-learn's ``train_test_split(..., random_state=seed)``: a permutation from
   ``RandomState(seed)`` of the n items, the first ceil(0.1 n) are test; the rest, in permuted order,
   are permuted again with ``RandomState(seed)`` and the first ceil(0.1/0.9 * m) are validation. The
   same seed is used for every user (as in the code), so users with equally many items share one
   permutation;
5. train = real train items + all noisy items (``clean=True``: real train items only).

Evaluation ranks every item for each user with the user's training items removed (the code sets their
scores to 0, which only removes them when all other scores are positive; we remove them outright).
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class RatingsProtocol:
    positive_threshold: float = 3.0  # rating > threshold: real positive; <= threshold: noisy positive
    item_filter: int = 10  # ML-100K in the code (read_data.py): items with >= 10 ratings
    user_filter: int = 10  # users with >= 10 ratings
    min_real: int = 5  # users need >= 5 real positives (code: infrequent_threshold 5)
    val_ratio: float = 0.1
    test_ratio: float = 0.1
    clean: bool = False  # True: train on real positives only (the code's --clean Y)
    seed: int = 0  # the split seed (code: --seed; main_MF.py defaults to 3, read_data.py to 0)

    def __post_init__(self) -> None:
        if not (0 < self.test_ratio < 1 and 0 <= self.val_ratio < 1 and self.val_ratio + self.test_ratio < 1):
            raise ValueError(f"need 0 < test_ratio, 0 <= val_ratio, val+test < 1; got {self.val_ratio}, "
                             f"{self.test_ratio}")


@dataclass
class RatingsSplit:
    """Per-user item sets (numpy int64 arrays, ids 0..n-1) and the training pairs."""

    n_users: int
    n_items: int
    train: list[np.ndarray]
    val: list[np.ndarray]
    test: list[np.ndarray]
    noisy: list[np.ndarray]  # the noisy (rating <= threshold) items of each user's train set
    protocol: RatingsProtocol
    source_sha256: str = ""
    counts: dict = field(default_factory=dict)

    def train_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """(pairs [P, 2] of (user, item), is_noisy [P] bool), users in order, items sorted."""
        users = np.concatenate([np.full(len(t), u, np.int64) for u, t in enumerate(self.train)])
        items = np.concatenate(self.train) if self.train else np.zeros(0, np.int64)
        noisy = np.concatenate([np.isin(t, n) for t, n in zip(self.train, self.noisy)]) if self.train else \
            np.zeros(0, bool)
        return np.stack([users, items], 1), noisy

    def fingerprint(self) -> str:
        """Identifies the split (source file and protocol) for cache keys and manifests."""
        payload = json.dumps({"source": self.source_sha256, "protocol": asdict(self.protocol)}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def read_ratings(path: Path | str) -> pd.DataFrame:
    """user, item, rating, timestamp from RecBole's ``ml-100k.inter`` (tab-separated, typed header) or
    GroupLens' ``u.data`` (tab-separated, no header)."""
    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        first = fh.readline()
    header = 0 if ":" in first else None
    df = pd.read_csv(path, sep="\t", header=header, names=["user", "item", "rating", "timestamp"])
    return df.astype({"user": np.int64, "item": np.int64, "rating": np.float64, "timestamp": np.float64})


def _filter_min_count(df: pd.DataFrame, column: str, min_count: int) -> pd.DataFrame:
    counts = df[column].value_counts()
    return df[df[column].isin(counts[counts >= min_count].index)]


def _sklearn_split(items: list[int], test_size: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, test) as scikit-learn's train_test_split(items, test_size=..., random_state=seed)
    returns them: permutation from RandomState(seed); test = first ceil(test_size * n)."""
    n = len(items)
    n_test = math.ceil(test_size * n)
    perm = np.random.RandomState(seed).permutation(n)
    return [items[i] for i in perm[n_test:]], [items[i] for i in perm[:n_test]]


def split_ratings(ratings: pd.DataFrame, protocol: RatingsProtocol = RatingsProtocol(), source_sha256: str = ""
                  ) -> RatingsSplit:
    """Apply the protocol above to a (user, item, rating[, timestamp]) frame."""
    p = protocol
    df = ratings.drop_duplicates(subset=["user", "item"], keep="last")
    df = _filter_min_count(df, "item", p.item_filter)
    df = _filter_min_count(df, "user", p.user_filter)
    real = df[df["rating"] > p.positive_threshold]
    real = _filter_min_count(real, "user", p.min_real)
    noisy = df[(df["rating"] <= p.positive_threshold) & df["user"].isin(real["user"])]
    both = pd.concat([real, noisy], ignore_index=True)
    users = np.sort(both["user"].unique())
    items = np.sort(both["item"].unique())
    uid = {u: i for i, u in enumerate(users)}
    iid = {v: i for i, v in enumerate(items)}
    real_by_user = [[] for _ in users]
    noisy_by_user = [[] for _ in users]
    for u, v in zip(real["user"].map(uid), real["item"].map(iid)):
        real_by_user[u].append(int(v))
    for u, v in zip(noisy["user"].map(uid), noisy["item"].map(iid)):
        noisy_by_user[u].append(int(v))
    val_size = p.val_ratio / (1 - p.test_ratio) if p.val_ratio else 0.0
    train, val, test, noisy_out = [], [], [], []
    for u in range(len(users)):
        lst = sorted(real_by_user[u])
        rest, te = _sklearn_split(lst, p.test_ratio, p.seed)
        tr, va = _sklearn_split(rest, val_size, p.seed) if val_size else (rest, [])
        nz = [] if p.clean else sorted(noisy_by_user[u])
        train.append(np.asarray(sorted(set(tr) | set(nz)), dtype=np.int64))
        val.append(np.asarray(sorted(va), dtype=np.int64))
        test.append(np.asarray(sorted(te), dtype=np.int64))
        noisy_out.append(np.asarray(nz, dtype=np.int64))
    counts = {"users": len(users), "items": len(items), "train": int(sum(map(len, train))),
              "train_noisy": int(sum(map(len, noisy_out))), "val": int(sum(map(len, val))),
              "test": int(sum(map(len, test))), "ratings_in": int(len(ratings)), "ratings_kept": int(len(both))}
    return RatingsSplit(len(users), len(items), train, val, test, noisy_out, p, source_sha256, counts)


def load_ratings_split(path: Path | str, protocol: RatingsProtocol = RatingsProtocol()) -> RatingsSplit:
    """Read a ratings file and split it (fast: about a second for ML-100K)."""
    from napo_lab.data.prepared import sha256_file

    return split_ratings(read_ratings(path), protocol, sha256_file(path))
