"""The README's picture: Figures 3 and 4 on the bundled zoo, side by side, in one PNG.

Both panels are the report's own figures (`figures/discrepancy/figure3_discrepancy.png` and
`figure4_discrepancy_ads.png`, drawn by `ssmprobe report --zoo`), pasted next to each other at
their native scale, so the two share one font size, with their titles on one line. Nothing is
recomputed: after the report redraws them, run this again.

    python analysis/readme_figure.py [--out docs/assets/figures_3_4.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
PANELS = (
    ROOT / "figures" / "discrepancy" / "figure3_discrepancy.png",
    ROOT / "figures" / "discrepancy" / "figure4_discrepancy_ads.png",
)
OUT = ROOT / "docs" / "assets" / "figures_3_4.png"
GAP = 60  # white pixels between the two panels and around them


def on_white(path: Path) -> Image.Image:
    """The figure as RGB, its transparent parts white (as a page shows it)."""
    image = Image.open(path).convert("RGBA")
    white = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, image).convert("RGB")


def compose(paths: tuple[Path, ...] = PANELS, gap: int = GAP) -> Image.Image:
    panels = [on_white(p) for p in paths]
    height = max(p.height for p in panels) + 2 * gap  # tops aligned: the titles on one line
    width = sum(p.width for p in panels) + gap * (len(panels) + 1)
    canvas = Image.new("RGB", (width, height), "white")
    x = gap
    for panel in panels:
        canvas.paste(panel, (x, gap))
        x += panel.width + gap
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"default: {OUT.relative_to(ROOT)}")
    args = parser.parse_args()
    image = compose()
    # 256 colours hold the bars, hatching and anti-aliased text and keep the file small.
    image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(args.out, optimize=True)
    print(f"{args.out}: {image.width} x {image.height}")


if __name__ == "__main__":
    main()
