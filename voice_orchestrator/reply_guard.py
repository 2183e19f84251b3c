"""A guard between the language model's text deltas and the voice: replies that never babble.

Small models degenerate: the packaged Gemma 270M answered "The moon is the largest planet in the solar system.
It is 3800000000…" until `max_tokens`, and the server spoke all of it. The guard splits the deltas into
speakable sentences (`SentenceSplitter`) and checks the reply after every delta, so it can stop pulling the
model as soon as the reply goes wrong. It ends the reply at the last chunk already accepted and drops the
degenerate tail when it sees:
- a character repeated more than `max_repeat_run` times in a row (「ははははははは」, "!!!!!!!", "000000");
- a number longer than `max_digit_run` digits (never spelled out: it ends the reply before that sentence);
- a word said more than `max_word_repeats` times in a row, a phrase of 2–6 words, or a run of characters
  (Japanese has no spaces) more than `max_phrase_repeats` times ("I think I think I think");
- a sentence that repeats an earlier one (「東京です。東京です。」), or a reply that compresses too
  well (a list going round in circles: 「映画、美術館、映画、美術館、…」);
- more than `max_sentences` sentences, or more text than `max_reply_seconds` of speech in that language.

Chunks the splitter ends at a comma are spoken at once (first audio must not wait for the full stop), so a
sentence whose second half degenerates keeps its first half. Pure logic, no Ray: the dialogue pipeline wraps
the model's stream in `GuardedReply.sentences`; whole replies go through `guard_text`.
"""

from __future__ import annotations

import contextlib
import math
import re
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from voice_orchestrator.sentences import CLOSERS, HARD_ENDS, SentenceSplitter


class CutReason(StrEnum):
    REPETITION = "repetition"  # repeated characters, words, phrases or sentences
    DIGIT_RUN = "digit_run"  # a long number, or the same digit over and over
    MAX_SENTENCES = "max_sentences"
    MAX_LENGTH = "max_length"  # more text than max_reply_seconds of speech


# Characters a second of speech, measured on the packaged voices at speed 1.0 (Kokoro jf_alpha: 6.0 for
# Japanese, Piper en_US-joe-medium: 17.8 for English), rounded down so the bound errs on the short side.
SPEECH_CHARS_PER_SECOND: dict[str, float] = {"ja": 5.5, "zh": 4.5, "ko": 5.5}
DEFAULT_CHARS_PER_SECOND = 16.0
# A digit is read as several characters' worth: 3776 is さんぜんななひゃくななじゅうろく, "three thousand...".
DIGIT_WEIGHT: dict[str, float] = {"ja": 2.5, "zh": 2.5, "ko": 2.5}
DEFAULT_DIGIT_WEIGHT = 5.0  # "2,175,000": "two million one hundred seventy-five thousand"

# A repeated span of characters (2+ characters a unit) is degenerate from this length on: 「どんどん」 and
# "hahaha" are speech, 「東京です東京です東京です」 is not.
_MIN_REPEATED_SPAN = 12
_MIN_COMPRESSED_CHARS = 40  # shorter texts do not compress (zlib's own overhead)
_DIGIT = "0-9\uff10-\uff19"  # ASCII and full-width digits
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_NOT_WORD = re.compile(r"[\W_]+")


class ReplyLimitSettings(Protocol):
    """Where the live bounds are configured (any settings object with these two fields)."""

    @property
    def max_reply_sentences(self) -> int: ...

    @property
    def max_reply_seconds(self) -> float: ...


@dataclass(frozen=True)
class ReplyLimits:
    max_sentences: int = 3
    # The spoken reply's length bound, turned into characters per language (SPEECH_CHARS_PER_SECOND).
    max_reply_seconds: float = 10.0
    # A run of more than this many identical characters (or digits) is degenerate: 5 → "000000" is cut.
    max_repeat_run: int = 5
    # A number of more than this many digits (separators "," and "." allowed) ends the reply before it.
    max_digit_run: int = 12
    # The same word more than this many times in a row: "very very very" stays, "the the the the" is cut.
    max_word_repeats: int = 3
    # The same phrase (2–6 words, or 2+ characters for unspaced text) more than this many times in a row.
    max_phrase_repeats: int = 2
    # Near-repeats (a list going round in circles) compress well: a reply of 40+ characters whose UTF-8
    # compresses by more than this is cut (Whisper uses the same test, at 2.4). Prose measures 1.0–1.3.
    max_compression_ratio: float = 2.0

    def __post_init__(self) -> None:
        if (
            min(self.max_sentences, self.max_repeat_run, self.max_digit_run) < 1
            or self.max_reply_seconds <= 0
        ):
            raise ValueError(f"reply limits must be positive: {self}")
        if self.max_word_repeats < 1 or self.max_phrase_repeats < 1 or self.max_compression_ratio <= 1:
            raise ValueError(f"reply limits must be positive: {self}")

    @classmethod
    def from_settings(cls, settings: ReplyLimitSettings) -> ReplyLimits:
        return cls(max_sentences=settings.max_reply_sentences, max_reply_seconds=settings.max_reply_seconds)

    def spoken_chars(self, text: str, language: str) -> float:
        """The text's length in the characters max_chars counts: digits weigh more (they are read out)."""
        digits = sum(char.isdecimal() for char in text)
        return len(text) + digits * (DIGIT_WEIGHT.get(language, DEFAULT_DIGIT_WEIGHT) - 1)

    def max_chars(self, language: str) -> int:
        rate = SPEECH_CHARS_PER_SECOND.get(language, DEFAULT_CHARS_PER_SECOND)
        return max(1, math.floor(self.max_reply_seconds * rate))


class _Detector:
    """What makes a text degenerate, compiled once per limits."""

    def __init__(self, limits: ReplyLimits) -> None:
        self._char_run = re.compile(rf"(\S)\1{{{limits.max_repeat_run},}}")
        self._digit_run = re.compile(rf"[{_DIGIT}](?:[.,]?[{_DIGIT}]){{{limits.max_digit_run},}}")
        # One pattern per unit length: n characters without a space (words and phrases are _repeated_words'
        # job) repeated enough times to span _MIN_REPEATED_SPAN.
        times = limits.max_phrase_repeats + 1
        self._spans = [
            re.compile(rf"(\S{{{n}}})\1{{{max(times, math.ceil(_MIN_REPEATED_SPAN / n)) - 1},}}")
            for n in range(2, 17)
        ]
        self._limits = limits

    def check(self, text: str) -> CutReason | None:
        if self._digit_run.search(text):
            return CutReason.DIGIT_RUN
        if run := self._char_run.search(text):
            return CutReason.DIGIT_RUN if run.group(1).isdecimal() else CutReason.REPETITION
        if any(span.search(text) for span in self._spans) or self._repeated_words(text):
            return CutReason.REPETITION
        if len(text) >= _MIN_COMPRESSED_CHARS:
            encoded = text.encode()
            if len(encoded) > self._limits.max_compression_ratio * len(zlib.compress(encoded)):
                return CutReason.REPETITION
        return None

    def _repeated_words(self, text: str) -> bool:
        words = [word.lower() for word in _WORD.findall(text)]
        for n in range(1, 7):
            allowed = self._limits.max_word_repeats if n == 1 else self._limits.max_phrase_repeats
            for start in range(len(words) - n * (allowed + 1) + 1):
                unit = words[start : start + n]
                if all(words[start + k * n : start + (k + 1) * n] == unit for k in range(1, allowed + 1)):
                    return True
        return False


def _ends_sentence(chunk: str) -> bool:
    """A chunk the splitter ended at a full stop, not at a comma (only full sentences count)."""
    core = chunk.rstrip("".join(CLOSERS) + " ")
    return bool(core) and (core[-1] in HARD_ENDS or core[-1] in ".．")


def _is_marker(chunk: str) -> bool:
    """A chunk that is only a list number ("1.", "2．"): the splitter ends a sentence at its period."""
    return len(chunk) <= 4 and not any(char.isalpha() for char in chunk)


class ReplyGuard:
    """Synchronous core: feed deltas, take accepted chunks; once `cut` is set, stop feeding (the rest is
    dropped) and stop the model."""

    def __init__(
        self,
        language: str,
        limits: ReplyLimits | None = None,
        soft_split_chars: int = 40,
        first_soft_split_chars: int | None = None,
    ) -> None:
        self.limits = limits or ReplyLimits()
        self.cut: CutReason | None = None
        self.accepted: list[str] = []
        self._language = language
        self._max_chars = self.limits.max_chars(language)
        self._joiner = "" if language in ("ja", "zh") else " "
        self._detector = _Detector(self.limits)
        self._splitter = SentenceSplitter(soft_split_chars, first_soft_split_chars)
        self._raw = ""  # everything the model wrote
        self._cursor = 0  # where the text the splitter still holds begins in _raw
        self._chars = 0.0
        self._sentences = 0
        self._seen: set[str] = set()
        self._held = ""  # a list marker ("1.") waiting for its sentence

    @property
    def text(self) -> str:
        """The accepted reply, as spoken."""
        return self._joiner.join(self.accepted)

    def feed(self, delta: str) -> list[str]:
        if self.cut is not None:
            return []
        self._raw += delta
        accepted = self._take(self._splitter.feed(delta))
        if self.cut is None:
            self._check_pending(self._raw[self._cursor :].strip())
        return accepted

    def finish(self) -> list[str]:
        """The model has ended: the rest it wrote, if it passes."""
        if self.cut is not None:
            return []
        rest = self._splitter.flush()
        if not rest and self._held:  # the reply ended on a bare number: say it
            rest, self._held = [self._held], ""
        return self._take(rest, last=True)

    def _take(self, chunks: list[str], last: bool = False) -> list[str]:
        accepted: list[str] = []
        for index, chunk in enumerate(chunks):
            found = self._raw.find(chunk, self._cursor)
            self._cursor = found + len(chunk) if found >= 0 else len(self._raw)
            if self._held:  # "2." + "Pour the water." -> "2. Pour the water." (cleaned as a list item)
                chunk, self._held = f"{self._held} {chunk}", ""
            if _is_marker(chunk) and not (last and index == len(chunks) - 1):
                self._held = chunk  # a list number alone is no sentence: it goes with the next one
                continue
            self.cut = self._judge(chunk)
            if self.cut is not None:
                break
            accepted.append(chunk)
            self.accepted.append(chunk)
            self._chars += self.limits.spoken_chars(chunk, self._language)
            self._sentences += _ends_sentence(chunk)
            if key := _NOT_WORD.sub("", chunk.lower()):
                self._seen.add(key)
        return accepted

    def _judge(self, chunk: str) -> CutReason | None:
        """Why this complete chunk must not be spoken, or None."""
        if self._sentences >= self.limits.max_sentences:
            return CutReason.MAX_SENTENCES
        if reason := self._detector.check(self._joiner.join([*self.accepted, chunk])):
            return reason
        key = _NOT_WORD.sub("", chunk.lower())
        if len(key) >= 2 and key in self._seen:
            return CutReason.REPETITION
        if self._chars + self.limits.spoken_chars(chunk, self._language) > self._max_chars:
            return CutReason.MAX_LENGTH
        return None

    def _check_pending(self, pending: str) -> None:
        """Decide on the unfinished sentence now, so the model need not write the rest of it."""
        if not pending:
            return
        if self._sentences >= self.limits.max_sentences:
            self.cut = CutReason.MAX_SENTENCES
        elif reason := self._detector.check(self._joiner.join([*self.accepted, pending])):
            self.cut = reason
        elif self._chars + self.limits.spoken_chars(pending, self._language) > self._max_chars:
            self.cut = CutReason.MAX_LENGTH


class GuardedReply:
    """The model's deltas in, speakable sentences out; `cut` says why the reply was ended early (or None).

        guarded = GuardedReply(request.language, limits)
        async for sentence in guarded.sentences(llm.stream(request), soft_split_chars, first_chunk_chars):
            speak(sentence)
        if guarded.cut: warn_and_count(guarded.cut)

    Once the reply is cut the upstream is no longer pulled and is closed (`aclose()`, when it has one), which
    stops the model."""

    def __init__(self, language: str, limits: ReplyLimits | None = None) -> None:
        self._language = language
        self._limits = limits or ReplyLimits()
        self._guard: ReplyGuard | None = None
        self.pulled = 0  # deltas taken from the upstream

    @property
    def cut(self) -> CutReason | None:
        return self._guard.cut if self._guard else None

    @property
    def text(self) -> str:
        return self._guard.text if self._guard else ""

    async def sentences(
        self,
        deltas: AsyncIterator[str],
        soft_split_chars: int = 40,
        first_soft_split_chars: int | None = None,
    ) -> AsyncIterator[str]:
        guard = self._guard = ReplyGuard(
            self._language, self._limits, soft_split_chars, first_soft_split_chars
        )
        try:
            async for delta in deltas:
                self.pulled += 1
                for sentence in guard.feed(delta):
                    yield sentence
                if guard.cut is not None:
                    return
            for sentence in guard.finish():
                yield sentence
        finally:
            close = getattr(deltas, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):  # the upstream's own errors were raised already
                    await close()


@dataclass(frozen=True)
class GuardedText:
    text: str
    cut: CutReason | None


def guard_text(text: str, language: str, limits: ReplyLimits | None = None) -> GuardedText:
    """A whole reply through the same guard (for routes that do not stream)."""
    guard = ReplyGuard(language, limits, soft_split_chars=10_000)
    guard.feed(text)
    guard.finish()
    return GuardedText(guard.text, guard.cut)
