"""A figure's verdict: what a run measured, the paper's claim it tests, and whether the run
supports it, contradicts it, or cannot test it (and why).

The claims are data (:data:`CLAIMS`), quoted as the paper's, each saying where the quote
comes from; the reports compute the outcome from a run's numbers, so that a run which
measured Kubedirect gets a verdict from its ratios and a run without it says why not.
Every figure page and the book's introduction show the verdict first.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

SUPPORTED, CONTRADICTED, CANNOT_TEST = "supported", "contradicted", "cannot test here"
OUTCOMES = (SUPPORTED, CONTRADICTED, CANNOT_TEST)

_ABSTRACT = ("\u201cto scale out a burst of FaaS instances, message passing becomes the primary bottleneck as "
             "controllers have to exchange extensive state through the API Server\u201d")
_NO_FIGURE_TEXT = ("quoted from the paper's abstract: the paper's own sentence about Figure {figure} is not "
                   "available to this book, so the claim quoted is the general one that Figures 9\u201311 test; "
                   "its testable form here is that Kubedirect brings the p90 pod up sooner than vanilla Kubernetes")


@dataclass(frozen=True)
class Claim:
    """The paper's claim a figure tests, as quoted, and where the quote comes from."""

    figure: int
    quote: str
    source: str


CLAIMS = {
    **{f: Claim(f, _ABSTRACT, _NO_FIGURE_TEXT.format(figure=f)) for f in (9, 10, 11)},
    12: Claim(12, "Kubedirect gives 26.7\u00d7 lower serving latency than Knative",
              "quoted from the paper: its headline number, which Figure 12 (Kn/Kd against Kn/K8s) backs; its "
              "testable form here is that Kn/Kd's per-function scheduling latency is lower than Kn/K8s's"),
    13: Claim(13, "with Kubedirect, the Kubernetes-based system performs close to Dirigent",
              "the paper's claim for Figure 13 in this book's words, not a verbatim quote: the paper's sentence "
              "is not available to this book; its testable form here is that Dr/Kd+ serves the trace with "
              "lower per-function slowdown than Dr/K8s+"),
}


@dataclass(frozen=True)
class Verdict:
    figure: int
    measured: str  # what this run measured for the figure
    outcome: str  # one of OUTCOMES
    because: str  # why, from the run's numbers or from what it could not run

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")

    @property
    def claim(self) -> Claim:
        return CLAIMS[self.figure]

    def row(self) -> dict[str, str]:
        """One line of the introduction's table of verdicts."""
        return {"figure": str(self.figure), "verdict": self.outcome, "because": self.because}

    def html(self) -> str:
        """The box at the top of the figure's page."""
        e = html.escape
        return (f'<div class="kdlib-verdict kdlib-verdict-{self.outcome.replace(" ", "-")}">'
                f'<p class="kdlib-verdict-outcome"><strong>Verdict: {e(self.outcome)}</strong>, '
                f'because {e(self.because)}</p>'
                f'<p><strong>The claim</strong> ({e(self.claim.source)}): {e(self.claim.quote)}.</p>'
                f'<p><strong>Measured here</strong>: {e(self.measured)}</p></div>')


def from_ratios(figure: int, measured: str, ratios: list[tuple[str, float]], missing: str) -> Verdict:
    """The verdict of a comparison "vanilla ÷ Kubedirect" (above 1: Kubedirect is faster).

    ``ratios`` are (where, ratio) pairs computed from the run; with none, the claim cannot
    be tested, for the reason ``missing``.
    """
    if not ratios:
        return Verdict(figure, measured, CANNOT_TEST, missing)
    shown = "; ".join(f"{where}: {ratio:.2f}\u00d7" for where, ratio in ratios)
    faster = [r for _, r in ratios if r > 1]
    if len(faster) == len(ratios):
        return Verdict(figure, measured, SUPPORTED, f"Kubedirect was faster wherever both were measured "
                                                    f"(vanilla \u00f7 Kubedirect: {shown})")
    if not faster:
        return Verdict(figure, measured, CONTRADICTED, f"Kubedirect was not faster anywhere both were measured "
                                                       f"(vanilla \u00f7 Kubedirect: {shown})")
    return Verdict(figure, measured, CANNOT_TEST, f"the run is split: Kubedirect was faster at some points and "
                                                  f"not at others (vanilla \u00f7 Kubedirect: {shown}); more "
                                                  f"repeats or larger scales are needed")
