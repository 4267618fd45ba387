"""Deep Speech 2 on a GPU: training steps per second by recurrence and precision, and WER after N minutes.

For a machine with an NVIDIA GPU (on one without CUDA it says so and exits with status 0).

1. The recurrent layer alone, forward + backward, at the ``espeak`` preset's width and at the
   paper's scale: the readable recurrence (``gru_layer``'s step unrolled in Python),
   the fast path (cuDNN's GRU over the batch-normalised projection ``BN(W x)``, identity
   ``W_ih``) and a plain bidirectional ``nn.GRU`` (no BatchNorm: the cuDNN ceiling);
2. ``train_step`` on the ``espeak`` preset's model and minibatches: readable vs cuDNN path,
   float32 vs ``--amp`` (bfloat16 where the GPU has it, else float16 with loss scaling);
3. held-out WER after ``--minutes`` of training on the eSpeak corpus (``reference.train``'s
   ``espeak`` preset; synthetic speech if eSpeak NG is missing, with a note), AMP on and off.

    python benchmarks/bench_gpu.py [--minutes 2] [--steps 30] [--skip-wer]
    python benchmarks/bench_gpu.py --smoke      # every code path, tiny sizes, on the CPU (a check, not a benchmark)
"""
import argparse
import sys
import time

from _common import ROOT

import torch
import torch.nn as nn


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def per_second(fn, device, steps, warmup=3):
    for _ in range(warmup):
        fn()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    sync(device)
    return steps / (time.perf_counter() - t0)


def bench_layer(device, T, B, I, H, steps, amp):
    """Forward + backward per second of one bidirectional recurrent layer, three ways."""
    from reference.layers import RecurrentLayer

    x = torch.randn(T, B, I, device=device)
    lengths = torch.randint(T // 2, T + 1, (B,), device=device)
    lengths[0] = T
    readable = RecurrentLayer(I, H, fused=False).to(device)
    fast = RecurrentLayer(I, H, fused=True).to(device)
    gru = nn.GRU(I, H, bidirectional=True).to(device)
    cast = (lambda: torch.autocast(device.type, dtype=amp.dtype)) if amp else None

    def run(layer):
        def step():
            if cast:
                with cast():
                    y = layer(x, lengths) if layer is not gru else gru(x)[0]
            else:
                y = layer(x, lengths) if layer is not gru else gru(x)[0]
            y.float().square().mean().backward()
        return step

    return {name: per_second(run(layer), device, steps) for name, layer in
            (("readable", readable), ("cudnn path", fast), ("nn.GRU", gru))}


def bench_steps(device, steps, batches, recipe, encoder):
    """train_step per second on the preset's model: readable vs cuDNN path, float32 vs AMP."""
    from reference import DeepSpeech2
    from reference.devices import Amp
    from reference.training import train_step

    out = {}
    for fused in (False, True):
        for use_amp in (False, True):
            torch.manual_seed(0)
            model = DeepSpeech2(n_freq=161, vocab_size=encoder.vocab_size, fused_rnn=fused, **recipe["model"]).to(device)
            opt = torch.optim.Adam(model.parameters(), lr=recipe["lr"])
            amp = Amp(device) if use_amp else None
            it = iter(range(10 ** 9))

            def step():
                train_step(model, batches[next(it) % len(batches)], opt, amp=amp)
            name = f"{'cudnn path' if fused else 'readable'}, {str(amp.dtype).replace('torch.', '') if amp else 'float32'}"
            out[name] = per_second(step, device, steps)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=2.0, help="training budget of each WER run")
    p.add_argument("--steps", type=int, default=30, help="timed steps per throughput figure")
    p.add_argument("--skip-wer", action="store_true", help="throughput only")
    p.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: checks the code paths, measures nothing")
    args = p.parse_args(argv)

    if args.smoke:
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print(f"bench_gpu: no CUDA GPU on this machine (torch {torch.__version__}, "
              f"{'CUDA ' + torch.version.cuda if torch.version.cuda else 'a CPU-only build'}); nothing to measure. "
              "Run it where `python -c 'import torch; print(torch.cuda.is_available())'` prints True "
              "(or with --smoke to check the code paths on the CPU).")
        return 0
    else:
        device = torch.device("cuda")
        torch.backends.cudnn.benchmark = True

    from reference import CharEncoder
    from reference.devices import Amp
    from reference.train import PRESETS, load_data
    from reference.training import fit, make_batches

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU (smoke test)"
    amp = Amp(device)
    print(f"# bench_gpu: {name}, torch {torch.__version__}, CUDA {torch.version.cuda}, cuDNN "
          f"{torch.backends.cudnn.version() if device.type == 'cuda' else '-'}; AMP here: {amp}")

    steps = 2 if args.smoke else args.steps
    print("\n## one bidirectional recurrent layer, forward + backward per second")
    shapes = [(20, 4, 16, 8)] if args.smoke else [(150, 32, 1200, 160), (300, 64, 1280, 1280)]
    print(f"{'T x B x in -> H':>24} {'precision':>10} {'readable':>10} {'cudnn path':>11} {'nn.GRU':>8}")
    for T, B, I, H in shapes:
        for a in (None, amp):
            r = bench_layer(device, T, B, I, H, steps, a)
            prec = str(a.dtype).replace("torch.", "") if a else "float32"
            print(f"{f'{T}x{B}x{I} -> {H}':>24} {prec:>10} {r['readable']:>10.2f} {r['cudnn path']:>11.2f} {r['nn.GRU']:>8.2f}")

    recipe = {**PRESETS["espeak"], "model": dict(PRESETS["espeak"]["model"])}
    if args.smoke:
        recipe.update(data="synthetic", n_train=24, n_valid=8, min_words=1, max_words=2)
        recipe["model"].update(rnn_hidden=16, n_rnn=1)
    t0 = time.perf_counter()
    train, valid, _ = load_data_or_synthetic(recipe, load_data)
    print(f"\ndata: {len(train)} train / {len(valid)} held-out ({recipe['data']}) in {time.perf_counter() - t0:.0f} s")
    encoder = CharEncoder()
    batches = [b.to(device) for b in make_batches(train[: recipe["batch_size"] * 20], encoder, recipe["batch_size"], epoch=1)]
    print(f"\n## train_step per second, espeak preset model, minibatches of {recipe['batch_size']}")
    for k, v in bench_steps(device, steps, batches, recipe, encoder).items():
        print(f"{k:>28}: {v:7.2f} steps/s")

    if args.skip_wer:
        return 0
    seconds = 5.0 if args.smoke else 60.0 * args.minutes
    print(f"\n## held-out WER after {seconds / 60:.1f} minutes of training (evaluation not counted)")
    for a in (None, amp):
        from reference import DeepSpeech2

        torch.manual_seed(0)
        model = DeepSpeech2(n_freq=161, vocab_size=encoder.vocab_size, **recipe["model"])
        hist = fit(model, train, encoder, valid_set=valid, epochs=1000, batch_size=recipe["batch_size"],
                   lr=recipe["lr"], seconds=seconds, eval_every=10 ** 9, anneal=recipe["anneal"], progress=False,
                   device=device, amp=a)
        prec = str(a.dtype).replace("torch.", "") if a else "float32"
        print(f"{prec:>10}: {hist.step[-1]} steps, WER {100 * hist.eval_wer[-1]:.2f} %, CER {100 * hist.eval_cer[-1]:.2f} %")
    return 0


def load_data_or_synthetic(recipe, load_data):
    """The preset's corpus; synthetic speech (and a note) where eSpeak NG is not installed."""
    try:
        return load_data(recipe, 0, str(ROOT / "data_cache"), progress=False)
    except Exception as err:  # noqa: BLE001 - reference.corpus explains what is missing
        print(f"note: no eSpeak corpus ({err}); using synthetic speech instead")
        recipe.update(data="synthetic", min_words=1, max_words=4)
        return load_data(recipe, 0, str(ROOT / "data_cache"), progress=False)


if __name__ == "__main__":
    sys.exit(main())
