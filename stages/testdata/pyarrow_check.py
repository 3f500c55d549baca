import json, sys, numpy as np, pyarrow as pa, pyarrow.ipc as ipc
print("pyarrow", pa.__version__)
for name in ["tensor.arrow", "f32.arrow", "stats.arrow"]:
    r = ipc.open_file(f".carry/runner/{name}")
    md = r.schema.metadata
    print(f"== {name}: schema {r.schema.types}, {r.num_record_batches} batches")
    print("  marlin.format =", md[b"marlin.format"].decode())
    tensors = json.loads(md[b"marlin.tensors"])
    meta = json.loads(md[b"marlin.meta"])
    print("  marlin.tensors =", json.dumps(tensors)[:200])
    if meta: print("  marlin.meta (mean,std,absmax) =", {k: v for k, v in meta.items() if k.endswith((".mean", ".std", ".absmax"))})
    for i, info in enumerate(tensors):
        b = r.get_batch(i)
        raw = b.column("data")[0].as_py()
        if info["dtype"] == "BF16":
            x = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            x = np.frombuffer(raw, "<f4")
        x = x.reshape(info["shape"]).astype(np.float64)
        print(f"  {b.column('name')[0]}: shape {x.shape} mean {x.mean():.17g} std {x.std():.17g} absmax {np.abs(x).max():.17g}")
