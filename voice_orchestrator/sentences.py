"""Split a language model's streamed text into speakable sentences, Japanese and English alike.

Splitting only on ASCII ". ! ?" (as many pipelines do) never fires on Japanese, so the first audio waits for
the whole reply. Here a sentence ends at 。！？!?… or a line break (closing quotes and brackets stay with it),
at ". " in English (not inside numbers like 3.5, nor after common abbreviations), never inside 「quotes」,
and, once a sentence has grown long, at a Japanese comma 、 or an English comma, so the first audio is never
held back by a long sentence. The first chunk may end at a comma sooner than the others
(`first_soft_split_chars`): it alone decides when the listener hears anything, and the rest are synthesised
while it plays. No chunk is longer than `MAX_CHUNK_CHARS` (`MAX_CHUNK_CHARS_JA` for Japanese): past it the
text is cut at its last space or comma within the limit, else at the limit; a "word" longer than
`MAX_WORD_CHARS` (a digit run, letters spelled out) is cut into chunks of that length. So a voice's memory
and time to first audio depend on the chunk, never on the input.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from voice_orchestrator.text import is_japanese

HARD_ENDS = frozenset("。！？!?…\n")
CLOSERS = frozenset("」』）)】\"'”’》〉]")
OPENERS = frozenset("「『（(【“《〈[")
RUN_CHARS = HARD_ENDS | CLOSERS | {"."}
SOFT_ENDS = frozenset("、,，;；")
ABBREVIATIONS = frozenset({"mr", "mrs", "ms", "dr", "prof", "st", "vs", "etc", "e.g", "i.e", "no", "approx"})
# The longest chunk a voice is given: ≈ 7 s of English at the packaged voices' pace, and ≈ 10 s of Japanese
# (≈ 6 characters a second; 120 kana in one chunk took Kokoro 7 s to start and its replica to 1.8 GB).
MAX_CHUNK_CHARS = 120
MAX_CHUNK_CHARS_JA = 60
# A longer "word" (no space: a digit run, letters a voice spells out at ≈ 0.5 s each) is cut into chunks of
# this many characters: 120 spelled letters in one chunk took Piper 60 s of speech and 1.4 GB.
MAX_WORD_CHARS = 40


def chunk_limit(text: str) -> int:
    return MAX_CHUNK_CHARS_JA if is_japanese(text[:MAX_CHUNK_CHARS]) else MAX_CHUNK_CHARS


class SentenceSplitter:
    """Feed text deltas; take complete sentences as soon as they end; flush the rest at the end."""

    def __init__(self, soft_split_chars: int = 40, first_soft_split_chars: int | None = None) -> None:
        self._buffer = ""
        # A comma ends a chunk only after this many characters: short chunks sound choppy.
        self._soft_split_chars = soft_split_chars
        self._first_soft_split_chars = first_soft_split_chars or soft_split_chars
        self._emitted = False

    def feed(self, delta: str) -> list[str]:
        self._buffer += delta
        sentences: list[str] = []
        while (cut := self._boundary()) is not None:
            sentence, self._buffer = self._buffer[:cut], self._buffer[cut:]
            if sentence.strip():
                sentences.append(sentence.strip())
                self._emitted = True
        return sentences

    def flush(self) -> list[str]:
        chunks = []
        while (cut := self._forced_cut()) is not None:  # what is left may still be over the limit
            chunks.append(self._buffer[:cut].strip())
            self._buffer = self._buffer[cut:]
        rest, self._buffer = self._buffer.strip(), ""
        return [chunk for chunk in [*chunks, rest] if chunk]

    def _forced_cut(self) -> int | None:
        """Past MAX_CHUNK_CHARS without a sentence end: the last space or comma in the limit's second half,
        else the limit itself."""
        text = self._buffer
        start = len(text) - len(text.lstrip())
        most = chunk_limit(text[start:])
        if len(text) - start <= most:
            return None
        limit = start + most
        for index in range(limit - 1, start + most // 2, -1):
            if text[index].isspace() or (text[index] in SOFT_ENDS and not self._in_number(index)):
                return index + 1
        return limit

    def _boundary(self) -> int | None:
        """Index just past the first complete sentence in the buffer, or None while none is complete."""
        text = self._buffer
        soft_split = self._soft_split_chars if self._emitted else self._first_soft_split_chars
        depth = 0  # inside 「…」: 「本当？」と聞いた。 is one sentence (unless a quote never closes)
        start = len(text) - len(text.lstrip())
        most = chunk_limit(text[start:])
        word_start, in_japanese = start, False  # Japanese runs on without spaces: `most` bounds it
        for index, char in enumerate(text):
            if index - start >= most:
                return self._forced_cut()
            if char.isspace():
                word_start, in_japanese = index + 1, False
            elif is_japanese(char):
                in_japanese = True
            elif index - word_start >= MAX_WORD_CHARS and not in_japanese:
                return index  # an over-long "word" (digits, letters spelled out): a chunk of its own
            if char in OPENERS:
                depth += 1
            elif char in CLOSERS and depth:
                depth -= 1
            quoted = depth > 0 and char != "\n" and index < 2 * self._soft_split_chars
            if quoted:
                continue
            if char in HARD_ENDS or (char == "." and self._period_ends_sentence(index)):
                end = index + 1
                # The end mark's run stays with the sentence: "？」", "!!", "...".
                while end < len(text) and text[end] in RUN_CHARS:
                    end += 1
                # At the buffer's end the run may go on in the next delta ("。" then "」"): wait for it.
                return end if end < len(text) else None
            if char in SOFT_ENDS and soft_split <= index + 1 < len(text) and not self._in_number(index):
                return index + 1
        return None

    def _in_number(self, index: int) -> bool:
        """A comma between digits groups thousands ("12,345"): it is no pause."""
        text = self._buffer
        return 0 < index < len(text) - 1 and text[index - 1].isdigit() and text[index + 1].isdigit()

    def _period_ends_sentence(self, index: int) -> bool:
        text = self._buffer
        if index + 1 >= len(text):
            return False  # undecided: "3." may become "3.5"
        following = text[index + 1]
        if following == ".":
            return True  # an ellipsis
        if not (following.isspace() or following in CLOSERS):
            return False  # "3.5", "example.com", "e.g"
        words = text[:index].split()
        word = words[-1].lower().strip("(\"'") if words else ""
        # "Dr. Smith" goes on; a single capital letter is an initial ("J. Smith").
        return word not in ABBREVIATIONS and not (len(word) == 1 and text[index - 1].isupper())


async def split_stream(
    deltas: AsyncIterator[str], soft_split_chars: int = 40, first_soft_split_chars: int | None = None
) -> AsyncIterator[str]:
    """Sentences from a stream of text deltas, each yielded as soon as it is complete."""
    splitter = SentenceSplitter(soft_split_chars, first_soft_split_chars)
    async for delta in deltas:
        for sentence in splitter.feed(delta):
            yield sentence
    for sentence in splitter.flush():
        yield sentence
