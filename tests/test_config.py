"""The configuration: profiles, detection, overrides and their errors."""

from dataclasses import fields

import pytest

from helpers import config as cfg


def test_dgx_spark_is_the_original_configuration():
    t = cfg.make_config("dgx-spark").training
    assert (t.model_name, t.load_in_4bit, t.offload_embedding, t.max_seq_length) == (
        "unsloth/gpt-oss-20b",
        True,
        True,
        768,
    )
    assert (t.lora_rank, t.lora_alpha, t.max_completion_length) == (4, 8, 200)
    assert (t.per_device_train_batch_size, t.gradient_accumulation_steps, t.num_generations) == (1, 4, 2)
    assert (t.learning_rate, t.lr_scheduler_type, t.optim, t.save_steps, t.max_steps) == (
        5e-5,
        "linear",
        "adamw_8bit",
        100,
        1000,
    )
    assert (t.weight_decay, t.warmup_ratio, t.temperature, t.reasoning_effort) == (0.001, 0.1, 1.0, "low")


def test_defaults_match_the_original_game_and_rewards():
    c = cfg.make_config("cpu-tiny")
    assert (c.game.size, c.game.target, c.game.keymap, c.sandbox.game_timeout) == (6, 2048, "bepo", 5.0)
    r = c.rewards
    assert (r.works, r.works_missing, r.works_malformed) == (1.0, -2.0, -0.5)
    assert (r.clean, r.cheating, r.cheating_missing) == (1.0, -20.0, -1.0)
    assert (r.success, r.failed, r.timeout, r.error, r.not_executed) == (20.0, 2.0, -1.0, -3.0, 0.0)
    assert r.invalid == -3.0  # an answer that is no key: no more than a legal game, however it ends


def test_overrides_convert_strings_from_a_command_line():
    c = cfg.make_config(
        "h100", max_steps="7", load_in_4bit="true", game={"size": "4"}, target_modules="q_proj,v_proj"
    )
    assert c.training.max_steps == 7 and c.training.load_in_4bit is True and c.game.size == 4
    assert c.training.target_modules == ("q_proj", "v_proj")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"max_stepz": 3}, "unknown training setting"),
        ({"game": {"sise": 4}}, "unknown game setting"),
        ({"max_steps": "many"}, "training.max_steps must be an int, not .many."),
        ({"learning_rate": "fast"}, "training.learning_rate must be a number"),
        ({"load_in_4bit": "maybe"}, "must be true or false"),
        ({"max_steps": "0"}, "training.max_steps must be at least 1, not 0"),
        ({"max_steps": -1}, "training.max_steps must be at least 1, not -1"),
        ({"loss_type": "ppo"}, "training.loss_type must be one of grpo, dr_grpo, dapo"),
        ({"scale_rewards": "yes"}, "training.scale_rewards must be one of group, batch, none"),
        ({"beta": "-0.1"}, "training.beta must be 0 or more"),
        ({"steps_per_generation": -2}, "steps_per_generation must be 0"),
        ({"rewards": {"games_per_completion": 0}}, "rewards.games_per_completion must be at least 1"),
        ({"preset": "8x8"}, "unknown preset '8x8'"),
        ({"learning_rate": -1}, "training.learning_rate must be more than 0, not -1"),
        ({"temperature": 0}, "training.temperature must be more than 0"),
        ({"lora_rank": 0}, "training.lora_rank must be at least 1, not 0"),
        ({"lora_alpha": 0}, "training.lora_alpha must be more than 0"),
        ({"per_device_train_batch_size": 0}, "training.per_device_train_batch_size must be at least 1"),
        ({"game": {"target": 3}}, "game.target must be a power of two of at least 8"),
        ({"game": {"target": 4}}, "game.target must be a power of two of at least 8"),
        ({"sandbox": {"memory_mb": 0}}, "sandbox.memory_mb must be at least 64"),
        ({"sandbox": {"call_timeout": 0}}, "sandbox.call_timeout must be more than 0"),
    ],
)
def test_bad_overrides_say_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        cfg.make_config("cpu-tiny", **kwargs)


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(ValueError, match="cpu-tiny"):
        cfg.make_config("tpu-pod")


def test_environment_variable_selects_the_profile(monkeypatch):
    monkeypatch.setenv(cfg.PROFILE_ENV, "h100")
    c = cfg.make_config()
    assert c.training.profile == "h100" and "environment" in c.profile_reason
    monkeypatch.setenv(cfg.PROFILE_ENV, "nope")
    with pytest.raises(ValueError, match="not a profile"):
        cfg.make_config()


@pytest.mark.parametrize(
    "gpus, expected",
    [
        ([], "cpu"),
        ([("NVIDIA GB10", 0)], "dgx-spark"),
        ([("NVIDIA H100 80GB HBM3", 81559)], "h100"),
        ([("NVIDIA GH200 96GB HBM3", 97871)], "h100"),
        ([("NVIDIA H200", 143771)], "h200"),
        ([("NVIDIA L4", 23034)], "dgx-spark"),
    ],
)
def test_detection_from_the_gpu(monkeypatch, gpus, expected):
    monkeypatch.delenv(cfg.PROFILE_ENV, raising=False)
    monkeypatch.setattr(cfg, "_gpus", lambda: gpus)
    name, reason = cfg.detect_profile()
    assert name == expected and reason


def test_generation_batch_divides_by_the_group_size_in_every_profile():
    for make in cfg.PROFILES.values():
        t = make()
        assert (t.per_device_train_batch_size * t.gradient_accumulation_steps) % t.num_generations == 0


def test_the_h200_profile_is_the_h100_one_without_gradient_checkpointing():
    # Measured on four H200s (RESULTS.md, "Four H200s, and gradient checkpointing off"): the only difference.
    h100, h200 = cfg.h100(), cfg.h200()
    differ = {f.name for f in fields(h100) if getattr(h100, f.name) != getattr(h200, f.name)}
    assert differ == {"profile", "output_dir", "gradient_checkpointing"}
    assert (h100.gradient_checkpointing, h200.gradient_checkpointing) == ("unsloth", "false")
    # 92-94 GiB were measured without checkpointing: an 80 GB H100 (or a 96 GB GH200) keeps the h100 profile.
    assert 97871 < cfg.H200_MIB <= 143771


def test_every_profile_that_loads_gpt_oss_20b_is_a_gpu_profile():
    from helpers.model import GPU_PROFILES

    loads_20b = {name for name, make in cfg.PROFILES.items() if "gpt-oss-20b" in make().model_name}
    assert loads_20b == set(GPU_PROFILES)


def test_every_profile_trains_into_its_own_folder():
    # The dashboard lists outputs/*/metrics.jsonl, and a GPU run never mixes with the compile cache or a CPU run.
    for name, make in cfg.PROFILES.items():
        assert make().output_dir == f"outputs/{name}"
    assert cfg.TrainingConfig().output_dir == cfg.dgx_spark().output_dir


def test_the_grpo_choices_are_explicit_with_trl_s_defaults():
    t = cfg.make_config("dgx-spark").training
    assert (t.loss_type, t.beta, t.scale_rewards, t.mask_truncated_completions) == (
        "dapo",
        0.0,
        "group",
        False,
    )
    assert (t.num_iterations, t.steps_per_generation) == (1, 0)


def test_the_cpu_profile_is_the_small_real_model():
    t = cfg.make_config("cpu").training
    assert t.model_name == "outputs/smollm2-135m-instruct" and not t.use_unsloth and not t.load_in_4bit
    assert (t.lora_rank, t.num_generations, t.max_completion_length) == (16, 8, 128)


def test_a_preset_sets_the_game_and_the_graded_reward():
    c = cfg.make_config("cpu", preset="4x4-512")
    assert (c.game.size, c.game.target, c.rewards.graded) == (4, 512, True)
    assert cfg.make_config("cpu", preset="original").rewards.graded is False
    assert cfg.make_config("cpu", preset="4x4-512", rewards={"graded": "false"}).rewards.graded is False
    assert cfg.make_config("cpu", preset="4x4-512", game={"keymap": "wasd"}).game.keymap == "wasd"
    assert cfg.LEARNABLE_PRESET in cfg.GAME_PRESETS


def test_every_step_plays_its_own_games():
    rewards = cfg.RewardConfig(seed=10, games_per_completion=3)
    assert cfg.training_seeds(rewards, None) == cfg.training_seeds(rewards, 0) == (10, 11, 12)
    assert cfg.training_seeds(rewards, 1) == (13, 14, 15)
    seen = [seed for step in range(50) for seed in cfg.training_seeds(rewards, step)]
    assert len(seen) == len(set(seen)) == 150


def test_the_schedulers_checked_are_transformers_own():
    from transformers.trainer_utils import SchedulerType

    assert tuple(kind.value for kind in SchedulerType) == cfg.LR_SCHEDULERS
    with pytest.raises(ValueError, match="lr_scheduler_type must be one of linear, cosine, .* not 'cosin'"):
        cfg.make_config("cpu-tiny", lr_scheduler_type="cosin")
