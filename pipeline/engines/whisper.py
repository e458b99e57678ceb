"""Speech to text with faster-whisper (CTranslate2 Whisper), one utterance per call.

The model directory is assembled by `make models` (see `pipeline.engines.assemble`). Decoding is
tuned for conversation, not for archives: greedy, temperature 0 (the fallback ladder took 10-29 s
on hard clips here), no conditioning on earlier text, no timestamps, the session's language passed
in, no VAD (ours gates the audio). Utterances are encoded in a mel window fitted to their length
(at least `min_window_s`, 8 s by default) rather than Whisper's fixed 30 s: the encoder is most of
the cost, and this cut a decode from about 1.1-1.5 s to about 0.45 s on the development CPU (10 s
windows; 8 s took a fifth off that again). Decodes still cost the same for any clip under the
minimum, so `pipeline.stt_stream` decides when one is worth running.

On CPU, CTranslate2 runs the encoder's two convolutions through oneDNN, which compiles kernels for
each input shape, i.e. for each window length, and by default keeps up to 1024 of them with their
buffers: with fitted windows every new utterance length over 9.5 s added about 1 MB that was never
given back (part of the soak benchmark's growth). `kernel_cache` bounds that cache; a miss costs
about 3 ms of compiling in a decode of 300 ms or more.

Whisper invents text on silence ("시청해주셔서 감사합니다", "Thank you.", loops of one word);
`is_hallucination` drops those when the model itself or the signal says nothing was said, and
`collapse_loops` keeps once a phrase it repeats over and over after real speech.

A turn's final decode also says how sure Whisper was of how the text ends (`end_prob`, from the
decoder's own step probabilities) and which other words it weighed for the last one
(`end_alternatives`): the end-of-turn decision doubts words that read finished when Whisper was
guessing at the last one, or nearly heard a reading that is unfinished (`pipeline.turn_end`).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline import EngineUnavailable, FatalEngineError, RetryableEngineError
from pipeline.audio import rms_dbfs, to_float
from pipeline.engines.base import DECODE_KIND, PCM, Transcript

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000

# Phrases Whisper produces from silence and noise: subtitle credits and sign-offs learned from
# video captions. Compared after `_normalise` (lower case, no punctuation or spaces).
KNOWN_HALLUCINATIONS = frozenset(
    {
        "시청해주셔서감사합니다",
        "시청해주셔서고맙습니다",
        "구독과좋아요부탁드립니다",
        "구독과좋아요",
        "구독과좋아요알림설정부탁드립니다",
        "감사합니다",
        "고맙습니다",
        "mbc뉴스이덕영입니다",
        "이영상은",
        "thankyou",
        "thanks",
        "thanksforwatching",
        "thankyouforwatching",
        "pleasesubscribe",
        "you",
        "bye",
        "subtitlesbytheamaraorgcommunity",
    }
)
#: Below this level (dBFS) the clip is taken as near-silence: microphone hiss, a breath.
SILENCE_DBFS = -50.0
#: Whisper's own "nothing was said" estimate above which a known phrase is dropped.
NO_SPEECH_PROB = 0.5
#: gzip compression ratio above which text is a repetition loop (Whisper's own threshold is 2.4).
LOOP_COMPRESSION_RATIO = 2.4
#: Mel frames are 10 ms. Utterances up to 28 s are encoded in a window fitted to them (at least
#: `MIN_WINDOW_S`, the `stt_min_window_s` setting); longer ones go through faster-whisper's 30 s
#: windows. Measured on 73 English recordings and 292 growing prefixes of them (README,
#: Performance): 10, 9, 8 and 7 s gave the same word errors (3.2-4.1%), 6 s looped on two; 7 s
#: once stopped after "The doctor told me that I...", dropping the rest.
FULL_WINDOW_FRAMES = 3000
MIN_WINDOW_S = 8.0
WINDOW_MARGIN_FRAMES = 50
MAX_FITTED_WINDOW_S = 28.0
#: `end_prob` is measured for utterances up to this long: CTranslate2 keeps every step's logits
#: over the vocabulary (200 kB a token: ~8 MB for a 10 s turn, 40 MB for 200 tokens), and the end
#: of turn matters for a turn, not for a monologue.
END_PROB_MAX_S = 15.0
#: Other readings of the last word kept in `Transcript.end_alternatives`: at most this many, each
#: given at least this probability by the decoder.
END_ALTERNATIVES = 3
END_ALTERNATIVE_MIN_P = 0.05
#: oneDNN kernels kept compiled: 8 per window length (the convolutions and their layout changes),
#: so the usual minimum window and one other stay warm.
KERNEL_CACHE = 16


def _normalise(text: str) -> str:
    return re.sub(r"[\W_]+", "", text.lower())


def is_hallucination(
    text: str, *, no_speech_prob: float, compression_ratio: float, level_dbfs: float
) -> bool:
    """True when `text` is Whisper talking over silence rather than a transcript of speech.

    Anything at all is dropped from near-silent audio (there is nothing to hear, so the text was
    invented: a fitted window showed "이 영상은 이 영상에서 ..." on digital silence). A known
    credit/sign-off phrase or a repetition loop is dropped when the model thinks no speech was
    present. A real "Thank you." said clearly (loud, low no-speech probability) is kept.
    """
    if level_dbfs < SILENCE_DBFS:
        return True
    quiet = no_speech_prob > NO_SPEECH_PROB
    if quiet and _normalise(text) in KNOWN_HALLUCINATIONS:
        return True
    return quiet and compression_ratio > LOOP_COMPRESSION_RATIO


def collapse_loops(text: str) -> str:
    """`text` with each run of a phrase repeated over and over kept once.

    Over real speech Whisper sometimes falls into a loop after the words ("When I was young we
    lived in a. Small house near the sea. Small house near the sea. Small house ...", until the
    token limit cut it): the speech is there, so the text is kept, but the loop is not what was
    said. A phrase of three or more words repeated three or more times in a row, or a shorter one
    five or more times, is kept once, and a cut-off repetition after it at the very end is
    dropped. Ordinary repetition ("No, no, no.", "very very good") is left alone.
    """
    words = text.split()
    norm = [_normalise(w) for w in words]
    out: list[str] = []
    i = 0
    while i < len(words):
        best: tuple[int, int] | None = None  # (times, unit length)
        for k in range(1, (len(words) - i) // 3 + 1):
            unit = norm[i : i + k]
            if not any(unit):
                continue
            times = 1
            while norm[i + times * k : i + (times + 1) * k] == unit:
                times += 1
            if times >= (3 if k >= 3 else 5) and (best is None or times * k > best[0] * best[1]):
                best = (times, k)
        if best is None:
            out.append(words[i])
            i += 1
            continue
        times, k = best
        out.extend(words[i : i + k])
        rest = norm[i + times * k :]
        i += times * k
        if rest and rest == norm[i - k : i - k + len(rest)]:
            break  # the loop's last repetition, cut off by the token limit
    return " ".join(out)


def resolve_device(device: str) -> tuple[str, str]:
    """Map the `stt_device` setting to (device, compute_type): auto -> CUDA float16 when a GPU is seen."""
    if device == "auto":
        import ctranslate2

        device = "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    return device, ("float16" if device == "cuda" else "int8")


class WhisperSTT:
    """A `SpeechToText` over one loaded model. Decodes run one at a time on a private thread."""

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        model_dir: Path,
        *,
        device: str = "auto",
        cpu_threads: int = 2,
        kernel_cache: int = KERNEL_CACHE,
        min_window_s: float = MIN_WINDOW_S,
    ) -> None:
        """Load the model (blocking, ~0.6 s on CPU). Raises EngineUnavailable when it is missing.

        `kernel_cache` bounds oneDNN's cache of compiled kernels. oneDNN reads it once per process,
        when it compiles its first kernel, so the first engine loaded in a process decides it.
        """
        model_dir = Path(model_dir)
        if not (model_dir / "model.bin").is_file():
            raise EngineUnavailable(
                f"Whisper model not found in {model_dir.resolve()}: run `make models` "
                f"(python -m pipeline.engines.assemble --out {model_dir})"
            )
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise EngineUnavailable("faster-whisper is not installed: pip install -e .") from e
        self.model_dir = model_dir
        self.min_window_s = min_window_s
        # oneDNN (inside CTranslate2) has no API for this but its environment variable, read lazily.
        os.environ["ONEDNN_PRIMITIVE_CACHE_CAPACITY"] = str(kernel_cache)
        self.device, self.compute_type = resolve_device(device)
        try:
            self._model = WhisperModel(
                str(model_dir), device=self.device, compute_type=self.compute_type, cpu_threads=cpu_threads
            )
            if self.device == "cuda":
                # CUDA libraries load lazily: a CUDA 12 wheel on a CUDA 13 host fails only at the
                # first decode ("libcublas.so.12 is not found"), so prove the device now.
                self._decode(np.zeros(SAMPLE_RATE // 2, dtype=np.int16), "en", None)
        except (RuntimeError, ValueError, OSError) as e:
            if device != "auto" or self.device == "cpu":
                raise EngineUnavailable(f"cannot load Whisper from {model_dir} on {self.device}: {e}") from e
            log.warning("Whisper on CUDA failed (%s); falling back to CPU int8", e)
            self.device, self.compute_type = "cpu", "int8"
            self._model = WhisperModel(
                str(model_dir), device="cpu", compute_type="int8", cpu_threads=cpu_threads
            )
        # One worker: CTranslate2 already uses every CPU thread it was given, and two decodes at
        # once would each take twice as long.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="whisper")

    async def transcribe(self, audio: PCM, *, language: str, prompt: str | None = None) -> Transcript:
        """Decode one utterance (mono int16 at 16 kHz) off the event loop.

        Returns an empty transcript for silence and known hallucinations. Raises
        RetryableEngineError when the decoder fails (out of memory, a CUDA error) and
        FatalEngineError for input it cannot take.
        """
        loop = asyncio.get_running_loop()
        ending = DECODE_KIND.get() != "partial"  # a partial's ending decides nothing
        try:
            return await loop.run_in_executor(self._executor, self._decode, audio, language, prompt, ending)
        except ValueError as e:
            raise FatalEngineError(f"Whisper refused the input: {e}") from e
        except (RuntimeError, MemoryError) as e:
            raise RetryableEngineError(f"Whisper decode failed: {e}") from e

    @property
    def model(self) -> Any:
        """The loaded faster-whisper `WhisperModel`, for `decode_batch` (the inference tier batches)."""
        return self._model

    def warm_up(self) -> None:
        """Decode a second of quiet noise once (blocking): the first decode of a window length
        compiles its kernels (~110 ms more here), which should not be the first caller's wait."""
        noise = np.random.default_rng(0).normal(0, 30, SAMPLE_RATE).astype(np.int16)
        self._executor.submit(self._decode, noise, "en", None).result()

    def close(self) -> None:
        """Stop the decode thread (waits for a decode in progress)."""
        self._executor.shutdown(wait=True)

    def _decode(self, audio: PCM, language: str, prompt: str | None, ending: bool = True) -> Transcript:
        request = DecodeRequest(audio, language, prompt, ending)
        return decode_batch(self._model, [request], min_window_s=self.min_window_s)[0]


@dataclass(frozen=True, slots=True)
class DecodeRequest:
    """One utterance to decode: mono int16 at 16 kHz, its language, an optional prompt."""

    audio: PCM
    language: str
    prompt: str | None = None
    #: Measure `Transcript.end_prob` (a final decode a caller's turn waits for; not a partial).
    ending: bool = True

    @property
    def duration_s(self) -> float:
        return len(self.audio) / SAMPLE_RATE


def max_new_tokens(n_samples: int) -> int:
    """Tokens a clip of `n_samples` may produce.

    A bound on output length bounds decode time when Whisper loops on noise ("영상에서 영상에서
    ..." ran for 200+ tokens): speech is under ~10 tokens per second.
    """
    return min(220, 16 + int(n_samples / SAMPLE_RATE * 12))


def fitted_frames(n_frames: int, min_window_s: float = MIN_WINDOW_S) -> int:
    """The mel window (10 ms frames) for `n_frames` of speech: a margin added, at least
    `min_window_s`, at most 30 s."""
    return min(FULL_WINDOW_FRAMES, max(round(min_window_s * 100), n_frames + WINDOW_MARGIN_FRAMES))


def decode_batch(
    model: Any, requests: Sequence[DecodeRequest], *, min_window_s: float = MIN_WINDOW_S
) -> list[Transcript]:
    """Decode utterances together (blocking): one encoder pass and one `generate` for the batch.

    `model` is a faster-whisper `WhisperModel`. Utterances up to `MAX_FITTED_WINDOW_S` share a
    window fitted to the longest of them (see `_decode_fitted`); CTranslate2 decodes the batch
    in lock-step, so on a GPU eight utterances cost about what one does. Longer utterances go
    through faster-whisper's 30 s windows, one at a time. Each result is filtered for
    hallucinations on its own audio. Returns one transcript per request, in order.
    """
    results: list[Transcript | None] = [None] * len(requests)
    fitted: list[int] = []
    for i, req in enumerate(requests):
        if len(req.audio) < SAMPLE_RATE // 10:
            results[i] = Transcript(text="", language=req.language)
        elif req.duration_s <= MAX_FITTED_WINDOW_S:
            fitted.append(i)
        else:
            results[i] = _finish(req, *_decode_windows(model, req))
    # Prompts of different lengths cannot share one lock-step decode: group by prompt.
    groups: dict[tuple[str, str | None], list[int]] = {}
    for i in fitted:
        groups.setdefault((requests[i].language, requests[i].prompt), []).append(i)
    for (language, prompt), members in groups.items():
        clips = [requests[i].audio for i in members]
        ending = (
            any(requests[i].ending for i in members) and max(map(len, clips)) <= END_PROB_MAX_S * SAMPLE_RATE
        )
        decoded = _decode_fitted(model, clips, language, prompt, ending=ending, min_window_s=min_window_s)
        for i, (text, no_speech, avg_logprob, end) in zip(members, decoded, strict=True):
            results[i] = _finish(requests[i], text, no_speech, avg_logprob, end)
    return [r for r in results if r is not None]


@dataclass(frozen=True, slots=True)
class Ending:
    """How sure the decoder was of the text's ending (`end_prob`) and what else it weighed for
    the last word (`end_alternatives`): see `read_ending`."""

    p: float
    alternatives: tuple[tuple[str, float], ...] = ()


def _finish(
    req: DecodeRequest, text: str, no_speech: float, avg_logprob: float, ending: Ending | None = None
) -> Transcript:
    """The transcript of one decode, with Whisper talking over silence dropped."""
    if not text:
        return Transcript(text="", language=req.language)
    from faster_whisper.transcribe import get_compression_ratio

    ratio = get_compression_ratio(text)
    level = rms_dbfs(req.audio)
    if is_hallucination(text, no_speech_prob=no_speech, compression_ratio=ratio, level_dbfs=level):
        log.info("dropped a likely hallucination %r (no_speech %.2f, %.0f dBFS)", text, no_speech, level)
        text = ""
    elif ratio > LOOP_COMPRESSION_RATIO:
        collapsed = collapse_loops(text)
        if collapsed != text:
            log.info("collapsed a repetition loop %r -> %r", text, collapsed)
            text, ending = collapsed, None  # the ending Whisper wrote was the loop's, not the speech's
    if not text:
        ending = None
    return Transcript(
        text=text,
        language=req.language,
        avg_logprob=avg_logprob,
        no_speech_prob=no_speech,
        end_prob=ending.p if ending else None,
        end_alternatives=ending.alternatives if ending else (),
    )


def _decode_fitted(
    model: Any,
    clips: Sequence[PCM],
    language: str,
    prompt: str | None,
    *,
    ending: bool = True,
    min_window_s: float = MIN_WINDOW_S,
) -> list[tuple[str, float, float, Ending | None]]:
    """Encode a mel window fitted to the utterances instead of Whisper's fixed 30 s.

    The encoder is ~80% of a decode and its cost grows with the window, not the speech: a
    30 s window cost 0.7-1.1 s here for any clip, a fitted one 0.16-0.22 s. A window cut
    tight to the clip made Whisper repeat itself in the bench's tests, so it never goes
    below `min_window_s` (see `MIN_WINDOW_S`), which kept the word errors where they were. A batch
    shares the window of its longest clip. Returns (text, no-speech probability, average
    log-probability, its ending: see `read_ending`) per clip.
    """
    from faster_whisper.audio import pad_or_trim
    from faster_whisper.tokenizer import Tokenizer
    from faster_whisper.transcribe import get_suppressed_tokens

    multilingual = model.model.is_multilingual
    tokenizer = Tokenizer(model.hf_tokenizer, multilingual, task="transcribe", language=language)
    features = [model.feature_extractor(to_float(clip)) for clip in clips]
    frames = fitted_frames(max(f.shape[-1] for f in features), min_window_s)
    encoder_output = model.encode(np.stack([pad_or_trim(f, frames) for f in features]))
    previous = tokenizer.encode(" " + prompt.strip()) if prompt else []
    tokens = model.get_prompt(tokenizer, previous, without_timestamps=True)
    limits = [max_new_tokens(len(clip)) for clip in clips]
    results = model.model.generate(
        encoder_output,
        [tokens] * len(clips),
        beam_size=1,
        max_length=len(tokens) + max(limits),
        return_scores=True,
        return_no_speech_prob=True,
        return_logits_vocab=ending,  # for `read_ending`: no extra compute, 200 kB a token
        suppress_blank=True,
        suppress_tokens=get_suppressed_tokens(tokenizer, [-1]),
    )
    out = []
    for result, limit in zip(results, limits, strict=True):
        steps = [(i, t) for i, t in enumerate(result.sequences_ids[0]) if t < tokenizer.eot][:limit]
        ids = [t for _, t in steps]
        text = tokenizer.decode(ids).strip()
        avg_logprob = result.scores[0] * len(ids) / (len(ids) + 1) if result.scores else 0.0
        logits = result.logits[0] if result.logits else []
        out.append(
            (text, float(result.no_speech_prob), float(avg_logprob), read_ending(tokenizer, steps, logits))
        )
    return out


def read_ending(tokenizer: Any, steps: Sequence[tuple[int, int]], logits: Sequence[Any]) -> Ending | None:
    """How the decoder's text ends, from its own step probabilities.

    `p`: the least of the probabilities it gave the tokens of the last word and of each closing
    mark after it. Where a speaker stopped mid-sentence Whisper often hears the function word as
    another word ("remind me to" -> "too?", "we used to" -> "We use 2.") or doubts the mark it
    closes the fragment with: measured on Piper speech, 0.24-0.53 on most such fragments, whole
    sentences mostly 0.75-0.92 (README, Performance). The end of text itself is left out: after a
    whole sentence with no closing mark (JFK's "... for your country") Whisper doubts it too.

    `alternatives`: the other words it weighed where the last word begins (at most
    `END_ALTERNATIVES`, each at `END_ALTERNATIVE_MIN_P` or more), as the text would read ending on
    them. It can be fairly sure of a wrong word and still have weighed the right one: "Yesterday
    I went to the" heard as "... went to them." (p 0.64) with " this" at 0.22; "I cannot find my"
    as "... find mine." (0.70) with " my" at 0.29. A token that only begins the word it wrote
    (" after" for "afternoon") is the same word spelled in pieces, not another.

    `steps`: (decoder step, token id) of the text's tokens; `logits`: each step's logits over the
    vocabulary (CTranslate2's `return_logits_vocab`). A word starts at a token that starts with a
    space (Whisper's tokens carry the space before a word); a closing mark is a token with no
    letters or digits. None when there are no logits or no words.
    """
    if not steps or steps[-1][0] >= len(logits):
        return None
    k = len(steps) - 1
    while k >= 0 and not _normalise(tokenizer.decode([steps[k][1]])):
        k -= 1  # closing marks
    if k < 0:
        return None
    start = k
    while start > 0 and not tokenizer.decode([steps[start][1]]).startswith(" "):
        start -= 1
    p = min(_softmax(logits[step])[token] for step, token in steps[start:])
    first = _softmax(logits[steps[start][0]])
    head = [t for _, t in steps[:start]]
    written = _normalise(tokenizer.decode([t for _, t in steps[start : k + 1]]))
    alternatives: list[tuple[str, float]] = []
    for token in np.argsort(-first)[: END_ALTERNATIVES + 1].tolist():
        word = tokenizer.decode([token]) if token < tokenizer.eot else ""
        if (
            token == steps[start][1]
            or first[token] < END_ALTERNATIVE_MIN_P
            or not word.startswith(" ")
            or not _normalise(word)
            or written.startswith(_normalise(word))
        ):
            continue
        alternatives.append((tokenizer.decode([*head, token]).strip(), round(float(first[token]), 4)))
    return Ending(float(p), tuple(alternatives[:END_ALTERNATIVES]))


def _softmax(logits: Any) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def _decode_windows(model: Any, req: DecodeRequest) -> tuple[str, float, float]:
    """Long audio: faster-whisper's own loop over 30 s windows."""
    segments, _info = model.transcribe(
        to_float(req.audio),
        language=req.language,
        task="transcribe",
        beam_size=1,
        temperature=0.0,
        condition_on_previous_text=False,
        without_timestamps=True,
        vad_filter=False,
        initial_prompt=req.prompt,
        max_new_tokens=max_new_tokens(len(req.audio)),
    )
    segments = list(segments)
    if not segments:
        return "", 1.0, 0.0
    text = " ".join(s.text.strip() for s in segments).strip()
    no_speech = max(s.no_speech_prob for s in segments)
    avg_logprob = sum(s.avg_logprob for s in segments) / len(segments)
    return text, no_speech, avg_logprob


def load(settings: Any) -> WhisperSTT:
    """Factory for the registry: a WhisperSTT from the `stt_model_dir`, `stt_device`,
    `stt_cpu_threads`, `stt_kernel_cache` and `stt_min_window_s` settings."""
    return WhisperSTT(
        settings.stt_model_dir,
        device=settings.stt_device,
        cpu_threads=settings.stt_cpu_threads,
        kernel_cache=settings.stt_kernel_cache,
        min_window_s=settings.stt_min_window_s,
    )
