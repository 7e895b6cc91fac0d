"""Per-process counters, exposed in the Prometheus text format."""

from __future__ import annotations

from collections import Counter

_answers: Counter[tuple[str, str]] = Counter()


def count_answer(route: str, outcome: str) -> None:
    _answers[(route, outcome)] += 1


def render() -> str:
    lines = [
        "# HELP qrloop_answers_total Answers given, by route and outcome (reason or ok).",
        "# TYPE qrloop_answers_total counter",
    ]
    for (route, outcome), value in sorted(_answers.items()):
        lines.append(f'qrloop_answers_total{{route="{route}",outcome="{outcome}"}} {value}')
    return "\n".join(lines) + "\n"
