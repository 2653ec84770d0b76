"""Every command the documentation shows, extracted from the documents themselves.

Sources: README.md, docs/*.md, experiments/README.md. A command is a line of a fenced ``bash`` block
or of an indented (4-space) code block (continuation lines joined, trailing comments dropped), or an
inline code span, that starts with
``python -m napo_lab.``, a ``napo-`` console script, ``make`` or an environment assignment before
one of those. A new command in the docs is therefore picked up without editing any test.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DOCS = ["README.md", *sorted(str(p.relative_to(REPO)) for p in (REPO / "docs").glob("*.md")), "experiments/README.md"]
_START = re.compile(r"^(?:[A-Z_]+=\S+\s+)*(?:python -m napo_lab\.|napo-[a-z]+\b|make(?:\s|$)|wandb sync\s+\S)")
BENCH_START = re.compile(r"^python -m benchmarks\.run\b")  # the benchmark's commands (benchmark_commands)


@dataclass(frozen=True)
class DocCommand:
    source: str   # file:line
    text: str     # the command exactly as written (continuations joined)

    @property
    def argv(self) -> list[str]:
        return shlex.split(self.text)

    @property
    def env(self) -> dict[str, str]:
        out = {}
        for word in self.argv:
            if re.fullmatch(r"[A-Z_]+=\S*", word):
                out[word.split("=", 1)[0]] = word.split("=", 1)[1]
            else:
                break
        return out

    @property
    def words(self) -> list[str]:
        """The command without its leading environment assignments."""
        return self.argv[len(self.env):]

    @property
    def module(self) -> str | None:
        w = self.words
        if w[:2] == ["python", "-m"]:
            return w[2]
        if w and w[0].startswith("napo-"):
            return "napo_lab." + w[0][len("napo-"):]
        return None

    @property
    def args(self) -> list[str]:
        """The command's arguments; a bare ``...`` (prose for "and your other overrides") is dropped."""
        w = self.words
        return [a for a in (w[3:] if w[:2] == ["python", "-m"] else w[1:]) if a != "..."]


def _strip_comment(line: str) -> str:
    out, quote = [], None
    for i, ch in enumerate(line):
        if quote:
            quote = None if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            break
        out.append(ch)
    return "".join(out).rstrip()


def extract(doc: str, pattern: re.Pattern = _START) -> list[DocCommand]:
    lines = (REPO / doc).read_text().splitlines()
    found: list[DocCommand] = []
    in_bash, pending, start, continued = False, "", 0, False
    for n, raw in enumerate(lines, 1):
        if raw.strip().startswith("```"):
            in_bash = not in_bash and raw.strip() in ("```bash", "```sh", "```shell")
            continue
        # an indented (4-space) code block's command line, or the continuation of one: read as a bash line
        indented = raw.startswith("    ") and (continued or (not pending and bool(pattern.match(raw.strip()))))
        if in_bash or indented:
            line = _strip_comment(raw).strip()
            if pending:
                line, pending = pending + " " + line, ""
            else:
                start = n
            continued = line.endswith("\\")
            if continued:
                pending = line[:-1].rstrip()
                continue
            if pattern.match(line):
                found.append(DocCommand(f"{doc}:{start}", line))
            continue
        # inline spans: `python -m napo_lab.x ...`, possibly broken over two lines in the prose
        text = raw if not pending else pending + " " + raw.strip()
        pending = ""
        for span in re.findall(r"`([^`]+)`", text):
            if pattern.match(span) and not span.startswith("make "):
                found.append(DocCommand(f"{doc}:{n}", span.strip()))
        if text.count("`") % 2 == 1:  # a span continues on the next line
            pending = text[text.rindex("`"):]
    return found


def all_commands(pattern: re.Pattern = _START) -> list[DocCommand]:
    seen, out = set(), []
    for doc in DOCS:
        for cmd in extract(doc, pattern):
            if cmd.text not in seen:
                seen.add(cmd.text)
                out.append(cmd)
    return out


def benchmark_commands() -> list[DocCommand]:
    """``python -m benchmarks.run ...`` as the documents show it (make bench's own command)."""
    return all_commands(BENCH_START)


if __name__ == "__main__":
    for c in all_commands():
        print(f"{c.source:32} {c.text}")
