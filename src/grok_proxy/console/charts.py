"""Usage charts as SVG, drawn on the server: no script, no library, every label escaped."""

from __future__ import annotations

from html import escape

from grok_proxy.console.reports import Totals, Usage

# Drawn at about the size they are shown at (two side by side, or one on a phone).
WIDTH = 480
BAR_HEIGHT = 22
BARS_SHOWN = 12
ACCENT = "#2f6fde"
MUTED = "#6b7280"
# Presentation attributes, not a style attribute: the chart opened on its own is a
# document under the console's CSP, which allows no inline style.
FONT = 'font-family="system-ui,-apple-system,Segoe UI,Roboto,sans-serif" font-size="14"'
UNITS = {"requests": "requests", "tokens": "tokens", "cost": "dollars"}
PERIOD = {"hour": "last hour", "day": "last 24 hours", "month": "last 30 days"}


def value_text(measure: str, value: float) -> str:
    """A value as a person reads it: $0.0123, 1,234 tokens, 5 requests."""
    if measure == "cost":
        return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"
    return f"{int(value):,}"


def breakdown_svg(report: Usage, by: str, measure: str) -> str:
    """Horizontal bars: the measure per member or per model, largest first, values written."""
    groups = report.members if by == "member" else report.models
    ranked = sorted(groups.items(), key=lambda item: (-item[1].measure(measure), item[0]))
    if len(ranked) > BARS_SHOWN:
        rest = Totals()
        for _name, totals in ranked[BARS_SHOWN - 1 :]:
            rest.add(totals.counts)
        ranked = [*ranked[: BARS_SHOWN - 1], (f"{len(ranked) - BARS_SHOWN + 1} others", rest)]
    title = f"{UNITS[measure].capitalize()} per {by}, {PERIOD[report.window]}"
    height = 34 + max(1, len(ranked)) * (BAR_HEIGHT + 8)
    parts = [_head(title, height), _text(8, 18, title, weight="600")]
    if not ranked:
        parts.append(_text(8, 48, "Nothing yet.", fill=MUTED))
    top = max((totals.measure(measure) for _name, totals in ranked), default=0.0) or 1.0
    label_width, value_width = 130, 92
    bar_space = WIDTH - label_width - value_width - 16
    for row, (name, totals) in enumerate(ranked):
        y = 34 + row * (BAR_HEIGHT + 8)
        value = totals.measure(measure)
        width = max(1.0, bar_space * value / top) if value else 0.0
        parts.append(_text(8, y + 15, _clip(name, 16)))
        parts.append(
            f'<rect x="{label_width}" y="{y}" width="{width:.1f}" height="{BAR_HEIGHT}" '
            f'rx="3" fill="{ACCENT}"><title>{escape(name)}: '
            f"{escape(value_text(measure, value))}</title></rect>"
        )
        parts.append(_text(label_width + width + 6, y + 15, value_text(measure, value)))
    parts.append("</svg>")
    return "".join(parts)


def timeline_svg(report: Usage, measure: str) -> str:
    """Vertical bars: the measure per minute, hour or day of the window."""
    title = f"{UNITS[measure].capitalize()}, {PERIOD[report.window]} (UTC)"
    values = [totals.measure(measure) for totals in report.bins]
    total = sum(values)
    height, top_y, base_y, left = 190, 48, 162, 8
    parts = [
        _head(title, height),
        _text(8, 18, title, weight="600"),
        _text(WIDTH - 8, 18, f"total {value_text(measure, total)}", anchor="end"),
    ]
    peak = max(values, default=0.0) or 1.0
    slot = (WIDTH - 2 * left) / max(1, len(values))
    for index, value in enumerate(values):
        bar = (base_y - top_y) * value / peak
        if value:
            bar = max(bar, 1.5)
        x = left + index * slot
        parts.append(
            f'<rect x="{x + slot * 0.12:.1f}" y="{base_y - bar:.1f}" width="{slot * 0.76:.1f}" '
            f'height="{bar:.1f}" fill="{ACCENT}"><title>{escape(report.labels[index])}: '
            f"{escape(value_text(measure, value))}</title></rect>"
        )
    parts.append(
        f'<line x1="{left}" y1="{base_y}" x2="{WIDTH - left}" y2="{base_y}" stroke="{MUTED}"/>'
    )
    peak_text = f"peak {value_text(measure, max(values, default=0))}"
    parts.append(_text(left, top_y - 10, peak_text, fill=MUTED))
    step = max(1, len(values) // 4)
    for index in range(0, len(values), step):
        x = left + index * slot
        parts.append(_text(x, base_y + 18, report.labels[index], fill=MUTED))
    parts.append("</svg>")
    return "".join(parts)


def _head(title: str, height: int) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" role="img" aria-label="{escape(title)}" '
        f"{FONT}><title>{escape(title)}</title>"
        f'<rect width="{WIDTH}" height="{height}" fill="#ffffff"/>'
    )


def _text(
    x: float, y: float, text: str, *, fill: str = "#111827", weight: str = "400", anchor: str = ""
) -> str:
    extra = f' text-anchor="{anchor}"' if anchor else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" fill="{fill}" font-weight="{weight}"{extra}>'
        f"{escape(text)}</text>"
    )


def _clip(name: str, length: int) -> str:
    return name if len(name) <= length else name[: length - 1] + "\u2026"
