"""Reference encodings for quant's cross-check (run once on the device machine).

usage: python xcheck.py IN_DIR MODELS_DIR OUT_DIR

IN_DIR holds fp8.f32, e2m1.f32, mxfp4.f32, nvfp4.f32 (written by the Go test
with MARLIN_WRITE_XCHECK=IN_DIR). Writes OUT_DIR/xcheck.json (SHA-256 of the
inputs and of torch's encodings), the raw outputs, and
OUT_DIR/rtn_reference.json: per 2-D model.layers.* weight (routers
mlp.gate.weight excluded) of each model under MODELS_DIR, the float64 sum and
abs-sum and the SHA-256 of the float32 dequantized weights for the five RTN
definitions of shared/testdata/README.md. Everything runs on the CPU in
float32 (IEEE-exact division; no fast-math).
"""
import hashlib, json, os, sys, glob
import torch
from safetensors.torch import load_file

torch.set_num_threads(os.cpu_count() or 1)
IN, MODELS, OUT = sys.argv[1], sys.argv[2], sys.argv[3]
os.makedirs(OUT, exist_ok=True)


def sha(b):
    return hashlib.sha256(b).hexdigest()


def load(name):
    raw = open(os.path.join(IN, name + ".f32"), "rb").read()
    return raw, torch.frombuffer(bytearray(raw), dtype=torch.float32)


def e2m1_codes(x):
    """E2M1 by thresholds (independent of the Go bit trick): RNE to the even code, saturate at 6."""
    a = x.abs()
    m = ((a > 0.25).int() + (a >= 0.75).int() + (a > 1.25).int() + (a >= 1.75).int()
         + (a > 2.5).int() + (a >= 3.5).int() + (a > 5).int())
    s = torch.signbit(x).int() * 8
    return (m + s).to(torch.uint8)


E2M1 = torch.tensor([0, .5, 1, 1.5, 2, 3, 4, 6, -0., -.5, -1, -1.5, -2, -3, -4, -6], dtype=torch.float32)


def e4m3(x):  # saturating OCP E4M3 via torch's cast of the clamped value
    return x.clamp(-448, 448).to(torch.float8_e4m3fn)


def mx_scale_exp(amax):
    # floor(log2(amax)) - 2 exactly via frexp (amax = m 2^E, m in [0.5,1)); zero -> -127
    _, E = torch.frexp(amax)
    e = (E.to(torch.int32) - 1) - 2
    e = torch.where(amax == 0, torch.full_like(e, -127), e)
    return e.clamp(-127, 127)


def mxfp4(w2d):
    """returns (codes uint8 per element, e8m0 scale bytes, dequantized float32)"""
    r, c = w2d.shape
    b = w2d.reshape(r, c // 32, 32)
    e = mx_scale_exp(b.abs().amax(-1))
    # 2^e built from its bits (exact; 2^-127 is the float32 subnormal 0x00400000)
    bits = torch.where(e >= -126, (e + 127) << 23, torch.full_like(e, 0x00400000))
    scale = bits.view(torch.float32)
    codes = e2m1_codes(b / scale.unsqueeze(-1))
    deq = E2M1[codes.long()] * scale.unsqueeze(-1)
    return codes.reshape(r, c), (e + 127).to(torch.uint8), deq.reshape(r, c)


def nvfp4(w2d):
    r, c = w2d.shape
    g = w2d.abs().amax() / (6 * 448)
    b = w2d.reshape(r, c // 16, 16)
    s8 = e4m3(b.abs().amax(-1) / 6 / g)
    den = (s8.float() * g).unsqueeze(-1)
    q = torch.where(den == 0, torch.zeros_like(b), b / torch.where(den == 0, torch.ones_like(den), den))
    codes = e2m1_codes(q)
    deq = E2M1[codes.long()] * den
    return codes.reshape(r, c), s8.view(torch.uint8), deq.reshape(r, c), g


def int_sym(w2d, bits, gs):
    r, c = w2d.shape
    b = w2d.reshape(r, c // gs, gs)
    scale = b.abs().amax(-1, keepdim=True) / (2 ** (bits - 1) - 1)
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)
    q = torch.clamp(torch.round(b / safe), -2 ** (bits - 1), 2 ** (bits - 1) - 1)
    return (q * scale).reshape(r, c)


res = {"inputs": {}, "outputs": {}, "notes": {}}
raw, x = load("fp8")
res["inputs"]["fp8"] = sha(raw)
for name, dt, mx in [("e4m3", torch.float8_e4m3fn, 448.0), ("e5m2", torch.float8_e5m2, 57344.0)]:
    y = torch.where(x.isinf(), x, x.clamp(-mx, mx)) if dt == torch.float8_e5m2 else x.clamp(-mx, mx)
    y = y.to(dt).view(torch.uint8).numpy().tobytes()
    res["outputs"][name] = sha(y)
    open(os.path.join(OUT, name + ".u8"), "wb").write(y)

raw, x = load("e2m1")
res["inputs"]["e2m1"] = sha(raw)
codes = e2m1_codes(x)
res["outputs"]["e2m1"] = sha(codes.numpy().tobytes())
open(os.path.join(OUT, "e2m1.u8"), "wb").write(codes.numpy().tobytes())
try:  # torch's own FP4 type, if this build can cast to it
    t4 = x.to(torch.float4_e2m1fn_x2)
    res["notes"]["float4_e2m1fn_x2"] = "cast available"
except Exception as ex:  # noqa
    res["notes"]["float4_e2m1fn_x2"] = "cast unavailable: " + str(ex)[:200]

raw, x = load("mxfp4")
res["inputs"]["mxfp4"] = sha(raw)
codes, scales, _ = mxfp4(x.reshape(-1, 32 * 125))
res["outputs"]["mxfp4_codes"] = sha(codes.numpy().tobytes())
res["outputs"]["mxfp4_scales"] = sha(scales.numpy().tobytes())
open(os.path.join(OUT, "mxfp4_codes.u8"), "wb").write(codes.numpy().tobytes())
open(os.path.join(OUT, "mxfp4_scales.u8"), "wb").write(scales.numpy().tobytes())

raw, x = load("nvfp4")
res["inputs"]["nvfp4"] = sha(raw)
codes, s8, _, g = nvfp4(x.reshape(-1, 1600))
res["outputs"]["nvfp4_codes"] = sha(codes.numpy().tobytes())
res["outputs"]["nvfp4_scales"] = sha(s8.numpy().tobytes())
res["outputs"]["nvfp4_tensor_scale"] = sha(g.reshape(1).numpy().tobytes())
open(os.path.join(OUT, "nvfp4_codes.u8"), "wb").write(codes.numpy().tobytes())
open(os.path.join(OUT, "nvfp4_scales.u8"), "wb").write(s8.numpy().tobytes())
res["notes"]["torch"] = torch.__version__
json.dump(res, open(os.path.join(OUT, "xcheck.json"), "w"), indent=1, sort_keys=True)

# RTN reference per model tensor.
ref = {"definition": "shared/testdata/README.md RTN definitions, CPU torch float32; sum/abs_sum are float64 sums of the float32 dequantized weights, sha256 over their little-endian float32 bytes", "torch": torch.__version__, "models": {}}
for mdir in sorted(glob.glob(os.path.join(MODELS, "*"))):
    tensors = {}
    for f in sorted(glob.glob(os.path.join(mdir, "*.safetensors"))):
        tensors.update(load_file(f))
    out = {}
    for name in sorted(tensors):
        t = tensors[name]
        if not name.startswith("model.layers.") or t.dim() != 2 or name.endswith("mlp.gate.weight"):
            continue
        w = t.float()
        deqs = {
            "rtn_int4_g128_sym": int_sym(w, 4, 128),
            "rtn_int3_g128_sym": int_sym(w, 3, 128),
            "rtn_int2_g64_sym": int_sym(w, 2, 64),
            "rtn_mxfp4": mxfp4(w)[2],
            "rtn_nvfp4": nvfp4(w)[2],
        }
        out[name] = {k: {"sum": v.double().sum().item(), "abs_sum": v.double().abs().sum().item(),
                         "sha256": sha(v.contiguous().numpy().tobytes())} for k, v in deqs.items()}
    ref["models"][os.path.basename(mdir)] = out
json.dump(ref, open(os.path.join(OUT, "rtn_reference.json"), "w"), indent=1, sort_keys=True)
print("done", {k: len(v) for k, v in ref["models"].items()})
print(json.dumps(res["notes"]))
