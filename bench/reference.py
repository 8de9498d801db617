#!/usr/bin/env python3
"""The PyTorch + diffusers side of `websd bench`: the same networks (random-initialised models of
the real SD configs), the same inputs' shapes, the same table, so that one run of each on one
machine gives the ratio. See docs/PERFORMANCE.md.

    python bench/reference.py [--model sd15|sd21|sd-turbo] [--device cuda|cpu] [--dtype f32|f16]
        [--size 512] [--runs 5] [--warmup 1] [--only text,unet,vae,taesd[,image]] [--steps N]
        [--vae-dtype f32|f16]
    python bench/reference.py --count-flops     # the c + a·s² + b·s⁴ counts src/tools/bench.rs uses

f32 runs with TF32 off (what WebGPU's f32 computes). The VAE and TAESD run in f32 as websd's
pipeline runs them, unless --vae-dtype f16. Written against diffusers 0.42.1 and transformers 5.24
(the versions of tests/fixtures/make_fixtures.py); the table's header prints torch's version.
"""
import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode
from diffusers import AutoencoderKL, AutoencoderTiny, EulerDiscreteScheduler, StableDiffusionPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

# The configs of src/model/config.rs, src/model/clip.rs, src/model/taesd.rs (diffusers' names).
UNET = {
    "sd15": dict(attention_head_dim=8, cross_attention_dim=768),
    "sd21": dict(attention_head_dim=[5, 10, 20, 20], cross_attention_dim=1024, use_linear_projection=True, upcast_attention=True),
}
UNET_COMMON = dict(block_out_channels=(320, 640, 1280, 1280), layers_per_block=2, sample_size=64)
CLIP = {
    "sd15": dict(hidden_size=768, intermediate_size=3072, num_attention_heads=12, num_hidden_layers=12, hidden_act="quick_gelu"),
    "sd21": dict(hidden_size=1024, intermediate_size=4096, num_attention_heads=16, num_hidden_layers=23, hidden_act="gelu"),
}
VAE = dict(
    in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=4, sample_size=512,
)


def arch(model):
    return "sd15" if model == "sd15" else "sd21"


def build(model, device, dtype, vae_dtype):
    torch.manual_seed(0)
    a = arch(model)
    text = CLIPTextModel(CLIPTextConfig(**CLIP[a])).to(device, dtype).eval()
    unet = UNet2DConditionModel(**UNET_COMMON, **UNET[a]).to(device, dtype).eval()
    vae = AutoencoderKL(**VAE).to(device, vae_dtype).eval()
    taesd = AutoencoderTiny().to(device, vae_dtype).eval()
    return text, unet, vae, taesd


def prompt_ids(model, device):
    pad = 49407 if model == "sd15" else 0
    ids = [49406, 320, 1125, 539, 320, 2368, 530, 518, 5195, 49407]
    return torch.tensor([ids + [pad] * (77 - len(ids))], device=device)


def count_tflop(fn):
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops() / 1e12


def flop_counts(model, size):
    """Exact counts at this size, on the meta device (no memory, no time)."""
    a, l = arch(model), size // 8
    with torch.device("meta"):
        text = CLIPTextModel(CLIPTextConfig(**CLIP[a]))
        unet = UNet2DConditionModel(**UNET_COMMON, **UNET[a])
        vae, taesd = AutoencoderKL(**VAE), AutoencoderTiny()
        d = UNET[a]["cross_attention_dim"]
        return {
            "text": count_tflop(lambda: text(torch.zeros(1, 77, dtype=torch.long))),
            "unet": count_tflop(lambda: unet(torch.randn(1, 4, l, l), torch.tensor([500.0]), torch.randn(1, 77, d))),
            "vae": count_tflop(lambda: vae.decode(torch.randn(1, 4, l, l))),
            "taesd": count_tflop(lambda: taesd.decode(torch.randn(1, 4, l, l))),
        }


def timed(device, warmup, runs, fn):
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times, out = [], None
    for i in range(warmup + runs):
        sync()
        start = time.perf_counter()
        out = fn()
        sync()
        if i >= warmup:
            times.append((time.perf_counter() - start) * 1000)
    return times, bool(torch.isfinite(out.float()).all())


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="sd15", choices=["sd15", "sd21", "sd-turbo"])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--dtype", default="f32", choices=["f32", "f16"])
    p.add_argument("--vae-dtype", default="f32", choices=["f32", "f16"])
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--only", default="text,unet,vae,taesd")
    p.add_argument("--steps", type=int)
    p.add_argument("--count-flops", action="store_true")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    if args.count_flops:
        # f(s) = c + a·s² + b·s⁴ with s = size/512, solved from the exact counts at 512², 256², 128².
        for model in ("sd15", "sd21"):
            counts = {s: flop_counts(model, s) for s in (512, 256, 128)}
            for k in counts[512]:
                m = torch.tensor([[1.0, (s / 512) ** 2, (s / 512) ** 4] for s in counts], dtype=torch.float64)
                y = torch.tensor([counts[s][k] for s in counts], dtype=torch.float64)
                c, a, b = torch.linalg.solve(m, y).tolist()
                print(f"{model} {k:<6} 512²: {counts[512][k]:.5f} TFLOP  c={c:.6f} a={a:.6f} b={b:.6f}")
        return

    device = torch.device(args.device)
    dtype = {"f32": torch.float32, "f16": torch.float16}[args.dtype]
    vae_dtype = {"f32": torch.float32, "f16": torch.float16}[args.vae_dtype]
    parts = args.only.split(",")
    text, unet, vae, taesd = build(args.model, device, dtype, vae_dtype)
    flops = flop_counts(args.model, args.size)
    l = args.size // 8
    ids = prompt_ids(args.model, device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rows = []

    def row(name, dt, fn, tflop):
        times, finite = timed(device, args.warmup, args.runs, fn)
        rows.append((name, dt, statistics.median(times), tflop, finite))

    if "text" in parts:
        row("text encoder", args.dtype, lambda: text(ids).last_hidden_state, flops["text"])
    if "unet" in parts:
        ctx = text(ids).last_hidden_state
        for b in (2, 1):
            sample = torch.randn(b, 4, l, l, device=device, dtype=dtype)
            t = torch.full((b,), 500.0, device=device)
            c = ctx.repeat(b, 1, 1)
            name = "UNet step, batch 2 (CFG)" if b == 2 else "UNet step, batch 1"
            row(name, args.dtype, lambda: unet(sample, t, c).sample, b * flops["unet"])
    latents = torch.randn(1, 4, l, l, device=device, dtype=vae_dtype)
    if "vae" in parts:
        row("VAE decode", args.vae_dtype, lambda: vae.decode(latents).sample, flops["vae"])
    if "taesd" in parts:
        row("TAESD decode", args.vae_dtype, lambda: taesd.decode(latents).sample, flops["taesd"])
    if "image" in parts:
        turbo = args.model == "sd-turbo"
        steps = args.steps or (1 if turbo else 20)
        guidance = 0.0 if turbo else 7.5
        pipe = StableDiffusionPipeline(
            vae=vae, text_encoder=text, tokenizer=None, unet=unet, scheduler=EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012, steps_offset=1),
            safety_checker=None, feature_extractor=None, requires_safety_checker=False,
        )
        pipe.set_progress_bar_config(disable=True)
        # An empty negative prompt: BOS, EOS, padding (websd's StableDiffusion::empty_chunk).
        neg_ids = torch.tensor([[49406, 49407] + [49407 if args.model == "sd15" else 0] * 75], device=device)

        def image():
            # The text encoder runs inside the timed call, as in websd (no tokenizer files here).
            cond = text(ids).last_hidden_state
            uncond = text(neg_ids).last_hidden_state if guidance > 1 else None
            return pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, num_inference_steps=steps, guidance_scale=guidance,
                        height=args.size, width=args.size, output_type="pt").images

        copies = 2 if guidance > 1 else 1
        work = copies * flops["text"] + steps * copies * flops["unet"] + flops["vae"]
        row(f"txt2img image, {steps} Euler steps" + (", CFG" if copies == 2 else ""), args.dtype, image, work)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"reference bench (torch {torch.__version__}): model {args.model} at {args.size}×{args.size}, dtype {args.dtype}, "
          f"device {name}, median of {args.runs} runs after {args.warmup} warm-up" + (", TF32 off" if args.dtype == "f32" else ""))
    print(f"{'component':<34} {'dtype':>5} {'median ms':>12} {'TFLOP':>9} {'TFLOP/s':>9} {'finite':>7}")
    for name_, dt, ms, tflop, finite in rows:
        print(f"{name_:<34} {dt:>5} {ms:>12.1f} {tflop:>9.4f} {tflop / (ms / 1000):>9.4f} {'yes' if finite else 'NO':>7}")
    if device.type == "cuda":
        print(f"peak memory allocated by torch: {torch.cuda.max_memory_allocated() / 2**20:.1f} MiB")
    else:
        print("peak memory: — (CPU)")


if __name__ == "__main__":
    main()
