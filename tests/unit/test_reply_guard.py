"""The reply guard on crafted degenerate streams, fed in deltas of several sizes."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from voice_orchestrator.reply_guard import CutReason, GuardedReply, ReplyLimits, guard_text
from voice_orchestrator.settings import IngressSettings

MOON = (
    "The moon is the largest planet in the solar system. It is "
    "38000000000000000000000000000000000000000000000000000000000000"
)


def deltas_of(text: str, size: int) -> list[str]:
    return [text[start : start + size] for start in range(0, len(text), size)]


class Upstream:
    """A model's stream that counts what was pulled from it and whether it was closed."""

    def __init__(self, deltas: list[str]) -> None:
        self.deltas = deltas
        self.pulled = 0
        self.closed = False

    async def stream(self) -> AsyncIterator[str]:
        try:
            for delta in self.deltas:
                self.pulled += 1
                yield delta
        finally:
            self.closed = True


async def guarded(
    text: str, language: str, size: int, limits: ReplyLimits | None = None, soft: int = 40
) -> tuple[list[str], CutReason | None, Upstream]:
    upstream = Upstream(deltas_of(text, size))
    reply = GuardedReply(language, limits)
    sentences = [sentence async for sentence in reply.sentences(upstream.stream(), soft, soft)]
    return sentences, reply.cut, upstream


SIZES = [1, 3, 7, 1000]


@pytest.mark.parametrize("size", SIZES)
async def test_the_moon_digit_run_keeps_only_the_first_sentence(size: int) -> None:
    sentences, cut, upstream = await guarded(MOON, "en", size)
    assert sentences == ["The moon is the largest planet in the solar system."]
    assert cut is CutReason.DIGIT_RUN
    assert upstream.closed


@pytest.mark.parametrize("size", [1, 3])
async def test_the_model_stops_being_pulled_once_the_cut_is_decided(size: int) -> None:
    _, cut, upstream = await guarded(MOON, "en", size)
    assert cut is CutReason.DIGIT_RUN
    # Decided at the sixth zero of "38000000…": nothing after that delta is pulled.
    decided_at = MOON.index("38000000") + len("38000000")
    assert upstream.pulled == -(-decided_at // size)
    assert upstream.pulled < len(upstream.deltas)


async def test_a_number_too_long_to_speak_ends_the_reply_before_it() -> None:
    text = "Sure. Pi is 3.14159265358979323846 and more. Bye."
    sentences, cut, _ = await guarded(text, "en", 4)
    assert (sentences, cut) == (["Sure."], CutReason.DIGIT_RUN)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(
    ("text", "language", "spoken", "reason"),
    [
        ("面白いですね。ははははははははははははは", "ja", ["面白いですね。"], CutReason.REPETITION),
        ("Wow!!!!!!!!!!!! That is great.", "en", [], CutReason.REPETITION),
        ("Well. I think I think I think I think I think", "en", ["Well."], CutReason.REPETITION),
        ("It is the the the the the best.", "en", [], CutReason.REPETITION),
        ("Yes. So on and so on and so on and so on.", "en", ["Yes."], CutReason.REPETITION),
        ("東京です。東京です。東京です。東京です。", "ja", ["東京です。"], CutReason.REPETITION),
        ("はい。東京です東京です東京です東京です", "ja", ["はい。"], CutReason.REPETITION),
        (
            "Paris is the capital. Paris is the capital. Paris",
            "en",
            ["Paris is the capital."],
            CutReason.REPETITION,
        ),
        ("答えは１２３４５６７８９０１２３４５です。", "ja", [], CutReason.DIGIT_RUN),
    ],
)
async def test_degenerate_tails_are_dropped(
    text: str, language: str, spoken: list[str], reason: CutReason, size: int
) -> None:
    sentences, cut, upstream = await guarded(text, language, size)
    assert (sentences, cut) == (spoken, reason)
    assert upstream.closed


CIRCLING_LIST = (
    "週末は、お風呂、プール、ショッピング、レストラン、映画、コンサート、美術館、博物館、美術館、ショッピング、"
    "レストラン、映画、コンサート、美術館、博物館、ショッピング、レストラン、映画、コンサート、美術館、"
)


@pytest.mark.parametrize("size", SIZES)
async def test_a_list_going_round_in_circles_is_cut(size: int) -> None:
    # The packaged Gemma 270M's answer to 週末は何をしたらいいですか？ (repetition_penalty 1.0): no exact
    # repeat, but it compresses like one. A long time budget, so only the repetition test can end it.
    limits = ReplyLimits(max_reply_seconds=60.0)
    sentences, cut, upstream = await guarded(CIRCLING_LIST, "ja", size, limits)
    assert cut is CutReason.REPETITION
    assert "".join(sentences) in CIRCLING_LIST
    assert upstream.pulled < len(upstream.deltas) or size == 1000


@pytest.mark.parametrize("size", SIZES)
async def test_a_monologue_ends_after_max_sentences(size: int) -> None:
    text = "One is first. Two comes next. Three is here. Four is too many. Five."
    sentences, cut, upstream = await guarded(text, "en", size, ReplyLimits(max_sentences=3))
    assert sentences == ["One is first.", "Two comes next.", "Three is here."]
    assert cut is CutReason.MAX_SENTENCES
    assert upstream.pulled < len(upstream.deltas) or size == 1000


async def test_exactly_max_sentences_is_not_a_cut() -> None:
    sentences, cut, _ = await guarded("一です。二です。三です。", "ja", 2, ReplyLimits(max_sentences=3))
    assert (sentences, cut) == (["一です。", "二です。", "三です。"], None)


@pytest.mark.parametrize("size", SIZES)
async def test_a_reply_longer_than_max_seconds_ends_at_the_last_sentence_that_fits(size: int) -> None:
    limits = ReplyLimits(max_sentences=10, max_reply_seconds=5.0)
    assert (limits.max_chars("en"), limits.max_chars("ja")) == (80, 27)
    text = (
        "Kyoto is an old city in Japan. It has a great many old temples, gardens and shrines. People visit."
    )
    sentences, cut, _ = await guarded(text, "en", size, limits)
    assert (sentences, cut) == (["Kyoto is an old city in Japan."], CutReason.MAX_LENGTH)
    text = "京都は日本の古い都です。お寺や神社がたくさんあり、一年中にぎわいます。"
    sentences, cut, _ = await guarded(text, "ja", size, limits)
    assert (sentences, cut) == (["京都は日本の古い都です。"], CutReason.MAX_LENGTH)


def test_digits_count_as_the_words_they_are_read_as() -> None:
    limits = ReplyLimits()
    assert limits.spoken_chars("3776", "en") == 20  # "three thousand seven hundred seventy-six"
    assert limits.spoken_chars("3776", "ja") == 10  # さんぜんななひゃくななじゅうろく
    assert limits.spoken_chars("Paris", "en") == 5


NORMAL = [
    ("en", "Mount Fuji is 3776 meters high. It last erupted in 1707."),
    ("en", "It takes about 1.5 hours by train. The fare is 14,170 yen."),
    ("en", "There are 1,000,000 reasons, but very very very few matter."),
    ("en", "Bye bye! See you at 10:30 on 2025-04-01."),
    ("en", "Dr. Smith said it costs $25.99. Ha ha ha."),
    ("en", "Paris"),
    (
        "en",
        "Kyoto was the capital of Japan for a thousand years. It is famous for its temples and shrines, "
        "and people visit it all year.",
    ),
    ("ja", "富士山の高さは3776メートルです。"),
    ("ja", "約三千七百七十六メートルです。最後の噴火は1707年です。"),
    ("ja", "どんどん寒くなりますね。ますます楽しみです！"),
    ("ja", "「本当？」と聞きました。はい、そうです。"),
    ("ja", "晴天です"),
    ("ja", "ありがとうございます。どういたしまして。"),
]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize(("language", "text"), NORMAL)
async def test_normal_replies_are_untouched(language: str, text: str, size: int) -> None:
    sentences, cut, upstream = await guarded(text, language, size)
    assert cut is None
    joiner = "" if language == "ja" else " "
    assert joiner.join(sentences) == text
    assert upstream.pulled == len(upstream.deltas)


@pytest.mark.parametrize("size", SIZES)
async def test_a_list_number_goes_with_its_sentence(size: int) -> None:
    # SmolLM2 answers "how do I" with a numbered list; the splitter ends a sentence at "2.".
    text = "1. Boil the water.\n2. Pour it over the tea.\n3. Wait three minutes.\n4. Enjoy."
    sentences, cut, _ = await guarded(text, "en", size)
    assert sentences == ["1. Boil the water.", "2. Pour it over the tea.", "3. Wait three minutes."]
    assert cut is CutReason.MAX_SENTENCES


@pytest.mark.parametrize("text", ["It is 3776.", "3776", "答えは、3776"])
def test_a_reply_ending_on_a_number_keeps_it(text: str) -> None:
    assert guard_text(text, "en").text == text


async def test_comma_chunks_are_spoken_before_the_degenerate_rest() -> None:
    # A chunk ended at a comma is already spoken when the rest of its sentence degenerates.
    text = "明日の天気は晴れのち曇り、気温は30000000000000000度"
    sentences, cut, _ = await guarded(text, "ja", 2, soft=8)
    assert (sentences, cut) == (["明日の天気は晴れのち曇り、"], CutReason.DIGIT_RUN)


async def test_cut_and_text_before_and_after() -> None:
    reply = GuardedReply("en")
    assert (reply.cut, reply.text) == (None, "")
    upstream = Upstream(deltas_of(MOON, 5))
    async for _ in reply.sentences(upstream.stream()):
        pass
    assert reply.text == "The moon is the largest planet in the solar system."
    assert reply.pulled == upstream.pulled


async def test_closing_the_guarded_stream_closes_the_upstream() -> None:
    upstream = Upstream(deltas_of("First one. Second one. Third one.", 3))
    stream = GuardedReply("en").sentences(upstream.stream())
    assert await anext(stream) == "First one."
    await stream.aclose()  # type: ignore[attr-defined]
    assert upstream.closed
    assert upstream.pulled < len(upstream.deltas)


def test_guard_text_on_a_whole_reply() -> None:
    assert guard_text(MOON, "en") == guard_text(MOON, "en")
    result = guard_text(MOON, "en")
    assert (result.text, result.cut) == (
        "The moon is the largest planet in the solar system.",
        CutReason.DIGIT_RUN,
    )
    result = guard_text("東京です。東京です。", "ja")
    assert (result.text, result.cut) == ("東京です。", CutReason.REPETITION)
    assert guard_text("晴れです。", "ja").cut is None


def test_limits_from_settings_and_validation() -> None:
    settings = IngressSettings(max_reply_sentences=2, max_reply_seconds=6.0)  # live settings of the ingress
    limits = ReplyLimits.from_settings(settings)
    assert (limits.max_sentences, limits.max_reply_seconds) == (2, 6.0)
    with pytest.raises(ValueError, match="positive"):
        ReplyLimits(max_sentences=0)
    with pytest.raises(ValueError, match="positive"):
        ReplyLimits(max_reply_seconds=0.0)
