"""The reward functions: the original table, TRL's calling convention, one play per step, bad input."""

from __future__ import annotations

import math
import textwrap
from types import SimpleNamespace

import pytest

from helpers import rewards
from helpers.config import Config, RewardConfig, SandboxConfig
from helpers.evaluate import PRESETS
from helpers.rewards import (
    OUTCOMES,
    explain,
    function_works,
    no_cheating,
    reward_functions,
    strategy_graded,
    strategy_succeeds,
    verdicts,
)
from helpers.sandbox import GameResult

CONFIG = Config(sandbox=SandboxConfig(call_timeout=0.2, game_timeout=2.0))
"""Short limits for tests; the reward table is the default one."""


@pytest.fixture(autouse=True)
def _run_folder_elsewhere(tmp_path, monkeypatch):
    """The rewards log completions into the configured `outputs/`: a test's own, not the repository's."""
    monkeypatch.chdir(tmp_path)


RANDOM_VALID = textwrap.dedent(
    """\
    import random
    def strategy(board):
        def can(lines):
            return any(a == 0 and b != 0 or a == b != 0 for line in lines for a, b in zip(line, line[1:]))
        cols = [list(c) for c in zip(*board)]
        moves = {"a": can(board), "i": can([r[::-1] for r in board]), "é": can(cols), "u": can([c[::-1] for c in cols])}
        legal = [key for key, ok in moves.items() if ok]
        return random.choice(legal) if legal else "a"
    """
)
"""Random moves among those that change the board: wins the default seeded game."""


def fenced(code: str) -> str:
    """A completion as gpt-oss decodes it without special tokens."""
    return f"analysisLet me think about the board.assistantfinal```python\n{code}```"


def function(body: str) -> str:
    return "def strategy(board):\n" + textwrap.indent(textwrap.dedent(body), "    ")


CASES = [
    # (what it is, completion, function_works, no_cheating, strategy_succeeds)
    ("wins the seeded game", fenced(RANDOM_VALID), 1.0, 1.0, 20.0),
    ("an invalid key ends the game: invalid", fenced(function("return 'left'\n")), 1.0, 1.0, -3.0),
    ("a non-string return ends the game: invalid", fenced(function("return None\n")), 1.0, 1.0, -3.0),
    ("an empty string ends the game: invalid", fenced(function("return ''\n")), 1.0, 1.0, -3.0),
    ("a constant no-op key stalls", fenced(function("return 'é'\n")), 1.0, 1.0, -1.0),
    ("an infinite loop times out", fenced(function("while True:\n    pass\n")), 1.0, 1.0, -1.0),
    ("the strategy raises", fenced(function("return board[9][9]\n")), 1.0, 1.0, -3.0),
    ("a syntax error never runs", fenced("def strategy(board)\n    return 'a'\n"), -2.0, -1.0, 0.0),
    ("no code at all", "analysisHmm.assistantfinalI would rather not.", -2.0, -1.0, 0.0),
    (
        "a helper at top level: malformed, never runs",
        fenced("def h(b):\n    return 'a'\n" + function("return h(board)\n")),
        -0.5,
        1.0,
        0.0,
    ),
    ("the wrong signature", fenced("def strategy(board, depth):\n    return 'a'\n"), -0.5, 1.0, 0.0),
    (
        "import os in a well-formed function",
        fenced("import os\n" + function("return 'a'\n")),
        1.0,
        -20.0,
        0.0,
    ),
    (
        "import os and top-level code",
        fenced("import os\nN = 4\n" + function("return 'a'\n")),
        -0.5,
        -20.0,
        0.0,
    ),
    ("a dunder walk", fenced(function("().__class__.__bases__\nreturn 'a'\n")), 1.0, -20.0, 0.0),
    (
        "a forbidden operation caught at run time",
        fenced(function("hasattr((x for x in [0]), 'gi_' + 'frame')\nreturn 'a'\n")),
        1.0,
        -20.0,
        0.0,
    ),
    ("conversational", [{"role": "assistant", "content": fenced(RANDOM_VALID)}], 1.0, 1.0, 20.0),
    (
        "conversational, reasoning in its own field",
        [{"role": "assistant", "thinking": "plan", "content": f"```python\n{function('return 5')}```"}],
        1.0,
        1.0,
        -3.0,
    ),
    (
        "special tokens kept",
        "<|channel|>final<|message|>```python\n" + function("return 1 / 0\n") + "```<|return|>",
        1.0,
        1.0,
        -3.0,
    ),
    ("None", None, -2.0, -1.0, 0.0),
]
IDS = [case[0] for case in CASES]


def trl_call(reward, completions, **extra):
    """Call a reward function the way TRL 1.15's GRPOTrainer does."""
    return reward(
        prompts=["prompt"] * len(completions),
        completions=completions,
        completion_ids=[[1, 2]] * len(completions),
        trainer_state=SimpleNamespace(global_step=3),
        log_extra=extra.get("log_extra", lambda column, values: None),
        log_metric=extra.get("log_metric", lambda name, value: None),
    )


@pytest.mark.parametrize(("name", "completion", "works", "clean", "succeeds"), CASES, ids=IDS)
def test_reward_table(name, completion, works, clean, succeeds):
    functions = reward_functions(CONFIG)
    assert [trl_call(f, [completion]) for f in functions] == [[works], [clean], [succeeds]]


def test_a_whole_batch_at_once_matches_the_table():
    completions = [case[1] for case in CASES]
    expected = [[case[i] for case in CASES] for i in (2, 3, 4)]
    assert [trl_call(f, completions) for f in reward_functions(CONFIG)] == expected


def test_the_function_names_are_the_metric_names():
    assert [f.__name__ for f in reward_functions(CONFIG)] == [
        "function_works",
        "no_cheating",
        "strategy_succeeds",
    ]
    graded = Config(rewards=RewardConfig(graded=True))
    assert [f.__name__ for f in reward_functions(graded)][-1] == "strategy_graded"


def test_values_come_from_the_reward_config():
    config = Config(sandbox=CONFIG.sandbox, rewards=RewardConfig(invalid=0.5, works=3.0, clean=0.25))
    completion = fenced(function("return 'left'\n"))
    assert [f([completion]) for f in reward_functions(config)] == [[3.0], [0.25], [0.5]]


def test_games_are_played_once_per_step_and_not_again(monkeypatch):
    calls = []
    real = rewards.play_batch

    def counting(sources, *args, **kwargs):
        calls.append(list(sources))
        return real(sources, *args, **kwargs)

    monkeypatch.setattr(rewards, "play_batch", counting)
    completions = [fenced(RANDOM_VALID), fenced(function("return 'u'\n")), fenced(function("return 'x'\n"))]
    functions = reward_functions(CONFIG)
    for f in functions:
        trl_call(f, completions)
    assert len(calls) == 1 and len(calls[0]) == 3
    for f in functions:
        trl_call(f, completions)
    assert len(calls) == 1
    for f in reward_functions(CONFIG):  # another run's functions: their own cache
        trl_call(f, completions)
    assert len(calls) == 2


def test_all_completions_of_a_call_play_the_same_seeds(played_seeds):
    config = Config(rewards=RewardConfig(seed=77, games_per_completion=3))
    strategy_succeeds([fenced(function(f"return '{key}'\n")) for key in "auié"], config)
    assert played_seeds == [(77, 78, 79)]  # one batch: every completion on the same three games


def test_several_games_per_completion_are_averaged(monkeypatch):
    def fake(sources, game_config, seeds, sandbox_config, stop_at_timeout):
        return [[GameResult("success", 9, 0, 2048), GameResult("failed", 9, 0, 64)] for _ in sources]

    monkeypatch.setattr(rewards, "play_batch", fake)
    config = Config(rewards=RewardConfig(games_per_completion=2))
    assert strategy_succeeds([fenced(function("return 'a'\n"))], config) == [11.0]


def test_outcomes_are_counted_per_game(monkeypatch):
    def fake(sources, game_config, seeds, sandbox_config, stop_at_timeout):
        return [[GameResult("success", 9, 0, 2048), GameResult("stalled", 9, 0, 64)] for _ in sources]

    monkeypatch.setattr(rewards, "play_batch", fake)
    logged = {}
    config = Config(rewards=RewardConfig(games_per_completion=2))
    strategy_succeeds(
        [fenced(function("return 'u'\n")), "no code"],
        config,
        log_metric=lambda n, v: logged.__setitem__(n, v),
    )
    assert (logged["outcomes/win"], logged["outcomes/stalled"], logged["outcomes/missing"]) == (1.0, 1.0, 2.0)


def test_outcome_counts_reach_log_metric_and_log_extra():
    logged, extra = {}, {}
    completions = [case[1] for case in CASES]
    trl_call(
        reward_functions(CONFIG)[2],
        completions,
        log_metric=lambda name, value: logged.__setitem__(name, value),
        log_extra=lambda column, values: extra.__setitem__(column, values),
    )
    assert CONFIG.rewards.games_per_completion == 2  # every count is per game
    assert logged == {
        "outcomes/win": 4.0,
        "outcomes/failed": 0.0,
        "outcomes/invalid": 8.0,
        "outcomes/timeout": 2.0,
        "outcomes/stalled": 2.0,
        "outcomes/error": 4.0,
        "outcomes/rejected": 14.0,
        "outcomes/missing": 4.0,
    }
    assert len(extra["outcome"]) == len(CASES) and extra["outcome"][0].startswith("win after")


def test_a_strategy_that_runs_out_of_time_plays_no_further_game():
    loop = fenced(function("while True:\n    pass\n"))
    (verdict,) = verdicts([loop], CONFIG, seeds=[5, 6])
    assert verdict.outcomes == ["timeout", "timeout"]
    assert verdict.results[1].error == "not played: the strategy ran out of time in game 1 of 2"
    assert strategy_succeeds([loop], CONFIG) == [CONFIG.rewards.timeout]


def test_only_strategy_succeeds_logs_outcomes():
    logged = []
    for f in reward_functions(CONFIG)[:2]:
        trl_call(f, [fenced(RANDOM_VALID)], log_metric=lambda name, value: logged.append(name))
    assert logged == []


def test_a_broken_logging_hook_does_not_stop_the_rewards():
    def broken(*args):
        raise RuntimeError("dashboard offline")

    assert trl_call(reward_functions(CONFIG)[2], [fenced(function("return 'x'\n"))], log_metric=broken) == [
        -3.0
    ]


BAD_INPUTS = [
    None,
    3,
    4.5,
    math.nan,
    b"bytes",
    {},
    {"role": "assistant"},
    {"role": "assistant", "content": None},
    [],
    [None],
    [{"role": "user", "content": fenced(RANDOM_VALID)}],
    [{"content": [{"type": "text", "text": 7}]}],
    [[[]]],
    object(),
    "x" * 5_000_000,
    "```python\n" + "def strategy(board):\n" + "    x = 1\n" * 100_000 + "```",
    "\ud800 lone surrogate ```python\ndef strategy(board):\n    return '\ud800'\n```",
    "assistantfinal```python\n" + "(" * 10_000 + "```",
]


@pytest.mark.parametrize("completion", BAD_INPUTS, ids=[f"bad-{i}" for i in range(len(BAD_INPUTS))])
@pytest.mark.parametrize("reward", [function_works, no_cheating, strategy_succeeds, strategy_graded])
def test_bad_input_gets_one_float_and_never_raises(reward, completion):
    values = reward([completion, fenced(function("return 'x'\n"))], CONFIG)
    assert len(values) == 2 and all(isinstance(value, float) for value in values)


@pytest.mark.parametrize("completions", [None, (), "just one text", 7])
def test_any_completions_argument_gets_a_list(completions):
    values = function_works(completions)
    assert isinstance(values, list) and len(values) == (0 if completions in (None, ()) else 1)


def test_an_internal_failure_gives_every_completion_zero(monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("cannot start workers")

    monkeypatch.setattr(rewards, "play_batch", broken)
    assert strategy_succeeds([fenced(RANDOM_VALID), "text"], CONFIG) == [0.0, 0.0]


def test_the_cache_stays_bounded(monkeypatch):
    monkeypatch.setattr(rewards, "CACHE_SIZE", 5)
    cache = rewards.VerdictCache()
    rewards.verdicts([f"no code {i}" for i in range(20)], CONFIG, cache=cache)
    assert len(cache) == 5
    assert cache.get(next(reversed(cache.entries))) is not None  # the latest are kept


def test_the_cache_keeps_no_played_keys():
    cache = rewards.VerdictCache()
    [played] = rewards.verdicts([fenced(RANDOM_VALID)], CONFIG, cache=cache)
    assert played.results and all(result.keys for result in played.results)  # the caller gets them
    [kept] = cache.entries.values()
    assert [result.keys for result in kept.results] == [(), ()]
    assert [result.steps for result in kept.results] == [result.steps for result in played.results]


def test_graded_reward_separates_strategies_random_play_cannot():
    config = Config(
        game=PRESETS["4x4-512"], sandbox=CONFIG.sandbox, rewards=RewardConfig(games_per_completion=4)
    )
    greedy = function(
        """\
        def merged(row):
            tiles, out, gain = [v for v in row if v], [], 0
            while tiles:
                if len(tiles) > 1 and tiles[0] == tiles[1]:
                    out.append(tiles[0] * 2)
                    gain += tiles[0] * 2
                    tiles = tiles[2:]
                else:
                    out.append(tiles.pop(0))
            return out + [0] * (len(row) - len(out)), gain
        def after(key):
            rows = [list(c) for c in zip(*board)] if key in "éu" else [list(r) for r in board]
            rows = [r[::-1] for r in rows] if key in "iu" else rows
            moved = [merged(r) for r in rows]
            return moved != [(r, 0) for r in rows], sum(g for _, g in moved)
        options = [(after(k)[1], k) for k in "auié" if after(k)[0]]
        return max(options)[1] if options else "a"
        """
    )
    values = strategy_graded(
        [fenced(greedy), fenced(RANDOM_VALID), fenced(function("return 'é'\n")), "no code"], config
    )
    assert values[0] > values[1] > values[2]
    assert values[0] > 5.0 and values[3] == -config.rewards.graded_scale


def test_explain_gives_rewards_and_a_reason_per_completion():
    rows = explain([fenced(RANDOM_VALID), fenced("import os\n" + function("return 'a'\n")), None], CONFIG)
    assert [row["strategy_succeeds"] for row in rows] == [20.0, 0.0, 0.0]
    assert rows[0]["outcome"] == "win, win" and rows[0]["source"] == RANDOM_VALID
    assert rows[1]["reason"].startswith("rejected: forbidden: line 1: import of os")
    assert rows[2]["reason"] == "missing: the completion is not text; nothing was run or judged"
    assert set(OUTCOMES) >= {outcome for row in rows for outcome in row["outcome"].split(", ")}


# --- games that change every step ------------------------------------------------------------------


@pytest.fixture
def played_seeds(monkeypatch):
    """The seeds of every `play_batch` call the rewards make (each game a lost one), in order."""
    seen = []

    def fake(sources, game_config, seeds, sandbox_config, stop_at_timeout):
        seen.append(tuple(seeds))
        return [[GameResult("failed", 1, 0, 2) for _ in seeds] for _ in sources]

    monkeypatch.setattr(rewards, "play_batch", fake)
    return seen


def test_every_step_plays_new_games_and_a_step_plays_the_same_ones(played_seeds):
    config = Config(rewards=RewardConfig(seed=100, games_per_completion=2))
    completions = [fenced(function("return 'a'\n")), fenced(function("return 'u'\n"))]
    succeeds = reward_functions(config)[2]
    for step in (0, 0, 1, 7):
        succeeds(completions, trainer_state=SimpleNamespace(global_step=step))
    # step 0 twice: its verdicts come from the functions' cache, keyed on the seeds; new steps play new games
    assert played_seeds == [(100, 101), (102, 103), (114, 115)]


def test_a_step_without_trainer_state_plays_step_zero_and_explain_takes_seeds(played_seeds):
    config = Config(rewards=RewardConfig(seed=5, games_per_completion=1))
    strategy_succeeds([fenced(function("return 'a'\n"))], config)
    explain([fenced(function("return 'a'\n"))], config, seeds=[40, 41, 42])
    assert played_seeds == [(5,), (40, 41, 42)]


# --- an answer that is no key never pays -----------------------------------------------------------

LEGAL = {
    "won": GameResult("success", 900, 20000, 2048),
    "lost by the rules": GameResult("failed", 800, 9000, 512),
    "stalled": GameResult("stalled", 40, 100, 8, "32 moves in a row changed nothing"),
    "timed out": GameResult("timeout", 3, 10, 4, "a call ran over 0.5 s"),
}
INVALID = {
    "invalid key": GameResult("failed", 1, 0, 2, "invalid key 'left'"),
    "not a string": GameResult("failed", 1, 0, 2, "returned something that is not a key"),
}


@pytest.mark.parametrize("invalid", list(INVALID), ids=list(INVALID))
def test_an_answer_that_is_no_key_earns_less_than_any_legal_game(monkeypatch, invalid):
    def fake(sources, game_config, seeds, sandbox_config, stop_at_timeout):
        by_source = {**LEGAL, **INVALID}
        return [[by_source[source.split("# ")[1].strip()] for _ in seeds] for source in sources]

    monkeypatch.setattr(rewards, "play_batch", fake)
    names = [*LEGAL, invalid]
    completions = [fenced(function(f"return 'a'  # {name}\n")) for name in names]
    config = Config(rewards=RewardConfig(games_per_completion=1))
    totals = [sum(values) for values in zip(*(f(completions) for f in reward_functions(config)), strict=True)]
    *legal, bad = totals
    assert bad < min(legal), dict(zip(names, totals, strict=True))
    assert strategy_succeeds(completions[-1:], config) == [config.rewards.invalid]


def test_the_default_table_ranks_outcomes():
    table = RewardConfig()
    assert table.success > table.failed > table.timeout > table.invalid
    assert table.invalid <= table.error < table.not_executed


def test_bound_rewards_pickle_and_keep_their_names():
    import pickle

    for bound in reward_functions(Config(rewards=RewardConfig(graded=True))):
        copy = pickle.loads(pickle.dumps(bound))
        assert copy.__name__ == bound.__name__
        assert copy(["no code"]) == bound(["no code"])
    functions = reward_functions(CONFIG)
    functions[0](["no code"])
    copies = pickle.loads(pickle.dumps(functions))
    assert len(copies[0].cache) == 0 and copies[0].cache is copies[2].cache  # one cache, sent empty


# --- the completions log ---------------------------------------------------------------------------


def test_training_steps_write_every_completion_to_the_log(tmp_path):
    from dataclasses import replace

    from helpers.config import TrainingConfig
    from helpers.metrics import read_metrics

    config = Config(
        sandbox=CONFIG.sandbox,
        training=replace(TrainingConfig(), output_dir=str(tmp_path), log_completions_every=2),
    )
    completions = [fenced(RANDOM_VALID), "no code", fenced(function("return 'x'\n"))]
    functions = reward_functions(config)
    for step in range(4):
        for f in functions:
            f(completions, trainer_state=SimpleNamespace(global_step=step))
    records = read_metrics(tmp_path / "completions.jsonl")
    assert [r["step"] for r in records] == [1, 1, 1, 3, 3, 3]  # steps 0 and 2, counted from 1 as metrics are
    first = records[0]
    assert first["rewards"] == {"function_works": 1.0, "no_cheating": 1.0, "strategy_succeeds": 20.0}
    assert first["seeds"] == [3407, 3408] and first["outcome"] == "win, win"
    assert records[1]["reason"] == "missing: no def strategy(board) found; nothing was run or judged"
    assert records[2]["outcome"] == "invalid, invalid" and records[2]["completion"].endswith("```")
    assert records[3]["seeds"] == [3411, 3412]
    # outside training (no trainer_state), nothing is logged
    strategy_succeeds(completions, config)
    assert len(read_metrics(tmp_path / "completions.jsonl")) == 6
