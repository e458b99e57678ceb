"""Does a transcript read like a finished turn? Rules over the last words, English and Korean.

Whisper closes almost every fragment with a full stop ("My late husband and I used to."), so a
trailing "." says nothing and is ignored; what counts is the last word. English: a turn that ends
on an article, a preposition, an auxiliary, a conjunction, a subject pronoun or a possessive ("the",
"to", "was", "and", "I", "my") is not finished; nor is a sentence that opens a dependent clause
("When the children were small", "If it rains tomorrow") and has no main clause after it yet.
Korean: a connective ending (-고, -는데, -서, -면,
-지만, -니까, -거든, ...) or a case particle on the last word means more is coming; a final
ending (-요, -다, -까, -죠, -네, ...) closes the sentence. Anything else is `UNSURE`, and the
audio model and the speaker's own pauses decide (see `pipeline.turn_end`).

Judging wrong in the INCOMPLETE direction only makes us wait longer, which is the safe side for an
older speaker; so the Korean particle rule is allowed to be broad.

`tag` finds a question tag or discourse tag closing the text ("..., isn't it?", "..., right?",
"..., 그렇죠?"), and `added_tag` whether such a tag is all that one text adds to another: said
after a pause, it ends a finished sentence and hands over the turn; it is not a thought resumed
(`pipeline.turn_end`).
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Completeness(enum.Enum):
    COMPLETE = "complete"
    INCOMPLETE = "incomplete"
    UNSURE = "unsure"


@dataclass(frozen=True, slots=True)
class Verdict:
    state: Completeness
    #: Why, for the decision log: the rule and the words it looked at.
    reason: str
    #: The words stop inside a phrase, on a function word or a particle ("... used to", "시장에"),
    #: not at a clause's boundary (a dependent clause, a comma, a Korean connective ending): a
    #: speaker who pauses there is searching for the next word (see `pipeline.turn_end`).
    inside_phrase: bool = False


_TRAILING_OPEN = (",", ";", ":", "-", "\u2014", "\u2013", "...", "\u2026")


def _words(*groups: str) -> list[str]:
    return [w for group in groups for w in group.split()]


_EN_OPEN_WORDS = frozenset(
    _words(
        "a an the this these those some any every each another",  # articles, determiners
        "to of in on at for with from by about into onto along across through over under after",
        "before around between without toward towards near behind beside during than as like",
        "is are was were am be been being have has had do does did will would can could should",
        "may might must shall",  # auxiliaries, modals
        "and but or nor so because if when while although though since until unless whether",
        "that which who whom whose where",  # conjunctions, relatives
        "i we they he she my your our their its i'm i've i'd i'll we're we've they're you're",
        "he's she's it's there's that's what's",  # subjects, possessives
        "um uh er erm uhm hmm",  # hesitations
    )
)
# Longest first, so "니까" wins over the final "까" and "는데" over "데".
_KO_CONNECTIVE = sorted(
    _words("고 는데 은데 데 서 면 지만 니까 거든 며 면서 도록 려고 러 다가 자마자 든지 아도 어도 는지 을지"),
    key=len,
    reverse=True,
)
# Spoken finals, polite and plain (반말: 했어, 좋아, 할게, 그럴걸, 가 봐).
_KO_FINAL = tuple(_words("요 다 까 죠 네 니 야 래 지 군 구나 자 어 아 해 게 걸 봐"))
_KO_PARTICLE = sorted(
    _words("은 는 이 가 을 를 에 에서 에게 한테 께 랑 이랑 와 과 도 의 로 으로 께서 부터 까지 처럼 보다 만"),
    key=len,
    reverse=True,
)
#: Words that open a dependent clause: a sentence that starts with one needs a main clause too.
_EN_SUBORDINATORS = frozenset(_words("when whenever if because while although though unless"))
#: These are prepositions too ("After lunch." answers a question): a clause only with a subject next.
_EN_SUBORDINATING_PREPOSITIONS = frozenset(_words("after before since until once"))
#: Words that open a clause (a subject), for finding the main clause after a dependent one.
_EN_SUBJECTS = frozenset(_words("i we you he she they it there my our his her their"))
#: After "when"/"if"/..., an auxiliary makes it a question ("When is the doctor coming"), not a clause.
_EN_QUESTION_AUX = frozenset(_words("is are was were am do does did will would can could should have has"))
_SENTENCE_END = re.compile(r"[.!?\u2026]\s+")
#: An English question tag: an auxiliary (negated or not) and a pronoun, "isn't it", "did you".
_EN_QUESTION_TAG = re.compile(
    r"(?:is|are|was|were|am|do|does|did|have|has|had|can|could|will|would|should|shall|must|"
    r"might|may|wo|ca|sha)(?:n't| not)? (?:i|you|he|she|it|we|they|there|that|this)"
)
_EN_TAGS = frozenset(("right", "you know", "you see", "okay", "ok", "eh", "huh", "don't you think"))
_KO_TAGS = frozenset(
    _words("그렇지 그렇죠 그렇지요 그치 그쵸 그지 그죠 맞지 맞죠 맞지요 그렇잖아 그렇잖아요 안그래 안그래요")
)
#: Where a sentence or clause ends inside a transcript: a tag is the last such piece.
_PIECES = re.compile(r"[.,!?;:\u2026]+")
_ANY_WORD = re.compile(r"[\w']+")
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_EN_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")


def _plain(text: str) -> str:
    """Lower case, with Whisper's curly apostrophe made straight ("Isn\u2019t" -> "isn't")."""
    return text.lower().replace("\u2019", "'")


def judge(text: str, language: str) -> Verdict:
    """The completeness of `text` (a whole transcript so far) in `language` ("ko", "en-US", ...)."""
    stripped = text.strip().strip("\"'\u201c\u201d\u2018\u2019")
    if not stripped:
        # The decode heard no words (noise, a cough): there is no sentence to wait for.
        return Verdict(Completeness.COMPLETE, "no words")
    for mark in _TRAILING_OPEN:
        if stripped.endswith(mark):
            return Verdict(Completeness.INCOMPLETE, f"ends on {mark!r}")
    # Hangul in the text decides the rules, whatever the session language says: callers switch.
    if _HANGUL.search(stripped) or language.lower().startswith("ko"):
        return _korean(stripped)
    return _english(stripped)


def _english(text: str) -> Verdict:
    words = _EN_WORD.findall(_plain(text))
    if not words:
        return Verdict(
            Completeness.COMPLETE if text.endswith(("?", "!")) else Completeness.UNSURE, "no words"
        )
    last = words[-1]
    if last in _EN_OPEN_WORDS:
        if text.endswith("?"):
            # Whisper puts a question mark on fragments too ("Could you remind me to?"), but a real
            # question may end on a preposition ("Where are you from?"): the sound decides.
            return Verdict(
                Completeness.UNSURE, f"a question ending on the function word {last!r}", inside_phrase=True
            )
        return Verdict(Completeness.INCOMPLETE, f"ends on the function word {last!r}", inside_phrase=True)
    if not text.endswith(("?", "!")) and (opener := _dependent_clause_only(text)) is not None:
        return Verdict(Completeness.INCOMPLETE, f"a clause opened by {opener!r} without its main clause")
    return Verdict(Completeness.COMPLETE, f"ends on {last!r}")


def _dependent_clause_only(text: str) -> str | None:
    """The subordinator when the last sentence of `text` is a dependent clause with nothing after it.

    "When the children were small." opens with "when" and never reaches a main clause; "When I was
    young we lived by the sea." does (a second subject, "we"), and so does anything after a comma
    ("If it rains, I stay home."). "When is the doctor coming." is a question, not a clause. A
    main clause with no pronoun for a subject ("When the doctor came the nurse left") is missed:
    that only makes us wait longer, the safe side.
    """
    sentence = _SENTENCE_END.split(text.strip())[-1]
    if "," in sentence or ";" in sentence:
        return None
    words = _EN_WORD.findall(_plain(sentence))
    if len(words) < 3 or words[1] in _EN_QUESTION_AUX or words[1] == "of":  # "because of the rain"
        return None
    first_subject = words[1].split("'")[0] in _EN_SUBJECTS
    if words[0] not in _EN_SUBORDINATORS and not (
        words[0] in _EN_SUBORDINATING_PREPOSITIONS and first_subject
    ):
        return None
    # The dependent clause's own subject comes first; a second subject starts the main clause.
    subjects = [i for i, w in enumerate(words[1:], 1) if w.split("'")[0] in _EN_SUBJECTS]
    if len(subjects) >= 2 or (subjects and subjects[0] > 1):
        return None
    return words[0]


def _korean(text: str) -> Verdict:
    if text.endswith("?"):
        return Verdict(Completeness.COMPLETE, "ends on '?'")
    words = re.findall(r"[\uac00-\ud7a3]+", text)
    if not words:
        return Verdict(Completeness.UNSURE, "no Hangul words")
    last = words[-1]
    if last.endswith("요"):  # 는데요, 거든요, 고요: polite closings of a connective are final
        return Verdict(Completeness.COMPLETE, f"final ending in {last!r}")
    for ending in _KO_CONNECTIVE:
        if last.endswith(ending) and len(last) >= max(2, len(ending)):
            return Verdict(Completeness.INCOMPLETE, f"connective ending -{ending} in {last!r}")
    # Two-syllable particles first: 보다 ("than") is not the final -다.
    for particle in (p for p in _KO_PARTICLE if len(p) > 1):
        if last.endswith(particle) and len(last) > len(particle):
            return Verdict(Completeness.INCOMPLETE, f"particle {particle!r} on {last!r}", inside_phrase=True)
    for ending in _KO_FINAL:
        if last.endswith(ending) and len(last) > len(ending):
            return Verdict(Completeness.COMPLETE, f"final ending -{ending} in {last!r}")
    for particle in (p for p in _KO_PARTICLE if len(p) == 1):
        if last.endswith(particle) and len(last) > 1:
            return Verdict(Completeness.INCOMPLETE, f"particle {particle!r} on {last!r}", inside_phrase=True)
    return Verdict(Completeness.UNSURE, f"no known ending on {last!r}")


def tag(text: str) -> str | None:
    """The question tag or discourse tag that closes `text`, if its last piece (after the last
    comma or full stop) is one: "The weather is lovely today, isn't it?" -> "isn't it"; "..., 그렇죠?"
    -> "그렇죠". Whisper writes the tag after a comma or as a sentence of its own ("Isn't it?"). The
    words' script decides the language, whatever the call's: callers switch."""
    pieces = [p.strip() for p in _PIECES.split(_plain(text)) if p.strip()]
    if len(pieces) < 2:  # a tag alone is no sentence ended: "Right?" answers us
        return None
    last = " ".join(pieces[-1].split())
    if _HANGUL.search(last):
        return last if last.replace(" ", "") in _KO_TAGS else None
    return last if last in _EN_TAGS or _EN_QUESTION_TAG.fullmatch(last) else None


def added_tag(before: str, after: str) -> str | None:
    """The tag `after` ends with, when it is all that `after` adds to `before` (the same words, then
    the tag): "The weather is lovely today." -> "The weather is lovely today. Isn't it?" gives
    "isn't it"; "I saw an old photo." -> "... Of my wedding day, you know." gives None."""
    found = tag(after)
    if found is None:
        return None
    said, first = _ANY_WORD.findall(_plain(after)), _ANY_WORD.findall(_plain(before))
    return found if first and said[: len(said) - len(_ANY_WORD.findall(found))] == first else None
