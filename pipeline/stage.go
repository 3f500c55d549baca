package pipeline

import (
	"context"
	"io"
	"log/slog"
	"sync"

	"github.com/marlin-llm/marlin/tensor"
)

// This file is the contract between the runner and stage kinds. Stage
// packages (stages/...) depend on it; the runner implements it. Keep it
// small and stable: add fields, do not change meanings.

// Kind describes one stage kind: its name, its typed config and how to build
// it. Kinds are registered in a Registry (no global state: the CLI builds
// one registry and hands it to Load and the Runner).
type Kind struct {
	// Name is the `kind:` value in job files ("load", "quantize", ...).
	Name string
	// Doc is a one-line description (shown in the schema and `marlin-run`).
	Doc string
	// NewConfig returns a pointer to a fresh config struct with its defaults
	// filled in. The stage's `with:` block is decoded into it (strictly: an
	// unknown field is an error) and the JSON Schema is reflected from its
	// type, so use `yaml`/`json` tags and `jsonschema` tags for enums etc.
	NewConfig func() any
	// New builds a stage from a decoded config (the value NewConfig returned).
	New func(cfg any) (Stage, error)
	// Version is the version of the kind's outputs: bump it when the same
	// config and inputs now give different outputs (a numeric fix, a new
	// field in an artifact). It is part of every task's identity, so a
	// resumed run recomputes what an older version wrote instead of
	// reusing it. Zero is the first version.
	Version int
}

// ConfigValidator may be implemented by config structs for semantic checks
// beyond the schema (unknown format names, bad globs). Errors should name the
// field (e.g. `format: unknown format "fp5" (known: fp4, mxfp4, ...)`); the
// loader prefixes file:line:col and the stage path.
type ConfigValidator interface {
	Validate() error
}

// Stage turns its inputs into tasks.
type Stage interface {
	// Plan returns the stage's tasks. It runs before anything executes, so
	// it may only look at the upstream stages' task lists (keys and Meta),
	// at files named in its config, and at the environment in pc.
	Plan(ctx context.Context, pc *PlanContext) ([]*Task, error)
}

// PlanContext is what a stage sees while planning.
type PlanContext struct {
	// StageID is this stage's `id:`.
	StageID string
	// JobDir is the directory of the job file; relative paths in configs
	// resolve against it.
	JobDir string
	// Workdir is the run's working directory (checkpoints, outputs).
	Workdir string
	// Inputs are the planned upstream stages named in `needs:`, in order.
	Inputs []*StagePlan
	// Upstream are all planned stages upstream of this one (those in
	// Inputs and, transitively, theirs), keyed by id: a stage may need
	// tasks of any of them (the layer-streamed quantize stage reads the
	// weights a calibrate stage was given).
	Upstream map[string]*StagePlan
	// Resources are the job's resource settings.
	Resources Resources
	// Log is the run's structured logger.
	Log *slog.Logger
	// JobName is the job's `name:` (reports are titled with it).
	JobName string
}

// StagePlan is a planned stage: its identity and tasks.
type StagePlan struct {
	ID    string
	Kind  string
	Tasks []*Task
}

// TaskRef names one task of one stage.
type TaskRef struct {
	Stage string
	Key   string
}

// Task is one unit of work: the thing that runs, is checkpointed and is
// skipped on resume.
type Task struct {
	// Key identifies the task within its stage (a tensor name, "layer.3",
	// "layer.3.expert.7"). Keys are unique within a stage.
	Key string
	// Needs lists the tasks whose outputs this task reads. They may belong
	// to any earlier stage (or to this stage: sequential calibration).
	Needs []TaskRef
	// EstBytes estimates the task's peak memory; the runner admits tasks so
	// that the sum in flight stays within resources.memory.
	EstBytes int64
	// Meta is planner-visible information for downstream Plan calls (tensor
	// dtype and shape, layer index, ...). It is part of the task identity.
	Meta map[string]string
	// Fingerprint identifies inputs that are not tasks (a source file's
	// size and mtime or digest). It is part of the task identity.
	Fingerprint string
	// Transient marks an intermediate output (a layer's calibration
	// activations) that only the tasks needing it read: the runner deletes
	// its blob once every task that needs it has finished, keeping its
	// journal record. A resumed run skips a dropped transient task while
	// the tasks needing it are done, and recomputes it when one of them
	// must run again. The workdir thus holds a few such outputs at a time
	// instead of one per task.
	Transient bool
	// Run computes the task's output. It must honour ctx and must not write
	// files the runner does not know about except through TaskEnv.
	Run func(ctx context.Context, env *TaskEnv) (*Output, error)
}

// Output is a finished task's result. The runner stores it as one Arrow IPC
// blob (tensors as records with name/shape/dtype/meta in schema metadata).
type Output struct {
	Tensors []*tensor.Tensor
	// Meta is free-form result metadata (metrics, reports) stored with it.
	Meta map[string]string
	// Stats are measurements of the run that made the output (seconds of
	// a task's phases). They are kept in the journal, not in the blob, so
	// that a task's output bytes do not depend on how fast it ran; Store.Get
	// returns them with the output.
	Stats map[string]float64
}

// TaskEnv is what a running task can reach.
type TaskEnv struct {
	// Input returns the stored output of a task named in Needs.
	Input func(ref TaskRef) (*Output, error)
	// Progress reports work done within the task (done of total units).
	Progress func(done, total int64)
	// OutDir is the run's output directory for final artifacts (exports).
	// Write files there through WriteArtifact or ArtifactPath
	// (artifact.go): they refuse paths through symbolic
	// links and record each file, so a resumed run re-checks it.
	OutDir string
	// Log is the task's logger.
	Log *slog.Logger

	artMu     sync.Mutex
	artifacts map[string]string // rel → digest ("": hash when the task ends)
	// Text receives human-readable results for the reader of the run (a
	// results table); nil when nobody reads them (--log-format json,
	// --quiet). Writes must be whole blocks of lines.
	Text io.Writer
}

// Resources are a job's resource settings (`resources:` in the job file).
type Resources struct {
	// Memory is the admission budget in bytes (0: unlimited).
	Memory int64
	// Workers is the maximum number of tasks in flight.
	Workers int
	// Backend selects the compute backend: "auto", "cpu" or "metal".
	Backend string
	// AllowOverBudget runs tasks whose estimate exceeds Memory or the
	// machine's memory instead of refusing the plan (see Plan.CheckMemory).
	AllowOverBudget bool
}
