#!/usr/bin/env python3
"""Generator of the nemotronh-nano test asset (issue 19).

Builds a nano NemotronH (Mamba-2 + MoE + attention hybrid, the architecture of
nvidia/NVIDIA-Nemotron-3-Nano-30B-A3B) with transformers' own implementation,
trains it for a few minutes on corpus/calib.txt, stores it in the hub's layout
(backbone.* names, one 2-D tensor per expert projection, BF16 weights, F32
e_score_correction_bias) and writes golden values on corpus/valid.txt under
the protocol of ../shared/testdata/README.md:

  golden.safetensors: input_ids [1,128] (first 128 tokens of valid.txt),
      logits F32 [1,128,V], hidden_states.0..L F32 (as transformers returns
      them: 0 the embeddings, i the residual after layer i-1, L the final
      norm's output).
  golden.json: ppl_f32 (64 windows of 256, all tokens but the first scored),
      ppl_llamacpp_protocol_f32 (second half of each window only), ppl_bf16,
      RTN fake-quantized perplexities (every 2-D backbone.layers.* weight but the
      routers), expert token counts, a greedy continuation made with the
      transformers cache (decode path: Mamba conv/SSM state + KV cache).
  tensors.json: dtype, shape, sum, abs_sum of every stored tensor.

Run on the device machine (transformers 5.17, PyTorch, tokenizers):
  python3 generate.py --data DIR_WITH_corpus_AND_tokenizer --out OUTDIR
Everything is F32 with eager attention and transformers' torch (naive SSD)
Mamba path (use_mamba_kernels=False), which is what the goldens are.
"""
import argparse
import inspect
import json
import math
import os
import sys
import time

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from tokenizers import Tokenizer

import transformers
from transformers import AutoModelForCausalLM, NemotronHConfig, NemotronHForCausalLM

WINDOW = 256
WINDOWS = 64
GOLDEN_TOKENS = 128
PATTERN = "ME*MEM*E"  # 3 Mamba-2, 3 MoE, 2 attention layers


def log(*a):
    print(*a, flush=True)


def nano_config():
    return NemotronHConfig(
        vocab_size=2112,
        hidden_size=256,
        hybrid_override_pattern=PATTERN,
        tie_word_embeddings=False,
        pad_token_id=None,
        bos_token_id=2045,
        eos_token_id=2045,
        # attention (GQA, no rotary embedding in NemotronH)
        num_attention_heads=8,
        num_key_value_heads=2,
        head_dim=32,
        max_position_embeddings=4096,
        # Mamba-2
        mamba_num_heads=16,
        mamba_head_dim=32,  # 16*32 = 512 = expand 2 * hidden
        expand=2,
        n_groups=2,
        ssm_state_size=32,
        conv_kernel=4,
        chunk_size=128,
        use_conv_bias=True,
        use_bias=False,
        mamba_hidden_act="silu",
        use_mamba_kernels=False,
        # MoE: relu2 experts, sigmoid routing with correction bias, shared expert
        mlp_hidden_act="relu2",
        n_routed_experts=8,
        num_experts_per_tok=2,
        moe_intermediate_size=256,
        moe_shared_expert_intermediate_size=512,
        n_shared_experts=1,
        routed_scaling_factor=2.5,
        norm_topk_prob=True,
        n_group=1,
        topk_group=1,
        layer_norm_epsilon=1e-5,
        initializer_range=0.02,
    )


def hub_state_dict(model):
    """The model's weights under the hub checkpoint's names, one tensor per expert."""
    out = {}
    for name, t in model.state_dict().items():
        t = t.detach().cpu()
        hub = name
        if hub.startswith("model."):
            hub = "backbone." + hub[len("model."):]
        if hub.endswith("mixer.experts.up_proj") or hub.endswith("mixer.experts.down_proj"):
            base, proj = hub.rsplit(".", 1)
            for e in range(t.shape[0]):
                out[f"{base}.{e}.{proj}.weight"] = t[e].contiguous().to(torch.bfloat16)
            continue
        if hub.endswith("e_score_correction_bias"):
            out[hub] = t.float().contiguous()
        else:
            out[hub] = t.contiguous().to(torch.bfloat16)
    return out


def windows_of(ids):
    n = len(ids) // WINDOW
    assert n >= WINDOWS, n
    return torch.tensor(ids[: WINDOWS * WINDOW], dtype=torch.long).view(WINDOWS, WINDOW)


@torch.no_grad()
def perplexities(model, wins, dtype=torch.float32, batch=16):
    nll_all, n_all, nll_half, n_half = 0.0, 0, 0.0, 0
    half = WINDOW // 2
    for i in range(0, wins.shape[0], batch):
        x = wins[i : i + batch].cuda()
        logits = model(input_ids=x, use_cache=False).logits.float()
        lp = F.log_softmax(logits[:, :-1], dim=-1)
        tgt = x[:, 1:]
        nll = -lp.gather(-1, tgt[..., None])[..., 0].double()  # [b, 255], token j+1
        nll_all += nll.sum().item()
        n_all += nll.numel()
        # llama-perplexity -c 256 scores tokens half+1 .. 255 (0-based), i.e. nll[:, half:]
        nll_half += nll[:, half:].sum().item()
        n_half += nll[:, half:].numel()
    return math.exp(nll_all / n_all), math.exp(nll_half / n_half)


E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0], dtype=torch.float64)


def e2m1(x):
    """Nearest E2M1 magnitude of |x| (x already scaled), ties to the even code, saturating at 6."""
    s = torch.sign(x)
    a = x.abs().clamp(max=6.0)
    g = E2M1.to(x.device)
    d = (a[..., None] - g).abs()
    best = d.argmin(-1)
    nxt = (best + 1).clamp(max=7)
    tie = (d.gather(-1, nxt[..., None])[..., 0] == d.gather(-1, best[..., None])[..., 0]) & (best % 2 == 1) & (nxt != best)
    best = torch.where(tie, nxt, best)
    return s * g[best]


def rtn(w, kind):
    w = w.double()
    out_shape = w.shape
    if kind.startswith("int"):
        bits, gs = {"int4_g128": (4, 128), "int3_g128": (3, 128), "int2_g64": (2, 64)}[kind]
        gw = w.reshape(-1, gs)
        qmax = 2 ** (bits - 1) - 1
        scale = (gw.abs().amax(-1, keepdim=True).float() / qmax).double()
        q = torch.where(scale > 0, torch.round(gw / torch.where(scale > 0, scale, 1)), 0).clamp(-(2 ** (bits - 1)), qmax)
        return (q * scale).reshape(out_shape)
    if kind == "mxfp4":
        gw = w.reshape(-1, 32)
        amax = gw.abs().amax(-1, keepdim=True)
        e = torch.where(amax > 0, torch.floor(torch.log2(torch.where(amax > 0, amax, 1))) - 2, 0)
        sc = torch.pow(2.0, e)
        return (e2m1(gw / sc) * sc).reshape(out_shape)
    if kind == "nvfp4":
        g = w.abs().max() / (6 * 448)
        if g == 0:
            return w
        gw = w.reshape(-1, 16)
        s = (gw.abs().amax(-1, keepdim=True) / 6 / g).clamp(max=448).float().to(torch.float8_e4m3fn).double()
        den = s * g
        return (torch.where(den > 0, e2m1(gw / torch.where(den > 0, den, 1)), 0) * den).reshape(out_shape)
    raise ValueError(kind)


def quantized_copy(base_sd, kind):
    """State dict (transformers names) with every 2-D backbone.layers.* weight RTN-quantized."""
    sd, n = {}, 0
    for name, t in base_sd.items():
        q = name.startswith("model.layers.") and not name.endswith("mixer.gate.weight")
        if q and t.dim() == 2 and name.endswith(".weight"):
            sd[name] = rtn(t, kind).to(t.dtype)
            n += 1
        elif q and t.dim() == 3 and (name.endswith("experts.up_proj") or name.endswith("experts.down_proj")):
            sd[name] = torch.stack([rtn(t[e], kind) for e in range(t.shape[0])]).to(t.dtype)
            n += t.shape[0]
        else:
            sd[name] = t
    return sd, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--train-seconds", type=float, default=200)
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--src-dump", default="")
    ap.add_argument("--teacher", required=True, help="directory of the shared qwen3-nano (the distillation teacher)")
    ap.add_argument("--synth-windows", type=int, default=8192)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    torch.manual_seed(0)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    log("transformers", transformers.__version__, "torch", torch.__version__)

    if args.src_dump:
        import transformers.models.nemotron_h.modeling_nemotron_h as mm
        import transformers.models.nemotron_h.configuration_nemotron_h as cm
        with open(args.src_dump, "w") as f:
            f.write(inspect.getsource(cm))
            f.write("\n\n######## modeling\n")
            f.write(inspect.getsource(mm))
            try:
                from transformers.models.zamba2.modeling_zamba2 import Zamba2RMSNormGated
                f.write("\n\n######## Zamba2RMSNormGated\n" + inspect.getsource(Zamba2RMSNormGated))
            except Exception as e:  # noqa
                f.write(f"\n(no Zamba2RMSNormGated: {e})\n")
            try:
                import transformers.conversion_mapping as cmap
                src = inspect.getsource(cmap)
                f.write("\n\n######## conversion_mapping (nemotron lines)\n")
                lines = src.splitlines()
                for i, l in enumerate(lines):
                    if "nemotron" in l.lower():
                        f.write("\n".join(lines[max(0, i - 3) : i + 25]) + "\n----\n")
            except Exception as e:  # noqa
                f.write(f"\n(no conversion_mapping: {e})\n")
            try:
                import transformers.activations as act
                f.write("\n\n######## relu2\n" + inspect.getsource(act.ReLUSquaredActivation))
            except Exception as e:  # noqa
                f.write(f"\n(no relu2 source: {e})\n")

    tok = Tokenizer.from_file(os.path.join(args.data, "tokenizer", "tokenizer.json"))
    calib = tok.encode(open(os.path.join(args.data, "corpus", "calib.txt"), encoding="utf-8").read()).ids
    valid = tok.encode(open(os.path.join(args.data, "corpus", "valid.txt"), encoding="utf-8").read()).ids
    log("calib tokens", len(calib), "valid tokens", len(valid), "(expect 220479)")
    wins = windows_of(valid)

    cfg = nano_config()
    log("config layers_block_type", getattr(cfg, "layers_block_type", None), "pattern", cfg.hybrid_override_pattern)
    model = NemotronHForCausalLM(cfg).cuda().float()
    model.config._attn_implementation = "eager"
    nparams = sum(p.numel() for p in model.parameters())
    log("params", nparams)
    for k, v in model.state_dict().items():
        log("  ", k, tuple(v.shape), v.dtype)

    # aux-loss-free load balancing of the sigmoid router (as the real model is
    # trained): count routed tokens per expert, nudge e_score_correction_bias.
    loads = {}

    def hook(mod, inp, kw):
        idx = inp[1] if len(inp) > 1 else kw.get("top_k_index")
        loads[id(mod)] = (mod, torch.bincount(idx.flatten(), minlength=mod.num_experts))

    moes = [m for m in model.modules() if type(m).__name__ == "NemotronHMoE"]
    for m in moes:
        m.experts.register_forward_pre_hook(hook, with_kwargs=True)
    expert_to_moe = {id(m.experts): m for m in moes}

    # Training data. corpus/calib.txt alone (90k tokens) is memorised within a
    # few hundred steps (train loss 0.04, valid ppl near 10^4). So the nano is
    # distilled from the shared qwen3-nano (trained on WikiText-2 test and Tiny
    # Shakespeare, valid ppl 32.6; same tokenizer): it samples windows that
    # start from 16 calib.txt tokens, and the student learns the teacher's full
    # next-token distribution (KL) on those and on calib.txt windows. The last
    # tenth of calib.txt is held out; the weights with the lowest held-out loss
    # are kept. valid.txt is never seen.
    calib_t = torch.tensor(calib, dtype=torch.long)
    cut = len(calib) * 9 // 10
    train_t, held_t = calib_t[:cut], calib_t[cut:]
    held = torch.stack([held_t[i : i + WINDOW] for i in range(0, len(held_t) - WINDOW, WINDOW)]).cuda()
    teacher = AutoModelForCausalLM.from_pretrained(args.teacher, dtype=torch.float32).cuda().eval()
    teacher.generation_config.eos_token_id = None
    g = torch.Generator().manual_seed(1)
    synth = []
    t0 = time.time()
    with torch.no_grad():
        while sum(x.shape[0] for x in synth) < args.synth_windows:
            starts = torch.randint(0, cut - 17, (512,), generator=g)
            prompt = torch.stack([train_t[s : s + 16] for s in starts]).cuda()
            out = teacher.generate(input_ids=prompt, max_new_tokens=WINDOW - 16, min_new_tokens=WINDOW - 16,
                                   do_sample=True, temperature=1.0, top_k=0, top_p=1.0, pad_token_id=2045)
            synth.append(out[:, :WINDOW].cpu())
    synth = torch.cat(synth)
    log(f"sampled {synth.shape[0]} teacher windows of {WINDOW} in {time.time() - t0:.0f}s")

    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.95), weight_decay=0.1)
    bs, warm = 32, 100
    best, best_sd, best_step = float("inf"), None, -1

    @torch.no_grad()
    def held_loss():
        model.eval()
        out = model(input_ids=held, labels=held, use_cache=False).loss.item()
        model.train()
        return out

    t0 = time.time()
    step = 0
    model.train()
    while step < args.steps and time.time() - t0 < args.train_seconds:
        done = min(1.0, max(step / args.steps, (time.time() - t0) / args.train_seconds))
        lr = 2e-3 * min(1.0, (step + 1) / warm) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * done)))
        for grp in opt.param_groups:
            grp["lr"] = lr
        starts = torch.randint(0, cut - WINDOW - 1, (bs // 4,))
        real = torch.stack([train_t[s : s + WINDOW] for s in starts])
        fake = synth[torch.randint(0, synth.shape[0], (bs - bs // 4,))]
        x = torch.cat([real, fake]).cuda()
        with torch.no_grad():
            tl = F.log_softmax(teacher(input_ids=x, use_cache=False).logits.float(), -1)
        loads.clear()
        sl = F.log_softmax(model(input_ids=x, use_cache=False).logits.float(), -1)
        loss = F.kl_div(sl, tl, log_target=True, reduction="none").sum(-1).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            for _, (mod, cnt) in loads.items():
                moe = expert_to_moe[id(mod)]
                c = cnt.float()
                moe.gate.e_score_correction_bias += 1e-3 * torch.sign(c.mean() - c)
        if step % 200 == 0 or step == args.steps - 1:
            h = held_loss()
            if h < best:
                best, best_step = h, step
                best_sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
            log(f"step {step} kl {loss.item():.4f} held-out ce {h:.4f} lr {lr:.2e} t {time.time() - t0:.0f}s")
        step += 1
    h = held_loss()
    if h < best:
        best, best_step, best_sd = h, step, None
    if best_sd is not None:
        model.load_state_dict(best_sd)
    log(f"trained {step} steps in {time.time() - t0:.0f}s; kept step {best_step} (held-out ce {best:.4f}, ppl {math.exp(best):.2f})")
    del teacher
    model.eval()

    # Round to what is stored (BF16, bias F32), compute in F32.
    with torch.no_grad():
        for n, p in model.named_parameters():
            p.copy_(p.to(torch.bfloat16).float())
    hub = hub_state_dict(model)
    save_file(hub, os.path.join(args.out, "model.safetensors"), metadata={"format": "pt"})
    cd = json.loads(cfg.to_json_string(use_diff=False))
    cd["architectures"] = ["NemotronHForCausalLM"]
    cd["hybrid_override_pattern"] = PATTERN
    cd["num_hidden_layers"] = len(PATTERN)
    cd["dtype"] = "bfloat16"
    cd.pop("_attn_implementation_autoset", None)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cd, f, indent=2, sort_keys=True)
    tensors = {
        k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape), "sum": v.double().sum().item(), "abs_sum": v.double().abs().sum().item()}
        for k, v in sorted(hub.items())
    }
    with open(os.path.join(args.out, "tensors.json"), "w") as f:
        json.dump(tensors, f, indent=0)

    # Reload through transformers from the hub layout: must give the same model.
    x = wins[0:1, :GOLDEN_TOKENS].cuda()
    # Hidden states by hooks (embeddings, each block's output, the final
    # norm's output), checked against output_hidden_states where it works.
    caught = []
    blocks = list(model.model.layers)
    hk = [model.model.embeddings.register_forward_hook(lambda m, i, o: caught.append(("emb", o)))]
    hk += [b.register_forward_hook(lambda m, i, o: caught.append(("blk", o[0] if isinstance(o, tuple) else o))) for b in blocks]
    hk += [model.model.norm_f.register_forward_hook(lambda m, i, o: caught.append(("norm", o)))]
    with torch.no_grad():
        try:
            ref = model(input_ids=x, output_hidden_states=True, use_cache=False)
        except Exception as e:  # noqa
            log("output_hidden_states FAILED:", repr(e))
            caught.clear()
            ref = model(input_ids=x, use_cache=False)
    for h in hk:
        h.remove()
    mine = [o for k, o in caught if k == "emb"][:1] + [o for k, o in caught if k == "blk"][:-1] + [o for k, o in caught if k == "norm"][:1]
    hs_t = getattr(ref, "hidden_states", None)
    if hs_t is not None and len(hs_t) == len(mine):
        log("hooks vs output_hidden_states max diff:", max((a.float() - b.float()).abs().max().item() for a, b in zip(mine, hs_t)))
    else:
        log("output_hidden_states:", None if hs_t is None else len(hs_t), "hooked:", len(mine))
    try:
        re = NemotronHForCausalLM.from_pretrained(args.out, dtype=torch.float32, attn_implementation="eager").cuda().eval()
        with torch.no_grad():
            rl = re(input_ids=x, use_cache=False).logits
        log("reload from hub layout: max|dlogit| =", (rl - ref.logits).abs().max().item())
        del re
    except Exception as e:  # noqa
        log("reload from hub layout FAILED:", repr(e))

    hs = mine
    log("hidden_states", len(hs))
    golden = {"input_ids": x.to(torch.int32).cpu().contiguous(), "logits": ref.logits.float().cpu().contiguous()}
    for i, h in enumerate(hs):
        golden[f"hidden_states.{i}"] = h.float().cpu().contiguous()
    save_file(golden, os.path.join(args.out, "golden.safetensors"))
    log("last hidden == lm_head input:", torch.allclose(model.lm_head(hs[-1]), ref.logits, atol=1e-4))

    res = {
        "model": "nemotronh-nano",
        "teacher": "qwen3-nano (../shared/testdata/models), KL distillation on its samples and calib.txt",
        "architecture": "NemotronHForCausalLM",
        "params": nparams,
        "train_steps": step,
        "kept_step": best_step,
        "held_out_ce": best,
        "hybrid_override_pattern": PATTERN,
        "protocol": {
            "text": "corpus/valid.txt",
            "window": WINDOW,
            "windows": WINDOWS,
            "scored": "all but the first token of each window",
            "ppl_llamacpp_protocol": "only tokens n_ctx/2+1..n_ctx-1 of each window, as llama-perplexity -c 256 scores",
            "mamba_path": "transformers torch_forward (naive chunked SSD, use_mamba_kernels=False), eager attention, F32",
        },
    }
    p, ph = perplexities(model, wins)
    res["ppl_f32"], res["ppl_llamacpp_protocol_f32"] = p, ph
    log("ppl_f32", p, "llamacpp", ph)
    base_sd = {k: v.clone() for k, v in model.state_dict().items()}
    mb = NemotronHForCausalLM(cfg).cuda().to(torch.bfloat16).eval()
    mb.config._attn_implementation = "eager"
    mb.load_state_dict({k: v.to(torch.bfloat16) if v.is_floating_point() and "e_score" not in k else v for k, v in base_sd.items()})
    res["ppl_bf16"] = perplexities(mb, wins)[0]
    log("ppl_bf16", res["ppl_bf16"])
    del mb
    for kind in ["int4_g128", "mxfp4", "nvfp4", "int3_g128", "int2_g64"]:
        sd, n = quantized_copy(base_sd, kind)
        model.load_state_dict(sd)
        key = f"ppl_rtn_{kind}_sym_f32" if kind.startswith("int") else f"ppl_rtn_{kind}_f32"
        res[key] = perplexities(model, wins)[0]
        res["quantized_tensors"] = n
        log(key, res[key], "tensors", n)
    model.load_state_dict(base_sd)

    # Expert token counts (actual routing: top-k of sigmoid + correction bias) over the first 16 windows.
    counts = {}
    names = {id(m.experts): n for n, m in model.named_modules() if type(m).__name__ == "NemotronHMoE"}
    loads.clear()
    acc = {}
    with torch.no_grad():
        for i in range(16):
            loads.clear()
            model(input_ids=wins[i : i + 1].cuda(), use_cache=False)
            for k, (mod, cnt) in loads.items():
                acc[k] = acc.get(k, 0) + cnt.cpu()
    for k, v in acc.items():
        counts["backbone." + names[k][len("model."):] + ".gate"] = v.tolist()
    res["expert_token_counts_first_16_windows"] = dict(sorted(counts.items()))
    res["expert_token_counts_note"] = "top-k of sigmoid(router logits) + e_score_correction_bias: the routing the model runs"

    # Decode path: greedy continuation with transformers' cache (Mamba conv + SSM state, KV cache).
    prompt = wins[1:2, :32].cuda()
    with torch.no_grad():
        try:
            gen = model.generate(input_ids=prompt, max_new_tokens=24, do_sample=False, use_cache=True, pad_token_id=2045, eos_token_id=None)
        except Exception as e:  # noqa
            log("generate FAILED:", repr(e))
            gen = torch.zeros(1, 56, dtype=torch.long)
        # Same without cache (full prefill each step) for comparison.
        seq = prompt
        for _ in range(24):
            nxt = model(input_ids=seq, use_cache=False).logits[:, -1].argmax(-1, keepdim=True)
            seq = torch.cat([seq, nxt], 1)
    res["greedy"] = {
        "prompt_ids": prompt[0].tolist(),
        "generated_ids_cached": gen[0, 32:].tolist(),
        "generated_ids_uncached": seq[0, 32:].tolist(),
        "prompt_text": tok.decode(prompt[0].tolist()),
        "text_cached": tok.decode(gen[0, 32:].tolist()),
    }
    log("greedy cached == uncached:", res["greedy"]["generated_ids_cached"] == res["greedy"]["generated_ids_uncached"])
    log("prompt:", repr(res["greedy"]["prompt_text"]), "->", repr(res["greedy"]["text_cached"]))
    with open(os.path.join(args.out, "golden.json"), "w") as f:
        json.dump(res, f, indent=1)
    log(json.dumps({k: v for k, v in res.items() if k.startswith("ppl")}, indent=1))


if __name__ == "__main__":
    sys.exit(main())
