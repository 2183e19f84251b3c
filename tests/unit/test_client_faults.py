"""What a client sends is the client's fault: text made speakable in one place for every voice, chunks bounded
whatever the input, and input errors answered as 4xx that never count against a stage's health."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deployments.stage_client import StageClient
from tests.unit.fakes import FakeTTS, fake_app
from voice_orchestrator.api.openai.speech import speakable_sentences
from voice_orchestrator.engines.embedded_tts import MAX_PHONEMES, bounded_phonemes
from voice_orchestrator.errors import OrchestratorError, OrchestratorErrorCode
from voice_orchestrator.protocol import SynthesisRequest
from voice_orchestrator.sentences import (
    MAX_CHUNK_CHARS,
    MAX_CHUNK_CHARS_JA,
    MAX_WORD_CHARS,
    SentenceSplitter,
)
from voice_orchestrator.status import DeploymentView
from voice_orchestrator.text import clean_for_speech


@pytest.mark.parametrize(
    ("text", "spoken"),
    [
        ("Hello\x00 world", "Hello world"),  # NUL made espeak raise "embedded null character" (a 503)
        ("\u200b\u200d\u2060\ufeff", ""),  # only zero-width characters
        ("..........", ""),  # a run of dots: nothing to say
        ("Really?!!!!!! Yes......", "Really?! Yes."),
        ("1" * 20, "1" * 20),  # as written: grouped, 120 digits took 67 s of speech and 1.5 GB in Piper
        ("今日は\u200bいい天気", "今日はいい天気"),
        ("\u202eevil\u202c text", "evil text"),  # bidi controls
    ],
)
def test_text_is_made_speakable_in_one_place(text: str, spoken: str) -> None:
    assert clean_for_speech(text) == spoken


def test_no_chunk_is_longer_than_the_maximum_whatever_the_input() -> None:
    for word in ("7" * 4096, "x" * 4096):  # one unbroken "sentence": 1.2 GB of TTS replica memory before
        chunks = speakable_sentences(word, 40)
        assert len(chunks) == 4096 // MAX_WORD_CHARS + 1
        assert all(len(chunk) <= MAX_WORD_CHARS for chunk in chunks)
    chunks = speakable_sentences("see " + "7" * 100 + " and more", 40)
    assert all(len(chunk) <= MAX_WORD_CHARS + len("see ") for chunk in chunks)
    english = "word " * 200  # no sentence end at all: cut at a space within the limit
    splitter = SentenceSplitter()
    pieces = [*splitter.feed(english), *splitter.flush()]
    assert all(len(piece) <= MAX_CHUNK_CHARS and piece.endswith("word") for piece in pieces)
    japanese = "あ" * 500 + "。"
    splitter = SentenceSplitter()
    pieces = [*splitter.feed(japanese), *splitter.flush()]
    assert len(pieces) >= 500 // MAX_CHUNK_CHARS_JA
    assert all(len(piece) <= MAX_CHUNK_CHARS_JA for piece in pieces)
    splitter = SentenceSplitter()  # a long Japanese sentence is cut at its last 、 within the limit
    assert splitter.feed("今日は" * 12 + "、" + "晴れ" * 30 + "。")[0] == "今日は" * 12 + "、"


def test_a_normal_sentence_is_not_cut() -> None:
    sentence = "The capital of France is Paris, and it is famous for the Eiffel Tower."
    assert speakable_sentences(sentence, 40) == [
        "The capital of France is Paris, and it is famous for the Eiffel Tower."
    ]


@settings(max_examples=300, deadline=None)
@given(
    st.text(
        st.characters(
            categories=["Cc", "Cf", "Co", "So", "Sm", "Nd", "Lu", "Ll", "Lo", "Po", "Pd", "Zs", "Mn"]
        ),
        max_size=2000,
    )
)
def test_any_text_becomes_bounded_speakable_chunks(text: str) -> None:
    for chunk in speakable_sentences(text, 40):
        assert len(chunk) <= MAX_CHUNK_CHARS
        assert any(char.isalnum() for char in chunk)
        assert "\x00" not in chunk


@pytest.mark.parametrize("text", ["\x00\x00", "\u200b" * 50, "." * 300, "🙂🙂"])
async def test_unspeakable_speech_input_is_a_400_not_a_503(text: str) -> None:
    app = fake_app()
    async with app.client as client:
        response = await client.post(
            "/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": text}
        )
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "input"
    assert app.tts.requests == []


async def test_4096_digits_are_spoken_in_bounded_chunks() -> None:
    tts = FakeTTS()
    app = fake_app(tts=tts)
    async with app.client as client:
        response = await client.post(
            "/v1/audio/speech",
            json={"model": "tts-1", "voice": "alloy", "input": "9" * 4096, "response_format": "pcm"},
        )
    assert response.status_code == 200
    assert len(tts.requests) == 4096 // MAX_WORD_CHARS + 1
    assert max(len(request.text) for request in tts.requests) <= MAX_WORD_CHARS


class _Refusing:
    """A stage whose replica refuses the request's content (a typed 4xx), as an engine does for input."""

    def __init__(self) -> None:
        self.synthesize = self

    def remote(self, *_: object) -> object:
        async def refuse() -> None:
            raise OrchestratorError(
                OrchestratorErrorCode.INVALID_REQUEST, "nothing to say", details={"field": "input"}
            )

        return asyncio.ensure_future(refuse())

    def options(self, **_: object) -> _Refusing:
        return self


async def test_an_input_error_passes_as_a_4xx_and_the_stage_stays_healthy() -> None:
    client = StageClient(_Refusing(), "tts", retry_after=1)  # type: ignore[arg-type]
    client.deployment = DeploymentView("HEALTHY", {"RUNNING": 1})
    with pytest.raises(OrchestratorError) as refused:
        await client.synthesize(SynthesisRequest(text="...", language="en"))
    assert refused.value.http_status == 400
    assert client.evidence.failing(60.0) is None  # /status does not turn degraded


@given(
    st.lists(st.sampled_from(["a", "b", "ˈ", " "]), max_size=1000), st.integers(min_value=2, max_value=300)
)
@settings(max_examples=200, deadline=None)
def test_no_piper_inference_gets_more_phonemes_than_the_bound(phonemes: list[str], most: int) -> None:
    parts = bounded_phonemes(phonemes, most)
    assert [phoneme for part in parts for phoneme in part] == phonemes  # nothing lost, nothing reordered
    assert all(0 < len(part) <= most for part in parts)
    # A cut falls just after a word gap when one is in the part's second half.
    for part in parts[:-1]:
        if " " in part[most // 2 : most]:
            assert part[-1] == " "


def test_ordinary_prose_stays_one_inference() -> None:
    clause = list("ðə kwˈɪk bɹˈaʊn fˈɑːks dʒˈʌmps ˌoʊvɚ ðə lˈeɪzi dˈɑːɡ")
    assert bounded_phonemes(clause, MAX_PHONEMES) == [clause]
