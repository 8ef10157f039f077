"""Read a completion: find the `def strategy(board)` the model proposes, in time linear in its length.

Every step is a scan of the text that never backtracks over it twice: the final channel is found
from its last header, code blocks by splitting on fences, the common indentation by comparing line
prefixes. No regular expression is built from the text, so nothing of a completion lands in the
`re` module's cache.
"""

from __future__ import annotations

import re

_DEFINES_STRATEGY = re.compile(r"^[ \t]*(?:async[ \t]+)?def[ \t]+strategy[ \t]*\(", re.M)
_CHANNEL_FINAL = re.compile(r"<\|channel\|>[ \t]*final\b")
_MESSAGE = "<|message|>"
_PLAIN_FINAL = "assistantfinal"
_END_OF_MESSAGE = re.compile(r"<\|(?:end|return|call)\|>")
_SPECIAL_TOKEN = re.compile(r"<\|[a-z_]+\|>")
_LANGUAGE_TAG = re.compile(r"[\w+.#-]*[ \t]*")
_CODE_LINE_STARTS = ("def ", "async def ", "class ", "import ", "from ", "@", "#", ")", "]", "}")


def _final_start(text: str) -> int | None:
    """Where the final answer starts: after the last `assistantfinal`, or after the `<|message|>`
    that follows the last `<|channel|>final` header with a message after it, whichever is later."""
    ends = []
    plain = text.rfind(_PLAIN_FINAL)
    if plain >= 0:
        ends.append(plain + len(_PLAIN_FINAL))
    last_message = text.rfind(_MESSAGE)
    if last_message >= 0:
        header = None
        for match in _CHANNEL_FINAL.finditer(text, 0, last_message):
            header = match
        if header is not None:
            ends.append(text.find(_MESSAGE, header.end()) + len(_MESSAGE))
    return max(ends) if ends else None


def _fenced_blocks(text: str) -> list[str]:
    """The contents of ``` blocks, the language tag dropped; an unterminated last block runs to the end."""
    pieces = text.split("```")
    blocks = []
    for piece in pieces[1::2]:
        first, newline, rest = piece.partition("\n")
        blocks.append(rest if newline and _LANGUAGE_TAG.fullmatch(first) else piece)
    return blocks


def _unfenced(text: str) -> str | None:
    """Code written without fences: from the imports above `def strategy` to the first line of prose."""
    lines = text.split("\n")
    start = next(
        (i for i, line in enumerate(lines) if line[:1].strip() and _DEFINES_STRATEGY.match(line)), None
    )
    if start is None:
        return None
    end = start + 1
    while start > 0 and lines[start - 1].startswith(("import ", "from ", "@")):
        start -= 1
    while end < len(lines) and (
        not lines[end].strip() or lines[end][0] in " \t" or lines[end].startswith(_CODE_LINE_STARTS)
    ):
        end += 1
    return "\n".join(lines[start:end])


def dedent(code: str) -> str:
    """`textwrap.dedent` without its regular expressions: remove the indentation all non-blank lines share.

    Lines of only spaces and tabs become empty, as in `textwrap.dedent`.
    """
    lines = code.split("\n")
    margin: str | None = None
    for line in lines:
        content = line.lstrip(" \t")
        if not content:
            continue
        indent = line[: len(line) - len(content)]
        if margin is None or indent.startswith(margin):
            margin = indent if margin is None else margin
            continue
        common = 0
        for a, b in zip(margin, indent, strict=False):
            if a != b:
                break
            common += 1
        margin = margin[:common]
    cut = len(margin or "")
    return "\n".join(line[cut:] if line.strip(" \t") else "" for line in lines)


def _tidy(code: str) -> str:
    code = _SPECIAL_TOKEN.sub("", code)
    return dedent(code).strip("\n").rstrip() + "\n"


def extract_function(text: object) -> str | None:
    """The source of the `def strategy(board)` a completion proposes, or None when there is none.

    gpt-oss writes an analysis and then a final answer; decoded without special tokens a completion
    reads `analysis...assistantfinal...`, with them `<|channel|>final<|message|>...`. The final answer's
    last ``` block that defines `strategy` wins, then the last such block anywhere, then unfenced code
    that starts at a `def strategy(` line. Fences without a language tag, CRLF line ends, prose around
    the code and a final fence that was never closed (a completion cut at its token limit) are fine.
    Time grows linearly with the text.

    Example:
        >>> extract_function("analysis...assistantfinal```python\\ndef strategy(board):\\n    return 'a'\\n```")
        "def strategy(board):\\n    return 'a'\\n"
    """
    if not isinstance(text, str):
        return None
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    regions = [text]
    start = _final_start(text)
    if start is not None:
        final = text[start:]
        end = _END_OF_MESSAGE.search(final)
        regions.insert(0, final[: end.start()] if end else final)
    for region in regions:
        blocks = [block for block in _fenced_blocks(region) if _DEFINES_STRATEGY.search(block)]
        if blocks:
            return _tidy(blocks[-1])
    for region in regions:
        code = _unfenced(region)
        if code is not None:
            return _tidy(code)
    return None
