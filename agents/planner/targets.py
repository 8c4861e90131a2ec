"""Composition targets from a description: what a Track 2 item asks of placement, crop, facing, gaze, format, people.

A rule extractor: the lexicon and the patterns live in prompts/planner/targets.json (see its `about`); this
module only runs them. Per statement it finds the value, the reference frame, negation and hedging:

- the text is normalised (lower case, hyphens and runs of white space to one space) with a map back to the
  original characters, so every target keeps the words it came from (`CompositionTargets.phrases`);
- body-part phrases of the subject's own frame ("her left hand") are masked: they are never placements;
- a statement preceded in its clause by a negator ("not centered", "no negative space", "rather than facing
  the camera") is dropped; a hedge ("slightly", "appears to") lowers its weight but keeps it;
- frames per statement: explicit viewer-frame words ("(the viewer's left)", "of the frame") settle a
  statement; a side said in the subject's frame ("to her left") takes the reading the same text settles for
  the same key (a viewer-frame statement of it), else the one it settles for another key, else it is
  ambiguous: its value comes from the convention (`strict`: the left of a subject facing the camera is the
  viewer's right; `loose`: the viewer's left) and it is never enforced;
- placement statements count only when they are about the person (the nearest known noun before them in
  their clause is a subject term: "a window on the left" is not a placement), and never where a gaze or
  facing statement already explains the words ("she is looking to the left");
- per target, explicit statements decide (agreeing ones raise the confidence; disagreeing ones give no
  value and a recorded conflict), then ambiguous-frame ones, then implied ones (negative space on one side,
  worn footwear): every target carries `TargetEvidence` (spans into the original content / composition,
  frame, confidence, enforced, the patterns that read it, what was set aside), enforced at or above
  `enforce_confidence`; with several people a placement / gaze / implied crop that may be one person's is
  capped below it. People: an explicit number or pair wins, a crowd or group without a number leaves it
  unknown, else the distinct singular people introduced ("a woman ... a child") are counted.

Directions in the result are in the VIEWER's frame, like everything in portraitcraft.schemas.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

from portraitcraft.agents.planner.plan_keywords import PlannerDataError, load_planner_data
from portraitcraft.schemas import CompositionTargets, TargetEvidence, TargetFrame, TextSection

TARGETS_FILE = "targets.json"
KEYS = ("horizontal", "vertical", "crop_level", "facing", "gaze", "orientation", "people")
Convention = Literal["strict", "loose"]
FrameOf = Literal["viewer", "subject", "bare"]

_OPPOSITE = {"left": "right", "right": "left"}
_WORD = re.compile(r"[a-z0-9']+")
_PLACEMENT_KEYS = ("horizontal", "vertical")
_DIRECTION_KEYS = ("gaze", "facing")
_OBJECT_PRONOUNS = frozenset({"her", "his", "their", "them", "him"})
_PREPOSITION = re.compile(r"\b(?:of|with|on|in|at|by|to|from|behind|around|above|below|beside|under|over|across) $")


@dataclass(frozen=True)
class Rule:
    """One compiled pattern of targets.json."""

    key: str
    value: str
    strength: float
    regex: re.Pattern[str]
    subject: bool = False
    invert: bool = False
    singular: bool = False
    sides: dict[str, str] = field(default_factory=dict)
    implied: bool = False
    index: int = 0
    confidence: float | None = None


@dataclass
class Statement:
    """One matched statement: its value in the viewer's frame and how it was read."""

    key: str
    value: str
    phrase: str
    start: int
    end: int
    weight: float
    frame: FrameOf = "bare"
    hedged: bool = False
    negated: bool = False
    side_as_said: str | None = None
    noun: str | None = None
    rule: int = -1
    implied: bool = False
    span: tuple[int, int] = (0, 0)
    confidence: float | None = None
    predicative: bool = False  # "she is a dancer": counted only when no one else is introduced


@dataclass
class Extraction:
    """The targets with everything behind them (for reports, fitting the convention, tests)."""

    targets: CompositionTargets
    statements: list[Statement]
    convention: Convention
    facing_away: bool = False

    def frame_dependent(self) -> dict[str, str]:
        """Keys whose value came from a side said in the subject's frame (strict and loose read them apart)."""
        chosen = {k: v for k, v in self.targets.model_dump().items() if k in KEYS and v is not None}
        out = {}
        for s in self.statements:
            if s.frame == "subject" and not s.negated and chosen.get(s.key) == s.value:
                out[s.key] = s.phrase
        return out


@dataclass(frozen=True)
class Lexicon:
    """The compiled contents of targets.json."""

    rules: tuple[Rule, ...]
    masks: tuple[re.Pattern[str], ...]
    negators: frozenset[str]
    negator_phrases: tuple[tuple[str, ...], ...]
    contrast: frozenset[str]
    hedges: tuple[tuple[str, ...], ...]
    hedge_strings: tuple[str, ...]
    negation_window: int
    hedge_window: int
    hedge_factor: float
    override: re.Pattern[str]
    perspective_viewer: re.Pattern[str]
    perspective_subject: re.Pattern[str]
    facing_away: re.Pattern[str]
    clause_break: re.Pattern[str]
    subject_terms: frozenset[str]
    terms: re.Pattern[str]
    numbers: dict[str, int]
    copulas: frozenset[str]
    modifier_prefixes: tuple[str, ...]
    subject_prefix: frozenset[str]
    viewer_prefix: frozenset[str]


def _bounded(pattern: str) -> str:
    return rf"(?<![a-z0-9'])(?:{pattern})(?![a-z0-9])"


def _alternation(words: list[str]) -> str:
    return "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))


@cache
def lexicon() -> Lexicon:
    """The extractor's compiled data (cached; prompts/planner/targets.json).

    Raises:
        PlannerDataError: the file is malformed (names the rule and the problem).
    """
    data = load_planner_data(TARGETS_FILE)
    try:
        macros: dict[str, str] = data["macros"]

        def expand(pattern: str) -> str:
            for _ in range(3):  # macros may use macros
                pattern = re.sub(r"%([A-Z]+)%", lambda m: macros[m.group(1)], pattern)
            return pattern

        rules = []
        for i, r in enumerate(data["rules"]):
            if r["key"] not in KEYS:
                raise PlannerDataError(f"prompts/planner/{TARGETS_FILE}: rule {i}: unknown key {r['key']!r}")
            try:
                regex = re.compile(_bounded(expand(r["pattern"])))
            except (re.error, KeyError) as exc:
                raise PlannerDataError(f"prompts/planner/{TARGETS_FILE}: rule {i} ({r['key']}): bad pattern "
                                       f"({type(exc).__name__}: {exc})") from None
            rules.append(Rule(key=r["key"], value=str(r["value"]), strength=float(r.get("strength", 1.0)),
                              regex=regex, subject=bool(r.get("subject", False)),
                              invert=bool(r.get("invert", False)), singular=bool(r.get("singular", False)),
                              sides=dict(r.get("sides", {})),
                              implied=bool(r.get("implied", r.get("invert", False))), index=i,
                              confidence=float(r["confidence"]) if "confidence" in r else None))
        subject_terms = [t.lower() for t in data["subject_terms"]]
        all_terms = subject_terms + [t.lower() for t in data["object_terms"]]
        return Lexicon(
            rules=tuple(rules),
            masks=tuple(re.compile(_bounded(expand(m))) for m in data["masks"]),
            negators=frozenset(n for n in data["negators"] if " " not in n),
            negator_phrases=tuple(tuple(n.split()) for n in data["negators"] if " " in n),
            contrast=frozenset(data["contrast_words"]),
            hedges=tuple(tuple(h.split()) for h in data["hedges"]),
            hedge_strings=tuple(f" {' '.join(h.split())} " for h in data["hedges"]),
            negation_window=int(data["negation_window"]),
            hedge_window=int(data["hedge_window"]),
            hedge_factor=float(data["hedge_factor"]),
            override=re.compile(data["override"]),
            perspective_viewer=re.compile(data["perspective_after"]["viewer"]),
            perspective_subject=re.compile(data["perspective_after"]["subject"]),
            facing_away=re.compile(_bounded(_alternation(data["facing_away"]))),
            clause_break=re.compile("|".join(re.escape(b) for b in data["clause_breaks"])),
            subject_terms=frozenset(subject_terms),
            terms=re.compile(_bounded(_alternation(all_terms))),
            numbers={str(k): int(v) for k, v in data["numbers"].items()},
            copulas=frozenset(data["copulas"]),
            modifier_prefixes=tuple(f"{p} " for p in data["modifier_prefixes"]),
            subject_prefix=frozenset(data["side_prefix"]["subject"]),
            viewer_prefix=frozenset(data["side_prefix"]["viewer"]),
        )
    except (KeyError, TypeError, ValueError, re.error) as exc:
        raise PlannerDataError(f"prompts/planner/{TARGETS_FILE}: malformed ({type(exc).__name__}: {exc})") from None


# ----------------------------------------------------------------------------------------------- normalising

_SUBST = {"\u2019": "'", "\u2018": "'", "\u201c": '"', "\u201d": '"', "-": " ", "\u2010": " ", "\u2011": " "}
_TABLE = str.maketrans(_SUBST)
_SPACES = re.compile(r"\s+")


def normalise_with_map(text: str) -> tuple[str, list[int]]:
    """(lower-cased text with hyphens and white-space runs as one space, original index of each character).

    Example:
        >>> normalise_with_map("Full-Body  shot")[0]
        'full body shot'
    """
    lowered = text.lower()
    if len(lowered) != len(text):  # a character lower-cases to several ("İ"): the slow path keeps the map
        return _normalise_slow(text)
    flat = lowered.translate(_TABLE)
    out: list[str] = []
    index: list[int] = []
    pos = 0
    for m in _SPACES.finditer(flat):  # every run of white space becomes one space at the run's start
        out.append(flat[pos : m.start()])
        index.extend(range(pos, m.start()))
        out.append(" ")
        index.append(m.start())
        pos = m.end()
    out.append(flat[pos:])
    index.extend(range(pos, len(flat)))
    return "".join(out), index


def _normalise_slow(text: str) -> tuple[str, list[int]]:
    out: list[str] = []
    index: list[int] = []
    for i, ch in enumerate(text):
        ch = _SUBST.get(ch, ch).lower()
        if ch.isspace():
            if out and out[-1] == " ":
                continue
            ch = " "
        for c in ch:
            out.append(c)
            index.append(i)
    return "".join(out), index


def _sentence_bounds(norm: str) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for m in re.finditer(r"[.!?]+(?=\s|$)", norm):
        bounds.append((start, m.end()))
        start = m.end()
    if start < len(norm):
        bounds.append((start, len(norm)))
    return bounds


# ----------------------------------------------------------------------------------------------- reading


def _words_before(norm: str, lo: int, hi: int, n: int) -> list[str]:
    return _WORD.findall(norm[lo:hi])[-n:] if n > 0 else []


def _has_phrase(words: list[str], phrase: tuple[str, ...]) -> bool:
    k = len(phrase)
    return any(tuple(words[i : i + k]) == phrase for i in range(len(words) - k + 1))


class _Reader:
    """Reads one normalised text (kept per call: the extractor itself holds no state)."""

    def __init__(self, lex: Lexicon, norm: str) -> None:
        self.lex = lex
        self.norm = norm
        self.sentences = _sentence_bounds(norm)

    def sentence_of(self, pos: int) -> tuple[int, int]:
        for lo, hi in self.sentences:
            if lo <= pos < hi:
                return lo, hi
        return 0, len(self.norm)

    def clause_start(self, pos: int) -> int:
        lo, _ = self.sentence_of(pos)
        last = lo
        for m in self.lex.clause_break.finditer(self.norm, lo, pos):
            last = m.end()
        return last

    def window(self, start: int, n: int) -> list[str]:
        """The up-to-n words before `start` in its clause, cut after the last contrast word (a contrast word
        that begins a negator phrase, 'rather than', 'instead of', is kept)."""
        words = _words_before(self.norm, self.clause_start(start), start, n)
        for i in range(len(words) - 1, -1, -1):
            if words[i] in self.lex.contrast:
                if any(tuple(words[i : i + len(p)]) == p for p in self.lex.negator_phrases):
                    return words[i:]
                return words[i + 1 :]
        return words

    def negated(self, start: int) -> bool:
        words = self.window(start, self.lex.negation_window)
        if any(w in self.lex.negators or w.endswith("n't") for w in words):
            return True
        return any(_has_phrase(words, p) for p in self.lex.negator_phrases)

    def _heads(self, lo: int, hi: int) -> list[re.Match[str]]:
        """Known nouns in [lo, hi) that head their phrase (not the 'table' of 'the head of the table')."""
        return [m for m in self.lex.terms.finditer(self.norm, lo, hi)
                if not any(self.norm.endswith(p, 0, m.start()) for p in self.lex.modifier_prefixes)
                and not (m.group() in _OBJECT_PRONOUNS and _PREPOSITION.search(self.norm, 0, m.start()))]

    def hedged(self, start: int, end: int) -> bool:
        words = self.window(start, self.lex.hedge_window) + _WORD.findall(self.norm[start:end])
        joined = f" {' '.join(words)} "
        return any(h in joined for h in self.lex.hedge_strings)

    def actor_is_subject(self, start: int, end: int) -> bool | None:
        """Whether the statement is about the person: nearest known noun before it in its clause, else in its
        sentence, else the first after it in its sentence. None when the sentence names nothing known."""
        lo, hi = self.sentence_of(start)
        right_after = self.lex.terms.match(self.norm, end + 1) if self.norm[end : end + 1] == " " else None
        if right_after is not None and right_after.group() in self.lex.subject_terms:
            return True  # an adjectival statement before its noun: "the centrally placed subjects"
        clause = self.clause_start(start)
        before = self._heads(lo, start)
        in_clause = [m for m in before if m.start() >= clause]
        pick = (in_clause or before or [None])[-1]
        if pick is None:
            pick = next(iter(self._heads(end, hi)), None)
        if pick is None:
            return None
        return pick.group() in self.lex.subject_terms

    def frame_after(self, end: int) -> tuple[FrameOf | None, str | None, int]:
        """A frame stated right after a side: (frame, overriding side or None, end of the words used)."""
        _, hi = self.sentence_of(end)
        tail = self.norm[end : min(hi, end + 80)]
        m = self.lex.override.match(tail)
        if m:
            return "viewer", m.group("side"), end + m.end()
        m = self.lex.perspective_viewer.match(tail)
        if m:
            return "viewer", None, end + m.end()
        m = self.lex.perspective_subject.match(tail)
        if m:
            return "subject", None, end + m.end()
        return None, None, end


def _side_frame(m: re.Match[str]) -> FrameOf:
    groups = m.re.groupindex
    if "poss" in groups and m.group("poss"):
        return "subject"
    if "viewer" in groups and m.group("viewer"):
        return "viewer"
    return "bare"


def _masked(text: str, masks: tuple[re.Pattern[str], ...]) -> str:
    for mask in masks:
        text = mask.sub(lambda m: "#" * len(m.group()), text)
    return text


def _overlaps(a: Statement, b: Statement) -> bool:
    return a.start < b.end and b.start < a.end


def _resolve_value(rule: Rule, m: re.Match[str], side: str | None, lex: Lexicon) -> str | None:
    value = rule.value
    if value == "{side}":
        if side is None:
            return None
        side = rule.sides.get(side, side)
        return _OPPOSITE.get(side, side) if rule.invert and rule.key == "horizontal" else (
            {"upper": "lower", "lower": "upper"}.get(side, side) if rule.invert else side)
    if value == "{n}":
        raw = m.group("n")
        return str(lex.numbers.get(raw, int(raw) if raw.isdigit() else 0)) or None
    if value == "{ratio}":
        w, h = int(m.group("w")), int(m.group("h"))
        return "square" if w == h else ("landscape" if w > h else "portrait")
    return value


def read_statements(text: str, convention: Convention = "strict") -> tuple[list[Statement], bool]:
    """Every statement the rules find in `text`, read in the viewer's frame; and whether the subject faces away."""
    lex = lexicon()
    norm, index = normalise_with_map(text)
    masked = _masked(norm, lex.masks)
    reader = _Reader(lex, masked)
    facing_away = any(not reader.negated(m.start()) for m in lex.facing_away.finditer(masked))
    found: list[Statement] = []
    for rule in lex.rules:
        for m in rule.regex.finditer(masked):
            start, end = m.start(), m.end()
            side = m.group("side") if "side" in m.re.groupindex else None
            frame: FrameOf = _side_frame(m) if side in _OPPOSITE else "bare"
            if side in _OPPOSITE and frame == "bare":
                prefix = _words_before(masked, 0, m.start("side"), 1)
                if prefix and prefix[0] in lex.subject_prefix:
                    frame = "subject"
                elif prefix and prefix[0] in lex.viewer_prefix:
                    frame = "viewer"
            said = side
            if side in _OPPOSITE:
                after_frame, after_side, after_end = reader.frame_after(end)
                if after_frame is not None:
                    frame, side, end = after_frame, after_side or side, after_end
                if frame == "subject" and convention == "strict" and not facing_away:
                    side = _OPPOSITE[side]
            value = _resolve_value(rule, m, side, lex)
            if value is None:
                continue
            where = m.start("side") if "side" in m.re.groupindex and m.group("side") else start
            if rule.subject and reader.actor_is_subject(where, end) is False:
                continue
            noun = m.group("noun") if "noun" in m.re.groupindex else None
            copula = False
            if rule.singular:
                before = _words_before(masked, reader.sentence_of(start)[0], start, 1)
                copula = bool(before and before[0] in lex.copulas)
            hedged = reader.hedged(start, end)
            weight = rule.strength * (lex.hedge_factor if hedged else 1.0)
            span = (index[start], index[end - 1] + 1)
            phrase = text[span[0] : span[1]]
            found.append(Statement(key=rule.key, value=value, phrase=phrase, start=start, end=end, weight=weight,
                                   frame=frame, hedged=hedged, negated=reader.negated(start),
                                   side_as_said=said, noun=noun, rule=rule.index, implied=rule.implied,
                                   span=span, confidence=rule.confidence, predicative=copula))
    return _deduplicate(found), facing_away


def _deduplicate(found: list[Statement]) -> list[Statement]:
    """Per key the longest of overlapping statements; placements yield to gaze/facing over the same words."""
    kept: list[Statement] = []
    for s in sorted(found, key=lambda s: (-(s.end - s.start), s.start)):
        if any(k.key == s.key and _overlaps(k, s) for k in kept):
            continue
        kept.append(s)
    directions = [s for s in kept if s.key in _DIRECTION_KEYS and not s.negated]
    kept = [s for s in kept if not (s.key in _PLACEMENT_KEYS and any(_overlaps(s, d) for d in directions))]
    return sorted(kept, key=lambda s: s.start)


def _decide(statements: list[Statement]) -> tuple[str | None, Statement | None]:
    totals: dict[str, float] = {}
    first: dict[str, Statement] = {}
    for s in statements:
        totals[s.value] = totals.get(s.value, 0.0) + s.weight
        best = first.get(s.value)
        if best is None or s.weight > best.weight:
            first[s.value] = s
    if not totals:
        return None, None
    order = {v: min(s.start for s in statements if s.value == v) for v in totals}
    value = max(totals, key=lambda v: (totals[v], -order[v]))
    return value, first[value]


def _decide_people(statements: list[Statement]) -> tuple[int | None, str | None]:
    explicit = [s for s in statements if s.value.isdigit() and s.noun is None]
    if explicit:
        value, s = _decide(explicit)
        return (int(value), s.phrase) if value is not None and s is not None else (None, None)
    if any(s.value == "many" for s in statements):
        return None, None
    singles = [s for s in statements if s.noun is not None and not s.predicative]
    singles = singles or [s for s in statements if s.noun is not None][:1]  # "the subject is a young woman"
    if not singles:
        return None, None
    nouns = list(dict.fromkeys(s.noun for s in singles))
    return len(nouns), "; ".join(dict.fromkeys(s.phrase for s in singles))


DEFAULT_ENFORCE_CONFIDENCE = 0.8
"""The confidence a target needs to be enforced by the critic (`[vision] enforce_confidence`'s default, chosen
on the real dev set for precision: benchmarks/targets.py --real)."""
CONFIDENCE = {"explicit": 0.9, "weak": 0.85, "hedged": 0.05, "agree": 0.03, "implied": 0.6, "ambiguous": 0.5,
              "count": 0.95, "counted_one": 0.85, "counted_many": 0.7}
"""How sure a statement makes a target: an explicit subject statement (rule strength 1; weaker rules 'weak',
a hedge takes 'hedged' off, each further agreeing statement adds 'agree'), a value only implied by another
object (negative space on one side), a bare subject-frame side nothing settles; people: a stated count, or
the people counted from the subject noun phrases."""


@dataclass
class _Read:
    """One live statement with its frame resolved for this text."""

    s: Statement
    value: str
    frame: TargetFrame


def _settle(statements: list[Statement]) -> list[_Read]:
    """Frames per statement: a side said in the subject's frame takes the reading the same text settles for
    the same key elsewhere (a viewer-frame statement of that key); else the reading settled for another key;
    else it is ambiguous (its value stays the convention's)."""
    direct = [s for s in statements if s.side_as_said in _OPPOSITE and s.frame != "subject" and not s.implied]
    readings: dict[str, str] = {}
    for s in statements:
        if s.frame != "subject" or s.side_as_said not in _OPPOSITE:
            continue
        seen = {d.value for d in direct if d.key == s.key}
        if len(seen) == 1:
            readings[s.key] = "loose" if seen == {s.side_as_said} else "strict"
    text_reading = next(iter(set(readings.values()))) if len(set(readings.values())) == 1 else None
    out = []
    for s in statements:
        if s.frame != "subject" or s.side_as_said not in _OPPOSITE:
            out.append(_Read(s, s.value, "viewer"))
            continue
        reading = readings.get(s.key) or text_reading
        if reading is None:
            out.append(_Read(s, s.value, "ambiguous"))
            continue
        said = s.side_as_said
        value = said if reading == "loose" else _OPPOSITE[said]
        out.append(_Read(s, value, "subject"))
    return out


def _confidence(r: _Read) -> float:
    if r.frame == "ambiguous":
        return CONFIDENCE["ambiguous"]
    if r.s.implied:
        base = r.s.confidence if r.s.confidence is not None else CONFIDENCE["implied"]
        return base - (CONFIDENCE["hedged"] if r.s.hedged else 0.0)
    base = CONFIDENCE["explicit"] if r.s.weight >= 1.0 or (r.s.hedged and r.s.weight >= 0.69) else CONFIDENCE["weak"]
    return base - (CONFIDENCE["hedged"] if r.s.hedged else 0.0)


def _spans(reads: list[_Read], cut: tuple[int, int, int]) -> list[tuple[int, int, TextSection]]:
    """Offsets into the original content / composition of each statement's words."""
    lead_c, len_c, lead_k = cut
    out: list[tuple[int, int, TextSection]] = []
    for r in sorted(reads, key=lambda r: r.s.span):
        a, b = r.s.span
        if a < len_c:
            out.append((a + lead_c, b + lead_c, "content"))
        else:
            shift = len_c + 2 if len_c else 0
            out.append((a - shift + lead_k, b - shift + lead_k, "composition"))
    return out


def _source(reads: list[_Read]) -> str:
    return "rules: " + ", ".join(f"{r.s.key} pattern {r.s.rule}" for r in reads)


def _decide_key(key: str, reads: list[_Read], cut: tuple[int, int, int],
                threshold: float) -> tuple[Any, TargetEvidence | None, str | None]:
    """(value, evidence, phrase) of one placement/direction/crop key from its resolved statements."""
    if not reads:
        return None, None, None
    explicit = [r for r in reads if not r.s.implied and r.frame != "ambiguous"]
    ambiguous = [r for r in reads if not r.s.implied and r.frame == "ambiguous"]
    implied = [r for r in reads if r.s.implied]
    for group, frame in ((explicit, None), (ambiguous, "ambiguous"), (implied, None)):
        if not group:
            continue
        values = list(dict.fromkeys(r.value for r in group))
        if len(values) > 1:
            note = "conflict: " + "; ".join(
                f"{v} ({', '.join(repr(r.s.phrase) for r in group if r.value == v)})" for v in values)
            return None, TargetEvidence(value=None, spans=_spans(group, cut), frame=frame or "viewer",
                                        confidence=0.0, enforced=False, source=_source(group), note=note), None
        value = values[0]
        conf = max(_confidence(r) for r in group) + CONFIDENCE["agree"] * (len(group) - 1)
        conf = round(min(0.99, conf), 3)
        set_aside = [r for r in reads if r not in group and r.value != value]
        note = ("set aside: " + "; ".join(f"{r.value} ({r.s.phrase!r}, {'implied' if r.s.implied else r.frame})"
                                          for r in set_aside)) if set_aside else ""
        frame_of = frame or ("ambiguous" if any(r.frame == "ambiguous" for r in group) else
                             "subject" if any(r.frame == "subject" for r in group) else "viewer")
        best = max(group, key=lambda r: (_confidence(r), -r.s.start))
        ev = TargetEvidence(value=value, spans=_spans(group, cut), frame=frame_of, confidence=conf,
                            enforced=conf >= threshold and frame_of != "ambiguous", source=_source(group), note=note)
        return value, ev, best.s.phrase
    return None, None, None


_GROUP_WORDS = re.compile(r"\b(?:subjects|couple|pair|family|group|figures|people|duo|trio|both|they|"
                          r"friends|children|siblings|the two|the three)\b")
GROUP_PLACEMENT_CAP = 0.75
"""With two or more people, a target that may be one person's (`GROUP_CAPPED`) is capped here."""


def _clause_around(text: str, start: int, end: int) -> str:
    """The words of `text[start:end]`'s clause (between the nearest , ; : . ( ) around it)."""
    lo = max((text.rfind(c, 0, start) for c in ",;:.()"), default=-1) + 1
    ends = [i for i in (text.find(c, end) for c in ",;:.()") if i >= 0]
    return text[lo : min(ends) if ends else len(text)]


GROUP_CAPPED = ("horizontal", "gaze", "crop_level")
"""With two or more people these may be about one of them: a placement or a gaze not worded about the group,
a crop only implied by someone's footwear."""


def _group_placement(values: dict[str, Any], evidence: dict[str, TargetEvidence], reads: list[_Read], text: str,
                     threshold: float) -> None:
    people = values.get("people")
    if not isinstance(people, int) or people < 2:
        return
    for key in GROUP_CAPPED:
        ev = evidence.get(key)
        if ev is None or ev.value is None:
            continue
        used = [r for r in reads if r.s.key == key and r.value == ev.value]
        if key == "crop_level":
            if not all(r.s.implied for r in used):
                continue
        elif any(_GROUP_WORDS.search(_clause_around(text, *r.s.span).lower()) for r in used):
            continue
        conf = min(ev.confidence, GROUP_PLACEMENT_CAP)
        note = "; ".join(n for n in (ev.note, f"{people} people: it may be one person's") if n)
        evidence[key] = ev.model_copy(update={"confidence": conf, "enforced": conf >= threshold, "note": note})


def extract(content: str, composition: str = "", *, convention: Convention = "strict",
            enforce_confidence: float = DEFAULT_ENFORCE_CONFIDENCE) -> Extraction:
    """The targets of a description with the statements and the evidence behind them (see the module doc).

    Args:
        content (str): the content description.
        composition (str): the composition analysis (may be empty).
        convention ("strict" | "loose"): the prior for a subject-frame side the text does not settle.
        enforce_confidence (float, optional, defaults to 0.8): a target at least this confident is enforced.
    """
    if convention not in ("strict", "loose"):
        raise ValueError(f"convention must be 'strict' or 'loose', got {convention!r}")
    parts = [t for t in (content or "", composition or "")]
    stripped = [t.strip() for t in parts]
    text = "\n\n".join(t for t in stripped if t)
    cut = (parts[0].find(stripped[0]) if stripped[0] else 0, len(stripped[0]),
           parts[1].find(stripped[1]) if stripped[1] else 0)
    statements, facing_away = read_statements(text, convention)
    live = [s for s in statements if not s.negated]
    reads = _settle(live)
    values: dict[str, Any] = {}
    phrases: dict[str, str] = {}
    evidence: dict[str, TargetEvidence] = {}
    for key in KEYS:
        mine = [s for s in live if s.key == key]
        if key == "people":
            count, phrase = _decide_people(mine)
            if count is not None and phrase is not None:
                explicit = any(s.value.isdigit() and s.noun is None for s in mine)
                conf = CONFIDENCE["count"] if explicit else (
                    CONFIDENCE["counted_one"] if count == 1 else CONFIDENCE["counted_many"])
                used = [_Read(s, s.value, "viewer") for s in mine if s.phrase in phrase.split("; ")]
                values[key], phrases[key] = count, phrase
                evidence[key] = TargetEvidence(value=count, spans=_spans(used, cut), frame="viewer", confidence=conf,
                                               enforced=conf >= enforce_confidence, source=_source(used))
            continue
        value, ev, phrase = _decide_key(key, [r for r in reads if r.s.key == key], cut, enforce_confidence)
        if ev is not None:
            evidence[key] = ev
        if value is not None and phrase is not None:
            values[key], phrases[key] = value, phrase
    _group_placement(values, evidence, reads, text, enforce_confidence)
    targets = CompositionTargets(**values, phrases=phrases, evidence=evidence)
    return Extraction(targets=targets, statements=statements, convention=convention, facing_away=facing_away)


def extract_targets(content: str, composition: str, *, convention: Convention = "strict",
                    enforce_confidence: float = DEFAULT_ENFORCE_CONFIDENCE) -> CompositionTargets:
    """What a description demands as CompositionTargets (viewer's frame; None where the text is silent), with
    per key its evidence (spans, frame, confidence, enforced).

    Args:
        content (str): the content description.
        composition (str): the composition analysis (may be empty).
        convention ("strict" | "loose", optional, defaults to "strict"): the prior for a bare "her left" the
            text settles nowhere: strict = the left of a subject facing the camera is the viewer's right;
            loose = the viewer's left. Such a target is ambiguous and never enforced.
        enforce_confidence (float, optional, defaults to 0.8): the confidence a target needs to be enforced.

    Example:
        >>> t = extract_targets("A woman looks to her left.", "She is placed on the right third.")
        >>> t.gaze, t.evidence["gaze"].frame, t.enforced("gaze"), t.horizontal, t.people
        ('right', 'ambiguous', False, 'right', 1)
        >>> t = extract_targets("She looks off-camera to her left.", "Her gaze leads to the left edge of the frame.")
        >>> t.gaze, t.evidence["gaze"].frame, t.enforced("gaze")
        ('left', 'subject', True)
    """
    return extract(content, composition, convention=convention, enforce_confidence=enforce_confidence).targets
