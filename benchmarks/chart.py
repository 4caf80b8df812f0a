# ruff: noqa: RUF001  (multiplication and minus signs in the report text are intended)
"""A dependency-free bar chart: SVG text and a PNG written with zlib + struct (no matplotlib, no Pillow).

One panel per dataset size (each with its own scale), one bar per series, the value printed on each bar.
Text in the PNG uses a built-in 5x7 bitmap font (upper case, digits, a little punctuation).
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Sequence
from html import escape

# 5x7 glyphs, rows top to bottom, '#' = ink.
_FONT: dict[str, tuple[str, ...]] = {
    " ": (".....",) * 7,
    "0": (".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."),
    "1": ("..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "2": (".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"),
    "3": ("####.", "....#", "....#", ".###.", "....#", "....#", "####."),
    "4": ("...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."),
    "5": ("#####", "#....", "####.", "....#", "....#", "#...#", ".###."),
    "6": (".###.", "#....", "#....", "####.", "#...#", "#...#", ".###."),
    "7": ("#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."),
    "8": (".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."),
    "9": (".###.", "#...#", "#...#", ".####", "....#", "....#", ".###."),
    "A": (".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "B": ("####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."),
    "C": (".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."),
    "D": ("####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."),
    "E": ("#####", "#....", "#....", "####.", "#....", "#....", "#####"),
    "F": ("#####", "#....", "#....", "####.", "#....", "#....", "#...."),
    "G": (".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".###."),
    "H": ("#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"),
    "I": (".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."),
    "J": ("..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."),
    "K": ("#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"),
    "L": ("#....", "#....", "#....", "#....", "#....", "#....", "#####"),
    "M": ("#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"),
    "N": ("#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"),
    "O": (".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "P": ("####.", "#...#", "#...#", "####.", "#....", "#....", "#...."),
    "Q": (".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"),
    "R": ("####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"),
    "S": (".####", "#....", "#....", ".###.", "....#", "....#", "####."),
    "T": ("#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."),
    "U": ("#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."),
    "V": ("#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."),
    "W": ("#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."),
    "X": ("#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"),
    "Y": ("#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."),
    "Z": ("#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"),
    ".": (".....", ".....", ".....", ".....", ".....", ".##..", ".##.."),
    ",": (".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."),
    ":": (".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."),
    "=": (".....", ".....", "#####", ".....", "#####", ".....", "....."),
    "+": (".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."),
    "-": (".....", ".....", ".....", "#####", ".....", ".....", "....."),
    "/": (".....", "....#", "...#.", "..#..", ".#...", "#....", "....."),
    "(": ("...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."),
    ")": (".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."),
    "%": ("##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"),
    "X_": ("#...#", ".#.#.", "..#..", ".#.#.", "#...#", ".....", "....."),
}

RGB = tuple[int, int, int]
PALETTE: tuple[RGB, ...] = ((136, 136, 136), (187, 187, 187), (68, 119, 170), (204, 102, 119), (34, 136, 51))


class Canvas:
    def __init__(self, width: int, height: int, bg: RGB = (255, 255, 255)) -> None:
        self.w, self.h = width, height
        self.px = bytearray(bytes(bg) * (width * height))

    def rect(self, x: int, y: int, w: int, h: int, color: RGB) -> None:
        x0, y0, x1, y1 = max(0, x), max(0, y), min(self.w, x + w), min(self.h, y + h)
        if x1 <= x0 or y1 <= y0:
            return
        row = bytes(color) * (x1 - x0)
        for yy in range(y0, y1):
            start = (yy * self.w + x0) * 3
            self.px[start : start + len(row)] = row

    def text(self, x: int, y: int, s: str, color: RGB = (0, 0, 0), scale: int = 2) -> None:
        for ch in s.upper():
            glyph = _FONT.get("X_" if ch == "×" else ch, _FONT[" "])
            for r, line in enumerate(glyph):
                for c, bit in enumerate(line):
                    if bit == "#":
                        self.rect(x + c * scale, y + r * scale, scale, scale, color)
            x += 6 * scale

    @staticmethod
    def text_width(s: str, scale: int = 2) -> int:
        return len(s) * 6 * scale

    def png(self) -> bytes:
        raw = b"".join(b"\x00" + bytes(self.px[y * self.w * 3 : (y + 1) * self.w * 3]) for y in range(self.h))

        def chunk(kind: bytes, data: bytes) -> bytes:
            return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

        header = struct.pack(">IIBBBBB", self.w, self.h, 8, 2, 0, 0, 0)
        return (
            b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b"")
        )


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}"


def bar_chart(
    title: str, groups: Sequence[tuple[str, Sequence[float | None]]], series: Sequence[str], unit: str = "s"
) -> tuple[bytes, str]:
    """(PNG bytes, SVG text): one panel per group, one bar per series; ``None`` values are left out."""
    panel_w, panel_h, top, bottom, gap = 330, 300, 60, 50, 20
    legend_h = 22 * len(series) + 10
    width = max(len(groups) * (panel_w + gap) + gap, 700)
    height = top + panel_h + bottom + legend_h
    c = Canvas(width, height)
    svg: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="{gap}" y="30" font-size="18">{escape(title)}</text>',
    ]
    c.text(gap, 14, title, scale=2)
    for gi, (label, values) in enumerate(groups):
        x0 = gap + gi * (panel_w + gap)
        base = top + panel_h
        vmax = max((v for v in values if v is not None), default=1.0) or 1.0
        c.rect(x0, base, panel_w, 2, (0, 0, 0))
        svg.append(f'<line x1="{x0}" y1="{base}" x2="{x0 + panel_w}" y2="{base}" stroke="black"/>')
        lw = Canvas.text_width(label, 2)
        c.text(x0 + (panel_w - lw) // 2, base + 14, label, scale=2)
        svg.append(
            f'<text x="{x0 + panel_w / 2}" y="{base + 28}" font-size="15" text-anchor="middle">'
            f"{escape(label)}</text>"
        )
        n = len(series)
        bw = (panel_w - 20) // n - 8
        for si, v in enumerate(values):
            if v is None:
                continue
            bh = max(1, int((panel_h - 30) * v / vmax))
            bx = x0 + 10 + si * (bw + 8)
            color = PALETTE[si % len(PALETTE)]
            c.rect(bx, base - bh, bw, bh, color)
            text = _fmt(v) + unit
            tw = Canvas.text_width(text, 1)
            c.text(bx + (bw - tw) // 2, base - bh - 10, text, scale=1)
            svg.append(f'<rect x="{bx}" y="{base - bh}" width="{bw}" height="{bh}" fill="rgb{color}"/>')
            svg.append(
                f'<text x="{bx + bw / 2}" y="{base - bh - 4}" font-size="11" text-anchor="middle">'
                f"{escape(text)}</text>"
            )
    ly = top + panel_h + bottom
    for si, name in enumerate(series):
        color = PALETTE[si % len(PALETTE)]
        c.rect(gap, ly + si * 22, 16, 14, color)
        c.text(gap + 24, ly + si * 22, name, scale=2)
        svg.append(f'<rect x="{gap}" y="{ly + si * 22}" width="16" height="14" fill="rgb{color}"/>')
        svg.append(f'<text x="{gap + 24}" y="{ly + si * 22 + 12}" font-size="14">{escape(name)}</text>')
    svg.append("</svg>")
    return c.png(), "\n".join(svg)
