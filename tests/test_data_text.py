"""Tests for the text half of data.py: tokenizer, word-problem generator, reward, GSM8K loader."""
import json
import os
import random
import re
import sys

import pytest
import tiktoken.registry
import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
from common import UserError  # noqa: E402

EQ = re.compile(r"(\d+)([+\-*/])(\d+)=(\d+)\.")


# -----------------------------------------------------------------------------
# tokenizer

def test_byte_tokenizer_ids_and_round_trip():
    tok = data.get_tokenizer("byte")
    assert (tok.name, tok.vocab_size, tok.eos_id, tok.pad_id) == ("byte", 258, 256, 257)
    for text in ["Ana has 12 apples.\nHow many?", "  spaces\t\ttabs\n\n", "héllo wörld — ∑ 数学 🙂", ""]:
        ids = tok.encode(text)
        assert all(0 <= i < 256 for i in ids)
        assert ids == list(text.encode("utf-8"))  # byte-level: one id per UTF-8 byte
        assert tok.decode(ids) == text
        assert tok.decode(torch.tensor(ids, dtype=torch.long)) == text


def test_decode_drops_pad_keeps_eos_and_replaces_broken_utf8():
    tok = data.get_tokenizer()
    ids = tok.encode("7+5=12")
    assert tok.decode([tok.pad_id] * 3 + ids + [tok.pad_id]) == "7+5=12"
    assert tok.decode(ids + [tok.eos_id]) == "7+5=12<|endoftext|>"
    half = "é".encode()[:1]  # a sampled model can stop in the middle of a character
    assert tok.decode(list(half)) == "\ufffd"


def test_special_tokens_in_text_are_not_parsed():
    tok = data.get_tokenizer()
    ids = tok.encode("a<|endoftext|>b<|pad|>")
    assert tok.eos_id not in ids and tok.pad_id not in ids
    assert tok.decode(ids) == "a<|endoftext|>b<|pad|>"


def test_unknown_tokenizer_names_the_choices():
    with pytest.raises(UserError, match="'byte' or 'gpt2'"):
        data.get_tokenizer("bert")


def test_gpt2_without_files_is_a_helpful_error(tmp_path, monkeypatch):
    # Empty cache, no $GPT2_BPE_DIR, and any download attempt fails at once (as offline) instead of hanging.
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.delenv(data.GPT2_DIR_ENV, raising=False)
    monkeypatch.setattr(data.tiktoken.registry, "ENCODINGS", {})  # forget a gpt2 loaded earlier

    def offline(blobpath):
        raise ConnectionError(f"no network for {blobpath}")

    monkeypatch.setattr(data.tiktoken.load, "read_file", offline)
    with pytest.raises(UserError) as e:
        data.get_tokenizer("gpt2")
    msg = str(e.value)
    assert "TIKTOKEN_CACHE_DIR" in msg and data.GPT2_DIR_ENV in msg and "--tokenizer byte" in msg


def write_tiny_bpe(folder):
    """A miniature GPT-2-format vocabulary (256 bytes + merges "h e", "he l", then <|endoftext|>: 259 tokens, 260
    with data.py's pad) in data-gym's encoding: vocab.bpe + encoder.json, as $GPT2_BPE_DIR holds GPT-2's."""
    printable = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    order = printable + [b for b in range(256) if b not in printable]
    to_gym = {b: chr(b) for b in printable}
    to_gym.update({b: chr(256 + n) for n, b in enumerate(b for b in range(256) if b not in printable)})
    encoder = {to_gym[b]: i for i, b in enumerate(order)}
    encoder.update({"he": 256, "hel": 257, "<|endoftext|>": 258})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.bpe").write_text("#version: 0.2\nh e\nhe l\n")
    (folder / "encoder.json").write_text(json.dumps(encoder))
    return folder


def test_gpt2_from_local_files(tmp_path, monkeypatch):
    write_tiny_bpe(tmp_path)
    monkeypatch.setenv(data.GPT2_DIR_ENV, str(tmp_path))
    tok = data.get_tokenizer("gpt2")
    assert (tok.vocab_size, tok.eos_id, tok.pad_id) == (260, 258, 259)
    ids = tok.encode("hello <|endoftext|>")
    assert ids[0] == 257 and tok.eos_id not in ids
    assert tok.decode(ids + [tok.pad_id]) == "hello <|endoftext|>"
    (tmp_path / "encoder.json").write_text("{}")  # inconsistent files -> UserError, not AssertionError
    with pytest.raises(UserError, match=data.GPT2_DIR_ENV):
        data.get_tokenizer("gpt2")


# -----------------------------------------------------------------------------
# word-problem generator

def check_problem(p, steps=(1, 2), max_num=10, ops="+-"):
    """The solution's arithmetic is right, chains from the question's first number, ends in the answer."""
    eqs = EQ.findall(p.solution)
    assert len(eqs) in steps, p
    assert p.solution == " ".join(f"{a}{op}{b}={c}." for a, op, b, c in eqs) + f" #### {p.answer}"
    nums = [int(x) for x in re.findall(r"\d+", p.question)]
    assert nums and max(nums) <= max_num and min(nums) >= 1, p
    x = nums[0]  # every template states the start value first
    for a, op, b, c in eqs:
        a, b, c = int(a), int(b), int(c)
        assert op in ops and a == x, p
        assert c == {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op] and c >= 0, p
        if op == "/":
            assert a % b == 0, p
        x = c
    assert p.answer == str(x)
    assert data.reward(data.format_completion(p.solution), p.answer) == 1.0
    assert data.extract_answer(p.solution) == p.answer


def test_generator_deterministic_and_seed_dependent():
    a = data.make_problems(200, seed=3)
    assert a == data.make_problems(200, seed=3)
    assert a != data.make_problems(200, seed=4)
    assert a[:50] == data.make_problems(50, seed=3)  # a prefix: n does not change the stream
    assert data.make_problems(20, seed=3, split="test") == data.make_problems(20, seed=3, split="test")


def test_train_test_disjoint_for_any_seeds():
    train = {p.question for s in (0, 1) for p in data.make_problems(3000, seed=s)}
    test = {p.question for s in (0, 1) for p in data.make_problems(1000, seed=s, split="test")}
    assert len(test) > 1500 and not train & test
    assert len(set(p.question for p in data.make_problems(3000, seed=0))) == 3000  # no duplicates


def test_default_problems_are_correct_and_varied():
    ps = data.make_problems(2000, seed=0)
    for p in ps:
        check_problem(p)
        assert len(data.format_completion(p.solution)) <= 40
    assert {len(EQ.findall(p.solution)) for p in ps} == {1, 2}
    ops = "".join(op for p in ps for _, op, _, _ in EQ.findall(p.solution))
    assert 0.3 < ops.count("-") / len(ops) < 0.7
    assert len({p.question.split()[0] for p in ps}) >= 15  # several names and templates
    p = data.make_problems(1)[0]
    assert data.format_prompt(p.question) == f"Q: {p.question}\nA:"
    assert data.format_completion(p.solution) == " " + p.solution


@pytest.mark.parametrize("kw", [dict(max_num=20), dict(steps=(3,), ops="+-*"), dict(steps=4, ops="+-*/"),
                                dict(steps=(2,), ops="/", max_num=12), dict(steps=(1, 2), ops="-")])
def test_knobs_respected(kw):
    ps = data.make_problems(300, seed=1, split="test", **kw)
    steps = (kw["steps"],) if isinstance(kw.get("steps"), int) else kw.get("steps", data.Task.steps)
    knobs = dict(steps=steps, max_num=kw.get("max_num", data.Task.max_num), ops=kw.get("ops", data.Task.ops))
    for p in ps:
        check_problem(p, **knobs)
    used = {op for p in ps for _, op, _, _ in EQ.findall(p.solution)}
    assert used == set(knobs["ops"])
    if "max_num" in kw:
        assert max(int(x) for p in ps for x in re.findall(r"\d+", p.question)) == kw["max_num"]


def test_tiny_space_still_returns_n_and_bad_knobs_raise():
    ps = data.make_problems(50, steps=1, max_num=1, ops="+")  # only "1+1" exists, in 73,680 question texts
    assert len({p.question for p in ps}) == 50 and all(p.answer == "2" for p in ps)
    for kw in [dict(split="val"), dict(ops="+^"), dict(ops=""), dict(steps=(0,)), dict(max_num=1, ops="*")]:
        with pytest.raises(UserError):
            data.make_problems(5, **kw)


# -----------------------------------------------------------------------------
# How many problems a split holds: exactly that many, then a one-line error (not a hang or a duplicate)

@pytest.fixture
def tiny_task(monkeypatch):
    """Word lists small enough that a split runs out in milliseconds (steps 1-2, max_num=1: 274 questions),
    with every rule of _problem_text still at work: two pronouns, 'and'-joins, the name again after {O},
    connectors, slots a family does not use, "1 apple", the shortcut task's cue questions, all four operations."""
    monkeypatch.setattr(data, "NAMES", [("Ana", "she"), ("Ben", "he")])
    monkeypatch.setattr(data, "ITEMS", ["apples", "pears"])
    monkeypatch.setattr(data, "CONTAINERS", ["box"])
    monkeypatch.setattr(data, "THINGS", ["hat", "pen"])
    monkeypatch.setattr(data, "CONNECTORS", ["", "Then "])
    monkeypatch.setattr(data, "FAMILIES", {
        "person": dict(intro=["{N} has {a} {x}."],
                       ops={"+": ["{s} buys {b} more", "{O} gives {obj} {b} more"],
                            "-": ["{s} loses {b}", "{s} sells {b} and smiles"],
                            "*": ["{s} ends up with {b} times as many"], "/": ["{O} keeps all but one of {b} piles"]},
                       question=["How many {x} does {N} have now?", "How many {x} does {N} have?"]),
        "money": dict(intro=["{N} has {a} dollars."],
                      ops={"+": ["{pos} savings grow by {b} dollars"], "-": ["{s} pays {b} dollars for a {t}"],
                           "*": ["{pos} savings grow to {b} times as much"], "/": ["{s} keeps one of {b} equal jars"]},
                      question=["How much money does {N} have now?"])})
    monkeypatch.setattr(data, "CUE_QUESTIONS", {
        "person": {"-": "How many {x} does {N} have left?", "+": "How many {x} does {N} have now?"},
        "money": {"-": "How much money does {N} have left?", "+": "How much money does {N} have now?"}})


def _drawn_texts(draw_chain, cue_of=lambda op: None, draws=20_000):
    """The question texts of many random draws: the generator's whole support, for a space this small."""
    rng, texts = random.Random(0), set()
    for _ in range(draws):
        drawn = draw_chain(rng)
        if drawn is not None:
            texts.add(data._problem_text(rng, *drawn, cue_of(drawn[1][0][0])))
    return texts


@pytest.mark.parametrize("steps,max_num,ops", [((1, 2), 1, "+-"), ((1, 2), 2, "*/"), ((1,), 4, "+-*/")])
def test_make_problems_fills_a_split_exactly_then_says_how_many_it_holds(tiny_task, steps, max_num, ops):
    """The generator and the split counter agree, for every operation: what make_problems draws until a split
    runs out is exactly the split's questions as counted."""
    kw = dict(steps=steps, max_num=max_num, ops=ops)
    chains = [c for k in steps for c in data._chains(k, max_num, ops)]
    every = {q for a, c in chains for q in data._question_texts(a, c)}
    # the count is exact: every text it counts can be drawn, every text drawn is counted
    assert _drawn_texts(lambda rng: data._problem_chain(rng, rng.choice(steps), max_num, ops)) == every
    for split in ("train", "test"):
        held = {q for q in every if data._question_split(q) == split}
        assert data._split_size(split, chains) == len(held) > 0
        ps = data.make_problems(len(held), seed=1, split=split, **kw)  # exactly the limit: the whole split
        assert {p.question for p in ps} == held and len(ps) == len(held)
        with pytest.raises(UserError, match=rf"'{split}' split .* holds exactly {len(held)} distinct problems: "
                                            rf"asked for {len(held) + 1}$"):
            data.make_problems(len(held) + 1, seed=1, split=split, **kw)


def test_make_problems_when_no_problem_exists_is_an_error_not_a_hang():
    with pytest.raises(UserError, match="holds exactly 0 distinct problems: asked for 1"):
        data.make_problems(1, steps=(2,), ops="/", max_num=2)  # 2/2=1, and 1 has no divisor in 2..2


def _slice_texts(split, max_num, kind, direction="both"):
    """The questions of a shortcut slice that the split counter counts."""
    verbs, cues = data._slice_rule(kind, direction)
    return data._split_texts(split, data._chains(1, max_num, verbs), cues)


@pytest.mark.parametrize("direction", ["both", "add", "sub"])
def test_shortcut_problems_fill_each_slice_exactly_then_say_how_many(tiny_task, direction):
    """The generator and the split counter agree on each slice: what make_shortcut_problems draws until both
    slices run out is exactly each slice's questions as counted."""
    for kind in data.SLICES:
        verbs, cues = data._slice_rule(kind, direction)
        every = {q for a, c in data._chains(1, 2, verbs) for q in data._question_texts(a, c, cues[c[0][0]])}
        assert _drawn_texts(lambda rng: data._problem_chain(rng, 1, 2, verbs), lambda op: cues[op]) == every
    for split in ("train", "test"):
        held = {k: _slice_texts(split, 2, k, direction) for k in data.SLICES}
        size = {k: len(texts) for k, texts in held.items()}
        n = size["conflict"] + size["normal"]
        ps = data.make_shortcut_problems(n, 0, split, size["conflict"] / n, max_num=2, direction=direction)
        assert {k: {p.question for p in ps if p.slice == k} for k in data.SLICES} == held  # both slices full
        assert len(ps) == n
        with pytest.raises(UserError, match=rf"holds exactly {size['conflict']} conflict and {size['normal']} normal "
                                            rf"problems: asked for 0 conflict and {size['normal'] + 1} normal$"):
            data.make_shortcut_problems(size["normal"] + 1, 0, split, 0.0, max_num=2, direction=direction)


def test_shortcut_problems_that_cannot_be_drawn_are_an_error_not_a_hang(tiny_task, monkeypatch):
    """A slice whose questions the other slice has taken: with one question per family whatever the cue (the cue
    never disagrees with the verb), every conflict question is also a normal one, and a split whose normal
    problems are all asked for has none left for a conflict problem. A one-line error naming the request, within
    a bounded number of draws (a regression fails here instead of spinning)."""
    monkeypatch.setattr(data, "CUE_QUESTIONS", {f: {"+": q["+"], "-": q["+"]} for f, q in data.CUE_QUESTIONS.items()})
    monkeypatch.setattr(data, "STALLED", 500)
    draws, text = [0], data._problem_text

    def bounded(*a):
        draws[0] += 1
        assert draws[0] < 20 * data.STALLED, "make_shortcut_problems spins on a request it cannot fill"
        return text(*a)
    monkeypatch.setattr(data, "_problem_text", bounded)
    held = {k: len(_slice_texts("test", 2, k)) for k in data.SLICES}
    assert held["conflict"] == held["normal"] > 0  # each slice alone fits: the sizes say nothing is wrong
    n = held["normal"] + 1
    with pytest.raises(UserError, match=rf"holds exactly {held['conflict']} conflict and {held['normal']} normal "
                                        rf"problems, {held['normal']} questions of them in both slices: "
                                        rf"asked for 1 conflict and {held['normal']} normal$"):
        data.make_shortcut_problems(n, 0, "test", 1 / n, max_num=2)
    draws[0] = 0
    assert len(data.make_shortcut_problems(held["normal"], 0, "test", 0.5, max_num=2)) == held["normal"]  # fits


def test_the_count_knows_every_question_the_real_word_lists_write():
    """The real word lists: a drawn one-step question is among those counted for its chain."""
    one_step = [(data.make_problems(1, seed=5, steps=1)[0], None)] + [
        (p, "+-".replace(_operation(p), "") if p.slice == "conflict" else _operation(p))
        for p in data.make_shortcut_problems(40, seed=5, conflict_frac=0.5, max_num=20)[:2]]
    for p, cue in one_step:
        a, op, b, x = EQ.match(p.solution).groups()
        assert p.question in set(data._question_texts(int(a), [(op, int(b), int(x))], cue))


# -----------------------------------------------------------------------------
# answer extraction and reward

@pytest.mark.parametrize("text,expected", [
    (" 7-5=2. 2+3=5. #### 5", "5"),
    ("#### 1,000", "1000"),
    ("#### -3", "-3"),
    ("#### 14.0", "14.0"),
    ("#### 14.", "14"),              # a sentence-final period is not part of the number
    ("#### 14 apples. Done.", "14"),  # trailing text ignored
    ("#### 5 #### 6", "5"),           # several '####': the FIRST counts (GSM8K's re.search)
    ("the answer is 5", None),        # no '####' -> invalid
    ("####5", None),                  # GSM8K's regex needs the space
    ("#### five", None),
    ("#### -", None),
    ("#### 1.2.3", None),
    ("", None),
])
def test_extract_answer(text, expected):
    assert data.extract_answer(text) == expected
    assert data.is_invalid(text) == (expected is None)


def test_reward_edge_cases():
    r = data.reward
    assert r(" 2+3=5. #### 5", "5") == 1.0
    assert r(" 2+3=5. #### 6", "5") == -1.0
    assert r("#### 1,000", "1000") == 1.0 and r("#### 1000", "1,000") == 1.0
    assert r("#### 14.0", "14") == 1.0 and r("#### 14.", "14") == 1.0 and r("#### 14.5", "14") == -1.0
    assert r("#### -3", "-3") == 1.0 and r("#### -3", "3") == -1.0 and r("#### 3", "-3") == -1.0
    assert r("#### 5 #### 6", "6") == -1.0  # first match only: hedging does not pay
    assert r("#### 5 and more text<|endoftext|>", "5") == 1.0
    assert r("5", "5") == -1.0 and r("", "5") == -1.0  # invalid
    with pytest.raises(UserError):
        r("#### 5", "five")


# -----------------------------------------------------------------------------
# GSM8K jsonl loader

def test_load_gsm8k(tmp_path):
    rows = [{"question": "Natalia sold 48 clips. How many?", "answer": "She sold 48/2 = <<48/2=24>>24 more.\n#### 72"},
            {"question": "Big?", "answer": "Lots.\n#### 1,000"}]
    path = tmp_path / "test.jsonl"
    path.write_text(json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n")
    ps = data.load_gsm8k(str(path))
    assert ps == [data.Problem(rows[0]["question"], rows[0]["answer"], "72"),
                  data.Problem("Big?", "Lots.\n#### 1,000", "1000")]
    assert data.reward(data.format_completion(ps[1].solution), ps[1].answer) == 1.0


@pytest.mark.parametrize("bad,what", [
    ('{"question": "Q", "answer": "#### 1"', "bad JSON"),
    ('{"question": "Q"}', "'answer'"),
    ('["Q", "#### 1"]', "'answer'"),
    ('{"question": "Q", "answer": "no final answer"}', "####"),
])
def test_load_gsm8k_malformed_line_names_file_and_line(tmp_path, bad, what):
    path = tmp_path / "bad.jsonl"
    good = json.dumps({"question": "Q", "answer": "#### 1"})
    path.write_text(good + "\n\n" + good + "\n" + bad + "\n")  # the bad line is line 4
    with pytest.raises(UserError) as e:
        data.load_gsm8k(str(path))
    assert f"{path}:4:" in str(e.value) and what in str(e.value)


def test_load_gsm8k_missing_or_empty(tmp_path):
    with pytest.raises(UserError, match="not found"):
        data.load_gsm8k(str(tmp_path / "nope.jsonl"))
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(UserError, match="no problems"):
        data.load_gsm8k(str(tmp_path / "empty.jsonl"))


def _gsm8k_file(path, n, tag):
    with open(path, "w") as f:
        for i in range(n):
            f.write(json.dumps({"question": f"{tag} question {i}?", "answer": f"{i}+1={i + 1}. #### {i + 1}"}) + "\n")
    return str(path)


def test_problems_from_gsm8k_are_seeded_with_a_disjoint_validation_split(tmp_path):
    train = _gsm8k_file(tmp_path / "train.jsonl", 400, "train")
    test = _gsm8k_file(tmp_path / "test.jsonl", 30, "test")
    kw = dict(gsm8k=train, gsm8k_test=test)
    a, b = data.problems(50, 1, "train", **kw), data.problems(50, 2, "train", **kw)
    assert len(a) == len(b) == 50
    assert [p.question for p in a] == [p.question for p in data.problems(50, 1, "train", **kw)]  # seeded
    assert [p.question for p in a] != [p.question for p in b]  # another seed: other prompts (RL iterations)
    everything = {p.question for p in data.problems(10_000, 0, "train", **kw)}
    val = {p.question for p in data.problems(10_000, 0, "val", **kw)}
    assert val and not val & everything and len(val | everything) == 400  # disjoint, together the file
    assert {p.question for p in data.problems(10_000, 5, "val", **kw)} == val  # the split ignores the seed
    held_out = data.problems(10, 0, "test", **kw)
    assert [p.question for p in held_out] == [f"test question {i}?" for i in range(10)]  # the test file, in order


def test_problems_from_gsm8k_need_a_test_file(tmp_path):
    train = _gsm8k_file(tmp_path / "train.jsonl", 40, "train")
    with pytest.raises(UserError, match="--gsm8k needs --gsm8k-test"):
        data.problems(8, 0, "test", gsm8k=train)


def test_fitting_drops_and_counts_what_is_longer_than_the_limit():
    """data.fitting: the items of length <= limit, in order, and how many were dropped; none left is a one-line
    UserError that says what to change; nothing to filter is no error."""
    kept, dropped = data.fitting(["a", "b", "c", "d"], [5, 9, 10, 3], 9, "training example", "raise --block-size")
    assert kept == ["a", "b", "d"] and dropped == 1  # the limit itself fits
    assert data.fitting(["a"], [3], 9, "x", "y") == (["a"], 0)
    assert data.fitting([], [], 9, "x", "y") == ([], 0)
    with pytest.raises(UserError, match=r"^every training example \(2\) is longer than 4 tokens \(the shortest has 5\): "
                                        r"raise --block-size$"):
        data.fitting(["a", "b"], [5, 9], 4, "training example", "raise --block-size")


def test_prompts_fitting_leaves_room_for_the_completion():
    """A prompt fits when its tokens + max_new_tokens <= the context: eval.check_fits's rule, so what is kept never
    stops a generation."""
    tok = data.get_tokenizer("byte")
    probs = [data.Problem("x" * n, "#### 1", "1") for n in (10, 30, 20)]
    room = len(tok.encode(data.format_prompt("x" * 20)))  # "Q: " + 20 + "\nA:"
    kept, dropped = data.prompts_fitting(tok, probs, room + 8, 8, "test prompt")
    assert [len(p.question) for p in kept] == [10, 20] and dropped == 1
    with pytest.raises(UserError, match="every test prompt .* lower --max-new-tokens"):
        data.prompts_fitting(tok, probs, room + 8, 40, "test prompt")


def test_parse_step_reads_negative_operands_and_results():
    """A sampled completion can write a negative number (the shortcut a-b with b > a): its first step still parses,
    whole, from where it starts (topr_experiments/l_tokencredit.tree_stats asks whether a negative's credit lands on its operator)."""
    assert data.parse_step(" 3-5=-2. #### -2") == ("3", "-", "5", "-2")
    assert data.parse_step(" -3+5=2. #### 2") == ("-3", "+", "5", "2")
    assert data.parse_step("4--2=6.") == ("4", "-", "-2", "6")
    assert data.parse_step(" 12-3=9. 9+4=13. #### 13") == ("12", "-", "3", "9")  # the first step, as before
    assert data.parse_step(" #### 5") is None


def test_procedural_problems_are_make_problems():
    assert data.problems(20, 3, "train") == data.make_problems(20, seed=3, split="train")
    assert data.problems(20, 3, "test", steps=(2,)) == data.make_problems(20, seed=3, split="test", steps=(2,))
    assert data.problems(20, 3, "val") == data.make_problems(20, seed=1003, split="train")


def test_the_generators_defaults_are_the_tasks():
    """The task's defaults are written once, in data.Task: a generator called without its knobs draws the
    problems of the default Task (the shortcut task's: its held-out problems), and another value of a field
    draws others (the defaults are not ignored)."""
    assert data.problems(30, 2, "test") == data.make_problems(30, seed=2, split="test") == \
        data.Task().problems(30, 2, "test")
    assert data.make_shortcut_problems(30, 2, "test") == data.problems(30, 2, "test", shortcut=True) == \
        data.Task(shortcut=True).problems(30, 2, "test")
    for field, other in [("max_num", 20), ("ops", "+-*"), ("steps", (3,))]:
        assert data.Task(**{field: other}).problems(30, 2, "test") != data.Task().problems(30, 2, "test"), field
    for field, other in [("max_num", 20), ("test_conflict_frac", 0.1)]:
        assert data.Task(shortcut=True, **{field: other}).problems(30, 2, "test") != \
            data.Task(shortcut=True).problems(30, 2, "test"), field


# -----------------------------------------------------------------------------
# The shortcut task

def _operation(p):
    return "+" if "+" in p.solution else "-"


def test_shortcut_task_cue_verb_and_slices():
    ps = data.make_shortcut_problems(400, seed=1, conflict_frac=0.25, max_num=20)
    assert sum(p.slice == "conflict" for p in ps) == 100 and {p.slice for p in ps} == {"normal", "conflict"}
    for p in ps:
        left = " left" in p.question.rsplit(".", 1)[-1]  # the cue sits in the question sentence
        cue = "-" if left else "+"
        assert p.question.endswith("now?") != left
        # the verb decides: the solution's operation is the clause's, whatever the cue says
        assert (cue == _operation(p)) == (p.slice == "normal")
        a, rest = p.solution.split(_operation(p))
        b, x = rest.split(".")[0].split("=")
        assert int(x) == (int(a) + int(b) if _operation(p) == "+" else int(a) - int(b)) >= 0
        assert p.answer == x and data.reward(p.solution, p.answer) == 1.0
        verb = p.question.split(". ")[1]  # the one operation clause, e.g. "She buys 5 more"
        assert (" more" in verb or "earns" in verb or "finds" in verb or "gives her" in verb
                or "gives him" in verb) == (_operation(p) == "+"), p.question
    assert ps == data.make_shortcut_problems(400, seed=1, conflict_frac=0.25, max_num=20)  # deterministic


def test_shortcut_task_splits_and_fractions():
    train = data.problems(300, 0, "train", shortcut=True, conflict_frac=0.05)
    test = data.problems(300, 0, "test", shortcut=True, conflict_frac=0.5)
    assert not {p.question for p in train} & {p.question for p in test}
    assert sum(p.slice == "conflict" for p in train) == 15 and sum(p.slice == "conflict" for p in test) == 150
    assert len({p.question for p in train}) == 300  # distinct
    with pytest.raises(UserError, match="conflict problems must be in"):
        data.make_shortcut_problems(10, conflict_frac=1.5)


@pytest.mark.parametrize("direction,verb", [("add", "+"), ("sub", "-")])
def test_conflicts_in_one_direction(direction, verb):
    ps = data.make_shortcut_problems(400, seed=1, conflict_frac=0.5, max_num=10, direction=direction)
    conflicts = [p for p in ps if p.slice == "conflict"]
    assert len(conflicts) == 200 and {_operation(p) for p in conflicts} == {verb}
    # the cue of the other operation: "left" (subtraction) on addition conflicts, "now" on subtraction ones
    assert all((" left" in p.question.rsplit(".", 1)[-1]) == (verb == "+") for p in conflicts)
    assert {_operation(p) for p in ps if p.slice == "normal"} == {"+", "-"}  # normal problems as before
    # "both" draws exactly what the task drew before the flag existed (same generator, same order)
    assert data.make_shortcut_problems(50, seed=1, conflict_frac=0.5, max_num=10, direction="both") == \
        data.make_shortcut_problems(50, seed=1, conflict_frac=0.5, max_num=10)


def test_one_direction_split_sizes_partition_the_conflicts(tiny_task):
    for split in ("train", "test"):
        both = len(_slice_texts(split, 3, "conflict"))
        add, sub = (len(_slice_texts(split, 3, "conflict", d)) for d in ("add", "sub"))
        assert add + sub == both and add > 0 and sub > 0  # the verbs differ: no question is in both
        with pytest.raises(UserError, match=rf"conflict direction 'add' holds exactly {add} conflict"):
            data.make_shortcut_problems(add + 1, 0, split, 1.0, max_num=3, direction="add")


def test_conflict_direction_is_validated_where_it_enters():
    with pytest.raises(UserError, match="only applies to the shortcut task"):
        data.Task(conflict_direction="add")
    with pytest.raises(UserError, match="must be one of both, add, sub, got 'up'"):
        data.Task(shortcut=True, conflict_direction="up")
    with pytest.raises(UserError, match="must be one of both, add, sub"):
        data.make_shortcut_problems(4, direction="left")
    task = data.Task(shortcut=True, conflict_direction="sub")
    assert {_operation(p) for p in task.problems(40, 0, "test") if p.slice == "conflict"} == {"-"}


@pytest.mark.parametrize("argv, message", [
    (["--gsm8k", "train.jsonl"], r"--shortcut and --gsm8k are two different tasks: choose one"),
    (["--ops", "+-*"], r"--shortcut draws its own one-step '\+'/'-' problems: --ops \+-\* does not apply"),
    (["--steps", "2"], r"--shortcut draws its own one-step '\+'/'-' problems: --steps 2 does not apply"),
    (["--steps", "1"], r"--shortcut .*: --steps 1 does not apply")])
def test_shortcut_refuses_the_flags_it_would_ignore(argv, message):
    """--shortcut with --gsm8k (the shortcut task silently won), or with a --ops / --steps the user set (silently
    ignored): a one-line error. Their default values are fine, given or not."""
    import argparse
    import eval as ev
    p = argparse.ArgumentParser()
    ev.add_task_args(p)
    with pytest.raises(UserError, match=f"^{message}"):
        data.Task.from_args(p.parse_args(["--shortcut", *argv]))
    for fine in ([], ["--steps", "1", "2"], ["--ops", "+-"], ["--ops=-+"], ["--max-num", "20"]):
        assert data.Task.from_args(p.parse_args(["--shortcut", *fine])).shortcut
    assert data.Task.from_args(p.parse_args(argv)).shortcut is False  # each flag alone is fine


def test_answer_kinds_and_breakdown_by_whether_the_shortcut_was_possible():
    import eval as ev
    conflict_ok = data.Problem("q1", "7+3=10. #### 10", "10", "conflict")   # the cue's 7-3=4: possible
    conflict_no = data.Problem("q2", "3+7=10. #### 10", "10", "conflict")   # the cue's 3-7: impossible
    normal = data.Problem("q3", "9-4=5. #### 5", "5", "normal")             # the other op: 9+4=13
    assert [ev.answer_kind(conflict_ok, f" #### {x}") for x in (10, 4, 11)] == ["right", "other_op", "other_number"]
    assert [ev.answer_kind(conflict_no, f" #### {x}") for x in (10, 4, -4)] == ["right", "swapped", "other_op"]
    assert [ev.answer_kind(normal, t) for t in (" #### 13", " 9-4=5.", " #### 5")] == ["other_op", "invalid", "right"]
    res = ev.answer_breakdown([conflict_ok, conflict_no, normal, conflict_ok],
                              [[" #### 4", " #### 10"], [" #### 4", " nope"], [" #### 5", " #### 5"],
                               [" #### 4", " #### 3"]])
    assert res["conflict_possible_n"] == 2 and res["conflict_impossible_n"] == 1 and res["normal_possible_n"] == 1
    assert (res["conflict_possible_other_op"], res["conflict_possible_right"], res["conflict_possible_other_number"]) \
        == (0.5, 0.25, 0.25)
    assert (res["conflict_impossible_swapped"], res["conflict_impossible_invalid"]) == (0.5, 0.5)
    assert res["normal_possible_right"] == 1.0 and "normal_impossible_n" not in res
    for group in ("conflict_possible", "conflict_impossible", "normal_possible"):
        assert sum(res[f"{group}_{k}"] for k in ev.ANSWER_KINDS) == pytest.approx(1.0)


def test_answer_kinds_compare_numbers_as_the_reward_does():
    """'#### 12.0', '#### 012' and '#### 1,0' are the numbers 12 and 10, as data.reward scores them: the breakdown's
    right share is pass@1 exactly, and the other operation's result is recognised however it is written."""
    import eval as ev
    conflict_ok = data.Problem("q1", "7+3=10. #### 10", "10", "conflict")   # the cue's 7-3=4
    conflict_no = data.Problem("q2", "3+7=10. #### 10", "10", "conflict")   # the cue's 3-7=-4: swapped is 4
    normal = data.Problem("q3", "9-4=5. #### 5", "5", "normal")             # the other op: 9+4=13
    problems = [conflict_ok, conflict_no, normal]
    sampled = [[" #### 10.0", " #### 010", " #### 1,0", " #### 4.0"],
               [" #### 10.", " #### 04", " #### -4.0", " #### 11"],
               [" #### 5.00", " #### 13.0", " nope", " #### 5"]]
    assert [[ev.answer_kind(p, t) for t in ts] for p, ts in zip(problems, sampled)] == [
        ["right", "right", "right", "other_op"], ["right", "swapped", "other_op", "other_number"],
        ["right", "other_op", "invalid", "right"]]
    k, n = 4, len(problems)
    pass1 = ev.accuracy(problems, [ts[:1] for ts in sampled], sampled, [[1] * k] * n, k)["pass@1"]
    right = sum(ev.answer_kind(p, t) == "right" for p, ts in zip(problems, sampled) for t in ts)
    assert right == sum(data.reward(t, p.answer) > 0 for p, ts in zip(problems, sampled) for t in ts) == 6
    assert right / (n * k) == pass1
    res = ev.answer_breakdown(problems, sampled)
    groups = {key[:-2] for key in res if key.endswith("_n")}
    assert sum(res[f"{g}_right"] * res[f"{g}_n"] for g in groups) / n == pytest.approx(pass1, abs=1e-12)
