"""Hypothesis strategies for hostile uploads (random bytes, real container headers with garbage behind
them, WAV headers whose every field is drawn at random), hostile texts a client may send, and hostile
replies a language model may write."""

from __future__ import annotations

import random
import string
import struct

from hypothesis import strategies as st

from tests.audio_factory import encode, tone

# Real file starts: a valid header followed by whatever hypothesis draws.
REAL_PREFIXES = [
    encode(tone(0.6), 16_000, kind)[:size]
    for kind in ("wav-s16", "flac", "ogg-opus", "mp3", "webm-opus", "m4a-aac")
    for size in (12, 44, 200)
]


@st.composite
def wav_with_random_header(draw: st.DrawFn) -> bytes:
    fmt_tag = draw(st.sampled_from([1, 3, 0, 2, 0xFFFE, draw(st.integers(0, 0xFFFF))]))
    channels = draw(st.sampled_from([0, 1, 2, 255, 0xFFFF]))
    rate = draw(st.sampled_from([0, 1, 8_000, 16_000, 48_000, 0xFFFFFFFF]))
    bits = draw(st.sampled_from([0, 8, 16, 24, 32, 64, 13]))
    data = draw(st.binary(max_size=2048))
    declared = draw(st.sampled_from([len(data), 0, 0xFFFFFFFF, draw(st.integers(0, 0xFFFFFFFF))]))
    block = max(1, channels * bits // 8) & 0xFFFF
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, (rate * block) & 0xFFFFFFFF, block, bits)
    header = b"RIFF" + struct.pack("<I", 36 + len(data)) + b"WAVEfmt " + struct.pack("<I", 16) + fmt
    return header + b"data" + struct.pack("<I", declared) + data


hostile_uploads = st.one_of(
    st.binary(max_size=4096),
    st.tuples(st.sampled_from(REAL_PREFIXES), st.binary(max_size=1024)).map(lambda pair: pair[0] + pair[1]),
    wav_with_random_header(),
    st.text(max_size=256).map(str.encode),
)


# Text a client may ask to be spoken or answered: control and format characters, symbols, digit runs, marks,
# mixed scripts, very long tokens (what once made the voices raise, or swell a replica's memory).
hostile_texts = st.one_of(
    st.text(
        st.characters(
            categories=[
                "Cc",
                "Cf",
                "Co",
                "So",
                "Sm",
                "Sk",
                "Nd",
                "Lu",
                "Ll",
                "Lo",
                "Po",
                "Pd",
                "Ps",
                "Zs",
                "Mn",
            ]
        ),
        min_size=1,
        max_size=400,
    ),
    st.sampled_from(["\x00", "\u200b" * 30, "." * 300, "!?" * 50, "🙂" * 20, "\u202e" + "abc"]),
    st.tuples(st.sampled_from("7xあ."), st.integers(50, 600)).map(lambda pair: pair[0] * pair[1]),
    st.lists(
        st.sampled_from(["今日は", "晴れ", "Tokyo", "12345", "、", "。", " ", "!", "\n"]), max_size=60
    ).map("".join),
)


def _random_letters(seed_and_size: tuple[int, int]) -> str:
    seed, size = seed_and_size
    chooser = random.Random(seed)
    return "".join(chooser.choice(string.ascii_letters) for _ in range(size))


# Words of many scripts and the characters models emit between them (bidi overrides, zero-width joiners,
# byte-order marks, line and paragraph separators, decomposed accents, ZWJ emoji, flags, keycaps).
_MIXED_PIECES = [
    "مرحبا",
    "שלום",
    "नमस्ते",
    "สวัสดี",
    "Привет",
    "안녕하세요",
    "你好",
    "こんにちは",
    "Γειά",
    "Tokyo",
    "e\u0301",
    "\u202e",
    "\u200b",
    "\ufeff",
    "\u2028",
    "\u2029",
    "👩\u200d👩\u200d👧\u200d👦",
    "🇯🇵",
    "1\ufe0f\u20e3",
    "½",
    "Ⅻ",
    "①",
    "²",
    "€",
    " ",
    ". ",
    "。",
    "、",
    "!",
    "?",
    "\n",
    "…",
]

# Letters no packaged voice reads (CJK Extension B-F ideographs, outside the Japanese voice's range; Brahmi,
# Cuneiform, ...) spaced like words: a voice that spells each one as its code point ("letter two six one d
# three") speaks seconds per character.
UNREADABLE_LETTERS = " ".join(chr(0x20000 + (n * 7919) % 0xA6D0) for n in range(60))
unreadable_words = st.lists(
    st.characters(categories=["Lo"], min_codepoint=0x10000, max_codepoint=0x2FFFF), min_size=1, max_size=80
).map(" ".join)

# What a language model may write: everything in `hostile_texts`, and the degenerate outputs small models
# produce or a prompt can provoke — digit runs to 4,000, one 2,000-letter "word", mixed scripts, combining
# mark stacks, letters no voice reads, markdown and links, emoji only, unassigned and private-use code
# points, nothing at all.
hostile_replies = st.one_of(
    hostile_texts,
    unreadable_words,
    st.tuples(st.sampled_from("70９"), st.integers(13, 4000)).map(lambda pair: pair[0] * pair[1]),
    st.integers(1, 700).map(lambda n: ",".join(f"{k:03d}" for k in range(n))),
    st.tuples(st.integers(0, 2**32 - 1), st.integers(41, 2000)).map(_random_letters),
    st.lists(st.sampled_from(_MIXED_PIECES), max_size=80).map("".join),
    st.tuples(
        st.sampled_from("aあ7"), st.text(st.characters(categories=["Mn", "Me"]), min_size=20, max_size=300)
    ).map("".join),
    st.lists(
        st.sampled_from(
            [
                "**Bold**",
                "```python\nprint(1)\n```",
                "[link](http://x.example/a?b=c)",
                "# Title\n",
                "- item\n",
                "1. ",
                "https://example.com/" + "a" * 200,
                "`code`",
                "> quote\n",
                "| a | b |\n|---|---|\n",
            ]
        ),
        min_size=1,
        max_size=30,
    ).map("".join),
    st.text(
        st.characters(categories=["Cn", "Co", "Zl", "Zp", "Me", "Nl", "No", "Lm", "Sc", "Sk"]), max_size=300
    ),
    st.sampled_from(
        [
            "",
            " \n\t ",
            "🙂👍🏽" * 40,
            "\ufffe\uffff\ufdd0",
            "Hi. " * 1000,
            "ア" * 2000,
            "あいうえお" * 400 + "。",
        ]
    ),
)
