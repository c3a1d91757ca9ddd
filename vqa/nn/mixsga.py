"""mixSGA: a mixture of weight-shared grouped-query attention experts, routed per token.

After Song et al. (2025), "Mixture of Weight-shared Heterogeneous Group Attention Experts
for Dynamic Token-wise KV Optimization". Written from the paper's description:

- Experts are GQA attentions that differ only in their K/V group size and share ONE set of
  projection weights: the layer owns the finest K/V projection (``n_kv_heads`` heads,
  the same fused ``qkv`` layout as `Attention`); expert e with ``kv_heads[e]`` heads uses
  the mean of each run of n_kv_heads / kv_heads[e] consecutive K/V heads (the mean-pooling
  of `vqa.nn.convert`, applied to the projected keys/values, which is the same as pooling
  the projection rows). Expert 0 is the finest.
- Routing is per (key) token: a linear router gives each token a distribution g over the
  experts; its importance score is the expected fineness sum_e g_e * (E-1-e)/(E-1).
  Expert-choice with fixed capacities: inside each sample, tokens sorted by importance
  (stable, ties to the earlier token) fill expert 0's share ``capacity[0]`` first, then
  expert 1's, ...; the last expert takes the rest. Every token is kept and gets exactly one
  expert; the most important tokens get the finest K/V. A sample's routing never depends
  on the other samples of the batch.
- Training (``mode="soft"``, the paper's) mixes the experts' K/V with the soft weights g;
  eval uses the hard assignment. ``mode="hard"`` (a straight-through variant, not from the
  paper) trains on the hard assignment too, with g's gradient taken as if mixed softly:
  weights one_hot + g - g.detach(), so training and eval compute the same forward.
  The auxiliary loss ``aux_loss`` = mean over tokens of -log g[assigned expert] pushes g
  towards the one-hot assignment, so that training and inference compute the same thing
  (it is 0 exactly when they agree). Add ``aux_weight * mixsga_aux_loss(model)`` to the
  task loss.

Token t's K/V cache at inference holds 2 * kv_heads[e(t)] * d_head numbers instead of
2 * n_kv_heads * d_head: `kv_cache_fraction` reports the saving of a routing.

Queries keep all n_q_heads heads. The attention itself runs once, on the finest head layout
(K/V of coarser tokens repeated inside their groups), through
``F.scaled_dot_product_attention(..., enable_gqa=True)``.

`Attention(dim, n_heads, variant="mixsga", n_kv_heads=...)` builds a `MixSGAttention`
(see `vqa.nn.attention`); `mixsga_kv_heads` and `capacity` then take their defaults.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import Attention, explicit_attention


def default_kv_heads(n_kv_heads: int) -> tuple[int, ...]:
    """Finest first: n_kv, n_kv/2, n_kv/4 (those that divide n_kv; at least two experts
    when n_kv > 1), e.g. 8 -> (8, 4, 2), 4 -> (4, 2, 1), 3 -> (3, 1), 1 -> (1,)."""
    out = [h for h in (n_kv_heads, n_kv_heads // 2, n_kv_heads // 4) if h >= 1 and n_kv_heads % h == 0]
    if len(out) == 1 and n_kv_heads > 1:
        out.append(1)
    return tuple(dict.fromkeys(out))


def route(scores: torch.Tensor, capacity) -> torch.Tensor:
    """Expert-choice assignment. scores (B, N) importance -> expert index (B, N) long.

    Inside each row, tokens in order of decreasing score (stable) are given to expert 0
    until it holds round(capacity[0] * N) tokens, then to expert 1, ...; the last expert
    takes what is left."""
    B, N = scores.shape
    cum = torch.tensor(capacity, dtype=torch.float64).cumsum(0)
    bounds = torch.round(cum[:-1] * N).long().tolist()              # rank where each expert's share ends
    order = torch.argsort(-scores.detach().float(), dim=-1, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(N, device=scores.device).expand(B, N))
    expert = torch.zeros(B, N, dtype=torch.long, device=scores.device)
    for b in bounds:
        expert += (rank >= b).long()
    return expert


class MixSGAttention(Attention):
    """Token-routed mixture of weight-shared GQA experts (see module doc).

    Args (besides `Attention`'s): kv_heads: the experts' K/V head counts, finest first,
        each dividing n_kv_heads (default `default_kv_heads(n_kv_heads)`);
        capacity: share of tokens per expert (default equal), summing to 1.
        mode: "soft" (train on the gate-weighted mixture) or "hard" (straight-through).

    Parameters: ``qkv`` and ``proj`` as `Attention` with n_kv_heads K/V heads (the finest
    expert), ``router`` Linear D -> n_experts. After each forward: ``routing`` (B, M) the
    expert of every key token, ``gates`` (B, M, E) the router's distribution, and in
    training ``aux_loss`` (a scalar tensor with grad).
    """

    def __init__(self, dim: int, n_heads: int, *, variant: str = "mixsga", n_q_heads: int | None = None,
                 n_kv_heads: int | None = None, kv_heads: tuple[int, ...] | None = None,
                 capacity: tuple[float, ...] | None = None, mode: str = "soft", **kw):
        super().__init__(dim, n_heads, variant="mixsga", n_q_heads=n_q_heads, n_kv_heads=n_kv_heads, **kw)
        kv_heads = tuple(kv_heads or default_kv_heads(self.n_kv_heads))
        if list(kv_heads) != sorted(set(kv_heads), reverse=True) or any(self.n_kv_heads % h for h in kv_heads):
            raise ValueError(f"mixsga: kv_heads={kv_heads} must be distinct, decreasing, and divide "
                             f"n_kv_heads={self.n_kv_heads}")
        E = len(kv_heads)
        capacity = tuple(capacity) if capacity is not None else (1.0 / E,) * E
        if len(capacity) != E or any(c < 0 for c in capacity) or abs(sum(capacity) - 1) > 1e-6:
            raise ValueError(f"mixsga: capacity={capacity} must be {E} non-negative shares summing to 1")
        if mode not in ("soft", "hard"):
            raise ValueError(f"mixsga: mode={mode!r}: expected 'soft' or 'hard'")
        self.kv_heads, self.capacity, self.mode = kv_heads, capacity, mode
        self.router = nn.Linear(dim, E)
        nn.init.zeros_(self.router.weight)
        nn.init.zeros_(self.router.bias)
        self.routing = self.gates = self.aux_loss = None

    def __getstate__(self):
        """Copies and pickles leave out the last forward's loss (a non-leaf tensor)."""
        state = dict(super().__getstate__())
        state["aux_loss"] = None
        return state

    def extra_repr(self) -> str:
        return super().extra_repr() + f", kv_heads={self.kv_heads}, capacity={self.capacity}, mode={self.mode}"

    @property
    def n_experts(self) -> int:
        return len(self.kv_heads)

    def importance(self, gates: torch.Tensor) -> torch.Tensor:
        """gates (..., E) -> expected fineness in [0, 1] (1 = finest expert)."""
        E = self.n_experts
        if E == 1:
            return gates[..., 0]
        w = torch.linspace(1.0, 0.0, E, device=gates.device, dtype=gates.dtype)
        return gates @ w

    def pooled(self, t: torch.Tensor, e: int) -> torch.Tensor:
        """t (B, H_kv, M, d) -> expert e's K or V, repeated back to H_kv heads (B, H_kv, M, d)."""
        B, H, M, d = t.shape
        g = H // self.kv_heads[e]
        if g == 1:
            return t
        return t.view(B, H // g, g, M, d).mean(2, keepdim=True).expand(B, H // g, g, M, d).reshape(B, H, M, d)

    def mix(self, k: torch.Tensor, v: torch.Tensor, context: torch.Tensor):
        """Route the key tokens of `context` (B, M, D) and mix the experts' K/V."""
        gates = self.router(context).softmax(-1)                        # (B, M, E)
        expert = route(self.importance(gates), self.capacity)           # (B, M)
        self.routing, self.gates = expert.detach(), gates.detach()
        if self.training:
            w = gates
            if self.mode == "hard":
                w = F.one_hot(expert, self.n_experts).to(gates.dtype) + gates - gates.detach()
            self.aux_loss = -gates.gather(-1, expert[..., None]).clamp_min(1e-9).log().mean()
        else:
            w = F.one_hot(expert, self.n_experts).to(k.dtype)
            self.aux_loss = None
        w = w.transpose(1, 2)[:, :, None, :, None]                      # (B, E, 1, M, 1)
        k_mix = sum(w[:, e] * self.pooled(k, e) for e in range(self.n_experts))
        v_mix = sum(w[:, e] * self.pooled(v, e) for e in range(self.n_experts))
        return k_mix, v_mix

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, *,
                attn_mask: torch.Tensor | None = None, is_causal: bool = False,
                return_attention: bool = False):
        B, N, _ = x.shape
        q, k, v = self.project(x, context)
        k, v = self.mix(k, v, x if context is None else context)
        dropout = self.dropout if self.training else 0.0
        attn = None
        if return_attention:
            g = self.n_q_heads // self.n_kv_heads
            out, attn = explicit_attention(q, k.repeat_interleave(g, 1), v.repeat_interleave(g, 1),
                                           attn_mask, is_causal, self.scale)
        else:
            if self._expand_single_kv(q, k):
                k, v = k.expand(B, self.n_q_heads, -1, -1), v.expand(B, self.n_q_heads, -1, -1)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask, dropout, is_causal,
                                                 enable_gqa=k.shape[1] != self.n_q_heads)
        out = self.proj(out.transpose(1, 2).reshape(B, N, self.n_q_heads * self.d_head))
        return (out, attn) if return_attention else out

    def kv_cache_fraction(self, routing: torch.Tensor | None = None) -> float:
        """K/V cache of a routing relative to keeping every token at n_kv_heads heads."""
        routing = self.routing if routing is None else routing
        heads = torch.tensor(self.kv_heads, dtype=torch.float64)[routing.cpu()]
        return float(heads.mean() / self.n_kv_heads)


def mixsga_layers(model: nn.Module) -> list[MixSGAttention]:
    return [m for m in model.modules() if isinstance(m, MixSGAttention)]


def mixsga_aux_loss(model: nn.Module) -> torch.Tensor:
    """Sum of the auxiliary (one-hot routing) losses of the model's last training forward
    (0 when there is none)."""
    losses = [m.aux_loss for m in mixsga_layers(model) if m.aux_loss is not None]
    return torch.stack(losses).sum() if losses else torch.zeros(())


# -- routing report on generated scenes -----------------------------------------------------
ATTRIBUTES = {"color": ("gray", "red", "blue", "green", "brown", "purple", "cyan", "yellow"),
              "shape": ("cube", "sphere", "cylinder"), "material": ("rubber", "metal"),
              "size": ("large", "small")}


def load_scene_set(root: str, patch: int = 16, overlap: float = 0.25):
    """A `vqa generate` output folder -> images (S, 3, H, W) in [0, 1], multi-hot attribute
    presence targets (S, 15), and object-patch masks (S, H/p * W/p) bool: a patch is an
    object patch when a gold bbox covers at least `overlap` of it."""
    import glob
    import json
    import os

    import numpy as np
    from PIL import Image

    path = glob.glob(os.path.join(root, "scenes", "*.json"))[0]
    with open(path) as f:
        scenes = json.load(f)["scenes"]
    names = [v for vals in ATTRIBUTES.values() for v in vals]
    images, targets, masks = [], [], []
    for s in scenes:
        split = s.get("split", "train")
        img = Image.open(os.path.join(root, "images", split, s["image_filename"])).convert("RGB")
        a = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255.0).permute(2, 0, 1)
        H, W = a.shape[1:]
        gh, gw = H // patch, W // patch
        images.append(a[:, :gh * patch, :gw * patch])
        t = torch.zeros(len(names))
        cover = torch.zeros(gh, gw)
        for o in s["objects"]:
            for key in ATTRIBUTES:
                t[names.index(o[key])] = 1.0
            x, y, w, h = o["bbox"]
            for i in range(gh):
                for j in range(gw):
                    ox = max(0.0, min(x + w, (j + 1) * patch) - max(x, j * patch))
                    oy = max(0.0, min(y + h, (i + 1) * patch) - max(y, i * patch))
                    cover[i, j] = max(cover[i, j], ox * oy / patch ** 2)
        targets.append(t)
        masks.append((cover >= overlap).flatten())
    return torch.stack(images), torch.stack(targets), torch.stack(masks)


def routing_stats(model: nn.Module, images: torch.Tensor, object_mask: torch.Tensor, batch: int = 16) -> list[dict]:
    """Eval-mode routing of every mixSGA layer of a ViT (class token first, left out):
    share of patches per expert, overall / on object patches / on background patches,
    and mean fineness (1 = finest expert) of object vs background patches."""
    model.eval()
    layers = mixsga_layers(model)
    routes = [[] for _ in layers]
    with torch.no_grad():
        for s in range(0, len(images), batch):
            model(images[s:s + batch])
            for i, m in enumerate(layers):
                r = m.routing
                routes[i].append(r[:, r.shape[1] - object_mask.shape[1]:])     # patches only
    rows = []
    for i, m in enumerate(layers):
        r = torch.cat(routes[i])
        E = m.n_experts
        fine = 1.0 - r.float() / max(1, E - 1)

        def share(sel):
            return [round(float((r[sel] == e).float().mean()), 4) for e in range(E)]
        rows.append({"layer": i, "kv_heads": list(m.kv_heads), "capacity": [round(c, 4) for c in m.capacity],
                     "all": share(torch.ones_like(object_mask)), "object": share(object_mask),
                     "background": share(~object_mask),
                     "fineness_object": float(fine[object_mask].mean()),
                     "fineness_background": float(fine[~object_mask].mean()),
                     "kv_cache_fraction": m.kv_cache_fraction(r)})
    return rows


def routing_report(train_root: str, eval_root: str, *, minutes: float = 4.0, dim: int = 64, depth: int = 3,
                   n_heads: int = 4, kv_heads=(4, 2, 1), capacity=None, aux_weight: float = 0.1,
                   batch: int = 16, lr: float = 1e-3, seed: int = 0, steps: int | None = None,
                   mode: str = "soft", log=print) -> dict:
    """Train a small mixSGA ViT for `minutes` (or `steps` steps, whichever ends first) on
    attribute presence (multi-label over the 15 CLEVR attribute values) on `train_root`,
    then report the routing on `eval_root`: the class token must read the objects'
    attributes, so object patches' K/V matter and background patches' do not."""
    import time

    from .vit import ViT, ViTConfig

    torch.manual_seed(seed)
    xs, ys, _ = load_scene_set(train_root)
    ex, ey, emask = load_scene_set(eval_root)
    cfg = ViTConfig(image_size=tuple(xs.shape[-2:]), patch_size=16, dim=dim, depth=depth, n_heads=n_heads,
                    attn_variant="mixsga", num_classes=ys.shape[1])
    model = ViT(cfg)
    for m in mixsga_layers(model):
        m.kv_heads = tuple(kv_heads)
        m.capacity = tuple(capacity) if capacity else (1.0 / len(kv_heads),) * len(kv_heads)
        m.mode = mode
        m.router = nn.Linear(dim, len(kv_heads))
        nn.init.zeros_(m.router.weight)
        nn.init.zeros_(m.router.bias)
    before = routing_stats(model, ex, emask)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    bce = nn.BCEWithLogitsLoss()
    start, step = time.time(), 0
    g = torch.Generator().manual_seed(seed)
    while time.time() - start < minutes * 60 and (steps is None or step < steps):
        model.train()
        idx = torch.randint(0, len(xs), (batch,), generator=g)
        loss = bce(model(xs[idx]), ys[idx])
        aux = mixsga_aux_loss(model)
        (loss + aux_weight * aux).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        step += 1
        if step % 50 == 0 and log:
            log(f"step {step} ({time.time() - start:.0f} s): task {loss.item():.4f} aux {aux.item():.4f}")
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(ex[s:s + 32]) for s in range(0, len(ex), 32)])
        acc = float(((logits > 0).float() == ey).float().mean())
        model.train()
        soft = torch.cat([model(ex[s:s + 32]) for s in range(0, len(ex), 32)])
        model.eval()
        gap = float((soft - logits).abs().max())
    return {"train_scenes": len(xs), "eval_scenes": len(ex), "steps": step, "seconds": round(time.time() - start, 1),
            "config": {"dim": dim, "depth": depth, "n_heads": n_heads, "kv_heads": list(kv_heads),
                       "aux_weight": aux_weight, "batch": batch, "lr": lr, "mode": mode},
            "final_task_loss": loss.item(), "final_aux_loss": aux.item(),
            "eval_attribute_accuracy": acc, "eval_train_vs_eval_max_logit_gap": gap,
            "object_patch_share": float(emask.float().mean()),
            "routing_before": before, "routing_after": routing_stats(model, ex, emask)}


def format_routing(rep: dict) -> str:
    lines = [f"mixSGA ViT (dim {rep['config']['dim']}, depth {rep['config']['depth']}, heads "
             f"{rep['config']['n_heads']}, experts with K/V heads {rep['config']['kv_heads']}, {rep['config']['mode']} "
             f"routing, aux weight {rep['config']['aux_weight']}) trained "
             f"{rep['steps']} steps / {rep['seconds']} s on {rep['train_scenes']} scenes; eval on "
             f"{rep['eval_scenes']} scenes: attribute accuracy {rep['eval_attribute_accuracy']:.3f}, "
             f"aux loss {rep['final_aux_loss']:.4f}, train-vs-eval logit gap {rep['eval_train_vs_eval_max_logit_gap']:.2e}",
             f"object patches: {rep['object_patch_share']:.3f} of all patches"]
    for tag in ("routing_before", "routing_after"):
        lines.append(f"{tag.replace('_', ' ')} (share of patches per expert, finest first):")
        for r in rep[tag]:
            lines.append(f"  layer {r['layer']}: all {r['all']}  object {r['object']}  background {r['background']}  "
                         f"fineness object {r['fineness_object']:.3f} vs background {r['fineness_background']:.3f}  "
                         f"K/V cache x{r['kv_cache_fraction']:.3f}")
    return "\n".join(lines)


def _main(argv=None) -> int:
    import argparse
    import json

    ap = argparse.ArgumentParser(prog="python -m vqa.nn.mixsga",
                                 description="train a small mixSGA ViT on generated scenes and report its routing")
    ap.add_argument("train", help="vqa generate output folder to train on")
    ap.add_argument("eval", help="vqa generate output folder to report on")
    ap.add_argument("--minutes", type=float, default=4.0)
    ap.add_argument("--steps", type=int, help="stop after this many steps (default: time only)")
    ap.add_argument("--aux-weight", type=float, default=0.1)
    ap.add_argument("--mode", choices=["soft", "hard"], default="soft", help="training-time routing (default soft)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", help="also write the report as JSON here")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    rep = routing_report(a.train, a.eval, minutes=a.minutes, aux_weight=a.aux_weight, seed=a.seed,
                         steps=a.steps, mode=a.mode)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rep, f, indent=1)
    print(format_routing(rep))
    return 0


if __name__ == "__main__":          # run the package's module, not a second copy of it
    from importlib import import_module
    raise SystemExit(import_module(__spec__.name)._main())
