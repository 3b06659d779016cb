"""The comparison of `compare.py`: its rows (which figure against which, and the goal) and
the Markdown report, with every per-round value next to the medians."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

# One round's results: (subject key, measure) -> what the client wrote, or {"error": ...}.
Round = dict[tuple[str, str], dict[str, Any]]


@dataclass(frozen=True)
class Figure:
    """One number of one measure of one subject (for taskflare: "jobs pg", without label)."""

    subject: str
    measure: str  # enqueue | bulk | drain | pickup | floor
    field: str  # a key of that measure's result

    @property
    def higher_is_better(self) -> bool:
        return not self.field.endswith("_ms")

    def of(self, label: str) -> Figure:
        return Figure(f"{label} {self.subject}", self.measure, self.field)


@dataclass(frozen=True)
class Row:
    """A line of the table: taskflare's figure, what it is compared with, and the goal."""

    key: str  # the name `--only` takes
    label: str
    ours: Figure
    against: tuple[Figure, ...]
    goal: str
    # (taskflare's median, median ratio) -> goal met; None: a row for context, no goal
    met: Callable[[float, float], bool] | None


def _peers(names: Sequence[str], measure: str, field: str) -> tuple[Figure, ...]:
    return tuple(Figure(name, measure, field) for name in names)


PG, SQ = ("pgqueuer", "procrastinate"), ("huey",)
FLOOR_PG = (Figure("floor pg", "floor", "claim_ack_jobs_s"),)
FLOOR_SQ = (Figure("floor sqlite", "floor", "claim_ack_jobs_s"),)


def _ratio_at_least(x: float) -> Callable[[float, float], bool]:
    return lambda value, ratio: ratio >= x


def _value_at_most(x: float) -> Callable[[float, float], bool]:
    return lambda value, ratio: value <= x


ROWS: tuple[Row, ...] = (
    Row(
        "job-drain-pg",
        "job drain, PostgreSQL, jobs/s",
        Figure("jobs pg", "drain", "jobs_s"),
        _peers(PG, "drain", "jobs_s"),
        "≥ 3x",
        _ratio_at_least(3),
    ),
    Row(
        "job-drain-sqlite",
        "job drain, SQLite, jobs/s",
        Figure("jobs sqlite", "drain", "jobs_s"),
        _peers(SQ, "drain", "jobs_s"),
        "≥ 3x",
        _ratio_at_least(3),
    ),
    Row(
        "enqueue-pg",
        "single job enqueue, PostgreSQL, jobs/s",
        Figure("jobs pg", "enqueue", "jobs_s"),
        _peers(PG, "enqueue", "jobs_s"),
        "≥ 1.5x",
        _ratio_at_least(1.5),
    ),
    Row(
        "enqueue-pg",
        "single job enqueue, PostgreSQL, p95 ms",
        Figure("jobs pg", "enqueue", "p95_ms"),
        _peers(PG, "enqueue", "p95_ms"),
        "≤ peer's (≤ 1x)",
        lambda value, ratio: ratio <= 1,
    ),
    Row(
        "enqueue-sqlite",
        "single job enqueue, SQLite, jobs/s",
        Figure("jobs sqlite", "enqueue", "jobs_s"),
        _peers(SQ, "enqueue", "jobs_s"),
        "≥ 1.5x",
        _ratio_at_least(1.5),
    ),
    Row(
        "enqueue-sqlite",
        "single job enqueue, SQLite, p95 ms",
        Figure("jobs sqlite", "enqueue", "p95_ms"),
        _peers(SQ, "enqueue", "p95_ms"),
        "≤ peer's (≤ 1x)",
        lambda value, ratio: ratio <= 1,
    ),
    Row(
        "bulk-pg",
        "bulk enqueue, PostgreSQL, jobs (`enqueue_many`), jobs/s",
        Figure("jobs pg", "bulk", "jobs_s"),
        _peers(PG, "bulk", "jobs_s"),
        "≥ 2x",
        _ratio_at_least(2),
    ),
    Row(
        "bulk-pg",
        "bulk enqueue, PostgreSQL, messages (`send_batch`), msgs/s",
        Figure("messages pg", "bulk", "jobs_s"),
        _peers(PG, "bulk", "jobs_s"),
        "≥ 2x",
        _ratio_at_least(2),
    ),
    Row(
        "pickup-pg",
        "pickup p50 (jobs), PostgreSQL, ms",
        Figure("jobs pg", "pickup", "p50_ms"),
        _peers(PG, "pickup", "p50_ms"),
        "≤ 2 ms",
        _value_at_most(2),
    ),
    Row(
        "pickup-pg",
        "pickup p50 (jobs), PostgreSQL, beside the raw floor (`peers/rawpg_peer.py`), ms",
        Figure("jobs pg", "pickup", "p50_ms"),
        (Figure("rawpg", "pickup", "p50_ms"),),
        "context",
        None,
    ),
    Row(
        "pickup-sqlite",
        "pickup p50 (jobs), SQLite, ms",
        Figure("jobs sqlite", "pickup", "p50_ms"),
        _peers(SQ, "pickup", "p50_ms"),
        "≤ 5 ms",
        _value_at_most(5),
    ),
    Row(
        "msg-drain-pg",
        "message drain / floor, PostgreSQL, msgs/s",
        Figure("messages pg", "drain", "jobs_s"),
        FLOOR_PG,
        "≥ 0.5x",
        _ratio_at_least(0.5),
    ),
    Row(
        "msg-drain-sqlite",
        "message drain / floor, SQLite, msgs/s",
        Figure("messages sqlite", "drain", "jobs_s"),
        FLOOR_SQ,
        "≥ 0.5x",
        _ratio_at_least(0.5),
    ),
)

FIELDS = {  # what each measure reports, in the per-round table
    "enqueue": (
        ("jobs_s", "jobs/s"),
        ("p50_ms", "p50 ms"),
        ("p95_ms", "p95 ms"),
        ("p99_ms", "p99 ms"),
    ),
    "bulk": (("jobs_s", "jobs/s, one call"),),
    "drain": (("jobs_s", "jobs/s"), ("jobs_s_incl_startup", "jobs/s incl. worker start-up")),
    "pickup": (("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("n", "samples")),
    "floor": (
        ("insert_jobs_s", "insert, batches of 100, rows/s"),
        ("claim_ack_jobs_s", "claim + delete, batches of 100, rows/s"),
    ),
}


def needed(rows: Sequence[Row], labels: Sequence[str]) -> list[tuple[str, str]]:
    """The (subject key, measure) runs the rows need, for every taskflare label."""
    runs: dict[tuple[str, str], None] = {}
    for row in rows:
        for figure in [*(row.ours.of(label) for label in labels), *row.against]:
            runs[(figure.subject, figure.measure)] = None
    return list(runs)


# -- numbers ----------------------------------------------------------------------------------


def values(rounds: Sequence[Round], figure: Figure) -> list[float | None]:
    """The figure in each round (None where it failed)."""
    out = []
    for results in rounds:
        value = results.get((figure.subject, figure.measure), {}).get(figure.field)
        out.append(float(value) if isinstance(value, int | float) else None)
    return out


def median(xs: Sequence[float | None]) -> float | None:
    known = [x for x in xs if x is not None]
    return statistics.median(known) if known else None


@dataclass(frozen=True)
class Comparison:
    """A row for one taskflare label: its values, the fastest peer's, and the ratios."""

    ours: list[float | None]
    peer: str
    theirs: list[float | None]
    ratios: list[float | None]  # per round: ours / theirs

    @property
    def value(self) -> float | None:
        return median(self.ours)

    @property
    def ratio(self) -> float | None:
        return median(self.ratios)


def compare(row: Row, rounds: Sequence[Round], label: str) -> Comparison:
    """Against the peer whose median is best; ratios per round, so both sides share the noise."""
    candidates = [(f, values(rounds, f)) for f in row.against]
    scored = [(m, f, v) for f, v in candidates if (m := median(v)) is not None]
    ours = values(rounds, row.ours.of(label))
    if not scored:
        return Comparison(ours, row.against[0].subject, [None] * len(rounds), [None] * len(ours))
    pick = max if row.ours.higher_is_better else min
    _, best, theirs = pick(scored, key=lambda s: s[0])
    ratios = [a / b if a is not None and b else None for a, b in zip(ours, theirs, strict=True)]
    return Comparison(ours, best.subject, theirs, ratios)


# -- Markdown -----------------------------------------------------------------------------------


def fmt(x: float | None, field: str = "") -> str:
    if x is None:
        return "—"
    if field.endswith("_ms"):
        return f"{x:.2f}" if x < 10 else f"{x:.1f}"
    return f"{x:,.0f}" if x >= 100 or field == "n" else f"{x:.2f}"


def ratio_cell(c: Comparison) -> str:
    """'**median**x (round 1 / round 2 / ...)'."""
    if c.ratio is None:
        return "—"
    runs = " / ".join("—" if r is None else f"{r:.2f}" for r in c.ratios)
    return f"**{c.ratio:.2f}x**" + (f" ({runs})" if len(c.ratios) > 1 else "")


def main_table(rows: Sequence[Row], rounds: Sequence[Round], labels: Sequence[str]) -> list[str]:
    extra = labels[1:]  # a baseline: its figure and its ratio, in columns of their own
    head = ["figure", labels[0], *extra, "fastest peer, same engine", "ratio"]
    head += [f"ratio {label}" for label in extra] + ["goal", "met"]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for row in rows:
        mine = [compare(row, rounds, label) for label in labels]
        first = mine[0]
        met = (
            "—"
            if row.met is None or first.value is None or first.ratio is None
            else ("yes" if row.met(first.value, first.ratio) else "**no**")
        )
        f = row.ours.field
        cells = [row.label, *(f"**{fmt(c.value, f)}**" for c in mine)]
        cells += [f"{first.peer} {fmt(median(first.theirs), f)}"]
        cells += [ratio_cell(c) for c in mine] + [row.goal, met]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def per_round_table(runs: Sequence[tuple[str, str]], rounds: Sequence[Round]) -> list[str]:
    head = [
        "subject",
        "measure",
        "figure",
        "median",
        *(f"round {i + 1}" for i in range(len(rounds))),
    ]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for subject, measure in sorted(runs, key=lambda r: (r[0].startswith("floor"), r)):
        for field, label in FIELDS[measure]:
            xs = values(rounds, Figure(subject, measure, field))
            timed_out = [r.get((subject, measure), {}).get("timed_out") for r in rounds]
            cells = [
                fmt(x, field) + (" (timed out)" if t else "")
                for x, t in zip(xs, timed_out, strict=True)
            ]
            row = [subject, measure, label, f"**{fmt(median(xs), field)}**", *cells]
            lines.append("| " + " | ".join(row) + " |")
    return lines


def configs(runs: Sequence[tuple[str, str]], rounds: Sequence[Round]) -> list[str]:
    seen: dict[str, str] = {}
    for subject, measure in runs:
        for results in rounds:
            result = results.get((subject, measure), {})
            if "config" in result:
                bulk = result.get("bulk_api") or "none"
                seen[subject] = f"- **{subject}**: {result['config']}. Bulk API: {bulk}."
    return [seen[s] for s in sorted(seen)]


def errors(runs: Sequence[tuple[str, str]], rounds: Sequence[Round]) -> list[str]:
    out = []
    for i, results in enumerate(rounds, 1):
        for subject, measure in runs:
            error = results.get((subject, measure), {}).get("error")
            if error:
                out.append(f"- round {i}, {subject} {measure}: {error}")
    return out


def render(
    rows: Sequence[Row],
    runs: Sequence[tuple[str, str]],
    rounds: Sequence[Round],
    labels: Sequence[str],
    header: Sequence[str],
    footer: Sequence[str],
) -> str:
    """The whole report: header, the comparison, every per-round value, configs, footer."""
    lines = [*header, "", *main_table(rows, rounds, labels), ""]
    lines += [
        "Cells are medians over the rounds. A ratio is taskflare's figure over the peer's (or",
        "the floor's) in the same round, then the median of those per-round ratios (each",
        "round's in brackets); the peer is the one with the best median on that engine (highest",
        "rate, lowest latency). For latencies, a ratio below 1 means taskflare is faster.",
        "Pickup goals are absolute.",
        "",
        "## Every figure, per round",
        "",
        *per_round_table(runs, rounds),
        "",
        "## How each subject is set up",
        "",
        *configs(runs, rounds),
        "",
    ]
    problems = errors(runs, rounds)
    if problems:
        lines += ["## Errors", "", *problems, ""]
    return "\n".join([*lines, *footer]) + "\n"
