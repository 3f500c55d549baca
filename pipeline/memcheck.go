package pipeline

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
)

// MemoryLimits are the bounds a plan's task estimates are checked against
// before anything runs (Plan.CheckMemory).
type MemoryLimits struct {
	// Budget is the admission budget in bytes (resources.memory or the
	// runner's override); <= 0: no budget.
	Budget int64
	// Machine is the machine's physical memory in bytes (MachineMemory);
	// <= 0: unknown, not checked.
	Machine int64
}

// OverBudgetTask is a task whose estimate exceeds a MemoryLimits bound.
type OverBudgetTask struct {
	Ref      TaskRef
	EstBytes int64
}

// OverBudgetError refuses a plan holding tasks whose estimate alone
// exceeds the memory budget or the machine's memory: admitting one would
// either break the budget or, past the machine's memory, end in the Go
// runtime's "fatal error: out of memory" after the earlier tasks ran.
// Resources.AllowOverBudget (resources.allow_over_budget, marlin-run
// run --allow-over-budget) runs them anyway, each alone.
type OverBudgetError struct {
	Limits MemoryLimits
	// Tasks are the offending tasks, largest estimate first.
	Tasks []OverBudgetTask
}

// maxListedOverBudget bounds the tasks an OverBudgetError names.
const maxListedOverBudget = 5

func (e *OverBudgetError) Error() string {
	var b strings.Builder
	n := len(e.Tasks)
	var over []string
	if e.Limits.Budget > 0 && e.Tasks[0].EstBytes > e.Limits.Budget {
		over = append(over, "the memory budget")
	}
	if e.Limits.Machine > 0 && e.Tasks[0].EstBytes > e.Limits.Machine {
		over = append(over, "the machine's memory")
	}
	if n == 1 {
		fmt.Fprintf(&b, "1 task's memory estimate exceeds %s: ", strings.Join(over, " and "))
	} else {
		fmt.Fprintf(&b, "%d tasks' memory estimates exceed %s: ", n, strings.Join(over, " and "))
	}
	for i, t := range e.Tasks {
		if i == maxListedOverBudget {
			fmt.Fprintf(&b, " and %d more", n-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s estimates %s", t.Ref, ByteSize(t.EstBytes))
	}
	fmt.Fprintf(&b, "; budget %s (resources.memory), machine memory %s", limitString(e.Limits.Budget, "unlimited"), limitString(e.Limits.Machine, "not checked"))
	b.WriteString("; run refuses such a job before starting any task: raise resources.memory (--memory) or set resources.allow_over_budget: true (--allow-over-budget) to run such tasks anyway, each alone")
	return b.String()
}

func limitString(v int64, none string) string {
	if v <= 0 {
		return none
	}
	return ByteSize(v).String()
}

// CheckMemory returns an *OverBudgetError naming every task whose EstBytes
// exceeds lim.Budget or lim.Machine (where set), or nil. The runner calls
// it before starting any task unless over-budget tasks are allowed.
func (p *Plan) CheckMemory(lim MemoryLimits) error {
	var over []OverBudgetTask
	for _, ref := range p.Order {
		est := p.tasks[ref].EstBytes
		if (lim.Budget > 0 && est > lim.Budget) || (lim.Machine > 0 && est > lim.Machine) {
			over = append(over, OverBudgetTask{Ref: ref, EstBytes: est})
		}
	}
	if len(over) == 0 {
		return nil
	}
	sort.SliceStable(over, func(i, j int) bool { return over[i].EstBytes > over[j].EstBytes })
	return &OverBudgetError{Limits: lim, Tasks: over}
}

// MachineMemory returns the machine's physical memory in bytes (MemTotal
// of /proc/meminfo on Linux), or 0 where it is unknown.
func MachineMemory() int64 { return machineMemory() }

// parseMemTotal reads the MemTotal line of a /proc/meminfo file
// ("MemTotal:       16318480 kB") and returns it in bytes.
func parseMemTotal(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("meminfo: malformed MemTotal line %q", sc.Text())
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil || kb <= 0 || kb > 1<<43 {
			return 0, fmt.Errorf("meminfo: malformed MemTotal line %q", sc.Text())
		}
		return kb << 10, nil
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("meminfo: %w", err)
	}
	return 0, fmt.Errorf("meminfo: no MemTotal line")
}
