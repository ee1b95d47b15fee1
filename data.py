"""
data.py -- everything the models eat, and every file the repo reads or writes.

  1. Files: atomic checkpoints (write temp, fsync, rename).
  2. Text: an offline byte-level tiktoken tokenizer (or GPT-2 BPE from local files).
  3. Text: a procedural GSM8K-style word-problem task, its reward, the verification format
     (a problem + a candidate solution -> Yes/No), and a GSM8K jsonl loader.
  4. Images: procedural MNIST-like digits, and real MNIST IDX files.

Imports nothing from this repo (model.py and topr.py never import it either).
"""
import os
import random
import signal
import tempfile

import numpy as np
import torch


class DataError(ValueError):
    """Bad input (missing/corrupt file, malformed line). Scripts print it as one line and exit 1."""


# -----------------------------------------------------------------------------
# 1. Files: atomic checkpoints

def atomic_save(obj, path):
    """torch.save to a temp file in the same folder, flush + fsync, then rename: a crash
    mid-write never leaves a truncated checkpoint behind (rename is atomic on POSIX)."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-", suffix=".pt")
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def rng_state():
    """Every global RNG a run may touch (torch, CUDA, numpy, python), as checkpoint-safe values."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": torch.from_numpy(keys.astype(np.int64)), "numpy_pos": int(pos),
            "numpy_gauss": (int(has_gauss), float(gauss)), "python": random.getstate()}


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    has_gauss, gauss = state["numpy_gauss"]
    np.random.set_state(("MT19937", state["numpy"].numpy().astype(np.uint32), state["numpy_pos"], has_gauss, gauss))
    random.setstate(state["python"])


def load_checkpoint(path):
    """Load a checkpoint written by atomic_save, with weights_only=True (no pickled code)."""
    if not os.path.isfile(path):
        raise DataError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DataError(f"corrupt or unreadable checkpoint {path}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")


# -----------------------------------------------------------------------------
# Runs: Ctrl-C and multi-process (torchrun) set-up, shared by train.py and gsn.py

class StopFlag:
    """Ctrl-C sets a flag; the loop saves a checkpoint at the next step and exits cleanly."""

    def __init__(self):
        self.stop = False
        signal.signal(signal.SIGINT, self._handler)

    def _handler(self, *_):
        if self.stop:  # second Ctrl-C: give up immediately
            raise KeyboardInterrupt
        print("\nSIGINT: saving a checkpoint and stopping (Ctrl-C again to abort)", flush=True)
        self.stop = True


def ddp_setup():
    """(rank, world_size, device or None). Under torchrun (WORLD_SIZE > 1) join the process group, as
    nanoGPT does: nccl on CUDA (one GPU per process), gloo on CPU. A single process gets None: the
    caller chooses its device as usual."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, None  # the caller picks the device
    import torch.distributed as dist
    if torch.cuda.is_available():
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        dist.init_process_group("nccl")
        return dist.get_rank(), world, torch.device("cuda", local)
    dist.init_process_group("gloo")
    return dist.get_rank(), world, torch.device("cpu")


def ddp_cleanup(ok=True):
    """Leave the process group. After a normal run every rank first waits at a barrier: a rank that
    finished early (rank 1 while rank 0 still evaluates and saves) must not tear the group down under
    the others (gloo aborts the process: "terminate called without an active exception")."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        if ok:
            dist.barrier()
        dist.destroy_process_group()


# =============================================================================
# TEXT HALF (sections 2 and 3) -- owned by the text task work
# =============================================================================

# Imported here rather than at the top so this half stays inside its own region of the file.
import hashlib
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import tiktoken
import tiktoken.load  # GPT-2's data-gym file reader (not imported by `import tiktoken`)

# -----------------------------------------------------------------------------
# 2. Text: tokenizer

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
    silently into a wrong state: any failure becomes a DataError that says how to fix it."""
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
        raise DataError(
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
    raise DataError(f"unknown tokenizer {name!r}: choose 'byte' or 'gpt2'")


# -----------------------------------------------------------------------------
# 3. Text: the task -- GSM8K in miniature
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


def _question_split(question):
    """'test' for ~10% of all question texts, by a stable hash of the text itself: train and
    test are disjoint whatever the seeds, and the same question always lands in the same split."""
    h = int.from_bytes(hashlib.sha1(question.encode()).digest()[:8], "big")
    return "test" if h % 10 == 0 else "train"


def _problem_chain(rng, n_steps, max_num, ops):
    """Start value and [(op, b, result)] with no negative or fractional intermediate, or None
    if the draw got stuck (e.g. ops='-' and the total reached 0)."""
    x = a = rng.randint(1, max_num)
    out = []
    for _ in range(n_steps):
        choices = []
        for op in ops:
            if op == "+":
                choices.append((op, list(range(1, max_num + 1))))
            elif op == "-" and x >= 1:
                choices.append((op, list(range(1, min(max_num, x) + 1))))
            elif op == "*" and max_num >= 2:
                choices.append((op, list(range(2, min(MAX_MULTIPLIER, max_num) + 1))))
            elif op == "/":
                divisors = [b for b in range(2, max_num + 1) if x >= 1 and x % b == 0]
                if divisors:
                    choices.append((op, divisors))
        if not choices:
            return None
        op, bs = rng.choice(choices)  # op first, then operand: every op is equally likely
        b = rng.choice(bs)
        x = {"+": x + b, "-": x - b, "*": x * b, "/": x // b}[op]
        out.append((op, b, x))
    return a, out


def _problem_text(rng, a, chain):
    """Question text for a chain, in a random family/phrasing/cast."""
    fam = FAMILIES[rng.choice(sorted(FAMILIES))]
    (name, s), (other, _) = rng.sample(NAMES, 2)
    slots = dict(N=name, O=other, s=s, obj=OBJ[s], pos=POS[s], x=rng.choice(ITEMS),
                 c=rng.choice(CONTAINERS), t=rng.choice(THINGS), a=a)
    sentences = [rng.choice(fam["intro"]).format(**slots)]
    last = None  # subject of the previous clause: "{s} ", "{O} ", "{N} ", "{pos"
    for i, (op, b, _) in enumerate(chain):
        clause = rng.choice(fam["ops"][op])
        subject, last_subject = clause[:4], last
        last = subject
        if (subject == "{s} " and last_subject == "{s} " and " and " not in clause + sentences[-1]
                and rng.random() < 0.5):
            # "She buys 7 more and gives 5 to Ben.": only when both clauses are about {s}
            sentences[-1] = sentences[-1][:-1] + " and " + clause[4:].format(b=b, **slots) + "."
            last = "and"  # at most one "and" per sentence
            continue
        if subject == "{s} " and last_subject == "{O} ":
            clause = "{N} " + clause[4:]  # "Ben takes 2. She loses 1." is ambiguous: name her again
        text = clause.format(b=b, **slots)
        lead = rng.choice(CONNECTORS) if i > 0 else ""
        text = lead + text if lead else text[0].upper() + text[1:]
        sentences.append(text + ".")
    sentences.append(rng.choice(fam["question"]).format(**slots))
    return re.sub(r"\b1 (\w+)s\b", r"1 \1", " ".join(sentences))  # "1 apples" -> "1 apple"


def make_problems(n, seed=0, split="train", steps=(1, 2), max_num=10, ops="+-"):
    """n distinct word problems of the given split, deterministic from (seed, split, knobs).

    steps:   allowed numbers of operations (an int or a tuple, each drawn uniformly)
    max_num: every number in the question is in 1..max_num (multipliers in 2..min(5, max_num))
    ops:     a subset of "+-*/"; '/' is always exact; intermediates are never negative.
    The default (1-2 steps, numbers <= 10, '+-') is the base task; harder held-out splits:
    max_num=20, and steps=(3,), ops="+-*".
    """
    steps = (steps,) if isinstance(steps, int) else tuple(steps)
    if split not in ("train", "test"):
        raise DataError(f"split must be 'train' or 'test', got {split!r}")
    if not steps or any(not isinstance(k, int) or k < 1 for k in steps):
        raise DataError(f"steps must be positive ints, got {steps!r}")
    if not ops or set(ops) - set("+-*/"):
        raise DataError(f"ops must be a non-empty subset of '+-*/', got {ops!r}")
    if max_num < 1 or (set(ops) <= set("*/") and max_num < 2):
        raise DataError(f"max_num={max_num} is too small for ops={ops!r}")
    ops = "".join(sorted(set(ops), key="+-*/".index))  # "-+" and "+-" give the same problems
    # A str seed goes through sha512 in random.seed: stable across runs and PYTHONHASHSEED.
    rng = random.Random(f"{seed}|{split}|{steps}|{max_num}|{ops}")
    problems, seen = [], set()
    budget = 200 * n + 1000  # draws before giving up on distinctness (tiny task spaces)
    while len(problems) < n:
        drawn = _problem_chain(rng, rng.choice(steps), max_num, ops)
        if drawn is None:
            continue
        a, chain = drawn
        question = _problem_text(rng, a, chain)
        budget -= 1
        if _question_split(question) != split or (question in seen and budget > 0):
            continue
        seen.add(question)
        eqs, x = [], a
        for op, b, y in chain:
            eqs.append(f"{x}{op}{b}={y}.")
            x = y
        problems.append(Problem(question, " ".join(eqs) + f" #### {x}", str(x)))
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
        raise DataError(f"reward: the reference answer {answer!r} is not a number")
    pred = extract_answer(completion_text)
    return 1.0 if pred is not None and _parse_number(pred) == gold else -1.0


# -----------------------------------------------------------------------------
# 3b. Verification: the same model as a *generative verifier* (TOPR Sec. 5)
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
        raise DataError(f"'Yes' and 'No' start with the same token under tokenizer {tok.name!r}")
    return yes, no


def verify_reward(verdict, candidate, answer):
    """+1.0 if the verdict ("Yes"/"No") matches whether the candidate's final answer is right, else -1.0
    (anything but exactly "Yes" or "No" is never right). An invalid candidate (no '#### N') is wrong."""
    if verdict not in VERDICTS:
        return -1.0
    correct = reward(candidate, answer) > 0
    return 1.0 if (verdict == "Yes") == correct else -1.0


def load_gsm8k(path):
    """Problems from a GSM8K jsonl file ({"question": ..., "answer": "... #### 42"} per line).
    solution = the answer field as written (its worked steps, <<calc>> annotations and '#### N');
    answer = the extracted number. Blank lines are skipped; anything else malformed is a DataError
    naming the file and line."""
    if not os.path.isfile(path):
        raise DataError(f"GSM8K file not found: {path}")
    problems = []
    with open(path, encoding="utf-8", errors="strict") as f:
        try:
            lines = list(f)
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})")
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{lineno}: bad JSON ({e.msg}, column {e.colno})")
        if not isinstance(row, dict) or not all(isinstance(row.get(k), str) for k in ("question", "answer")):
            raise DataError(f"{path}:{lineno}: expected an object with string fields 'question' and 'answer'")
        answer = extract_answer(row["answer"])
        if answer is None:
            raise DataError(f"{path}:{lineno}: the answer field has no final '#### N'")
        problems.append(Problem(row["question"].strip(), row["answer"].strip(), answer))
    if not problems:
        raise DataError(f"{path}: contains no problems")
    return problems

# =============================================================================
# IMAGE HALF (section 4) -- owned by the GSN work
# =============================================================================

# Images are flat float32 rows of 784 = 28x28 pixels in [0, 1] (0 = background, like MNIST), and
# int64 labels 0-9. Two sources with the same shapes: a procedural MNIST-like generator (the default:
# no download needed) and the real MNIST IDX files.
import gzip
import struct

# -----------------------------------------------------------------------------
# 4a. Procedural MNIST-like digits
#
# Each digit is a skeleton of strokes (lines, elliptic arcs, quadratic Bezier curves) in a box about
# 0.6 wide and 1 tall (x right, y DOWN, like image rows), with jittered parameters and 1-3 variants
# per class (1 with/without flag, open/closed 4, 7 with/without bar, ...). A random slant (shear),
# rotation, aspect change and a smooth sinusoidal wobble vary the shape; the strokes are then drawn
# as a distance field (anti-aliased, width 1.6-3.4 px), slightly blurred, and placed like MNIST
# (LeCun et al.): the longer side of the ink scaled to 20 px, centre of mass at pixel (13.5, 13.5).
# Everything is vectorised over the images of one variant, so 70k images take seconds, not minutes.

def _line(p0, p1):
    """Straight stroke between (n, 2) points -> (n, 2, 2) polyline."""
    return np.stack([p0, p1], axis=1)


def _poly(*pts):
    """Polyline through (n, 2) points -> (n, k, 2)."""
    return np.stack(pts, axis=1)


def _arc(cx, cy, rx, ry, a0, a1, k=12):
    """Elliptic arc from angle a0 to a1 (degrees; y is down, so +90 is the bottom) -> (n, k+1, 2)."""
    t = np.linspace(0.0, 1.0, k + 1)
    a = np.deg2rad(a0[:, None] + (a1 - a0)[:, None] * t)
    return np.stack([cx[:, None] + rx[:, None] * np.cos(a), cy[:, None] + ry[:, None] * np.sin(a)], -1)


def _bezier(p0, p1, p2, k=8):
    """Quadratic Bezier curve with control point p1 -> (n, k+1, 2)."""
    t = np.linspace(0.0, 1.0, k + 1)[None, :, None]
    return (1 - t) ** 2 * p0[:, None] + 2 * (1 - t) * t * p1[:, None] + t ** 2 * p2[:, None]


def _skeleton(digit, variant, n, rng):
    """The strokes of one digit variant for n samples: a list of (n, k, 2) polylines."""
    J = lambda v, s=0.03: v + s * rng.standard_normal(n)   # a jittered scalar parameter, (n,)
    P = lambda x, y, s=0.03: np.stack([J(x, s), J(y, s)], 1)  # a jittered point, (n, 2)
    if digit == 0:
        a0 = J(-90, 20)
        return [_arc(J(0, .01), J(.5, .01), J(.3, .05), J(.48, .02), a0, a0 + J(365, 12), 20)]
    if digit == 1:
        top, bot = P(.04, 0), P(-.02, 1)
        s = [_line(top, bot)]
        if variant >= 1:
            s.append(_line(P(-.17, .2, .04), top))            # the flag
        if variant == 2:
            s.append(_line(P(-.16, 1, .02), P(.16, 1, .02)))  # the base
        return s
    if digit == 2:
        arc = _arc(J(0), J(.3), J(.28), J(.28), J(195, 15), J(385, 12), 10)
        end, corner = arc[:, -1], P(-.3, 1)
        s = [arc, _bezier(end, P(.05, .72, .06), corner), _line(corner, P(.33, 1, .04))]
        if variant == 1:  # a small loop at the bottom-left corner
            s[1] = _bezier(end, P(-.1, .8, .05), corner)
        return s
    if digit == 3:
        up = _arc(J(0), J(.26), J(.24), J(.24), J(200, 12), J(445, 8), 12)
        mid = up[:, -1]
        lo = _arc(mid[:, 0], mid[:, 1] + .26 + J(0, .02), J(.28), J(.26), np.full(n, -90.0), J(155, 12), 12)
        return [up, lo]
    if digit == 4:
        if variant == 0:  # closed 4: the diagonal meets the vertical at the top
            top = P(.15, 0)
            return [_poly(top, P(-.3, .65), P(.32, .65)), _line(top, P(.15, 1))]
        return [_poly(P(-.25, 0), P(-.28, .6), P(.3, .6)), _line(P(.18, .05), P(.18, 1))]  # open 4
    if digit == 5:
        corner = P(-.18, 0)
        neck = P(-.22, .45)
        belly = _arc(J(0), J(.7), J(.28), J(.28), J(-130, 8), J(150, 12), 12)
        return [_line(P(.28, 0), corner), _line(corner, neck), _bezier(neck, P(-.2, .47, .01), belly[:, 0], 2), belly]
    if digit == 6:
        a0 = J(180, 10)
        loop = _arc(J(0), J(.72), J(.27), J(.27), a0, a0 + 360, 16)
        return [_bezier(P(.22, 0), P(-.3, .2, .05), loop[:, 0]), loop]
    if digit == 7:
        corner = P(.3, 0)
        s = [_poly(P(-.3, 0), corner, P(-.05, 1, .06))]
        if variant == 1:
            s.append(_line(P(-.08, .5), P(.22, .5)))  # the crossing bar
        return s
    if digit == 8:
        a0 = J(90, 15)
        return [_arc(J(0), J(.25), J(.21), J(.23), a0, a0 + 360, 16),
                _arc(J(0), J(.72), J(.27), J(.27), a0 - 180, a0 + 180, 16)]
    if digit == 9:
        a0 = J(0, 10)
        loop = _arc(J(0), J(.27), J(.26), J(.26), a0, a0 + 360, 16)
        start = loop[:, 0]
        if variant == 0:
            return [loop, _line(start, P(.12, 1, .05))]
        return [loop, _bezier(start, P(.25, .75, .05), P(-.05, 1, .05))]  # curved stem
    raise ValueError(digit)


_VARIANTS = [1, 3, 2, 1, 2, 1, 1, 2, 1, 2]   # shape variants per digit class


def _render(a, b, width, chunk=256):
    """Anti-aliased strokes: intensity = clip(width/2 + 1/2 - distance to nearest segment, 0, 1).
    a, b: (n, S, 2) segment end points in pixel coordinates (x = column, y = row); width: (n,)."""
    ys, xs = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    grid = torch.stack([xs.reshape(-1), ys.reshape(-1)], -1)            # (784, 2)
    out = []
    for i in range(0, len(a), chunk):                                     # chunked: (c, S, 784) temps
        A, B = torch.from_numpy(a[i:i + chunk]).float(), torch.from_numpy(b[i:i + chunk]).float()
        AB = B - A
        L2 = (AB * AB).sum(-1).clamp_min(1e-6)                            # (c, S)
        GA_x = grid[None, None, :, 0] - A[..., 0:1]                       # (c, S, 784)
        GA_y = grid[None, None, :, 1] - A[..., 1:2]
        t = ((GA_x * AB[..., 0:1] + GA_y * AB[..., 1:2]) / L2[..., None]).clamp_(0, 1)
        d2 = (GA_x - t * AB[..., 0:1]) ** 2 + (GA_y - t * AB[..., 1:2]) ** 2
        d = d2.min(1).values.sqrt_()                                      # (c, 784)
        w = torch.from_numpy(width[i:i + chunk]).float()[:, None]
        out.append((w / 2 + 0.5 - d).clamp_(0, 1))
    return torch.cat(out)


def _shift(img, dx, dy):
    """Translate (n, 784) images by sub-pixel (dx, dy) with bilinear interpolation (zeros outside)."""
    n = img.shape[0]
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = -torch.as_tensor(dx, dtype=torch.float32) * 2 / 28   # grid coords are [-1, 1]
    theta[:, 1, 2] = -torch.as_tensor(dy, dtype=torch.float32) * 2 / 28
    g = torch.nn.functional.affine_grid(theta, (n, 1, 28, 28), align_corners=False)
    return torch.nn.functional.grid_sample(img.view(n, 1, 28, 28), g, align_corners=False).view(n, 784)


def _center_of_mass(img):
    """(n, 784) -> column and row of the intensity centre of mass, each (n,)."""
    m = img.view(-1, 28, 28)
    tot = m.sum((1, 2)).clamp_min(1e-6)
    r = torch.arange(28.0)
    return (m.sum(1) * r).sum(1) / tot, (m.sum(2) * r).sum(1) / tot


def make_digits(n, seed=0):
    """n procedural MNIST-like digits, deterministic from seed -> (X (n, 784) float32 in [0, 1]
    quantised to k/255 like MNIST's bytes, y (n,) int64)."""
    if n < 0:
        raise DataError(f"number of images must be >= 0, got {n}")
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    variant = np.array([rng.integers(0, _VARIANTS[d]) for d in y], dtype=np.int64) if n else np.zeros(0, np.int64)
    X = torch.zeros(n, 784)
    for d in range(10):
        for v in range(_VARIANTS[d]):
            idx = np.nonzero((y == d) & (variant == v))[0]
            m = len(idx)
            if m == 0:
                continue
            strokes = _skeleton(d, v, m, rng)
            a = np.concatenate([s[:, :-1] for s in strokes], 1)           # (m, S, 2) segment starts
            b = np.concatenate([s[:, 1:] for s in strokes], 1)            # (m, S, 2) segment ends
            pts = np.concatenate([a, b], 1)
            # shape variation: aspect, slant (shear; MNIST leans right on average), rotation, wobble
            aspect = rng.uniform(0.75, 1.25, m)
            slant = np.clip(rng.normal(0.15, 0.2, m), -0.35, 0.6)
            rot = np.deg2rad(rng.normal(0, 6, m))
            amp, freq, phase = rng.uniform(0, 0.04, (2, m)), rng.uniform(0.5, 1.5, (2, m)), rng.uniform(0, 2 * np.pi, (2, m))

            def warp(p):
                x, yy = p[..., 0] * aspect[:, None], p[..., 1] - 0.5
                x = x - slant[:, None] * yy                               # y is down: top goes right
                c, s = np.cos(rot)[:, None], np.sin(rot)[:, None]
                x, yy = c * x - s * yy, s * x + c * yy
                x = x + amp[0][:, None] * np.sin(2 * np.pi * freq[0][:, None] * yy + phase[0][:, None])
                yy = yy + amp[1][:, None] * np.sin(2 * np.pi * freq[1][:, None] * x + phase[1][:, None])
                return np.stack([x, yy], -1)

            a, b, pts = warp(a), warp(b), warp(pts)
            width = rng.uniform(1.6, 3.4, m)
            # MNIST placement: the ink's longer side -> 20 px (skeleton extent + stroke width), and the
            # length-weighted centroid of the strokes at (13.5, 13.5) (refined on the image below)
            lo, hi = pts.min(1), pts.max(1)                               # (m, 2)
            scale = (20 - width) / np.maximum((hi - lo).max(1), 1e-3)
            seg_len = np.linalg.norm(b - a, axis=-1)                      # (m, S)
            centroid = ((a + b) / 2 * seg_len[..., None]).sum(1) / seg_len.sum(1, keepdims=True)
            a = (a - centroid[:, None]) * scale[:, None, None] + 13.5
            b = (b - centroid[:, None]) * scale[:, None, None] + 13.5
            X[idx] = _render(a, b, width)
    if n:
        # slight blur (3x3 binomial kernel mixed with the sharp image), then MNIST's exact-0 background
        k = torch.tensor([1.0, 2.0, 1.0])
        k = (k[:, None] * k[None, :] / 16).view(1, 1, 3, 3)
        blurred = torch.nn.functional.conv2d(X.view(n, 1, 28, 28), k, padding=1).view(n, 784)
        X = 0.5 * X + 0.5 * blurred
        cx, cy = _center_of_mass(X)                                       # exact centring of mass
        X = _shift(X, 13.5 - cx, 13.5 - cy)
        X = X / X.max(1, keepdim=True).values.clamp_min(1e-6)            # MNIST strokes reach 1.0
        X[X < 0.08] = 0
    X = (X.clamp(0, 1) * 255).round() / 255                               # MNIST stores bytes
    return X.numpy().astype(np.float32), y.astype(np.int64)


_SPLIT_IDS = {"train": 0, "test": 1}
_SPLIT_SIZES = {"train": 60000, "test": 10000}


def load_digits(split="train", n=None, seed=0, cache_dir=None):
    """The procedural digit set: 'train' (60k) or 'test' (10k), from disjoint random streams of the
    same seed. Cached as .npz (uint8, like MNIST) under cache_dir (default: .cache/ beside this file)."""
    if split not in _SPLIT_IDS:
        raise DataError(f"unknown split {split!r} (train or test)")
    n = _SPLIT_SIZES[split] if n is None else n
    if n <= 0:
        raise DataError(f"number of images must be > 0, got {n}")
    cache_dir = cache_dir or os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache")
    path = os.path.join(cache_dir, f"digits-v1-{split}-{n}-seed{seed}.npz")
    if os.path.isfile(path):
        try:
            with np.load(path) as f:
                return f["X"].astype(np.float32) / 255, f["y"].astype(np.int64)
        except Exception:
            pass  # a damaged cache file is simply regenerated
    # SeedSequence([seed, split]) gives independent streams: train and test never share an image
    X, y = make_digits(n, np.random.SeedSequence([seed, _SPLIT_IDS[split]]))
    os.makedirs(cache_dir, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".tmp-", suffix=".npz")
    with os.fdopen(fd, "wb") as f:
        np.savez_compressed(f, X=np.round(X * 255).astype(np.uint8), y=y.astype(np.uint8))
    os.replace(tmp, path)  # atomic: a concurrent reader never sees half a file
    return X, y


# -----------------------------------------------------------------------------
# 4b. IDX files (the MNIST format, http://yann.lecun.com/exdb/mnist/): big-endian header
#   magic = 0x00 0x00 <dtype code> <ndim>, then ndim uint32 sizes, then the raw array.

_IDX_DTYPES = {0x08: np.dtype(">u1"), 0x09: np.dtype(">i1"), 0x0B: np.dtype(">i2"),
               0x0C: np.dtype(">i4"), 0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _open(path, mode):
    return gzip.open(path, mode) if str(path).endswith(".gz") else open(path, mode)


def write_idx(path, array):
    """Write a numpy array as an IDX file (gzipped when path ends in .gz)."""
    array = np.asarray(array)
    code = {np.dtype(t).kind + str(np.dtype(t).itemsize): c for c, t in _IDX_DTYPES.items()}.get(
        array.dtype.kind + str(array.dtype.itemsize))
    if code is None:
        raise DataError(f"IDX cannot store dtype {array.dtype}")
    with _open(path, "wb") as f:
        f.write(bytes([0, 0, code, array.ndim]))
        f.write(struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(_IDX_DTYPES[code]).tobytes())


def read_idx(path):
    """Read an IDX file (gzipped when path ends in .gz), validating the header and the size."""
    if not os.path.isfile(path):
        raise DataError(f"IDX file not found: {path}")
    try:
        with _open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:  # gzip: bad magic, CRC error, truncated stream
        raise DataError(f"corrupt IDX file {path}: {e}")
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise DataError(f"corrupt IDX file {path}: bad magic number {raw[:4].hex() or '(empty)'}")
    ndim, dtype = raw[3], _IDX_DTYPES[raw[2]]
    if len(raw) < 4 + 4 * ndim:
        raise DataError(f"truncated IDX file {path}: header cut short")
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    expected = 4 + 4 * ndim + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        kind = "truncated" if len(raw) < expected else "corrupt"
        raise DataError(f"{kind} IDX file {path}: {len(raw)} bytes, header {shape} needs {expected}")
    return np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape).astype(dtype.newbyteorder("="))


def _find_idx(folder, stem):
    """MNIST files come as train-images-idx3-ubyte, train-images.idx3-ubyte, or either + .gz."""
    for name in (stem, stem.replace("-idx", ".idx")):
        for ext in ("", ".gz"):
            p = os.path.join(folder, name + ext)
            if os.path.isfile(p):
                return p
    raise DataError(f"MNIST file {stem}[.gz] not found in {folder}")


def load_mnist(folder):
    """Real MNIST from its four IDX files -> {'train': (X, y), 'test': (X, y)}, X (n, 784) float32
    in [0, 1] (bytes / 255), y (n,) int64."""
    if not os.path.isdir(folder):
        raise DataError(f"MNIST folder not found: {folder}")
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        ipath, lpath = _find_idx(folder, f"{prefix}-images-idx3-ubyte"), _find_idx(folder, f"{prefix}-labels-idx1-ubyte")
        images, labels = read_idx(ipath), read_idx(lpath)
        if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (28, 28):
            raise DataError(f"{ipath}: expected uint8 images of shape (n, 28, 28), got {images.dtype} {images.shape}")
        if labels.dtype != np.uint8 or labels.ndim != 1 or len(labels) != len(images):
            raise DataError(f"{lpath}: expected {len(images)} uint8 labels, got {labels.dtype} {labels.shape}")
        if labels.size and labels.max() > 9:
            raise DataError(f"{lpath}: label {labels.max()} out of range 0-9")
        out[split] = (images.reshape(len(images), 784).astype(np.float32) / 255, labels.astype(np.int64))
    return out
