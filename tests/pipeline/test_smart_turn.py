"""Smart Turn v3.2, the real model from the pipecat-ai wheel, on real speech."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

from pipeline import EngineUnavailable
from pipeline.engines.base import EndOfTurnModel
from pipeline.engines.smart_turn import SmartTurn, bundled_model_path
from tests.pipeline.conftest import load_audio


@pytest.fixture(scope="module")
def smart_turn() -> Iterator[SmartTurn]:
    model = SmartTurn()
    yield model
    model.close()


@pytest.fixture(scope="module")
def jfk() -> np.ndarray:
    return load_audio("jfk.flac")


def test_the_model_loads_from_the_pipecat_wheel() -> None:
    """The ONNX file is found in the installed distribution without importing pipecat."""
    assert bundled_model_path().name == "smart-turn-v3.2-cpu.onnx"


def test_smart_turn_is_an_end_of_turn_model(smart_turn: SmartTurn) -> None:
    """The engine satisfies the protocol the core uses."""
    assert isinstance(smart_turn, EndOfTurnModel)


async def test_a_finished_sentence_scores_above_a_cut_one(smart_turn: SmartTurn, jfk: np.ndarray) -> None:
    """JFK's whole sentence reads finished; cut after "ask not what your" it does not."""
    whole = await smart_turn.probability(jfk)
    cut = await smart_turn.probability(jfk[: int(4.5 * 16000)])
    assert whole > 0.5 > cut


async def test_telephone_sentences_end_and_mid_sentence_does_not(smart_turn: SmartTurn) -> None:
    """On the 8 kHz telephone recording, the first sentence's end scores complete, its middle not."""
    osr = load_audio("osr_us_000_0034_8k.wav")
    assert await smart_turn.probability(osr[: 2 * 16000]) > 0.5
    assert await smart_turn.probability(osr[: int(3.3 * 16000)]) < 0.5


async def test_short_and_silent_input_is_handled(smart_turn: SmartTurn) -> None:
    """Less than 8 s is padded; silence gives a probability, not an error."""
    p = await smart_turn.probability(np.zeros(1600, dtype=np.int16))
    assert 0.0 <= p <= 1.0


def test_a_missing_model_file_fails_clearly(tmp_path: object) -> None:
    """A wrong model path is EngineUnavailable with the path in the message."""
    with pytest.raises(EngineUnavailable, match=r"nope\.onnx"):
        SmartTurn(f"{tmp_path}/nope.onnx")
