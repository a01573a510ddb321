import dataclasses
import json
import re

import pytest

from softtoken.latent import options as opts

SEED_STRINGS = {  # every option string of seeds/latent-reasoning-options.md, by group
    "latent": ["", "recurrent_filter_MLP", "recurrent_filter_MLP/detach_binary_head_inputs"],
    "lora": [
        "llama_target_modules/r_128/alpha_32/dropout_0p1",
        "llama_target_modules/latent_modules_to_save/r_128/alpha_32/dropout_0p1",
        "llama_target_modules/latent_modules_to_save/r_32/alpha_32/dropout_0p1",
    ],
    "sft": [
        "gsm8k-aug/slice_proportion_85p/batch_size_128/steps_30k/lr_1e-4/cosine-warmup_900/max_grad_norm_2/weight_decay_0p1/no_decay_some_params/val_period_200/save_checkpoint_period_4k/gc_if_necessary",
        "gsm8k-aug/slice_proportion_85p/no_cot/batch_size_128/steps_30k/lr_1e-4/cosine-warmup_900/max_grad_norm_2/weight_decay_0p1/no_decay_some_params/val_period_200/save_checkpoint_period_4k/gc_if_necessary",
        "gsm8k-aug/slice_proportion_85p/remove_last_reasoning_step/remove_negative_answers/latent_flat_6/batch_size_128/steps_30k/codi_loss_20/calc_smooth_l1/norm_layerwise_std/lr_8e-4/cosine-warmup_900/max_grad_norm_2/weight_decay_0p1/val_period_200/save_checkpoint_period_4k/no_decay_some_params/shift_target_token_one",
        "gsm8k-aug/slice_proportion_85p/remove_last_reasoning_step/remove_negative_answers/latent_plus_5_by_1_max_10/batch_size_128/steps_30k/codi_loss_20/calc_smooth_l1/norm_layerwise_std/lr_8e-4/cosine-warmup_900/max_grad_norm_2/weight_decay_0p1/val_period_200/save_checkpoint_period_4k/no_decay_some_params/shift_target_token_one",
        "gsm8k-aug/remove_last_reasoning_step/remove_negative_answers/latent_flat_6/batch_size_128/steps_30k/codi_loss_20/calc_smooth_l1/norm_layerwise_std/lr_8e-4/cosine-warmup_900/max_grad_norm_2/weight_decay_0p1/val_period_200/save_checkpoint_period_4k/mask_latent_reasoning_labels/no_decay_some_params/shift_target_token_one",
        "gsm8k-aug/remove_last_reasoning_step/remove_negative_answers/latent_flat_6/batch_size_128/steps_30k/codi_loss_20/intermediate_block_llama_3_12/calc_smooth_l1/norm_layerwise_std/lr_8e-4/cosine-warmup_900/max_grad_norm_2/weight_decay_0p1/val_period_200/save_checkpoint_period_4k/mask_latent_reasoning_labels/no_decay_some_params/shift_target_token_one",
        "gsm8k-aug/latent_flat_6/batch_size_128/steps_30k/mean_reasoning_loss_20/calc_smooth_l1/norm_layerwise_std/lr_8e-4/cosine-warmup_900/max_grad_norm_2/weight_decay_0p1/val_period_200/save_checkpoint_period_4k/mask_latent_reasoning_labels/no_decay_some_params/shift_target_token_one",
        "gsm8k-aug/latent_flat_6/batch_size_128/steps_30k/mean_reasoning_loss_20/intermediate_block_llama_3_12/calc_smooth_l1/norm_layerwise_std/lr_8e-4/cosine-warmup_900/max_grad_norm_2/weight_decay_0p1/val_period_200/save_checkpoint_period_4k/mask_latent_reasoning_labels/no_decay_some_params/shift_target_token_one",
        "gsm8k-aug/remove_last_reasoning_step/remove_negative_answers/latent_flat_6/batch_size_128/steps_30k/codi_loss_20/mean_reasoning_loss_20/calc_smooth_l1/norm_layerwise_std/lr_8e-4/cosine-warmup_900/max_grad_norm_2/weight_decay_0p1/val_period_200/save_checkpoint_period_4k/mask_latent_reasoning_labels/no_decay_some_params/shift_target_token_one",
    ],
    "eval": ["gsm8k-aug-val", "gsm8k-aug-val/latent_thinking", "gsm8k-aug-val/latent_thinking/latent_thought_count_override_6",
             "gsm8k-aug-test/latent_thinking"],
}
GRPO_PAIRS = [
    ("model-latent-6/slice_proportion_15p/batch_size_128/rel_len_penalty_1e-4/rel_len_acc_req_ALL/rel_len_reward_1e-1",
     "standard-1a/cosine_lr/lr_1e-5/weight_decay_1e-3/beta_1e-3/steps_60k/eval_steps_200/save_steps_200/no_save_limit/num_gen_16"),
    ("model-latent-6-by-1/slice_proportion_15p/batch_size_128/rel_len_penalty_1e-4/rel_len_acc_req_ALL/rel_len_reward_1e-1",
     "standard-1a/cosine_lr/lr_1e-5/weight_decay_1e-3/beta_1e-3/steps_60k/eval_steps_200/save_steps_200/no_save_limit/num_gen_16"),
]


@pytest.mark.parametrize(("text", "value"), [("0p1", 0.1), ("85p", 0.85), ("30k", 30000), ("4k", 4000), ("8e-4", 8e-4), ("20", 20)])
def test_parse_number_reads_option_values(text, value):
    assert opts.parse_number(text) == pytest.approx(value)


@pytest.mark.parametrize(("group", "text"), [(g, t) for g, texts in SEED_STRINGS.items() for t in texts])
def test_resolve_accepts_every_seed_string(group, text):
    config = opts.resolve(group, text)
    assert dataclasses.is_dataclass(config)


@pytest.mark.parametrize(("train", "grpo"), GRPO_PAIRS)
def test_resolve_grpo_merges_both_strings(train, grpo):
    config = opts.resolve("grpo", train, grpo)
    assert config.init_from.startswith("latent-6") and config.num_generations == 16
    assert config.rel_len_acc_req == 1.0 and config.beta == pytest.approx(1e-3) and config.save_limit is None


def test_resolve_sft_reads_parametric_tokens_with_unregistered_values():
    config = opts.resolve("sft", "latent_plus_3_by_2_max_7/lr_3p5e-3/steps_12k/codi_loss_7/intermediate_block_tiny_0_1/slice_proportion_40p")
    assert (config.latent_factor, config.latent_bias, config.latent_max) == (2, 3, 7)
    assert config.steps == 12000 and config.codi_weight == 7 and config.block_range == (0, 1)
    assert config.slice_proportion == pytest.approx(0.4)


def test_resolve_rejects_conflicting_tokens():
    with pytest.raises(ValueError, match="already set by 'lr_8e-4'"):
        opts.resolve("sft", "lr_8e-4/lr_1e-4")
    with pytest.raises(ValueError, match="latent_factor"):
        opts.resolve("sft", "latent_flat_6/latent_plus_5_by_1_max_10")
    with pytest.raises(ValueError, match="warmup_steps"):
        opts.resolve("grpo", "warmup_5", "standard-1a")


def test_resolve_rejects_unknown_token_with_suggestion():
    with pytest.raises(ValueError, match="latent_flat_<k>"):
        opts.resolve("sft", "latent_flat6")


@pytest.mark.parametrize(("group", "text"), [
    ("sft", "codi_loss_20"),  # KD without a latent schedule
    ("sft", "batch_size_10/micro_batch_size_3"),
    ("lora", "dropout_1p5"),
    ("latent", "recurrent_filter_GRU"),
    ("eval", "latent_thought_count_override_6"),  # override without latent_thinking
    ("grpo", "batch_size_10/num_gen_4"),
    ("grpo", "rel_len_acc_req_3"),
    ("sft", "step_result_loss_1"),  # step results need thoughts to read them from
])
def test_configs_reject_bad_values(group, text):
    with pytest.raises(ValueError):
        opts.resolve(group, text)


@pytest.mark.parametrize("group", sorted(opts.GROUPS))
def test_configs_build_with_defaults_and_round_trip(group):
    config = opts.resolve(group, "")
    data = json.loads(json.dumps(opts.config_to_dict(config)))
    assert opts.config_from_dict(type(config), data) == config


def test_resolved_record_hash_tracks_fields():
    a = opts.resolved_record({}, {"sft": opts.resolve("sft", "lr_1e-3")})
    b = opts.resolved_record({}, {"sft": opts.resolve("sft", "lr_1e-3")})
    c = opts.resolved_record({}, {"sft": opts.resolve("sft", "lr_2e-3")})
    assert a["hash"] == b["hash"] != c["hash"]


@pytest.mark.parametrize(("config_type", "field", "value"), [
    (opts.SftConfig, "steps", "two"),
    (opts.SftConfig, "steps", 2.5),
    (opts.SftConfig, "no_cot", "yes"),
    (opts.SftConfig, "micro_batch_size", True),  # a bool is not a number
    (opts.SftConfig, "block_range", (1,)),
    (opts.LoraOptions, "target_modules", ("q_proj", 1)),
    (opts.LoraOptions, "alpha", "16"),
    (opts.LatentSettings, "max_latent_steps", None),
    (opts.EvalConfig, "max_examples", "all"),
    (opts.GrpoConfig, "init_from", 6),
])
def test_configs_reject_wrong_types_naming_class_field_and_value(config_type, field, value):
    with pytest.raises(ValueError, match=rf"^{config_type.__name__}\.{field} must be .+, got {re.escape(repr(value))} "):
        config_type(**{field: value})


def test_configs_accept_an_int_for_a_float_and_none_where_optional():
    assert opts.LoraOptions(alpha=16).alpha == 16
    assert opts.SftConfig(micro_batch_size=None, block_range=(0, 1)).block_range == (0, 1)


def test_config_from_dict_rejects_a_wrong_typed_saved_value():
    with pytest.raises(ValueError, match="LatentSettings.binary_head_temp must be float"):
        opts.config_from_dict(opts.LatentSettings, {"binary_head_temp": "hot"})


def test_option_value_errors_name_the_token():
    with pytest.raises(ValueError, match=r"^sft option 'steps_2p5': expected an integer"):
        opts.resolve("sft", "steps_2p5")


@pytest.mark.parametrize(("group", "strings"), [
    ("sft", ("latent_flat_6/autocast_bf16",)),
    ("eval", ("gsm8k-aug-val/latent_thinking/autocast_bf16",)),
    ("grpo", ("autocast_bf16", "standard-1a")),  # the --train string (shared rules) ...
    ("grpo", ("slice_proportion_15p", "standard-1a/autocast_bf16")),  # ... or the --grpo string
])
def test_autocast_bf16_flag_lands_in_the_config_and_defaults_off(group, strings):
    assert opts.resolve(group, *strings).autocast_bf16 is True
    assert opts.resolve(group, "").autocast_bf16 is False


def test_autocast_bf16_set_in_both_grpo_strings_is_a_conflict():
    with pytest.raises(ValueError, match="autocast_bf16"):
        opts.resolve("grpo", "autocast_bf16", "autocast_bf16")


def test_flat_zero_is_a_latent_run_with_no_thoughts():
    config = opts.resolve("sft", "gsm8k-aug/latent_flat_0")
    assert config.is_latent and (config.latent_factor, config.latent_max) == (0, 0)


def test_step_result_loss_sets_its_weight_on_a_latent_run():
    assert opts.resolve("sft", "latent_flat_3/step_result_loss_0p5").step_result_weight == 0.5
    assert opts.resolve("sft", "latent_flat_3").step_result_weight == 0.0


def test_a_field_added_with_its_default_leaves_the_hash_as_it_was():
    @dataclasses.dataclass(frozen=True)
    class Before:
        lr: float = 1e-4
        steps: int = 10

    @dataclasses.dataclass(frozen=True)
    class After(Before):
        new_loss_weight: float = 0.0

    assert opts.changed_fields(After(lr=3e-4)) == {"lr": 3e-4}
    before = opts.resolved_record({}, {"sft": Before(lr=3e-4)})
    assert opts.resolved_record({}, {"sft": After(lr=3e-4)})["hash"] == before["hash"]
    assert opts.resolved_record({}, {"sft": After(lr=3e-4, new_loss_weight=1.0)})["hash"] != before["hash"]
