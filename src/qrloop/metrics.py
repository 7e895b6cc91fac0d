"""Per-process counters, exposed in the Prometheus text format."""

from __future__ import annotations

from collections import Counter

_answers: Counter[tuple[str, str]] = Counter()


def count_answer(route: str, outcome: str) -> None:
    _answers[(route, outcome)] += 1


def render(settlement_backlog: int, dead_letters: int, webhooks: dict[str, int]) -> str:
    """This process's answer counters, the shared settlement gauges read from Redis, and the
    webhook deliveries waiting or given up, by status."""
    lines = [
        "# HELP qrloop_answers_total Answers given, by route and outcome (reason or ok).",
        "# TYPE qrloop_answers_total counter",
    ]
    for (route, outcome), value in sorted(_answers.items()):
        lines.append(f'qrloop_answers_total{{route="{route}",outcome="{outcome}"}} {value}')
    lines += [
        "# HELP qrloop_settlement_backlog Stream entries not yet settled into PostgreSQL.",
        "# TYPE qrloop_settlement_backlog gauge",
        f"qrloop_settlement_backlog {settlement_backlog}",
        "# HELP qrloop_dead_letters Entries settlement could never read, parked for a person.",
        "# TYPE qrloop_dead_letters gauge",
        f"qrloop_dead_letters {dead_letters}",
        "# HELP qrloop_webhook_deliveries Webhook deliveries still being tried, or given up.",
        "# TYPE qrloop_webhook_deliveries gauge",
    ]
    for status in ("pending", "failed"):
        lines.append(f'qrloop_webhook_deliveries{{status="{status}"}} {webhooks.get(status, 0)}')
    return "\n".join(lines) + "\n"
