"""Hypothesis strategies for hostile uploads: random bytes, real container headers with garbage behind
them, and WAV headers whose every field is drawn at random."""

from __future__ import annotations

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
