"""Seeded English sentence generator for the built-in corpus.

Sentences are chains of simple clauses (subject, verb, object, optional place/time/manner)
drawn from small word lists, so every utterance has different text while staying pronounceable
by espeak-ng. ``make_sentence(rng, num_words)`` is deterministic given the numpy Generator state.
"""
NAMES = ("Alice", "Brian", "Clara", "Daniel", "Emma", "Frank", "Grace", "Henry", "Irene", "James",
         "Karen", "Louis", "Maria", "Nathan", "Olivia", "Peter", "Rachel", "Samuel", "Teresa",
         "Victor", "Wendy", "Oscar", "Helen", "Martin", "Sophie", "George", "Laura", "Edward")
NOUNS = ("garden", "window", "letter", "river", "mountain", "teacher", "doctor", "basket",
         "kitchen", "bicycle", "engine", "village", "market", "bridge", "candle", "blanket",
         "picture", "station", "captain", "pocket", "forest", "island", "ladder", "mirror",
         "orange", "pencil", "rabbit", "saddle", "ticket", "umbrella", "violin", "wagon",
         "harbour", "lantern", "meadow", "journal", "parcel", "hammer", "carpet", "factory",
         "library", "student", "farmer", "sailor", "painter", "storm", "castle", "kettle")
ADJECTIVES = ("old", "bright", "quiet", "heavy", "narrow", "golden", "broken", "gentle",
              "famous", "empty", "yellow", "wooden", "ancient", "careful", "tiny", "enormous",
              "silver", "muddy", "friendly", "distant", "frozen", "simple", "curious", "purple",
              "hidden", "noisy", "modern", "lonely", "polished", "crooked")
VERBS = ("carried", "painted", "opened", "followed", "visited", "repaired", "watched",
         "borrowed", "cleaned", "described", "measured", "noticed", "ordered", "packed",
         "pushed", "remembered", "moved", "lifted", "collected", "delivered", "explored",
         "finished", "gathered", "covered", "discovered", "mentioned", "counted", "checked")
ADVERBS = ("slowly", "quickly", "carefully", "quietly", "happily", "suddenly", "twice",
           "again", "early", "yesterday", "gladly", "patiently", "secretly", "eagerly")
PREPOSITIONS = ("near", "behind", "under", "beside", "across", "inside", "above", "around",
                "beyond", "along", "past", "toward")
TIMES = ("in the morning", "after lunch", "before dinner", "on Sunday", "last winter",
         "at midnight", "during the summer", "on the third of May", "at seven o'clock",
         "in nineteen eighty four", "every Tuesday", "at dawn")
CONNECTORS = ("and", "but", "while", "because", "so", "and then", "although", "after", "until",
              "before", "when", "since")


def _pick(rng, words):
    return words[rng.integers(len(words))]


def _noun_phrase(rng):
    kind = rng.integers(4)
    if kind == 0:
        return [_pick(rng, NAMES)]
    if kind == 1:
        return ["the", _pick(rng, NOUNS)]
    adjective = _pick(rng, ADJECTIVES)
    article = "the" if kind == 2 else ("an" if adjective[0] in "aeiou" else "a")
    return [article, adjective, _pick(rng, NOUNS)]


def _clause(rng):
    words = _noun_phrase(rng) + [_pick(rng, VERBS)] + _noun_phrase(rng)
    extra = rng.integers(4)
    if extra == 0:
        words += [_pick(rng, PREPOSITIONS), "the", _pick(rng, NOUNS)]
    elif extra == 1:
        words += _pick(rng, TIMES).split()
    elif extra == 2:
        words.append(_pick(rng, ADVERBS))
    return words


def make_sentence(rng, num_words):
    """One sentence of exactly ``num_words`` (>= 1) words: clauses joined by connectors, cut
    after ``num_words`` words (the spoken length is what matters, so the last clause may stop
    early), ending with '.' or '!'."""
    words = _clause(rng)
    while len(words) < num_words:
        words[-1] += ","
        words += _pick(rng, CONNECTORS).split() + _clause(rng)
    text = " ".join(words[:num_words]).rstrip(",")
    end = "!" if rng.random() < 0.1 else "."
    return text[0].upper() + text[1:] + end
