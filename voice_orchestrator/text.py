"""Text helpers shared by the stages: script detection, cleaning text for speech, header encoding."""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote

# Hiragana, katakana (incl. half-width and phonetic extensions), the marks 々〆〇 and CJK ideographs: the
# unified blocks, extension A, the compatibility ideographs and extensions B-H in the supplementary planes
# (rare kanji such as 𠮟 or 𩸽 in names and place names).
_JAPANESE_CHARS = re.compile(
    r"[\u3005-\u3007\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    r"\U00020000-\U000323af]"
)

_MARKDOWN_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MARKDOWN_SYMBOLS = re.compile(r"(```|`|\*\*|__|\*|~~|^#{1,6}\s*|^\s*[-+>]\s+|^\s*\d+\.\s+)", re.MULTILINE)
_URL = re.compile(r"https?://\S+")
# What else small models write in markdown, which a voice would read out as symbols ("vertical line",
# "less than b r"): table rules and rows, horizontal rules, task boxes, HTML tags, footnote marks,
# _emphasis_ and backslash escapes.
_TABLE_RULE = re.compile(r"^\s*\|?\s*:?-{3,}:?\s*(?:\|\s*:?-{3,}:?\s*)*\|?\s*$", re.MULTILINE)
_HORIZONTAL_RULE = re.compile(r"^\s*([-*_])(?:\s*\1){2,}\s*$", re.MULTILINE)
_TASK_BOX = re.compile(r"^(\s*[-+*]\s+)\[[ xX]\]\s+", re.MULTILINE)
_HTML_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>\n]{0,200})?/?>")
_FOOTNOTE = re.compile(r"\[\^[^\]\s]{1,20}\]")
_UNDERSCORE_EMPHASIS = re.compile(r"(?<!\w)_(?=\S)([^_\n]+?)(?<=\S)_(?!\w)")
_BACKSLASH_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!|~<>])")
_WHITESPACE = re.compile(r"\s+")
_PUNCTUATION_RUN = re.compile(r"([^\w\s])\1+")  # "!!!!" -> "!", "……" -> "…", "....." -> "."


def is_japanese(text: str) -> bool:
    """True when the text is written (at least partly) in kana or kanji: a Japanese voice must read it."""
    return _JAPANESE_CHARS.search(text) is not None


def _is_emoji_or_symbol(char: str) -> bool:
    category = unicodedata.category(char)
    # So = other symbols (emoji, dingbats), Cs/Co = surrogates/private use, Mn variation selectors and ZWJ.
    return category in {"So", "Cs", "Co"} or char in {"\u200d", "\ufe0f", "\ufe0e"}


def _readable(char: str) -> str:
    """Control and format characters (NUL, zero-width, bidi marks) are nothing a voice can read; white space
    stays (line breaks still end markdown lines and sentences)."""
    if unicodedata.category(char) in {"Cc", "Cf"} and not char.isspace():
        return ""
    return char


def _table_row(line: str) -> str:
    """A markdown table row read as its cells, a pause between each ("| a | b |" -> "a, b")."""
    if line.count("|") < 2:
        return line.replace("|", " ")
    cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
    return ("、" if is_japanese(line) else ", ").join(cell for cell in cells if cell)


def _markdown_removed(text: str) -> str:
    text = _BACKSLASH_ESCAPE.sub(r"\1", text)
    text = _MARKDOWN_LINK.sub(r"\1", text)
    text = _URL.sub("", text)
    text = _HTML_TAG.sub(" ", text)
    text = _FOOTNOTE.sub("", text)
    text = _HORIZONTAL_RULE.sub("", _TABLE_RULE.sub("", text))
    text = _TASK_BOX.sub(r"\1", text)
    text = "\n".join(_table_row(line) for line in text.split("\n"))
    text = _UNDERSCORE_EMPHASIS.sub(r"\1", text)
    return _MARKDOWN_SYMBOLS.sub("", text)


def clean_for_speech(text: str) -> str:
    """Text made speakable, for every voice: markdown syntax, URLs, emoji, control and format characters
    removed; a run of one punctuation mark reduced to one; white space collapsed. Nothing speakable left (no
    letter, kana, kanji or digit) is the empty string. Over-long words and digit runs are bounded by the
    sentence splitter; digits stay as written (read as 4-digit numbers, 120 digits took 67 s of speech and
    1.5 GB in Piper; as written, 6 s and 0.3 GB)."""
    text = _markdown_removed("".join(_readable(char) for char in text))
    text = "".join(char for char in text if not _is_emoji_or_symbol(char))
    text = _PUNCTUATION_RUN.sub(r"\1", text)
    text = _WHITESPACE.sub(" ", text).strip()
    return text if any(char.isalnum() for char in text) else ""


def header_text(text: str) -> str:
    """UTF-8 percent-encoding for header values: headers are Latin-1, raw Japanese would break them."""
    return quote(text, safe="")


# The language codes Whisper recognises (faster_whisper.tokenizer._LANGUAGE_CODES); a request may force one.
WHISPER_LANGUAGES: frozenset[str] = frozenset(
    (
        "af",
        "am",
        "ar",
        "as",
        "az",
        "ba",
        "be",
        "bg",
        "bn",
        "bo",
        "br",
        "bs",
        "ca",
        "cs",
        "cy",
        "da",
        "de",
        "el",
        "en",
        "es",
        "et",
        "eu",
        "fa",
        "fi",
        "fo",
        "fr",
        "gl",
        "gu",
        "ha",
        "haw",
        "he",
        "hi",
        "hr",
        "ht",
        "hu",
        "hy",
        "id",
        "is",
        "it",
        "ja",
        "jw",
        "ka",
        "kk",
        "km",
        "kn",
        "ko",
        "la",
        "lb",
        "ln",
        "lo",
        "lt",
        "lv",
        "mg",
        "mi",
        "mk",
        "ml",
        "mn",
        "mr",
        "ms",
        "mt",
        "my",
        "ne",
        "nl",
        "nn",
        "no",
        "oc",
        "pa",
        "pl",
        "ps",
        "pt",
        "ro",
        "ru",
        "sa",
        "sd",
        "si",
        "sk",
        "sl",
        "sn",
        "so",
        "sq",
        "sr",
        "su",
        "sv",
        "sw",
        "ta",
        "te",
        "tg",
        "th",
        "tk",
        "tl",
        "tr",
        "tt",
        "uk",
        "ur",
        "uz",
        "vi",
        "yi",
        "yo",
        "zh",
        "yue",
    )
)
