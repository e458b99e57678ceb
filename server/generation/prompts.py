"""What we send to the models: a warm, photographic, era-aware prompt, and validated model inputs.

The same memory always reads the same way: a photograph of the time (film stock and colour of the
era), soft natural light, real people and places, no text or logos. The person's own words (title,
body, place) stay as they wrote them, in Korean or English; the models read both.
"""

from __future__ import annotations

import re
from typing import Any

from server import ServerError

# black-forest-labs/flux-schnell `aspect_ratio` values (model default 1:1).
IMAGE_ASPECT_RATIOS = ("1:1", "16:9", "21:9", "3:2", "2:3", "4:5", "5:4", "3:4", "4:3", "9:16", "9:21")
IMAGE_DEFAULT_ASPECT_RATIO = "4:3"
# luma/ray `aspect_ratio` values (model default 16:9).
VIDEO_ASPECT_RATIOS = ("1:1", "3:4", "4:3", "9:16", "16:9", "9:21", "21:9")
VIDEO_DEFAULT_ASPECT_RATIO = "16:9"
MAX_PROMPT_CHARS = 2000

_STYLE = (
    "A warm, nostalgic photograph, soft natural light, gentle film grain, true-to-life people and "
    "places, kind expressions, no text, no captions, no logos."
)
_VIDEO_STYLE = "Gentle, slow, natural movement; the camera drifts softly; warm and calm."


class InvalidInput(ServerError, ValueError):
    """A request the model would refuse; the message names the field and the allowed values."""


def era_of(happened_on: str | None) -> tuple[int | None, str]:
    """The year in "1968" / "1968-07-14" and words for its decade ("the late 1960s")."""
    if not happened_on:
        return None, ""
    m = re.match(r"^\s*(\d{4})", happened_on)
    if not m:
        return None, ""
    year = int(m.group(1))
    decade = year - year % 10
    part = "early" if year % 10 <= 3 else "mid" if year % 10 <= 6 else "late"
    return year, f"the {part} {decade}s"


def film_look(year: int | None) -> str:
    """How a photograph of that year looks, so the picture belongs to its time."""
    if year is None:
        return "a family photograph"
    if year < 1950:
        return "an old black-and-white photograph with soft contrast"
    if year < 1965:
        return "a black-and-white film photograph"
    if year < 1985:
        return "a faded colour film snapshot with warm tones"
    if year < 2000:
        return "a 35mm colour film snapshot"
    return "a natural colour photograph"


def compose_prompt(
    *,
    title: str,
    body: str = "",
    happened_on: str | None = None,
    place: str | None = None,
    video: bool = False,
) -> str:
    """One prompt from a memory, in the house style; the body is cut to keep the prompt focused."""
    year, era = era_of(happened_on)
    scene = title.strip().rstrip(".")
    details = " ".join(body.split())
    if len(details) > 600:
        details = details[:600].rsplit(" ", 1)[0] + "…"
    parts = [f"{film_look(year).capitalize()} of: {scene}."]
    if place and place.strip():
        parts.append(f"Place: {place.strip()}.")
    if era:
        parts.append(f"Time: {era} ({year}), with the clothes, streets and objects of that time.")
    if details:
        parts.append(f"Remembered as: {details}")
    parts.append(_STYLE)
    if video:
        parts.append(_VIDEO_STYLE)
    return " ".join(parts)[:MAX_PROMPT_CHARS]


def check_aspect_ratio(kind: str, aspect_ratio: str | None) -> str:
    """The aspect ratio to send (the default when none is given); InvalidInput when not allowed."""
    allowed = IMAGE_ASPECT_RATIOS if kind == "image" else VIDEO_ASPECT_RATIOS
    if aspect_ratio is None:
        return IMAGE_DEFAULT_ASPECT_RATIO if kind == "image" else VIDEO_DEFAULT_ASPECT_RATIO
    if aspect_ratio not in allowed:
        raise InvalidInput(f"aspect_ratio for a {kind} must be one of {', '.join(allowed)}")
    return aspect_ratio


def image_input(prompt: str, aspect_ratio: str) -> dict[str, Any]:
    """flux-schnell input: one WebP, the full megapixel, the model's own fast path."""
    return {
        "prompt": prompt,
        "aspect_ratio": aspect_ratio,
        "num_outputs": 1,
        "output_format": "webp",
        "output_quality": 90,
        "megapixels": "1",
    }


def video_input(prompt: str, aspect_ratio: str, start_image_url: str) -> dict[str, Any]:
    """luma/ray input: the user's photo as the first frame."""
    return {"prompt": prompt, "aspect_ratio": aspect_ratio, "loop": False, "start_image_url": start_image_url}
