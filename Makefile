# marlin build entry points. `make test` is what CI runs (.ci/run).
GO          ?= go
BIN         ?= bin
STATICCHECK ?= $(shell command -v staticcheck 2>/dev/null || echo $(HOME)/go/bin/staticcheck)
TEST_TIMEOUT ?= 14m

.PHONY: all build test bench demo schema lint clean

all: build

build:
	$(GO) build -o $(BIN)/marlin-run ./cmd/marlin-run

test:
	$(GO) test -timeout $(TEST_TIMEOUT) ./...

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./...

# The nano demo (issue 13): bundled qwen3-nano → rotate → calibrate →
# MR-GPTQ MXFP4 → GGUF + native → validate → benchmark, with a results table
# and runs/nano-demo/out/report.html. Re-running resumes from checkpoints.
# DEMO_WORKDIR moves the run; DEMO_FLAGS passes run flags (e.g. --fresh).
DEMO_WORKDIR ?= runs/nano-demo
demo: build
	$(BIN)/marlin-run run --workdir $(DEMO_WORKDIR) $(DEMO_FLAGS) pipelines/nano-demo.yaml
	$(GO) run ./internal/demosummary $(DEMO_WORKDIR)/out
	@echo "report: $(DEMO_WORKDIR)/out/report.html"

# Scale test: a 1.3GB synthetic GLM-4.7-Flash quantized under a 256MiB
# budget; fails when marlin-run's peak RSS exceeds budget + largest tensor.
.PHONY: scale-test demo-resume-check
scale-test:
	MARLIN_SLOW=1 $(GO) test -count=1 -v -run TestScaleSyntheticGLM47 ./pipelines/

# The flagship job's shape on a synthetic GLM-4.7-Flash (width-div 8, 6
# layers, random weights, bundled tokenizer): rotate → calibrate →
# layer-streamed MR-GPTQ MXFP4 → GGUF + native under a budget below the
# model's F32 size; prints peak RSS, refused tasks, workdir components and
# per-layer seconds (~10 minutes on 2 cores).
.PHONY: scale-mrgptq-test
scale-mrgptq-test:
	MARLIN_SLOW=1 $(GO) test -count=1 -v -timeout 40m -run TestScaleSyntheticGLM47MRGPTQ ./pipelines/

# Regenerate README.md's generated sections (job reference, formats table,
# CLI commands from cmd/marlin-run's command table).
.PHONY: docs
docs:
	$(GO) run ./internal/readme/gen
	$(GO) test -count=1 -run '^TestREADMECLISection$$' ./cmd/marlin-run -update-readme

# Regenerate the checked-in JSON Schema from the registered stage configs.
schema:
	$(GO) run ./cmd/marlin-run schema -o schemas/pipeline.schema.json

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

clean:
	rm -rf $(BIN)

# Kernel benchmarks side by side with numpy/OpenBLAS (ratios and goals of
# issue 7). Needs python3-numpy and libopenblas0.
.PHONY: bench-kernels
bench: bench-kernels
bench-kernels:
	/usr/bin/python3 scripts/bench_numpy.py

# Everything about the Metal backend that Linux can check (issue 12): vet
# for darwin with and without cgo, clang checks of the Objective-C bridge and
# the MSL library against stub headers, the emulator tests. Needs clang.
.PHONY: metal-check
metal-check:
	./metal/check/metal-check.sh

# Interrupt `make demo` with SIGINT during GPTQ, re-run it (resume), and
# compare the outputs' sha256 with an uninterrupted run in another workdir.
demo-resume-check: build
	./scripts/demo-resume-check.sh
