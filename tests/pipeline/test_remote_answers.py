"""What the remote STT engine takes from a transcription server's answer.

Our tier adds how sure Whisper was of the ending and the other words it weighed for the last one;
vLLM and speaches answer with the text alone. A local server on 127.0.0.1 answers in OpenAI's
wire format with the bodies under test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pipeline.engines.remote import RemoteSTT
from tests.fakes.gemini import ThreadedASGI


class Answers:
    """A transcription server that answers each request with the next queued JSON body."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.server = ThreadedASGI(
            Starlette(routes=[Route("/v1/audio/transcriptions", self._answer, methods=["POST"])])
        )

    async def _answer(self, request: Request) -> JSONResponse:
        form = await request.form()
        assert form["model"] == "whisper-1" and form["response_format"] == "json"
        return JSONResponse(self.bodies.pop(0))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/v1"


@pytest.fixture
def answers() -> Iterator[Answers]:
    a = Answers()
    a.server.start()
    yield a
    a.server.stop()


SPEECH = (np.sin(np.arange(16000) / 16000 * 2 * np.pi * 220) * 8000).astype(np.int16)


@pytest.mark.parametrize(
    ("body", "end_prob", "alternatives"),
    [
        (  # our tier: kept as sent
            {
                "text": " I have to take mine.",
                "end_prob": 0.63,
                "end_alternatives": [["I have to take my", 0.36]],
            },
            0.63,
            (("I have to take my", 0.36),),
        ),
        (  # malformed entries dropped one by one, the rest kept
            {
                "text": "I have to take mine.",
                "end_prob": 0.63,
                "end_alternatives": [
                    ["I have to take my", 0.36],
                    ["no probability"],
                    ["a", True],
                    ["b", 2.0],
                    [3, 0.1],
                ],
            },
            0.63,
            (("I have to take my", 0.36),),
        ),
        (  # no usable ending probability: nothing about the ending is trusted
            {
                "text": "I have to take mine.",
                "end_prob": "high",
                "end_alternatives": [["I have to take my", 0.36]],
            },
            None,
            (),
        ),
        ({"text": "I have to take mine.", "end_prob": 0.7, "end_alternatives": "my"}, 0.7, ()),
        ({"text": "I have to take mine."}, None, ()),  # vLLM, speaches: the text alone
    ],
)
async def test_the_ending_is_read_from_the_answer_when_it_makes_sense(
    answers: Answers,
    body: dict[str, Any],
    end_prob: float | None,
    alternatives: tuple[tuple[str, float], ...],
) -> None:
    answers.bodies.append(body)
    stt = RemoteSTT(answers.url, model="whisper-1")
    try:
        transcript = await stt.transcribe(SPEECH, language="en")
    finally:
        await stt.aclose()
    assert transcript.text == "I have to take mine."
    assert transcript.end_prob == end_prob and transcript.end_alternatives == alternatives
