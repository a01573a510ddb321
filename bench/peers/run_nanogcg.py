"""Peer row: the real nanoGCG package (GraySwanAI, PyPI `nanogcg`) on softtoken's targets and budget.

Run with bench/peers/.venv/bin/python (see setup.sh): nanoGCG pins transformers<=4.47.1, so it cannot
share the project's .venv, and this script imports nothing from softtoken.

Per target, nanoGCG optimises a 10-token prompt for the target's token ids with no chat template and
no BOS: the model sees exactly [prompt ; target]. The harness rules are softtoken's bench rules
(bench/cpu-small.yaml): a wall clock (--seconds, default 180) checked once per step, and a stop as soon
as the prompt nanoGCG holds greedily reproduces the target (HarnessGCG says how; the search is untouched).
The reported prompt (the matching one, else nanoGCG's best_string) is judged as softtoken judges one:
encode without special tokens, greedy-decode len(target) tokens from exactly those ids (no sampling,
no EOS stop), compare ids.

    bench/peers/.venv/bin/python bench/peers/run_nanogcg.py --targets bench/peers/smoke_targets.jsonl \\
        --out runs/peers/smoke --seconds 20 --search-width 64 --topk 32 --label nanogcg-w64
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

import nanogcg.gcg
import torch
import transformers
from nanogcg.gcg import GCG, GCGConfig
from rapidfuzz.distance import LCSseq
from transformers import AutoModelForCausalLM, AutoTokenizer, DynamicCache

logger = logging.getLogger("run_nanogcg")

PASS_THROUGH_TEMPLATE = "{% for message in messages %}{{ message['content'] }}{% endfor %}"
EMBEDDED_GLOB = "SmolLM2-135M-Instruct*"
VIEW_SUFFIX = "-tf4"  # our transformers-4 view of a converted directory (see transformers4_view)


# ----------------------------------------------------------------------------- model
def cache_root() -> Path:
    """softtoken's cache: $SOFTTOKEN_CACHE, else ~/.cache/softtoken (kept in sync with softtoken/lm/embedded.py)."""
    root = os.environ.get("SOFTTOKEN_CACHE")
    return Path(root).expanduser() if root else Path.home() / ".cache" / "softtoken"


def find_embedded_dir() -> Path:
    """The safetensors directory softtoken converted the embedded SmolLM2 GGUF into."""
    found = sorted(p.parent for p in cache_root().glob(f"{EMBEDDED_GLOB}/config.json")
                   if not p.parent.name.endswith(VIEW_SUFFIX))
    if len(found) == 1:
        return found[0]
    if not found:
        sys.exit(f"no converted embedded model under {cache_root()}; create it once with the project venv:\n"
                 "  .venv/bin/python -c 'from softtoken.lm.loading import load_model; load_model(None)'\n"
                 "or pass --model DIR")
    sys.exit(f"several converted models under {cache_root()}: {[p.name for p in found]}; pass --model DIR")


def transformers4_view(src: Path) -> Path:
    """A directory transformers 4.47 can load: softtoken writes it with transformers 5, whose files differ.

    Two differences matter: config.json keeps rope_theta inside `rope_parameters` (4.47 would silently
    fall back to rope_theta=10000, a different model), and tokenizer_config.json names the class
    `TokenizersBackend` (unknown to 4.47). The view symlinks the weights and tokenizer.json and
    rewrites those two files; the source directory is left untouched. Equivalence is checked at run
    time when a target carries its ground-truth prompt (`reproduces` in the log).
    """
    config = json.loads((src / "config.json").read_text())
    tok_config = json.loads((src / "tokenizer_config.json").read_text())
    if "rope_parameters" not in config and tok_config.get("tokenizer_class") != "TokenizersBackend":
        return src  # already a transformers-4 directory
    view = src.parent / (src.name + VIEW_SUFFIX)
    if (view / "config.json").is_file():
        return view
    rope = config.pop("rope_parameters", None) or {}
    if rope.get("rope_type", "default") != "default":
        sys.exit(f"{src}: rope_type {rope['rope_type']!r} is not translated to transformers 4; pass --model")
    if "rope_theta" in rope:
        config["rope_theta"] = rope["rope_theta"]
    config["torch_dtype"] = config.pop("dtype", "float32")
    tok_config["tokenizer_class"] = "PreTrainedTokenizerFast"
    template = src / "chat_template.jinja"
    if template.is_file():  # 4.47 reads the template from tokenizer_config.json only
        tok_config["chat_template"] = template.read_text()
    staging = src.parent / f"{view.name}.tmp-{os.getpid()}"
    staging.mkdir(parents=True)
    for name in os.listdir(src):
        if name not in ("config.json", "tokenizer_config.json"):
            (staging / name).symlink_to(src / name)
    (staging / "config.json").write_text(json.dumps(config, indent=2))
    (staging / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2))
    try:
        os.replace(staging, view)
    except OSError:  # another process won the race; its view is as good as ours
        for child in staging.iterdir():
            child.unlink()
        staging.rmdir()
    return view


def load(model_dir: Path):
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32, local_files_only=True)
    model.eval().requires_grad_(False)
    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    return model, tokenizer


# ----------------------------------------------------------------------------- targets
def load_targets(path: Path, tokenizer) -> list[dict]:
    """softtoken's formats (softtoken/data/targets.py): reference JSON with `samples`, JSONL, plain text lines."""
    raw = path.read_text(encoding="utf-8")
    if path.suffix == ".jsonl":
        items = []
        for number, line in enumerate(raw.splitlines(), start=1):
            if line.strip():
                item = json.loads(line)
                item.setdefault("id", f"line{number}")
                items.append(item)
    elif raw.lstrip().startswith("{"):
        data = json.loads(raw)
        if "samples" not in data:
            sys.exit(f"{path}: a JSON target file needs a 'samples' list (reference format)")
        items = data["samples"]
    else:
        items = [{"id": f"line{n}", "text": line} for n, line in enumerate(raw.splitlines(), start=1) if line.strip()]
    targets = []
    for item in items:
        ids = next((item[k] for k in ("ids", "token_ids", "target_output_tokens") if item.get(k) is not None), None)
        text = str(item.get("text") or "")
        if ids is None:  # text only: the model's own tokenisation, as softtoken's Target.resolve_ids
            ids = tokenizer(text, add_special_tokens=False).input_ids
        prompt = next((item[k] for k in ("prompt_ids", "ground_truth_prompt_tokens") if item.get(k) is not None), None)
        k = item.get("k", item.get("k_target"))
        targets.append({"id": str(item["id"]), "text": text, "ids": [int(i) for i in ids],
                        "k": None if k is None else int(k),
                        "prompt_ids": None if prompt is None else [int(i) for i in prompt]})
    if len({t["id"] for t in targets}) != len(targets):
        sys.exit(f"{path}: duplicate target ids")
    return targets


# ----------------------------------------------------------------------------- judging
@torch.no_grad()
def greedy(model, prompt_ids: list[int], n: int) -> list[int]:
    """n argmax tokens after exactly `prompt_ids` (no BOS, no sampling, no EOS stop)."""
    ids = list(prompt_ids)
    past = DynamicCache()
    step = torch.tensor([ids])
    for _ in range(n):
        out = model(input_ids=step, past_key_values=past, use_cache=True)
        past = out.past_key_values
        ids.append(int(out.logits[0, -1].argmax()))
        step = torch.tensor([[ids[-1]]])
    return ids[len(prompt_ids):]


def scores(output: list[int], target: list[int]) -> dict:
    """softtoken/metrics/sequence.py: exact match, LCS ratio (rapidfuzz LCSseq), positional accuracy."""
    return {"exact_match": output == target,
            "lcs_ratio": LCSseq.similarity(output, target) / len(target),
            "token_accuracy": sum(o == t for o, t in zip(output, target)) / len(target)}


# ----------------------------------------------------------------------------- nanoGCG with a clock
class ExactTargetTokenizer:
    """Delegates to the tokenizer but returns the given ids when nanoGCG tokenises the target text.

    nanoGCG takes the target as a string; when decode -> encode of the target ids does not give them
    back, this makes nanoGCG optimise the benchmark's exact ids. Unused when the round trip holds.
    """

    def __init__(self, tokenizer, text: str, ids: list[int]):
        object.__setattr__(self, "_tokenizer", tokenizer)
        object.__setattr__(self, "_text", text)
        object.__setattr__(self, "_ids", ids)

    def __call__(self, text, *args, **kwargs):
        if text == [self._text] and kwargs.get("add_special_tokens") is False:
            return {"input_ids": torch.tensor([self._ids])}
        return self._tokenizer(text, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __setattr__(self, name, value):
        setattr(self._tokenizer, name, value)


class Solved(Exception):
    """Raised at the start of a step when the prompt nanoGCG holds is a greedy exact match."""


class HarnessGCG(GCG):
    """nanoGCG's GCG under softtoken's harness rules: a wall clock and stop-on-success; the search is untouched.

    nanoGCG has no time budget and no hook. Clock: its loop breaks at the end of a step when
    `self.stop_flag` is set (its early_stop mechanism, set inside candidate scoring); we set the same
    flag from the same place once the deadline has passed, so at most one step overshoots, like
    softtoken's Budget ("checked between steps"). Success: every step starts with
    `compute_token_gradient(optim_ids)` on the prompt the previous step moved to; there we greedy-decode
    that prompt (~11 one-token passes, small next to scoring the candidates) and, on an exact match,
    record the time and, with stop_on_success, end the run. nanoGCG's own `early_stop` is not used: it
    fires when any candidate matches but keeps the argmin-loss candidate, which need not match (seen on
    a 4-token test target: it stopped after one step holding a non-matching prompt).
    """

    def start(self, seconds: float, target_ids: list[int], stop_on_success: bool) -> None:
        self.stop_flag = False  # nanoGCG never resets it; one instance serves every target
        self.t0 = time.perf_counter()
        self.deadline = self.t0 + seconds
        self.timed_out = False
        self.goal = target_ids
        self.stop_on_success = stop_on_success
        self.step_end = []  # seconds since start at the end of each step's candidate scoring
        self.first_hit = None  # (ids, steps completed, seconds) of the first held prompt that matches
        self.forward_tokens = 0  # positions through the model, all passes (softtoken's compute measure)

    def judge_held(self, ids: list[int], when: float) -> None:
        if self.first_hit is not None:
            return
        self.forward_tokens += len(ids) + len(self.goal) - 1  # one prompt pass, then one token a pass
        if greedy(self.model, ids, len(self.goal)) == self.goal:
            self.first_hit = (ids, len(self.step_end), when)

    def compute_token_gradient(self, optim_ids):
        held_since = self.step_end[-1] if self.step_end else time.perf_counter() - self.t0  # end of its step
        self.judge_held(optim_ids[0].tolist(), held_since)
        if self.first_hit is not None and self.stop_on_success:
            raise Solved
        self.step_end.append(None)  # called exactly once at the start of every loop step
        self.forward_tokens += optim_ids.shape[1] + len(self.goal)
        return super().compute_token_gradient(optim_ids)

    def _compute_candidates_loss_original(self, search_batch_size, input_embeds):
        loss = super()._compute_candidates_loss_original(search_batch_size, input_embeds)
        self.forward_tokens += input_embeds.shape[0] * input_embeds.shape[1]
        now = time.perf_counter()
        if self.step_end:  # not the initial-buffer scoring
            self.step_end[-1] = now - self.t0
        if now >= self.deadline and not self.stop_flag:
            self.timed_out = True
            self.stop_flag = True
        return loss


# ----------------------------------------------------------------------------- main
def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--targets", type=Path, required=True, help="reference JSON, JSONL or text file")
    p.add_argument("--out", type=Path, required=True, help="folder; results.jsonl is appended there (resumes)")
    p.add_argument("--model", type=Path, default=None, help="HF directory; default: softtoken's converted embedded model")
    p.add_argument("--label", default="nanogcg")
    p.add_argument("--seconds", type=float, default=180.0, help="wall clock per target (bench/cpu-small.yaml)")
    p.add_argument("--num-steps", type=int, default=1_000_000,
                   help="nanoGCG num_steps; default high so the clock binds, as the bench's budget.steps "
                        "(nanoGCG's own default is 250)")
    p.add_argument("--search-width", type=int, default=512)
    p.add_argument("--topk", type=int, default=256)
    p.add_argument("--n-replace", type=int, default=1)
    p.add_argument("--buffer-size", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=None, help="candidates per forward pass (speed only)")
    p.add_argument("--prompt-length", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-stop-on-success", action="store_true",
                   help="run to the clock and report nanoGCG's best_string (min loss) even after a greedy hit")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--limit", type=int, default=None, help="first N targets only")
    p.add_argument("--verbose", action="store_true", help="nanoGCG's per-step INFO log and progress bar")
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("nanogcg").setLevel(logging.INFO if args.verbose else logging.ERROR)
    if not args.verbose:
        nanogcg.gcg.tqdm = iter  # its step loop is `for _ in tqdm(range(num_steps))`: drop the bar only
    torch.set_num_threads(args.threads)

    model_dir = transformers4_view(args.model or find_embedded_dir())
    model, tokenizer = load(model_dir)
    # Nothing around the prompt: with this template nanoGCG's template string is "{optim_str}", so its
    # before/after segments are empty and the input is exactly [prompt ; target] (checked per target).
    tokenizer.chat_template = PASS_THROUGH_TEMPLATE
    optim_str_init = " x" * args.prompt_length
    init_ids = tokenizer(optim_str_init, add_special_tokens=False).input_ids
    if len(init_ids) != args.prompt_length:
        sys.exit(f"optim_str_init {optim_str_init!r} is {len(init_ids)} tokens, not {args.prompt_length}")

    config = GCGConfig(num_steps=args.num_steps, optim_str_init=optim_str_init, search_width=args.search_width,
                       batch_size=args.batch_size, topk=args.topk, n_replace=args.n_replace,
                       buffer_size=args.buffer_size, early_stop=False,  # see HarnessGCG
                       use_prefix_cache=False,  # the prefix is empty: nothing to cache
                       seed=args.seed, verbosity="INFO" if args.verbose else "ERROR")
    gcg = HarnessGCG(model, tokenizer, config)  # one instance: its vocabulary filter is built once
    versions = {"nanogcg_version": importlib.metadata.version("nanogcg"),
                "transformers_version": transformers.__version__, "torch_version": torch.__version__}

    targets = load_targets(args.targets, tokenizer)[:args.limit]
    args.out.mkdir(parents=True, exist_ok=True)
    results_path = args.out / "results.jsonl"
    done = set()
    if results_path.is_file():
        done = {json.loads(line)["id"] for line in results_path.read_text().splitlines() if line.strip()}
    logger.info("model %s | %d targets, %d already in %s | nanogcg %s, transformers %s", model_dir,
                len(targets), len(done & {t["id"] for t in targets}), results_path,
                versions["nanogcg_version"], versions["transformers_version"])

    with results_path.open("a", encoding="utf-8") as sink:
        for target in targets:
            if target["id"] in done:
                continue
            record = run_one(gcg, model, tokenizer, target, args, versions)
            sink.write(json.dumps(record) + "\n")
            sink.flush()
            os.fsync(sink.fileno())
            logger.info("%s: exact=%s lcs=%.2f steps=%d wall=%.1fs prompt=%r", record["id"], record["exact_match"],
                        record["lcs_ratio"], record["steps_run"], record["wall_time_s"], record["prompt_text"])
    summarize(results_path, args.label, {t["id"] for t in targets})


def run_one(gcg: HarnessGCG, model, tokenizer, target: dict, args, versions: dict) -> dict:
    ids = target["ids"]
    text = tokenizer.decode(ids)
    roundtrip = tokenizer(text, add_special_tokens=False).input_ids == ids
    gcg.tokenizer = tokenizer if roundtrip else ExactTargetTokenizer(tokenizer, text, ids)
    reproduces = None
    if target["prompt_ids"]:  # the ground-truth prompt must give the target here too: same model as softtoken
        reproduces = greedy(model, target["prompt_ids"], len(ids)) == ids
        if not reproduces:
            logger.warning("%s: its ground-truth prompt does not reproduce the target in this venv", target["id"])

    gcg.start(args.seconds, ids, stop_on_success=not args.no_stop_on_success)
    try:
        result = gcg.run("{optim_str}", text)
    except Solved:
        result = None
    wall = time.perf_counter() - gcg.t0
    gcg.tokenizer = tokenizer
    # The optimised input must be exactly [prompt ; target]: no template text, no BOS.
    input_ok = (gcg.before_embeds.shape[1] == 0 and gcg.after_embeds.shape[1] == 0
                and gcg.target_ids[0].tolist() == ids)

    if result is None:  # stopped on success: report the prompt that matched
        prompt_text, steps, best_loss = tokenizer.decode(gcg.first_hit[0]), gcg.first_hit[1], None
        stopped_by = "success"
    else:  # nanoGCG's own answer: the lowest-loss prompt of all steps
        last = tokenizer(result.strings[-1], add_special_tokens=False).input_ids
        gcg.judge_held(last, gcg.step_end[-1])  # the last step's prompt was never held at a step start
        prompt_text, best_loss, steps = result.best_string, result.best_loss, len(result.losses)
        stopped_by = "clock" if gcg.timed_out else "num_steps"
    prompt_ids = tokenizer(prompt_text, add_special_tokens=False).input_ids  # judged from the text, as softtoken
    output = greedy(model, prompt_ids, len(ids))
    judged = scores(output, ids)
    first = gcg.first_hit
    success_time = first[2] if first is not None and judged["exact_match"] else None
    return {
        "id": target["id"], "method": "nanogcg", "label": args.label, **judged,
        "prompt_text": prompt_text, "prompt_ids": prompt_ids,
        "prompt_length_ok": len(prompt_ids) == args.prompt_length,
        "output_ids": output, "target_ids": ids, "target_text": text,
        "steps_run": steps, "wall_time_s": round(wall, 3),
        "success_time_s": None if success_time is None else round(success_time, 3),
        "k": target["k"], "forward_tokens": gcg.forward_tokens,
        "success_step": first[1] if success_time is not None else None,
        "first_hit_step": None if first is None else first[1],
        "first_hit_s": None if first is None else round(first[2], 3),
        "best_loss": best_loss, "stopped_by": stopped_by,
        "input_is_prompt_then_target": input_ok, "target_roundtrip": roundtrip,
        "ground_truth_prompt_reproduces": reproduces,
        **versions, "search_width": args.search_width, "topk": args.topk, "n_replace": args.n_replace,
        "buffer_size": args.buffer_size, "num_steps": args.num_steps, "stop_on_success": not args.no_stop_on_success,
        "seed": args.seed, "threads": args.threads, "seconds": args.seconds,
    }


def summarize(results_path: Path, label: str, ids: set[str]) -> None:
    rows = [json.loads(line) for line in results_path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["id"] in ids and r["label"] == label]
    if not rows:
        print(f"{label}: no results")
        return
    hits = [r["success_time_s"] for r in rows if r["exact_match"]]
    median = f"{statistics.median(hits):.1f}" if hits else "-"
    print(f"{label}: n={len(rows)} exact={len(hits)}/{len(rows)} mean LCS={statistics.mean(r['lcs_ratio'] for r in rows):.3f} "
          f"mean token acc={statistics.mean(r['token_accuracy'] for r in rows):.3f} "
          f"median time to success={median} s mean wall={statistics.mean(r['wall_time_s'] for r in rows):.1f} s "
          f"mean steps={statistics.mean(r['steps_run'] for r in rows):.1f}")


if __name__ == "__main__":
    main()
