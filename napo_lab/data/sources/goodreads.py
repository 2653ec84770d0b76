"""Goodreads from SPRec's published records. NOT the S-DPO / NAPO Goodreads split (never published).

SPRec ships BIGRec-style instruction records (10 quoted history titles -> 1 target title) and an
``id2name`` map, but no ids and no candidates. We map titles to ids (exact match first, then after
normalising quotes and whitespace), drop unmatched history titles and rows whose target is
unmatched (both counted in the manifest), and draw seeded 20-candidate lists. Each record is its own
user (SPRec has no user ids): train records are users 0..n-1, then val, then test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pandas as pd

from napo_lab.data.examples import Built, PrepReport, read_utf8
from napo_lab.data.prepared import DataError

_PREFIX = re.compile(r"^.*?before:\s*")
_SUFFIX = re.compile(r",\s*please write.*$", re.S)


def _norm(title: str) -> str:
    title = title.replace("\u201c", '"').replace("\u201d", '"').replace("\u2019", "'")
    return " ".join(title.strip().strip('"').split()).casefold()


def parse_titles(text: str) -> list[str]:
    """``The user has ... before: "T1", "T2", please write ...`` -> ["T1", "T2"]."""
    body = _SUFFIX.sub("", _PREFIX.sub("", text.strip(), count=1)).strip()
    if body.startswith('"'):
        body = body[1:]
    if body.endswith('"'):
        body = body[:-1]
    return [t for t in body.split('", "') if t]


def _load_json(path: Path) -> Any:
    try:
        return json.loads(read_utf8(path))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None


def build(cfg: dict[str, Any], files: dict[str, Path], report: PrepReport) -> Built:
    f = cfg["files"]
    id2name = _load_json(files[f["id2name"]])
    n = len(id2name)
    if sorted(int(k) for k in id2name) != list(range(n)):
        raise DataError(f"{files[f['id2name']]}: ids are not contiguous 0..{n - 1}")
    titles = [str(id2name[str(i)]) for i in range(n)]
    exact = {t: i for i, t in enumerate(titles)}
    loose = {_norm(t): i for i, t in enumerate(titles)}

    def lookup(title: str) -> int | None:
        return exact.get(title, loose.get(_norm(title)))

    splits: dict[str, pd.DataFrame] = {}
    user = 0
    unmatched: dict[str, int] = {}
    for split in ("train", "val", "test"):
        records = _load_json(files[f[split]])
        rows, miss_hist, miss_target = [], 0, 0
        for rec in records:
            if not {"input", "output"} <= set(rec):
                raise DataError(f"{files[f[split]]}: records need 'input' and 'output' fields")
            hist_ids = [lookup(t) for t in parse_titles(rec["input"])]
            miss_hist += sum(i is None for i in hist_ids)
            target = lookup(rec["output"].strip())
            if target is None:
                miss_target += 1
            else:
                rows.append((user, [i for i in hist_ids if i is not None], target))
            user += 1
        report.warn(f"{split}/unmatched_history_titles_removed", miss_hist)
        report.warn(f"{split}/unmatched_target_rows_dropped", miss_target)
        unmatched[split] = miss_hist + miss_target
        splits[split] = pd.DataFrame(rows, columns=["user", "history", "target"])
    report.extra["unmatched_titles"] = unmatched
    report.notes.append(
        "NOT the S-DPO/NAPO Goodreads split: built from SPRec's published records (train) and "
        "flora0110/Negative_Sampling samples of SPRec's valid/test; titles mapped to SPRec ids; "
        "each record is its own user; candidates from the seeded sampler."
    )
    return Built(items=pd.DataFrame({"item_id": range(n), "title": titles}), splits=splits)


def eval_splits(cfg: dict[str, Any]) -> list[str]:
    """The evaluation splits this builder prepares (dataset.val_split / test_split name one)."""
    return ["val", "test"]
