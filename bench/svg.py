"""Pieces of the benchmark charts that bench/report.py and bench/sizes.py share."""


def axis(out, left, right, height, top, label):
    """Five horizontal grid lines from 0 to `top` over `height` pixels, each labelled."""
    for tick in range(0, 5):
        value = top * tick / 4
        y = 20 + height - height * tick / 4
        out.append(f'<line x1="{left}" x2="{right}" y1="{y:.0f}" y2="{y:.0f}" stroke="#ddd"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.0f}" text-anchor="end">{label(value)}</text>')


def legend(out, x, entries):
    """A coloured square and its name per (colour, name), one under the other."""
    for i, (colour, name) in enumerate(entries):
        y = 30 + i * 18
        out.append(f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{colour}"/>')
        out.append(f'<text x="{x + 18}" y="{y}">{name}</text>')
