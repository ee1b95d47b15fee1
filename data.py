"""
data.py -- the text task: what the GPT reads, and how its answers are scored.

  1. Tokenizer: an offline byte-level tiktoken tokenizer (or GPT-2's BPE from local files).
  2. The task: Task, its flags and their defaults (written once, here), its slices, its problems; procedural
     GSM8K-style word problems with worked solutions (OPERATIONS and _slice_rule: the rules that the
     generators and the split counter both read), and the reward.
  3. Verification: a problem + a candidate solution -> "Yes"/"No" (the generative verifier).
  4. GSM8K: the real data set's jsonl files.
  5. problems(...): the ONE function that draws the problems of a split; parse_step: the first "a+b=x" of
     a worked solution; encode_example; fitting / prompts_fitting: over-long examples and prompts dropped.

Imports common.py only (for UserError).
"""
import hashlib
import json
import operator
import os
import random
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import tiktoken
import tiktoken.load  # GPT-2's data-gym file reader (not imported by `import tiktoken`)
import torch

from common import UserError

# -----------------------------------------------------------------------------
# 1. Tokenizer

EOT, PAD = "<|endoftext|>", "<|pad|>"
# GPT-2's pre-tokenisation regex. With byte-only ranks it changes nothing about the ids (every
# byte is its own token); it only has to match *every* character, because tiktoken silently
# drops text that the pattern does not match.
GPT2_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""  # = tiktoken's r50k
GPT2_DIR_ENV = "GPT2_BPE_DIR"  # optional folder holding GPT-2's vocab.bpe + encoder.json


class Tokenizer:
    """Thin wrapper over a tiktoken.Encoding that knows its eos and pad ids."""

    def __init__(self, enc, name):
        self.enc = enc
        self.name = name
        self.vocab_size = enc.n_vocab
        self.eos_id = enc.encode_single_token(EOT)
        self.pad_id = enc.encode_single_token(PAD)

    def encode(self, text):
        # encode_ordinary == encode(text, disallowed_special=()): "<|endoftext|>" typed in a
        # question is just 13 characters, never the EOS id (no prompt injection of specials).
        return self.enc.encode_ordinary(text)

    def decode(self, ids):
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        ids = [i for i in ids if i != self.pad_id]
        # errors="replace": a sampled model may cut a multi-byte UTF-8 character in half
        return self.enc.decode(ids, errors="replace")

    def __repr__(self):
        return f"Tokenizer({self.name!r}, vocab_size={self.vocab_size}, eos_id={self.eos_id}, pad_id={self.pad_id})"


def _gpt2_encoding():
    """GPT-2's BPE from local files ($GPT2_BPE_DIR) or from tiktoken's cache. Never downloads
    silently into a wrong state: any failure becomes a UserError that says how to fix it."""
    folder = os.environ.get(GPT2_DIR_ENV)
    try:
        if folder:
            # tiktoken would copy local files into its cache keyed by path, and then keep serving
            # that stale copy after the files change; TIKTOKEN_CACHE_DIR="" turns caching off.
            saved = os.environ.get("TIKTOKEN_CACHE_DIR")
            os.environ["TIKTOKEN_CACHE_DIR"] = ""
            try:
                ranks = tiktoken.load.data_gym_to_mergeable_bpe_ranks(
                    vocab_bpe_file=os.path.join(folder, "vocab.bpe"),
                    encoder_json_file=os.path.join(folder, "encoder.json"))
            finally:
                if saved is None:
                    del os.environ["TIKTOKEN_CACHE_DIR"]
                else:
                    os.environ["TIKTOKEN_CACHE_DIR"] = saved
            base = dict(pat_str=GPT2_PAT, mergeable_ranks=ranks, special_tokens={EOT: len(ranks)})
        else:
            gpt2 = tiktoken.get_encoding("gpt2")  # reads TIKTOKEN_CACHE_DIR, else tries to download
            base = dict(pat_str=gpt2._pat_str, mergeable_ranks=gpt2._mergeable_ranks,
                        special_tokens=dict(gpt2._special_tokens))
    except Exception as e:
        where = f"${GPT2_DIR_ENV}={folder}" if folder else "tiktoken's cache (and the network)"
        raise UserError(
            f"the gpt2 tokenizer's files could not be loaded from {where}: {type(e).__name__}: "
            f"{str(e).splitlines()[0][:150] if str(e) else ''}. Provide them in one of two ways: "
            f"(a) on a machine with internet run `python -c \"import tiktoken; tiktoken.get_encoding('gpt2')\"` "
            f"with TIKTOKEN_CACHE_DIR=<folder>, then copy <folder> here and set TIKTOKEN_CACHE_DIR to it; "
            f"(b) put GPT-2's vocab.bpe and encoder.json in a folder and set {GPT2_DIR_ENV} to it. "
            f"Or use the offline default: --tokenizer byte") from None
    # GPT-2 has no pad token: add one right after the last id (50257 for the real GPT-2)
    n = max(max(base["mergeable_ranks"].values()), max(base["special_tokens"].values())) + 1
    base["special_tokens"][PAD] = n
    return tiktoken.Encoding(name="gpt2_pad", **base)


def get_tokenizer(name="byte"):
    """'byte' (default, offline): 256 byte tokens + <|endoftext|>=256 + <|pad|>=257.
    'gpt2': GPT-2's BPE (50257 tokens) + <|pad|>=50257; needs its files (see _gpt2_encoding)."""
    if name == "byte":
        enc = tiktoken.Encoding(name="byte", pat_str=GPT2_PAT,
                                mergeable_ranks={bytes([i]): i for i in range(256)},
                                special_tokens={EOT: 256, PAD: 257})
        return Tokenizer(enc, "byte")
    if name == "gpt2":
        return Tokenizer(_gpt2_encoding(), "gpt2")
    raise UserError(f"unknown tokenizer {name!r}: choose 'byte' or 'gpt2'")


# -----------------------------------------------------------------------------
# 2. The task -- GSM8K in miniature
#
# A problem is a chain: start with `a`, apply `steps` operations `x = x op b`, ask for `x`.
# The worked solution writes one equation per step, GSM8K style: "12+7=19. 19-5=14. #### 14".
# The arithmetic is easy on purpose; the variety (families, phrasings, names, items) is what
# makes a few thousand examples cover only a small part of the task: the model has to learn
# which words mean which operation, not memorise questions.

@dataclass
class Problem:
    question: str   # "Ana has 12 apples. She buys 7 more and gives 5 to Ben. How many apples does Ana have now?"
    solution: str   # "12+7=19. 19-5=14. #### 14"
    answer: str     # "14"
    slice: str = "all"  # the shortcut task: "normal" or "conflict" (evaluation reports each slice)


SLICES = ["conflict", "normal"]  # the shortcut task's slices, reported apart; every other task has one, "all"
CALIBRATED_SFT_CONFLICT_FRAC = 0.03  # the shortcut base of RESULTS.md (f)-(j): conflict problems among its SFT data


@dataclass(frozen=True)
class Task:
    """The task in one place: its flags with their defaults (train.py, eval.py, experiments.py and demo.py read
    them from here, and so do the keyword defaults of this file's generators), its slices, and the problems of
    each use. `--shortcut` sets how many conflict problems each set holds: few among the worked solutions, half
    of the RL prompts and of the test sets."""
    steps: tuple = (1, 2)            # operations per problem
    max_num: int = 10                # largest number in a question
    ops: str = "+-"                  # subset of +-*/
    gsm8k: str = None                # train on a GSM8K jsonl file instead of the procedural task
    gsm8k_test: str = None           # its test jsonl (required with gsm8k)
    shortcut: bool = False           # the shortcut task (make_shortcut_problems)
    sft_conflict_frac: float = 0.05  # shortcut: conflict problems among the worked solutions
    rl_conflict_frac: float = 0.5    # shortcut: among the RL prompts
    test_conflict_frac: float = 0.5  # shortcut: among the held-out problems (as many as normal ones)
    conflict_direction: str = "both"  # shortcut: the conflicts' verbs (CONFLICT_DIRECTIONS)

    def __post_init__(self):
        if self.conflict_direction not in CONFLICT_DIRECTIONS:
            raise UserError(f"--conflict-direction must be one of {', '.join(CONFLICT_DIRECTIONS)}, "
                            f"got {self.conflict_direction!r}")
        if self.conflict_direction != "both" and not self.shortcut:
            raise UserError("--conflict-direction only applies to the shortcut task (--shortcut)")
        if self.shortcut and self.gsm8k is not None:  # each replaces the procedural task: a run needs to know which
            raise UserError("--shortcut and --gsm8k are two different tasks: choose one")
        # the shortcut task would ignore --ops and --steps: only their defaults (given or not) pass
        ignored = "its own one-step '+'/'-' problems"
        if self.shortcut and set(self.ops) != set(Task.ops):
            raise UserError(f"--shortcut draws {ignored}: --ops {self.ops} does not apply")
        if self.shortcut and tuple(self.steps) != Task.steps:
            raise UserError(f"--shortcut draws {ignored}: --steps {' '.join(map(str, self.steps))} does not apply")

    @classmethod
    def from_args(cls, args):
        """The Task of parsed CLI flags (the fields a parser defines; the others keep their defaults)."""
        given = {k: getattr(args, k) for k in cls.__dataclass_fields__ if getattr(args, k, None) is not None}
        return cls(**{**given, **({"steps": tuple(given["steps"])} if "steps" in given else {})})

    @property
    def slices(self):
        return SLICES if self.shortcut else ["all"]

    def problems(self, n, seed, split, use="test"):
        """n problems of the split for `use` ("sft", "rl" or "test": which conflict fraction they hold)."""
        frac = {"sft": self.sft_conflict_frac, "rl": self.rl_conflict_frac, "test": self.test_conflict_frac}[use]
        return problems(n, seed, split, steps=tuple(self.steps), max_num=self.max_num, ops=self.ops, gsm8k=self.gsm8k,
                        gsm8k_test=self.gsm8k_test, shortcut=self.shortcut, conflict_frac=frac,
                        conflict_direction=self.conflict_direction)


NAMES = [("Ana", "she"), ("Ben", "he"), ("Carla", "she"), ("David", "he"), ("Emma", "she"),
         ("Farid", "he"), ("Grace", "she"), ("Hugo", "he"), ("Ines", "she"), ("Jamal", "he"),
         ("Kim", "she"), ("Leo", "he"), ("Maya", "she"), ("Noah", "he"), ("Olga", "she"),
         ("Pedro", "he"), ("Rosa", "she"), ("Sam", "he"), ("Tara", "she"), ("Umar", "he")]
ITEMS = ["apples", "pears", "marbles", "stickers", "pencils", "cookies", "books", "stamps",
         "shells", "cards", "eggs", "coins"]
CONTAINERS = ["box", "basket", "jar", "bag", "drawer"]
THINGS = ["book", "toy", "pen", "hat", "ball", "snack"]

# Template families. Placeholders: {N} the name, {s}/{obj}/{pos} its pronouns (she/her/her),
# {O} another name, {x} the items, {c} a container, {t} a thing, {a} the start, {b} the operand.
# A clause starting with "{s} " may be joined to the previous one with "and" (subject dropped).
FAMILIES = {
    "person": dict(
        intro=["{N} has {a} {x}.", "{N} starts with {a} {x}.", "{N} collects {a} {x}."],
        ops={"+": ["{s} buys {b} more", "{s} finds {b} more", "{O} gives {obj} {b} more",
                   "{s} gets {b} more from {O}"],
             "-": ["{s} gives {b} to {O}", "{s} loses {b}", "{s} sells {b}", "{O} takes {b} of them"],
             "*": ["{s} ends up with {b} times as many", "{pos} pile grows to {b} times its size"],
             "/": ["{s} splits them into {b} equal piles and keeps one pile",
                   "{s} puts them into {b} equal bags and keeps one bag"]},
        question=["How many {x} does {N} have now?", "How many {x} does {N} have in the end?"]),
    "container": dict(
        intro=["There are {a} {x} in a {c}.", "A {c} holds {a} {x}."],
        ops={"+": ["{N} puts in {b} more", "{N} adds {b} more", "{O} puts {b} more in"],
             "-": ["{N} takes out {b}", "{N} removes {b}", "{O} takes {b} out"],
             "*": ["{N} fills it until it holds {b} times as many"],
             "/": ["{N} splits the {x} into {b} equal groups and leaves one group in the {c}"]},
        question=["How many {x} are in the {c} now?", "How many {x} are in the {c} at the end?"]),
    "money": dict(
        intro=["{N} has {a} dollars.", "{N} saves {a} dollars."],
        ops={"+": ["{s} earns {b} dollars", "{O} gives {obj} {b} dollars", "{s} finds {b} dollars"],
             "-": ["{s} spends {b} dollars on a {t}", "{s} pays {b} dollars for a {t}",
                   "{s} gives {b} dollars to {O}"],
             "*": ["{pos} savings grow to {b} times as much"],
             "/": ["{s} splits the money equally among {b} jars and keeps one jar"]},
        question=["How many dollars does {N} have now?", "How much money does {N} have now?"]),
}
CONNECTORS = ["", "Then ", "After that, "]  # how clause 2, 3, ... start a new sentence
OBJ = {"she": "her", "he": "him"}
POS = {"she": "her", "he": "his"}
MAX_MULTIPLIER = 5  # "* b" draws b from 2..min(5, max_num): keeps products readable, like GSM8K's "3 times as many"

# The arithmetic of a step "x op b", ONE table that the generator (_problem_chain) and the split counter (_chains)
# both read: op -> (the value of x op b, the operands b that may follow the value x when the numbers go up to m).
# Nothing negative or fractional: "-" takes at most x, "/" only the divisors of an x >= 1.
OPERATIONS = {"+": (operator.add, lambda x, m: range(1, m + 1)),
              "-": (operator.sub, lambda x, m: range(1, min(m, x) + 1)),
              "*": (operator.mul, lambda x, m: range(2, min(MAX_MULTIPLIER, m) + 1)),
              "/": (operator.floordiv, lambda x, m: [b for b in range(2, m + 1) if x >= 1 and x % b == 0])}


def _question_split(question):
    """'test' for ~10% of all question texts, by a stable hash of the text itself: train and
    test are disjoint whatever the seeds, and the same question always lands in the same split.
    Disjoint questions, not solutions: a test question is mostly a training question with other names,
    items, phrasings and pronouns and the same numbers and operations, so the same worked solution.
    Measured (`python experiments.py overlap`): the solution of 98.1% of the default task's 1,000 test
    problems (seed 0) is also one of its 20,000 SFT training problems' (seed 0); on the shortcut task
    (--max-num 10: 155 possible solutions) 100% of both slices' (1,000 each)."""
    h = int.from_bytes(hashlib.sha1(question.encode()).digest()[:8], "big")
    return "test" if h % 10 == 0 else "train"


def _problem_chain(rng, n_steps, max_num, ops):
    """Start value and [(op, b, result)] with no negative or fractional intermediate, or None
    if the draw got stuck (e.g. ops='-' and the total reached 0)."""
    x = a = rng.randint(1, max_num)
    out = []
    for _ in range(n_steps):
        choices = _step_choices(x, max_num, ops)
        if not choices:
            return None
        op, bs = rng.choice(choices)  # op first, then operand: every op is equally likely
        b = rng.choice(bs)
        x = OPERATIONS[op][0](x, b)
        out.append((op, b, x))
    return a, out


def _step_choices(x, max_num, ops):
    """[(op, operands)] that may follow the value x (OPERATIONS), for each op of ops that has an operand."""
    choices = [(op, list(OPERATIONS[op][1](x, max_num))) for op in ops]
    return [(op, bs) for op, bs in choices if bs]


# The rules of a question's text, read by the generator (_problem_text) and the split counter (_question_texts)

def _slots(name, s, other, x, c, t, a):
    """The values of a template's placeholders (FAMILIES)."""
    return dict(N=name, O=other, s=s, obj=OBJ[s], pos=POS[s], x=x, c=c, t=t, a=a)


def _joins(clause, last, sentence):
    """Whether a clause about {s} may join the sentence before it, "She buys 7 more and gives 5 to Ben.": when
    that one is about {s} too (last: its subject) and holds no "and" yet. The generator joins half of these."""
    return clause[:4] == "{s} " and last == "{s} " and " and " not in clause + sentence


def _named(clause, last):
    """The clause, or, after a clause about {O}, a clause about {s} that names her again ("Ben takes 2. She
    loses 1." is ambiguous)."""
    return "{N} " + clause[4:] if clause[:4] == "{s} " and last == "{O} " else clause


def _singular(text):
    return re.sub(r"\b1 (\w+)s\b", r"1 \1", text)  # "1 apples" -> "1 apple"


def _problem_text(rng, a, chain, cue=None):
    """Question text for a chain, in a random family/phrasing/cast. cue ('+' or '-'): end with the
    shortcut task's question that carries that operation's cue word (CUE_QUESTIONS)."""
    family = rng.choice(sorted(FAMILIES))
    fam = FAMILIES[family]
    (name, s), (other, _) = rng.sample(NAMES, 2)
    slots = _slots(name, s, other, rng.choice(ITEMS), rng.choice(CONTAINERS), rng.choice(THINGS), a)
    sentences = [rng.choice(fam["intro"]).format(**slots)]
    last = None  # subject of the previous clause: "{s} ", "{O} ", "{N} ", "{pos"; "and" after a join
    for i, (op, b, _) in enumerate(chain):
        clause = rng.choice(fam["ops"][op])
        if _joins(clause, last, sentences[-1]) and rng.random() < 0.5:
            sentences[-1] = sentences[-1][:-1] + " and " + clause[4:].format(b=b, **slots) + "."
            last = "and"  # at most one "and" per sentence
            continue
        text = _named(clause, last).format(b=b, **slots)
        last = clause[:4]
        lead = rng.choice(CONNECTORS) if i > 0 else ""
        text = lead + text if lead else text[0].upper() + text[1:]
        sentences.append(text + ".")
    question = CUE_QUESTIONS[family][cue] if cue else rng.choice(fam["question"])
    sentences.append(question.format(**slots))
    return _singular(" ".join(sentences))


# How many distinct questions a split holds. Drawing stalls when a split runs out of questions, and only
# then do the generators count them (below): exactly, by writing every question the generator can write
# and hashing it like _question_split. The count costs about as much as the draws that exhausted the split.

STALLED = 10_000  # draws in a row without a new question of the split: time to count what it holds


def _chains(n_steps, max_num, ops):
    """Every (start, chain) of n_steps that _problem_chain can return."""
    def extend(x, chain):
        if len(chain) == n_steps:
            yield chain
            return
        for op, bs in _step_choices(x, max_num, ops):
            for b in bs:
                y = OPERATIONS[op][0](x, b)
                yield from extend(y, chain + [(op, b, y)])
    for a in range(1, max_num + 1):
        for chain in extend(a, []):
            yield a, chain


def _question_texts(a, chain, cue=None):
    """Every question text _problem_text can write for a chain: its steps replayed on the templates for every
    choice it can make, then the templates filled in with every value of the slots they use (the slots they
    do not use -- a container in a money problem, the other name when no clause names them -- are drawn but
    change nothing). "^" marks a sentence that _problem_text capitalises."""
    def clauses(fam, i, sentences, last):
        if i == len(chain):
            yield sentences
            return
        op, b, _ = chain[i]
        for clause in fam["ops"][op]:
            if _joins(clause, last, sentences[-1]):  # joined, and (below) not
                joined = sentences[-1][:-1] + " and " + clause[4:].replace("{b}", str(b)) + "."
                yield from clauses(fam, i + 1, sentences[:-1] + [joined], "and")
            text = _named(clause, last).replace("{b}", str(b))
            for lead in (CONNECTORS if i > 0 else [""]):
                yield from clauses(fam, i + 1, sentences + [(lead + text if lead else "^" + text) + "."], clause[:4])

    for family in sorted(FAMILIES):
        fam = FAMILIES[family]
        for intro in fam["intro"]:
            for sentences in clauses(fam, 0, [intro], None):
                for question in ([CUE_QUESTIONS[family][cue]] if cue else fam["question"]):
                    yield from _fill_in(sentences + [question], a)


def _fill_in(template, a):
    """Every text of a question template (a list of sentences): each value of each slot it uses."""
    used = set(re.findall(r"{(\w+)}", "".join(template)))
    person, other = bool(used & {"N", "s", "obj", "pos"}), "O" in used
    casts = {(n if person else NAMES[0], o if other else NAMES[0]) for n in NAMES for o in NAMES if n != o}
    for (name, s), (o, _) in casts:  # the ordered pairs of rng.sample(NAMES, 2), as far as the text tells
        for x in (ITEMS if "x" in used else ITEMS[:1]):
            for c in (CONTAINERS if "c" in used else CONTAINERS[:1]):
                for t in (THINGS if "t" in used else THINGS[:1]):
                    sentences = [part.format(**_slots(name, s, o, x, c, t, a)) for part in template]
                    yield _singular(" ".join(f[1].upper() + f[2:] if f[0] == "^" else f for f in sentences))


def _split_texts(split, chains, cues=None):
    """Every distinct question of the split the generator can write for these chains (cues: a shortcut slice's
    {the operation of a chain's verb: the operation its question's cue suggests}, _slice_rule; None: the
    procedural task's questions)."""
    texts = set()
    for a, chain in chains:
        cue = cues[chain[0][0]] if cues else None
        texts.update(q for q in _question_texts(a, chain, cue) if _question_split(q) == split)
    return texts


def _split_size(split, chains, cues=None):
    """Exactly how many distinct questions of the split the generator can write for these chains (_split_texts)."""
    return len(_split_texts(split, chains, cues))


def make_problems(n, seed=0, split="train", steps=Task.steps, max_num=Task.max_num, ops=Task.ops):
    """n distinct word problems of the given split, deterministic from (seed, split, knobs); a UserError
    saying how many the split holds if that is fewer than n.

    steps:   allowed numbers of operations (an int or a tuple, each drawn uniformly)
    max_num: every number in the question is in 1..max_num (multipliers in 2..min(5, max_num))
    ops:     a subset of "+-*/"; '/' is always exact; intermediates are never negative.
    The defaults (Task's: 1-2 steps, numbers <= 10, '+-') are the base task; harder held-out splits:
    max_num=20, and steps=(3,), ops="+-*".
    """
    steps = (steps,) if isinstance(steps, int) else tuple(steps)
    if split not in ("train", "test"):
        raise UserError(f"split must be 'train' or 'test', got {split!r}")
    if not steps or any(not isinstance(k, int) or k < 1 for k in steps):
        raise UserError(f"steps must be positive ints, got {steps!r}")
    if not ops or set(ops) - set(OPERATIONS):
        raise UserError(f"ops must be a non-empty subset of '{''.join(OPERATIONS)}', got {ops!r}")
    if max_num < 1 or (set(ops) <= set("*/") and max_num < 2):
        raise UserError(f"max_num={max_num} is too small for ops={ops!r}")
    ops = "".join(sorted(set(ops), key=list(OPERATIONS).index))  # "-+" and "+-" give the same problems
    # A str seed goes through sha512 in random.seed: stable across runs and PYTHONHASHSEED.
    rng = random.Random(f"{seed}|{split}|{steps}|{max_num}|{ops}")
    problems, seen, misses, size = [], set(), 0, None
    while len(problems) < n:
        drawn = _problem_chain(rng, rng.choice(steps), max_num, ops)
        question = None if drawn is None else _problem_text(rng, *drawn)
        if question is None or _question_split(question) != split or question in seen:
            misses += 1
            if misses == STALLED:  # the split may be exhausted: count what it holds (once)
                chains = [c for k in sorted(set(steps)) for c in _chains(k, max_num, ops)]
                size = _split_size(split, chains) if size is None else size
                if n > size:
                    raise UserError(f"the {split!r} split of the task steps={steps} max_num={max_num} ops={ops!r} "
                                    f"holds exactly {size} distinct problems: asked for {n}")
            continue
        misses = 0
        a, chain = drawn
        seen.add(question)
        eqs, x = [], a
        for op, b, y in chain:
            eqs.append(f"{x}{op}{b}={y}.")
            x = y
        problems.append(Problem(question, " ".join(eqs) + f" #### {x}", str(x)))
    return problems


# -----------------------------------------------------------------------------
# 2b. The shortcut task: a surface cue that predicts the operation, and conflict problems where it lies
#
# One-step problems. In the worked solutions the question's cue word almost always gives the operation
# away: "... left?" follows a subtraction, "... now?" an addition. A *conflict* problem pairs the verb of
# one operation with the cue of the other ("Ana has 7 apples. She buys 5 more. How many apples does Ana
# have left?" = 7+5=12): the verb decides. With conflict problems rare among the worked solutions, a
# small model learns the cue, and on the conflict slice it is confidently and systematically wrong, with
# the right operation as its runner-up: the case where negative samples carry information.

CUE_QUESTIONS = {  # family -> the operation the question's cue word suggests -> the question
    "person": {"-": "How many {x} does {N} have left?", "+": "How many {x} does {N} have now?"},
    "container": {"-": "How many {x} are left in the {c}?", "+": "How many {x} are in the {c} now?"},
    "money": {"-": "How much money does {N} have left?", "+": "How much money does {N} have now?"},
}
# The conflicts' verbs. "both" (the default): either operation, so every normal problem shares its cue with
# conflicts of one direction, and the addition conflicts whose cue says "a-b" with b > a (about 22% of all
# conflicts) have a shortcut the model never saw written (a negative number). "add": addition verbs with the
# "left" cue only; "sub": subtraction verbs with the "now" cue only (every shortcut a+b is possible).
CONFLICT_DIRECTIONS = {"both": "+-", "add": "+", "sub": "-"}


def _slice_rule(kind, direction):
    """A shortcut slice's rule, ONE for the generator (make_shortcut_problems) and the split counter: (the
    operations its problems' verbs perform, {a verb's operation: the operation its question's cue suggests}).
    A normal problem's cue agrees with its verb; a conflict problem's names the other operation, and its verbs
    are the direction's (CONFLICT_DIRECTIONS)."""
    if kind == "normal":
        return "+-", {"+": "+", "-": "-"}
    return CONFLICT_DIRECTIONS[direction], {"+": "-", "-": "+"}


def make_shortcut_problems(n, seed=0, split="train", conflict_frac=Task.test_conflict_frac, max_num=Task.max_num,
                           direction=Task.conflict_direction):
    """n distinct one-step '+'/'-' problems of the split; exactly round(n * conflict_frac) of them are
    conflict problems (cue and verb disagree; their verbs: CONFLICT_DIRECTIONS[direction]), in random positions.
    Deterministic from the arguments; a UserError saying how many the split holds if a slice holds fewer than
    asked for (or fewer than the other slice's draws leave of the questions the two share)."""
    if direction not in CONFLICT_DIRECTIONS:
        raise UserError(f"the conflict direction must be one of {', '.join(CONFLICT_DIRECTIONS)}, got {direction!r}")
    if split not in ("train", "test"):
        raise UserError(f"split must be 'train' or 'test', got {split!r}")
    if not 0.0 <= conflict_frac <= 1.0:
        raise UserError(f"the fraction of conflict problems must be in [0, 1], got {conflict_frac}")
    if max_num < 2:
        raise UserError(f"max_num={max_num} is too small for the shortcut task")
    rng = random.Random(f"shortcut|{seed}|{split}|{max_num}")
    kinds = ["conflict"] * round(n * conflict_frac) + ["normal"] * (n - round(n * conflict_frac))
    rng.shuffle(kinds)
    rules = {kind: _slice_rule(kind, direction) for kind in SLICES}  # kind -> (its verbs' operations, their cues)
    problems, seen, texts = [], set(), None
    for kind in kinds:
        verbs, cues = rules[kind]
        misses = 0
        while True:
            a, chain = _problem_chain(rng, 1, max_num, verbs)
            op, b, x = chain[0]
            question = _problem_text(rng, a, chain, cues[op])
            if _question_split(question) == split and question not in seen:
                break
            misses += 1
            if misses % STALLED == 0:  # a slice may be exhausted: are enough of its questions left undrawn?
                # Its size alone does not tell: the slices share a question when a cue question does not depend on
                # the cue, and one that the other slice drew is gone (such a request used to draw forever).
                texts = texts or {k: _split_texts(split, _chains(1, max_num, v), c) for k, (v, c) in rules.items()}
                if any(kinds[len(problems):].count(k) > len(texts[k] - seen) for k in texts):
                    shared = len(texts["conflict"] & texts["normal"])
                    raise UserError(f"the {split!r} split of the shortcut task with max_num={max_num} and conflict "
                                    f"direction {direction!r} holds exactly {len(texts['conflict'])} conflict and "
                                    f"{len(texts['normal'])} normal problems"
                                    f"{f', {shared} questions of them in both slices' if shared else ''}: asked for "
                                    f"{kinds.count('conflict')} conflict and {kinds.count('normal')} normal")
        seen.add(question)
        problems.append(Problem(question, f"{a}{op}{b}={x}. #### {x}", str(x), kind))
    return problems


def format_prompt(question):
    return f"Q: {question}\nA:"


def format_completion(solution):
    return f" {solution}"  # the model then emits EOS


# Answer extraction, exactly GSM8K's regex; like GSM8K's own grader (re.search) the FIRST
# "#### N" in the text counts, so a model cannot hedge with several answers.
ANS_RE = re.compile(r"#### (\-?[0-9\.\,]+)")


def _parse_number(s):
    """'1,000' -> Decimal('1000'), '14.' -> Decimal('14'); None if it is not a number ('1.2.3', '-')."""
    s = s.strip().replace(",", "").rstrip(".")
    try:
        d = Decimal(s)
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def extract_answer(text):
    """The first '#### N' as a normalised number string (commas removed, trailing '.' stripped), or None."""
    m = ANS_RE.search(text)
    if m is None:
        return None
    s = m.group(1).replace(",", "").rstrip(".")
    return s if _parse_number(s) is not None else None


def is_invalid(text):
    """No parsable '#### N': counted separately from wrong answers (reward is -1 for both)."""
    return extract_answer(text) is None


def reward(completion_text, answer):
    """+1.0 if the first '#### N' equals the answer numerically ('1,000' == '1000', '14.0' == '14'), else -1.0."""
    gold = _parse_number(str(answer))
    if gold is None:
        raise UserError(f"reward: the reference answer {answer!r} is not a number")
    pred = extract_answer(completion_text)
    return 1.0 if pred is not None and _parse_number(pred) == gold else -1.0


# -----------------------------------------------------------------------------
# 3. Verification: the same model as a *generative verifier* (TOPR Sec. 5)
#
# The verifier reads a problem and a candidate solution and answers with one word:
#
#   Q: Ana has 12 apples. She buys 7 more. How many apples does Ana have now?
#   A: 12+7=20. #### 20
#   Correct? No
#
# The prompt starts with the solving prompt, so a model that learnt to solve reuses what it knows.
# Its reward is +1 when the verdict matches the truth (is the candidate's final answer right?) and
# -1 otherwise. "Yes" and "No" differ in their FIRST token for both tokenizers, so the judgement is
# one next-token choice: P(Yes) is read off the logits at the end of the prompt.

VERIFY_QUESTION = "\nCorrect? "
VERDICTS = ("Yes", "No")


def format_verify_prompt(question, candidate):
    """Verification prompt for a candidate solution (the decoded completion, e.g. " 12+7=19. #### 19")."""
    return format_prompt(question) + candidate + VERIFY_QUESTION


def verdict_ids(tok):
    """(yes_id, no_id): the first token of "Yes" and of "No" -- the verifier's two possible actions."""
    yes, no = (tok.encode(v)[0] for v in VERDICTS)
    if yes == no:
        raise UserError(f"'Yes' and 'No' start with the same token under tokenizer {tok.name!r}")
    return yes, no


def verify_reward(verdict, candidate, answer):
    """+1.0 if the verdict ("Yes"/"No") matches whether the candidate's final answer is right, else -1.0
    (anything but exactly "Yes" or "No" is never right). An invalid candidate (no '#### N') is wrong."""
    if verdict not in VERDICTS:
        return -1.0
    correct = reward(candidate, answer) > 0
    return 1.0 if (verdict == "Yes") == correct else -1.0


# -----------------------------------------------------------------------------
# 4. GSM8K (https://github.com/openai/grade-school-math): one JSON object per line

def load_gsm8k(path):
    """Problems from a GSM8K jsonl file ({"question": ..., "answer": "... #### 42"} per line).
    solution = the answer field as written (its worked steps, <<calc>> annotations and '#### N');
    answer = the extracted number. Blank lines are skipped; anything else malformed is a UserError
    naming the file and line."""
    if not os.path.isfile(path):
        raise UserError(f"GSM8K file not found: {path}")
    problems = []
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            lines = list(f)
        except UnicodeDecodeError as e:
            raise UserError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})")
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"{path}:{lineno}: bad JSON ({e.msg}, column {e.colno})")
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("question", "answer")):
            raise UserError(f"{path}:{lineno}: expected an object with string fields 'question' and 'answer'")
        answer = extract_answer(row["answer"])
        if answer is None:
            raise UserError(f"{path}:{lineno}: the answer field has no final '#### N'")
        problems.append(Problem(row["question"].strip(), row["answer"].strip(), answer))
    if not problems:
        raise UserError(f"{path}: contains no problems")
    return problems


# -----------------------------------------------------------------------------
# 5. Problems of a split: the one entry point of every script (Task.problems calls it)

def _gsm8k_is_val(question):
    """5% of a GSM8K training file, by a stable hash of the question, is the validation split:
    disjoint from the training problems whatever the seed."""
    return int.from_bytes(hashlib.sha1(question.encode()).digest()[:8], "big") % 20 == 0


def parse_step(solution):
    """(a, op, b, result) as strings of the first step "a<op>b=x" of a worked solution, or None. Any of the
    numbers may be negative: a sampled completion may write the shortcut "3-5=-2"."""
    m = re.search(r"(-?\d+)([-+*/])(-?\d+)=(-?\d+)", solution)
    return m.groups() if m else None


def problems(n, seed=0, split="train", steps=Task.steps, max_num=Task.max_num, ops=Task.ops, gsm8k=None,
             gsm8k_test=None, shortcut=False, conflict_frac=Task.test_conflict_frac,
             conflict_direction=Task.conflict_direction):
    """n problems of a split ('train', 'val' or 'test'), deterministic from seed.

    Shortcut task (shortcut=True): make_shortcut_problems with conflict_frac, max_num and conflict_direction.
    Procedural task (default): make_problems with the knobs steps / max_num / ops; 'val' is drawn from
    the training question space with another seed (callers drop any question that is also in training).
    GSM8K (gsm8k = a train jsonl): 'train' = a seeded shuffle of the file minus the 5% held out as 'val'
    (so every RL iteration, with its own seed, sees other prompts); 'test' = the first n problems of
    gsm8k_test, which is required: the training file is never the held-out set."""
    if split not in ("train", "val", "test"):
        raise UserError(f"split must be 'train', 'val' or 'test', got {split!r}")
    if shortcut:  # the shortcut task: conflict_frac of the problems are conflict problems
        if split == "val":
            return make_shortcut_problems(n, seed + 1000, "train", conflict_frac, max_num, conflict_direction)
        return make_shortcut_problems(n, seed, split, conflict_frac, max_num, conflict_direction)
    if gsm8k is None:
        if split == "val":
            return make_problems(n, seed=seed + 1000, split="train", steps=steps, max_num=max_num, ops=ops)
        return make_problems(n, seed=seed, split=split, steps=steps, max_num=max_num, ops=ops)
    if split == "test":
        if gsm8k_test is None:
            raise UserError("--gsm8k needs --gsm8k-test <test jsonl> for the held-out evaluation")
        return load_gsm8k(gsm8k_test)[:n]
    pool = [p for p in load_gsm8k(gsm8k) if _gsm8k_is_val(p.question) == (split == "val")]
    if not pool:
        raise UserError(f"{gsm8k}: no problem falls in the {split!r} split (the file is too small)")
    random.Random(f"{seed}|{split}").shuffle(pool)
    return pool[:n]


def encode_example(tok, problem):
    """(prompt ids, completion ids ending in EOS) for one worked problem."""
    prompt = tok.encode(format_prompt(problem.question))
    completion = tok.encode(format_completion(problem.solution)) + [tok.eos_id]
    return prompt, completion


def fitting(items, lengths, limit, what, fix):
    """(the items whose length in tokens is at most limit, in their order; how many were dropped). One over-long
    GSM8K example (a long worked solution, a long question) is dropped and counted rather than ending the run;
    none left is a one-line UserError: `what` names the items ("training example"), `fix` says what to change."""
    kept = [x for x, n in zip(items, lengths) if n <= limit]
    if items and not kept:
        raise UserError(f"every {what} ({len(items)}) is longer than {max(limit, 0)} tokens (the shortest has "
                        f"{min(lengths, default=0)}): {fix}")
    return kept, len(items) - len(kept)


def prompts_fitting(tok, problems, block_size, max_new_tokens, what):
    """fitting for prompts that sample up to max_new_tokens: prompt + max_new_tokens <= block_size (eval.check_fits's
    rule), so generation never runs past the context."""
    lengths = [len(tok.encode(format_prompt(p.question))) for p in problems]
    return fitting(problems, lengths, block_size - max_new_tokens, what, "raise --block-size or lower --max-new-tokens")
