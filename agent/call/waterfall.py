"""The call's waterfall chart (`waterfall.png`): one row per turn, one coloured segment per gap
of its timeline (`core.call_report.TurnTimeline`), so a slow turn shows where its time went.

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no display, safe off the main
thread). Rows are labelled by turn number and cache outcome only: no caller words in the image.
"""

from __future__ import annotations

import io

from core.call_report import GAP_LABELS, TIMELINE, WATERFALL, TurnMetrics

__all__ = ["COLOURS", "MAX_ROWS", "WATERFALL", "render"]
MAX_ROWS = 60  # a long call shows its slowest turns (in call order): the chart stays readable
# One colour per gap, keyed by the stage that ends it (colour-blind-safe Okabe-Ito palette).
COLOURS = {
    "vad_end": "#999999",
    "final_transcript": "#56B4E9",
    "reply_started": "#F0E442",
    "cache_decision": "#009E73",
    "llm_first_token": "#E69F00",
    "tts_first_frame": "#CC79A7",
    "agent_first_sample": "#0072B2",
}


def render(turns: list[TurnMetrics], title: str = "per-turn timeline") -> bytes:
    """The waterfall as PNG bytes (a chart saying "no timeline" when no turn has one).

    Args:
        turns: the call's turns; those without a timeline get an empty row. Past `MAX_ROWS`
            turns, only the slowest `MAX_ROWS` are drawn.
        title: the chart's title.

    Returns:
        The PNG file's bytes.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    if len(turns) > MAX_ROWS:

        def span(t: TurnMetrics) -> float:
            st = t.timeline.stages() if t.timeline is not None else []
            return st[-1][1] - st[0][1] if st else -1.0

        slowest = {id(t) for t in sorted(turns, key=span, reverse=True)[:MAX_ROWS]}
        title = f"{title} ({MAX_ROWS} slowest of {len(turns)} turns)"
        turns = [t for t in turns if id(t) in slowest]
    rows = max(1, len(turns))
    fig = Figure(figsize=(9.0, 1.4 + 0.45 * rows), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    labels: list[str] = []
    longest = 0.0
    for y, t in enumerate(turns):
        outcome = t.cache_outcome or ("hit" if t.cache_hit else "")
        labels.append(f"turn {t.index}" + (f" ({outcome})" if outcome else ""))
        tl = t.timeline
        stages = tl.stages() if tl is not None else []
        if not stages:
            ax.text(0, y, "  no timeline", va="center", fontsize=8, color="#666666")
            continue
        t0 = stages[0][1]
        for g in tl.gaps() if tl is not None else []:
            start = next(v for n, v in stages if n == g.start) - t0
            ms = g.seconds * 1000
            ax.barh(y, ms, left=start * 1000, height=0.6, color=COLOURS.get(g.end, "#444444"))
            if ms >= 40:  # label segments wide enough to hold it
                ax.text(start * 1000 + ms / 2, y, f"{ms:.0f}", ha="center", va="center", fontsize=7)
        total = (stages[-1][1] - t0) * 1000
        longest = max(longest, total)
        ax.text(total, y, f"  {total:.0f} ms", va="center", fontsize=8)
    ax.set_yticks(range(len(turns)), labels=labels, fontsize=8)
    ax.set_ylim(rows - 0.5, -0.5)  # turn 0 on top
    ax.set_xlim(0, max(longest * 1.15, 100.0))
    ax.set_xlabel("ms since the turn's first measured stage (the caller's last sample)")
    ax.set_title(title, fontsize=10)
    order = [s for s in TIMELINE if s in GAP_LABELS]
    ax.legend(
        handles=[Patch(color=COLOURS[s], label=GAP_LABELS[s]) for s in order],
        fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.5 / rows - 0.25), ncol=len(order), frameon=False,
    )  # fmt: skip
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
