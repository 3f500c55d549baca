package lint

import (
	"bufio"
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

const module = "github.com/marlin-llm/marlin/"

// lowLevel lists the package trees that compute on tensors and files and
// sit below the pipeline: they must build without it.
var lowLevel = []string{
	"tensor", "quant", "kernels", "metal", "model", "export", "report",
	"internal/atomicfile",
}

// rule forbids packages under one of from (module-relative trees) to depend,
// directly or not, on a package under one of to (module-relative trees, or
// full import-path prefixes of other modules), except where allow names the
// pair "from-package -> to-package" with the reason it is allowed.
type rule struct {
	name  string
	from  []string
	to    []string
	allow map[string]string
}

var rules = []rule{
	{
		name: "low-level packages import pipeline, stages or cmd",
		from: lowLevel,
		to:   []string{"pipeline", "stages", "cmd", "examples", "internal/readme", "internal/demosummary"},
	},
	{
		name: "low-level packages link the pipeline's dependencies",
		from: lowLevel,
		to: []string{
			"github.com/apache/arrow/", "go.yaml.in/yaml/", "gopkg.in/yaml",
			"github.com/invopop/jsonschema", "github.com/santhosh-tekuri/jsonschema/",
			"github.com/vbauerster/mpb/",
		},
		allow: map[string]string{
			"tensor/arrowio -> github.com/apache/arrow/": "the checkpoint encoding is Arrow IPC",
		},
	},
	{
		name: "model packages import export packages",
		from: []string{"model"},
		to:   []string{"export"},
	},
}

// under reports whether the import path p is the tree root or inside it.
// root is module-relative unless it contains a dot in its first element
// (another module), in which case it is a plain prefix.
func under(p, root string) bool {
	if first, _, _ := strings.Cut(root, "/"); strings.Contains(first, ".") {
		return strings.HasPrefix(p, root)
	}
	rel, ok := strings.CutPrefix(p, module)
	if !ok {
		return false
	}
	return rel == root || strings.HasPrefix(rel, root+"/")
}

// violations checks deps (package → its transitive dependencies) against
// rules and returns one line per forbidden edge, sorted.
func violations(deps map[string][]string, rules []rule) []string {
	var out []string
	for pkg, ds := range deps {
		rel := strings.TrimPrefix(pkg, module)
		for _, r := range rules {
			if !anyUnder(pkg, r.from) {
				continue
			}
			seen := map[string]bool{}
			for _, d := range ds {
				for _, to := range r.to {
					if !under(d, to) || seen[to] {
						continue
					}
					drel := strings.TrimPrefix(d, module)
					if allowed(r.allow, rel, drel) {
						continue
					}
					seen[to] = true
					out = append(out, fmt.Sprintf("%s: %s depends on %s", r.name, rel, drel))
				}
			}
		}
	}
	sort.Strings(out)
	return out
}

func anyUnder(p string, roots []string) bool {
	for _, r := range roots {
		if under(p, r) {
			return true
		}
	}
	return false
}

// allowed reports whether the edge from → to is excused: an allow key
// "a -> b" matches when from is a and to is b or starts with b.
func allowed(allow map[string]string, from, to string) bool {
	for k := range allow {
		a, b, _ := strings.Cut(k, " -> ")
		if from == a && (to == b || strings.HasPrefix(to, b)) {
			return true
		}
	}
	return false
}

// moduleDeps runs `go list` over the module and returns every package's
// transitive dependencies.
func moduleDeps(t *testing.T) map[string][]string {
	t.Helper()
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not in PATH")
	}
	cmd := exec.Command(goTool, "list", "-f", "{{.ImportPath}}{{range .Deps}} {{.}}{{end}}", "./...")
	cmd.Dir = filepath.Join("..", "..")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.Bytes())
	}
	deps := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 {
			deps[f[0]] = f[1:]
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return deps
}

func TestForbiddenImports(t *testing.T) {
	deps := moduleDeps(t)
	for _, want := range []string{"tensor", "quant", "model/native", "pipeline"} {
		if _, ok := deps[module+want]; !ok {
			t.Fatalf("go list did not list %s; is the test run inside the module?", want)
		}
	}
	for _, v := range violations(deps, rules) {
		t.Error(v)
	}
}

// TestViolations shows that the check fails on the edges it forbids,
// through indirect dependencies too, and honours the allow list.
func TestViolations(t *testing.T) {
	m := func(s string) string { return module + s }
	deps := map[string][]string{
		m("quant"):          {m("tensor")},
		m("export/ct"):      {m("report"), m("pipeline"), "github.com/apache/arrow/go/v17/arrow"},
		m("tensor/arrowio"): {m("tensor"), "github.com/apache/arrow/go/v17/arrow"},
		m("model/qmodel"):   {m("model/native")},
		m("model/arch"):     {m("export/ggml")},
		m("pipelines"):      {m("stages")},
		m("stagesx"):        {m("pipeline")},
	}
	got := violations(deps, rules)
	want := []string{
		"low-level packages import pipeline, stages or cmd: export/ct depends on pipeline",
		"low-level packages link the pipeline's dependencies: export/ct depends on github.com/apache/arrow/go/v17/arrow",
		"model packages import export packages: model/arch depends on export/ggml",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("violations:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
