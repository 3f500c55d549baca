package main

// Kernel backends register themselves with the kernels package when
// imported: with metal linked in, `backend: metal` and `auto` use the GPU on
// a Mac; elsewhere it reports itself unavailable and auto picks the CPU.
import _ "github.com/marlin-llm/marlin/metal"
