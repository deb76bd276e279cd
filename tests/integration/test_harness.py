"""DiffusionLM in-process: model_args parsing, batching (1 vs 8), per-request stops, ELBO requests, errors."""

from __future__ import annotations

import logging
import math
import random
import shutil

import pytest
import torch

from lm_eval_diffusion.harness import DiffusionLM

GEN = {"steps": 8, "gen_length": 16, "block_length": 8}
CONTEXTS = [
    "Question: Tom has 3 apples",
    "SELECT count(*) FROM singer WHERE age > 20",
    "dog",
    "The quick brown fox jumps",
    "baz = foo ( bar )",
    "lines containing the word dog",
    "0123456789",
    "Answer:",
    "The quick brown fox jumps over the lazy dog.",
    "call the function foo",
]


class Request:
    """The part of lm-eval's Instance that an LM reads."""

    def __init__(self, *args):
        self.args = args


def make_lm(path, **kwargs) -> DiffusionLM:
    return DiffusionLM(pretrained=str(path), device="cpu", **kwargs)


def sharpen(lm: DiffusionLM) -> None:
    """Add a fixed random offset per position (counted from the right, so padding does not move it).

    Untrained tiny models predict nearly the same distribution at every masked position, so rankings
    there are decided by rounding; the offset makes them depend on the algorithm, not on rounding.
    """
    bb = lm.backbone
    offset = 2.0 * torch.randn((128, bb.spec.vocab_size), generator=torch.Generator().manual_seed(0))
    original = bb.logits

    def logits(input_ids, attention_mask=None):
        return original(input_ids, attention_mask) + offset[: input_ids.shape[1]].flip(0)

    bb.logits = logits


# ---- model_args --------------------------------------------------------------------------------------
def test_unknown_model_args_list_the_allowed_keys(tiny_checkpoints):
    with pytest.raises(ValueError, match=r"unknown model_args stepz, temp for llada_diffusion; allowed: pretrained, "):
        DiffusionLM(pretrained=str(tiny_checkpoints["llada"]), stepz=3, temp=1)


def test_bad_values_name_the_key(tiny_checkpoints):
    path = str(tiny_checkpoints["llada"])
    with pytest.raises(ValueError, match="model_args steps: expected an integer, got 'many'"):
        DiffusionLM(pretrained=path, steps="many")
    with pytest.raises(ValueError, match="model_args logits_eos_inf: expected true or false, got 'maybe'"):
        DiffusionLM(pretrained=path, logits_eos_inf="maybe")
    with pytest.raises(ValueError, match="remasking='top' is not one of low_confidence, random"):
        DiffusionLM(pretrained=path, remasking="top")
    with pytest.raises(ValueError, match="steps=10 cannot be split evenly over gen_length/block_length = 32/8 = 4"):
        make_lm(path, steps=10, gen_length=32, block_length=8)
    with pytest.raises(ValueError, match="alg apply to sampler=dream only; this run uses sampler=llada"):
        make_lm(path, alg="entropy")
    with pytest.raises(ValueError, match="block_length apply to sampler=llada only"):
        make_lm(tiny_checkpoints["dream"], block_length=8)


def test_arg_string_values_and_cli_settings(tiny_checkpoints, caplog):
    path = tiny_checkpoints["llada"]
    arg_string = f"pretrained={path},steps=8,gen_length=16,block_length=8,logits_eos_inf=True,temperature=0.5,mc_num=16"
    with caplog.at_level(logging.WARNING):
        cli = {"batch_size": "4", "max_batch_size": None, "device": "cuda:0"}  # as lm-eval passes them
        lm = DiffusionLM.create_from_arg_string(arg_string, cli)
    assert (lm.args.steps, lm.args.logits_eos_inf, lm.args.temperature, lm.args.mc_num) == (8, True, 0.5, 16)
    assert lm.batch_size == 4 and lm.sampler == "llada"
    if not torch.cuda.is_available():
        assert lm.device.type == "cpu" and "CUDA is not available" in caplog.text
    explicit = DiffusionLM.create_from_arg_obj(
        {"pretrained": str(path), "batch_size": 2, "device": "cpu"}, {"batch_size": 1, "device": "cpu"})
    assert explicit.batch_size == 2  # model_args win over the CLI's --batch_size
    with caplog.at_level(logging.WARNING):
        auto = make_lm(path, batch_size="auto")
    assert auto.batch_size == 1 and "batch_size=auto" in caplog.text
    assert make_lm(tiny_checkpoints["dream"]).sampler == "dream"


@pytest.mark.gpu
def test_cuda_device_defaults_to_bf16_and_fp32_generates_what_the_cpu_generates(tiny_checkpoints):
    """On CUDA the model loads in bf16 by default; in fp32 its greedy texts equal the CPU's (no near-tie
    in these prompts at fp32; bf16 may flip one, as a different batch size may)."""
    path = tiny_checkpoints["llada"]
    default = DiffusionLM(pretrained=str(path), device="cuda", **GEN)
    assert default.backbone.device.type == "cuda" and default.backbone.dtype == torch.bfloat16
    gpu = DiffusionLM(pretrained=str(path), device="cuda", dtype="float32", **GEN)
    cpu = make_lm(path, **GEN)
    requests = [Request(c, {"until": ["\n"]}) for c in CONTEXTS]
    assert gpu.generate_until(requests) == cpu.generate_until(requests)


# ---- generation ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["generic", "llada", "dream", "llada_nopad"])
def test_greedy_outputs_identical_at_batch_size_1_and_8(tiny_checkpoints, name):
    lm = make_lm(tiny_checkpoints[name], steps=8, gen_length=16, **({} if name == "dream" else {"block_length": 8}))
    sharpen(lm)
    lm.postprocess = lambda ids, until: " ".join(map(str, ids))  # compare raw ids, before any cut
    calls = []
    inner = lm._generate_token_ids

    def recording(prompts, gen_length, *rest):
        calls.append([len(p) for p in prompts])
        return inner(prompts, gen_length, *rest)

    lm._generate_token_ids = recording
    requests = [Request(c, {"until": ["\n"]}) for c in CONTEXTS]
    lm.batch_size = 1
    single = lm.generate_until(requests)
    assert all(len(c) == 1 for c in calls)
    calls.clear()
    lm.batch_size = 8
    batched = lm.generate_until(requests)
    assert batched == single
    if lm.backbone.honours_padding:
        assert max(len(c) for c in calls) == 8 and any(len(set(c)) > 1 for c in calls)  # padded batches
    else:
        assert all(len(set(c)) == 1 for c in calls) and max(len(c) for c in calls) > 1  # equal lengths only
    assert all(str(lm.backbone.spec.mask_id) not in out.split() for out in batched)


def test_each_request_is_cut_at_its_own_stops_and_order_is_restored(tiny_checkpoints):
    lm = make_lm(tiny_checkpoints["llada"], batch_size=8, **GEN)
    tok = lm.tokenizer
    spec = lm.backbone.spec
    enc = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    planned = {
        "first": enc("foo bar\nbaz"),
        "second": enc("foo bar\nbaz qux"),
        "third": enc("abc") + [spec.eos_id] + enc("def"),
        "fourth": enc("x") + [tok.convert_tokens_to_ids("<|eot_id|>")] + enc("y"),
        "fifth": enc("left") + [spec.mask_id] + enc("right. more"),
    }
    by_prompt = {tuple(lm.tok_encode(context)): ids for context, ids in planned.items()}
    batches = []

    def fake(prompts, gen_length, *rest):
        batches.append(len(prompts))
        ids = [by_prompt[tuple(p)] + [spec.eos_id] * (gen_length - len(by_prompt[tuple(p)])) for p in prompts]
        return ids, [0] * len(prompts)

    lm._generate_token_ids = fake
    requests = [
        Request("first", {"until": ["\n"]}),
        Request("second", {"until": ["qux", "bar"]}),
        Request("third", {"until": []}),
        Request("fourth", {"until": "never"}),
        Request("fifth", {"until": ["."]}),
    ]
    out = lm.generate_until(requests)
    assert out == ["foo bar", "foo ", "abc", "x", "leftright"]
    assert batches == [5]  # different `until`s share one batch


def test_generation_length_comes_from_max_gen_toks_rounded_to_blocks(tiny_checkpoints, caplog):
    lm = make_lm(tiny_checkpoints["llada"], steps=8, block_length=8, batch_size=8)
    seen = []
    lm._generate_token_ids = lambda prompts, gen_length, *rest: (
        seen.append((len(prompts), gen_length)) or ([[]] * len(prompts), [0] * len(prompts)))
    requests = [Request(c, {"max_gen_toks": n}) for c, n in (("a", 10), ("b", 20), ("c", 16))]
    with caplog.at_level(logging.WARNING):
        lm.generate_until(requests)
    assert sorted(seen) == [(1, 24), (2, 16)]  # grouped by canvas length: 10 and 16 share 16
    assert "gen_length 10 rounded up to 16" in caplog.text


@pytest.mark.parametrize("name", ["llada", "llada_nopad"])
def test_batches_run_longest_canvas_first_then_longest_prompt_first(tiny_checkpoints, name):
    """The order batches run in: canvas length descending, then prompt length descending, then request
    order; batch_size at most, one canvas length per batch, and one prompt length where padding is ignored."""
    lm = make_lm(tiny_checkpoints[name], steps=8, block_length=8, batch_size=3)
    seen = []
    lm._generate_token_ids = lambda prompts, gen_length, *rest: (
        seen.append((gen_length, [tuple(p) for p in prompts])) or ([[]] * len(prompts), [0] * len(prompts)))
    contexts = ["dog", "The quick brown fox", "0123456789", "cat", "Answer:", "dog", "SELECT name FROM t"]
    requests = [Request(c, {"max_gen_toks": n}) for c, n in zip(contexts, (8, 16, 8, 16, 8, 8, 16))]
    lm.generate_until(requests)
    items = sorted(((-r.args[1]["max_gen_toks"], -len(lm.tok_encode(r.args[0])), i) for i, r in enumerate(requests)))
    expected, group = [], None
    for neg_gen, neg_len, i in items:
        key = (neg_gen, neg_len if not lm.backbone.honours_padding else 0)
        if key != group or len(expected[-1][1]) == 3:
            expected.append((-neg_gen, []))
            group = key
        expected[-1][1].append(tuple(lm.tok_encode(contexts[i])))
    assert seen == expected
    assert [gen for gen, _ in seen][:1] == [16] and len(seen) == (3 if lm.backbone.honours_padding else 6)


def test_unsupported_kwargs_warn_once_and_long_prompts_are_truncated(tiny_checkpoints, caplog):
    lm = make_lm(tiny_checkpoints["llada"], max_length=40, **GEN)
    prompts = []
    lm._generate_token_ids = lambda batch, gen_length, *rest: prompts.extend(batch) or ([[]] * len(batch), [0] * len(batch))
    long_context = "The quick brown fox jumps over the lazy dog. " * 10
    with caplog.at_level(logging.WARNING):
        lm.generate_until([Request(long_context, {"top_p": 0.9, "do_sample": True}), Request("dog", {"top_p": 0.5})])
    assert caplog.text.count("top_p") == 1
    assert "do_sample=True ignored" in caplog.text and "left-truncated" in caplog.text
    assert len(prompts[0]) == 40 - 16 and prompts[0] == lm.tok_encode(long_context)[-24:]


# ---- likelihood ----------------------------------------------------------------------------------
def test_loglikelihood_is_deterministic_per_request_whatever_the_order(tiny_checkpoints):
    lm = make_lm(tiny_checkpoints["dream"], mc_num=16, mc_batch_size=8)
    requests = [Request("Tom has 3 apples and buys", " 4 more"), Request("SELECT", " count(*)"),
                Request("", " the lazy dog"), Request("The quick brown ", "fox")]
    first = lm.loglikelihood(requests)
    shuffled = list(range(len(requests)))
    random.Random(0).shuffle(shuffled)
    second = lm.loglikelihood([requests[i] for i in shuffled])
    assert [second[shuffled.index(i)] for i in range(len(requests))] == first
    assert all(math.isfinite(ll) and ll < 0 and greedy is False for ll, greedy in first)
    assert len({ll for ll, _ in first}) == len(first)


# (context, continuation, log-likelihood) on the tiny LLaDA (seed 1), mc_num=16: recorded before DiffusionLM
# became a TemplateLM, to hold the encoding (empty and space-only contexts, a continuation that begins with
# the prefix token, BOS under add_bos_token) and the per-request seeds to what they were.
PINNED = [
    ("", " the lazy dog", -23.929217298825584),
    ("", "dog", -11.284324645996094),
    ("", "<|endoftext|> dog", -11.64297866821289),  # TemplateLM would take the leading EOS as the context
    ("  ", "dog", -11.542864799499512),
    (" ", " dog", -11.542864799499512),
    ("The quick brown ", "fox", -12.131574392318726),
    ("Tom has 3 apples and buys", " 4 more", -23.8459065357844),
    ("Answer:", " The quick brown fox jumps over", -88.4066029547469),  # 15 tokens: Monte-Carlo, seeded per request
]
PINNED_BOS = [("", " dog", -5.6594757337746415), ("  ", "dog", -11.460627794265747),
              ("Tom has", " 3 apples", -11.746344089508057)]


def test_loglikelihoods_of_empty_space_only_and_ordinary_contexts_are_pinned(tiny_checkpoints, tmp_path):
    from transformers import AutoTokenizer

    from dllm_jepa_train.toy.models import EOS_TOKEN, UNK_TOKEN

    lm = make_lm(tiny_checkpoints["llada"], mc_num=16, mc_batch_size=8)
    tok = lm.tokenizer
    own = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    eos = tok.convert_tokens_to_ids(EOS_TOKEN)
    # An empty context, or one left empty once its spaces move to the continuation, is the prefix token.
    assert lm._encode_pair("", "dog") == ([eos], own("dog"))
    assert lm._encode_pair("  ", "dog") == lm._encode_pair(" ", " dog") == ([eos], own("  dog"))
    assert lm._encode_pair("", EOS_TOKEN + " dog") == ([eos], [eos] + own(" dog"))
    assert lm._encode_pair("The quick brown ", "fox") == (own("The quick brown"), own("The quick brown fox")[-2:])
    results = lm.loglikelihood([Request(context, cont) for context, cont, _ in PINNED])
    assert [value for value, _ in results] == pytest.approx([value for _, _, value in PINNED], rel=1e-6, abs=0)

    # BOS under add_bos_token: the context starts with it; an empty context is BOS alone, and the
    # continuation never carries one (this tokenizer's BOS is its <unk>, set for the test).
    folder = shutil.copytree(tiny_checkpoints["llada"], tmp_path / "bos")
    bos_tok = AutoTokenizer.from_pretrained(folder)
    bos_tok.bos_token = UNK_TOKEN
    bos_tok.save_pretrained(folder)
    bos_lm = make_lm(folder, mc_num=16, mc_batch_size=8, add_bos_token=True)
    bos = bos_tok.bos_token_id
    assert bos_lm._encode_pair("", " dog") == ([bos], own(" dog"))
    assert bos_lm._encode_pair("  ", "dog") == ([bos], own("  dog"))
    assert bos_lm._encode_pair("Tom has", " 3 apples") == ([bos] + own("Tom has"), own("Tom has 3 apples")[3:])
    # tok_encode as TemplateLM calls it: None follows add_bos_token, False never adds BOS, True adds one
    # where the tokenizer has it (the plain tiny tokenizer has none).
    assert bos_lm.tok_encode("dog") == bos_lm.tok_encode("dog", add_special_tokens=True) == [bos] + own("dog")
    assert bos_lm.tok_encode("dog", add_special_tokens=False) == own("dog") == lm.tok_encode("dog", True)
    results = bos_lm.loglikelihood([Request(context, cont) for context, cont, _ in PINNED_BOS])
    assert [value for value, _ in results] == pytest.approx([value for _, _, value in PINNED_BOS], rel=1e-6, abs=0)


def test_one_token_choices_cost_one_forward_per_question(tiny_checkpoints):
    from lm_eval_diffusion.likelihood import elbo_mc

    lm = make_lm(tiny_checkpoints["llada"], mc_num=128, mc_batch_size=32)
    questions = [f"Question {i}: which one?\nAnswer:" for i in range(3)]
    requests = [Request(q, choice) for q in questions for choice in (" dog", " apples", " the", " bar")]
    encoded = [lm._encode_pair(*r.args) for r in requests]
    assert all(len(cont) == 1 for _, cont in encoded)  # precondition: one token each in the tiny vocabulary
    calls = []
    logits_fn = lm.backbone.logits
    lm.backbone.logits = lambda ids, attention_mask=None: calls.append(ids.shape) or logits_fn(ids, attention_mask)
    results = lm.loglikelihood(requests)
    assert [tuple(shape) for shape in calls] == [(1, len(encoded[4 * i][0]) + 1) for i in range(3)]
    for (prompt, cont), (value, _) in zip(encoded, results):
        # What the Monte-Carlo path computed before: mc_num copies of the same single-mask input.
        reference = elbo_mc(logits_fn, torch.tensor(prompt), torch.tensor(cont), mask_id=lm.backbone.spec.mask_id,
                            mc_num=8, batch_size=8, generator=torch.Generator().manual_seed(0))
        assert value == pytest.approx(reference.item(), abs=1e-5)
    assert len({value for value, _ in results}) == len(results)


def test_greedy_check_compares_with_a_one_token_per_step_fill(tiny_checkpoints):
    lm = make_lm(tiny_checkpoints["llada"], mc_num=4, greedy_check=True)
    sharpen(lm)
    prompt = lm.tok_encode("Tom has 3 apples")
    mask_id = lm.backbone.spec.mask_id
    fill = prompt + [mask_id] * 3
    with torch.no_grad():
        for _ in range(3):  # reference: commit the single most confident masked position per step
            logits = lm.backbone.logits(torch.tensor([fill]), None)[0].double()
            best = None
            for pos in range(len(prompt), len(fill)):
                if fill[pos] == mask_id:
                    row = logits[pos].clone()
                    row[mask_id] = -math.inf
                    probs = torch.softmax(row, dim=-1)
                    candidate = (float(probs.max()), -pos, int(probs.argmax()))
                    best = candidate if best is None or candidate > best else best
            fill[-best[1]] = best[2]
    greedy_text = lm.tokenizer.decode(fill[len(prompt):])
    assert lm.tok_encode("Tom has 3 apples" + greedy_text)[len(prompt):] == fill[len(prompt):]  # round trip
    other = fill[len(prompt):-1] + [(fill[-1] + 1) % 300 + 3]
    results = lm.loglikelihood([Request("Tom has 3 apples", greedy_text),
                                Request("Tom has 3 apples", lm.tokenizer.decode(other))])
    assert [greedy for _, greedy in results] == [True, False]


def test_loglikelihood_rolling_says_why_it_is_unsupported(tiny_checkpoints):
    lm = make_lm(tiny_checkpoints["llada"])
    with pytest.raises(NotImplementedError, match="no left-to-right factorisation"):
        lm.loglikelihood_rolling([Request("some text")])


def test_single_process_collectives_are_local(tiny_checkpoints):
    lm = make_lm(tiny_checkpoints["llada"])
    assert (lm.rank, lm.world_size) == (0, 1)
    assert lm.gather_object({"a": 1}) == [{"a": 1}]
    assert torch.equal(lm.all_gather(torch.tensor(3)), torch.tensor(3))
    lm.barrier()
    assert not torch.distributed.is_initialized()
