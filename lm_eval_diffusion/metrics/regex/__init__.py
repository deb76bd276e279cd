r"""NL-RX regex metrics: exact, DFA, functional (random or targeted strings) and startswith match.

`func_match` is one reading of the paper's functional match on 200 randomly sampled strings;
`func_match_targeted` draws its strings to expose differences and in practice equals
`dfa_match`; `startswith_match` is the lenient metric of Table 14. See each docstring.

The code is split along its seams; this package re-exports the public names of all three:
- `syntax`: dk.brics.automaton syntax (and its quirks), the parse caps, the AST and the parser;
- `automata`: the alphabet partition, minimal-DFA construction, equivalence and the DFA caps;
- `scoring`: the metrics and the strings func_match / func_match_targeted sample.
A cap is read where it is defined: patch `automata.MAX_DFA_STATES`, not this package's copy.

Predictions are untrusted: the metrics return False, never raise, when a prediction is malformed
or exceeds a cap (pattern length, repetition count, AST depth, DFA states, construction work,
time: PREDICTION_TIME_LIMIT_S plus GOLD_TIME_FACTOR times the gold's own build time, so a slow or
loaded machine never fails a prediction about as costly as its gold). A gold pattern that fails the
same checks raises: that is a dataset problem, not a 0.

    python -c "from lm_eval_diffusion.metrics.regex import dfa_match as m; print(m('b|a', 'a|b'))"
"""

from lm_eval_diffusion.metrics.regex.automata import (
    GOLD_TIME_FACTOR,
    MAX_DFA_STATES,
    MAX_WORK,
    PREDICTION_TIME_LIMIT_S,
)
from lm_eval_diffusion.metrics.regex.scoring import (
    RANDOM_ALPHABET,
    accepts,
    dfa_match,
    distinguishing_string,
    exact_match,
    func_match,
    func_match_targeted,
    func_test_strings,
    func_test_strings_targeted,
    perturb_regex,
    startswith_match,
)
from lm_eval_diffusion.metrics.regex.syntax import (
    MAX_AST_DEPTH,
    MAX_CODE_POINT,
    MAX_PATTERN_CHARS,
    MAX_REPEAT,
    Chars,
    Complement,
    Concat,
    Epsilon,
    Intersection,
    Node,
    Nothing,
    RegexLimitError,
    RegexSyntaxError,
    Repeat,
    Union,
    parse,
)

__all__ = [
    "GOLD_TIME_FACTOR",
    "MAX_AST_DEPTH",
    "MAX_CODE_POINT",
    "MAX_DFA_STATES",
    "MAX_PATTERN_CHARS",
    "MAX_REPEAT",
    "MAX_WORK",
    "PREDICTION_TIME_LIMIT_S",
    "RANDOM_ALPHABET",
    "Chars",
    "Complement",
    "Concat",
    "Epsilon",
    "Intersection",
    "Node",
    "Nothing",
    "RegexLimitError",
    "RegexSyntaxError",
    "Repeat",
    "Union",
    "accepts",
    "dfa_match",
    "distinguishing_string",
    "exact_match",
    "func_match",
    "func_match_targeted",
    "func_test_strings",
    "func_test_strings_targeted",
    "parse",
    "perturb_regex",
    "startswith_match",
]
