"""The conversation core and its engines.

Audio in -> VAD and endpointing -> streaming STT -> LLM -> sentences -> TTS -> audio out, with
barge-in. The core is sans-I/O; engines sit behind the small protocols in `pipeline.engines.base`.

Every exception the package raises on purpose is one of these::

    PipelineError                  root: `except PipelineError` catches them all
    ├── EngineUnavailable          an engine's model or package is missing (raised at start)
    ├── EngineError                an engine failed while working
    │   ├── RetryableEngineError   worth retrying / apologising and carrying on (429, 5xx, timeout)
    │   └── FatalEngineError       a bad request or configuration; retrying will not help
    └── AssembleError              (pipeline.engines.assemble) the Whisper model's packages are
                                   missing or do not add up to the published model

Mistakes of the client (an empty commit, an unknown item) are not exceptions: the conversation
answers them with `pipeline.events.ErrorEvent` and the call goes on.
"""


class PipelineError(Exception):
    """Root of the pipeline's failures."""


class EngineUnavailable(PipelineError):
    """An engine cannot start: its model files or its package are missing. The message says what to do."""


class EngineError(PipelineError):
    """An engine failed while working."""


class RetryableEngineError(EngineError):
    """A transient failure (rate limit, server error, timeout, safety stop)."""


class FatalEngineError(EngineError):
    """A failure that retrying will not fix."""
