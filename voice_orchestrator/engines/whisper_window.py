"""Whisper on a mel window fitted to the clip: one encoder pass for language detection and decoding.

faster-whisper 1.2.1's `transcribe(language=None)` encodes the first 30 s window to detect the language,
throws that output away and encodes the same window again to decode, and pads every clip to 3000 frames.
CTranslate2's Whisper encoder also takes a shorter window (`[1, n_mels, N]`), so a question is encoded once on
N = its frames + a margin, rounded up to a bucket (few distinct shapes), and both the language and the text
come from that one output. Decoding follows transcribe (temperature 0, its suppressed tokens, no-speech and
log-prob thresholds, timestamps on and its seek past an unfinished last segment): without timestamp tokens a
short window made Whisper repeat short phrases ("No! No!"). This reaches below `transcribe` into
faster-whisper's internals (WhisperModel.encode/feature_extractor/hf_tokenizer, faster_whisper.vad), hence
the pinned version.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voice_orchestrator.protocol import FloatArray, SpeechSegment, SpeechTask, Transcription

# Whisper's full window: 30 s of 10 ms mel frames; the encoder never takes more.
FULL_WINDOW_FRAMES = 3000
FRAMES_PER_SECOND = 100
# Thresholds faster-whisper's transcribe uses by default: both must hold for "this was silence".
NO_SPEECH_THRESHOLD = 0.6
LOG_PROB_THRESHOLD = -1.0
# A bound on the text tokens a clip may yield: speech stays far below 30 tokens/s in either language (the
# evaluation set peaks near 12), so a decoder stuck in a loop stops soon instead of at Whisper's 448.
MAX_TOKENS_PER_SECOND = 30
MIN_NEW_TOKENS = 24
WHISPER_MAX_LENGTH = 448
MAX_INITIAL_TIMESTAMP_INDEX = 50  # transcribe's max_initial_timestamp=1.0 s in 0.02 s steps
# More windows than a 30 s clip can need (each one advances to the last timestamp it finished on).
MAX_WINDOWS = 8
SAMPLE_RATE = 16_000
TIMESTAMP_STEP_S = 0.02  # a timestamp token's resolution
REGION_SNAP_S = 0.3  # a segment starting this close to the end of a speech region starts in the next one


@dataclass(frozen=True)
class WindowOptions:
    margin_frames: int = 200
    bucket_frames: int = 500
    max_seconds: float = 30.0
    beam_size: int = 1
    vad_filter: bool = True
    # Language detection picks the most probable of these (None: of every language the model knows).
    expected_languages: tuple[str, ...] | None = None
    # Below this probability for the best language, the short window's guess is not trusted: the language is
    # detected on Whisper's 30 s window, and the text decoded from that pass (as transcribe would).
    language_threshold: float = 0.8


@dataclass
class StageTimes:
    """Milliseconds per stage of one fitted-window transcription (0 for a stage that did not run)."""

    vad_ms: float = 0.0
    features_ms: float = 0.0
    encode_ms: float = 0.0
    detect_ms: float = 0.0
    decode_ms: float = 0.0
    window_frames: int = 0  # the first window's
    windows: int = 0  # encoder passes
    language_probability: float | None = None  # of the language detected on the fitted window


class Timeline:
    """Maps times in the speech VAD kept (its regions joined) back to times in the upload."""

    def __init__(self, regions: list[dict[str, int]] | None = None) -> None:
        from faster_whisper.vad import SpeechTimestampsMap

        self._map = SpeechTimestampsMap(regions, SAMPLE_RATE) if regions else None

    def span(self, start: float, end: float) -> tuple[float, float]:
        """A segment's (start, end) in the upload. Whisper often starts a segment on the last timestamp of
        the one before, a little before the join of two regions: such a start moves to its own region's."""
        if self._map is None:
            return round(start, 2), round(end, 2)
        first = self._map.get_chunk_index(start)
        last = self._map.get_chunk_index(end, is_end=True)
        region_ends = [sample / SAMPLE_RATE for sample in self._map.chunk_end_sample]
        while first < last and region_ends[first] - start < REGION_SNAP_S:
            start = region_ends[first]
            first += 1
        return (
            float(self._map.get_original_time(start, chunk_index=first)),
            float(self._map.get_original_time(end, chunk_index=last)),
        )


@dataclass
class WindowResult:
    """A transcription, or None with the (VAD-trimmed) audio when the clip is too long for a fitted window."""

    transcription: Transcription | None
    audio: FloatArray
    times: StageTimes = field(default_factory=StageTimes)
    timeline: Timeline = field(default_factory=Timeline)  # from `audio`'s times to the upload's


def window_frames(content_frames: int, margin: int, bucket: int) -> int:
    """The encoder window for a clip: its frames + margin, rounded up to a bucket, even, at most 3000."""
    wanted = max(1, content_frames + margin)
    frames = min(FULL_WINDOW_FRAMES, math.ceil(wanted / bucket) * bucket)
    return frames + frames % 2  # the encoder's first convolution has stride 2


def pick_language(
    probabilities: list[tuple[str, float]], candidates: tuple[str, ...] | None
) -> tuple[str, float]:
    """The most probable language and its probability, among the candidates when given (renormalised over
    them); codes or "<|ja|>"-style tokens. Candidates the model does not know are ignored."""
    ranked = sorted(
        ((prob, code.removeprefix("<|").removesuffix("|>")) for code, prob in probabilities), reverse=True
    )
    if candidates:
        allowed = [(prob, code) for prob, code in ranked if code in set(candidates)]
        if allowed:
            return allowed[0][1], allowed[0][0] / max(sum(prob for prob, _ in allowed), 1e-9)
    return ranked[0][1], ranked[0][0]


def kept_tokens(tokens: list[int], timestamp_begin: int, window: int) -> tuple[list[int], int]:
    """transcribe's split of one window's tokens: all of them, or those before an unfinished last segment,
    with the frames they cover (a timestamp step is 2 frames)."""
    consecutive = [
        i for i in range(1, len(tokens)) if tokens[i] >= timestamp_begin and tokens[i - 1] >= timestamp_begin
    ]
    single_timestamp_ending = len(tokens) >= 2 and tokens[-2] < timestamp_begin <= tokens[-1]
    if consecutive and not single_timestamp_ending:
        last = consecutive[-1]
        advance = (tokens[last - 1] - timestamp_begin) * 2
        if advance > 0:
            return tokens[:last], advance
    return tokens, window


def timed_pieces(
    tokens: list[int], timestamp_begin: int, window: int
) -> list[tuple[float, float, list[int]]]:
    """transcribe's segments of one window's kept tokens: (start, end) in seconds from the window's start and
    the tokens, cut between two consecutive timestamp tokens. A piece without a closing timestamp ends with
    the window."""
    cuts = [
        i for i in range(1, len(tokens)) if tokens[i] >= timestamp_begin and tokens[i - 1] >= timestamp_begin
    ]
    pieces = []
    first = 0
    start = 0.0
    for last in [*cuts, len(tokens)]:
        piece = tokens[first:last]
        first = last
        if not piece:
            continue
        if piece[0] >= timestamp_begin:
            start = (piece[0] - timestamp_begin) * TIMESTAMP_STEP_S
        closing = [token for token in piece[1:] if token >= timestamp_begin]
        end = (closing[-1] - timestamp_begin) * TIMESTAMP_STEP_S if closing else window / FRAMES_PER_SECOND
        pieces.append((start, max(start, end), piece))
        start = end
    return pieces


def speech_regions(samples: FloatArray) -> tuple[FloatArray, Timeline]:
    """What transcribe's vad_filter keeps: the speech regions Silero VAD finds, joined (empty: silence), and
    the map from their times back to the upload's."""
    from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

    regions = get_speech_timestamps(samples, VadOptions())
    if not regions:
        return np.zeros(0, dtype=np.float32), Timeline()
    pieces, _ = collect_chunks(samples, regions)
    return np.concatenate(pieces).astype(np.float32, copy=False), Timeline(regions)


def silence_language(language: str | None, expected: tuple[str, ...] | None) -> str:
    """The language of an empty transcript: the one asked for, else the first expected, else English."""
    if language is not None:
        return language
    return expected[0] if expected else "en"


def speech_only(samples: FloatArray) -> FloatArray:
    return speech_regions(samples)[0]


class FittedWindowWhisper:
    """Transcribes clips up to `max_seconds` with one encoder pass on a fitted window (thread-safe)."""

    def __init__(self, model: Any, options: WindowOptions) -> None:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import get_suppressed_tokens

        self._model = model  # faster_whisper.WhisperModel
        self.options = options
        self._multilingual = bool(model.model.is_multilingual)
        # Language-independent: the non-speech and special tokens transcribe(suppress_tokens=[-1]) suppresses.
        english = Tokenizer(model.hf_tokenizer, self._multilingual, task="transcribe", language="en")
        self._suppress = list(get_suppressed_tokens(english, [-1]))
        self._tokenizers: dict[tuple[str, SpeechTask], Any] = {("en", "transcribe"): english}

    def _tokenizer(self, language: str, task: SpeechTask) -> Any:
        """The decoder's prompt tokens: language and task (an English-only model knows neither)."""
        from faster_whisper.tokenizer import Tokenizer

        tokenizer = self._tokenizers.get((language, task))
        if tokenizer is None:  # raises ValueError on an unknown language code, as transcribe does
            tokenizer = Tokenizer(self._model.hf_tokenizer, self._multilingual, task=task, language=language)
            self._tokenizers[(language, task)] = tokenizer
        return tokenizer

    def transcribe(
        self, samples: FloatArray, language: str | None, task: SpeechTask = "transcribe"
    ) -> WindowResult:
        times = StageTimes()
        started = time.perf_counter()
        audio, timeline = speech_regions(samples) if self.options.vad_filter else (samples, Timeline())
        times.vad_ms = (time.perf_counter() - started) * 1000 if self.options.vad_filter else 0.0
        if audio.size == 0:  # VAD heard nothing: no model call at all
            return WindowResult(
                Transcription(text="", language=silence_language(language, self.options.expected_languages)),
                audio,
                times,
                timeline,
            )
        if audio.size / SAMPLE_RATE > self.options.max_seconds:
            return WindowResult(None, audio, times, timeline)

        started = time.perf_counter()
        # transcribe drops the extra frame the STFT padding adds: the same here.
        features = self._model.feature_extractor(audio)[:, :-1]
        content_frames = min(features.shape[-1], FULL_WINDOW_FRAMES)
        times.features_ms = (time.perf_counter() - started) * 1000

        encoder_output, frames = self._encode(features[:, :content_frames], times)
        times.window_frames = frames
        if language is None:
            started = time.perf_counter()
            language, probability = self._detect(encoder_output)
            times.language_probability = probability
            times.detect_ms = (time.perf_counter() - started) * 1000
            if probability < self.options.language_threshold and frames < FULL_WINDOW_FRAMES:
                # Unsure on a short window: ask Whisper's own 30 s window, and decode from that pass.
                encoder_output, frames = self._encode(features[:, :content_frames], times, FULL_WINDOW_FRAMES)
                language, _ = self._detect(encoder_output)
                times.window_frames = frames
        tokenizer = self._tokenizer(language, task)

        # transcribe's seek loop: a window whose last segment is unfinished (it ends on two timestamps) is
        # decoded again from its last timestamp on. Each further window is fitted to what is left.
        text_tokens: list[int] = []
        segments: list[SpeechSegment] = []
        seek = 0
        for _ in range(MAX_WINDOWS):
            kept, advance = self._decode(encoder_output, tokenizer, content_frames - seek, times)
            text_tokens += kept
            offset = seek / FRAMES_PER_SECOND
            for start, end, piece in timed_pieces(kept, tokenizer.timestamp_begin, advance):
                said = str(tokenizer.decode(piece)).strip()  # decode leaves the timestamp tokens out
                if said:
                    begins, ends = timeline.span(offset + start, offset + end)
                    segments.append(SpeechSegment(start=begins, end=ends, text=said))
            seek += advance
            if seek >= content_frames:
                break
            encoder_output, _ = self._encode(features[:, seek:content_frames], times)
        text = str(tokenizer.decode(text_tokens)).strip()
        transcription = Transcription(text=text, language=language, segments=segments)
        return WindowResult(transcription, audio, times, timeline)

    def _encode(self, content: FloatArray, times: StageTimes, frames: int | None = None) -> tuple[Any, int]:
        """Encoder output for the content frames zero-padded (as transcribe pads) to a fitted window."""
        started = time.perf_counter()
        if frames is None:
            frames = window_frames(content.shape[-1], self.options.margin_frames, self.options.bucket_frames)
        window = np.zeros((content.shape[0], frames), dtype=np.float32)
        window[:, : content.shape[-1]] = content
        encoder_output = self._model.encode(window)
        times.encode_ms += (time.perf_counter() - started) * 1000
        times.windows += 1
        return encoder_output, frames

    def _detect(self, encoder_output: Any) -> tuple[str, float]:
        if not self._multilingual:
            return "en", 1.0
        probabilities = self._model.model.detect_language(encoder_output)[0]
        return pick_language(probabilities, self.options.expected_languages)

    def _decode(
        self, encoder_output: Any, tokenizer: Any, content_frames: int, times: StageTimes
    ) -> tuple[list[int], int]:
        """Greedy or beam decoding as transcribe does it: the tokens kept and the frames they cover."""
        started = time.perf_counter()
        prompt = list(tokenizer.sot_sequence)
        new_tokens = max(
            MIN_NEW_TOKENS, math.ceil(content_frames / FRAMES_PER_SECOND * MAX_TOKENS_PER_SECOND)
        )
        result = self._model.model.generate(
            encoder_output,
            [prompt],
            beam_size=self.options.beam_size,
            patience=1.0,
            length_penalty=1.0,
            max_length=min(WHISPER_MAX_LENGTH, len(prompt) + new_tokens),
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
            max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX,
        )[0]
        times.decode_ms += (time.perf_counter() - started) * 1000
        tokens: list[int] = result.sequences_ids[0]
        window = min(content_frames, FULL_WINDOW_FRAMES)
        # transcribe's average log-probability: the score is length-normalised (length_penalty 1).
        avg_logprob = result.scores[0] * len(tokens) / (len(tokens) + 1)
        if result.no_speech_prob > NO_SPEECH_THRESHOLD and avg_logprob < LOG_PROB_THRESHOLD:
            return [], window  # transcribe skips such a window as silence
        return kept_tokens(tokens, tokenizer.timestamp_begin, window)

    def probe(self) -> None:
        """One encoder pass on the smallest window and one decoder step: cheap proof the model runs."""
        tone = (0.1 * np.sin(2 * np.pi * 440.0 * np.arange(SAMPLE_RATE) / SAMPLE_RATE)).astype(np.float32)
        encoder_output, _ = self._encode(self._model.feature_extractor(tone)[:, :-1], StageTimes())
        prompt = list(self._tokenizer("en", "transcribe").sot_sequence)
        self._model.model.generate(encoder_output, [prompt], beam_size=1, max_length=len(prompt) + 1)
