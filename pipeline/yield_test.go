package pipeline

import "runtime"

func runtimeYield() { runtime.Gosched() }
