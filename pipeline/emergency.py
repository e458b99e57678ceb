"""Words of emergency or distress in a caller's final transcript, and the calm reply to them.

Pure: `detect(text)` looks for a small set of emergencies (chest pain, a fall, not breathing, not
getting up, a plea for help, an ambulance), in Korean and English, whatever the language model
would have said. It is deliberately narrow: a false alarm wakes a family member, so idioms ("가슴
아픈 이야기", "I fell in love"), negations ("가슴은 안 아파요", "no chest pain") and stories from
long ago ("작년에 넘어졌어요", "I fell years ago") do not count.

Normalisation: Unicode NFKC, lower case, curly quotes straightened; Korean is matched with the
spaces removed (spacing in speech-to-text Korean is unreliable), English on single-spaced words.

`reply(language, number)` is what the companion says then: call the emergency number now, the
family is being told, I am here.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from pipeline.prompts import lang_key

#: Kinds of emergency, in the order they are checked.
KINDS = ("chest_pain", "breathing", "fall", "cannot_get_up", "stroke", "help")

# Korean, over the text with spaces removed. Adverbs that may sit between subject and verb:
_KO_ADV = r"(?:너무|많이|좀|갑자기|자꾸|계속|막|엄청|되게|심하게|지금)*"
_KO: dict[str, tuple[str, ...]] = {
    "chest_pain": (
        # "가슴이 아파요", "가슴이 너무 아파", "가슴 통증": but not "가슴 아픈 이야기" (a sad story).
        rf"가슴(?:이|쪽이|이랑)?{_KO_ADV}(?:아파|아픕|아프다|아프네|아프고|조여|조이|쥐어짜)",
        r"가슴통증",
        rf"심장(?:이)?{_KO_ADV}(?:아파|아프다|아픕|멎|이상해)",
    ),
    "breathing": (
        rf"숨(?:이|을|도)?{_KO_ADV}(?:차요|차서|차네|차다|차올라|막혀|막힌다|막히|가빠)",
        r"숨(?:을|이)?(?:못|잘못|안)쉬",
        r"숨쉬기(?:가|도)?(?:힘들|어렵|곤란)",
        r"숨(?:을|이)?쉴수(?:가|도)?없",
    ),
    "fall": (r"(?:넘어졌|넘어져서|쓰러졌|쓰러져서|자빠졌|미끄러져넘어)",),
    "cannot_get_up": (r"(?:못일어나|일어날수(?:가|도)?없|일어나지를?못|못일어서|움직일수(?:가)?없)",),
    "stroke": (r"(?:말이안나와|한쪽(?:이|팔이|다리가)?마비|팔다리(?:가)?마비|마비(?:가)?왔)",),
    "help": (r"살려(?:줘|주세요|주십|달라)", r"구급차(?:좀)?(?:불러|부탁)", r"119(?:에)?(?:불러|전화해)"),
}
# Korean negates after the verb ("넘어졌는데 괜찮아요", "아픈 건 아니에요"); a story is set earlier.
_KO_NOT_AFTER = re.compile(r"(?:않|아니|없었|괜찮)")
_KO_CONTEXT = re.compile(
    r"(?:작년|재작년|옛날|예전에|어렸을|젊었을|몇년전|년전에|지난달|지난해|꿈에|꿈속|드라마|영화|소설|뻔)"
)

# English, over lower-cased single-spaced words.
_EN: dict[str, tuple[str, ...]] = {
    "chest_pain": (
        r"\bchest (?:pain|pains|hurts|is hurting|feels tight|is tight)\b",
        r"\bpains? in my chest\b",
        r"\bmy chest (?:really |so |very )?(?:hurts|aches|is hurting|feels tight)\b",
        r"\bheart attack\b",
    ),
    "breathing": (
        r"\b(?:can't|cannot|can not|i can't) (?:breathe|catch my breath|get my breath)\b",
        r"\b(?:hard|difficult|struggling) to breathe\b",
        r"\bshort of breath\b",
        r"\bout of breath and\b",
    ),
    "fall": (
        r"\bi(?:'ve| have)? (?:just |had a )?(?:fallen|fell|had a fall)\b"
        r"(?! asleep| in love| for| behind| apart| silent| short| ill| off the wagon| out with)",
        r"\bi(?:'ve| have) had a fall\b",
    ),
    "cannot_get_up": (r"\b(?:can't|cannot|can not|unable to) (?:get up|stand up|move my)\b",),
    "stroke": (r"\b(?:i think i'm having a stroke|having a stroke|my face is drooping)\b",),
    "help": (
        r"^(?:please )?help(?: me)?(?: please)?[!. ]*$",
        r"\b(?:somebody|someone|anybody|anyone) help\b",
        r"\bcall (?:an ambulance|911|119|999|112)\b",
        r"\bi need an ambulance\b",
    ),
}
_EN_NOT = re.compile(
    r"\b(?:no|not|don't|doesn't|didn't|never|without|isn't|wasn't|almost|nearly)\b(?:\W+\w+){0,3}\W*$"
)
_EN_PAST = re.compile(r"\b(?:years ago|last year|when i was|as a child|long ago|in the movie|in a dream)\b")

_KO_RX = {kind: [re.compile(p) for p in pats] for kind, pats in _KO.items()}
_EN_RX = {kind: [re.compile(p) for p in pats] for kind, pats in _EN.items()}
_QUOTES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"'})


@dataclass(frozen=True, slots=True)
class Emergency:
    """What was recognised: the kind (one of `KINDS`) and the words that matched."""

    kind: str
    matched: str


def normalize(text: str) -> str:
    """NFKC, lower case, straight quotes, single spaces."""
    text = unicodedata.normalize("NFKC", text).translate(_QUOTES).lower()
    return " ".join(text.split())


def detect(text: str) -> Emergency | None:
    """The first emergency in `text` (any language), or None. Checks each sentence on its own,
    so a negation or an old story in one sentence does not hide a plea in the next."""
    for sentence in re.split(r"(?<=[.!?。])\s+|\n", normalize(text)):
        found = _detect_korean(sentence) or _detect_english(sentence)
        if found is not None:
            return found
    return None


def _detect_korean(sentence: str) -> Emergency | None:
    compact = re.sub(r"[\s,.!?~…\"']", "", sentence)
    if not re.search(r"[가-힣]|119", compact):
        return None
    for kind in KINDS:
        for rx in _KO_RX[kind]:
            m = rx.search(compact)
            if m is None:
                continue
            if _KO_NOT_AFTER.search(compact[m.end() : m.end() + 8]) or _KO_CONTEXT.search(compact):
                continue
            return Emergency(kind, m.group(0))
    return None


def _detect_english(sentence: str) -> Emergency | None:
    if _EN_PAST.search(sentence):
        return None
    for kind in KINDS:
        for rx in _EN_RX[kind]:
            m = rx.search(sentence)
            if m is None or _EN_NOT.search(sentence[: m.start()]):
                continue
            return Emergency(kind, m.group(0).strip())
    return None


_REPLIES = {
    "ko": (
        "많이 놀라셨죠. 지금 바로 {number}에 전화하세요. 가족분들께도 지금 알리고 있어요. "
        "천천히 숨 쉬세요. 제가 여기 있을게요."
    ),
    "en": (
        "I'm here with you. Please call {number} right now. I am letting your family know. "
        "Breathe slowly; I'm staying right here."
    ),
}


def reply(language: str, number: str = "119") -> str:
    """The calm words the companion says at once when `detect` found an emergency."""
    return _REPLIES[lang_key(language)].format(number=number)
