"""Rich progress bars with rates; they render live on a terminal and stay quiet in CI logs."""

from __future__ import annotations

import sys

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text


class RateColumn(ProgressColumn):
    """Items per second (users/s for evaluation)."""

    def __init__(self, unit: str = "users"):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("?" if speed is None else f"{speed:.2f} {self.unit}/s", style="progress.data.speed")


def progress(unit: str = "users", disable: bool | None = None) -> Progress:
    if disable is None:
        disable = not sys.stderr.isatty()
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    RateColumn(unit), TimeElapsedColumn(), TimeRemainingColumn(), disable=disable)
