package stages

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/internal/assets"
	"github.com/marlin-llm/marlin/model/native"
	"github.com/marlin-llm/marlin/pipeline"
	"github.com/marlin-llm/marlin/report"
)

// demoModel is the qwen3-nano bundled with the repository (demo/).
func demoModel(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "demo", "qwen3-nano"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(p, "model.safetensors")); err != nil {
		t.Skipf("demo model: %v", err)
	}
	return p
}

// jobRun is one `marlin-run run` of a job document: its --set overrides,
// --until and --rerun stages.
type jobRun struct {
	set, until, rerun []string
}

// runDoc loads, plans and runs doc (as dir/job.yaml) like `marlin-run run`
// and returns the plan (before --until) and the run's statistics.
func runDoc(t *testing.T, dir, doc string, r jobRun) (*pipeline.Plan, pipeline.RunStats) {
	t.Helper()
	reg, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	job, err := pipeline.LoadBytes(filepath.Join(dir, "job.yaml"), []byte(doc), reg, pipeline.LoadOptions{Set: r.set})
	if err != nil {
		t.Fatal(err)
	}
	plan, err := pipeline.PlanJob(context.Background(), job, nil)
	if err != nil {
		t.Fatal(err)
	}
	sub := plan
	if len(r.until) > 0 {
		if sub, err = plan.Until(r.until...); err != nil {
			t.Fatal(err)
		}
	}
	st, err := pipeline.OpenStore(job.Workdir, pipeline.StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stats, err := (&pipeline.Runner{Store: st, Rerun: r.rerun}).Run(context.Background(), sub)
	if err != nil {
		t.Fatal(err)
	}
	return plan, stats
}

// pendingTasks is what `marlin-run status` reports pending for plan.
func pendingTasks(t *testing.T, plan *pipeline.Plan) []string {
	t.Helper()
	st, err := pipeline.OpenStore(plan.Job.Workdir, pipeline.StoreOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	var pending []string
	for _, s := range pipeline.Status(plan, st) {
		for _, k := range s.PendingKeys {
			pending = append(pending, s.ID+"/"+k)
		}
	}
	return pending
}

// reportFormats returns the set of formats in the quantize report at path.
func reportFormats(t *testing.T, path string) map[string]bool {
	t.Helper()
	var rep QuantizeReport
	assets.ReadJSON(t, path, &rep)
	set := map[string]bool{}
	for _, r := range rep.Tensors {
		set[r.Format] = true
	}
	return set
}

// TestQuantReportIsTrackedArtifact: the quantize stage's report is checked
// and restored on every run like the other outputs: deleted, overwritten,
// replaced by a link, or rewritten by a run of the job with other settings
// (`--set ... --until quant`), the next run of the job writes it again, and
// `status` says so before that run and reports everything done after it.
func TestQuantReportIsTrackedArtifact(t *testing.T) {
	model := demoModel(t)
	dir := t.TempDir()
	doc := `version: 1
name: report-artifact
workdir: work
stages:
  - {id: load, kind: load, with: {path: ` + model + `}}
  - id: quant
    kind: quantize
    needs: [load]
    with:
      default: {format: int4, method: rtn}
      rules: [{match: "model.embed_tokens.weight", format: bf16}]
      report: quant-report.json
`
	rep := filepath.Join(dir, "work", "out", "quant-report.json")
	plan, _ := runDoc(t, dir, doc, jobRun{})
	want, err := os.ReadFile(rep)
	if err != nil {
		t.Fatal(err)
	}
	if f := reportFormats(t, rep); !f["int4"] || f["nvfp4"] {
		t.Fatalf("first run: report formats %v", f)
	}
	outside := filepath.Join(t.TempDir(), "elsewhere.json")
	cases := []struct {
		name   string
		mutate func(t *testing.T)
	}{
		{"deleted", func(t *testing.T) { os.Remove(rep) }},
		{"overwritten", func(t *testing.T) { os.WriteFile(rep, []byte("{}\n"), 0o644) }},
		{"replaced by a link to an equal file", func(t *testing.T) {
			os.WriteFile(outside, want, 0o644)
			os.Remove(rep)
			if err := os.Symlink(outside, rep); err != nil {
				t.Skip(err)
			}
		}},
		{"rewritten by an nvfp4 run of the job", func(t *testing.T) {
			runDoc(t, dir, doc, jobRun{set: []string{"stages.quant.with.default.format=nvfp4"}, until: []string{"quant"}})
			if f := reportFormats(t, rep); !f["nvfp4"] || f["int4"] {
				t.Fatalf("nvfp4 run: report formats %v", f)
			}
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.mutate(t)
			if p := pendingTasks(t, plan); len(p) != 1 || p[0] != "quant/"+quantReportKey {
				t.Errorf("status before the run: pending %v, want the report task only", p)
			}
			_, stats := runDoc(t, dir, doc, jobRun{})
			if stats.Executed != 1 {
				t.Errorf("run: %d tasks executed, want the report task only (%+v)", stats.Executed, stats)
			}
			got, err := os.ReadFile(rep)
			if err != nil || string(got) != string(want) {
				t.Errorf("report not restored (%v): %.80q", err, got)
			}
			if fi, err := os.Lstat(rep); err != nil || !fi.Mode().IsRegular() {
				t.Errorf("report is not a regular file: %v", err)
			}
			if p := pendingTasks(t, plan); len(p) != 0 {
				t.Errorf("status after the run: pending %v", p)
			}
		})
	}
}

// TestEveryOutFileIsTracked runs a job with every stage kind that writes
// into out/ and checks that each file there is an artifact of a finished
// task; that deleting them all and running again restores every one; that
// the finished job then runs nothing and `status` shows it complete (the
// benchmark included); that `--rerun bench` measures again without leaving
// an orphan blob; and that report.html is titled with the job name.
func TestEveryOutFileIsTracked(t *testing.T) {
	model := demoModel(t)
	text, err := filepath.Abs(filepath.Join("..", "demo", "eval.txt"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	doc := `version: 1
name: every-artifact
workdir: work
resources: {workers: 2, backend: cpu}
stages:
  - {id: load, kind: load, with: {path: ` + model + `}}
  - {id: stats, kind: stats, needs: [load], with: {out: stats/stats.json}}
  - id: quant
    kind: quantize
    needs: [load]
    with:
      default: {format: int4, method: rtn}
      rules: [{match: "model.embed_tokens.weight", format: bf16}]
      report: quant-report.json
  - {id: gguf, kind: pack, needs: [quant], with: {format: gguf, out: gguf/nano.gguf, model: ` + model + `, gguf_type: q8_0}}
  - {id: native, kind: pack, needs: [quant], with: {format: native, out: nano-native, model: ` + model + `}}
  - {id: ct, kind: pack, needs: [quant], with: {format: compressed-tensors, out: nano-ct, model: ` + model + `}}
  - {id: validate, kind: validate, needs: [native], with: {model: ` + model + `, packed: nano-native, text: ` + text + `, window: 32, windows: 2}}
  - {id: bench, kind: benchmark, needs: [validate], with: {packed: nano-native, prompt_tokens: 4, decode_tokens: 2, repeats: 1}}
`
	work := filepath.Join(dir, "work")
	out := filepath.Join(work, "out")
	plan, _ := runDoc(t, dir, doc, jobRun{})
	files := outFiles(t, out)
	arts := map[string]bool{}
	st, err := pipeline.OpenStore(work, pipeline.StoreOptions{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	done := pipeline.DoneIDs(plan, st)
	for _, e := range st.Entries() {
		if done[e.ID] {
			for rel := range e.Artifacts {
				arts[rel] = true
			}
		}
	}
	st.Close()
	for _, want := range []string{"quant-report.json", "stats/stats.json", "gguf/nano.gguf", "nano-native/" + native.IndexFile,
		"nano-ct/config.json", "validate.json", "benchmark.json", "benchmark.txt", report.JSONFile, report.HTMLFile} {
		if !files[want] {
			t.Errorf("%s not written (out/ holds %v)", want, keys(files))
		}
	}
	for f := range files {
		if !arts[f] {
			t.Errorf("out/%s is not a recorded artifact of any finished task", f)
		}
	}
	html, err := os.ReadFile(filepath.Join(out, report.HTMLFile))
	if err != nil || !strings.Contains(string(html), "<title>marlin report: every-artifact</title>") {
		t.Errorf("report.html not titled with the job name (%v)", err)
	}

	if p := pendingTasks(t, plan); len(p) != 0 {
		t.Errorf("status after the first run: pending %v", p)
	}
	if _, stats := runDoc(t, dir, doc, jobRun{}); stats.Executed != 0 {
		t.Errorf("second run executed %d tasks, want 0 (%+v)", stats.Executed, stats)
	}

	blobs := len(outFiles(t, filepath.Join(work, "blobs")))
	if _, stats := runDoc(t, dir, doc, jobRun{rerun: []string{"bench"}}); stats.Executed != 1 {
		t.Errorf("--rerun bench executed %d tasks, want 1 (%+v)", stats.Executed, stats)
	}
	if n := len(outFiles(t, filepath.Join(work, "blobs"))); n != blobs {
		t.Errorf("--rerun bench: %d blobs, was %d", n, blobs)
	}

	for f := range files {
		if err := os.Remove(filepath.Join(out, filepath.FromSlash(f))); err != nil {
			t.Fatal(err)
		}
	}
	if p := pendingTasks(t, plan); len(p) == 0 {
		t.Error("status: nothing pending after out/ was emptied")
	}
	runDoc(t, dir, doc, jobRun{})
	for f := range files {
		if _, err := os.Stat(filepath.Join(out, filepath.FromSlash(f))); err != nil {
			t.Errorf("not restored: %v", err)
		}
	}
	if p := pendingTasks(t, plan); len(p) != 0 {
		t.Errorf("status after restoring: pending %v", p)
	}
}

// outFiles lists the regular files below dir (slash-separated, relative).
func outFiles(t *testing.T, dir string) map[string]bool {
	t.Helper()
	files := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = true
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func keys(m map[string]bool) []string {
	var l []string
	for k := range m {
		l = append(l, k)
	}
	return l
}

// TestArtifactsDoNotFollowLinks: a directory link already inside out/ is
// refused with an error naming it, and nothing is written where it points.
func TestArtifactsDoNotFollowLinks(t *testing.T) {
	dir := t.TempDir()
	outside := t.TempDir()
	out := filepath.Join(dir, "work", "out")
	if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(out, "r")); err != nil {
		t.Skip(err)
	}
	_, _, err := runJobIn(t, dir, "job.yaml", "work", `  - {id: g, kind: synthetic, with: {tensors: [{name: w, shape: [4, 4]}]}}
  - {id: s, kind: stats, needs: [g], with: {out: r/stats.json}}
`)
	if err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Errorf("err = %v, want a refusal naming the link", err)
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("wrote through the link: %v", ents)
	}
}

// TestOutPathNamingOutDirRejected: an output path that names the output
// directory itself (`out: "."`) fails validation with file:line:col and
// the field, for every stage kind with such a field.
func TestOutPathNamingOutDirRejected(t *testing.T) {
	reg, err := NewRegistry()
	if err != nil {
		t.Fatal(err)
	}
	const head = "version: 1\nstages:\n  - {id: g, kind: synthetic, with: {tensors: [{name: w, shape: [4, 4]}]}}\n"
	cases := []struct{ stage, field string }{
		{`{id: s, kind: pack, needs: [g], with: {format: native, out: "."}}`, "out"},
		{`{id: s, kind: pack, needs: [g], with: {format: native, out: "./"}}`, "out"},
		{`{id: s, kind: pack, needs: [g], with: {format: native, out: "a/.."}}`, "out"},
		{`{id: s, kind: stats, needs: [g], with: {out: "."}}`, "out"},
		{`{id: s, kind: quantize, needs: [g], with: {report: "."}}`, "report"},
		{`{id: s, kind: validate, needs: [g], with: {model: m, text: t, packed: p, out: "."}}`, "out"},
		{`{id: s, kind: validate, needs: [g], with: {model: m, text: t, packed: "."}}`, "packed"},
		{`{id: s, kind: benchmark, needs: [g], with: {packed: p, out: "."}}`, "out"},
		{`{id: s, kind: benchmark, needs: [g], with: {packed: "."}}`, "packed"},
	}
	for _, c := range cases {
		_, err := pipeline.LoadBytes("j.yaml", []byte(head+"  - "+c.stage+"\n"), reg, pipeline.LoadOptions{})
		want := "stages[1].with." + c.field + ": "
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "output directory itself") {
			t.Errorf("%s: err = %v, want %q naming the output directory", c.stage, err, want)
			continue
		}
		// the position is that of the field: line 4, inside the stage
		if !strings.HasPrefix(err.Error(), "j.yaml:4:") {
			t.Errorf("%s: err = %v, want it at j.yaml:4:col", c.stage, err)
		}
	}
}
