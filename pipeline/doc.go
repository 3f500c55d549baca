// Package pipeline is marlin's job runner: job files, planning, concurrent
// execution and resumable checkpoints.
//
// The flow is Load (strict YAML → Job) → PlanJob (stages → task graph) →
// Runner.Run against a Store (checkpoints in a workdir):
//
//	reg := pipeline.NewRegistry()
//	stages.Register(reg)
//	job, err := pipeline.Load("job.yaml", reg, pipeline.LoadOptions{})
//	plan, err := pipeline.PlanJob(ctx, job, logger)
//	store, err := pipeline.OpenStore(job.Workdir, pipeline.StoreOptions{})
//	stats, err := (&pipeline.Runner{Store: store}).Run(ctx, plan)
//
// stage.go is the contract stage kinds implement (Kind, Stage, Task,
// Output, TaskEnv). Everything else here is the runner's side of it:
//
//   - load.go, yamlnode.go: job files. yaml.v3 decodes; unknown fields and
//     type errors are found by walking the node tree alongside the Go
//     types (yamlnode.go), because yaml.v3's KnownFields only works on a
//     Decoder, not on the Node that holds a stage's `with:` block, and its
//     messages lack columns and field paths. ${VAR} expansion and --set
//     overrides edit the node tree before validation so positions survive.
//   - schema.go: JSON Schema reflected with invopop/jsonschema, validated
//     with santhosh-tekuri/jsonschema/v6.
//   - plan.go: the task graph; status.go: what a run would skip.
//   - runner.go: errgroup workers, semaphore.Weighted memory admission,
//     skip-if-checkpointed, first error cancels.
//   - store.go, atomic.go, lock_*.go: content-addressed Arrow IPC blobs
//     (tensor/arrowio), fsynced journal, temp+fsync+rename, flock.
//   - artifact.go: files tasks write to out/ (TaskEnv.WriteArtifact,
//     ArtifactPath), recorded in the journal, re-checked on resume, never
//     written through a link.
//   - events.go, progress.go, summary.go: events as plain lines, JSON
//     lines, mpb bars or a per-stage summary.
//
// Hand-written pieces and why: the strict YAML walker (above); ByteSize
// parsing (a ten-line table, smaller than a dependency); the journal (JSON
// lines with a torn-tail rule, nothing a library would simplify).
package pipeline
