"""Kaldi option files (``conf/*.conf``): one ``--name=value`` per line, ``#`` starts a comment.

Parsing follows Kaldi's ParseOptions::ReadConfigFile: names are normalised (``_`` -> ``-``, lower
case), a bare ``--flag`` means ``--flag=true``, booleans accept true/false/t/f/1/0 (any case). Values
stay strings here; :func:`typed_options` converts them against a table of known options and refuses
unknown names with an error naming the file and line.

Range checks (Kaldi's asserts and KALDI_ERRs) live beside each option set and raise :class:`OptionError`
naming the options at fault; :func:`locate` turns that into an error naming the conf line, so a bad value
is refused when the conf is read, before any job starts.
"""


class OptionError(ValueError):
    """An option value Kaldi would refuse. ``names``: the options involved, the likeliest culprit first;
    ``program``: the option set they belong to ("features", "pitch", "pitch-postprocess", "vad")."""

    def __init__(self, names, message, program="features"):
        super().__init__(message)
        self.names, self.program = tuple(names), program


def locate(error, conf, path):
    """ValueError for ``error`` (OptionError) prefixed with the ``file:line`` of the first of its options set
    in ``conf`` ({name: (text, where)} from :func:`read_conf` of ``path``), or with ``path`` when all of them
    took their defaults."""
    for name in error.names:
        if name in conf:
            return ValueError(f"{conf[name][1]}: {error}")
    return ValueError(f"{path}: {error} (with Kaldi's default for --{error.names[0]})")


def read_conf(path):
    """Return {option name: (value string, "file:line")} in file order. ValueError on bad lines."""
    options = {}
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            where = f"{path}:{lineno}"
            if not line.startswith("--") or len(line) == 2:
                raise ValueError(f"{where}: expected '--name=value', got '{line}'")
            name, _, value = line[2:].partition("=")
            options[name.strip().replace("_", "-").lower()] = (value.strip(), where)
    return options


def to_bool(text, where):
    """Kaldi's boolean spelling -> bool."""
    low = text.lower()
    if low in ("", "true", "t", "1"):
        return True
    if low in ("false", "f", "0"):
        return False
    raise ValueError(f"{where}: expected a boolean (true/false), got '{text}'")


def typed_options(conf, known, what):
    """Convert ``conf`` ({name: (text, where)}) using ``known`` ({name: type}).

    Returns {name: value}. ValueError naming the file:line for an unknown option or a bad value;
    the message lists the options ``what`` (e.g. "fbank") supports.
    """
    out = {}
    for name, (text, where) in conf.items():
        if name not in known:
            raise ValueError(
                f"{where}: option --{name} is not supported for {what}; supported: "
                + " ".join(f"--{n}" for n in sorted(known))
            )
        kind = known[name]
        try:
            out[name] = to_bool(text, where) if kind is bool else kind(text)
        except ValueError as e:
            if kind is bool:
                raise
            raise ValueError(f"{where}: --{name}: expected {kind.__name__}, got '{text}'") from e
    return out
