"""Cross-check marlin's safetensors writer and float conversions with the
reference Python safetensors library and PyTorch (run on the device machine).

usage: python pycheck.py DIR OUT
DIR holds the files written by TestWritePythonCheckFiles (manifest.json,
conv.json, *.safetensors). Results go to OUT/pycheck.json; OUT/py.safetensors
and OUT/py_manifest.json are a file written by Python's safetensors for the
reverse check (Go reads it).
"""
import hashlib, json, os, sys
import torch
from safetensors import safe_open
from safetensors.torch import save_file

d, out = sys.argv[1], sys.argv[2]
res = {"files": {}, "conv": {}, "versions": {"torch": torch.__version__}}
try:
    import safetensors
    res["versions"]["safetensors"] = safetensors.__version__
except Exception:
    pass

def tbytes(t):
    t = t.contiguous()
    if t.numel() == 0:
        return b""
    return t.view(torch.uint8).numpy().tobytes() if t.dim() > 0 else t.reshape(1).view(torch.uint8).numpy().tobytes()

NAMES = {torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
         torch.float8_e4m3fn: "F8_E4M3", torch.float8_e5m2: "F8_E5M2", torch.int64: "I64", torch.int32: "I32",
         torch.int16: "I16", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
for n in ("uint16", "uint32", "uint64"):
    if hasattr(torch, n):
        NAMES[getattr(torch, n)] = "U" + n[4:]

man = json.load(open(os.path.join(d, "manifest.json")))
for fname, want in man.items():
    r = {"ok": True, "errors": []}
    try:
        with safe_open(os.path.join(d, fname), framework="pt") as f:
            md = f.metadata() or {}
            if md != (want["metadata"] or {}):
                r["errors"].append(f"metadata {md} != {want['metadata']}")
            keys = set(f.keys())
            if keys != set(want["tensors"]):
                r["errors"].append(f"keys differ: {sorted(keys ^ set(want['tensors']))}")
            for k in sorted(keys & set(want["tensors"])):
                w = want["tensors"][k]
                t = f.get_tensor(k)
                dt = NAMES.get(t.dtype, str(t.dtype))
                if dt != w["dtype"] or list(t.shape) != w["shape"]:
                    r["errors"].append(f"{k}: {dt}{list(t.shape)} != {w['dtype']}{w['shape']}")
                    continue
                h = hashlib.sha256(tbytes(t)).hexdigest()
                if h != w["sha256"]:
                    r["errors"].append(f"{k}: bytes differ")
            r["tensors"] = len(keys)
    except Exception as e:
        r["errors"].append(repr(e))
    r["ok"] = not r["errors"]
    res["files"][fname] = r

conv = json.load(open(os.path.join(d, "conv.json")))
x = torch.tensor(conv["f32_bits"], dtype=torch.int64).to(torch.int32).view(torch.float32)
for name, dt in (("bf16", torch.bfloat16), ("f16", torch.float16), ("e4m3", torch.float8_e4m3fn), ("e5m2", torch.float8_e5m2)):
    ref = x.to(dt)
    bits = ref.view(torch.int16).to(torch.int64) & 0xFFFF if ref.element_size() == 2 else ref.view(torch.uint8).to(torch.int64)
    ours = torch.tensor(conv["ours"][name], dtype=torch.int64)
    # NaN payloads may differ: compare NaN-ness there.
    rnan = ref.float().isnan()
    mism = []
    for i in torch.nonzero(bits != ours).flatten().tolist():
        if rnan[i]:
            # torch gives NaN; ours must be NaN too unless we saturate (E4M3 overflow).
            mism.append({"i": i, "x": float(x[i]), "torch": int(bits[i]), "ours": int(ours[i]), "torch_nan": True})
        else:
            mism.append({"i": i, "x": float(x[i]), "torch": int(bits[i]), "ours": int(ours[i])})
    res["conv"][name] = {"n": len(ours), "mismatches": len(mism), "examples": mism[:20]}

# Reverse direction: a file written by Python for Go to read.
g = torch.Generator().manual_seed(7)
tensors = {
    "a.bf16": torch.randn(3, 5, generator=g).to(torch.bfloat16),
    "b.f32": torch.randn(7, generator=g),
    "c.f16": torch.randn(2, 2, 3, generator=g).to(torch.float16),
    "d.i64": torch.arange(-3, 3, dtype=torch.int64),
    "e.u8": torch.arange(0, 11, dtype=torch.uint8),
    "f.e4m3": torch.randn(16, generator=g).to(torch.float8_e4m3fn),
    "g.bool": torch.tensor([True, False, True]),
    "h.scalar": torch.tensor(3.5),
}
save_file(tensors, os.path.join(out, "py.safetensors"), metadata={"made_by": "python safetensors", "format": "pt"})
pm = {k: {"dtype": NAMES[v.dtype], "shape": list(v.shape), "sha256": hashlib.sha256(tbytes(v)).hexdigest()} for k, v in tensors.items()}
json.dump({"tensors": pm, "metadata": {"made_by": "python safetensors", "format": "pt"}}, open(os.path.join(out, "py_manifest.json"), "w"), indent=1)
json.dump(res, open(os.path.join(out, "pycheck.json"), "w"), indent=1)
print(json.dumps({k: v["ok"] for k, v in res["files"].items()}), json.dumps({k: v["mismatches"] for k, v in res["conv"].items()}))
