"""GRPO end to end on the tiny model: real rewards, metrics.jsonl, checkpoints, resume; and the pieces."""

from __future__ import annotations

import json
import logging
from dataclasses import replace

import pytest

from helpers import runs, training, upstream
from helpers.config import as_dict, make_config
from helpers.metrics import append_metrics, read_metrics
from helpers.model import load_model
from helpers.runs import RunFolderError
from helpers.training import ConfigurationError


def tiny_config(tiny_model_dir, output_dir, **overrides):
    settings = {
        "model_name": str(tiny_model_dir),
        "output_dir": str(output_dir),
        "max_steps": 2,
        "save_steps": 2,
    }
    return make_config("cpu-tiny", **{**settings, **overrides})


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory):
    """Two GRPO steps with the project's reward functions, then a resume to step 3 (same model object)."""
    output_dir = tmp_path_factory.mktemp("run")
    config = tiny_config(tiny_model_dir, output_dir)
    model, tokenizer = load_model(config)
    first = training.train(config, model=model, tokenizer=tokenizer, progress=False)
    records_after_first = read_metrics(output_dir)
    second = training.train(
        replace_steps(config, 3), resume=True, model=model, tokenizer=tokenizer, progress=False
    )
    return {
        "config": config,
        "dir": output_dir,
        "first": first,
        "second": second,
        "records_after_first": records_after_first,
        "model": model,
        "tokenizer": tokenizer,
    }


def replace_steps(config, max_steps):
    return replace(config, training=replace(config.training, max_steps=max_steps))


def test_every_completion_of_every_step_is_in_the_completions_log(run):
    records = read_metrics(run["dir"] / "completions.jsonl")
    generations = run["config"].training.per_device_train_batch_size
    assert [record["step"] for record in records] == [1] * generations + [2] * generations + [3] * generations
    assert {tuple(record["seeds"]) for record in records if record["step"] == 2} == {(3409, 3410)}
    assert set(records[0]["rewards"]) == {"function_works", "no_cheating", "strategy_succeeds"}


def test_the_run_has_a_model_card_that_names_its_base_model(run):
    card = (run["dir"] / "README.md").read_text()
    assert f"base_model: {run['config'].training.model_name}" in card
    assert "fine-tuned version of [None]" not in card  # TRL's own card, written over
    assert "Steps: 3 of 3; latest checkpoint: `checkpoint-3`" in card
    assert "def strategy(board)" in card and "6x6 board to 2048" in card


def test_two_steps_log_every_reward_function(run):
    records = run["records_after_first"]
    assert [record["step"] for record in records] == [1, 2]
    for name in ("function_works", "no_cheating", "strategy_succeeds"):
        assert all(f"rewards/{name}/mean" in record for record in records), name
    assert all("outcomes/missing" in record for record in records)  # the rewards' own outcome counts
    assert run["first"].global_step == 2


def test_a_checkpoint_holds_the_adapter_and_the_optimiser(run):
    checkpoint = run["dir"] / "checkpoint-2"
    for name in ("adapter_model.safetensors", "adapter_config.json", "optimizer.pt", "trainer_state.json"):
        assert (checkpoint / name).is_file(), name
    assert run["first"].checkpoint == str(checkpoint)


def test_the_run_config_is_saved_beside_the_checkpoints(run):
    saved = json.loads((run["dir"] / runs.RUN_CONFIG_FILE).read_text())
    assert saved["training"]["lora_rank"] == run["config"].training.lora_rank
    assert saved["training"]["max_steps"] == 3  # rewritten by the resume


def test_resume_continues_to_step_three(run):
    second = run["second"]
    assert second.global_step == 3
    assert second.resumed_from == str(run["dir"] / "checkpoint-2")
    assert (run["dir"] / "checkpoint-3").is_dir()
    assert [record["step"] for record in read_metrics(run["dir"])] == [1, 2, 3]


def test_the_first_step_after_a_longer_resume_trains_at_the_new_schedules_rate(run):
    """The two-step run ended its linear schedule at 0; the resumed third step of three must not train at that
    (the rate of a fresh three-step run there: one warm-up step, then halfway down)."""
    rates = [record["learning_rate"] for record in read_metrics(run["dir"])]
    assert rates[2] == pytest.approx(run["config"].training.learning_rate * (3 - 2) / (3 - 1))


def test_a_finished_run_puts_its_latest_adapter_into_a_fresh_model(run):
    # The notebook run again, or after `python -m helpers train`: the run is complete, nothing is
    # trained, and the model it holds must be the run's, not the fresh one it just loaded.
    import torch
    from safetensors.torch import load_file

    from helpers.model import trained_steps

    fresh, tokenizer = load_model(run["config"])
    assert trained_steps(fresh) == 0
    result = training.train(replace_steps(run["config"], 3), resume="auto", model=fresh, tokenizer=tokenizer)
    assert (result.global_step, result.seconds) == (3, 0.0)
    assert (
        "checkpoint-3" in result.model_holds and "now holds that checkpoint's adapter" in result.model_holds
    )
    assert trained_steps(fresh) == 3
    saved = load_file(run["dir"] / "checkpoint-3" / "adapter_model.safetensors")
    weights = {name: p for name, p in fresh.named_parameters() if "lora_" in name}
    assert len(weights) == len(saved) > 0
    for name, tensor in saved.items():
        match = [
            p
            for full, p in weights.items()
            if full.replace(".default", "").endswith(name.split("base_model.model.")[-1])
        ]
        assert len(match) == 1 and torch.equal(match[0].detach(), tensor), name


def test_training_records_its_steps_on_the_model(run):
    from helpers.model import trained_steps

    assert trained_steps(run["model"]) == 3
    assert "trained to step 3, continued from checkpoint-2" in run["second"].model_holds


def test_saved_config_rebuilds_the_run_settings(run):
    rebuilt = runs.saved_config(run["dir"])
    assert as_dict(replace(rebuilt, profile_reason="")) == as_dict(
        replace(replace_steps(run["config"], 3), profile_reason="")
    )
    assert runs.saved_config(run["dir"], max_steps=10).training.max_steps == 10


def test_generate_strategies_returns_completions_and_extractions(run):
    generated = training.generate_strategies(
        run["model"], run["tokenizer"], run["config"], n=2, max_new_tokens=8
    )
    assert len(generated) == 2
    assert all(isinstance(item.text, str) for item in generated)
    assert all(item.source is None for item in generated)  # a random model writes no function
    assert run["model"].training  # the model is left in the mode it was in


# --- the run folder --------------------------------------------------------------------------------


def fake_run(tmp_path, config, steps=(2,), logged=4):
    folder = tmp_path / "fake"
    for number in steps:
        (folder / f"checkpoint-{number}").mkdir(parents=True)
        (folder / f"checkpoint-{number}" / runs.COMPLETE_MARK).write_text("{}")
    (folder / runs.RUN_CONFIG_FILE).write_text(json.dumps(as_dict(config)))
    for number in range(1, logged + 1):
        append_metrics(folder / "metrics.jsonl", {"step": number, "reward": 0.0})
    return folder


def test_resume_refuses_other_settings_and_names_them(tmp_path):
    config = make_config("cpu-tiny", output_dir=str(tmp_path / "fake"))
    fake_run(tmp_path, config)
    changed = replace(config, training=replace(config.training, lora_rank=8))
    with pytest.raises(RunFolderError, match=r"training\.lora_rank: 4 -> 8"):
        runs.prepare_run_folder(changed, resume=True)


def test_settings_added_after_a_run_started_do_not_block_its_resume(tmp_path):
    config = make_config("cpu-tiny", output_dir=str(tmp_path / "fake"))
    folder = fake_run(tmp_path, config)
    saved = json.loads((folder / runs.RUN_CONFIG_FILE).read_text())
    del saved["training"]["loss_type"], saved["training"]["beta"]  # a run saved before these existed
    (folder / runs.RUN_CONFIG_FILE).write_text(json.dumps(saved))
    assert runs.prepare_run_folder(config, resume=True).name == "checkpoint-2"
    (folder / runs.RUN_CONFIG_FILE).write_text(json.dumps(saved))
    other = replace(config, training=replace(config.training, beta=0.1))
    with pytest.raises(RunFolderError, match=r"training\.beta: None -> 0\.1"):
        runs.prepare_run_folder(other, resume=True)


def test_resume_may_change_the_length_of_the_run(tmp_path):
    config = make_config("cpu-tiny", output_dir=str(tmp_path / "fake"))
    fake_run(tmp_path, config, steps=(2, 10), logged=12)
    for step in range(1, 13):
        append_metrics(tmp_path / "fake" / "completions.jsonl", {"step": step, "completion": "x"})
        append_metrics(tmp_path / "fake" / "completions-rank1.jsonl", {"step": step, "completion": "y"})
    longer = replace_steps(config, 50)
    assert runs.prepare_run_folder(longer, resume=True).name == "checkpoint-10"
    assert [record["step"] for record in read_metrics(tmp_path / "fake")] == list(range(1, 11))
    for log in ("completions.jsonl", "completions-rank1.jsonl"):  # every process's own log
        completions = read_metrics(tmp_path / "fake" / log)
        assert [record["step"] for record in completions] == list(
            range(1, 11)
        )  # steps 11-12 are trained again


def test_a_fresh_run_refuses_a_folder_with_checkpoints(tmp_path):
    config = make_config("cpu-tiny", output_dir=str(tmp_path / "fake"))
    fake_run(tmp_path, config)
    with pytest.raises(RunFolderError, match="already holds a run.*--resume"):
        runs.prepare_run_folder(config, resume=False)


def test_a_resume_runs_in_as_many_processes_as_trained_its_checkpoint(tmp_path, monkeypatch):
    config = make_config("cpu-tiny", output_dir=str(tmp_path / "fake"))
    folder = fake_run(tmp_path, config)
    for rank in (0, 1):
        (folder / "checkpoint-2" / f"rng_state_{rank}.pth").write_bytes(b"")
    assert runs.checkpoint_processes(folder / "checkpoint-2") == 2
    with pytest.raises(
        RunFolderError,
        match=r"trained in 2 processes and this resume would run in 1 process: resume it in 2 processes \(--processes 2",
    ):
        runs.prepare_run_folder(config, resume=True)
    assert [record["step"] for record in read_metrics(folder)] == [1, 2, 3, 4]  # nothing was cut
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert runs.prepare_run_folder(config, resume=True).name == "checkpoint-2"
    for rank in (0, 1):
        (folder / "checkpoint-2" / f"rng_state_{rank}.pth").unlink()
    (folder / "checkpoint-2" / "rng_state.pth").write_bytes(b"")
    with pytest.raises(RunFolderError, match="trained in 1 process and this resume would run in 2 processes"):
        runs.prepare_run_folder(config, resume=True)
    # a complete run is only read (the notebook takes its adapter in one process), whatever trained it
    assert runs.prepare_run_folder(replace_steps(config, 2), resume=True).name == "checkpoint-2"
    # ranks 0..3 trained it, whichever files a cut save left
    (folder / "checkpoint-2" / "rng_state_3.pth").write_bytes(b"")
    assert runs.checkpoint_processes(folder / "checkpoint-2") == 4


def test_the_bitsandbytes_optimisers_are_transformers_own():
    trainer_optimizer = pytest.importorskip("transformers.trainer_optimizer")
    from helpers.training import BNB_OPTIMISERS

    assert {name.value for name in trainer_optimizer._BITSANDBYTES_OPTIMIZERS} == BNB_OPTIMISERS


@pytest.mark.parametrize("where", ["h100", ""], ids=["h100-folder", "outputs-itself"])
def test_a_run_an_earlier_version_put_elsewhere_is_named(tmp_path, caplog, where):
    # H200s trained into outputs/h100 before the h200 profile; every GPU profile into outputs/ before that.
    outputs = tmp_path / "outputs"
    before = outputs / where if where else outputs
    (before / "checkpoint-2").mkdir(parents=True)
    (before / "checkpoint-2" / runs.COMPLETE_MARK).write_text("{}")
    (before / runs.RUN_CONFIG_FILE).write_text(
        json.dumps(as_dict(make_config("h100", output_dir=str(before))))
    )
    config = make_config("h200", output_dir=str(outputs / "h200"))
    with pytest.raises(RunFolderError) as refused:
        runs.prepare_run_folder(config, resume=True)
    assert f"an earlier run is in {before} (latest: checkpoint-2)" in str(refused.value)
    assert f"--output-dir {before} --resume" in str(refused.value)
    with caplog.at_level(logging.WARNING, logger="helpers"):
        runs.prepare_run_folder(config, resume=False)
    assert "this starts a new run in" in caplog.text and f"--output-dir {before} --resume" in caplog.text
    assert runs.earlier_run(tmp_path / "mine") is None  # a folder that is no profile's own succeeds nothing


def test_resume_needs_a_checkpoint(tmp_path):
    config = make_config("cpu-tiny", output_dir=str(tmp_path / "empty"))
    with pytest.raises(RunFolderError, match="nothing to resume: .* does not exist"):
        runs.prepare_run_folder(config, resume=True)
    (tmp_path / "empty" / "checkpoint-7").mkdir(parents=True)  # a save that was cut short
    with pytest.raises(RunFolderError, match=r"its only checkpoints were left incomplete \(checkpoint-7\)"):
        runs.prepare_run_folder(config, resume=True)


def test_a_resume_may_move_the_compile_cache(tmp_path):
    config = make_config("cpu-tiny", output_dir=str(tmp_path))
    runs.prepare_run_folder(config, resume=False)
    (tmp_path / "checkpoint-1").mkdir()
    (tmp_path / "checkpoint-1" / runs.COMPLETE_MARK).write_text("{}")
    moved = replace(config, training=replace(config.training, compile_cache=str(tmp_path / "elsewhere")))
    assert runs.prepare_run_folder(moved, resume=True) == tmp_path / "checkpoint-1"
    quicker = replace(config, training=replace(config.training, logprob_recompute=True))  # the same loss
    assert runs.prepare_run_folder(quicker, resume=True) == tmp_path / "checkpoint-1"
    other = replace(config, training=replace(config.training, lora_rank=8))
    with pytest.raises(RunFolderError, match="lora_rank"):
        runs.prepare_run_folder(other, resume=True)


def test_saved_config_needs_a_run_folder(tmp_path):
    with pytest.raises(RunFolderError, match="not the output folder of a run"):
        runs.saved_config(tmp_path)


# --- configuration ---------------------------------------------------------------------------------


def test_generation_batch_must_be_a_multiple_of_the_group():
    with pytest.raises(ConfigurationError, match="not a multiple of num_generations"):
        training.check_batch_sizes(make_config("cpu-tiny", num_generations=3))
    with pytest.raises(ConfigurationError, match="at least 2"):
        training.check_batch_sizes(make_config("cpu-tiny", num_generations=1, per_device_train_batch_size=1))
    assert training.check_batch_sizes(make_config("dgx-spark")) == 4


def test_grpo_config_carries_the_profile():
    config = make_config("cpu-tiny", max_steps=7)
    args = training.grpo_config(config, gpu=False)
    assert (args.num_generations, args.max_completion_length, args.max_steps) == (2, 32, 7)
    assert args.chat_template_kwargs == {"reasoning_effort": "low"}
    assert args.warmup_steps == config.training.warmup_ratio  # a float below 1 is a ratio
    assert (args.save_steps, args.logging_steps, args.learning_rate) == (2, 1, 1e-3)
    assert not args.bf16 and not args.gradient_checkpointing


def test_grpo_config_carries_the_explicit_grpo_choices():
    config = make_config(
        "cpu-tiny", loss_type="dr_grpo", beta="0.04", scale_rewards="none", mask_truncated_completions="true"
    )
    args = training.grpo_config(config, gpu=False)
    assert (args.loss_type, args.beta, args.scale_rewards, args.mask_truncated_completions) == (
        "dr_grpo",
        0.04,
        "none",
        True,
    )
    assert args.steps_per_generation == args.gradient_accumulation_steps  # 0 means TRL's default
    assert (
        training.grpo_config(make_config("cpu-tiny", steps_per_generation=2), gpu=False).steps_per_generation
        == 2
    )
    assert not hasattr(args, "unsloth_logit_chunk_multiplier") or args.unsloth_logit_chunk_multiplier is None
    fewer = training.grpo_config(make_config("cpu-tiny", logit_chunk_multiplier=1), gpu=False)
    assert fewer.unsloth_logit_chunk_multiplier == 1
    with pytest.raises(ValueError, match="logit_chunk_multiplier must be 0"):
        make_config("cpu-tiny", logit_chunk_multiplier=-1)


def test_dataset_repeats_the_prompt_with_the_reasoning_effort():
    config = make_config("cpu-tiny", dataset_size=5, reasoning_effort="medium")
    dataset = training.build_dataset(config)
    assert len(dataset) == 5
    assert dataset[0]["reasoning_effort"] == "medium"
    assert (
        dataset[0]["prompt"][0]["role"] == "user"
        and "def strategy(board)" in dataset[0]["prompt"][0]["content"]
    )


def test_torch_logprob_head_matches_log_softmax():
    import torch

    torch.manual_seed(0)
    hidden, weight, bias = torch.randn(5, 8), torch.randn(11, 8), torch.randn(11)
    targets = torch.randint(0, 11, (5,))
    outputs = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
    log_probs, entropy, log_sum_sq, mean_logits, is_top1 = upstream.TorchLogProbHead.apply(
        hidden, weight, bias, targets, 0.7, 4, 3.0, 2.0, outputs
    )
    logits = 3.0 * torch.tanh((hidden @ weight.t() + bias) * 2.0 / 3.0) / 0.7
    reference = logits.log_softmax(-1)
    assert torch.allclose(log_probs, reference.gather(-1, targets[:, None])[:, 0], atol=1e-5)
    assert torch.allclose(entropy, -(reference.exp() * reference).sum(-1), atol=1e-5)
    assert torch.allclose(log_sum_sq, (2 * reference).exp().sum(-1).log(), atol=1e-5)
    assert torch.allclose(mean_logits, logits.mean(-1), atol=1e-5)
    assert torch.equal(is_top1, logits.argmax(-1) == targets)


def test_callbacks_log_metrics_and_redraw_the_live_plot(tmp_path, capsys):
    from types import SimpleNamespace

    config = make_config("cpu-tiny", output_dir=str(tmp_path))
    metrics_log, _card, live_plot, _schedule = training._callbacks(config, live_plot=True, progress=False)
    state = SimpleNamespace(global_step=1, max_steps=2, is_world_process_zero=True)
    for number in (1, 2):
        state.global_step = number
        logs = {"reward": float(number), "rewards/function_works/mean": 1.0}
        metrics_log.on_log(None, state, None, logs=logs)
        live_plot.on_log(None, state, None, logs=logs)
    metrics_log.on_log(None, state, None, logs={"train_runtime": 1.0})  # the end-of-run summary is not a step
    assert [record["step"] for record in read_metrics(tmp_path)] == [1, 2]
    assert list(live_plot.figure.axes[0].lines[0].get_ydata()) == [1.0, 2.0]
    assert capsys.readouterr().out.count("Figure(") == 2  # outside a notebook, display() prints the figure


def test_resume_refuses_checkpoints_without_saved_settings(tmp_path):
    config = make_config("cpu-tiny", output_dir=str(tmp_path / "fake"))
    folder = fake_run(tmp_path, config)
    (folder / runs.RUN_CONFIG_FILE).unlink()
    with pytest.raises(RunFolderError, match="no run_config.json"):
        runs.prepare_run_folder(config, resume=True)


def test_a_fresh_run_keeps_an_earlier_log_without_checkpoints(tmp_path):
    config = make_config("cpu-tiny", output_dir=str(tmp_path / "fake"))
    folder = tmp_path / "fake"
    for number in range(1, 4):
        append_metrics(folder / "metrics.jsonl", {"step": number, "reward": 0.0})
    assert runs.prepare_run_folder(config, resume=False) is None
    kept = list(folder.glob("metrics-before-*.jsonl"))
    assert len(kept) == 1 and len(kept[0].read_text().splitlines()) == 3
    assert not (folder / "metrics.jsonl").exists()


def test_auto_resume_continues_a_run_and_starts_a_new_one(tmp_path):
    config = make_config("cpu-tiny", output_dir=str(tmp_path / "fake"))
    assert runs.prepare_run_folder(config, resume="auto") is None  # nothing there: a fresh run
    fake_run(tmp_path, config, steps=(2, 4))
    assert runs.prepare_run_folder(config, resume="auto").name == "checkpoint-4"
    changed = replace(config, training=replace(config.training, lora_rank=8))
    with pytest.raises(RunFolderError, match="other settings"):
        runs.prepare_run_folder(changed, resume="auto")


def test_resuming_a_finished_run_trains_nothing(tmp_path):
    config = make_config("cpu-tiny", output_dir=str(tmp_path / "fake"))
    folder = fake_run(tmp_path, config, steps=(2, 4), logged=4)
    result = training.train(replace_steps(config, 4), resume="auto")  # no model is loaded on this path
    assert (result.global_step, result.seconds, result.checkpoint) == (4, 0.0, str(folder / "checkpoint-4"))
    assert runs.latest_checkpoint(folder).name == "checkpoint-4" and result.last_metrics["step"] == 4


def test_log_lines_go_through_the_progress_bar_not_after_it(capsys):
    import logging
    import sys

    from tqdm import tqdm

    handler = logging.StreamHandler(sys.stderr)
    logging.getLogger("helpers").addHandler(handler)
    try:
        bar = tqdm(total=3, file=sys.stderr, desc="GRPO")
        with training._logs_beside_the_bar(True):
            logging.getLogger("helpers.training").warning("step 1/3 reward 0.500")
        bar.close()
        logging.getLogger("helpers.training").warning("after the bar")
    finally:
        logging.getLogger("helpers").removeHandler(handler)
    err = capsys.readouterr().err
    assert "\rstep 1/3 reward 0.500\n" in err  # the bar's line was cleared first, not written onto
    assert err.count("step 1/3 reward 0.500") == 1  # once: not again through the root logger
    assert "after the bar\n" in err  # the console handler is back once training ends


def test_a_notice_generate_repeats_every_step_is_dropped_while_training(caplog):
    from helpers.training import _without_repeated_notices

    logger = logging.getLogger("transformers.generation.utils")
    with caplog.at_level(logging.WARNING), _without_repeated_notices():
        logger.warning("Both `max_new_tokens` (=200) and `max_length`(=131072) seem to have been set.")
        logger.warning("some other notice")
    logger.warning("Both `max_new_tokens` after training")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["some other notice", "Both `max_new_tokens` after training"]


def test_a_checkpoint_whose_save_was_interrupted_is_passed_over_on_resume(tmp_path, caplog):
    """An interruption while saving leaves `checkpoint-N` without its trainer state: resuming from it
    crashed inside the trainer ("Can't find a valid checkpoint")."""
    config = make_config("cpu-tiny", output_dir=str(tmp_path / "fake"))
    folder = fake_run(tmp_path, config, steps=(2,))
    (folder / "checkpoint-4").mkdir()  # the save of step 4 was cut short
    assert runs.latest_checkpoint(folder).name == "checkpoint-2"
    assert [path.name for path in runs.incomplete_checkpoints(folder)] == ["checkpoint-4"]
    with caplog.at_level(logging.WARNING, logger="helpers"):
        assert runs.prepare_run_folder(config, resume=True).name == "checkpoint-2"
    assert "checkpoint-4 was left incomplete" in caplog.text and "continues from checkpoint-2" in caplog.text


def test_only_an_interrupted_save_is_nothing_to_resume(tmp_path):
    config = make_config("cpu-tiny", output_dir=str(tmp_path / "fake"))
    folder = tmp_path / "fake"
    (folder / "checkpoint-1").mkdir(parents=True)
    with pytest.raises(RunFolderError, match="nothing to resume"):
        runs.prepare_run_folder(config, resume=True)
    assert runs.prepare_run_folder(config, resume=False) is None  # a new run may start there


def test_a_resume_that_trains_nothing_leaves_the_runs_settings_as_they_were(tmp_path):
    """The saved max_steps says which games training played: the held-out check reads it."""
    config = make_config("cpu-tiny", output_dir=str(tmp_path / "fake"), max_steps=4)
    folder = fake_run(tmp_path, config, steps=(2, 4))
    assert runs.prepare_run_folder(replace_steps(config, 2), resume=True).name == "checkpoint-4"
    assert runs.saved_config(folder).training.max_steps == 4
    runs.prepare_run_folder(replace_steps(config, 6), resume=True)  # this one trains on: it is saved
    assert runs.saved_config(folder).training.max_steps == 6


def test_the_first_interrupt_asks_for_a_saved_stop_and_the_second_stops_at_once(caplog):
    import os
    import signal
    from types import SimpleNamespace

    stopper = training._stop_callback()
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    control = SimpleNamespace(should_save=False, should_training_stop=False)
    with pytest.raises(KeyboardInterrupt), training._stop_gracefully(stopper):
        stopper.on_step_end(None, None, control)
        assert not control.should_save  # nothing asked yet: training goes on
        os.kill(os.getpid(), signal.SIGTERM)
        assert stopper.asked == "SIGTERM" and "ends and is saved as a checkpoint" in caplog.text
        stopper.on_step_end(None, None, control)
        assert control.should_save and control.should_training_stop
        os.kill(os.getpid(), signal.SIGINT)  # the second: at once
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


@pytest.mark.slow  # loads the tiny model and trains a step (about 10 s)
def test_an_interrupt_in_a_notebook_saves_the_step_and_still_stops_the_cells(
    tiny_model_dir, tmp_path, monkeypatch
):
    import os
    import signal

    from transformers import TrainerCallback

    class InterruptAtStepOne(TrainerCallback):
        def on_step_begin(self, args, state, control, **kwargs):
            if state.global_step == 0:
                os.kill(os.getpid(), signal.SIGINT)  # the kernel's interrupt button

    monkeypatch.setattr(training, "in_notebook", lambda: True)
    config = tiny_config(tiny_model_dir, tmp_path, max_steps=5, save_steps=100)
    with pytest.raises(KeyboardInterrupt, match="stopped at step 1, saved in .*checkpoint-1"):
        training.train(config, progress=False, live_plot=False, callbacks=[InterruptAtStepOne()])
    assert runs.latest_checkpoint(tmp_path).name == "checkpoint-1"
